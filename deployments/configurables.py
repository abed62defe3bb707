"""A deployment's configuration: the configurables a build declares, checked against the
values an environment would get, and what a replica receives.

Values come in two snapshots of version ids (see `environments.services.config_snapshot`):
the release's environment-independent one and the deployment's environment-specific one.
Precedence: environment-specific > environment-independent > the descriptor's default.
"""

from __future__ import annotations

from builds.models import Build, Component
from choreo_site.errors import PlatformError
from deployments.runtimes import ReplicaFile
from environments.models import ConfigValue, Environment
from environments.services import config_snapshot, config_versions
from environments.values import coerce_config_value

# Where a file value that no configurable places is mounted.
SECRETS_DIR = "/run/secrets"
CONFIG_DIR = "/run/config"


def declared(descriptor: dict | None) -> dict[str, dict]:
    """The configurables of a descriptor, by name."""
    return {c["name"]: c for c in (descriptor or {}).get("configurations", [])}


def newest_descriptor(component: Component) -> dict | None:
    """The descriptor of the component's newest successful build: what the next deployment
    would check. None before the first build."""
    build = component.builds.filter(status=Build.SUCCEEDED).exclude(descriptor=None).order_by("-created_at").first()
    return build.descriptor if build else None


def declared_for(component: Component) -> dict[str, dict]:
    return declared(newest_descriptor(component))


def current(component: Component, environment: Environment) -> dict[str, ConfigValue]:
    """The values a deployment to `environment` would get now."""
    return merged(
        config_snapshot(project=component.project, component=component.name),
        config_snapshot(project=component.project, component=component.name, environment=environment),
    )


def merged(independent: dict[str, int], specific: dict[str, int]) -> dict[str, ConfigValue]:
    """The values of two snapshots, the environment-specific ones winning."""
    versions = config_versions([*independent.values(), *specific.values()])
    values = {key: versions[pk] for key, pk in independent.items() if pk in versions}
    values.update({key: versions[pk] for key, pk in specific.items() if pk in versions})
    return values


def changes(old: dict[str, ConfigValue], new: dict[str, ConfigValue]) -> dict[str, list[str]]:
    """Keys added, removed and given another value (compared by fingerprint, never by value)."""
    return {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": sorted(k for k in set(new) & set(old) if new[k].fingerprint != old[k].fingerprint),
    }


def changed_keys(old: dict[str, ConfigValue], new: dict[str, ConfigValue]) -> list[str]:
    """Every key `changes` names, in one sorted list."""
    return sorted(key for keys in changes(old, new).values() for key in keys)


def problems(descriptor: dict | None, values: dict[str, ConfigValue]) -> dict[str, list[str]]:
    """Each declared configurable that has no usable value, with the reason."""
    found: dict[str, list[str]] = {}
    for name, spec in declared(descriptor).items():
        value = values.get(name)
        if value is None:
            if spec["required"] and spec["default"] is None:
                found[name] = ["required, and has no value"]
            continue
        if spec["type"] != "file":
            if value.is_file:
                found[name] = [f"declared as {spec['type']}, but it was set as a file"]
                continue
            try:
                coerce_config_value(spec["type"], value.text, reveal=not (value.secret or spec["secret"]))
            except ValueError as exc:
                found[name] = [f"declared as {spec['type']}: it {exc}"]
                continue
        if spec["secret"] and not value.secret:
            found[name] = ["declared secret, but it was set as a plain value: set it again as a secret"]
    return found


def require(descriptor: dict | None, values: dict[str, ConfigValue], *, action: str, environment_name: str) -> None:
    """Refuse `action` when a configurable would be missing or invalid in the environment,
    naming every key at fault."""
    found = problems(descriptor, values)
    if found:
        listed = "; ".join(f"{key} ({', '.join(reasons)})" for key, reasons in sorted(found.items()))
        raise PlatformError(
            f"Cannot {action}: the configuration of {environment_name} is missing or invalid: {listed}. Set the values, then try again.",
            errors=found,
        )


def replica_configuration(descriptor: dict | None, values: dict[str, ConfigValue]) -> tuple[dict[str, str], tuple[ReplicaFile, ...]]:
    """What a replica gets: environment variables, and files mounted read-only."""
    configurables = declared(descriptor)
    env: dict[str, str] = {}
    files: list[ReplicaFile] = []
    for name, spec in configurables.items():
        if name in values or spec["default"] is None:
            continue
        if spec["type"] == "file":
            files.append(ReplicaFile(spec["mountPath"], spec["default"].encode(), secret=False))
        else:
            env[name] = spec["default"]
    for key, value in sorted(values.items()):
        spec = configurables.get(key)
        if spec and spec["type"] == "file":
            files.append(ReplicaFile(spec["mountPath"], value.value, secret=value.secret))
        elif value.is_file:
            files.append(ReplicaFile(f"{SECRETS_DIR if value.secret else CONFIG_DIR}/{key}", value.value, secret=value.secret))
        else:
            env[key] = coerce_config_value(spec["type"], value.text) if spec else value.text
    return env, tuple(files)


def config_keys(deployment) -> list[dict]:
    """A deployment's configuration as names, scopes and a fingerprint per value: never a value."""
    values = merged(deployment.release.config, deployment.config)
    return [
        {
            "key": key,
            "secret": value.secret,
            "file": value.is_file,
            "scope": "environment" if key in deployment.config else "all environments",
            "hash": value.fingerprint[:16],
        }
        for key, value in sorted(values.items())
    ]
