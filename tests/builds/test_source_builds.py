"""Builds from source with no Dockerfile (builds/source.py): which kind a component is, the
plan, and real builds of a static site and a Flask app that deploy, serve through the
ingress and promote, run as non-root, and reuse their dependency layer."""

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from hypothesis import given
from hypothesis import strategies as st

from builds import source
from builds.descriptor import DescriptorError, parse_descriptor
from builds.models import Build
from builds.services import build_start
from choreo_site.logstream import read_text
from deployments import services
from deployments.models import Deployment
from tests.conftest import run_build_jobs
from tests.deployments.test_deploy import env, finish, get

SERVICE = """\
schemaVersion: 1
type: service
endpoints:
  - name: web
    port: 8080
health:
  http: { path: /, port: 8080 }
  interval: 200ms
  timeout: 2s
  startupTimeout: 30s
replicas: 1
"""
FLASK_APP = """\
import os
from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return f"{os.environ.get('GREETING', 'hello')} from flask, uid {os.getuid()}\\n"
"""


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "source-builds"


def fixture(kind: str) -> dict[str, str]:
    """The example application of a kind (examples/source-builds/), without its descriptor."""
    root = EXAMPLES / kind
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file() and ".choreo" not in p.parts}


def files(contents: dict[str, str]) -> source.Files:
    """As the pipeline gives them: the names at the top, and any file by its path."""
    return source.Files(names=frozenset(name.split("/")[0] for name in contents), read=contents.get)


def descriptor(extra: str = "") -> dict:
    return parse_descriptor(SERVICE + extra).data


# The rules, without Docker ---------------------------------------------------------------


def test_the_kind_is_recognised_only_when_exactly_one_matches():
    assert source.detect(frozenset({"requirements.txt", "app.py"})) == "python"
    assert source.detect(frozenset({"index.html", "style.css"})) == "static"
    with pytest.raises(
        source.SourceError, match="looked for Dockerfile, then python: requirements.txt, pyproject.toml, uv.lock;.*build.source"
    ):
        source.detect(frozenset({"README.md"}))
    with pytest.raises(source.SourceError, match=r"more than one source build \(python, static\): set build.source"):
        source.detect(frozenset({"requirements.txt", "index.html"}))


def test_the_start_command_comes_from_run_then_the_procfile_then_the_default():
    flask = {"requirements.txt": "flask==3.0.3\ngunicorn==22.0.0  # the server\n", "app.py": FLASK_APP}
    chosen = source.plan("python", files(flask), descriptor())
    assert chosen.start == "gunicorn --bind 0.0.0.0:$PORT app:app" and "gunicorn, declared" in chosen.start_from
    chosen = source.plan("python", files({**flask, "Procfile": "worker: x\nweb: gunicorn -w 2 app:app\n"}), descriptor())
    assert chosen.start == "gunicorn -w 2 app:app" and chosen.start_from == "the web: line of the Procfile"
    chosen = source.plan("python", files(flask), descriptor('run: "python app.py --serve"\n'))
    assert chosen.start == "python app.py --serve" and json.dumps(["/bin/sh", "-c", "exec python app.py --serve"]) in chosen.dockerfile
    with pytest.raises(
        source.SourceError, match="no start command for this python component: set run: in the descriptor, or add a Procfile"
    ):
        source.plan("python", files({"requirements.txt": "requests\n"}), descriptor())


