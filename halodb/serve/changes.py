"""What changed between two versions (``/changes``), as JSON records and as an Atom feed.

A change is the difference between the state of a dataset key in version ``old`` and in
version ``new``: added (absent before), removed (absent after) or changed (another item,
data CID or path), with the old and the new data, and the commit (and its time) that made
the last change of that key within ``old..new``. Keys that changed and changed back are not
listed: the net difference is what a client that last looked at ``old`` needs. Nor are keys
whose data CID was only respelled (``Qm…`` to the ``bafy…`` of the same multihash): the same
content (the snapshot's ``versions.content``).

>>> # list_changes(cursor, snapshot, old, new) -> [Change(key=..., kind="added", ...), ...]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.etree import ElementTree as ET

import duckdb

from halodb.serve.snapshot import Snapshot, Version

__all__ = ["Change", "atom_feed", "list_changes"]

_CHANGES = """
WITH a AS (SELECT key, item_cid, data_cid, path, content, to_seq FROM versions
           WHERE from_seq <= $old AND (to_seq IS NULL OR $old < to_seq)),
     b AS (SELECT key, item_cid, data_cid, path, content, from_seq FROM versions
           WHERE from_seq <= $new AND (to_seq IS NULL OR $new < to_seq))
SELECT coalesce(b.key, a.key) AS key,
       CASE WHEN a.key IS NULL THEN 'added' WHEN b.key IS NULL THEN 'removed' ELSE 'changed' END AS kind,
       a.item_cid, a.data_cid, a.path, b.item_cid, b.data_cid, b.path,
       CASE WHEN b.key IS NULL THEN a.to_seq ELSE b.from_seq END AS seq,
       coalesce(ib.id, ia.id), coalesce(ib.collection, ia.collection), coalesce(ib.title, ia.title)
FROM a FULL OUTER JOIN b ON a.key = b.key
LEFT JOIN items AS ia ON ia.item_cid = a.item_cid
LEFT JOIN items AS ib ON ib.item_cid = b.item_cid
WHERE a.content IS DISTINCT FROM b.content
  AND (a.item_cid IS DISTINCT FROM b.item_cid OR a.data_cid IS DISTINCT FROM b.data_cid
       OR a.path IS DISTINCT FROM b.path)
ORDER BY seq DESC, key
LIMIT $limit OFFSET $offset"""

_COUNT = _CHANGES.split("SELECT coalesce(b.key")[0] + """
SELECT count(*) FROM a FULL OUTER JOIN b ON a.key = b.key
WHERE a.content IS DISTINCT FROM b.content
  AND (a.item_cid IS DISTINCT FROM b.item_cid OR a.data_cid IS DISTINCT FROM b.data_cid
       OR a.path IS DISTINCT FROM b.path)"""


@dataclass(frozen=True)
class Change:
    """One dataset key that differs between two versions."""

    key: str
    kind: str  #: added, changed or removed
    id: str | None
    collection: str | None
    title: str | None
    old: dict[str, str | None] | None  #: item_cid, data_cid, path before (None when added)
    new: dict[str, str | None] | None  #: the same after (None when removed)
    commit: Version  #: the commit of the last change of the key within the range

    def record(self) -> dict[str, Any]:
        """The change as JSON."""
        return {"key": self.key, "change": self.kind, "id": self.id, "collection": self.collection,
                "title": self.title, "old": self.old, "new": self.new, "commit": self.commit.cid,
                "time": _time(self.commit.time)}


def list_changes(
    cur: duckdb.DuckDBPyConnection, snap: Snapshot, old: Version | None, new: Version, *, limit: int, offset: int,
) -> tuple[list[Change], int]:
    """The changes from ``old`` (None: before the first commit) to ``new``, newest first, and their number."""
    params = {"old": -1 if old is None else old.seq, "new": new.seq}
    total = int(cur.execute(_COUNT, params).fetchall()[0][0])
    rows = cur.execute(_CHANGES, {**params, "limit": limit, "offset": offset}).fetchall()
    changes = []
    for key, kind, a_item, a_data, a_path, b_item, b_data, b_path, seq, id_, collection, title in rows:
        changes.append(Change(
            key, kind, id_, collection, title,
            None if kind == "added" else {"item_cid": a_item, "data_cid": a_data, "path": a_path},
            None if kind == "removed" else {"item_cid": b_item, "data_cid": b_data, "path": b_path},
            snap.versions[seq]))
    return changes, total


def atom_feed(
    changes: list[Change], *, feed_url: str, title: str, updated: datetime, link_for: Any,
) -> bytes:
    """An Atom 1.0 feed (RFC 4287) of ``changes``; ``link_for(change)`` gives an entry's page URL.

    >>> from datetime import timezone
    >>> atom_feed([], feed_url="http://x/changes", title="t", updated=datetime(2024, 9, 1, tzinfo=timezone.utc),
    ...           link_for=str)[:38]
    b"<?xml version='1.0' encoding='utf-8'?>"
    """
    ns = "http://www.w3.org/2005/Atom"
    ET.register_namespace("", ns)
    feed = ET.Element(f"{{{ns}}}feed")
    ET.SubElement(feed, f"{{{ns}}}id").text = feed_url
    ET.SubElement(feed, f"{{{ns}}}title").text = title
    ET.SubElement(feed, f"{{{ns}}}updated").text = _time(updated)
    ET.SubElement(feed, f"{{{ns}}}link", rel="self", href=feed_url)
    author = ET.SubElement(feed, f"{{{ns}}}author")
    ET.SubElement(author, f"{{{ns}}}name").text = "HaloDB"
    for change in changes:
        entry = ET.SubElement(feed, f"{{{ns}}}entry")
        ET.SubElement(entry, f"{{{ns}}}id").text = f"urn:halodb:{change.commit.cid}:{change.kind}:{change.key}"
        ET.SubElement(entry, f"{{{ns}}}title").text = f"{change.kind}: {change.title or change.id or change.key}"
        ET.SubElement(entry, f"{{{ns}}}updated").text = _time(change.commit.time)
        ET.SubElement(entry, f"{{{ns}}}link", rel="alternate", href=link_for(change))
        old = (change.old or {}).get("data_cid")
        new = (change.new or {}).get("data_cid")
        ET.SubElement(entry, f"{{{ns}}}summary").text = (
            f"{change.key} {change.kind} in commit {change.commit.cid}: data {old or '-'} -> {new or '-'}")
    text: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return text


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
