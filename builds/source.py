"""Builds from source, with no Dockerfile: which kind a component is, and the build plan
for it (a multi-stage Dockerfile, shown in the log as one a user can build themselves).

The plan keeps dependencies in layers of their own, made only from the dependency
declarations, so a commit that changes only code reuses them (the Engine's build cache
keys them by those files' content). The platform builds the plan stacked (`Plan.stacked`):
the image's own stage without the code (`runtime`: its base, its dependencies and its
settings), then the code alone in a stage FROM scratch, which the assembly puts on top
(builds/oci.py). The image is the same as the shown Dockerfile's; what the stacking buys is
that a code-only commit exports only the code from the Engine, not the dependencies again.

The image runs as an unprivileged user, holds no build tools where the language needs none
at run time, and starts with `run:` from the descriptor, else a Procfile's `web:` line, else
the kind's default.

Dependencies are fetched from the package registries through the host's CA bundle
(`BUILD_CA_BUNDLE`), which the build stage alone sees unless `BUILD_CA_IN_IMAGE` is set.

Everything here reads the component's files through `Files`, never the filesystem: the
repository is hostile, and these functions are pure (tests/builds/test_source_builds.py).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from builds.descriptor import SOURCE_KINDS
from choreo_site.errors import PlatformError

# What marks each kind, at the top of the component's directory.
MARKERS = {
    "python": ("requirements.txt", "pyproject.toml", "uv.lock"),
    "node": ("package.json",),
    "go": ("go.mod",),
    "static": ("index.html",),
}
NODE_LOCKS = ("package-lock.json", "npm-shrinkwrap.json")
APP_USER = "10001:10001"  # no entry in /etc/passwd is needed to run as a number
# What the local base images hold (scripts/base-images.sh).
PYTHON_VERSIONS = ("3.11.2",)  # Debian bookworm's
NODE_VERSION = (20, 20, 2)
GO_VERSION = (1, 26, 8)
BUILD_IMAGES = {"python": "choreo/python-build:3.11", "node": "choreo/node:20", "go": "choreo/go:1.26", "static": "choreo/busybox:1"}
RUN_IMAGES = {"python": "choreo/python:3.11", "node": "choreo/node:20", "go": "choreo/busybox:1", "static": "choreo/busybox:1"}
# uv, for projects locked with it: from PyPI into the dependency stage only, pinned and
# checked against the hashes of its Linux wheels (x86_64, aarch64).
UV_VERSION = "0.13.9"
UV_WHEEL_SHA256 = (
    "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe",
)
DEFAULT_PORT = 8080
CA_PATH = "/etc/choreo/build-ca.crt"  # where the build stage finds BUILD_CA_BUNDLE
SYSTEM_CA_PATH = "/etc/ssl/certs/ca-certificates.crt"  # where it goes with BUILD_CA_IN_IMAGE
# The mtimes of the runtime stage's layers (Plan.stacked) are clamped to this, not to the
# commit's time as every other layer's are (builds/oci.py): else each commit would make new
# dependency layers.
DEPENDENCY_EPOCH = 315532800  # 1980-01-01


class SourceError(PlatformError):
    """A source build that cannot be planned: the message names the file or key, and what to do."""

    def __init__(self, message: str):
        super().__init__(message, errors={"build": [message]})


@dataclass(frozen=True)
class Files:
    """The component directory's files at the commit: `names` at its top, `read(name)`
    the text of one (None when it is not a file there)."""

    names: frozenset[str]
    read: Callable[[str], str | None]


@dataclass(frozen=True)
class Plan:
    kind: str
    dockerfile: str  # text; the context holds `app/` (the component's files) and `build-ca.crt`
    stacked: str  # the same, as the platform builds it: the code in a last stage of its own
    start: str  # the start command, and where it came from, for the log
    start_from: str
    installs: tuple[tuple[str, str], ...] = ()  # (a RUN step's command, the file it installs from)

    @property
    def stages(self) -> int:
        """How many stages `stacked` has: the runtime stage's image is the last but one."""
        return sum(line.startswith("FROM ") for line in self.stacked.splitlines())

    def explain(self, message: str) -> str:
        """A failed step's message, naming the file the step installed from, if it did."""
        for command, declared_in in self.installs:
            if f"'/bin/sh -c {command}'" in message:
                return f"{declared_in}: the dependencies could not be installed (the tool's reason is in the build log). {message}"
        return message