def test_python_starts_what_pyproject_declares_a_script_or_the_projects_package():
    project = '[project]\nname = "my-tool"\ndependencies = ["requests"]\n'
    scripts = project + '[project.scripts]\nserve = "my_tool.cli:main"\n'
    chosen = source.plan("python", files({"pyproject.toml": scripts, "my_tool/__init__.py": "", "my_tool/cli.py": ""}), descriptor())
    assert chosen.start == "python -c 'import sys; from my_tool.cli import main; sys.exit(main())'"
    assert chosen.start_from == "pyproject.toml [project.scripts] serve"
    chosen = source.plan("python", files({"pyproject.toml": project, "my_tool/__main__.py": ""}), descriptor())
    assert (chosen.start, chosen.start_from) == ("python -m my_tool", "my_tool/__main__.py, the package of pyproject.toml's project")
    # A src/ layout: the project is not installed, so its directory goes on the path.
    chosen = source.plan("python", files({"pyproject.toml": project, "src/my_tool/__main__.py": ""}), descriptor())
    assert chosen.start == "env PYTHONPATH=src python -m my_tool"
    chosen = source.plan("python", files({"pyproject.toml": scripts, "src/my_tool/__init__.py": ""}), descriptor())
    assert chosen.start.startswith("env PYTHONPATH=src python -c ")
    for target in ("my_tool.cli", "my_tool.cli:main; rm -rf /", "os:system('x')"):
        bad = project + f'[project.scripts]\nserve = "{target}"\n'
        with pytest.raises(source.SourceError, match=r"pyproject.toml \[project.scripts\] 'serve': .* is not module:function"):
            source.plan("python", files({"pyproject.toml": bad}), descriptor())
    # Nothing declared that runs: the build says which key to set.
    with pytest.raises(source.SourceError, match="no start command for this python component: set run:"):
        source.plan("python", files({"pyproject.toml": project, "my_tool/__init__.py": ""}), descriptor())


def test_python_plans_keep_dependencies_apart_run_as_non_root_and_check_the_version():
    chosen = source.plan("python", files({"requirements.txt": "flask\n", "app.py": ""}), descriptor('run: "python app.py"\n'))
    lines = chosen.dockerfile.splitlines()
    # The dependency layer is made from requirements.txt alone, before the code is copied.
    assert lines.index("COPY app/requirements.txt /deps/requirements.txt") < lines.index("COPY app/ /app/")
    assert f"USER {source.APP_USER}" in lines and lines[-1] == "COPY app/ /app/"
    # What does not change with the code comes before it, so a code-only commit rebuilds one step.
    run_stage = lines[lines.index("FROM choreo/python:3.11") :]
    assert [line.split()[0] for line in run_stage] == ["FROM", "WORKDIR", "ENV", "USER", "EXPOSE", "CMD", "COPY", "COPY"]
    # As the platform builds it: the same steps, the code alone in a last stage FROM scratch.
    stacked = chosen.stacked.splitlines()
    assert stacked[-2:] == ["FROM scratch AS code", "COPY app/ /app/"] and chosen.stages == 3
    assert [line.removesuffix(" AS runtime") for line in stacked if line != "FROM scratch AS code"] == lines
    assert not any("build-ca.crt" in line for line in lines[lines.index("FROM choreo/python:3.11") :])  # the CA stays in the build stage
    with_ca = source.plan("python", files({"requirements.txt": "", "app.py": ""}), descriptor('run: "x"\n'), ca_in_image=True)
    runtime = with_ca.stacked.split(" AS runtime\n")[1].split("FROM scratch")[0]
    assert "COPY build-ca.crt /etc/ssl/certs/ca-certificates.crt" in runtime
    assert "build-ca.crt" not in with_ca.stacked.split("FROM scratch")[1]
    for asked in ("3.11", "3.11.4", ">=3.9,<3.13", "~=3.10", "python3.11"):
        source.plan("python", files({"requirements.txt": "", ".python-version": asked + "\n"}), descriptor('run: "x"\n'))
    with pytest.raises(
        source.SourceError, match=r"\.python-version asks for Python '3.12', which this platform does not have \(available: 3.11.2\)"
    ):
        source.plan("python", files({"requirements.txt": "", ".python-version": "3.12\n"}), descriptor('run: "x"\n'))
    # Specifiers are PEP 440's, against the exact version the image holds.
    with pytest.raises(source.SourceError, match=r"requires-python asks for Python '>=3.11.4', .* \(available: 3.11.2\)"):
        source.plan("python", files({"pyproject.toml": '[project]\nrequires-python = ">=3.11.4"\n'}), descriptor('run: "x"\n'))
    source.plan("python", files({"pyproject.toml": '[project]\nrequires-python = "==3.11.*"\n'}), descriptor('run: "x"\n'))
    with pytest.raises(source.SourceError, match="cannot read the Python version '>=three'"):
        source.plan("python", files({".python-version": ">=three\n", "requirements.txt": ""}), descriptor('run: "x"\n'))
    with pytest.raises(source.SourceError, match="pyproject.toml requires-python asks for Python '>=3.12'"):
        source.plan("python", files({"pyproject.toml": '[project]\nrequires-python = ">=3.12"\n'}), descriptor('run: "x"\n'))
    with pytest.raises(source.SourceError, match="pyproject.toml is not valid TOML"):
        source.plan("python", files({"pyproject.toml": "[project\n"}), descriptor('run: "x"\n'))


