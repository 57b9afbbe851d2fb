"""Resource count and program time under Pulumi's mocks, for 1, 20 and 200 buckets of 10 tenant prefixes.

Side by side with a baseline: the same generated stacks run through the program at
another git revision (default: the last commit before the quota-aware grants), in a
throwaway worktree, so both figures come from the same machine in the same run.

    python -m bench.program_scale [--baseline REV] [--buckets 1,20,200]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.platform_stack import platform_config

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "256cb1c"  # before EnforcerGrants: one inline grant policy and one queue statement per bucket

# Runs in a child process with the tree under test first on sys.path.
CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[1])
from components.mocks import run_program
config = json.load(open(sys.argv[2]))
started = time.perf_counter()
try:
    graph = run_program(config, stack="scale")
    print(json.dumps({"resources": len(graph), "seconds": time.perf_counter() - started}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__ + ": " + str(exc).splitlines()[0][:200], "seconds": time.perf_counter() - started}))
"""


def run(tree: Path, config: dict, work: Path) -> dict:
    path = work / "config.json"
    path.write_text(json.dumps(config))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), str(path)], cwd=tree, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare with (default %(default)s)")
    parser.add_argument("--buckets", default="1,20,200", help="comma-separated bucket counts (default %(default)s)")
    parser.add_argument("--prefixes", type=int, default=10)
    args = parser.parse_args()
    counts = [int(n) for n in args.buckets.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        baseline = work / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(baseline), args.baseline], cwd=ROOT, check=True, capture_output=True)
        try:
            print(f"| buckets x prefixes | baseline {args.baseline}: resources | s | this tree: resources | s |")
            print("| --- | --- | --- | --- | --- |")
            for n in counts:
                config = platform_config(n, args.prefixes)
                before, after = run(baseline, config, work), run(ROOT, config, work)

                def cell(r: dict) -> str:
                    return f"{r['resources']:,} | {r['seconds']:.1f}" if "resources" in r else f"fails: {r['error']} | {r['seconds']:.1f}"

                print(f"| {n} x {args.prefixes} | {cell(before)} | {cell(after)} |", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT, check=False, capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
