"""The suite's files on disk: written so that a crash never leaves a half-written one, read back
so that a damaged one is one line, and never written over a file the suite did not write.

**Writing.** Every file the suite writes (results, predictions, checkpoints, caches,
measurements, leaderboards and their plots) goes through :func:`atomic_write`: the bytes go to a
temporary file beside the target, are flushed to disk, and the temporary file is renamed over
the target, so a reader sees the old file or the new one, never a torn one. A write that fails
(a full disk, a read-only folder) removes its temporary file and raises an ``OSError`` naming the
target, also where the writing library wrapped the ``OSError`` in its own error (``torch.save``
turns ``ENOSPC`` into ``RuntimeError: unexpected pos``). A killed process can leave its temporary
file behind; the names carry the writer's pid and host, and :func:`remove_orphans` deletes those
of processes that no longer run. Several hosts may write into one folder (a SLURM array over a
shared file system): a pid only means something on its own host, so another host's temporary
file is removed only once it has not been touched for :data:`FOREIGN_ORPHAN_AGE_S` [choice: far
longer than any single write].

**Reading back.** Every JSON, checkpoint or weights file the suite reads back goes through
:func:`read_checked` (:func:`read_json`, :func:`read_torch`): any parse or format error becomes a
:class:`DamagedFileError`, one line naming the file and what to do (delete it, ``--rerun``,
re-export); callers with a better remedy (recompute a cache, restart a pretraining) catch it and
say so in the log.

**Ownership.** Files the suite writes outside the results folder, where a user's own files may
sit (the leaderboard and its plot folder, profiles, exported tables and encoders), carry a
marker of their generator (:data:`MARK`: a leaderboard's first line, a folder's :data:`MARKER_FILE`);
a target that exists without it is refused with :class:`ForeignFileError` and left untouched.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import torch

T = TypeVar("T")
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
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        cause = _os_error(exc)
        if cause is None:
            raise
        raise OSError(cause.errno, cause.strerror or str(cause), str(path)) from exc


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: itself, or one a library wrapped (torch.save's zip writer
    reports a failed write as ``RuntimeError: unexpected pos``, the OSError as its context)."""
    seen: BaseException | None = exc
    while seen is not None and isinstance(seen, Exception):
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


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


# -- reading back ----------------------------------------------------------------------------------
class DamagedFileError(Exception):
    """A file the suite wrote cannot be read back; the message names it and what to do."""


def read_checked(path: Path, parse: Callable[[Path], T], fix: str) -> T:
    """``parse(path)``, with any parse or format error turned into a :class:`DamagedFileError`
    naming ``path`` and ``fix``. A missing file (FileNotFoundError) and the environment's errors
    (permissions: OSError) are left to the caller."""
    try:
        return parse(path)
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # json, torch's zip reader, pickle, safetensors: each has its own errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DamagedFileError(
            f"{path} is damaged or not in the expected format ({type(exc).__name__}{': ' if reason else ''}"
            f"{reason[:160]}); {fix}"
        ) from exc


def _json_object(path: Path) -> dict[str, Any]:
    value = json.loads(Path(path).read_text())
    if not isinstance(value, dict):
        raise ValueError(f"a JSON object was expected, found {type(value).__name__}")
    return value


def read_json(path: Path, fix: str) -> dict[str, Any]:
    """A JSON object written by the suite (see :func:`read_checked`)."""
    return read_checked(Path(path), _json_object, fix)


def read_torch(path: Path, fix: str) -> Any:
    """A ``torch.save`` checkpoint written by the suite, on the CPU (see :func:`read_checked`)."""
    return read_checked(Path(path), lambda p: torch.load(p, map_location="cpu", weights_only=False), fix)


# -- ownership -------------------------------------------------------------------------------------
MARK = "generated by ecgbench"
#: the marker of a folder the suite writes into outside the results folder (plots, profiles)
MARKER_FILE = "README.md"


class ForeignFileError(Exception):
    """A target exists and the suite did not write it: it is left untouched."""


def marker_line(what: str) -> str:
    """The first line of a generated markdown file: ``<!-- generated by ecgbench: WHAT -->``."""
    return f"<!-- {MARK}: {what} -->"


def is_marked(path: Path) -> bool:
    """Whether a text file's first line carries :data:`MARK`."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return MARK in handle.readline()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False


def folder_is_ours(folder: Path) -> bool:
    """A folder the suite may write into: absent, empty, or carrying :data:`MARKER_FILE`."""
    folder = Path(folder)
    if not folder.exists():
        return True
    return folder.is_dir() and (not any(folder.iterdir()) or is_marked(folder / MARKER_FILE))


def refuse_foreign(path: Path, ours: bool, option: str) -> None:
    """Raise :class:`ForeignFileError` when ``path`` exists and is not ``ours``; ``option`` names
    how to choose another target (``--leaderboard FILE``)."""
    if Path(path).exists() and not ours:
        raise ForeignFileError(
            f"{path} exists and was not written by the benchmark (no '{MARK}' marker), so it is left untouched: "
            f"choose another target with {option}, or move it away"
        )


def mark_folder(folder: Path, what: str) -> None:
    """Write the folder's :data:`MARKER_FILE`: what writes into it, and that it does."""
    atomic_write(
        Path(folder) / MARKER_FILE,
        f"{marker_line(what)}\n\nThis folder is written by ecgbench ({what}): its files are replaced and deleted "
        f"when that runs again. Keep your own files elsewhere.\n",
    )


def claim_folder(folder: Path, option: str, what: str) -> None:
    """Refuse a folder the suite did not write (:func:`folder_is_ours`), else create and mark it."""
    refuse_foreign(folder, folder_is_ours(folder), option)
    Path(folder).mkdir(parents=True, exist_ok=True)
    mark_folder(folder, what)
