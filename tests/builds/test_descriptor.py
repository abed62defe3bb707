import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from builds.descriptor import DescriptorError, parse_descriptor, validate_schedule
from environments.values import coerce_config_value

FULL = """\
schemaVersion: 1
type: service
build:
  dockerfile: Dockerfile
  context: .
endpoints:
  - name: api
    port: 8080
    type: REST
    basePath: /
    schemaFile: openapi.yaml
    visibility: public
health:
  http: { path: /healthz, port: 8080 }
  interval: 1s
  timeout: 1s
  startupTimeout: 60s
replicas: 2
configurations:
  - name: GREETING
    type: string
    required: true
  - name: DB_PASSWORD
    type: string
    secret: true
    required: true
  - name: MAX_CONNECTIONS
    type: integer
    default: 10
  - name: app-config
    type: file
    mountPath: /etc/app/config.toml
"""


def test_the_spec_example_parses():
    d = parse_descriptor(FULL)
    assert d.type == "service"
    assert d.endpoints[0] == {
        "name": "api",
        "port": 8080,
        "type": "REST",
        "basePath": "/",
        "visibility": "public",
        "schemaFile": "openapi.yaml",
    }
    assert d.data["health"]["http"] == {"path": "/healthz", "port": 8080}
    assert d.data["health"]["startupTimeout"] == 60
    assert d.data["replicas"] == 2
    assert d.data["configurations"][2]["default"] == "10"
    assert d.data["configurations"][3]["mountPath"] == "/etc/app/config.toml"


def test_scheduled_task():
    d = parse_descriptor("schemaVersion: 1\ntype: scheduled-task\nschedule: '*/5 * * * *'\ntimezone: Europe/Paris\n")
    assert d.data["schedule"] == "*/5 * * * *"
    assert parse_descriptor("schemaVersion: 1\ntype: scheduled-task\nschedule: '@every 30s'\n").data["schedule"] == "@every 30s"


@pytest.mark.parametrize(
    "text, key, reason",
    [
        ("", "", "must be a mapping"),
        ("schemaVersion: 2\ntype: service\n", "schemaVersion", "must be 1"),
        ("schemaVersion: 1\ntype: daemon\n", "type", "must be one of"),
        ("schemaVersion: 1\n", "type", "is required"),
        ("schemaVersion: 1\ntype: service\nreplica: 2\n", "replica", "unknown key"),
        ("schemaVersion: 1\ntype: service\nreplicas: zero\n", "replicas", "integer"),
        ("schemaVersion: 1\ntype: service\nreplicas: 0\n", "replicas", "integer from 1"),
        ("schemaVersion: 1\ntype: service\nendpoints:\n  - name: api\n    port: http\n", "endpoints[0].port", "integer from 1 to 65535"),
        ("schemaVersion: 1\ntype: service\nendpoints:\n  - name: api\n    port: 80\n    type: SOAP\n", "endpoints[0].type", "one of"),
        (
            "schemaVersion: 1\ntype: service\nendpoints:\n  - {name: a, port: 80}\n  - {name: a, port: 81}\n",
            "endpoints[1].name",
            "duplicate",
        ),
        ("schemaVersion: 1\ntype: service\nendpoints:\n  - {name: a, port: 80, visibility: world}\n", "endpoints[0].visibility", "one of"),
        ("schemaVersion: 1\ntype: service\nbuild: {dockerfile: ../Dockerfile}\n", "build.dockerfile", "inside the component"),
        ("schemaVersion: 1\ntype: service\nbuild: {dockerfile: /etc/passwd}\n", "build.dockerfile", "inside the component"),
        ("schemaVersion: 1\ntype: service\nhealth: {interval: 1s}\n", "health", "exactly one of"),
        ("schemaVersion: 1\ntype: service\nhealth: {tcp: {port: 80}, interval: soon}\n", "health.interval", "duration"),
        ("schemaVersion: 1\ntype: service\nhealth: {exec: {command: []}}\n", "health.exec.command", "non-empty list"),
        ("schemaVersion: 1\ntype: scheduled-task\n", "schedule", "required"),
        ("schemaVersion: 1\ntype: scheduled-task\nschedule: '61 * * * *'\n", "schedule", "not a valid cron"),
        ("schemaVersion: 1\ntype: scheduled-task\nschedule: '* * *'\n", "schedule", "5 fields"),
        ("schemaVersion: 1\ntype: scheduled-task\nschedule: '@every 0s'\n", "schedule", "at least 1s"),
        ("schemaVersion: 1\ntype: scheduled-task\nschedule: '* * * * *'\ntimezone: Mars/Base\n", "timezone", "unknown time zone"),
        ("schemaVersion: 1\ntype: service\nschedule: '* * * * *'\n", "schedule", "only a scheduled-task"),
        ("schemaVersion: 1\ntype: manual-task\nendpoints: [{name: a, port: 1}]\n", "endpoints", "no endpoints"),
        ("schemaVersion: 1\ntype: service\nconfigurations: [{name: 1BAD}]\n", "configurations[0].name", "environment variable"),
        (
            "schemaVersion: 1\ntype: service\nconfigurations: [{name: A, type: integer, default: ten}]\n",
            "configurations[0].default",
            "integer",
        ),
        ("schemaVersion: 1\ntype: service\nconfigurations: [{name: A, secret: true, default: x}]\n", "configurations[0].default", "secret"),
        ("schemaVersion: 1\ntype: service\nconfigurations: [{name: f, type: file}]\n", "configurations[0].mountPath", "absolute mountPath"),
        ("schemaVersion: 1\ntype: service\nconfigurations: [{name: A}, {name: A}]\n", "configurations[1].name", "duplicate"),
        ("schemaVersion: 1\ntype: service\ntype: web-app\n", "", "duplicate key"),
        ("schemaVersion: 1\ntype: [service\n", "", "not valid YAML"),
        # Issue 10: YAML 1.2 rules. Under YAML 1.1, 1:30 was the base-60 number 90 and yes was true.
        ("schemaVersion: 1\ntype: service\nendpoints:\n  - name: api\n    port: 1:30\n", "endpoints[0].port", "got '1:30'"),
        ("schemaVersion: 1\ntype: service\nconfigurations: [{name: A, required: yes}]\n", "configurations[0].required", "got 'yes'"),
        ("schemaVersion: 1\ntype: service\nconfigurations: [{name: A, secret: on}]\n", "configurations[0].secret", "got 'on'"),
        ("schemaVersion: 1\ntype: service\nresources: {memory: lots}\n", "resources.memory", "from 4Mi to 64Gi"),
        ("schemaVersion: 1\ntype: service\nresources: {memory: 1Ti}\n", "resources.memory", "from 4Mi to 64Gi"),
        ("schemaVersion: 1\ntype: service\nresources: {cpu: 0}\n", "resources.cpu", "from 0.01 to 64"),
        ("schemaVersion: 1\ntype: service\nresources: {cpu: two}\n", "resources.cpu", "from 0.01 to 64"),
        ("schemaVersion: 1\ntype: service\nresources: {disk: 1Gi}\n", "resources.disk", "unknown key"),
        # Issue 10: an ingress slot holds 16 servers, old and new replicas together.
        ("schemaVersion: 1\ntype: service\nreplicas: 9\n", "replicas", "must be at most 8"),
    ],
)
def test_bad_descriptor_names_file_key_and_reason(text, key, reason):
    with pytest.raises(DescriptorError) as info:
        parse_descriptor(text, path="svc/.choreo/component.yaml")
    err = info.value
    assert err.key == key
    assert reason in err.reason
    assert str(err).startswith("svc/.choreo/component.yaml: ")
    assert key in str(err)


