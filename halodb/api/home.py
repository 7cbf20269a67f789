"""A registry home on disk: ``state.json`` (what marks the home), the local head and the
stage (``stage.sqlite3`` and the staged items' bytes, ``stage.<generation>.pack``:
:mod:`~halodb.api.stagedb`), the lock that serializes its writers
(``.lock``), and its defaults.

A home written before the stage database kept the head and the stage in ``state.json``
itself (``{"head": …, "staged": {"upserts": …, "removals": […]}}``). It is read as it is,
and moved into the database by the first writer that takes the lock: the database is
written (one transaction), then ``state.json`` is replaced by ``{"version": 2, "staged":
"stage.sqlite3"}``; a writer killed between the two leaves the old file, which is still
the truth and is moved again. (HaloDB before the stage database refuses the new file as
corrupt rather than read an empty stage and no head from it.)

>>> import tempfile, pathlib
>>> home = Home(pathlib.Path(tempfile.mkdtemp()))
>>> home.init()
>>> home.head(), bool(home.stage())
(None, False)
>>> with home.locked("commit"), home.locked("add"):  # re-entrant within one Home
...     home.save(None, Stage())
>>> _ = home.state_file.write_text('{"head": 5}')
>>> home.head()  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
halodb.errors.RegistryError: .../state.json is corrupt: head: expected a CID, got int
"""

from __future__ import annotations

import builtins
import getpass
import json
import math
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from halodb.api.location import default_home
from halodb.api.stagedb import DB_NAME, Stage, StageDB, StageWriter
from halodb.errors import CIDError, HomeLockedError, InputError, RegistryError
from halodb.index.model import Entry
from halodb.ipld import CID
from halodb.util.doi import is_normal_doi
from halodb.util.fs import FileLock, LockHolder, write_json_atomic

__all__ = ["DEFAULT_LOCK_TIMEOUT", "Home", "Stage", "default_author", "default_home", "lock_timeout"]

#: seconds a writer waits for the home's lock unless ``$HALODB_LOCK_TIMEOUT`` says otherwise
DEFAULT_LOCK_TIMEOUT = 60.0


def default_author() -> str:
    """``$HALODB_AUTHOR``, else ``user@host``."""
    env = os.environ.get("HALODB_AUTHOR")
    if env:
        return env
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def lock_timeout() -> float:
    """``$HALODB_LOCK_TIMEOUT`` (seconds, 0 or more), else :data:`DEFAULT_LOCK_TIMEOUT`."""
    env = os.environ.get("HALODB_LOCK_TIMEOUT", "").strip()
    if not env:
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(env)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise InputError(f"HALODB_LOCK_TIMEOUT={env!r}: expected a number of seconds, 0 or more",
                         source="HALODB_LOCK_TIMEOUT")
    return value