def detect(names: frozenset[str]) -> str:
    """The one kind whose marker files are at the top of the component's directory."""
    found = [kind for kind in SOURCE_KINDS if any(marker in names for marker in MARKERS[kind])]
    looked = "; ".join(f"{kind}: {', '.join(MARKERS[kind])}" for kind in SOURCE_KINDS)
    if not found:
        raise SourceError(
            f"no Dockerfile, and no source build recognised: looked for Dockerfile, then {looked}. "
            "Add a Dockerfile, or set build.source to python, node, go or static",
        )
    if len(found) > 1:
        raise SourceError(
            f"no Dockerfile, and the files match more than one source build ({', '.join(found)}): set build.source to the one to build",
        )
    return found[0]


def plan(kind: str, files: Files, descriptor: dict, *, ca_in_image: bool = False) -> Plan:
    """The build plan of a source build of `kind`."""
    if kind not in PLANNERS:
        raise SourceError(
            f"{kind} source builds are not available on this platform yet; use a Dockerfile (available: {', '.join(PLANNERS)})"
        )
    return PLANNERS[kind](files, descriptor, ca_in_image)


def _port(descriptor: dict) -> int:
    endpoints = descriptor.get("endpoints") or []
    return endpoints[0]["port"] if endpoints else DEFAULT_PORT


def _procfile_web(files: Files) -> str | None:
    if "Procfile" not in files.names:
        return None
    for line in (files.read("Procfile") or "").splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "web" and command.strip():
            return command.strip()
    return None


def _start(files: Files, descriptor: dict, default: Callable[[], tuple[str, str] | None], kind: str) -> tuple[str, str]:
    if descriptor.get("run"):
        return descriptor["run"], "run: in the descriptor"
    web = _procfile_web(files)
    if web:
        return web, "the web: line of the Procfile"
    found = default()
    if found:
        return found
    raise SourceError(f"no start command for this {kind} component: set run: in the descriptor, or add a Procfile with a web: line")


def _cmd(command: str) -> str:
    """CMD through a shell (Procfile lines use $PORT and the like), exec'd so the process gets signals."""
    return "CMD " + json.dumps(["/bin/sh", "-c", f"exec {command}"])


def _plan(kind: str, build: list[str], runtime: list[str], code: str, **fields) -> Plan:
    """The plan from its build stages, the image's own stage without the code, and the one
    step that puts the code in: as one Dockerfile, and stacked (the code FROM scratch)."""
    runtime_from, *runtime_steps = runtime
    dockerfile = [*build, runtime_from, *runtime_steps, code]
    stacked = [*build, f"{runtime_from} AS runtime", *runtime_steps, "FROM scratch AS code", code]
    return Plan(kind, "\n".join(dockerfile) + "\n", "\n".join(stacked) + "\n", **fields)


def _runtime_stage(kind: str, *, ca_in_image: bool, workdir: str, env: str, start: str, port: int, dependencies: list[str]) -> list[str]:
    """The image's own stage, without the code.

    Everything that does not change with the code comes first: the CA bundle (when the
    image is to trust it), the working directory, the settings and the start command, then
    the dependencies, so that a change of dependencies rebuilds the fewest steps (each step
    after a changed one is a new container to the legacy builder, even one that only sets
    metadata). Files are copied as root whatever USER says, so the app cannot rewrite them.
    """
    return [
        f"FROM {RUN_IMAGES[kind]}",
        *([f"COPY build-ca.crt {SYSTEM_CA_PATH}"] if ca_in_image else []),
        f"WORKDIR {workdir}",  # a layer: the directory is new in the run image
        env,
        f"USER {APP_USER}",
        f"EXPOSE {port}",
        _cmd(start),
        *dependencies,
    ]


def _plan_static(files: Files, descriptor: dict, ca_in_image: bool) -> Plan:
    port = _port(descriptor)
    start, start_from = _start(files, descriptor, lambda: (f"httpd -f -p {port} -h /www", "the static file server"), "static")
    env = f"ENV PORT={port}"
    runtime = _runtime_stage("static", ca_in_image=ca_in_image, workdir="/www", env=env, start=start, port=port, dependencies=[])
    return _plan("static", [], runtime, "COPY app/ /www/", start=start, start_from=start_from)


