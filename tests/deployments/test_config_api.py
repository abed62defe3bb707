"""The config API: scopes, write-only secrets, files, checks against the declared
configurables, and bad input that stores nothing. Fuzzed with hypothesis."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builds.descriptor import parse_descriptor
from builds.models import Build
from builds.services import component_create
from environments.models import ConfigValue
from environments.services import project_create
from tests.conftest import messages_of

pytestmark = pytest.mark.django_db

DESCRIPTOR = """\
schemaVersion: 1
type: service
endpoints:
  - name: web
    port: 8080
configurations:
  - name: GREETING
    required: true
  - name: DB_PASSWORD
    secret: true
    required: true
  - name: MAX_CONNECTIONS
    type: integer
    default: 10
  - name: DEBUG
    type: boolean
  - name: app-config
    type: file
    mountPath: /etc/app/config.toml
"""
URL = "/api/projects/shop/components/web/config/"


@pytest.fixture
def component(make_repo):
    component = component_create(project=project_create(name="shop"), name="web", repository=str(make_repo().path))
    # A finished build whose descriptor declares the configurables: no Docker needed here.
    Build.objects.create(
        component=component,
        status=Build.SUCCEEDED,
        commit="a" * 40,
        descriptor=parse_descriptor(DESCRIPTOR).data,
        digest="sha256:" + "0" * 64,
    )
    return component


def put(api, body, environment=None):
    url = URL + (f"?environment={environment}" if environment else "")
    return api.put(url, body, format="json")


def test_set_list_and_delete_in_both_scopes(api, component):
    assert put(api, {"key": "GREETING", "value": "hello"}).status_code == 200
    assert put(api, {"key": "GREETING", "value": "hello dev"}, "development").status_code == 200
    assert put(api, {"key": "MAX_CONNECTIONS", "value": 25}).status_code == 200
    assert put(api, {"key": "DEBUG", "value": True}, "development").status_code == 200

    independent = api.get(URL).json()
    assert [(v["key"], v["value"], v["environment"]) for v in independent] == [("GREETING", "hello", None), ("MAX_CONNECTIONS", "25", None)]
    dev = api.get(URL + "?environment=development").json()
    assert [(v["key"], v["value"]) for v in dev] == [("DEBUG", "true"), ("GREETING", "hello dev")]
    assert api.get(URL + "?environment=production").json() == []

    # Setting the same value again makes no new version.
    first = put(api, {"key": "GREETING", "value": "hello"}).json()["version"]
    assert put(api, {"key": "GREETING", "value": "hello"}).json()["version"] == first
    assert put(api, {"key": "GREETING", "value": "hello again"}).json()["version"] != first

    assert api.delete(URL + "?key=GREETING&environment=development").status_code == 204
    assert [v["key"] for v in api.get(URL + "?environment=development").json()] == ["DEBUG"]
    # The old versions stay, for the deployments that used them.
    assert ConfigValue.objects.filter(key="GREETING").count() == 3
    missing = api.delete(URL + "?key=GREETING&environment=development")
    assert missing.status_code == 404 and "GREETING" in missing.json()["detail"]


def test_secrets_are_write_only(api, component, admin_client):
    marker = "s3cr3t-marker-value-9f2c"
    response = put(api, {"key": "DB_PASSWORD", "value": marker, "secret": True})
    assert response.status_code == 200
    assert marker not in response.content.decode()
    assert response.json()["secret"] is True and "value" not in response.json()
    listed = api.get(URL).json()
    assert listed[0]["key"] == "DB_PASSWORD" and listed[0]["secret"] is True and "value" not in listed[0]
    assert marker not in json.dumps(listed)

    # A configurable the build declares secret is kept secret even when set as plain.
    plain = put(api, {"key": "DB_PASSWORD", "value": marker + "-2"}, "development").json()
    assert plain["secret"] is True and "value" not in plain

    # Not in the admin either: neither the list nor a value's page shows it.
    item = ConfigValue.objects.filter(key="DB_PASSWORD").first()
    for url in ("/admin/environments/configvalue/", f"/admin/environments/configvalue/{item.pk}/change/"):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert marker not in page.content.decode()
    # Stored encrypted: the column holds ciphertext only.
    raw = ConfigValue.objects.filter(key="DB_PASSWORD").values_list("plain", flat=True)
    assert all(v is None for v in raw)


def test_file_values(api, component):
    content = b"name = 'shop'\nport = 8080\n"
    response = api.put(URL, {"key": "app-config", "file": SimpleUploadedFile("config.toml", content)}, format="multipart")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["file"] is True and body["size"] == len(content) and body["filename"] == "config.toml" and "value" not in body
    secret = api.put(
        URL + "?environment=development",
        {"key": "tls.key", "secret": "true", "file": SimpleUploadedFile("tls.key", b"-----BEGIN KEY-----\nabc\n")},
        format="multipart",
    )
    assert secret.status_code == 200 and secret.json()["secret"] is True
    # A file configurable may also be given as text.
    assert put(api, {"key": "app-config", "value": "name = 'x'\n"}, "development").json()["file"] is True
    assert ConfigValue.objects.get(key="app-config", environment=None, current=True).value == content


@pytest.mark.parametrize(
    ("request_kwargs", "field", "status"),
    [
        ({"body": {"key": "GREETING", "value": "x"}, "environment": "staging"}, "environment", 404),
        ({"body": {"key": "1BAD", "value": "x"}}, "key", 400),
        ({"body": {"key": "BAD-KEY", "value": "x"}}, "key", 400),
        ({"body": {"key": "", "value": "x"}}, "key", 400),
        ({"body": {"key": "MAX_CONNECTIONS", "value": "ten"}}, "value", 400),
        ({"body": {"key": "MAX_CONNECTIONS", "value": 1.5}}, "value", 400),
        ({"body": {"key": "DEBUG", "value": "maybe"}}, "value", 400),
        ({"body": {"key": "GREETING", "value": {"a": 1}}}, "value", 400),
        ({"body": {"key": "GREETING", "value": None}}, "value", 400),
        ({"body": {"key": "GREETING", "value": "x" * (32 * 1024 + 1)}}, "value", 400),
        ({"body": {"key": "GREETING", "value": "a\x00b"}}, "value", 400),
        ({"body": {"key": "GREETING"}}, "value", 400),
        ({"body": {"key": "GREETING", "value": "x", "colour": "red"}}, "colour", 400),
        ({"body": ["GREETING", "x"]}, "non_field_errors", 400),
    ],
)
def test_bad_input_is_refused_and_stores_nothing(api, component, request_kwargs, field, status):
    response = put(api, request_kwargs["body"], request_kwargs.get("environment"))
    assert response.status_code == status, response.content
    body = response.json()
    assert body["detail"] and field in body["errors"], body
    assert ConfigValue.objects.count() == 0


def test_bad_files_are_refused_and_store_nothing(api, component, settings):
    no_file = api.put(URL, {"key": "app-config", "secret": "true"}, format="multipart")
    assert no_file.status_code == 400 and "file" in no_file.json()["errors"]
    both = api.put(URL, {"key": "app-config", "value": "x", "file": SimpleUploadedFile("a", b"x")}, format="multipart")
    assert both.status_code == 400 and {"file", "value"} & set(both.json()["errors"])
    typed = api.put(URL, {"key": "MAX_CONNECTIONS", "file": SimpleUploadedFile("n", b"10")}, format="multipart")
    assert typed.status_code == 400 and "declared as integer: set it as a value" in typed.json()["detail"]
    settings.CONFIG_FILE_MAX_BYTES = 1000
    big = api.put(URL, {"key": "app-config", "file": SimpleUploadedFile("big", b"x" * 1001)}, format="multipart")
    assert big.status_code == 400 and "1001 bytes" in big.json()["detail"]
    huge = api.put(URL, {"key": "app-config", "file": SimpleUploadedFile("huge", b"x" * 5000)}, format="multipart")
    assert huge.status_code == 413
    assert ConfigValue.objects.count() == 0


def test_the_config_api_needs_a_token(client, component):
    assert client.get(URL).status_code == 401
    assert client.put(URL, {"key": "A", "value": "b"}, content_type="application/json").status_code == 401


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.fixed_dictionaries(
            {"key": st.one_of(st.sampled_from(["GREETING", "MAX_CONNECTIONS", "DEBUG", "app-config", "X_1"]), st.text(max_size=20))},
            optional={"value": json_values, "secret": json_values},
        ),
        json_values,
    )
)
def test_fuzz_put_never_fails_unhandled(api, component, body):
    before = ConfigValue.objects.count()
    response = put(api, body)
    assert response.status_code in (200, 400), (body, response.content)
    if response.status_code == 400:
        assert response.json()["detail"]
        assert ConfigValue.objects.count() == before
    else:
        item = ConfigValue.objects.get(pk=response.json()["version"])
        assert item.key == body["key"] and item.current


def test_a_refused_secret_is_not_echoed(api, component):
    # DB_PASSWORD is a declared secret; a wrong type for a secret never quotes the value.
    Build.objects.filter(component=component).update(
        descriptor=parse_descriptor(
            DESCRIPTOR.replace("  - name: DEBUG\n", "  - name: PIN\n    type: integer\n    secret: true\n  - name: DEBUG\n")
        ).data
    )
    response = put(api, {"key": "PIN", "value": "not-a-number-but-secret"})
    assert response.status_code == 400
    assert "not-a-number-but-secret" not in response.content.decode()
    assert "must be an integer" in response.json()["detail"]


def test_the_deploy_page_sets_values_files_and_secrets(logged_in, component):
    url = "/projects/shop/components/web/deploy/config"
    empty = logged_in.post(url, {"key": "GREETING", "value": "", "environment": ""}, follow=True)
    assert "Give a value, or choose a file." in messages_of(empty)
    logged_in.post(url, {"key": "GREETING", "value": "hi", "environment": "development"})
    logged_in.post(url, {"key": "DB_PASSWORD", "value": "page-secret-marker", "secret": "on", "environment": ""})
    upload = logged_in.post(url, {"key": "app-config", "file": SimpleUploadedFile("c.toml", b"a = 1\n"), "environment": ""}, follow=True)
    assert "app-config is set" in messages_of(upload)[-1]
    assert ConfigValue.objects.get(key="GREETING").environment.name == "development"
    assert ConfigValue.objects.get(key="app-config").value == b"a = 1\n"
    page = logged_in.get("/projects/shop/components/web/deploy/").content.decode()
    assert "page-secret-marker" not in page and "secret" in page
    removed = logged_in.post(url + "/remove", {"key": "GREETING", "environment": "development"}, follow=True)
    assert "GREETING is removed" in messages_of(removed)[-1]
    assert not ConfigValue.objects.filter(key="GREETING", current=True).exists()
