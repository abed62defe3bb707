"""Every log masks every configuration secret, current and past, in its plain, base64 and
URL-encoded forms: stored logs, and the platform's own log output."""

import base64
import io
import logging
import threading
import time
from urllib.parse import quote

import pytest

from choreo_site.logstream import LogWriter, read_text
from choreo_site.redaction import RedactingFilter, platform_secrets
from environments.services import config_set, project_create

# Committed: the log filter reads secrets on a connection of its own.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def project():
    return project_create(name="shop")


def test_stored_logs_mask_current_and_past_secrets(project):
    config_set(project=project, component="web", environment=None, key="TOKEN", value="first-token-value", secret=True)
    config_set(project=project, component="web", environment=None, key="TOKEN", value="second-token-value", secret=True)
    dev = project.environments.get(name="development")
    config_set(
        project=project,
        component="web",
        environment=dev,
        key="cert.pem",
        value=b"-----BEGIN-----\nline-of-a-cert-file\n",
        secret=True,
        is_file=True,
    )
    config_set(project=project, component="web", environment=None, key="PLAIN", value="not-a-secret-at-all")
    assert {"first-token-value", "second-token-value", "-----BEGIN-----\nline-of-a-cert-file\n"} <= set(platform_secrets())

    writer = LogWriter("build-901")
    writer.line("old first-token-value new second-token-value")
    writer.line(f"b64 {base64.b64encode(b'second-token-value').decode()} url {quote('first-token-value')}")
    writer.line("cert: line-of-a-cert-file")
    writer.line("plain: not-a-secret-at-all")
    basic = base64.b64encode(b"user:second-token-value").decode()
    writer.line(f"Authorization: Basic {basic}")
    lines = read_text("build-901").splitlines()
    assert lines[:4] == ["old *** new ***", "b64 *** url ***", "cert: ***", "plain: not-a-secret-at-all"]
    assert "***" in lines[4] and basic not in lines[4]


def test_reading_a_log_masks_a_value_made_secret_after_it_was_logged(project):
    LogWriter("build-902").line("connecting with later-made-secret")
    config_set(project=project, component="web", environment=None, key="TOKEN", value="later-made-secret", secret=True)
    assert read_text("build-902") == "connecting with ***\n"


def test_the_platform_own_log_output_is_masked(project):
    config_set(project=project, component="web", environment=None, key="TOKEN", value="token-in-a-traceback", secret=True)
    # The handler the settings configure for every process's output.
    handler = next(h for h in logging.getLogger().handlers if any(isinstance(f, RedactingFilter) for f in h.filters))
    stream, handler.stream = handler.stream, io.StringIO()
    try:
        log = logging.getLogger("deployments.rollout")
        log.warning("connecting with %s", "token-in-a-traceback")
        try:
            raise RuntimeError("refused token-in-a-traceback")
        except RuntimeError:
            log.exception("failed")
        out = handler.stream.getvalue()
    finally:
        handler.stream = stream
    assert "token-in-a-traceback" not in out
    assert "connecting with ***" in out and "RuntimeError: refused ***" in out


def test_the_filter_fetches_secrets_from_inside_an_event_loop():
    import asyncio

    project = project_create(name="loop")
    config_set(project=project, component="web", environment=None, key="TOKEN", value="token-seen-by-daphne", secret=True)
    record = logging.LogRecord("daphne", logging.WARNING, __file__, 1, "got %s", ("token-seen-by-daphne",), None)

    async def log_in_the_loop():
        RedactingFilter().filter(record)  # as in daphne's thread, where queries are refused

    asyncio.run(log_in_the_loop())
    assert record.getMessage() == "got ***"


# Low finding: redaction was global, so a 4-character secret of one project masked that text
# in every project's logs, and a build could find another project's secrets by printing
# guesses and watching which came back as `***`. Each project's texts now mask its own.


