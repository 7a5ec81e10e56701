"""Atomic file writes: write beside the target, then rename over it.

A reader (or a crash) never sees a half-written file: the data goes to a temporary file in
the target's folder, is flushed to disk, and ``os.replace`` swaps it in in one step.

``tempfile.mkstemp`` creates the temporary file with mode 0600 (private to its owner); before
the rename it gets the mode a plain ``open(path, "w")`` would have given, ``0o666 & ~umask``,
so that the written file is as readable to others as the user's umask allows.
:func:`atomic_dir` does the same for a whole folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def umask() -> int:
    """The process's file-creation mask (read by setting and restoring it, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def public_mode(path: str | os.PathLike) -> None:
    """Give ``path`` the mode a newly created file gets: ``0o666 & ~umask``."""
    os.chmod(path, 0o666 & ~umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        public_mode(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *,
               replaceable: Callable[[Path], bool] = lambda folder: False) -> Iterator[str]:
    """Yield a temporary folder beside ``path``; on success it becomes ``path``.

    The folder is filled completely before anything is renamed: a reader sees the old folder
    or the new one, never a half-written one (there is a moment between the two renames
    when ``path`` is absent). An existing ``path`` is replaced only if it is empty or
    ``replaceable(path)`` says so, and is checked before any work starts; otherwise
    :class:`FileExistsError` names it. On an exception the temporary folder is removed and
    ``path`` is left as it was.
    """
    target = Path(path)
    if target.exists() and not (target.is_dir() and (not any(target.iterdir())
                                                     or replaceable(target))):
        raise FileExistsError(f"{os.fspath(target)!r} exists and is not a folder this "
                              f"writer may replace; choose another path or remove it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it private (0700); a folder's usual mode
    try:
        yield tmp
        for folder, _, files in os.walk(tmp):
            for name in files:
                with open(os.path.join(folder, name), "rb+") as handle:
                    os.fsync(handle.fileno())
        if target.exists():
            old = tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
