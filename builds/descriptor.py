"""The component descriptor, `.choreo/component.yaml`: strict parsing and validation.

Unknown keys, wrong types and bad values are refused with the file, the key and the
reason, e.g. `.choreo/component.yaml: endpoints[0].port: must be an integer from 1 to
65535, got 'http'`. The parsed result is plain data (`Descriptor.data`), stored with
each build, so later steps never read the repository again.
"""

from __future__ import annotations

import posixpath
import re
import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml
from cronsim import CronSim, CronSimError
from django.conf import settings

from choreo_site.errors import PlatformError
from environments.values import CONFIG_TYPES, ENV_NAME_RE, FILE_NAME_RE, coerce_config_value

DESCRIPTOR_PATH = ".choreo/component.yaml"
MAX_DESCRIPTOR_BYTES = 256 * 1024

COMPONENT_TYPES = ("service", "web-app", "scheduled-task", "manual-task")
SOURCE_KINDS = ("python", "node", "go", "static")  # builds from source, with no Dockerfile (builds/source.py)
MAX_RUN_LENGTH = 4096
ENDPOINT_TYPES = ("REST", "GraphQL", "gRPC", "TCP", "WS")
VISIBILITIES = ("public", "project")
MAX_REPLICAS = 20

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
EVERY_RE = re.compile(r"^@every\s+(\S+)$")
_ENDPOINT_NAME_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?$")


class DescriptorError(PlatformError):
    """A descriptor that cannot be used. `key` is the dotted path of the bad value."""

    def __init__(self, key: str, reason: str, *, path: str = DESCRIPTOR_PATH):
        self.key = key
        self.reason = reason
        self.path = path
        where = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(where + reason, errors={"descriptor": [where + reason]})


@dataclass(frozen=True)
class Descriptor:
    data: dict[str, Any]

    @property
    def type(self) -> str:
        return self.data["type"]

    @property
    def endpoints(self) -> list[dict[str, Any]]:
        return self.data["endpoints"]

    @property
    def dockerfile(self) -> str:
        return self.data["build"]["dockerfile"]

    @property
    def context(self) -> str:
        return self.data["build"]["context"]

    @property
    def source(self) -> str | None:
        """The source build's kind when the descriptor names one (`build.source`)."""
        return self.data["build"].get("source")


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# YAML 1.2's core schema instead of PyYAML's YAML 1.1 rules, under which `port: 1:30` was
# the base-60 number 90, `required: yes` was true and `010` was 8. Here those stay strings
# (refused by the checks below, naming the key) and `010` is ten.
_StrictLoader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
):
    _StrictLoader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))


