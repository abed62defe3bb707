"""Pruning a commit's older images (builds.services.images_prune_commit) against the real
registry, with tiny images pushed directly: no Docker, so it is fast enough to run for
every mutant of the rule. The full story (a rebuild on a changed base, then a rollback
that pulls the kept image) is tests/deployments/test_deploy.py's."""

import hashlib
import json

import pytest

from builds import registry
from builds.models import Build, Component, Image
from builds.oci import CONFIG_TYPE, LAYER_TYPE
from builds.services import images_prune_commit
from deployments.models import Release
from environments.services import project_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server")]
COMMIT, OTHER = "c" * 40, "d" * 40


@pytest.fixture
def component():
    return Component.objects.create(project=project_create(name="shop"), name="web", repository="/nonexistent")


def push(component, tmp_path, content: str, commit: str = COMMIT) -> Image:
    blobs = []
    for name, data, media_type in (("layer", content.encode(), LAYER_TYPE), ("config", json.dumps({"c": content}).encode(), CONFIG_TYPE)):
        path = tmp_path / f"{name}-{content}"
        path.write_bytes(data)
        blobs.append(registry.Blob("sha256:" + hashlib.sha256(data).hexdigest(), len(data), path, media_type))
    layer, config = blobs
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": registry.MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config.digest, "size": config.size},
            "layers": [{"mediaType": LAYER_TYPE, "digest": layer.digest, "size": layer.size}],
        }
    ).encode()
    digest = registry.push_image(component.registry_repository, config=config, layers=[layer], manifest=manifest)
    return Image.objects.create(component=component, commit=commit, digest=digest, reference=f"r@{digest}", inputs_key=content)


def deployed(image: Image) -> Release:
    build = Build.objects.create(component=image.component, commit=image.commit, status=Build.SUCCEEDED, image=image, digest=image.digest)
    return Release.objects.create(
        component=image.component, build=build, image=image, digest=image.digest, descriptor={}, config_hash=image.inputs_key
    )


def in_registry(image: Image) -> bool:
    return registry.manifest_exists(image.component.registry_repository, image.digest)


def test_older_images_of_the_commit_go_unless_something_references_them(component, tmp_path):
    oldest, released, newest = (push(component, tmp_path, name) for name in ("oldest", "released", "newest"))
    other_commit = push(component, tmp_path, "other", commit=OTHER)
    deployed(released)

    removed = images_prune_commit(component=component, commit=COMMIT, keep=newest)

    assert removed == [oldest.digest]
    assert not in_registry(oldest) and not Image.objects.filter(pk=oldest.pk).exists()
    # The deployed one stays pullable, with its record: a rollback can still use it.
    assert in_registry(released) and Image.objects.filter(pk=released.pk).exists()
    assert in_registry(newest) and in_registry(other_commit)
    assert Image.objects.count() == 3


def test_pruning_with_nothing_older_removes_nothing(component, tmp_path):
    only = push(component, tmp_path, "only")
    assert images_prune_commit(component=component, commit=COMMIT, keep=only) == []
    assert in_registry(only) and Image.objects.filter(pk=only.pk).exists()


def test_an_image_referenced_by_a_build_only_is_pruned(component, tmp_path):
    """Builds keep a history of what they made, not a claim on it: only releases hold images."""
    old, new = push(component, tmp_path, "old"), push(component, tmp_path, "new")
    Build.objects.create(component=component, commit=COMMIT, status=Build.SUCCEEDED, image=old, digest=old.digest)
    assert images_prune_commit(component=component, commit=COMMIT, keep=new) == [old.digest]
    assert not in_registry(old)
    assert Build.objects.get().image is None and Build.objects.get().digest == old.digest
