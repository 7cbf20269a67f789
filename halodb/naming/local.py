"""Local names: one JSON file per name under ``$HALODB_HOME/names``, with its history.

Writes are atomic (temp file + rename) and serialized by an advisory file lock, so a
compare-and-swap publish from two processes cannot lose an update.

>>> import tempfile, pathlib
>>> from halodb.ipld import CID
>>> names = LocalNames(pathlib.Path(tempfile.mkdtemp()))
>>> a, b = CID.for_bytes(b"a"), CID.for_bytes(b"b")
>>> _ = names.publish("latest", a)
>>> _ = names.publish("latest", b, expected=a)
>>> [r.cid == c for r, c in zip(names.history("latest"), [a, b])]
[True, True]
>>> _ = (names.root / "latest.json").write_text("[]")
>>> names.resolve("latest")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
halodb.errors.NamingError: local name file .../latest.json is corrupt: expected a JSON object, found list
"""

from __future__ import annotations

import fcntl
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from halodb.util.fs import write_json_atomic
from halodb.errors import CIDError, InvalidNameError, NameConflictError, NameNotFoundError, NamingError
from halodb.util.times import format_time, parse_time
from halodb.ipld import CID
from halodb.naming.base import NameRecord, NameStore, Resolution

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,253}$")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid local name, else raise :class:`InvalidNameError`."""
    if not NAME_RE.match(name):
        raise InvalidNameError(
            f"invalid name {name!r}: use letters, digits, '.', '_' and '-' (e.g. latest.orcestra-campaign.org)",
            name=name,
        )
    return name


def _corrupt(path: Path, name: str, what: str) -> NamingError:
    return NamingError(f"local name file {path} is corrupt: {what}", name=name)


def _check_shape(data: Any, path: Path, name: str) -> None:
    if not isinstance(data, dict):
        raise _corrupt(path, name, f"expected a JSON object, found {type(data).__name__}")
    head, history = data.get("head"), data.get("history", [])
    try:
        if head is not None:
            CID.parse(head)
        if not isinstance(history, list):
            raise _corrupt(path, name, f"'history' is {type(history).__name__}, not a list")
        for n, record in enumerate(history):
            if not isinstance(record, dict):
                raise _corrupt(path, name, f"history[{n}] is {type(record).__name__}, not an object")
            cid = record.get("cid")
            if not isinstance(cid, str):
                raise _corrupt(path, name, f"history[{n}].cid is not a CID")
            CID.parse(cid)
            published = record.get("published")
            if not isinstance(published, str):
                raise _corrupt(path, name, f"history[{n}].published is not a time")
            parse_time(published)
    except CIDError as exc:
        raise _corrupt(path, name, str(exc)) from None
    except ValueError as exc:
        raise _corrupt(path, name, f"a published time is not an RFC 3339 time ({exc})") from None


class LocalNames(NameStore):
    """Names kept as files in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _file(self, name: str) -> Path:
        return self.root / f"{check_name(name)}.json"

    def _read(self, name: str) -> dict[str, Any] | None:
        """The name's file, its shape checked (None when there is none): ``{"head": CID|null,
        "history": [{"cid": CID, "published": RFC 3339}]}``; :class:`NamingError` naming the file
        and what is wrong otherwise."""
        path = self._file(name)
        try:
            with open(path, encoding="utf-8") as f:
                data: Any = json.load(f)
        except FileNotFoundError:
            return None
        except ValueError as exc:  # not JSON, or not UTF-8
            raise _corrupt(path, name, f"not UTF-8 JSON ({exc})") from None
        except OSError as exc:
            raise NamingError(f"cannot read the local name file {path}: {exc.strerror or exc}", name=name) from None
        _check_shape(data, path, name)
        checked: dict[str, Any] = data
        return checked

    def exists(self, name: str) -> bool:
        """Whether ``name`` is a local name with a head."""
        data = self._read(name)
        return bool(data and data.get("head"))

    def resolve(self, name: str) -> Resolution:
        data = self._read(name)
        if data is None or not data.get("head"):
            known = ", ".join(self.names()) or "none"
            raise NameNotFoundError(f"unknown name {name!r} (local names: {known})", name=name)
        return Resolution(name=name, cid=CID.parse(data["head"]), ttl=None, source=f"local:{self._file(name)}")

    def publish(self, name: str, cid: CID, *, expected: CID | None = None) -> Resolution:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._file(name)
        with open(self.root / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read(name) or {"name": name, "head": None, "history": []}
            data.setdefault("history", [])
            current = data.get("head")
            if expected is not None and current != str(expected):
                raise NameConflictError(
                    f"name {name!r} moved: expected {expected}, it now points at {current or 'nothing'}",
                    name=name,
                    expected=expected,
                    current=current,
                )
            data["head"] = str(cid)
            data["history"].append({"cid": str(cid), "published": format_time(datetime.now(timezone.utc))})
            write_json_atomic(path, data, indent=1)
        return Resolution(name=name, cid=cid, source=f"local:{path}")

    def history(self, name: str) -> list[NameRecord]:
        data = self._read(name)
        if data is None:
            raise NameNotFoundError(f"unknown name {name!r}", name=name)
        return [NameRecord(CID.parse(h["cid"]), parse_time(h["published"])) for h in data.get("history", [])]

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        # other files of the folder (".ipns-sequences.json", temp files) are not names
        return sorted(p.stem for p in self.root.glob("*.json") if NAME_RE.match(p.stem))