# Python ---------------------------------------------------------------------------------

_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _python_dependencies(files: Files) -> tuple[str, list[str]]:
    """Where the dependencies are declared, and the names declared there (for the default
    start command). A uv lock file comes first: it pins every version."""
    if "uv.lock" in files.names:
        if "pyproject.toml" not in files.names:
            raise SourceError("uv.lock without pyproject.toml: commit the pyproject.toml it was made from")
        return "uv.lock", _pyproject_dependencies(files)
    if "requirements.txt" in files.names:
        text = files.read("requirements.txt") or ""
        names = [m.group(1).lower() for line in text.splitlines() if (m := _REQUIREMENT_NAME.match(line.split("#")[0]))]
        return "requirements.txt", names
    if "pyproject.toml" in files.names:
        return "pyproject.toml", _pyproject_dependencies(files)
    raise SourceError("a python source build needs requirements.txt, pyproject.toml or uv.lock at the top of the component")


def _pyproject_dependencies(files: Files) -> list[str]:
    dependencies = _project_table(files).get("dependencies", [])
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise SourceError("pyproject.toml: [project] dependencies must be a list of strings")
    return [m.group(1).lower() for d in dependencies if (m := _REQUIREMENT_NAME.match(d))]


def _project_table(files: Files) -> dict:
    project = _pyproject(files).get("project", {})
    if not isinstance(project, dict):
        raise SourceError("pyproject.toml: [project] must be a table")
    return project


def _pyproject(files: Files) -> dict:
    try:
        return tomllib.loads(files.read("pyproject.toml") or "")
    except tomllib.TOMLDecodeError as exc:
        raise SourceError(f"pyproject.toml is not valid TOML: {exc}") from None
    except RecursionError:
        raise SourceError("pyproject.toml is nested too deeply") from None


def _python_version(files: Files) -> str:
    """The version the project asks for, if this platform has it."""
    asked, where = None, ""
    if ".python-version" in files.names:
        words = (files.read(".python-version") or "").split()
        asked, where = (words[0] if words else None), ".python-version"
    elif "pyproject.toml" in files.names:
        asked, where = _project_table(files).get("requires-python"), "pyproject.toml requires-python"
    if not asked:
        return PYTHON_VERSIONS[0]
    for version in PYTHON_VERSIONS:
        if _python_matches(str(asked), version):
            return version
    raise SourceError(
        f"{where} asks for Python {str(asked)[:40]!r}, which this platform does not have (available: {', '.join(PYTHON_VERSIONS)})"
    )


def _python_matches(asked: str, version: str) -> bool:
    """`3.11` or `python3.11` (the minor version: the platform has one patch release of
    each), `3.11.4` (read as 3.11 too), or a PEP 440 specifier set such as `>=3.9,<3.13`,
    checked against the exact version the base image holds."""
    asked = asked.strip().removeprefix("python").removeprefix("cpython-")
    if re.fullmatch(r"\d+(\.\d+){0,2}", asked):
        return asked.split(".")[:2] == version.split(".")[: len(asked.split(".")[:2])]
    try:
        return Version(version) in SpecifierSet(asked)
    except InvalidSpecifier:
        raise SourceError(f"cannot read the Python version {asked[:40]!r}") from None


_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def _python_default(files: Files, declared: list[str], port: int) -> tuple[str, str] | None:
    module = next((m for m in ("app", "main", "wsgi", "asgi") if f"{m}.py" in files.names), None)
    if "gunicorn" in declared and module:
        return f"gunicorn --bind 0.0.0.0:$PORT {module}:app", f"gunicorn, declared, serving {module}.py's app"
    if "uvicorn" in declared and module:
        return f"uvicorn {module}:app --host 0.0.0.0 --port $PORT", f"uvicorn, declared, serving {module}.py's app"
    declared_start = _python_declared_start(files) if "pyproject.toml" in files.names else None
    if declared_start:
        return declared_start
    if "__main__.py" in files.names:
        return "python .", "__main__.py"
    if module:
        return f"python {module}.py", f"{module}.py"
    return None


