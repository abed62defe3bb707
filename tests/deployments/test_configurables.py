"""The configurable checks and what a replica receives (deployments.configurables), with
real configuration rows and no Docker: fast enough to run for every mutant of the rules.
The same rules end to end, through real replicas, are test_config's."""

import pytest

from builds.descriptor import parse_descriptor
from deployments import configurables
from environments.services import config_set, config_snapshot, project_create

pytestmark = pytest.mark.django_db(transaction=True)

DESCRIPTOR = parse_descriptor(
    """\
schemaVersion: 1
type: service
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
  - name: banner
    type: file
    mountPath: /etc/app/banner.txt
    default: hello
""",
    path=".choreo/component.yaml",
).data


@pytest.fixture
def project():
    return project_create(name="shop")


def values(project, environment=None):
    dev = project.environments.get(name="development")
    return configurables.merged(
        config_snapshot(project=project, component="web"), config_snapshot(project=project, component="web", environment=dev)
    )


def put(project, key, value, *, environment=None, **kind):
    env = project.environments.get(name=environment) if environment else None
    config_set(project=project, component="web", environment=env, key=key, value=value, **kind)


def test_each_missing_or_invalid_value_is_named_with_its_reason(project):
    assert configurables.problems(DESCRIPTOR, {}) == {
        "GREETING": ["required, and has no value"],
        "DB_PASSWORD": ["required, and has no value"],
    }
    put(project, "GREETING", b"file", is_file=True)
    put(project, "DB_PASSWORD", "plain-password")
    put(project, "MAX_CONNECTIONS", "many")
    put(project, "DEBUG", "perhaps")
    assert configurables.problems(DESCRIPTOR, values(project)) == {
        "GREETING": ["declared as string, but it was set as a file"],
        "DB_PASSWORD": ["declared secret, but it was set as a plain value: set it again as a secret"],
        "MAX_CONNECTIONS": ["declared as integer: it must be an integer, got 'many'"],
        "DEBUG": ["declared as boolean: it must be true or false, got 'perhaps'"],
    }
    put(project, "GREETING", "hello")
    put(project, "DB_PASSWORD", "s3cret-password", secret=True)
    put(project, "MAX_CONNECTIONS", "20")
    put(project, "DEBUG", "true")
    assert configurables.problems(DESCRIPTOR, values(project)) == {}
    assert configurables.problems(None, {}) == {} and configurables.declared(None) == {}


def test_an_invalid_secret_is_never_quoted(project):
    spec = parse_descriptor(
        "schemaVersion: 1\ntype: service\nconfigurations:\n  - name: PORT\n    type: integer\n    secret: true\n",
        path=".choreo/component.yaml",
    ).data
    put(project, "PORT", "not-a-number-secret", secret=True)
    found = configurables.problems(spec, values(project))
    assert list(found) == ["PORT"] and "not-a-number-secret" not in found["PORT"][0]


def test_the_environment_specific_value_wins(project):
    put(project, "GREETING", "everywhere")
    put(project, "GREETING", "development only", environment="development")
    put(project, "DB_PASSWORD", "everywhere-pw", secret=True)
    merged = values(project)
    assert merged["GREETING"].text == "development only" and merged["DB_PASSWORD"].text == "everywhere-pw"
    assert configurables.merged({"GREETING": 999_999}, {}) == {}  # a version that is gone is no value


def test_require_refuses_naming_every_key_at_fault(project):
    put(project, "MAX_CONNECTIONS", "x")
    with pytest.raises(Exception) as refused:
        configurables.require(DESCRIPTOR, values(project), action="deploy build 3", environment_name="development")
    assert refused.value.errors == {
        "DB_PASSWORD": ["required, and has no value"],
        "GREETING": ["required, and has no value"],
        "MAX_CONNECTIONS": ["declared as integer: it must be an integer, got 'x'"],
    }
    assert str(refused.value) == (
        "Cannot deploy build 3: the configuration of development is missing or invalid: DB_PASSWORD (required, and has no value); "
        "GREETING (required, and has no value); MAX_CONNECTIONS (declared as integer: it must be an integer, got 'x'). "
        "Set the values, then try again."
    )
    put(project, "GREETING", "hi")
    put(project, "DB_PASSWORD", "pw-0123456789", secret=True)
    put(project, "MAX_CONNECTIONS", "7")
    configurables.require(DESCRIPTOR, values(project), action="deploy", environment_name="development")  # no refusal


def test_what_a_replica_receives(project):
    put(project, "GREETING", "hi")
    put(project, "DB_PASSWORD", "pw-0123456789", secret=True)
    put(project, "DEBUG", "True")
    put(project, "app-config", b"name = 'shop'\n", is_file=True)
    put(project, "EXTRA", "undeclared")
    put(project, "tls.key", b"KEY", is_file=True, secret=True)
    put(project, "notes", b"plain file", is_file=True)
    env, files = configurables.replica_configuration(DESCRIPTOR, values(project))
    assert env == {"GREETING": "hi", "DB_PASSWORD": "pw-0123456789", "DEBUG": "true", "MAX_CONNECTIONS": "10", "EXTRA": "undeclared"}
    assert sorted((f.path, f.content, f.secret) for f in files) == [
        ("/etc/app/banner.txt", b"hello", False),  # a file configurable's default
        ("/etc/app/config.toml", b"name = 'shop'\n", False),
        ("/run/config/notes", b"plain file", False),
        ("/run/secrets/tls.key", b"KEY", True),
    ]


