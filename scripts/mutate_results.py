"""What scripts/mutate.sh asks of mutmut's results, run in a target's folder (.mutmut/TARGET):

    mutate_results.py untested PATTERN...  the mutants of these functions not tested yet, one a line
    mutate_results.py report [PATTERN...]  counts, score, and `mutmut show` for each mutant not caught
    mutate_results.py list                 each mutant and the line it changes, without running
    mutate_results.py merge SHARD...       take in the results of copies of this folder (mutate.sh --jobs)

A PATTERN is a glob over mutant names (deployments.rollout.x__roll_out__mutmut_*); without
one, every mutant of the target. mutmut keeps a result per mutant in mutants/**/*.py.meta
(`exit_code_by_key`: None until tested); these read them as `mutmut results` does.
"""

import argparse
import contextlib
import difflib
import fnmatch
import io
import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path


def results(patterns: list[str]) -> Iterator[tuple[str, int | None, Path]]:
    """(mutant name, exit code or None, the source file it mutates) for each mutant matched."""
    for source in sources():
        for key, code in mutation_data(source).exit_code_by_key.items():
            if not patterns or any(fnmatch.fnmatch(key, p) for p in patterns):
                yield key, code, source


def sources() -> Iterator[Path]:
    """Each mutated source file, by its meta file: mutants/x/y.py.meta -> x/y.py."""
    for meta in Path("mutants").rglob("*.py.meta"):
        yield meta.relative_to("mutants").with_suffix("")


def mutation_data(source: Path, folder: Path = Path()):
    """mutmut's data on the mutants of `source`, read with its own reader, from `folder`:
    this target's folder, or a shard's."""
    from mutmut.mutation.data import SourceFileMutationData

    data = SourceFileMutationData(path=source)
    data.meta_path = folder / data.meta_path
    data.load()
    return data


def untested(patterns: list[str]) -> None:
    """mutmut tests again every mutant named on its command line: naming only those not
    tested yet lets an interrupted run of a slow target go on where it stopped."""
    from mutmut.__main__ import create_mutants

    # mutmut's own first step: it writes the mutants again and forgets the results of
    # every function that changed since.
    with contextlib.redirect_stdout(io.StringIO()):
        create_mutants(1)
    for key, code, _ in results(patterns):
        if code is None:
            print(key)


def report(patterns: list[str]) -> None:
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    found = {key: (status_by_exit_code[code], source) for key, code, source in results(patterns)}
    counts = Counter(status for status, _ in found.values())
    tested = len(found) - counts["skipped"]  # as `mutmut badge` counts
    caught = counts["killed"] + counts["timeout"]
    score = 100 * caught / tested if tested else 0.0
    print(f"mutants: {len(found)}  " + "  ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    covered = tested - counts["no tests"]
    covered_score = 100 * caught / covered if covered else 0.0
    print(f"score: {score:.1f}% (killed or timed out, of all not skipped); {covered_score:.1f}% of the {covered} that some test reaches")
    not_run: dict[tuple[str, str], int] = defaultdict(int)
    for key, (status, _) in sorted(found.items()):
        if status in ("no tests", "not checked"):
            not_run[(key.rsplit("__mutmut_", 1)[0], status)] += 1
    for (function, status), n in sorted(not_run.items()):
        print(f"{status}: {n} mutants of {function}")
    for key, (status, source) in sorted(found.items()):
        if status not in ("killed", "timeout", "no tests", "not checked"):
            print(f"# {key}: {status}")
            print(get_diff_for_mutant(key, path=source).rstrip())


def merge(shards: list[str]) -> None:
    """Each shard is a copy of this folder that tested some of its mutants: take in each
    result this folder lacks, for a function whose code the shard mutated as this one."""
    taken = 0
    for source in sources():
        mine = mutation_data(source)
        for shard in shards:
            theirs = mutation_data(source, Path(shard))
            for key, code in theirs.exit_code_by_key.items():
                function = key.rsplit(".", 1)[-1].rsplit("__mutmut_", 1)[0]
                same_code = theirs.hash_by_function_name.get(function) == mine.hash_by_function_name.get(function)
                if code is not None and same_code and key in mine.exit_code_by_key and mine.exit_code_by_key[key] is None:
                    mine.exit_code_by_key[key] = code
                    if key in theirs.durations_by_key:
                        mine.durations_by_key[key] = theirs.durations_by_key[key]
                    taken += 1
        mine.save()
    print(f"{taken} results taken in from {len(shards)} shard(s)")


def list_mutants() -> None:
    import libcst as cst
    from mutmut.mutation.file_mutation import mutate_file_contents

    for path in tomllib.loads(Path("pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]:
        mutated = mutate_file_contents(path, Path(path).read_text())
        module = path.removesuffix(".py").replace("/", ".")
        bodies = {}
        for node in cst.parse_module(mutated.code).body:  # functions, and methods of classes
            for fn in node.body.body if isinstance(node, cst.ClassDef) else [node]:
                if isinstance(fn, cst.FunctionDef):
                    lines = cst.Module([]).code_for_node(fn).splitlines()
                    bodies[fn.name.value] = [line for line in lines if fn.name.value not in line]
        for name in mutated.mutant_names:
            orig = bodies[name.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"]
            changed = [line.strip() for line in difflib.ndiff(orig, bodies[name]) if line.startswith("+ ")]
            print(f"{module}.{name}: {changed[0][2:][:100] if changed else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["untested", "report", "list", "merge"])
    parser.add_argument("patterns", nargs="*", help="globs over mutant names; for merge, the shards' folders")
    args = parser.parse_args()
    if args.command == "untested":
        untested(args.patterns)
    elif args.command == "report":
        report(args.patterns)
    elif args.command == "merge":
        merge(args.patterns)
    else:
        list_mutants()


if __name__ == "__main__":
    main()
