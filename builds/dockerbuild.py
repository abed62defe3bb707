"""The image build step, through the Docker SDK for Python (the Engine's builder).

`DockerBuild.run()` streams the builder's output line by line and returns the image id.
`abort()`, called from another thread (cancel or timeout), cuts the connection to the
Engine, which stops the build there and then, even inside a silent `RUN` step.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import docker
import requests
import urllib3
from django.conf import settings
from docker.errors import APIError, DockerException, ImageNotFound

from builds.oci import write_stream
from choreo_site import runs

_FROM_RE = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE | re.MULTILINE)


class BuildStepError(Exception):
    pass


class BuildAborted(runs.Aborted):
    """The build was cancelled or timed out while the Engine was building it."""


class _StreamingClient(docker.APIClient):
    """Keeps the response of the streaming build call, so another thread can cut it, passes
    the build parameters the SDK has no argument for (a CPU quota, a cgroup parent), and
    sends no registry credentials."""

    current_response = None
    extra_build_params: dict[str, str] = {}

    def _stream_helper(self, response, decode=False):
        self.current_response = response
        return super()._stream_helper(response, decode=decode)

    def _set_auth_headers(self, headers):
        """A build gets no registry credentials, neither the platform's nor those in the
        host's ~/.docker/config.json: a `FROM` cannot pull from the platform's registry."""

    def _post(self, url, **kwargs):
        if url.endswith("/build") and self.extra_build_params:
            kwargs["params"] = {**(kwargs.get("params") or {}), **self.extra_build_params}
        return super()._post(url, **kwargs)


OOM_EXIT = "returned a non-zero code: 137"
# The legacy builder's lines: "Step 3/9 : FROM image AS name", and " ---> 1a2b3c4d5e6f" after each step.
_STEP_FROM = re.compile(r"^Step \d+/\d+ : FROM\s", re.IGNORECASE)
_STEP_IMAGE = re.compile(r"^ ---> ([0-9a-f]{12,64})\s*$")


def _pids_cgroup() -> str | None:
    """A cgroup (v1 `pids` hierarchy) whose pids.max caps the processes of every build step:
    the builder has no per-build process limit, but takes a cgroup parent. None where the
    machine offers no such hierarchy; builds then have memory and CPU limits only."""
    root = Path("/sys/fs/cgroup/pids")
    if not root.is_dir() or settings.BUILD_PIDS <= 0:  # 0: no limit
        return None
    name = f"{settings.INSTANCE_NAMESPACE}-builds"
    try:
        (root / name).mkdir(exist_ok=True)
        (root / name / "pids.max").write_text(str(settings.BUILD_PIDS))
    except OSError:
        return None
    return "/" + name


def engine() -> docker.DockerClient:
    return docker.from_env(timeout=300)


def engine_version() -> str:
    try:
        return engine().version().get("Version", "unknown")
    except DockerException as exc:
        raise BuildStepError(f"the Docker Engine is not reachable: {exc}") from None


def base_images(dockerfile_text: str) -> list[str]:
    """The images the Dockerfile builds FROM, without references to its own stages."""
    stages, images = set(), []
    for image, alias in _FROM_RE.findall(dockerfile_text):
        if image.lower() not in stages and image.lower() != "scratch":
            images.append(image)
        if alias:
            stages.add(alias.lower())
    return images


def local_image_id(name: str) -> str | None:
    try:
        return engine().images.get(name).id
    except ImageNotFound:
        return None
    except DockerException as exc:
        raise BuildStepError(f"the Docker Engine is not reachable: {exc}") from None


def base_layer_ids(image_ids) -> set[str]:
    """The Engine diff_ids of the layers of these local images."""
    ids: set[str] = set()
    for image_id in image_ids:
        if image_id:
            try:
                ids.update(engine().images.get(image_id).attrs["RootFS"].get("Layers", []))
            except DockerException:
                pass
    return ids


class DockerBuild:
    def __init__(self, *, context: Path, dockerfile: str, tag: str, buildargs: dict[str, str], labels: dict[str, str], use_cache: bool):
        self.context = context
        self.dockerfile = dockerfile
        self.tag = tag
        self.buildargs = buildargs
        self.labels = labels
        self.use_cache = use_cache
        self._client = _StreamingClient(version="auto", timeout=None)
        self._aborted = threading.Event()
        self.abort_reason = ""
        self.limits = {"memory": settings.BUILD_MEMORY, "cpus": settings.BUILD_CPUS}

    def _limit_params(self) -> dict[str, str]:
        params = {"cpuperiod": "100000", "cpuquota": str(int(self.limits["cpus"] * 100000))} if self.limits["cpus"] > 0 else {}
        cgroup = _pids_cgroup()
        if cgroup:
            params["cgroupparent"] = cgroup
        return params

    def run(self, on_output: Callable[[str], None]) -> str:
        """Build; pass each chunk of builder output to `on_output`; return the image id.
        `stage_images` then holds the last image of each stage before the final one."""
        image_id = None
        self.stage_images: list[str] = []
        last = None  # the image the last step made
        try:
            self._client.extra_build_params = self._limit_params()
            stream = self._client.build(
                container_limits={"memory": self.limits["memory"], "memswap": self.limits["memory"]},
                path=str(self.context),
                dockerfile=self.dockerfile,
                tag=self.tag,
                buildargs=self.buildargs,
                labels=self.labels,
                rm=True,
                forcerm=True,
                pull=False,
                nocache=not self.use_cache,
                decode=True,
            )
            for message in stream:
                if "stream" in message:
                    on_output(message["stream"])
                    for line in message["stream"].splitlines():
                        if _STEP_FROM.match(line) and last:
                            self.stage_images.append(last)  # a stage begins: the one before ended there
                        made = _STEP_IMAGE.match(line)
                        last = made.group(1) if made else last
                elif "status" in message:
                    on_output(message["status"] + "\n")
                if "aux" in message and "ID" in message["aux"]:
                    image_id = message["aux"]["ID"]
                if "error" in message:
                    error = message["error"].strip()
                    if OOM_EXIT in error:
                        error += f": killed, out of memory (a build may use {self.limits['memory'] // 1024**2} MiB: BUILD_MEMORY)"
                    raise BuildStepError(error)
        except BuildStepError:
            raise
        except Exception as exc:
            if self._aborted.is_set():  # we cut the connection ourselves
                raise BuildAborted(self.abort_reason) from None
            if isinstance(exc, (OSError, APIError, DockerException, ValueError, urllib3.exceptions.HTTPError, requests.RequestException)):
                raise BuildStepError(f"the Docker Engine failed the build: {exc}") from None
            raise
        if self._aborted.is_set():
            raise BuildAborted(self.abort_reason)
        if image_id is None:
            raise BuildStepError("the Docker Engine finished without producing an image")
        return image_id

    def abort(self, reason: str) -> None:
        self.abort_reason = reason
        self._aborted.set()
        response = self._client.current_response
        if response is None:
            return
        try:
            raw = response.raw._fp.fp.raw
            getattr(raw, "_sock", raw).shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError):
            response.close()


def save_image(image_id: str, dest: Path) -> Path:
    try:
        return write_stream(engine().images.get(image_id).save(named=False), dest)
    except DockerException as exc:
        raise BuildStepError(f"could not export the built image: {exc}") from None


def cache_tag(component_pk: int) -> str:
    """The local tag that keeps a component's last built image, so that its next build finds
    the Engine's build cache for every step of the image's own stage (removing a build's
    tag removes that stage's intermediate images). Its earlier stages' last images are kept
    as `<tag>-stage<N>`. Unguessable, like a build's tag: another project's Dockerfile must
    not build FROM it."""
    key = hmac.new(settings.SECRET_KEY.encode(), f"build-cache:{component_pk}".encode(), hashlib.sha256).hexdigest()[:16]
    return f"choreo-cache/{settings.INSTANCE_NAMESPACE}:{component_pk}-{key}"


def cache_tags(component_pk: int) -> dict[str, str]:
    """The component's cache tags now in the Engine, with their image ids."""
    repository, _, name = cache_tag(component_pk).rpartition(":")
    try:
        images = engine().images.list(name=repository)
    except DockerException:
        return {}
    return {tag: image.id for image in images for tag in image.tags if tag.partition(":")[2].startswith(name)}


def cache_keep(image_id: str, component_pk: int, stages: list[str] = ()) -> None:
    """Keep `image_id`, and the last image of each of its earlier stages, as the component's
    build cache, in place of the ones before. Nothing else keeps a multi-stage build's earlier
    stages: untagged, a new one would be left behind by every build that changed them."""
    tag = cache_tag(component_pk)
    repository = tag.rpartition(":")[0]
    wanted = {tag: image_id, **{f"{tag}-stage{n}": stage for n, stage in enumerate(stages, 1)}}
    try:  # by full id: a build's output names its stages' images by a prefix
        images = {name: engine().images.get(image) for name, image in wanted.items()}
    except DockerException:
        return  # best effort: the next build is only slower
    ids = {image.id for image in images.values()}
    before = cache_tags(component_pk)
    # By tag only, and the tags of images still wanted only once those are tagged again:
    # removing an image's last tag removes the image.
    for name, image in before.items():
        if image not in ids:
            _remove_tag(name)
    try:
        for name, image in images.items():
            image.tag(repository, name.rpartition(":")[2])
    except DockerException:
        return
    for name in before.keys() - images.keys():
        if before[name] in ids:
            _remove_tag(name)


def cache_forget(component_pk: int) -> None:
    """Remove a deleted component's cached images."""
    for name in cache_tags(component_pk):
        _remove_tag(name)


def _remove_tag(name: str) -> None:
    """Remove the tag `name`, and its image with it unless something else still uses the
    image: another tag (the Engine's cache gives two components, or two platforms on one
    Engine, the same image for the same steps; a build in flight holds it by its own tag
    only), a child image, a container. Never by the image's id: the Engine removes an image
    by id together with its one other tag."""
    try:
        engine().images.remove(name, force=False, noprune=False)
    except DockerException:
        pass


def remove_image(name: str) -> None:
    """Remove the build's tag and the intermediate images only it kept alive."""
    try:
        engine().images.remove(name, force=True, noprune=False)
    except ImageNotFound:
        pass
    except DockerException:
        pass  # cleanup is best effort; the next build of the same tag replaces it
