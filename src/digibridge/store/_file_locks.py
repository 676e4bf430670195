"""Who may use a SQLite file, and who writes to it now: two `flock`s beside the database.

`<db>.lock` is held, exclusively, by the process that owns the file: a lone `digibridge serve`,
or the parent of `serve --workers N`, whose workers inherit its descriptor, so the lock lasts as
long as the last of them. No other gateway (or `digibridge store` command) can open the file
meanwhile, which is what makes releasing every lease at start-up safe.

`<db>.write-lock` is taken around each write transaction by the workers sharing a file. SQLite
serialises writers by itself, but a writer that finds the file locked sleeps (1, 2, 5, 10 ms...)
before it tries again; a `flock` wakes the next writer the moment the lock is free.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from digibridge.store.types import StoreError


def _lock_path(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def own(path: Path) -> int:
    """Take the owner lock of the SQLite file at `path`, recording our pid in it; its
    descriptor. StoreError when another live process holds it."""
    fd = os.open(_lock_path(path, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreError(f"{path} is in use by another digibridge process (pid {holder})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def disown(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def is_owned(path: Path) -> bool:
    """Whether some live process holds the owner lock (a worker's parent, when sharing)."""
    fd = os.open(_lock_path(path, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing also drops the lock, if we got it
    return False


class WriteLock:
    """The writers' turn on a shared file; blocking (it is taken on the store's own thread)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(_lock_path(path, ".write-lock"), os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)
