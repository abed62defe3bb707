"""Reading a commit (builds/git.py): a checkout is `git archive` of one commit, extracted
with the `data` filter; one file is read by its path, and only if it is a file."""

import pytest

from builds import git


@pytest.fixture
def repo(make_repo):
    # These sizes (those of examples/source-builds/node) put the end-of-archive marker
    # where git still has padding to write after tarfile has stopped reading.
    return make_repo(
        {".choreo/component.yaml": "a" * 217, "package-lock.json": "b" * 25065, "package.json": "c" * 224, "server.js": "d" * 261}
    )


def test_every_checkout_of_a_commit_succeeds(repo, tmp_path):
    # git writes the archive's padding after the end-of-archive marker that tarfile stops
    # at: a checkout that closed the pipe before reading it lost git to SIGPIPE (exit -13)
    # in 3 to 13 checkouts of 100 here. Two hundred in a row all succeed.
    sha = repo.git("rev-parse", "HEAD")
    for i in range(200):
        dest = tmp_path / f"checkout-{i}"
        git.checkout(repo.path, sha, dest)
        assert (dest / "server.js").read_text() == "d" * 261


def test_a_commit_that_does_not_exist_is_an_error_naming_it(repo, tmp_path):
    with pytest.raises(git.GitError, match=r"git archive of 0123456789ab failed with exit code 128: fatal: not a valid object name"):
        git.checkout(repo.path, "0123456789ab", tmp_path / "none")


def test_a_file_is_read_only_when_it_is_a_file(repo):
    sha = repo.git("rev-parse", "HEAD")
    assert git.read_file(repo.path, sha, "server.js") == b"d" * 261
    # A directory where a file is expected (a hostile repository's requirements.txt/, say)
    # is not there, rather than a failed `git cat-file blob`; so is a path of two lines.
    assert git.read_file(repo.path, sha, ".choreo") is None
    assert git.read_file(repo.path, sha, "missing.txt") is None
    assert git.read_file(repo.path, sha, "missing\nserver.js") is None
    with pytest.raises(git.GitError, match="package-lock.json at .* is larger than 10 KiB"):
        git.read_file(repo.path, sha, "package-lock.json", max_bytes=10 * 1024)