def test_file_configurables_and_secret_declarations(project):
    put(project, "GREETING", "hi")
    put(project, "DB_PASSWORD", "pw-0123456789", secret=True)
    put(project, "app-config", b"[app]\n", is_file=True, secret=True)
    put(project, "banner", b"welcome", is_file=True)
    put(project, "MAX_CONNECTIONS", "12")
    assert configurables.problems(DESCRIPTOR, values(project)) == {}  # a file for a file configurable
    env, files = configurables.replica_configuration(DESCRIPTOR, values(project))
    assert env["MAX_CONNECTIONS"] == "12"
    assert sorted((f.path, f.content, f.secret) for f in files) == [
        ("/etc/app/banner.txt", b"welcome", False),  # the value, not also the default
        ("/etc/app/config.toml", b"[app]\n", True),
    ]
    # Declared secret but stored plain, and invalid: the refusal does not quote it either.
    spec = parse_descriptor(
        "schemaVersion: 1\ntype: service\nconfigurations:\n  - name: PORT\n    type: integer\n    secret: true\n",
        path=".choreo/component.yaml",
    ).data
    put(project, "PORT", "plain-but-declared-secret")
    assert "plain-but-declared-secret" not in str(configurables.problems(spec, values(project)))


def test_what_a_deployment_would_get_now_is_this_component_and_environment(project):
    from builds.models import Component

    web = Component.objects.create(project=project, name="web", repository="/nonexistent")
    put(project, "GREETING", "everywhere")
    put(project, "GREETING", "in development", environment="development")
    put(project, "ONLY_PRODUCTION", "p", environment="production")
    config_set(project=project, component="api", environment=None, key="API_KEY", value="x")
    other = project_create(name="other")
    config_set(project=other, component="web", environment=None, key="ELSEWHERE", value="y")
    now = configurables.current(web, project.environments.get(name="development"))
    assert {key: value.text for key, value in now.items()} == {"GREETING": "in development"}
    now = configurables.current(web, project.environments.get(name="production"))
    assert {key: value.text for key, value in now.items()} == {"GREETING": "everywhere", "ONLY_PRODUCTION": "p"}


def test_a_deployment_s_configuration_is_listed_by_name_scope_and_fingerprint_never_by_value(project):
    from deployments.models import Deployment, Release

    put(project, "GREETING", "everywhere-greeting")
    put(project, "GREETING", "development-greeting", environment="development")
    put(project, "DB_PASSWORD", "pw-0123456789", secret=True)
    put(project, "app-config", b"name = 'shop'\n", is_file=True)
    dev = project.environments.get(name="development")
    deployment = Deployment(
        release=Release(config=config_snapshot(project=project, component="web")),
        config=config_snapshot(project=project, component="web", environment=dev),
    )
    now = values(project)
    assert configurables.config_keys(deployment) == [
        {"key": key, "secret": secret, "file": file, "scope": scope, "hash": now[key].fingerprint[:16]}
        for key, secret, file, scope in [
            ("DB_PASSWORD", True, False, "all environments"),
            ("GREETING", False, False, "environment"),
            ("app-config", False, True, "all environments"),
        ]
    ]
    assert all(len(now[key].fingerprint) > 16 for key in now)
    listed = str(configurables.config_keys(deployment))
    assert not any(value in listed for value in ("greeting", "pw-0123456789", "shop"))


def test_changes_name_the_keys_added_removed_and_given_another_value_compared_by_fingerprint(project):
    from environments.services import config_delete

    for key, value in (("GREETING", "hello"), ("SAME", "unchanged"), ("GONE", "soon gone"), ("ALSO_GONE", "x")):
        put(project, key, value)
    put(project, "TOKEN", "first-token", secret=True)
    old = values(project)
    put(project, "GREETING", "hello again")
    put(project, "TOKEN", "second-token", secret=True)
    put(project, "SAME", "unchanged")
    put(project, "Z_NEW", "z")
    put(project, "A_NEW", "a")
    for key in ("GONE", "ALSO_GONE"):
        config_delete(project=project, component="web", environment=None, key=key)
    new = values(project)
    assert configurables.changes(old, new) == {
        "added": ["A_NEW", "Z_NEW"],
        "removed": ["ALSO_GONE", "GONE"],
        "changed": ["GREETING", "TOKEN"],
    }
    assert configurables.changed_keys(old, new) == ["ALSO_GONE", "A_NEW", "GONE", "GREETING", "TOKEN", "Z_NEW"]
    assert configurables.changes(new, new) == {"added": [], "removed": [], "changed": []} and configurables.changed_keys(old, old) == []
