"""Repository-wide test configuration.

KeOps compiles each new formula with g++ (~10 s) and caches the binaries; keep that cache
inside the build area (``.cache/keops``) so CI leaves nothing in the home folder.
"""

import os
from pathlib import Path

os.environ.setdefault(
    "KEOPS_CACHE_FOLDER", str(Path(__file__).resolve().parents[1] / ".cache" / "keops")
)

# Property tests draw the same examples on every run (a red CI is then reproducible, never a
# lucky draw); ``HYPOTHESIS_PROFILE=explore`` draws fresh examples to hunt for new failures, and
# ``HYPOTHESIS_PROFILE=fuzz`` draws fresh ones too, 500 per test that sets no count of its own
# and per test of tests/metrics/test_fuzz.py (which runs 25 under the other profiles).
from hypothesis import settings

settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.register_profile("fuzz", derandomize=False, max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
