"""Git, through the `git` binary: a mirror per component, commit resolution, checkout.

Each repository has a bare mirror under DATA_DIR/git. Every operation on a mirror holds a
file lock, so a page listing commits and a worker fetching for a build never race.
A checkout is `git archive` of one commit: exactly the commit's tree, every file with the
commit's time as its mtime, which is what repeatable builds need.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from django.conf import settings

from choreo_site.errors import PlatformError

FETCH_TIMEOUT = 300
COMMIT_RE = re.compile(r"^[0-9a-f]{4,40}$")
BRANCH_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/-]{1,200}(?<![./])$")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!//).+$")

# Never prompt for credentials: a worker has no terminal, and a prompt would hang a build.
GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "true",
    "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
    "GIT_CONFIG_NOSYSTEM": "1",
    "LC_ALL": "C",
}


class GitError(PlatformError):
    pass


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str
    timestamp: int


def validate_repository(url: str) -> str:
    """A local path, file://, http(s):// or SSH URL; the reason if not."""
    if not isinstance(url, str) or not url.strip() or len(url) > 1000 or any(ch in url for ch in "\x00\n\r"):
        raise GitError("repository must be a Git URL or a local path.", errors={"repository": ["Enter a Git URL or a local path."]})
    url = url.strip()
    if url.startswith("-"):
        raise GitError(f"repository {url!r} is not a valid Git URL.", errors={"repository": ["A repository cannot start with '-'."]})
    scheme = urlsplit(url).scheme
    if scheme in ("http", "https", "ssh", "git", "file") or _SCP_LIKE.match(url) or url.startswith("/"):
        check_local_repository(url)
        return url
    raise GitError(
        f"repository {url!r} is not a local path (absolute), file://, https:// or SSH Git URL.",
        errors={"repository": ["Use an absolute local path, file://, https:// or an SSH URL."]},
    )


def check_local_repository(url: str) -> None:
    """A local path (or file:// URL) must lie, links resolved, under one of the directories
    the operator allows (LOCAL_REPOSITORY_ROOTS), and never inside the data directory,
    where other projects' mirrors, the database and the keys live. Remote URLs pass."""
    if url.startswith("/"):
        path = url
    elif urlsplit(url).scheme == "file":
        path = unquote(urlsplit(url).path)
    else:
        return
    real = Path(os.path.realpath(path))
    if real.is_relative_to(os.path.realpath(settings.DATA_DIR)):
        raise GitError(
            f"repository {url!r} is inside the platform's data directory, which no component may build.",
            errors={"repository": ["A local repository cannot be inside the platform's data directory."]},
        )
    roots = [Path(os.path.realpath(root)) for root in settings.LOCAL_REPOSITORY_ROOTS]
    if not any(real.is_relative_to(root) for root in roots):
        allowed = ", ".join(map(str, settings.LOCAL_REPOSITORY_ROOTS)) or "none"
        raise GitError(
            f"repository {url!r} is a local path outside the directories this platform builds from ({allowed}).",
            errors={"repository": [f"Local repositories must be under LOCAL_REPOSITORY_ROOTS ({allowed})."]},
        )


def split_credentials(url: str) -> tuple[str, str]:
    """An http(s) URL without its user info, and the user info ("user:token", or a token
    alone): the first is shown everywhere, the second kept write-only and encrypted.
    Other URLs (SSH's `git@`, local paths) carry no secret and come back whole."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url, ""
    userinfo, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=host)), userinfo


def join_credentials(url: str, userinfo: str) -> str:
    """The URL to fetch from: `url` with `userinfo` put back."""
    if not userinfo:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))


def redact_url(url: str) -> str:
    """Hide credentials embedded in an https URL before it reaches a log or a message."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # hostile or mistyped: show none of it
        return "(a URL that cannot be parsed)"
    if parts.password or parts.username and parts.scheme in ("http", "https"):
        netloc = "***@" + (parts.hostname or "") + (f":{port}" if port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def validate_branch(branch: str) -> str:
    if not isinstance(branch, str) or not BRANCH_RE.match(branch):
        raise GitError(f"branch {branch!r} is not a valid branch name.", errors={"branch": ["Enter a valid branch name."]})
    return branch


def _run(args: list[str], *, cwd: Path | None = None, timeout: int = 60, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, **GIT_ENV}
    try:
        result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, timeout=timeout, text=True, errors="replace")
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} took longer than {timeout}s.") from None
    if check and result.returncode != 0:
        raise GitError(result.stderr.strip() or f"git {args[0]} failed with exit code {result.returncode}")
    return result