def test_a_uv_project_installs_exactly_its_lock_and_a_failed_install_names_the_file():
    uv = fixture("python-uv")
    chosen = source.plan("python", files({**uv, "requirements.txt": "flask\n"}), descriptor())  # the lock wins
    assert chosen.dockerfile.startswith("# Python 3.11.2; dependencies from uv.lock\n")
    lines = chosen.dockerfile.splitlines()
    assert lines.index("COPY app/pyproject.toml app/uv.lock /deps/") < lines.index("COPY app/ /app/")
    assert f"uv=={source.UV_VERSION} --hash=sha256:" in chosen.dockerfile and "--require-hashes" in chosen.dockerfile
    sync = next(command for command, _ in chosen.installs if "uv sync --locked --no-dev --no-install-project" in command)
    failed = f"The command '/bin/sh -c {sync}' returned a non-zero code: 1"
    assert chosen.explain(failed) == f"uv.lock: the dependencies could not be installed (the tool's reason is in the build log). {failed}"
    other = "The command '/bin/sh -c exit 3' returned a non-zero code: 3"
    assert chosen.explain(other) == other
    with pytest.raises(source.SourceError, match="a python source build needs requirements.txt, pyproject.toml or uv.lock"):
        source.plan("python", files({"app.py": ""}), descriptor('run: "x"\n'))  # build.source: python, and nothing declared
    with pytest.raises(source.SourceError, match="a node source build needs package.json"):
        source.plan("node", files({"server.js": ""}), descriptor())
    with pytest.raises(source.SourceError, match="a go source build needs go.mod"):
        source.plan("go", files({"main.go": ""}), descriptor())
    with pytest.raises(source.SourceError, match="uv.lock without pyproject.toml: commit the pyproject.toml it was made from"):
        source.plan("python", files({"uv.lock": "", "app.py": ""}), descriptor('run: "x"\n'))


