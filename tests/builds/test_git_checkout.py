"""A checkout is `git archive` of one commit, extracted with the `data` filter (builds/git.py)."""

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
