"""Source builds against hand-written Dockerfiles, side by side in one run, on the same
applications (examples/source-builds/: a static site, a Flask app, an Express app and a
net/http server).

For each kind, on one platform (`manage.py up`, the Engine's build cache on):
- the source build (no Dockerfile) and a good, hand-written multi-stage Dockerfile of the
  same app: build time (the build's own start to finish) and image size (compressed
  layers, as pushed), with their ratios;
- a commit that changes only code, rebuilt from source: its time against the first build.

The hand-written Dockerfiles trust the host's CA bundle the way a user on this machine
would have to: a copy committed beside them. Usage: .venv/bin/python -m benchmarks.source_builds
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from benchmarks.platform import ROOT, git, platform_shell, running_platform

EXAMPLES = ROOT / "examples" / "source-builds"
CODE_CHANGE = {
    "static": ("index.html", "static", "static, changed"),
    "python": ("app.py", "from flask", "from flask, changed"),
    "node": ("server.js", "from express", "from express, changed"),
    "go": ("main.go", "hello from go", "hi from go"),
}
HANDWRITTEN = {
    "static": """\
FROM choreo/busybox:1
COPY index.html style.css /www/
USER 10001:10001
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
""",
    "python": """\
FROM choreo/python-build:3.11 AS deps
COPY ca.crt /ca.crt
RUN python3 -m venv --without-pip /venv
COPY requirements.txt /requirements.txt
RUN PIP_CERT=/ca.crt python3 -m pip --python /venv/bin/python install --no-compile --no-cache-dir -r /requirements.txt
FROM choreo/python:3.11
COPY --from=deps /venv /venv
COPY app.py /app/
WORKDIR /app
USER 10001:10001
CMD ["/venv/bin/gunicorn", "--bind", "0.0.0.0:8080", "app:app"]
""",
    "node": """\
FROM choreo/node:20 AS deps
COPY ca.crt /ca.crt
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm_config_cafile=/ca.crt npm ci --omit=dev --no-audit --no-fund
FROM choreo/node:20
WORKDIR /app
COPY --from=deps /app/node_modules node_modules
COPY package.json server.js ./
USER 10001:10001
CMD ["node", "server.js"]
""",
    "go": """\
FROM choreo/go:1.26 AS build
COPY ca.crt /ca.crt
WORKDIR /src
COPY go.mod go.sum ./
RUN SSL_CERT_FILE=/ca.crt GOTOOLCHAIN=local go mod download
COPY main.go ./
RUN CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath -ldflags="-s -w" -o /server .
FROM choreo/busybox:1
COPY --from=build /server /server
USER 10001:10001
CMD ["/server"]
""",
}


# A mark of this run in each app's dependency declaration: no build of this run may find its
# dependency step in the Engine's cache from an earlier run, so first builds are cold.
NONCE = secrets.token_hex(6)
MARK = {
    "static": ("index.html", lambda text: f"<!-- {NONCE} -->\n{text}"),
    "python": ("requirements.txt", lambda text: f"# {NONCE}\n{text}"),
    "node": ("package.json", lambda text: text.replace('"private": true', f'"description": "{NONCE}",\n  "private": true')),
    "go": ("go.mod", lambda text: f"// {NONCE}\n{text}"),
}


def repository(tmp: Path, kind: str, handwritten: bool, suffix: str = "") -> Path:
    repo = tmp / f"{kind}-{'hand' if handwritten else 'source'}{suffix}"
    shutil.copytree(EXAMPLES / kind, repo)
    name, mark = MARK[kind]
    (repo / name).write_text(mark((repo / name).read_text()) + ("\n" if suffix else ""))
    if handwritten:
        (repo / "Dockerfile").write_text(HANDWRITTEN[kind])
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", repo / "ca.crt")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def seconds(build: dict) -> float:
    started, finished = (datetime.fromisoformat(build[k].replace("Z", "+00:00")) for k in ("started_at", "finished_at"))
    return (finished - started).total_seconds()


def main() -> None:
    results = {}
    with running_platform("bench-source-") as (tmp, base, session):
        api = f"{base}/api/projects"
        session.post(f"{api}/", json={"name": "bench"}, timeout=30).raise_for_status()
        repos = Path(tempfile.mkdtemp(prefix="bench-source-repos-"))
        for kind in ("static", "python", "node", "go"):
            figures = {}
            # Not measured: the first build on a base image normalizes its layers once
            # (builds/oci.py's layer cache), which would count against whichever came first.
            for warm in (True, False):
                name = f"{kind}-warm-{'hand' if warm else 'source'}"
                repo = repository(repos, kind, warm, suffix="-warm")
                session.post(f"{api}/bench/components/", json={"name": name, "repository": str(repo)}, timeout=60).raise_for_status()
                session.post(f"{api}/bench/components/{name}/builds/?wait=1", json={}, timeout=900).raise_for_status()
            for handwritten in (True, False):
                name = f"{kind}-{'hand' if handwritten else 'source'}"
                repo = repository(repos, kind, handwritten)
                session.post(f"{api}/bench/components/", json={"name": name, "repository": str(repo)}, timeout=60).raise_for_status()
                build = session.post(f"{api}/bench/components/{name}/builds/?wait=1", json={}, timeout=900).json()
                if build.get("status") != "succeeded":
                    raise SystemExit(f"{name} did not build: {build.get('error')}")
                size = int(platform_shell(tmp, f"from builds.models import Build; print(Build.objects.get(pk={build['id']}).image.size)"))
                figures["hand" if handwritten else "source"] = (seconds(build), size)
                if not handwritten:
                    path, old, new = CODE_CHANGE[kind]
                    (repo / path).write_text((repo / path).read_text().replace(old, new))
                    git(repo, "commit", "-q", "-am", "code only")
                    again = session.post(f"{api}/bench/components/{name}/builds/?wait=1", json={}, timeout=900).json()
                    if again.get("status") != "succeeded":
                        raise SystemExit(f"{name}'s code-only rebuild failed: {again.get('error')}")
                    figures["rebuild"] = (seconds(again), None)
            results[kind] = figures
        shutil.rmtree(repos, ignore_errors=True)
    print(f"machine: {os.uname().nodename}, {os.cpu_count()} cores; the Engine's build cache on, first builds cold; one build each")
    for kind, f in results.items():
        (hand_s, hand_b), (src_s, src_b), (re_s, _) = f["hand"], f["source"], f["rebuild"]
        print(
            f"{kind}: source {src_s:.1f} s, {src_b / 1024**2:.1f} MiB; hand-written Dockerfile {hand_s:.1f} s, {hand_b / 1024**2:.1f} MiB; "
            f"ratio time {src_s / hand_s:.2f}x, size {src_b / hand_b:.2f}x; code-only rebuild {re_s:.1f} s ({re_s / src_s:.2f}x the first)"
        )


if __name__ == "__main__":
    main()