def test_the_descriptor_takes_build_source_and_run_and_refuses_mixing():
    data = parse_descriptor("schemaVersion: 1\ntype: service\nbuild: { source: static }\nrun: httpd -f -p 8080\n").data
    assert data["build"]["source"] == "static" and data["run"] == "httpd -f -p 8080"
    for bad, message in (
        ("build: { source: ruby }", "build.source: must be one of python, node, go, static, got 'ruby'"),
        ("build: { source: python, dockerfile: Dockerfile }", "build.source: builds from source, with no Dockerfile"),
        ("run: ''", "run: must be a non-empty string"),
        ("run: [a, b]", "run: must be a non-empty string, got a list"),
        ('run: "a\\nb"', "run: must be one command line"),
    ):
        with pytest.raises(DescriptorError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_descriptor(f"schemaVersion: 1\ntype: service\n{bad}\n")


def test_node_plans_need_the_lock_file_check_engines_and_keep_dev_dependencies_out():
    express = fixture("node")
    chosen = source.plan("node", files(express), descriptor())
    assert chosen.start == "npm start" and "RUN npm ci --omit=dev" in chosen.dockerfile and "npm run build" not in chosen.dockerfile
    lines = chosen.dockerfile.splitlines()
    assert lines.index("COPY --from=dependencies /app/node_modules /app/node_modules") < lines.index("COPY app/ /app/")
    built = {**express, "package.json": express["package.json"].replace('"start"', '"build": "tsc", "start"')}
    chosen = source.plan("node", files(built), descriptor())
    # Dev dependencies build in a stage of their own; the image gets the built code and the production ones.
    assert "RUN npm ci\n" in chosen.dockerfile and "COPY --from=build /app/ /app/" in chosen.dockerfile
    with pytest.raises(source.SourceError, match="package.json without its lock file: commit package-lock.json"):
        source.plan("node", files({"package.json": express["package.json"]}), descriptor())
    with pytest.raises(source.SourceError, match="yarn.lock: source builds install with npm, from package-lock.json"):
        source.plan("node", files({"package.json": express["package.json"], "yarn.lock": ""}), descriptor())
    newer = express["package.json"].replace('">=18"', '">=22"')
    with pytest.raises(
        source.SourceError, match=r"engines.node asks for Node.js '>=22', which this platform does not have \(available: 20.20.2\)"
    ):
        source.plan("node", files({**express, "package.json": newer}), descriptor())
    with pytest.raises(source.SourceError, match="package.json is not valid JSON"):
        source.plan("node", files({**express, "package.json": "{"}), descriptor())
    for allowed, expected in ((">=18", True), ("^20", True), ("18 || 20.x", True), ("~20.19", False), (">20", False), ("<=20", True)):
        assert source.semver_allows(allowed, (20, 20, 2)) is expected, allowed


def test_go_plans_build_a_static_binary_and_check_the_go_directive():
    chosen = source.plan("go", files(fixture("go")), descriptor())
    assert chosen.start == "/app/server" and "CGO_ENABLED=0" in chosen.dockerfile
    final = chosen.dockerfile.split("FROM choreo/busybox:1")[1]
    assert "go build" not in final and "COPY --from=build /out/server /app/server" in final  # no toolchain in the image
    runtime, code = chosen.stacked.split("FROM choreo/busybox:1 AS runtime\n")[1].split("FROM scratch AS code\n")
    assert runtime == 'WORKDIR /app\nENV PORT=8080\nUSER 10001:10001\nEXPOSE 8080\nCMD ["/bin/sh", "-c", "exec /app/server"]\n'
    assert code == "COPY --from=build /out/server /app/server\n"
    with pytest.raises(source.SourceError, match=r"go.mod asks for Go 1.27, which this platform does not have \(available: 1.26.8\)"):
        source.plan("go", files({**fixture("go"), "go.mod": "module x\n\ngo 1.27\n"}), descriptor())
    with pytest.raises(source.SourceError, match="no .go file at the top"):
        source.plan("go", files({"go.mod": "module x\n"}), descriptor())


names = st.sets(
    st.sampled_from(
        [
            "requirements.txt",
            "pyproject.toml",
            "uv.lock",
            "index.html",
            "Procfile",
            "app.py",
            "main.py",
            ".python-version",
            "__main__.py",
            "package.json",
            "package-lock.json",
            "go.mod",
            "main.go",
            "x",
        ]
    )
)


@given(names, st.text(max_size=200), st.text(max_size=200), st.sampled_from(["static", "python", "node", "go"]))
def test_any_files_give_a_plan_or_a_clear_refusal(present, text, other, kind):
    contents = {name: (text if i % 2 else other) for i, name in enumerate(sorted(present))}
    try:
        chosen = source.plan(kind, files(contents), descriptor())
    except source.SourceError as exc:
        assert exc.detail and "\n" not in exc.detail
    else:
        assert chosen.dockerfile.startswith(("FROM ", "# ")) and "CMD " in chosen.dockerfile
        assert chosen.stacked.endswith("\n" + chosen.dockerfile.splitlines()[-1] + "\n") and "FROM scratch AS code\n" in chosen.stacked


@given(st.text(max_size=40), st.text(max_size=40), st.text(max_size=80), st.booleans())
def test_any_declared_script_or_project_name_starts_safely_or_is_refused(project, script, target, src):
    # Names and targets are the repository's: they reach a shell command only as Python
    # identifiers, or inside one quoted argument.
    pyproject = f"[project]\nname = {json.dumps(project)}\n[project.scripts]\n{json.dumps(script)} = {json.dumps(target)}\n"
    package = re.sub(r"[-.]+", "_", project).lower()
    contents = {"pyproject.toml": pyproject, f"{'src/' if src else ''}{package}/__main__.py": ""}
    try:
        chosen = source.plan("python", files(contents), descriptor())
    except source.SourceError as exc:
        assert exc.detail and "\n" not in exc.detail
        return
    words = shlex.split(chosen.start)
    words = words[2:] if words[:2] == ["env", "PYTHONPATH=src"] else words
    assert words[0] == "python" and len(words) == 3
    if words[1] == "-m":
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", words[2])
    else:
        assert words[1] == "-c" and re.fullmatch(r"import sys; from [\w.]+ import \w+; sys.exit\([\w.]+\(\)\)", words[2])


# Real builds, deployments and promotions --------------------------------------------------


def built(component, files_=None) -> Build:
    if files_:
        component.repo.commit(files_, "change")
    build = build_start(component=component)
    run_build_jobs()
    build.refresh_from_db()
    return build


def pulled(reference: str) -> dict:
    """The image's config as the Engine sees it, pulled from the platform's registry."""
    import docker

    from builds import registry

    return docker.from_env().images.pull(reference, auth_config=registry.engine_auth(reference)).attrs


def image_user(reference: str) -> str:
    return pulled(reference)["Config"]["User"]


def layers(reference: str) -> list[str]:
    return pulled(reference)["RootFS"]["Layers"]


def deploy_and_promote(component, build) -> tuple[str, str]:
    dev = finish(services.deployment_deploy(component=component, build=build))
    assert dev.status == Deployment.ACTIVE, dev.error
    prod = finish(
        services.deployment_promote(component=component, source=env(component, "development"), target=env(component, "production"))
    )
    assert prod.status == Deployment.ACTIVE and prod.release_id == dev.release_id, prod.error
    return get("web.development.shop.localhost"), get("web.production.shop.localhost")


@pytest.fixture
def source_component(make_repo):
    from builds.services import component_create
    from environments.models import Project
    from environments.services import project_create, project_delete

    made = []

    def make(repo_files: dict[str, str]):
        repo = make_repo({".choreo/component.yaml": SERVICE, **repo_files})
        component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
        component.repo = repo
        made.append(component)
        return component

    yield make
    for leftover in Project.objects.filter(name="shop"):
        project_delete(project=leftover)


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")
def test_a_static_site_builds_deploys_serves_and_promotes_as_non_root(source_component, settings):
    settings.ROLLOUT_STOP_GRACE = 1
    component = source_component({"index.html": "<h1>static, from source</h1>\n", "style.css": "h1 {}\n"})
    build = built(component)
    log = read_text(build.log_stream)
    assert build.status == Build.SUCCEEDED, log
    assert "source build: static; starts with 'httpd -f -p 8080 -h /www' (the static file server)" in log
    assert "  COPY app/ /www/" in log  # the plan is in the log
    assert image_user(build.image_reference) == source.APP_USER
    assert deploy_and_promote(component, build) == ((200, "<h1>static, from source</h1>"), (200, "<h1>static, from source</h1>"))
    # The descriptor is not served: .choreo is left out of the image.
    assert get_path("web.development.shop.localhost", "/.choreo/component.yaml")[0] == 404


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")
def test_a_uv_locked_app_builds_from_its_lock_and_a_lock_out_of_step_fails_naming_it(source_component, settings):
    settings.ROLLOUT_STOP_GRACE = 1
    uv = fixture("python-uv")
    component = source_component(uv)
    first = built(component)
    log = read_text(first.log_stream)
    assert first.status == Build.SUCCEEDED, log[-3000:]
    assert "dependencies from uv.lock" in log and "source build: python; starts with 'gunicorn" in log
    assert deploy_and_promote(component, first) == ((200, "hello from flask, locked by uv, uid 10001"),) * 2
    # Exactly the locked versions: click is not pinned in pyproject.toml, only in uv.lock.
    locked = re.search(r'name = "click"\nversion = "([^"]+)"', uv["uv.lock"]).group(1)
    installed = subprocess.run(
        ["docker", "run", "--rm", first.image_reference, "python", "-c", "import importlib.metadata as m; print(m.version('click'))"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert installed.stdout.strip() == locked, installed.stderr

    stale = built(component, {"pyproject.toml": uv["pyproject.toml"].replace('"gunicorn==22.0.0"', '"gunicorn==22.0.0", "requests"')})
    assert stale.status == Build.FAILED
    assert stale.error.startswith("uv.lock: the dependencies could not be installed"), stale.error
    assert "The lockfile at `uv.lock` needs to be updated, but `--locked` was provided" in read_text(stale.log_stream)
    assert not stale.digest and component.images.count() == 1


EXPORTED_RUNTIME = "exported the runtime stage (base image and dependencies) as well as the code"


def get_path(host: str, path: str) -> tuple[int, str]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", settings.INGRESS_PORT, timeout=5)
    conn.request("GET", path, headers={"Host": host})
    response = conn.getresponse()
    return response.status, response.read().decode().strip()


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")
def test_a_flask_app_builds_from_pypi_serves_promotes_and_reuses_its_dependency_layer(source_component, settings):
    settings.ROLLOUT_STOP_GRACE = 1
    component = source_component({"requirements.txt": "flask==3.0.3\ngunicorn==22.0.0\n", "app.py": FLASK_APP})
    first = built(component)
    log = read_text(first.log_stream)
    assert first.status == Build.SUCCEEDED, log[-3000:]
    assert "source build: python; starts with 'gunicorn --bind 0.0.0.0:$PORT app:app'" in log
    assert image_user(first.image_reference) == source.APP_USER
    # The build stage trusted the host's CA bundle; the image does not hold it (BUILD_CA_IN_IMAGE is off).
    inside = subprocess.run(["docker", "run", "--rm", first.image_reference, "ls", "/etc/choreo"], capture_output=True, text=True)
    assert inside.returncode != 0 and "No such file" in inside.stderr
    dev, prod = deploy_and_promote(component, first)
    assert dev == prod == (200, "hello from flask, uid 10001")

    # A commit that changes only code: the dependency step comes from the cache, and the
    # image shares every layer but the code's.
    second = built(component, {"app.py": FLASK_APP.replace("from flask", "from flask, again")})
    log = read_text(second.log_stream)
    assert second.status == Build.SUCCEEDED, log[-3000:]
    pip_step = log.split(" : RUN python3 -m pip --python /opt/venv/bin/python install")[1].splitlines()[1]
    assert pip_step.strip() == "---> Using cache", log[-3000:]
    before, after = layers(first.image_reference), layers(second.image_reference)
    assert len(before) == len(after) and before[:-1] == after[:-1] and before[-1] != after[-1]
    # ...and those layers are taken from the registry as the first build made them, not read again.
    reused = next(line for line in log.splitlines() if " layer(s); " in line)
    assert reused.startswith(f"{len(after)} layer(s); {len(after) - 1} of them (base image or dependencies) already in the registry")
    # The runtime stage (base and dependencies) was exported from the Engine for the first
    # build only: the second exported its code alone.
    assert EXPORTED_RUNTIME in read_text(first.log_stream) and EXPORTED_RUNTIME not in log


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("registry_server", "base_images")
def test_a_dependency_that_does_not_resolve_fails_the_build_and_pushes_nothing(source_component):
    component = source_component({"requirements.txt": "flask==3.0.3\nno-such-package-choreo-test==9.9.9\n", "app.py": FLASK_APP})
    build = built(component)
    assert build.status == Build.FAILED
    assert "no-such-package-choreo-test" in build.error or "no-such-package-choreo-test" in read_text(build.log_stream)
    assert "requirements.txt" in build.error and not build.digest and not component.images.exists()


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")
def test_an_express_app_builds_from_npm_serves_and_promotes(source_component, settings):
    settings.ROLLOUT_STOP_GRACE = 1
    component = source_component(fixture("node"))
    build = built(component)
    log = read_text(build.log_stream)
    assert build.status == Build.SUCCEEDED, log[-3000:]
    assert "source build: node; starts with 'npm start' (package.json scripts.start)" in log
    assert image_user(build.image_reference) == source.APP_USER
    assert deploy_and_promote(component, build) == ((200, "hello from express, uid 10001"),) * 2

    # A package.json that its lock file does not match fails the build, naming both.
    broken = built(component, {"package.json": fixture("node")["package.json"].replace('"4.21.2"', '"4.19.0"')})
    assert broken.status == Build.FAILED
    assert "npm ci" in broken.error and "package-lock.json" in read_text(broken.log_stream)


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")
def test_a_go_server_builds_from_the_module_proxy_into_an_image_without_go(source_component, settings):
    settings.ROLLOUT_STOP_GRACE = 1
    component = source_component(fixture("go"))
    build = built(component)
    log = read_text(build.log_stream)
    assert build.status == Build.SUCCEEDED, log[-3000:]
    assert "source build: go; starts with /app/server (the Go binary)" in log
    attrs = pulled(build.image_reference)
    assert attrs["Config"]["User"] == source.APP_USER and attrs["Size"] < 30 * 1024**2  # busybox and one binary: no toolchain
    dev, prod = deploy_and_promote(component, build)
    assert dev == prod and dev[0] == 200 and dev[1].startswith("hello from go, uid 10001, ")

    # A code-only commit reuses the module download from the cache.
    again = built(component, {"main.go": fixture("go")["main.go"].replace("hello from go", "hi from go")})
    log = read_text(again.log_stream)
    assert again.status == Build.SUCCEEDED, log[-3000:]
    assert log.split(" : RUN go mod download")[1].splitlines()[1].strip() == "---> Using cache"


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")
def test_a_start_command_that_exits_is_stopped_at_the_health_gate_and_the_ca_bundle_is_a_setting(source_component, settings):
    settings.ROLLOUT_STOP_GRACE = 1
    component = source_component(
        {**fixture("static"), ".choreo/component.yaml": SERVICE.replace("startupTimeout: 30s", "startupTimeout: 3s") + "run: 'false'\n"}
    )
    build = built(component)
    assert build.status == Build.SUCCEEDED, build.error
    deployment = finish(services.deployment_deploy(component=component, build=build))
    assert deployment.status == Deployment.FAILED and "health check" in deployment.error, deployment.error

    settings.BUILD_CA_BUNDLE = Path("/nonexistent/ca.pem")
    refused = built(component, {"style.css": "h1 { color: red; }\n"})
    assert refused.status == Build.FAILED and "BUILD_CA_BUNDLE /nonexistent/ca.pem cannot be read" in refused.error


def test_hostile_manifests_are_refused_with_a_reason():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(source.SourceError, match="package.json is (nested too deeply|not valid JSON)"):
        source.plan("node", files({"package.json": deep, "package-lock.json": "{}"}), descriptor())
    with pytest.raises(source.SourceError, match="pyproject.toml is (nested too deeply|not valid TOML)"):
        source.plan("python", files({"pyproject.toml": "x = " + deep}), descriptor('run: "x"\n'))
    with pytest.raises(source.SourceError, match="must be a list of strings"):
        source.plan("python", files({"pyproject.toml": "[project]\ndependencies = 3\n"}), descriptor('run: "x"\n'))
    with pytest.raises(source.SourceError, match=r"\[project\] must be a table"):
        source.plan("python", files({"pyproject.toml": 'project = "x"\n'}), descriptor('run: "x"\n'))
