"""Run every benchmark suite of apps/bench and rebuild docs/BENCHMARKS.md.

Usage: ``python apps/bench/run_all.py [FILTER ...] [--quick]`` (what ``nox -s bench`` calls);
``--rebuild`` only reassembles docs/BENCHMARKS.md from the existing tables.
Each suite ``bench_<name>.py`` runs in its own process and writes ``docs/benchmarks/<name>.md``;
this script then concatenates those files, in name order, into ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "apps" / "bench"
PARTS = ROOT / "docs" / "benchmarks"
HEADER = """# Benchmarks

Measured on the project's 2-core CPU machine unless a section says otherwise. Every table is
written by its suite in `apps/bench/`; rebuild them all with `nox -s bench` (or one with
`python apps/bench/bench_<name>.py`). This file is assembled by `apps/bench/run_all.py` from
`docs/benchmarks/*.md`; do not edit it by hand.
"""


def rebuild() -> Path:
    """Concatenate the per-suite tables into docs/BENCHMARKS.md."""
    parts = sorted(PARTS.glob("*.md"))
    body = "\n\n".join(p.read_text().strip() for p in parts)
    out = ROOT / "docs" / "BENCHMARKS.md"
    out.write_text(HEADER + ("\n" + body + "\n" if body else ""))
    return out


def main(argv: list[str]) -> int:
    if "--rebuild" in argv:
        print(f"wrote {rebuild()}")
        return 0
    flags = [a for a in argv if a.startswith("-")]
    filters = [a for a in argv if not a.startswith("-")]
    suites = sorted(SUITES.glob("bench_*.py"))
    if filters:
        suites = [s for s in suites if any(f in s.stem for f in filters)]
    failed = []
    for suite in suites:
        print(f"== {suite.name}", flush=True)
        if subprocess.call([sys.executable, str(suite), *flags], cwd=ROOT) != 0:
            failed.append(suite.name)
    print(f"wrote {rebuild()}")
    if failed:
        print("failed suites: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
