"""A registry home on disk: ``state.json`` (the local head and the stage) and its defaults.

>>> import tempfile, pathlib
>>> home = Home(pathlib.Path(tempfile.mkdtemp()))
>>> home.init()
>>> home.head(), bool(home.stage())
(None, False)
"""

from __future__ import annotations

import builtins
import getpass
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halodb.errors import RegistryError
from halodb.index.model import Entry
from halodb.ipld import CID
from halodb.util.fs import write_json_atomic

__all__ = ["Home", "Stage", "default_author", "default_home"]


def default_home() -> Path:
    """``$HALODB_HOME``, else ``$XDG_DATA_HOME/halodb``, else ``~/.local/share/halodb``."""
    env = os.environ.get("HALODB_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "halodb"


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


@dataclass
class Stage:
    """Changes staged for the next commit."""

    upserts: dict[str, Entry] = field(default_factory=dict)
    removals: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.upserts or self.removals)


class Home:
    """The state file of a registry home: the local head and the stage, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    def read(self) -> dict[str, Any]:
        try:
            with builtins.open(self.state_file, encoding="utf-8") as f:
                data: dict[str, Any] = json.load(f)
                return data
        except FileNotFoundError:
            raise RegistryError(
                f"no HaloDB registry in {self.path}: run `halodb init` (or set HALODB_HOME / --home)", home=self.path
            ) from None
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{self.state_file} is corrupt: {exc}", home=self.path) from None

    def write(self, state: dict[str, Any]) -> None:
        write_json_atomic(self.state_file, state)

    def init(self) -> None:
        """Create the home (idempotent)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.state_file.exists():
            self.write({"version": 1, "head": None, "staged": {"upserts": {}, "removals": []}})

    def head(self) -> CID | None:
        head = self.read().get("head")
        return CID.parse(head) if head else None

    def stage(self) -> Stage:
        raw = self.read().get("staged") or {}
        return Stage(
            upserts={k: Entry(CID.parse(v["item"]), v.get("data"), v.get("path")) for k, v in raw.get("upserts", {}).items()},
            removals=set(raw.get("removals", [])),
        )

    def save(self, head: CID | None, stage: Stage) -> None:
        """Record the local head and the stage together."""
        state = self.read()
        state["head"] = str(head) if head else None
        state["staged"] = {
            "upserts": {
                k: {"item": str(e.item), "data": e.data, "path": e.path} for k, e in sorted(stage.upserts.items())
            },
            "removals": sorted(stage.removals),
        }
        self.write(state)
