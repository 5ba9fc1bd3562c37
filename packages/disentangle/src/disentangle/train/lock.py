"""One writer per run folder: an exclusive lock on ``<run_dir>/.lock``.

Two training processes writing one run folder corrupt each other (histories interleave, the
config is rewritten under the other's weights). :class:`RunLock` takes an exclusive ``flock`` on
``<run_dir>/.lock`` for the life of a run and refuses a second writer with an error naming the
holder's process id. The operating system releases the lock when its process exits, however it
exits, so a lock file left by a dead process is not an obstacle (a stale lock is detected by
the lock being free, not by the file's presence). Where ``fcntl`` is unavailable (Windows) no
lock is taken.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "RunFolderInUseError", "RunLock"]

LOCK_FILE = ".lock"


class RunFolderInUseError(FileExistsError):
    """Another live process holds the run folder's lock."""


class RunLock:
    """Context manager holding the exclusive lock of ``run_dir`` (created if missing)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fh = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunFolderInUseError`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                fh.close()
                raise RunFolderInUseError(
                    f"output_dir: {self.path.parent} is in use by another training process "
                    f"(pid {holder}); wait for it to finish or choose another --output-dir"
                ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        """Release the lock (the file stays; its content is only informative)."""
        if self._fh is not None:
            if fcntl is not None:
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
