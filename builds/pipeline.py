"""The build pipeline for one build: checkout → descriptor → image build → scan → push →
record endpoints and API specs. Runs inside an RQ job (see `builds.jobs`).

Status changes are conditional updates, so a cancel, the reaper and this job never race
into a wrong state. A failed build never replaces an image: the image is recorded only
after the push succeeded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import secrets
import shutil
import time
from contextlib import ExitStack
from functools import partial

from django.conf import settings
from django.db import transaction

from builds import git, registry, source
from builds.descriptor import DESCRIPTOR_PATH, DescriptorError
from builds.dockerbuild import (
    BuildStepError,
    DockerBuild,
    base_images,
    base_layer_ids,
    cache_keep,
    local_image_id,
    remove_image,
    save_image,
)
from builds.models import ApiSpec, Build, Component, Image
from builds.oci import ImagePart, LayerCache, LayersNotExported, assemble, iso, saved_image
from builds.services import descriptor_at, images_prune_commit, registry_collection_wait
from builds.workspace import Workspace, create_directory, create_file, workspace_create, workspace_for, workspace_remove
from choreo_site import runs
from choreo_site.errors import PlatformError
from choreo_site.logstream import LogWriter
from environments import permissions

log = logging.getLogger(__name__)

# Bump when the way images are assembled changes: old images then stop being reused.
RECIPE_VERSION = "1"


def _inputs_key(*, commit: str, component: Component, descriptor: dict, bases: dict[str, str | None], plan=None) -> str:
    material = {
        "recipe": RECIPE_VERSION,
        "commit": commit,
        "path": component.path,
        "build": descriptor["build"],
        "bases": bases,
    }
    if plan is not None:  # a source build: what the platform builds for it (stacked), with the start command it chose
        material["plan"] = plan.stacked
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _source_plan(mirror, sha: str, base: str, descriptor) -> source.Plan:
    """The plan of a source build, from the component's files at the commit."""

    def read(name: str) -> str | None:
        content = git.read_file(mirror, sha, base + name, max_bytes=256 * 1024)
        return content.decode("utf-8", "replace") if content is not None else None

    files = source.Files(names=git.list_names(mirror, sha, base.rstrip("/") or "."), read=read)
    kind = descriptor.source or source.detect(files.names)
    return source.plan(kind, files, descriptor.data, ca_in_image=settings.BUILD_CA_IN_IMAGE)


def _source_context(workspace: Workspace, component_dir, plan: source.Plan):
    """A context of the platform's own beside the checkout: the component's files in app/
    (without .choreo and .git), the plan's Dockerfile as the platform builds it (stacked)
    and the CA bundle of BUILD_CA_BUNDLE."""
    context = create_directory(workspace.root / "source")
    shutil.copytree(component_dir, context / "app", symlinks=True, ignore=shutil.ignore_patterns(".choreo", ".git"))
    with create_file(context / "Dockerfile") as out:
        out.write(plan.stacked.encode())
    try:
        bundle = settings.BUILD_CA_BUNDLE.read_bytes()
    except OSError as exc:
        raise PlatformError(f"BUILD_CA_BUNDLE {settings.BUILD_CA_BUNDLE} cannot be read: {exc.strerror}") from None
    with create_file(context / "build-ca.crt") as out:
        out.write(bundle)
    return context, context / "Dockerfile"


def run(build_id: int) -> str:
    """Run the pipeline for a queued build (choreo_site.runs); returns its final status."""
    status = runs.execute(KIND, build_id, _run, load=lambda pk: Build.objects.select_related("component__project").get(pk=pk))
    if status == Build.SUCCEEDED:
        _after_success(build_id)
    return status


def _run(build: Build, writer: LogWriter, watchdog: runs.Watchdog) -> None:
    workspace = workspace_for(build.pk)
    # Unguessable: another project's build must not find this image by name to build FROM it.
    tag = f"choreo-build/{settings.INSTANCE_NAMESPACE}:{build.pk}-{secrets.token_hex(8)}"
    try:
        _pipeline(build, writer, watchdog, workspace, tag)
    finally:
        workspace_remove(workspace)
        remove_image(tag)


def _enqueue_again(build: Build) -> None:
    from builds.services import build_enqueue

    with transaction.atomic():
        build_enqueue(build)


def _orphaned(build: Build, reason: str) -> None:
    if runs.fail(KIND, build, reason):
        shutil.rmtree(settings.WORKSPACE_DIR / f"build-{build.pk}", ignore_errors=True)


KIND = runs.Kind(
    name="build",
    model=Build,
    queued=Build.QUEUED,
    running=Build.RUNNING,
    succeeded=Build.SUCCEEDED,
    failed=Build.FAILED,
    cancelled=Build.CANCELLED,
    final=Build.FINAL,
    expected=(PlatformError, BuildStepError, registry.RegistryError),
    job_id=lambda build: build.job_id,
    enqueue=_enqueue_again,
    readable=permissions.check_view,
    timeout_setting="BUILD_TIMEOUT",
    success_line="==> Build succeeded.",
    on_orphan=_orphaned,
)