def _python_declared_start(files: Files) -> tuple[str, str] | None:
    """What pyproject.toml says runs the project: its one [project.scripts] entry, else the
    package named like the project, when it has a __main__.py (`python -m`). The project
    itself is not installed (its code is the code layer), so a src/ layout is put on the path."""
    project = _project_table(files)
    scripts = project.get("scripts")
    if isinstance(scripts, dict) and len(scripts) == 1:
        ((name, target),) = scripts.items()
        module, _, function = str(target).partition(":")
        module, function = module.strip(), function.strip()
        if not _MODULE.fullmatch(module) or not _MODULE.fullmatch(function):
            raise SourceError(f"pyproject.toml [project.scripts] {str(name)[:40]!r}: {str(target)[:80]!r} is not module:function")
        prefix = "env PYTHONPATH=src " if _in_src(files, module.split(".")[0]) else ""
        call = f"import sys; from {module} import {function.split('.')[0]}; sys.exit({function}())"
        return f"{prefix}python -c {shlex.quote(call)}", f"pyproject.toml [project.scripts] {name}"
    package = re.sub(r"[-.]+", "_", str(project.get("name", ""))).lower()
    if _MODULE.fullmatch(package):
        for where in ("", "src/"):
            if files.read(f"{where}{package}/__main__.py") is not None:
                prefix = "env PYTHONPATH=src " if where else ""
                return f"{prefix}python -m {package}", f"{where}{package}/__main__.py, the package of pyproject.toml's project"
    return None


def _in_src(files: Files, package: str) -> bool:
    return (
        package not in files.names
        and "src" in files.names
        and (files.read(f"src/{package}/__init__.py") is not None or files.read(f"src/{package}.py") is not None)
    )


def _plan_python(files: Files, descriptor: dict, ca_in_image: bool) -> Plan:
    port = _port(descriptor)
    source, declared = _python_dependencies(files)
    version = _python_version(files)
    start, start_from = _start(files, descriptor, lambda: _python_default(files, declared, port), "python")
    if source == "uv.lock":  # uv installs exactly what the lock says, and refuses a lock out of step
        install = [
            f"RUN printf 'uv=={UV_VERSION} {' '.join(f'--hash=sha256:{h}' for h in UV_WHEEL_SHA256)}\\n' > /tmp/uv.txt"
            " && python3 -m pip install --target /opt/uv --require-hashes -r /tmp/uv.txt",
            "COPY app/pyproject.toml app/uv.lock /deps/",
            "RUN cd /deps && UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1 NO_COLOR=1"
            " /opt/uv/bin/uv sync --locked --no-dev --no-install-project --python /opt/venv/bin/python",
        ]
    elif source == "requirements.txt":
        install = [
            "COPY app/requirements.txt /deps/requirements.txt",
            "RUN python3 -m pip --python /opt/venv/bin/python install --no-compile -r /deps/requirements.txt",
        ]
    else:  # the project's dependencies only: the project itself is the code layer
        install = [
            "COPY app/pyproject.toml /deps/pyproject.toml",
            "RUN python3 -c \"import tomllib; d = tomllib.load(open('/deps/pyproject.toml', 'rb'))"
            ".get('project', {}).get('dependencies', []); open('/deps/requirements.txt', 'w').write(chr(10).join(d))\""
            " && python3 -m pip --python /opt/venv/bin/python install --no-compile -r /deps/requirements.txt",
        ]
    lines = [
        f"# Python {version}; dependencies from {source}",
        f"FROM {BUILD_IMAGES['python']} AS dependencies",
        f"COPY build-ca.crt {CA_PATH}",
        f"ENV PIP_CERT={CA_PATH} SSL_CERT_FILE={CA_PATH} PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1",
        "RUN python3 -m venv --without-pip /opt/venv",  # no pip in the image: the build stage's installs into it
        *install,
    ]
    runtime = _runtime_stage(
        "python",
        ca_in_image=ca_in_image,
        workdir="/app",
        env=f"ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin PYTHONUNBUFFERED=1 PORT={port}",
        start=start,
        port=port,
        dependencies=["COPY --from=dependencies /opt/venv /opt/venv"],
    )
    installs = tuple((line.removeprefix("RUN "), source) for line in install if line.startswith("RUN "))
    return _plan("python", lines, runtime, "COPY app/ /app/", start=start, start_from=start_from, installs=installs)


# Node.js ----------------------------------------------------------------------------------


