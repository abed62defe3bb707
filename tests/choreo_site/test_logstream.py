"""The one log writer (redact, store, stream) and the WebSocket consumer that replays
stored lines from an offset, then streams live ones, through the real Redis layer."""

import asyncio
import base64
import threading
from urllib.parse import quote

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from builds.models import Build
from builds.services import component_create
from choreo_site.consumers import LogConsumer
from choreo_site.logstream import LogWriter, read_text
from choreo_site.redaction import Redactor
from environments.services import project_create

pytestmark = pytest.mark.django_db(transaction=True)


def test_redactor_masks_plain_base64_and_url_encoded_forms():
    secret = "p@ss word/with+stuff"
    redact = Redactor([secret, "ab"])  # too short to mask safely: ignored
    text = f"a {secret} b {base64.b64encode(secret.encode()).decode()} c {quote(secret, safe='')} d ab"
    out = redact(text)
    assert secret not in out
    assert base64.b64encode(secret.encode()).decode().rstrip("=") not in out
    assert quote(secret, safe="") not in out
    assert out.count("***") == 3
    assert out.endswith("d ab")


def test_writer_stores_complete_lines_and_resumes_numbering():
    writer = LogWriter("build-900", secrets=["hunter2-secret"])
    writer.write("one\ntw")
    writer.write("o hunter2-secret\r\nthree")
    writer.flush()
    assert read_text("build-900") == "one\ntwo ***\nthree\n"
    again = LogWriter("build-900")
    again.line("four")
    assert read_text("build-900").splitlines()[-1] == "four"


def test_a_huge_line_is_cut_with_a_marker_and_a_secret_at_the_cut_is_still_masked(settings):
    """Issue 10, finding 10: a 30 MB line took 25 s (string concatenation, quadratic)."""
    settings.LOG_MAX_LINE = 1000
    secret = "s3cret-at-the-cut"
    writer = LogWriter("build-901", secrets=[secret])
    line = "x" * 995 + secret + "y" * (30 * 1024 * 1024)
    for start in range(0, len(line), 64 * 1024):  # as a build's output arrives: in chunks
        writer.write(line[start : start + 64 * 1024])
    writer.write("\nnext line\n")
    writer.end("failed")
    stored = read_text("build-901").splitlines()
    assert stored[0].startswith("x" * 995 + "***"[:5])
    assert secret not in stored[0] and secret[:4] not in stored[0][995:]
    assert stored[0].endswith(f" … [{len(line) - 1000} more characters cut]")
    assert len(stored[0]) < 1100
    assert stored[1] == "next line"


def test_a_log_keeps_at_most_its_limit_then_says_what_it_dropped(settings):
    settings.LOG_MAX_BYTES = 10_000
    writer = LogWriter("build-902")
    for i in range(3000):
        writer.line(f"line {i:05d} of a chatty build")
    writer.end("succeeded")
    stored = read_text("build-902").splitlines()
    assert sum(len(line) for line in stored) < 10_000 + 300
    assert stored[-2].startswith("[this log reached its limit of 10000 characters (LOG_MAX_BYTES)")
    kept = len(stored) - 2
    assert stored[-1] == f"[{3000 - kept} more line(s) were not kept]"
    # A writer made later for the same stream (a resumed rollout) keeps nothing more either.
    again = LogWriter("build-902")
    again.line("after the limit")
    assert "after the limit" not in read_text("build-902")


def _component():
    return component_create(project=project_create(name="logs"), name="web", repository=_repo())


def _repo():
    import os
    import subprocess
    import tempfile

    path = tempfile.mkdtemp()
    subprocess.run(["git", "init", "-q", "-b", "main", path], check=True)
    os.makedirs(f"{path}/.choreo")
    with open(f"{path}/.choreo/component.yaml", "w") as descriptor:
        descriptor.write("schemaVersion: 1\ntype: service\n")
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@l", "commit", "-q", "-m", "x"], cwd=path, check=True)
    return path


async def _connect(path, user):
    communicator = WebsocketCommunicator(LogConsumer.as_asgi(), path)
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"kwargs": {"stream": path.split("/")[3]}}
    return communicator


def in_own_loop(coroutine_function):
    """Run an async test body on a fresh event loop in its own thread, so it never meets
    a loop another fixture (Playwright's sync API) keeps in the main thread."""

    def run(*args, **kwargs):
        errors = []

        def target():
            try:
                asyncio.run(coroutine_function(*args, **kwargs))
            except BaseException as exc:  # re-raised in the test's thread
                errors.append(exc)

        thread = threading.Thread(target=target)
        thread.start()
        thread.join(60)
        if errors:
            raise errors[0]
        assert not thread.is_alive(), "the async test body did not finish in 60s"

    run.__name__ = coroutine_function.__name__
    return run


def test_consumer_replays_from_offset_then_streams_live(admin_user):
    in_own_loop(_replay_then_live)(admin_user)


async def _replay_then_live(admin_user):
    component = await database_sync_to_async(_component)()
    build = await database_sync_to_async(Build.objects.create)(component=component, commit="0" * 40, status=Build.RUNNING)
    writer = await database_sync_to_async(LogWriter)(build.log_stream)
    for i in range(5):
        await database_sync_to_async(writer.line)(f"stored {i}")

    communicator = await _connect(f"/ws/logs/{build.log_stream}/?offset=2", admin_user)
    communicator.scope["query_string"] = b"offset=2"
    connected, _ = await communicator.connect()
    assert connected
    replay = await communicator.receive_json_from(timeout=5)
    assert [line["text"] for line in replay["lines"]] == ["stored 2", "stored 3", "stored 4"]
    await database_sync_to_async(writer.line)("live 5")
    live = await communicator.receive_json_from(timeout=5)
    assert live["lines"] == [{"seq": 5, "text": "live 5"}]
    await database_sync_to_async(Build.objects.filter(pk=build.pk).update)(status=Build.SUCCEEDED)
    await sync_to_async(writer.end)(Build.SUCCEEDED)
    end = await communicator.receive_json_from(timeout=5)
    assert end == {"type": "end", "status": "succeeded", "next": 6}
    await communicator.disconnect()


def test_consumer_refuses_anonymous_and_unknown_streams(admin_user):
    in_own_loop(_refusals)(admin_user)


async def _refusals(admin_user):
    anonymous = await _connect("/ws/logs/build-1/", AnonymousUser())
    connected, code = await anonymous.connect()
    assert not connected and code == 4401
    unknown = await _connect("/ws/logs/build-424242/", admin_user)
    connected, code = await unknown.connect()
    assert not connected and code == 4404
