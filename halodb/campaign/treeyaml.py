"""ORCESTRA-style campaign trees: ``tree.yaml`` and its history.

A tree is a nested mapping: a string value is the CID of the dataset (or file/folder) at
that path, a mapping is a folder, and null is an empty folder.

Both files come from outside, so reading them is bounded: folders nest at most
:data:`MAX_DEPTH` levels, a ``tree.yaml`` may not use YAML aliases (``*name``: a few lines
of them can stand for billions of entries), and a tree whose folders are shared or contain
themselves (possible only from Python) is refused. Anything malformed is an
:class:`~halodb.errors.InputError` naming the file (and line).

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
from yaml.composer import ComposerError
from yaml.events import AliasEvent
from yaml.nodes import Node
from yaml.scanner import ScannerError

from halodb.errors import CIDError, InputError
from halodb.util.times import parse_time
from halodb.ipld import CID
from halodb.util.paths import check_segment
from halodb.util.oserrors import describe_os_error

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
    folders: set[int] = set()  # ids of the folders visited: each may appear once

    def visit(node: Any, prefix: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise InputError(f"{source}: tree deeper than {MAX_DEPTH} levels at {prefix!r}", source=source)
        if id(node) in folders:
            raise InputError(f"{source}: the folder at {prefix!r} appears more than once in the tree "
                             "(a shared or self-containing mapping)", source=source)
        folders.add(id(node))
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


class _TreeLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases, and with nesting bounded before it recurses
    (and, for ``[``/``{`` collections, before its scanner looks ahead over all of them)."""

    _depth = 0

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 - PyYAML's name
        if self.flow_level > MAX_DEPTH + 1:
            raise ScannerError(None, None, f"nested deeper than {MAX_DEPTH} levels", self.get_mark())
        super().fetch_flow_collection_start(TokenClass)  # type: ignore[misc]

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, AliasEvent):
            raise ComposerError(None, None, f"YAML aliases (*{event.anchor}) are not allowed here", mark)
        if self._depth > MAX_DEPTH + 1:
            raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(path: Path, *, what: str = "tree") -> Any:
    """Read a YAML file from outside, bounded: YAML aliases and nesting deeper than
    :data:`MAX_DEPTH` are refused; anything malformed is an :class:`InputError` naming the
    file (``what`` says what it should have been)."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_TreeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}", source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})", source=str(path)) from None
    except ValueError as exc:  # a value PyYAML's constructors cannot build (a 5000-digit integer, 2024-13-45)
        raise InputError(f"{path}: not a valid {what}: {exc}", source=str(path)) from None
    except OSError as exc:
        raise InputError(f"{path}: {describe_os_error(exc)}", source=str(path)) from None


def load_tree(path: Path) -> dict[str, Any]:
    """Read a ``tree.yaml`` (YAML aliases and nesting deeper than :data:`MAX_DEPTH` are refused)."""
    tree = load_yaml(path, what="tree")
    if not isinstance(tree, dict):
        raise InputError(f"{path}: a tree must be a mapping at the top level", source=str(path))
    return tree


def load_tree_history(path: Path) -> Iterator[TreeVersion]:
    """Versions from a ``tree-history.jsonl`` (``{commit, date, message, tree}`` per line)."""
    try:
        f = open(path, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: {describe_os_error(exc)}", source=str(path)) from None
    with f:
        n = 0
        try:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield _history_line(line, f"{path}:{n}")
        except UnicodeDecodeError as exc:
            where = f"{path}:{n + 1}"
            raise InputError(f"{where}: not UTF-8 text (byte {exc.start} of the read)", source=where) from None


def _history_line(line: str, where: str) -> TreeVersion:
    """One line of a history file: ``{"tree": {...}, "date": "...", "message"?: "...", "commit"?: "..."}``."""
    try:
        row = json.loads(line)
    except RecursionError:
        raise InputError(f"{where}: not a tree-history line: nested too deeply", source=where) from None
    except ValueError as exc:  # bad JSON, or an integer of more digits than Python converts
        raise InputError(f"{where}: not a tree-history line: {exc}", source=where) from None
    if not isinstance(row, dict):
        raise InputError(f"{where}: not a tree-history line: expected a JSON object", source=where)
    tree, date = row.get("tree"), row.get("date")
    message, commit = row.get("message", ""), row.get("commit", "")
    if not isinstance(tree, dict):
        raise InputError(f"{where}: not a tree-history line: 'tree' must be a mapping", source=where)
    if not isinstance(date, str):
        raise InputError(f"{where}: not a tree-history line: 'date' must be an ISO 8601 date-time", source=where)
    if not isinstance(message, str) or not isinstance(commit, str):
        raise InputError(f"{where}: not a tree-history line: 'message' and 'commit' must be strings", source=where)
    try:
        when = parse_time(date)
    except (ValueError, OverflowError) as exc:
        raise InputError(f"{where}: not a tree-history line: 'date' {date!r}: {exc}", source=where) from None
    return TreeVersion(tree=tree, time=when, message=message, commit=commit)