def _json(files: Files, name: str) -> dict:
    try:
        data = json.loads(files.read(name) or "")
    except ValueError as exc:
        raise SourceError(f"{name} is not valid JSON: {exc}") from None
    except RecursionError:
        raise SourceError(f"{name} is nested too deeply") from None
    if not isinstance(data, dict):
        raise SourceError(f"{name} must hold a JSON object")
    return data


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def semver_allows(ranges: str, have: tuple[int, int, int]) -> bool:
    """Whether an npm version range (`>=18`, `^20.1`, `18 || 20`, `20.x`, `~20.3.0`, `*`)
    allows `have`. Raises ValueError on what it cannot read."""
    for alternative in ranges.split("||"):
        comparators = alternative.split()
        if all(_comparator_allows(c, have) for c in comparators or ["*"]):
            return True
    return False


def _comparator_allows(comparator: str, have: tuple[int, int, int]) -> bool:
    match = re.fullmatch(r"(\^|~|>=|<=|>|<|=)?v?(\d+|x|X|\*)(?:\.(\d+|x|X|\*))?(?:\.(\d+|x|X|\*))?", comparator)
    if not match:
        raise ValueError(comparator)
    op, *parts = match.groups()
    numbers: list[int] = []
    for part in parts:  # up to the first wildcard or missing part: "20", "20.x" and "20.*" all mean 20.x.x
        if part is None or not part.isdigit():
            break
        numbers.append(int(part))
    if op in (None, "="):
        return have[: len(numbers)] == tuple(numbers)
    if not numbers:
        return True
    want = tuple(numbers + [0] * (3 - len(numbers)))

    def after(count: int) -> tuple[int, ...]:  # the first version past the first `count` parts
        bumped = list(want[:count]) + [0] * (3 - count)
        bumped[count - 1] += 1
        return tuple(bumped)

    if op == "^":
        first = next((i for i, n in enumerate(want) if n), min(len(numbers), 3) - 1)
        return want <= have < after(first + 1)
    if op == "~":
        return want <= have < after(2 if len(numbers) > 1 else 1)
    partial = len(numbers) < 3
    if op == ">":
        return have >= after(len(numbers)) if partial else have > want
    if op == "<=":
        return have < after(len(numbers)) if partial else have <= want
    return have >= want if op == ">=" else have < want


def _plan_node(files: Files, descriptor: dict, ca_in_image: bool) -> Plan:
    port = _port(descriptor)
    if "package.json" not in files.names:
        raise SourceError("a node source build needs package.json, with its lock file, at the top of the component")
    package = _json(files, "package.json")
    lock = next((name for name in NODE_LOCKS if name in files.names), None)
    other = next((name for name in ("yarn.lock", "pnpm-lock.yaml", "bun.lockb", "bun.lock") if name in files.names), None)
    if lock is None and other:
        raise SourceError(
            f"{other}: source builds install with npm, from package-lock.json; commit one (npm install writes it), or use a Dockerfile"
        )
    if lock is None:
        raise SourceError("package.json without its lock file: commit package-lock.json (npm install writes it)")
    engines = package.get("engines") if isinstance(package.get("engines"), dict) else {}
    wanted = engines.get("node")
    if wanted is not None:
        try:
            allowed = semver_allows(str(wanted), NODE_VERSION)
        except ValueError:
            raise SourceError(f"package.json engines.node {str(wanted)[:40]!r} cannot be read as a version range") from None
        if not allowed:
            have = ".".join(map(str, NODE_VERSION))
            raise SourceError(
                f"package.json engines.node asks for Node.js {str(wanted)[:40]!r}, which this platform does not have (available: {have})"
            )
    scripts = package.get("scripts") if isinstance(package.get("scripts"), dict) else {}

    def default() -> tuple[str, str] | None:
        if scripts.get("start"):
            return "npm start", "package.json scripts.start"
        if "server.js" in files.names:
            return "node server.js", "server.js"
        return None

    start, start_from = _start(files, descriptor, default, "node")
    npm_env = (
        f"ENV NODE_EXTRA_CA_CERTS={CA_PATH} npm_config_cafile={CA_PATH} npm_config_update_notifier=false "
        "npm_config_fund=false npm_config_audit=false npm_config_cache=/tmp/npm-cache"
    )
    lines = [
        f"# Node.js {'.'.join(map(str, NODE_VERSION))}; dependencies from {lock}",
        f"FROM {BUILD_IMAGES['node']} AS dependencies",
        f"COPY build-ca.crt {CA_PATH}",
        npm_env,
        "WORKDIR /app",
        f"COPY app/package.json app/{lock} ./",
        "RUN npm ci --omit=dev",
    ]
    code_from = "COPY app/ /app/"
    if scripts.get("build"):  # dev dependencies build the code in a stage of their own
        lines += [
            f"FROM {BUILD_IMAGES['node']} AS build",
            f"COPY build-ca.crt {CA_PATH}",
            npm_env,
            "WORKDIR /app",
            f"COPY app/package.json app/{lock} ./",
            "RUN npm ci",
            "COPY app/ /app/",
            "RUN npm run build && rm -rf node_modules",
        ]
        code_from = "COPY --from=build /app/ /app/"
    runtime = _runtime_stage(
        "node",
        ca_in_image=ca_in_image,
        workdir="/app",
        env=f"ENV NODE_ENV=production PORT={port} HOME=/tmp npm_config_update_notifier=false npm_config_cache=/tmp/npm-cache",
        start=start,
        port=port,
        dependencies=["COPY --from=dependencies /app/node_modules /app/node_modules"],
    )
    installs = (("npm ci --omit=dev", lock), ("npm ci", lock), ("npm run build && rm -rf node_modules", "package.json scripts.build"))
    return _plan("node", lines, runtime, code_from, start=start, start_from=start_from, installs=installs)