# Apps later in the import order (deployments: auto deploy on build) hook in here.
_success_hooks: list = []


def register_success_hook(func) -> None:
    if func not in _success_hooks:
        _success_hooks.append(func)


def _after_success(build_id: int) -> None:
    for hook in _success_hooks:
        hook(build_id=build_id)


def _pipeline(build: Build, writer: LogWriter, watchdog: runs.Watchdog, workspace: Workspace, tag: str) -> None:
    component = build.component
    step_started = time.monotonic()

    def step(title: str) -> None:
        nonlocal step_started
        watchdog.check()
        writer.line(f"==> {title}")
        step_started = time.monotonic()

    step(f"Checkout {component.repository} ({component.branch}) at {build.commit[:12]}")
    mirror = git.sync(component.fetch_url)
    sha = git.resolve(mirror, branch=component.branch, commit=build.commit)
    info = git.commit_info(mirror, sha)
    Build.objects.filter(pk=build.pk).update(commit=sha, commit_message=info.subject[:500], commit_author=info.author[:200])
    writer.line(f"commit {sha} by {info.author}: {info.subject}")

    base = "" if component.path == "." else component.path + "/"
    descriptor_path = base + DESCRIPTOR_PATH
    step(f"Descriptor {descriptor_path}")
    descriptor = descriptor_at(mirror, sha, component.path)
    writer.line(
        f"type {descriptor.type}, {len(descriptor.endpoints)} endpoint(s), {len(descriptor.data['configurations'])} configurable(s)"
    )
    specs = {}
    for endpoint in descriptor.endpoints:
        if endpoint["schemaFile"]:
            content = git.read_file(mirror, sha, base + endpoint["schemaFile"])
            if content is None:
                raise DescriptorError(
                    f"endpoints.{endpoint['name']}.schemaFile",
                    f"{endpoint['schemaFile']} does not exist at commit {sha[:12]}",
                    path=descriptor_path,
                )
            specs[endpoint["name"]] = (endpoint["schemaFile"], content.decode("utf-8", "replace"))

    dockerfile_path = posixpath.normpath(posixpath.join(base, descriptor.dockerfile))
    dockerfile_text = None if descriptor.source else git.read_file(mirror, sha, dockerfile_path)
    plan = None
    if dockerfile_text is None and (descriptor.source or descriptor.data["build"] == {"dockerfile": "Dockerfile", "context": "."}):
        plan = _source_plan(mirror, sha, base, descriptor)  # no Dockerfile, none asked for: from source
        for line in source.describe(plan):
            writer.line(line)
        dockerfile_text = plan.stacked.encode()
    elif dockerfile_text is None:
        raise DescriptorError("build.dockerfile", f"{descriptor.dockerfile} does not exist at commit {sha[:12]}", path=descriptor_path)
    bases = {name: local_image_id(name) for name in base_images(dockerfile_text.decode(errors="replace"))}
    missing = [name for name, image_id in bases.items() if image_id is None]
    if plan is not None and missing:  # the platform's own images: say how to make them
        raise PlatformError(
            f"the base image {missing[0]} of {plan.kind} source builds is not on this machine: "
            "scripts/base-images.sh makes it (no image can be pulled)"
        )
    inputs_key = _inputs_key(commit=sha, component=component, descriptor=descriptor.data, bases=bases, plan=plan)

    image = Image.objects.filter(component=component, commit=sha, inputs_key=inputs_key).order_by("-created_at").first()
    if image is not None and registry.manifest_exists(component.registry_repository, image.digest):
        step("Image")
        writer.line(f"reusing {image.reference}: built earlier from the same commit and inputs")
        _record(build, descriptor.data, specs, image, reused=True)
        return

    step("Prepare the build context")
    workspace = workspace_create(build.pk)  # the platform's own directory; the checkout is one part of it
    git.checkout(mirror, sha, workspace.checkout)
    component_dir = workspace.checkout / component.path
    if plan is not None:
        context, dockerfile = (path.resolve() for path in _source_context(workspace, component_dir, plan))
        inside = context
    else:
        context = (component_dir / descriptor.context).resolve()
        dockerfile = (component_dir / descriptor.dockerfile).resolve()
        inside = workspace.checkout.resolve()  # a Dockerfile build's context never leaves the checkout
    if not context.is_dir() or not context.is_relative_to(inside):
        raise DescriptorError("build.context", f"{descriptor.context} is not a directory at commit {sha[:12]}", path=descriptor_path)
    if not dockerfile.is_relative_to(context):
        raise DescriptorError("build.dockerfile", "must be inside the build context", path=descriptor_path)

    step(f"Build image ({dockerfile.relative_to(context)}, SOURCE_DATE_EPOCH={info.timestamp})")
    for name, image_id in bases.items():
        writer.line(f"base image {name}: {image_id or 'not present locally'}")
    docker_build = DockerBuild(
        context=context,
        dockerfile=str(dockerfile.relative_to(context)),
        tag=tag,
        buildargs={"SOURCE_DATE_EPOCH": str(info.timestamp)},
        labels={"org.opencontainers.image.revision": sha},
        use_cache=settings.BUILD_USE_CACHE,
    )
    watchdog.target = docker_build
    watchdog.check()
    try:
        image_id = docker_build.run(writer.write)
    except BuildStepError as exc:
        if plan is None:
            raise
        raise BuildStepError(plan.explain(str(exc))) from None
    watchdog.target = None
    writer.flush()
    writer.line(f"built {image_id} in {time.monotonic() - step_started:.1f}s")

    registry_collection_wait(writer)  # from here on, blobs go to the registry
    step("Scan and assemble a reproducible image")
    out = workspace.blobs
    cache = LayerCache(settings.DATA_DIR / "layer-cache")
    assemble_to = partial(
        assemble,
        workdir=out,
        epoch=info.timestamp,
        annotations={"org.opencontainers.image.revision": sha, "org.opencontainers.image.created": iso(info.timestamp)},
        base_diff_ids=base_layer_ids(bases.values()),
        cache=cache,
        repository=component.registry_repository,
        have_blob=lambda digest, source: registry.blob_available(component.registry_repository, digest, source_repository=source),
        fixed_epoch=source.DEPENDENCY_EPOCH,
    )
    try:
        with ExitStack() as exports:
            built = exports.enter_context(saved_image(save_image(image_id, workspace.saved_image)))
            if plan is None:
                assembled = assemble_to([built])
            else:
                assembled = _assemble_stacked(plan, docker_build, built, cache, assemble_to, exports, workspace, writer)
        workspace.saved_image.unlink()
        workspace.saved_runtime_image.unlink(missing_ok=True)
        writer.line(
            f"{len(assembled.layers)} layer(s); {assembled.reused} of them (base image or dependencies) already in the registry, "
            "as an earlier build normalized and scanned them"
        )
        if assembled.findings:
            for finding in assembled.findings:
                writer.line(f"scan WARNING: {finding.kind} in {finding.path}")
        else:
            writer.line(f"scan: no private keys or credentials found in {len(assembled.layers)} layer(s)")
        step(f"Push to {registry.registry_host()}/{component.registry_repository}")
        digest = registry.push_image(
            component.registry_repository, config=assembled.config, layers=assembled.layers, manifest=assembled.manifest, tag=sha
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    reference = registry.image_reference(component.registry_repository, digest)
    writer.line(f"pushed {reference}")
    if settings.BUILD_USE_CACHE:
        cache_keep(image_id, component.pk, stages=docker_build.stage_images)
    image, _ = Image.objects.update_or_create(
        component=component,
        digest=digest,
        defaults={"commit": sha, "reference": reference, "inputs_key": inputs_key, "size": assembled.size},
    )
    removed = images_prune_commit(component=component, commit=sha, keep=image)
    for old in removed:
        writer.line(f"deleted the older image {old} of this commit")
    _record(build, descriptor.data, specs, image, reused=False)


def _assemble_stacked(plan, docker_build, code: ImagePart, cache: LayerCache, assemble_to, exports, workspace, writer):
    """A source build's image: the runtime stage's image with the code's (`code`, built
    FROM scratch) on top. The runtime stage is exported only when the cache and the
    registry do not already hold its layers and its config: its first build, or a change of
    dependencies, not a code-only commit."""
    if len(docker_build.stage_images) != plan.stages - 1:
        raise PlatformError(f"the Engine's build output named {len(docker_build.stage_images)} stage images, not {plan.stages - 1}")
    runtime_id = local_image_id(docker_build.stage_images[-1])  # the full id: the output names a short one
    if runtime_id is None:
        raise PlatformError(f"the runtime stage's image {docker_build.stage_images[-1]} is no longer in the Engine")
    raw_config = cache.config(runtime_id)
    if raw_config is not None:
        try:
            return assemble_to([ImagePart(raw_config, dependencies=True), code])
        except LayersNotExported:
            pass
    runtime = exports.enter_context(saved_image(save_image(runtime_id, workspace.saved_runtime_image), dependencies=True))
    cache.put_config(runtime_id, runtime.raw_config)
    writer.line("exported the runtime stage (base image and dependencies) as well as the code")
    return assemble_to([runtime, code])


def _record(build: Build, descriptor: dict, specs: dict, image: Image, *, reused: bool) -> None:
    with transaction.atomic():
        Build.objects.filter(pk=build.pk).update(
            image=image,
            digest=image.digest,
            image_reference=image.reference,
            descriptor=descriptor,
            endpoints=descriptor["endpoints"],
            reused=reused,
        )
        ApiSpec.objects.filter(build=build).delete()
        ApiSpec.objects.bulk_create(
            ApiSpec(build=build, endpoint=name, path=path, content=content) for name, (path, content) in specs.items()
        )
        Component.objects.filter(pk=build.component_id).update(type=descriptor["type"])
