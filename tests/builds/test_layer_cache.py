"""What a build does not read again (builds/oci.py's LayerCache): a base layer, and a
source build's dependency layer, are normalized and scanned once; a later build takes
them from the registry with what their scan found, and a source build's runtime stage is
not even exported again. On real images, built and saved by the Engine."""

import json
import subprocess

import pytest

from builds.dockerbuild import base_layer_ids, local_image_id, save_image
from builds.oci import ImagePart, LayerCache, LayersNotExported, assemble, saved_image
from builds.source import DEPENDENCY_EPOCH

# A whole PEM block, as the scan looks for (not a real key).
KEY = "-----BEGIN PRIVATE KEY-----\n" + "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7" * 3 + "\n-----END PRIVATE KEY-----\n"

pytestmark = pytest.mark.usefixtures("base_images")


@pytest.fixture
def stack(tmp_path):
    """A source build's two images, saved: a runtime stage FROM busybox with a "dependency"
    layer holding a key, and the code alone FROM scratch, labelled like a build."""
    context = tmp_path / "context"
    context.mkdir()
    (context / "key.pem").write_text(KEY)
    (context / "code.txt").write_text("code\n")
    (context / "Dockerfile").write_text(
        'FROM choreo/busybox:1 AS runtime\nCOPY key.pem /deps/key.pem\nUSER 10001:10001\nCMD ["cat", "/app/code.txt"]\n'
        "FROM scratch AS code\nCOPY code.txt /app/code.txt\n"
    )
    tag = f"choreo-test/layer-cache:{tmp_path.name.lower()[-40:]}"
    for target, name in (("runtime", f"{tag}-runtime"), ("code", tag)):
        subprocess.run(
            ["docker", "build", "-q", "--target", target, "--label", "org.opencontainers.image.revision=abc", "-t", name, str(context)],
            check=True,
            capture_output=True,
        )
    runtime_id = local_image_id(f"{tag}-runtime")
    yield runtime_id, save_image(runtime_id, tmp_path / "runtime.tar"), save_image(local_image_id(tag), tmp_path / "code.tar")
    subprocess.run(["docker", "rmi", "-f", tag, f"{tag}-runtime"], capture_output=True)


def test_a_dependency_layer_is_read_once_and_its_findings_stay_with_it(stack, tmp_path):
    runtime_id, runtime_tar, code_tar = stack
    cache = LayerCache(tmp_path / "cache")
    bases = base_layer_ids([local_image_id("choreo/busybox:1")])

    def build(epoch, work, runtime=None, have_blob=lambda digest, repository: True):
        with saved_image(runtime_tar, dependencies=True) as saved_runtime, saved_image(code_tar) as code:
            return assemble(
                [runtime or saved_runtime, code], tmp_path / work, epoch=epoch, annotations={}, base_diff_ids=bases, cache=cache,
                repository="p/web", have_blob=have_blob, fixed_epoch=DEPENDENCY_EPOCH,
            )  # fmt: skip

    first = build(1_700_000_000, "first")
    assert first.reused == 0 and [(f.path, f.kind) for f in first.findings] == [("deps/key.pem", "private key")]
    # One image: the runtime stage's settings, the code stage's label, both histories.
    config = json.loads(first.config.path.read_bytes())
    assert config["config"]["User"] == "10001:10001" and config["config"]["Cmd"] == ["cat", "/app/code.txt"]
    assert config["config"]["Labels"]["org.opencontainers.image.revision"] == "abc"
    assert len(config["rootfs"]["diff_ids"]) == 3 and len(config["history"]) > 3
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

    # The runtime stage not exported at all, its config from the cache: the same image.
    cache.put_config(runtime_id, _raw_config(runtime_tar))
    raw = cache.config(runtime_id)
    assert raw is not None and json.loads(raw)["rootfs"]["diff_ids"] == json.loads(_raw_config(runtime_tar))["rootfs"]["diff_ids"]
    fourth = build(1_700_000_500, "fourth", runtime=ImagePart(raw, dependencies=True))
    assert fourth.digest == second.digest and fourth.reused == 2 and len(fourth.findings) == 1
    # ...unless a layer it needs is not in the registry (or not cached): then it says so
    # before writing anything, and the pipeline exports the stage after all.
    with pytest.raises(LayersNotExported):
        build(1_700_000_500, "fifth", runtime=ImagePart(raw, dependencies=True), have_blob=lambda digest, repository: False)
    assert not (tmp_path / "fifth").exists()


def test_a_cached_config_is_served_only_while_it_is_what_its_image_id_names(stack, tmp_path):
    runtime_id, runtime_tar, _ = stack
    cache = LayerCache(tmp_path / "cache")
    raw = _raw_config(runtime_tar)
    assert cache.config(runtime_id) is None
    cache.put_config("sha256:" + "0" * 64, raw)  # not its id: not kept
    assert cache.config("sha256:" + "0" * 64) is None
    cache.put_config(runtime_id, raw)
    assert cache.config(runtime_id) == raw
    path = next((tmp_path / "cache").glob("config-*.json"))
    path.write_bytes(raw.replace(b"10001", b"0"))  # rewritten behind the platform's back: to root
    assert cache.config(runtime_id) is None


def _raw_config(saved) -> bytes:
    with saved_image(saved) as part:
        return part.raw_config