def _construct_int(loader: _StrictLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def parse_duration(value: Any) -> float | None:
    """`500ms`, `1s`, `1.5m`, `2h` → seconds; None when it is not a duration."""
    if isinstance(value, str):
        match = _DURATION_RE.match(value.strip())
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    return None


def validate_schedule(expression: Any, tz: str = "UTC") -> str:
    """A 5-field cron expression or `@every <duration>` (at least 1 s); the reason if not."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError("must be a 5-field cron expression or '@every <duration>'")
    every = EVERY_RE.match(expression.strip())
    if every:
        seconds = parse_duration(every.group(1))
        if seconds is None or seconds < 1:
            raise ValueError(f"'@every' needs a duration of at least 1s such as '30s' or '5m', got {every.group(1)!r}")
        return expression.strip()
    if len(expression.split()) != 5:
        raise ValueError(f"must have 5 fields (minute hour day-of-month month day-of-week), got {len(expression.split())}")
    try:
        CronSim(expression, datetime.now(zoneinfo.ZoneInfo(tz)))
    except CronSimError as exc:
        raise ValueError(f"is not a valid cron expression: {exc}") from None
    return expression.strip()


class _Checker:
    def __init__(self, path: str):
        self.path = path

    def fail(self, key: str, reason: str):
        raise DescriptorError(key, reason, path=self.path)

    def mapping(self, key: str, value: Any, allowed: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping, got {_kind(value)}")
        for k in value:
            if not isinstance(k, str):
                self.fail(key, f"keys must be strings, got {k!r}")
            if k not in allowed:
                self.fail(_join(key, k), f"unknown key (allowed here: {', '.join(sorted(allowed))})")
        for k in sorted(required):
            if k not in value:
                self.fail(_join(key, k), "is required")
        return value

    def string(self, key: str, value: Any, *, pattern: re.Pattern | None = None, hint: str = "") -> str:
        if not isinstance(value, str) or not value:
            self.fail(key, f"must be a non-empty string, got {_kind(value)}")
        if pattern and not pattern.match(value):
            self.fail(key, f"{value!r} is not valid: {hint}")
        return value

    def choice(self, key: str, value: Any, choices: tuple[str, ...]) -> str:
        if value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def integer(self, key: str, value: Any, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(key, f"must be an integer from {low} to {high}, got {value!r}")
        return value

    def boolean(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {value!r}")
        return value

    def duration(self, key: str, value: Any, default: float, low: float = 0.001, high: float = 3600) -> float:
        if value is None:
            return default
        seconds = parse_duration(value)
        if seconds is None or not low <= seconds <= high:
            self.fail(key, f"must be a duration such as '500ms', '2s' or '1m', from {low:g}s to {high:g}s, got {value!r}")
        return seconds

    def relative_path(self, key: str, value: Any) -> str:
        self.string(key, value)
        normal = posixpath.normpath(value)
        if value.startswith("/") or normal == ".." or normal.startswith("../") or "\\" in value or "\x00" in value:
            self.fail(key, f"must be a path inside the component directory, got {value!r}")
        return normal


def _join(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping"}.get(
        type(value), type(value).__name__
    )


def parse_descriptor(text: str | bytes, *, path: str = DESCRIPTOR_PATH) -> Descriptor:
    """Parse and validate a descriptor's text. Raises DescriptorError naming file, key, reason."""
    if isinstance(text, bytes):
        if len(text) > MAX_DESCRIPTOR_BYTES:
            raise DescriptorError("", f"is larger than {MAX_DESCRIPTOR_BYTES // 1024} KiB", path=path)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise DescriptorError("", "is not UTF-8 text", path=path) from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DescriptorError("", f"is not valid YAML: {where}{problem}", path=path) from None
    except RecursionError:
        raise DescriptorError("", "is nested too deeply", path=path) from None
    return Descriptor(_validate(raw, _Checker(path)))


_QUANTITY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|K|M|G)?$")
_QUANTITY_UNITS = {None: 1, "K": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
MIN_MEMORY, MAX_MEMORY = 4 * 1024**2, 64 * 1024**3


def _validate_resources(raw: Any, c: _Checker) -> dict[str, Any]:
    """`resources: {memory: 256Mi, cpu: 0.5}` per replica or execution: memory in bytes, cpu in
    cores; None where the platform's default applies."""
    c.mapping("resources", raw, {"memory", "cpu"})
    memory = raw.get("memory")
    if memory is not None:
        match = _QUANTITY_RE.match(str(memory)) if isinstance(memory, (str, int)) and not isinstance(memory, bool) else None
        amount = int(float(match.group(1)) * _QUANTITY_UNITS[match.group(2)]) if match else 0
        if not MIN_MEMORY <= amount <= MAX_MEMORY:
            c.fail("resources.memory", f"must be an amount from 4Mi to 64Gi, such as 256Mi or 1Gi, got {memory!r}")
        memory = amount
    cpu = raw.get("cpu")
    if cpu is not None:
        cores = None
        if isinstance(cpu, (int, float)) and not isinstance(cpu, bool):
            cores = float(cpu)
        elif isinstance(cpu, str) and re.fullmatch(r"[0-9]{1,6}m", cpu):
            cores = int(cpu[:-1]) / 1000
        if cores is None or not 0.01 <= cores <= 64:
            c.fail("resources.cpu", f"must be a number of cores from 0.01 to 64, such as 0.5 or 500m, got {cpu!r}")
        cpu = cores
    return {"memory": memory, "cpu": cpu}


def _validate(raw: Any, c: _Checker) -> dict[str, Any]:
    top_keys = {
        "schemaVersion",
        "type",
        "build",
        "run",
        "endpoints",
        "health",
        "replicas",
        "schedule",
        "timezone",
        "task",
        "configurations",
        "resources",
    }
    c.mapping("", raw, top_keys, {"schemaVersion", "type"})
    if raw["schemaVersion"] != 1 or isinstance(raw["schemaVersion"], bool):
        c.fail("schemaVersion", f"must be 1, got {raw['schemaVersion']!r}")
    ctype = c.choice("type", raw["type"], COMPONENT_TYPES)
    is_task = ctype.endswith("-task")

    build = c.mapping("build", raw.get("build", {}), {"dockerfile", "context", "source"})
    data: dict[str, Any] = {
        "schemaVersion": 1,
        "type": ctype,
        "build": {
            "dockerfile": c.relative_path("build.dockerfile", build.get("dockerfile", "Dockerfile")),
            "context": c.relative_path("build.context", build.get("context", ".")),
        },
    }
    if "source" in build:
        if "dockerfile" in build or "context" in build:
            c.fail("build.source", "builds from source, with no Dockerfile: remove build.dockerfile and build.context, or build.source")
        data["build"]["source"] = c.choice("build.source", build["source"], SOURCE_KINDS)
    if "run" in raw:
        run = c.string("run", raw["run"])
        if len(run) > MAX_RUN_LENGTH or "\x00" in run or "\n" in run.strip():
            c.fail("run", f"must be one command line of at most {MAX_RUN_LENGTH} characters")
        data["run"] = run.strip()

    endpoints = raw.get("endpoints", [])
    if is_task and endpoints:
        c.fail("endpoints", f"a {ctype} has no endpoints")
    if not isinstance(endpoints, list):
        c.fail("endpoints", f"must be a list, got {_kind(endpoints)}")
    data["endpoints"] = []
    names, ports = set(), set()
    for i, ep in enumerate(endpoints):
        key = _join("endpoints", i)
        c.mapping(key, ep, {"name", "port", "type", "basePath", "schemaFile", "visibility"}, {"name", "port"})
        name = c.string(_join(key, "name"), ep["name"], pattern=_ENDPOINT_NAME_RE, hint="use lower-case letters, digits and hyphens")
        if name in names:
            c.fail(_join(key, "name"), f"duplicate endpoint name {name!r}")
        names.add(name)
        port = c.integer(_join(key, "port"), ep["port"], 1, 65535)
        if port in ports:
            c.fail(_join(key, "port"), f"port {port} is used by another endpoint")
        ports.add(port)
        base_path = ep.get("basePath", "/")
        if not isinstance(base_path, str) or not base_path.startswith("/") or any(ch.isspace() for ch in base_path):
            c.fail(_join(key, "basePath"), f"must be a path starting with '/', got {base_path!r}")
        endpoint = {
            "name": name,
            "port": port,
            "type": c.choice(_join(key, "type"), ep.get("type", "REST"), ENDPOINT_TYPES),
            "basePath": base_path,
            "visibility": c.choice(_join(key, "visibility"), ep.get("visibility", "public"), VISIBILITIES),
            "schemaFile": None,
        }
        if "schemaFile" in ep:
            endpoint["schemaFile"] = c.relative_path(_join(key, "schemaFile"), ep["schemaFile"])
        data["endpoints"].append(endpoint)

    data["health"] = _validate_health(raw.get("health"), c, is_task)
    if is_task and "replicas" in raw:
        c.fail("replicas", f"a {ctype} has no replicas")
    data["resources"] = _validate_resources(raw.get("resources", {}), c)
    data["replicas"] = c.integer("replicas", raw.get("replicas", 1), 1, MAX_REPLICAS)
    # During a rollout the old and the new replicas share the component's ingress slot.
    most = settings.INGRESS_SERVERS_PER_SLOT // 2
    if data["replicas"] > most:
        c.fail(
            "replicas",
            f"must be at most {most}: the ingress holds {settings.INGRESS_SERVERS_PER_SLOT} servers per component "
            f"(INGRESS_SERVERS_PER_SLOT), old and new replicas together during a rollout, got {data['replicas']}",
        )

    tz = raw.get("timezone", "UTC")
    if "timezone" in raw:
        if ctype != "scheduled-task":
            c.fail("timezone", "only a scheduled-task has a timezone")
        if not isinstance(tz, str) or not tz:
            c.fail("timezone", f"must be an IANA time zone name such as 'Europe/Paris', got {_kind(tz)}")
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            c.fail("timezone", f"unknown time zone {tz!r}")
    data["timezone"] = tz
    if ctype == "scheduled-task":
        if "schedule" not in raw:
            c.fail("schedule", "is required for a scheduled-task")
        try:
            data["schedule"] = validate_schedule(raw["schedule"], tz)
        except ValueError as exc:
            c.fail("schedule", str(exc))
    elif "schedule" in raw:
        c.fail("schedule", f"only a scheduled-task has a schedule, this is a {ctype}")
    else:
        data["schedule"] = None

    if "task" in raw and not is_task:
        c.fail("task", f"only a scheduled-task or a manual-task has task settings, this is a {ctype}")
    data["task"] = _validate_task(raw.get("task", {}), c) if is_task else None

    data["configurations"] = _validate_configurations(raw.get("configurations", []), c)
    return data


TASK_DEFAULTS = {"timeout": 3600.0, "retries": 0, "concurrency": "forbid", "startingDeadline": 600.0}
TASK_CONCURRENCY = ("forbid", "allow", "replace")
MAX_TASK_RETRIES = 10


def task_settings(descriptor: dict) -> dict[str, Any]:
    """A task's `task:` settings with their defaults (a descriptor stored before they existed has none)."""
    return {**TASK_DEFAULTS, **(descriptor.get("task") or {})}


def _validate_task(task: Any, c: _Checker) -> dict[str, Any]:
    c.mapping("task", task, set(TASK_DEFAULTS))
    return {
        "timeout": c.duration("task.timeout", task.get("timeout"), TASK_DEFAULTS["timeout"], low=1, high=7 * 86400),
        "retries": c.integer("task.retries", task.get("retries", TASK_DEFAULTS["retries"]), 0, MAX_TASK_RETRIES),
        "concurrency": c.choice("task.concurrency", task.get("concurrency", TASK_DEFAULTS["concurrency"]), TASK_CONCURRENCY),
        "startingDeadline": c.duration(
            "task.startingDeadline", task.get("startingDeadline"), TASK_DEFAULTS["startingDeadline"], low=1, high=7 * 86400
        ),
    }


def _validate_health(health: Any, c: _Checker, is_task: bool) -> dict[str, Any] | None:
    if health is None:
        return None
    if is_task:
        c.fail("health", "a task has no health check")
    c.mapping("health", health, {"http", "tcp", "exec", "interval", "timeout", "startupTimeout"})
    probes = [k for k in ("http", "tcp", "exec") if k in health]
    if len(probes) != 1:
        c.fail("health", "needs exactly one of http, tcp or exec")
    probe = probes[0]
    result: dict[str, Any] = {
        "interval": c.duration("health.interval", health.get("interval"), 1.0),
        "timeout": c.duration("health.timeout", health.get("timeout"), 1.0),
        "startupTimeout": c.duration("health.startupTimeout", health.get("startupTimeout"), 60.0),
    }
    spec = health[probe]
    key = _join("health", probe)
    if probe == "http":
        c.mapping(key, spec, {"path", "port"}, {"port"})
        path = spec.get("path", "/")
        if not isinstance(path, str) or not path.startswith("/") or any(ch.isspace() for ch in path):
            c.fail(_join(key, "path"), f"must be a path starting with '/', got {path!r}")
        result["http"] = {"path": path, "port": c.integer(_join(key, "port"), spec["port"], 1, 65535)}
    elif probe == "tcp":
        c.mapping(key, spec, {"port"}, {"port"})
        result["tcp"] = {"port": c.integer(_join(key, "port"), spec["port"], 1, 65535)}
    else:
        c.mapping(key, spec, {"command"}, {"command"})
        command = spec["command"]
        if not isinstance(command, list) or not command or not all(isinstance(a, str) and a for a in command):
            c.fail(_join(key, "command"), "must be a non-empty list of strings")
        result["exec"] = {"command": list(command)}
    return result


def _validate_configurations(items: Any, c: _Checker) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        c.fail("configurations", f"must be a list, got {_kind(items)}")
    result, names, mounts = [], set(), set()
    for i, item in enumerate(items):
        key = _join("configurations", i)
        c.mapping(key, item, {"name", "type", "required", "secret", "default", "mountPath", "description"}, {"name"})
        ctype = c.choice(_join(key, "type"), item.get("type", "string"), CONFIG_TYPES)
        if ctype == "file":
            name = c.string(_join(key, "name"), item["name"], pattern=FILE_NAME_RE, hint="use letters, digits, '.', '_' and '-'")
        else:
            name = c.string(
                _join(key, "name"),
                item["name"],
                pattern=ENV_NAME_RE,
                hint="it becomes an environment variable: letters, digits and '_', not starting with a digit",
            )
        if name in names:
            c.fail(_join(key, "name"), f"duplicate configuration name {name!r}")
        names.add(name)
        entry = {
            "name": name,
            "type": ctype,
            "required": c.boolean(_join(key, "required"), item.get("required", False)),
            "secret": c.boolean(_join(key, "secret"), item.get("secret", False)),
            "default": None,
            "mountPath": None,
            "description": item.get("description", ""),
        }
        if not isinstance(entry["description"], str):
            c.fail(_join(key, "description"), "must be a string")
        if ctype == "file":
            mount = item.get("mountPath")
            if not isinstance(mount, str) or not mount.startswith("/") or posixpath.normpath(mount) in ("/", "") or "\x00" in mount:
                c.fail(
                    _join(key, "mountPath"), f"a file configuration needs an absolute mountPath such as /etc/app/config.toml, got {mount!r}"
                )
            mount = posixpath.normpath(mount)
            if mount in mounts:
                c.fail(_join(key, "mountPath"), f"{mount} is used by another configuration")
            mounts.add(mount)
            entry["mountPath"] = mount
        elif "mountPath" in item:
            c.fail(_join(key, "mountPath"), "only a file configuration has a mountPath")
        if "default" in item:
            if entry["secret"]:
                c.fail(_join(key, "default"), "a secret cannot have a default: it would sit in the repository")
            try:
                entry["default"] = coerce_config_value(ctype, item["default"])
            except ValueError as exc:
                c.fail(_join(key, "default"), str(exc))
        result.append(entry)
    return result
