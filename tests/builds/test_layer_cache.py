"""What a build does not read again (builds/oci.py's LayerCache): a base layer, and a
source build's dependency layer, are normalized and scanned once; a later build takes
them from the registry with what their scan found. On a real image, saved by the Engine."""

import subprocess

import pytest

from builds.dockerbuild import base_layer_ids, local_image_id, save_image
from builds.oci import LayerCache, assemble
from builds.source import DEPENDENCY_EPOCH

# A whole PEM block, as the scan looks for (not a real key).
KEY = "-----BEGIN PRIVATE KEY-----\n" + "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7" * 3 + "\n-----END PRIVATE KEY-----\n"

pytestmark = pytest.mark.usefixtures("base_images")


@pytest.fixture
def saved(tmp_path):
    """An image FROM busybox with a "dependency" layer holding a key, then a code layer."""
    context = tmp_path / "context"
    context.mkdir()
    (context / "key.pem").write_text(KEY)
    (context / "code.txt").write_text("code\n")
    (context / "Dockerfile").write_text("FROM choreo/busybox:1\nCOPY key.pem /deps/key.pem\nCOPY code.txt /app/code.txt\n")
    tag = f"choreo-test/layer-cache:{tmp_path.name.lower()[-40:]}"
    subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], check=True, capture_output=True)
    yield save_image(local_image_id(tag), tmp_path / "saved.tar")
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_a_dependency_layer_is_read_once_and_its_findings_stay_with_it(saved, tmp_path):
    cache = LayerCache(tmp_path / "cache")
    bases = base_layer_ids([local_image_id("choreo/busybox:1")])

    def build(epoch, work, have_blob=lambda digest, repository: True):
        return assemble(
            saved, tmp_path / work, epoch=epoch, annotations={}, base_diff_ids=bases, cache=cache, repository="p/web",
            have_blob=have_blob, fixed_layers=1, fixed_epoch=DEPENDENCY_EPOCH,
        )  # fmt: skip

    first = build(1_700_000_000, "first")
    assert first.reused == 0 and [(f.path, f.kind) for f in first.findings] == [("deps/key.pem", "private key")]
    # A later commit: the base and dependency layers come from the registry as they are,
    # their scan's finding is still reported, and only the code layer is made again.
    second = build(1_700_000_500, "second")
    assert second.reused == 2
    assert [(f.path, f.kind) for f in second.findings] == [("deps/key.pem", "private key")]
    assert [b.digest for b in second.layers[:2]] == [b.digest for b in first.layers[:2]]
    assert second.layers[2].digest != first.layers[2].digest  # the code layer's mtimes are the commit's
    assert not second.layers[0].path.is_file() and second.layers[2].path.is_file()
    # When the registry lost a blob, its layer is read and normalized again, to the same bytes.
    third = build(1_700_000_500, "third", have_blob=lambda digest, repository: False)
    assert third.reused == 0 and third.digest == second.digest and len(third.findings) == 1
