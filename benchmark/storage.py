"""Writing files so that a crash never leaves a half-written one, and nothing orphaned after a kill.

Every file the suite writes (results, predictions, checkpoints, caches, measurements) goes
through :func:`atomic_write`: the bytes go to a temporary file beside the target, are flushed to
disk, and the temporary file is renamed over the target, so a reader sees the old file or the
new one, never a torn one. A killed process can leave its temporary file behind; the names carry
the writer's pid and host, and :func:`remove_orphans` deletes those of processes that no longer
run. Several hosts may write into one folder (a SLURM array over a shared file system): a pid
only means something on its own host, so another host's temporary file is removed only once it
has not been touched for :data:`FOREIGN_ORPHAN_AGE_S` [choice: far longer than any single write].
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch

FOREIGN_ORPHAN_AGE_S = 3600.0
# .NAME.PID@HOST.tmp (and .NAME.PID.tmp of earlier versions, written on this host)
_TMP = re.compile(r"^\..+\.(?P<pid>\d+)(?:@(?P<host>[^/]+))?\.tmp$")


def host() -> str:
    """This machine's name as it appears in temporary-file names and lock owners."""
    return socket.gethostname()


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}@{host()}.tmp")


def atomic_write(path: Path, write: Callable[[BinaryIO], object] | bytes | str) -> None:
    """Write ``path`` atomically: ``write(handle)`` (or the given bytes/text) into a temporary file
    beside it, flushed to disk, then renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        with open(tmp, "wb") as handle:
            if isinstance(write, str):
                handle.write(write.encode())
            elif isinstance(write, bytes):
                handle.write(write)
            else:
                write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: object, path: Path) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def ensure_writable(folder: Path) -> None:
    """Create ``folder`` if needed and check that files can be written in it, before any work is
    done (an OSError naming the folder otherwise)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _orphaned(path: Path, match: re.Match) -> bool:
    pid, writer_host = int(match["pid"]), match["host"]
    if writer_host is None or writer_host == host():
        return pid != os.getpid() and not pid_alive(pid)
    try:
        return time.time() - path.stat().st_mtime > FOREIGN_ORPHAN_AGE_S
    except FileNotFoundError:  # renamed into place meanwhile
        return False


def remove_orphans(root: Path) -> int:
    """Delete the temporary files under ``root`` left by killed writers; returns how many."""
    removed = 0
    if not Path(root).is_dir():
        return 0
    for path in Path(root).rglob(".*.tmp"):
        match = _TMP.match(path.name)
        if match and _orphaned(path, match):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
