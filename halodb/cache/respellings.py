"""Marking the rows of ``item_versions`` that only respell a data CID (``respelled``).

A row whose data CID is another spelling of the one before it (``Qm…`` to the ``bafy…`` of
the same multihash), with the same path and a STAC item that differs only where that CID is
written, is the same content: ``changes()`` leaves it out (migration 004). A multihash cannot
be read in SQL, so Python decides: SQL finds the rows not checked yet (``respelled IS
NULL``) whose data CID differs from the row they follow, Python keeps those whose CIDs share
a multihash and compares their items (from ``stac_items``) modulo the spelling, and two
UPDATEs record the answer for every unchecked row.

A sync inserts its rows unchecked and marks them in its own transaction; rows of a cache
made before migration 004 are marked when the cache is next opened read-write.

>>> import duckdb
>>> from halodb.cache.migrate import migrate
>>> con = duckdb.connect(); _ = migrate(con)
>>> mark_respellings(con)  # nothing to check
0
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pyarrow as pa

from halodb.cache.connect import registered
from halodb.ipld.spelling import is_respelling, respelled_data

__all__ = ["mark_respellings"]

# rows not checked yet whose data CID differs from that of the row they follow (same name
# and key, closed by the commit that opened this one) and whose path does not
_CANDIDATES = """
SELECT o.name, o.key, o.valid_from_commit, c.data_cid, o.data_cid, c.item_cid, o.item_cid
FROM item_versions AS o JOIN item_versions AS c
  ON c.name = o.name AND c.key = o.key AND c.valid_to_commit = o.valid_from_commit
WHERE o.respelled IS NULL AND ($name IS NULL OR o.name = $name)
  AND c.data_cid <> o.data_cid AND c.path IS NOT DISTINCT FROM o.path"""

_T_MARKED = "_halodb_respelled"


def mark_respellings(con: duckdb.DuckDBPyConnection, name: str | None = None) -> int:
    """Set ``respelled`` on every unchecked row of ``name`` (None: of every name), in the
    caller's transaction; returns how many rows are respellings."""
    candidates = [row for row in con.execute(_CANDIDATES, {"name": name}).fetchall() if respelled_data(row[3], row[4])]
    items = _items(con, {cid for row in candidates for cid in row[5:7]})
    marked = [row[:3] for row in candidates if _same_item(row, items)]
    if marked:
        table = pa.table({"name": [r[0] for r in marked], "key": [r[1] for r in marked],
                          "commit": [r[2] for r in marked]})
        with registered(con, _T_MARKED, table):
            con.execute(
                f"""UPDATE item_versions SET respelled = true FROM {_T_MARKED} AS m
                WHERE item_versions.name = m.name AND item_versions.key = m.key
                  AND item_versions.valid_from_commit = m.commit"""
            )
    con.execute("UPDATE item_versions SET respelled = false WHERE respelled IS NULL AND ($name IS NULL OR name = $name)",
                {"name": name})
    return len(marked)


def _items(con: duckdb.DuckDBPyConnection, cids: set[str]) -> dict[str, Any]:
    if not cids:
        return {}
    rows = con.execute("SELECT item_cid, CAST(item AS VARCHAR) FROM stac_items WHERE item_cid IN (SELECT unnest($1))",
                       [sorted(cids)]).fetchall()
    return {cid: json.loads(text) for cid, text in rows}


def _same_item(row: tuple[Any, ...], items: dict[str, Any]) -> bool:
    """Whether the new item is the old one with the data CID respelled; an item the cache
    could not hold (``skipped_items``) compares only by its CID."""
    old_data, new_data, old_item, new_item = row[3:7]
    if old_item == new_item:
        return True
    if old_item not in items or new_item not in items:
        return False
    return is_respelling(items[old_item], items[new_item], old_data, new_data)
