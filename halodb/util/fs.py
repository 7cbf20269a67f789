"""Atomic file writes: readers see the old file or the new one, whole, never a part; and
an advisory lock file (:class:`FileLock`) that serializes writers across processes.

>>> import tempfile, pathlib, json
>>> path = pathlib.Path(tempfile.mkdtemp()) / "state.json"
>>> write_json_atomic(path, {"head": None})
>>> json.loads(path.read_text())
{'head': None}
>>> with atomic_file(path) as f:
...     _ = f.write(b"{}")
>>> path.read_text()
'{}'
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import tempfile
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

__all__ = ["FileLock", "LockHolder", "atomic_file", "write_json_atomic"]


@contextmanager
def atomic_file(path: Path, *, durable: bool = True) -> Iterator[IO[bytes]]:
    """A binary file that replaces ``path`` when the block ends without an error: a temp file
    in the same folder, flushed (and fsynced when ``durable``), renamed over ``path``. On an
    error the temp file is removed and ``path`` is untouched. The file gets the permissions
    an ordinary ``open`` would give it (0666 less the umask), not ``mkstemp``'s 0600: a CAR
    or a pin list written to share is readable as any file the user writes."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and put back (the umask is the process's, briefly)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, value: Any, **dump: Any) -> None:
    """Write ``value`` as JSON to ``path`` atomically and durably (see :func:`atomic_file`);
    ``dump`` goes to :func:`json.dumps`."""
    data = json.dumps(value, **dump).encode("utf-8")
    with atomic_file(path) as f:
        f.write(data)


@dataclass(frozen=True)
class LockHolder:
    """Who holds a :class:`FileLock`, as the holder wrote it into the lock file."""

    pid: int | None
    what: str | None  #: what the holder is doing (``commit``, ``add``...)
    since: str | None  #: when it took the lock (RFC 3339, UTC)
    host: str | None = None

    def __str__(self) -> str:
        text = f"PID {self.pid}" if self.pid is not None else "another process"
        if self.host and self.host != socket.gethostname():
            text += f" on {self.host}"
        if self.what:
            text += f" ({self.what})"
        if self.since:
            text += f" since {self.since}"
        return text


class FileLock:
    """An exclusive advisory lock (``fcntl.flock``) on the file ``path``, which is created
    when missing and never removed (removing a lock file races with its next holder).

    :meth:`acquire` polls with ``LOCK_NB`` until a deadline, so a waiter can give up with a
    clear message; the holder then writes its PID, host, what it is doing and since when
    into the file, which :meth:`holder` reads back for that message. The lock belongs to
    this object's open file: it excludes other processes and other ``FileLock`` objects of
    this process alike, and is not re-entrant (a second ``FileLock`` on the same path in the
    same thread waits for itself). The kernel releases it when the holder dies. A forked
    child does not hold its parent's locks (its copy of the descriptor is closed at the
    fork): a child that outlives a killed parent does not keep the lock.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / ".lock"
    >>> a, b = FileLock(path), FileLock(path)
    >>> a.acquire("commit", timeout=1), b.acquire("add", timeout=0)
    (True, False)
    >>> a.holder().what, a.holder().pid == os.getpid()
    ('commit', True)
    >>> a.release(); b.acquire("add", timeout=0)
    True
    >>> b.release()
    """

    #: the longest pause between two attempts while waiting
    max_poll = 0.1

    #: the locks held in this process (closed in a forked child: see the class docstring)
    _held: weakref.WeakSet[FileLock] = weakref.WeakSet()

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def _forget_in_child(cls) -> None:
        # only the child's copy of each descriptor is closed: the parent's lock stays (no
        # LOCK_UN, which would release the one lock both copies share)
        for lock in list(cls._held):
            fd, lock._fd = lock._fd, None
            if fd is not None:
                with suppress(OSError):
                    os.close(fd)
        cls._held = weakref.WeakSet()

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self, what: str, timeout: float) -> bool:
        """Take the lock, waiting at most ``timeout`` seconds; False when it stayed taken.
        ``OSError`` when the lock file cannot be opened (a missing folder, no permission)."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this FileLock")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        deadline = time.monotonic() + max(0.0, timeout)
        pause = 0.002
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        os.close(fd)
                        return False
                    time.sleep(min(pause, left))
                    pause = min(pause * 2, self.max_poll)
            record = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                      "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode("utf-8") + b"\n", 0)
        except BaseException:
            with suppress(OSError):
                os.close(fd)
            raise
        self._fd = fd
        FileLock._held.add(self)
        return True

    def release(self) -> None:
        """Give the lock back (its file is emptied first, so it never names a past holder)."""
        fd, self._fd = self._fd, None
        FileLock._held.discard(self)
        if fd is None:
            return
        try:
            with suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def holder(self) -> LockHolder | None:
        """Who holds the lock, as the holder wrote it; None when nobody wrote (yet) or the
        file cannot be read. The answer is advisory: the holder may have left already."""
        try:
            with open(self.path, "rb") as f:
                data = json.loads(f.read(4096) or b"null")
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        pid, what, since, host = (data.get(k) for k in ("pid", "what", "since", "host"))
        return LockHolder(
            pid if isinstance(pid, int) else None,
            what if isinstance(what, str) else None,
            since if isinstance(since, str) else None,
            host if isinstance(host, str) else None,
        )


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=FileLock._forget_in_child)
