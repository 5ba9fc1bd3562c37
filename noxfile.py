"""Nox sessions: tests, lint, bench.

Torch is pinned to the CPU build used on the development machines; the packages themselves
only declare a range (``torch>=2.3``; the models package ``torch>=2.6``, for its safe
checkpoint loading).
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
TORCH = "torch==2.13.0"
nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True


def _env() -> dict[str, str]:
    return {
        "KEOPS_CACHE_FOLDER": str(ROOT / ".cache" / "keops"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS", "2"),
    }


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Install torch (CPU), the three packages and the test dependencies; run pytest."""
    session.install(TORCH)
    session.install("-r", "requirements/test.txt")
    session.run("pytest", *session.posargs, env=_env())


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole repository."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Run every performance suite in apps/bench side by side with POT and GeomLoss.

    ``nox -s bench -- otcore`` runs only the suites whose name contains ``otcore``. Each suite
    writes its Markdown table under docs/benchmarks/; docs/BENCHMARKS.md is rebuilt from them.
    """
    session.install(TORCH)
    session.install("-r", "requirements/bench.txt")
    session.run("python", "apps/bench/run_all.py", *session.posargs, env=_env())