@pytest.fixture
def two_builds(make_repo):
    from builds.models import Build
    from builds.services import component_create

    builds = {}
    for name in ("alpha", "beta"):
        component = component_create(project=project_create(name=name), name="web", repository=str(make_repo().path))
        builds[name] = Build.objects.create(component=component, status=Build.FAILED, error="the step printed k9z!")
    config_set(project=builds["alpha"].project, component="web", environment=None, key="PIN", value="k9z!", secret=True)
    return builds


def test_a_project_secret_masks_only_that_project_logs(two_builds):
    for build in two_builds.values():
        LogWriter(build.log_stream).line("guess: k9z!")
    assert read_text(two_builds["alpha"].log_stream) == "guess: ***\n"
    assert read_text(two_builds["beta"].log_stream) == "guess: k9z!\n"


def test_a_project_secret_masks_only_that_project_errors(two_builds, api):
    from django.template import Context, Template

    assert api.get(f"/api/builds/{two_builds['alpha'].pk}/").json()["error"] == "the step printed ***"
    assert api.get(f"/api/builds/{two_builds['beta'].pk}/").json()["error"] == "the step printed k9z!"
    page = Template("{% load redaction %}{{ b.error|redacted:b }}")
    assert page.render(Context({"b": two_builds["alpha"]})) == "the step printed ***"
    assert page.render(Context({"b": two_builds["beta"]})) == "the step printed k9z!"
    # Texts of no project (the platform's own) still mask every project's secrets.
    assert Template("{% load redaction %}{{ text|redacted }}").render(Context({"text": "k9z!"})) == "***"


# The Redactor on its own: every form of a secret, at every alignment, whatever the values beside it.
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from choreo_site.redaction import MASK, Redactor  # noqa: E402

secret_text = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=4, max_size=40)