class Home:
    """The state of a registry home: the local head and the stage, changed atomically.

    Whoever changes them reads, changes and saves them inside :meth:`locked`, which holds an
    advisory lock on ``HOME/.lock``: writers in other processes (and in other threads, or
    through other ``Home`` objects) wait for it, so no writer's change is lost.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = StageDB(path)  #: the head and the stage
        self._lock = FileLock(path / ".lock")
        self._mutex = threading.RLock()  # the threads of this process, one at a time
        self._depth = 0  # how deeply the holding thread has entered locked()

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"

    def _missing(self) -> RegistryError:
        return RegistryError(
            f"no HaloDB registry in {self.path}: run `halodb init` (or set HALODB_HOME / --home)", home=self.path
        )

    def locked(self, what: str, *, timeout: float | None = None) -> AbstractContextManager[None]:
        """Hold the home's lock for the block: ``what`` says what the holder does (written into
        the lock file for whoever waits). Waits at most ``timeout`` seconds (default
        :func:`lock_timeout`), then raises :class:`~halodb.errors.HomeLockedError` naming the
        holder. Re-entrant within this object: a method that holds it may call another that
        takes it (``import_tree`` commits, ``scan`` adds and removes)."""
        return self._hold(what, timeout, create=False)

    @contextmanager
    def _hold(self, what: str, timeout: float | None, *, create: bool) -> Iterator[None]:
        wait = min(lock_timeout() if timeout is None else max(0.0, timeout), threading.TIMEOUT_MAX)
        if not self._mutex.acquire(timeout=wait):
            holder = self._lock.holder()
            raise self._locked_error(wait, holder, f"another thread of this process (PID {os.getpid()})")
        try:
            if self._depth == 0:
                self._acquire(what, wait, create=create)
                try:
                    if not create:
                        self._migrate()
                except BaseException:
                    self._lock.release()
                    raise
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._lock.release()
        finally:
            self._mutex.release()

    def _acquire(self, what: str, wait: float, *, create: bool) -> None:
        if not create and not self.state_file.exists():
            raise self._missing()
        try:
            got = self._lock.acquire(what, wait)
        except FileNotFoundError:
            raise self._missing() from None
        except OSError as exc:
            raise RegistryError(f"cannot lock the registry home {self.path}: {exc}", home=self.path) from exc
        if not got:
            raise self._locked_error(wait, self._lock.holder(), None)

    def _locked_error(self, wait: float, holder: LockHolder | None, who: str | None) -> HomeLockedError:
        by = who or (str(holder) if holder is not None else "another process")
        return HomeLockedError(
            f"the registry home {self.path} is locked by {by}; gave up after {wait:g} s "
            "(wait longer with HALODB_LOCK_TIMEOUT=SECONDS)",
            home=self.path, path=str(self.lock_file), timeout=wait,
            pid=holder.pid if holder else None, host=holder.host if holder else None,
            what=holder.what if holder else None, since=holder.since if holder else None,
        )

    def read(self) -> dict[str, Any]:
        """The state, its shape checked: :class:`~halodb.errors.RegistryError` naming the file and
        what is wrong when it is not UTF-8 JSON of the shape :meth:`save` writes."""
        try:
            with builtins.open(self.state_file, encoding="utf-8") as f:
                data: Any = json.load(f)
        except FileNotFoundError:
            raise self._missing() from None
        except ValueError as exc:  # not JSON, or not UTF-8
            raise self._corrupt(f"not UTF-8 JSON ({exc})") from None
        except OSError as exc:
            raise RegistryError(f"cannot read {self.state_file}: {exc.strerror or exc}", home=self.path) from None
        self._check_shape(data)
        checked: dict[str, Any] = data
        return checked

    def _corrupt(self, what: str) -> RegistryError:
        return RegistryError(f"{self.state_file} is corrupt: {what}", home=self.path)

    def _check_shape(self, data: Any) -> None:
        """Raise unless ``data`` is ``{"head": CID|null, "staged": {"upserts": {key: {"item": CID,
        "data": str|null, "path": str|null, "doi": DOI (optional)}}, "removals": [key]}}`` (other keys
        are kept)."""
        if not isinstance(data, dict):
            raise self._corrupt(f"expected a JSON object, found {type(data).__name__}")
        self._check_cid(data.get("head"), "head", optional=True)
        staged = data.get("staged")
        if staged is None or staged == DB_NAME:
            return
        if not isinstance(staged, dict):
            raise self._corrupt(f"'staged' is {type(staged).__name__}, not an object")
        upserts, removals = staged.get("upserts", {}), staged.get("removals", [])
        if not isinstance(upserts, dict):
            raise self._corrupt(f"'staged.upserts' is {type(upserts).__name__}, not an object")
        for key, entry in upserts.items():
            where = f"staged.upserts[{key!r}]"
            if not isinstance(entry, dict):
                raise self._corrupt(f"{where} is {type(entry).__name__}, not an object")
            self._check_cid(entry.get("item"), f"{where}.item", optional=False)
            for field_ in ("data", "path", "doi"):
                if not isinstance(entry.get(field_), (str, type(None))):
                    raise self._corrupt(f"{where}.{field_} is {type(entry[field_]).__name__}, not a string")
            doi = entry.get("doi")
            if doi is not None and not is_normal_doi(doi):
                raise self._corrupt(f"{where}.doi is not a lower-case DOI: {doi[:80]!r}")
        if not isinstance(removals, list) or not all(isinstance(k, str) for k in removals):
            raise self._corrupt("'staged.removals' is not a list of keys")

    def _check_cid(self, value: Any, where: str, *, optional: bool) -> None:
        if value is None and optional:
            return
        try:
            CID.parse(value)
        except CIDError as exc:
            raise self._corrupt(f"{where}: {exc}") from None

    def write(self, state: dict[str, Any]) -> None:
        write_json_atomic(self.state_file, state)

    def init(self) -> None:
        """Create the home (idempotent)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.state_file.exists():
            self.read()  # a corrupt state is reported, not declared ready
            return
        with self._hold("init", None, create=True):
            if not self.state_file.exists():
                self.db.create()
                self.write({"version": 2, "staged": DB_NAME})

    @staticmethod
    def _legacy(state: dict[str, Any]) -> bool:
        """Whether ``state`` holds the head and the stage itself (a home from before the
        stage database)."""
        return state.get("staged") != DB_NAME

    def _migrate(self) -> None:
        """Move the head and the stage of a state file from before the stage database into
        it (holding the lock; see the module)."""
        if not self.state_file.exists():
            return
        state = self.read()
        if not self._legacy(state):
            return
        self.db.replace(self._legacy_head(state), self._legacy_stage(state))
        state.pop("head", None)
        state.update(version=2, staged=DB_NAME)
        self.write(state)

    @staticmethod
    def _legacy_head(state: dict[str, Any]) -> CID | None:
        head = state.get("head")
        return CID.parse(head) if head else None

    @staticmethod
    def _legacy_stage(state: dict[str, Any]) -> Stage:
        raw = state.get("staged") or {}  # shape checked by read()
        return Stage(
            upserts={k: Entry(CID.parse(v["item"]), v.get("data"), v.get("path"), v.get("doi"))
                     for k, v in raw.get("upserts", {}).items()},
            removals=set(raw.get("removals", [])),
        )

    def head(self) -> CID | None:
        state = self.read()
        return self._legacy_head(state) if self._legacy(state) else self.db.head()

    def stage(self) -> Stage:
        """The whole stage, in memory (a large stage is better read from :attr:`db`)."""
        state = self.read()
        return self._legacy_stage(state) if self._legacy(state) else self.db.stage()

    def counts(self) -> tuple[int, int]:
        """How many upserts and removals are staged."""
        state = self.read()
        if self._legacy(state):
            stage = self._legacy_stage(state)
            return len(stage.upserts), len(stage.removals)
        return self.db.counts()

    def save(self, head: CID | None, stage: Stage) -> None:
        """Record the local head and the (whole) stage together, in one transaction (inside
        :meth:`locked`, having read them there too)."""
        self._migrate()
        self.db.replace(head, stage)

    def set_head(self, head: CID | None) -> None:
        """Record the local head; the stage stays (inside :meth:`locked`)."""
        self._migrate()
        self.db.set_head(head)

    def stage_writer(self) -> AbstractContextManager[StageWriter]:
        """Add to the stage in one transaction (:meth:`StageDB.writer`; inside :meth:`locked`)."""
        self._migrate()
        return self.db.writer()
