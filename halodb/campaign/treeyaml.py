"""ORCESTRA-style campaign trees: ``tree.yaml`` and its history.

A tree is a nested mapping: a string value is the CID of the dataset (or file/folder) at
that path, a mapping is a folder, and null is an empty folder.

>>> flatten_tree({"products": {"HALO": {"a.zarr": "QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY"}, "empty": None}})
{'products/HALO/a.zarr': 'QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY'}
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from halodb.errors import CIDError, InputError
from halodb.util.times import parse_time
from halodb.ipld import CID
from halodb.util.paths import check_segment

MAX_DEPTH = 64


@dataclass(frozen=True)
class TreeVersion:
    """One version of a tree from a history file."""

    tree: dict[str, Any]
    time: datetime
    message: str
    commit: str


def flatten_tree(tree: Any, *, source: str = "tree") -> dict[str, str]:
    """``{path: cid}`` for every leaf; empty folders (null) are skipped; CIDs are checked."""
    out: dict[str, str] = {}

    def visit(node: Any, prefix: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise InputError(f"{source}: tree deeper than {MAX_DEPTH} levels at {prefix!r}", source=source)
        for name, value in node.items():
            if not isinstance(name, str):
                raise InputError(f"{source}: invalid entry name {name!r} under {prefix or '/'!r}", source=source)
            check_segment(name, f"{source}: under {prefix or '/'!r}")
            path = f"{prefix}/{name}" if prefix else name
            if value is None:
                continue
            if isinstance(value, dict):
                visit(value, path, depth + 1)
            elif isinstance(value, str):
                try:
                    CID.parse(value)
                except CIDError:
                    raise InputError(f"{source}: {path}: {value!r} is not a CID", source=source) from None
                out[path] = value
            else:
                raise InputError(
                    f"{source}: {path}: expected a CID string or a folder, got {type(value).__name__}", source=source
                )

    if not isinstance(tree, dict):
        raise InputError(f"{source}: a tree must be a mapping at the top level", source=source)
    visit(tree, "", 0)
    return out


def load_tree(path: Path) -> dict[str, Any]:
    """Read a ``tree.yaml``."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}", source=str(path)) from None
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}", source=str(path)) from None
    if not isinstance(tree, dict):
        raise InputError(f"{path}: a tree must be a mapping at the top level", source=str(path))
    return tree


def load_tree_history(path: Path) -> Iterator[TreeVersion]:
    """Versions from a ``tree-history.jsonl`` (``{commit, date, message, tree}`` per line)."""
    try:
        f = open(path, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}", source=str(path)) from None
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                row = json.loads(line)
                yield TreeVersion(
                    tree=row["tree"], time=parse_time(row["date"]), message=row.get("message", ""), commit=row.get("commit", "")
                )
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise InputError(f"{where}: not a tree-history line: {exc}", source=where) from None