@settings(max_examples=300, deadline=None)
@given(secret_text, st.binary(max_size=7), st.binary(max_size=7), st.sampled_from([base64.b64encode, base64.urlsafe_b64encode]))
def test_the_base64_of_a_secret_inside_longer_data_is_masked_at_any_alignment(secret, before, after, encode):
    """As in an HTTP Basic header: `user:password` encoded as a whole. The 4-character groups
    that encode bytes of the secret alone are masked, each of them, whole."""
    raw = secret.encode()
    encoded = encode(before + raw + after).decode()
    masked = Redactor([secret])(encoded)
    first_group = -(-len(before) // 3)  # the groups that hold secret bytes alone
    last_group = (len(before) + len(raw)) // 3
    if last_group <= first_group:
        return
    parts = masked.split(MASK)
    assert len(parts) >= 2, (encoded, masked)
    kept_before, kept_after = parts[0], parts[-1]
    # What is left before the first mask and after the last is the encoded text's own start
    # and end, and stops short of the secret's groups.
    assert encoded.startswith(kept_before) and len(kept_before) <= 4 * first_group, (encoded, masked)
    assert encoded.endswith(kept_after) and len(kept_after) <= len(encoded) - 4 * last_group, (encoded, masked)


def test_every_line_of_a_multi_line_secret_of_8_or_more_characters_is_masked():
    secret = "-----BEGIN KEY-----\nabcdefgh\nshort\n-----END KEY-----"
    redact = Redactor([secret])
    assert redact("key line: abcdefgh") == f"key line: {MASK}"
    assert redact("a line: short") == "a line: short"  # under 8: too common to mask alone


def test_short_values_do_not_stop_the_others_from_being_masked():
    shorts = ["a", "bc", "def", "", "x"]
    longs = [f"long-secret-{i}-value" for i in range(5)]
    redact = Redactor(shorts + longs)
    for value in longs:
        assert redact(f"<{value}>") == f"<{MASK}>"
    assert redact("a bc def x") == "a bc def x"


def test_whose_secrets_reach_a_text(project, settings, monkeypatch):
    from builds.models import Build, Component, PushEvent
    from choreo_site.redaction import owner_project_id

    settings.REGISTRY_PASSWORD, settings.REGISTRY_PULL_PASSWORD = "registry-password-1", "registry-pull-password-3"
    monkeypatch.setenv("DATABASE_URL", "postgres://choreo:database-password-2@127.0.0.1:5432/choreo")
    redis_password = settings.REDIS_URL.split("@")[0].rsplit(":", 1)[-1] if "@" in settings.REDIS_URL else None
    other = project_create(name="other")
    config_set(project=project, component="web", environment=None, key="MINE", value="mine-secret-0001", secret=True)
    config_set(project=other, component="web", environment=None, key="THEIRS", value="their-secret-0002", secret=True)

    mine = platform_secrets(project.pk)
    assert {"registry-password-1", "registry-pull-password-3", "database-password-2", "mine-secret-0001"} <= set(mine)
    assert "their-secret-0002" not in mine
    assert redis_password is None or redis_password in mine
    assert {"mine-secret-0001", "their-secret-0002"} <= set(platform_secrets(None))  # the platform's own logs

    component = Component.objects.create(project=project, name="web", repository="/nonexistent")
    build = Build.objects.create(component=component, commit="a" * 40)
    assert owner_project_id(None) is None and owner_project_id(project.pk) == project.pk
    assert owner_project_id(component) == project.pk and owner_project_id(build) == project.pk
    assert owner_project_id(PushEvent(component=None)) is None
    assert owner_project_id(PushEvent(component=component)) == project.pk


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
@pytest.mark.parametrize("secret", ["abcd", "token-value-1", "p>ss?w0rd~~"])
def test_the_unpadded_base64_of_a_secret_is_masked_whole(secret, encode):
    """As in a JWT, or base64url without its `=`: no trailing characters of it are left."""
    unpadded = encode(secret.encode()).decode().rstrip("=")
    assert Redactor([secret])(f"token={unpadded};") == f"token={MASK};"


def test_a_percent_encoded_secret_is_masked_whole():
    """Both URL encodings, `/` encoded too (as in a URL's user info or query)."""
    from urllib.parse import quote_plus

    secret = "pass/word with+space"
    redact = Redactor([secret])
    assert redact(f"https://u:{quote(secret, safe='')}@host/") == f"https://u:{MASK}@host/"
    assert redact(f"?password={quote_plus(secret)}&x=1") == f"?password={MASK}&x=1"


def test_a_secret_that_contains_another_is_masked_whole():
    redact = Redactor(["abcd-1234", "abcd-1234-and-more"])
    assert redact("x abcd-1234-and-more y abcd-1234 z") == f"x {MASK} y {MASK} z"


def test_a_redactor_without_secrets_leaves_text_alone_and_needs_no_lookahead():
    """The log writer redacts LOG_MAX_LINE plus `longest` characters of a line."""
    redact = Redactor(["", "abc"])  # nothing long enough to mask
    assert redact.longest == 0 and redact("abc text") == "abc text"
    assert Redactor(["a-secret-value"]).longest >= len("a-secret-value")


# The secret sources the apps register, and the filter of the platform's own log output:
# how often it asks them, and what it does when they cannot answer.
from choreo_site import redaction  # noqa: E402


def counted_source(calls: list, values=("source-secret-1",), *, fail_while=lambda: False):
    def source(project_id):
        calls.append(project_id)
        if fail_while():
            raise RuntimeError("no database yet")
        return list(values)

    return source


def filtered(log_filter: RedactingFilter, message: str) -> str:
    record = logging.makeLogRecord({"msg": message})
    assert log_filter.filter(record) is True
    return record.getMessage()


def test_a_secret_source_registered_twice_is_asked_once(monkeypatch):
    monkeypatch.setattr(redaction, "_secret_sources", list(redaction._secret_sources))
    calls: list = []
    source = counted_source(calls)
    redaction.register_secret_source(source)
    redaction.register_secret_source(source)
    assert platform_secrets(7).count("source-secret-1") == 1 and calls == [7]


def test_the_log_filter_asks_again_only_when_the_secrets_changed_or_are_stale(monkeypatch):
    calls: list = []
    monkeypatch.setattr(redaction, "_secret_sources", [*redaction._secret_sources, counted_source(calls)])
    log_filter = RedactingFilter()
    assert filtered(log_filter, "a source-secret-1") == "a ***" and len(calls) == 1
    assert filtered(log_filter, "b source-secret-1") == "b ***" and len(calls) == 1  # the last set, not asked again
    time.sleep(0.6)
    assert filtered(log_filter, "b source-secret-1") == "b ***" and len(calls) == 1  # nor soon after: for refresh_every
    for expected in (2, 3):  # changed in this process: asked again at once, every time
        redaction.secrets_changed()
        filtered(log_filter, "c")
        assert len(calls) == expected
    log_filter.refresh_every = 0.5  # changed in another process: asked again once stale
    time.sleep(0.6)
    filtered(log_filter, "d")
    assert len(calls) == 4


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the fetch's own thread fails
def test_the_log_filter_passes_records_on_while_the_secrets_cannot_be_fetched(monkeypatch):
    calls: list = []
    down = [True]
    monkeypatch.setattr(redaction, "_secret_sources", [counted_source(calls, ("late-secret-1",), fail_while=lambda: down[0])])
    log_filter = RedactingFilter()
    assert filtered(log_filter, "x late-secret-1") == "x late-secret-1" and len(calls) == 1  # nothing to mask with yet
    assert filtered(log_filter, "y late-secret-1") == "y late-secret-1" and len(calls) == 1  # not asked again at once
    down[0] = False
    time.sleep(0.6)  # but soon
    assert filtered(log_filter, "z late-secret-1") == "z ***" and len(calls) == 2


def test_a_record_logged_while_the_secrets_are_fetched_starts_no_second_fetch(monkeypatch):
    """As the fetch's own database queries do: passed on as it is, and asked nothing."""
    kept: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            kept.append(record.getMessage())

    handler = Keep()
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("tests.redaction.fetching")
    monkeypatch.setattr(log, "propagate", False)
    log.addHandler(handler)
    calls: list = []

    def source(project_id):
        calls.append(project_id)
        if len(calls) == 1:  # once: were it fetched again, not once more and again
            log.warning("asking for the secrets")
        return ["fetched-secret-1"]

    monkeypatch.setattr(redaction, "_secret_sources", [source])
    try:
        log.warning("using fetched-secret-1")
    finally:
        log.removeHandler(handler)
    assert calls == [None] and kept == ["asking for the secrets", "using ***"]


def test_a_record_whose_message_cannot_be_formatted_is_passed_on():
    """For logging to report it when the handler formats it, rather than losing it."""
    record = logging.makeLogRecord({"msg": "%d items", "args": ("many",)})
    assert RedactingFilter().filter(record) is True


def test_a_hung_secret_source_holds_a_log_record_at_most_five_seconds_and_not_the_process(monkeypatch):
    release = threading.Event()
    fetching: list[threading.Thread] = []

    def hung(project_id):
        fetching.append(threading.current_thread())
        release.wait(20)
        return ["never-fetched-1"]

    monkeypatch.setattr(redaction, "_secret_sources", [hung])
    assert RedactingFilter.fetch_wait == 5.0
    started = time.monotonic()
    try:
        assert filtered(RedactingFilter(), "a never-fetched-1") == "a never-fetched-1"
        assert time.monotonic() - started < 10
        assert fetching[0].daemon  # a hung fetch does not keep the process from exiting
    finally:
        release.set()
    # The bound is the filter's own: shortened, a record waits that long and not longer.
    release.clear()
    monkeypatch.setattr(RedactingFilter, "fetch_wait", 0.3)
    started = time.monotonic()
    try:
        assert filtered(RedactingFilter(), "a never-fetched-1") == "a never-fetched-1"
        assert time.monotonic() - started < 3
    finally:
        release.set()