def mirror_path(url: str) -> Path:
    """One mirror per repository URL (credentials left out, so changing them keeps it):
    components of one monorepo share it."""
    public, _ = split_credentials(url)
    return settings.DATA_DIR / "git" / (hashlib.sha256(public.encode()).hexdigest()[:24] + ".git")


@contextmanager
def _locked(mirror: Path):
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with open(mirror.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ls_remote_head(url: str, branch: str, *, timeout: int = 30) -> str:
    """The remote branch's head commit, without fetching. Cheap; used by polling."""
    check_local_repository(url)
    result = _run(["ls-remote", "--heads", "--", url, f"refs/heads/{branch}"], timeout=timeout, check=False)
    if result.returncode != 0:
        raise GitError(f"repository {redact_url(url)} cannot be read: {result.stderr.strip() or 'git ls-remote failed'}")
    for line in result.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha
    raise GitError(f"branch {branch!r} does not exist in repository {redact_url(url)}.", errors={"branch": ["No such branch."]})


def sync(url: str, *, timeout: int = FETCH_TIMEOUT) -> Path:
    """Clone or fetch the repository's mirror; returns its path."""
    check_local_repository(url)  # again: a path allowed when the component was made may have become a link
    mirror = mirror_path(url)
    with _locked(mirror):
        if not (mirror / "HEAD").exists():
            tmp = mirror.with_suffix(".tmp")
            shutil.rmtree(tmp, ignore_errors=True)  # left by a fetch that was killed
            _run(["init", "--bare", "--quiet", str(tmp)], timeout=30)
            try:
                _run(["fetch", "--quiet", "--prune", "--no-tags", "--", url, "+refs/heads/*:refs/heads/*"], cwd=tmp, timeout=timeout)
            except GitError as exc:
                raise GitError(f"repository {redact_url(url)} cannot be fetched: {exc.detail}") from None
            tmp.rename(mirror)
        else:
            try:
                _run(["fetch", "--quiet", "--prune", "--no-tags", "--", url, "+refs/heads/*:refs/heads/*"], cwd=mirror, timeout=timeout)
            except GitError as exc:
                raise GitError(f"repository {redact_url(url)} cannot be fetched: {exc.detail}") from None
    return mirror


def resolve(mirror: Path, *, branch: str, commit: str | None = None) -> str:
    """The full sha of `commit` (any unambiguous prefix), or of the branch head."""
    if not (mirror / "HEAD").exists():
        raise GitError("the repository has not been fetched yet.")
    if commit is None:
        result = _run(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"], cwd=mirror, check=False)
        if result.returncode != 0:
            raise GitError(f"branch {branch!r} does not exist in the repository.", errors={"branch": ["No such branch."]})
        return result.stdout.strip()
    commit = commit.strip().lower()
    if not COMMIT_RE.match(commit):
        raise GitError(f"commit {commit!r} is not a commit id (4 to 40 hex digits).", errors={"commit": ["Enter a commit id."]})
    result = _run(["rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"], cwd=mirror, check=False)
    if result.returncode != 0:
        raise GitError(f"commit {commit} does not exist in the repository.", errors={"commit": ["No such commit."]})
    return result.stdout.strip()


def commit_info(mirror: Path, sha: str) -> Commit:
    out = _run(["show", "-s", "--format=%H%x00%s%x00%an%x00%ct", sha], cwd=mirror).stdout
    full, subject, author, ts = out.rstrip("\n").split("\x00")
    return Commit(full, subject, author, int(ts))


def recent_commits(mirror: Path, *, branch: str, limit: int = 20) -> list[Commit]:
    result = _run(["log", f"--max-count={limit}", "--format=%H%x00%s%x00%an%x00%ct", f"refs/heads/{branch}", "--"], cwd=mirror, check=False)
    if result.returncode != 0:
        return []
    commits = []
    for line in result.stdout.splitlines():
        full, subject, author, ts = line.split("\x00")
        commits.append(Commit(full, subject, author, int(ts)))
    return commits


def path_exists(mirror: Path, sha: str, path: str) -> bool:
    spec = f"{sha}:{path}" if path not in ("", ".") else f"{sha}:"
    return _run(["cat-file", "-e", spec], cwd=mirror, check=False).returncode == 0


def list_names(mirror: Path, sha: str, path: str) -> frozenset[str]:
    """The names at the top of a directory at a commit (files, directories and links)."""
    spec = f"{sha}:{path}" if path not in ("", ".") else f"{sha}:"
    result = _run(["ls-tree", "--name-only", "-z", spec], cwd=mirror, check=False)
    return frozenset(name for name in result.stdout.split("\0") if name) if result.returncode == 0 else frozenset()


def read_file(mirror: Path, sha: str, path: str, *, max_bytes: int = 1024 * 1024) -> bytes | None:
    """A file's content at a commit, or None when it is not there (or is a directory)."""
    if "\n" in path:  # one query per line below
        return None
    spec = f"{sha}:{path}"
    env = {**os.environ, **GIT_ENV}
    found = subprocess.run(
        ["git", "cat-file", "--batch-check=%(objecttype) %(objectsize)"],
        input=f"{spec}\n", cwd=mirror, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    kind, _, size = found.stdout.strip().partition(" ")
    if found.returncode != 0 or kind != "blob":
        return None
    if int(size) > max_bytes:
        raise GitError(f"{path} at {sha[:12]} is larger than {max_bytes // 1024} KiB.")
    return subprocess.run(["git", "cat-file", "blob", spec], cwd=mirror, env=env, capture_output=True, check=True).stdout


def checkout(mirror: Path, sha: str, dest: Path) -> None:
    """Extract the commit's tree into `dest` (which must not exist). Submodules are not included."""
    dest.mkdir(parents=True)
    env = {**os.environ, **GIT_ENV}
    with (
        tempfile.TemporaryFile() as stderr,
        subprocess.Popen(["git", "archive", "--format=tar", sha], cwd=mirror, env=env, stdout=subprocess.PIPE, stderr=stderr) as proc,
    ):
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
                # The "data" filter refuses links that point outside the checkout (absolute,
                # or climbing out with ..), device files, and setuid bits.
                archive.extractall(dest, filter="data")
            # tarfile stops at the end-of-archive marker; git still writes the record's
            # padding after it, and would die of SIGPIPE (exit -13) if the pipe closed first.
            _drain(proc.stdout)
        except tarfile.FilterError as exc:
            proc.kill()
            raise GitError(f"{exc.tarinfo.name}: {_filter_reason(exc)}; the platform does not check out such files.") from None
        except tarfile.ReadError as exc:
            _drain(proc.stdout)
            if proc.wait() == 0:
                raise GitError(f"git archive of {sha} could not be read: {exc}") from None
        if proc.wait() != 0:  # git's own words say why
            stderr.seek(0)
            said = stderr.read(2000).decode(errors="replace").strip()
            raise GitError(f"git archive of {sha} failed with exit code {proc.returncode}" + (f": {said}" if said else ""))


def _drain(stream) -> None:
    while stream.read(65536):
        pass


def _filter_reason(exc: tarfile.FilterError) -> str:
    if isinstance(exc, tarfile.AbsoluteLinkError):
        return f"a link to an absolute path ({exc.tarinfo.linkname})"
    if isinstance(exc, tarfile.LinkOutsideDestinationError):
        return f"a link that points outside the repository ({exc.tarinfo.linkname})"
    return str(exc)


def changed_paths(mirror: Path, before: str, after: str) -> list[str] | None:
    """Paths changed between two commits, or None when `before` is unknown."""
    result = _run(["diff", "--name-only", "--no-renames", before, after, "--"], cwd=mirror, check=False)
    return result.stdout.splitlines() if result.returncode == 0 else None
