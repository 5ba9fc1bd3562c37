"""Repository-wide test configuration.

KeOps compiles each new formula with g++ (~10 s) and caches the binaries; keep that cache
inside the build area (``.cache/keops``) so CI leaves nothing in the home folder.
"""

import os
from pathlib import Path

os.environ.setdefault(
    "KEOPS_CACHE_FOLDER", str(Path(__file__).resolve().parents[1] / ".cache" / "keops")
)
