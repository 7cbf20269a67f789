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
"""

from __future__ import annotations

import fcntl
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from halodb.util.fs import write_json_atomic
from halodb.errors import InvalidNameError, NameConflictError, NameNotFoundError
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


class LocalNames(NameStore):
    """Names kept as files in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _file(self, name: str) -> Path:
        return self.root / f"{check_name(name)}.json"

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            with open(self._file(name), encoding="utf-8") as f:
                data: dict[str, Any] = json.load(f)
                return data
        except FileNotFoundError:
            return None

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
        return [NameRecord(CID.parse(h["cid"]), parse_time(h["published"])) for h in data["history"]]

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        # other files of the folder (".ipns-sequences.json", temp files) are not names
        return sorted(p.stem for p in self.root.glob("*.json") if NAME_RE.match(p.stem))
