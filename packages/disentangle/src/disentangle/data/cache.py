"""Generate-once caching of large arrays as memory-mapped ``.npy`` files with a JSON manifest.

Layout: ``<cache_dir>/<key>.npy`` (a standard ``.npy`` file, memory-mapped read-only on load)
and ``<cache_dir>/<key>.json`` (the manifest: shape, dtype, size in bytes, SHA-256 of the
file, and the generator parameters). Writing is atomic: the array is built in a temporary
file and renamed into place only after its checksum is recorded, so an interrupted build
never leaves a file that looks valid. On load the manifest is checked (parameters, size,
and by default the checksum); a mismatch is reported and the array rebuilt, never used.

The cache folder is ``$DISENTANGLE_CACHE`` if set, else ``~/.cache/disentangle``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = ["CacheCorruptWarning", "cached_array", "default_cache_dir", "file_sha256"]

log = logging.getLogger(__name__)
Verify = Literal["checksum", "size"]


class CacheCorruptWarning(UserWarning):
    """A cached array failed its manifest check and is being rebuilt."""


def default_cache_dir() -> Path:
    """``$DISENTANGLE_CACHE`` or ``~/.cache/disentangle``."""
    env = os.environ.get("DISENTANGLE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "disentangle"


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
    """Hex SHA-256 of a file, read in 16 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _problem(npy: Path, man: Path, params: dict, verify: Verify) -> str | None:
    """Why the cached entry cannot be used, or None when it is valid."""
    if not npy.exists() or not man.exists():
        return "missing"
    try:
        manifest = json.loads(man.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return f"unreadable manifest ({err})"
    if manifest.get("params") != params:
        return "generator parameters changed"
    size = npy.stat().st_size
    if size != manifest.get("nbytes"):
        return f"file size {size} differs from the manifest's {manifest.get('nbytes')}"
    if verify == "checksum" and file_sha256(npy) != manifest.get("sha256"):
        return "checksum mismatch"
    return None


def cached_array(
    key: str,
    shape: tuple[int, ...],
    dtype: np.dtype | str,
    build: Callable[[np.ndarray], None],
    *,
    params: dict,
    cache_dir: str | os.PathLike | None = None,
    verify: Verify = "checksum",
) -> np.memmap:
    """Return the cached array ``key``, building it once with ``build(out)`` if needed.

    Args:
        key: file stem inside the cache folder (letters, digits, ``_-.``).
        shape, dtype: of the array.
        build: fills the writable memory-mapped ``out`` of that shape and dtype in place.
        params: JSON-serialisable generator parameters; a change triggers a rebuild.
        cache_dir: cache folder (default :func:`default_cache_dir`).
        verify: ``"checksum"`` (SHA-256 of the whole file, default) or ``"size"`` only.

    Returns:
        A read-only ``np.memmap`` of the array.
    """
    if verify not in ("checksum", "size"):
        raise ValueError(f"verify must be 'checksum' or 'size', got {verify!r}")
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    npy, man = folder / f"{key}.npy", folder / f"{key}.json"
    params = json.loads(json.dumps(params))  # normalise tuples to lists for comparison
    problem = _problem(npy, man, params, verify)
    if problem is None:
        return np.load(npy, mmap_mode="r")
    if problem != "missing":
        warnings.warn(
            f"cache entry {npy} is invalid ({problem}); rebuilding it",
            CacheCorruptWarning,
            stacklevel=2,
        )
    tmp = folder / f".{key}.{os.getpid()}.tmp.npy"
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=shape)
        build(out)
        out.flush()
        del out
        manifest = {
            "key": key,
            "shape": list(shape),
            "dtype": np.dtype(dtype).str,
            "nbytes": tmp.stat().st_size,
            "sha256": file_sha256(tmp),
            "params": params,
        }
        tmp_man = folder / f".{key}.{os.getpid()}.tmp.json"
        tmp_man.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, npy)
        os.replace(tmp_man, man)
    finally:
        if tmp.exists():
            tmp.unlink()
    log.info("cached %s (%s, %s) in %s", key, shape, np.dtype(dtype), folder)
    return np.load(npy, mmap_mode="r")
