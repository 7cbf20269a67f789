"""Where a registry lives: its home folder, its block store URL and its cache file, from the
arguments of :func:`halodb.open` and the environment.

>>> import os
>>> where("/tmp/h", None, None, env={}).cache
PosixPath('/tmp/h/cache.duckdb')
>>> where(None, None, None, env={"HALODB_HOME": "/srv/halodb", "HALODB_STORE": "kubo+http://127.0.0.1:5001"}).store
'kubo+http://127.0.0.1:5001'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Location", "default_home", "where"]


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """``$HALODB_HOME``, else ``$XDG_DATA_HOME/halodb``, else ``~/.local/share/halodb``."""
    env = os.environ if env is None else env
    home = env.get("HALODB_HOME")
    if home:
        return Path(home).expanduser()
    xdg = env.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "halodb"


@dataclass(frozen=True)
class Location:
    home: Path
    store: str | None  #: the block store URL; None for the home's own store
    cache: Path


def where(home: str | Path | None, store: str | None, cache: str | Path | None, *,
          env: Mapping[str, str] | None = None) -> Location:
    """The home, store URL and cache file a registry opened with these arguments uses
    (``$HALODB_HOME``, ``$HALODB_STORE`` and ``$HALODB_CACHE`` fill what is not given)."""
    env = os.environ if env is None else env
    home_path = Path(home).expanduser() if home is not None else default_home(env)
    cache_path = Path(cache) if cache is not None else Path(env.get("HALODB_CACHE") or home_path / "cache.duckdb")
    return Location(home_path, store if store is not None else env.get("HALODB_STORE"), cache_path)