def test_non_utf8_and_oversized_are_refused():
    with pytest.raises(DescriptorError, match="not UTF-8"):
        parse_descriptor(b"\xff\xfe")
    with pytest.raises(DescriptorError, match="larger than"):
        parse_descriptor(b"#" * (300 * 1024))


@pytest.mark.parametrize(
    "ctype, value, expected",
    [
        ("integer", "10", "10"),
        ("integer", 7, "7"),
        ("boolean", "TRUE", "true"),
        ("boolean", False, "false"),
        ("number", "1.5e3", "1.5e3"),
        ("string", 5, "5"),
    ],
)
def test_config_values_are_coerced(ctype, value, expected):
    assert coerce_config_value(ctype, value) == expected


@pytest.mark.parametrize(
    "ctype, value",
    [("integer", "1.5"), ("integer", True), ("boolean", "yes"), ("number", "nan"), ("number", float("inf")), ("string", None)],
)
def test_bad_config_values_are_refused(ctype, value):
    with pytest.raises(ValueError):
        coerce_config_value(ctype, value)


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), st.text(max_size=20))
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=25,
)
known_keys = st.sampled_from(
    ["schemaVersion", "type", "build", "endpoints", "health", "replicas", "schedule", "timezone", "configurations"]
)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=400))
def test_fuzz_any_text_gives_a_descriptor_or_a_descriptor_error(text):
    try:
        parse_descriptor(text)
    except DescriptorError as err:
        assert str(err).startswith(".choreo/component.yaml: ")


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(known_keys, yaml_values, max_size=9), st.sampled_from(["service", "web-app", "scheduled-task", "manual-task"]))
def test_fuzz_structures_near_the_schema(doc, ctype):
    doc = {"schemaVersion": 1, "type": ctype, **{k: v for k, v in doc.items() if k not in ("schemaVersion", "type")}}
    try:
        parse_descriptor(yaml.safe_dump(doc))
    except DescriptorError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_fuzz_schedules(expression):
    try:
        validate_schedule(expression)
    except ValueError as err:
        assert str(err)


def test_yaml_1_2_numbers():
    d = parse_descriptor("schemaVersion: 1\ntype: service\nreplicas: 08\nendpoints: [{name: a, port: 0o17}]\n", path="c.yaml")
    assert d.data["replicas"] == 8  # decimal, not an octal error
    assert d.data["endpoints"][0]["port"] == 15


def test_resources():
    d = parse_descriptor("schemaVersion: 1\ntype: service\nresources: {memory: 256Mi, cpu: 500m}\n", path="c.yaml")
    assert d.data["resources"] == {"memory": 256 * 1024**2, "cpu": 0.5}
    d = parse_descriptor("schemaVersion: 1\ntype: service\nresources: {memory: 1G, cpu: 2}\n", path="c.yaml")
    assert d.data["resources"] == {"memory": 1000**3, "cpu": 2.0}
    assert parse_descriptor("schemaVersion: 1\ntype: service\n", path="c.yaml").data["resources"] == {"memory": None, "cpu": None}
