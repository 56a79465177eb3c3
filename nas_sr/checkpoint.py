"""Atomic checkpoint (and JSON) writes and safe (``weights_only``) reads."""

from __future__ import annotations

import errno
import functools
import json
import os
import pickle
import signal
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from nas_sr.errors import ConfigError

# ours alone, so cleaning a run folder never takes a user's own .tmp files
TEMP_SUFFIX = ".nas-sr.tmp"


class WriteFailed(ConfigError):
    """A file or folder that cannot be written (read-only, full, no permission, a file
    where a folder should be); the CLI prints it in one line."""


# why a file cannot be written that the user, not nas-sr, has to fix, and what they can do
# about it beside writing somewhere else
REMEDIES = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
            errno.EFBIG: "free some space", errno.EACCES: "fix its permissions",
            errno.EPERM: "fix its permissions", errno.ENOTDIR: "a file stands in its path",
            errno.EEXIST: "a file stands in its path", errno.EROFS: "the disk is read-only"}


def unwritable(path: str | Path, e: OSError) -> WriteFailed:
    """The user's error for an ``OSError`` met writing ``path``; an earlier file stays."""
    kept = "; the earlier file is kept" if Path(path).is_file() else ""
    remedy = REMEDIES.get(e.errno, "check the disk")
    return WriteFailed(f"cannot write {path}: {e.strerror or e}{kept} ({remedy}; or write "
                       "somewhere else)")


def check_writable(folder: str | Path) -> None:
    """Raise :class:`WriteFailed` where nothing could be written in ``folder`` (made if
    missing), before a job spends its time; leaves nothing behind."""
    folder = base = Path(folder).expanduser().absolute()
    while not base.exists() and base != base.parent:
        base = base.parent
    try:
        if not base.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(base))
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as e:
        raise unwritable(folder, e) from None


@functools.cache
def umask() -> int:
    """The process's umask (read once: reading it means setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A fresh temp file beside ``path``, renamed over it when the block ends cleanly.

    A run killed mid-write leaves the previous file intact, and the unique name keeps two
    processes writing the same file (parallel sweeps) from mixing their bytes. A disk that
    is full or read-only raises :class:`WriteFailed`, the previous file still intact.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp makes the file private (0600); the result gets the mode an open() would
        # give it (a file it replaces keeps its own), so a shared model or upscaled photo
        # stays readable. Set once written: a read-only mode would stop the block writing it.
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~umask()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                   suffix=TEMP_SUFFIX)
        os.close(fd)
    except OSError as e:
        raise unwritable(path, e) from None
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in REMEDIES:
            raise unwritable(path, e) from None
        raise


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` through :func:`atomic_path`, fsynced before the rename."""
    with signals_held(), atomic_path(path) as tmp, open(tmp, "wb") as f:  # lands, then stops
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait for the block's end: raised inside ``torch.save``'s C++
    writer, their exception becomes an 'unexpected pos' RuntimeError and a traceback.
    (Masking would not do: the kernel hands the signal to another thread instead.)"""
    if threading.current_thread() is not threading.main_thread():
        yield  # Python runs signal handlers in the main thread only
        return
    caught: list[int] = []
    held = {s: signal.signal(s, lambda signum, _: caught.append(signum))
            for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in held.items():
            signal.signal(s, handler)
        if caught:
            signal.raise_signal(caught[0])  # now, to the handler the block held it from


def write_json(path: str | Path, obj: Any, indent: int = 2) -> None:
    """``obj`` as indented JSON through :func:`atomic_path`: a reader (a resumed or plotted
    run, a loaded genotype) never meets half a file."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent) + "\n")


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the half-written temp files that killed writers left in ``folder``.

    Only for a folder this process owns (``runfolder.owned``): a live writer's temp file
    would go too.
    """
    stale = [p for p in folder.glob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """A checkpoint read with ``weights_only=True``; a damaged file is named, not traced."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint here")
    with open(path, "rb") as f:
        head = f.read(2)
    if head != b"PK" and head[:1] != b"\x80":  # torch's zip archive, or its legacy pickle
        raise ConfigError(f"{path}: not a checkpoint file; give a .pt that nas-sr retrain "
                          f"wrote, or an exported model.pt2")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # holds Python objects, not only tensors
        raise ConfigError(f"{path}: not a nas-sr checkpoint (it holds more than tensors and "
                          "plain values, which are never loaded); use a file written by "
                          "nas-sr") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{path}: damaged or not a checkpoint ({reason}); restore it or "
                          "pass another file (a run's own checkpoint: delete it to start that "
                          "run over)") from None