# Go ---------------------------------------------------------------------------------------


def _plan_go(files: Files, descriptor: dict, ca_in_image: bool) -> Plan:
    port = _port(descriptor)
    if "go.mod" not in files.names:
        raise SourceError("a go source build needs go.mod at the top of the component (go mod init)")
    gomod = files.read("go.mod") or ""
    directive = re.search(r"^go\s+(\d+\.\d+(?:\.\d+)?)\s*$", gomod, re.MULTILINE)
    if directive:
        asked = _version_tuple(directive.group(1))
        if asked[:2] > GO_VERSION[:2] or (len(asked) == 3 and asked[:2] == GO_VERSION[:2] and asked > GO_VERSION):
            have = ".".join(map(str, GO_VERSION))
            raise SourceError(f"go.mod asks for Go {directive.group(1)}, which this platform does not have (available: {have})")
    if not any(name.endswith(".go") for name in files.names):
        raise SourceError("go.mod, but no .go file at the top of the component's directory: put the main package there")
    start, start_from = _start(files, descriptor, lambda: ("/app/server", "the Go binary"), "go")
    lines = [
        f"# Go {'.'.join(map(str, GO_VERSION))}, a static binary on busybox",
        f"FROM {BUILD_IMAGES['go']} AS build",
        f"COPY build-ca.crt {CA_PATH}",
        f"ENV SSL_CERT_FILE={CA_PATH} GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath GOCACHE=/go-cache GOPATH=/go",
        "WORKDIR /src",
        "COPY app/go.mod app/go.su[m] ./",
        "RUN go mod download",
        "COPY app/ ./",
        'RUN go build -buildvcs=false -ldflags="-s -w -buildid=" -o /out/server .',
    ]
    runtime = _runtime_stage("go", ca_in_image=ca_in_image, workdir="/app", env=f"ENV PORT={port}", start=start, port=port, dependencies=[])
    installs = (("go mod download", "go.mod"),)
    return _plan("go", lines, runtime, "COPY --from=build /out/server /app/server", start=start, start_from=start_from, installs=installs)


PLANNERS: dict[str, Callable[[Files, dict, bool], Plan]] = {
    "static": _plan_static,
    "python": _plan_python,
    "node": _plan_node,
    "go": _plan_go,
}


def base_images(kind: str) -> list[str]:
    return sorted({BUILD_IMAGES[kind], RUN_IMAGES[kind]}) if kind in PLANNERS else []


def describe(plan_: Plan) -> list[str]:
    """The plan as log lines: the kind, the start command and the Dockerfile itself."""
    return [
        f"source build: {plan_.kind}; starts with {shlex.quote(plan_.start)} ({plan_.start_from})",
        "build plan (a Dockerfile; build it yourself from the component's files in app/):",
        *(f"  {line}" for line in plan_.dockerfile.splitlines()),
        "the platform builds it stacked: the last step alone, in a stage FROM scratch, put on top of the stage before it "
        "(the same image; a code-only commit then exports only the code's layer)",
    ]
