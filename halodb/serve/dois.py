"""``GET /doi/{doi}``: the dataset and data CID a DOI was minted for, from a serving snapshot.

The same rule as ``halodb at doi:`` (:mod:`halodb.index.dois`): a DOI names the data its
dataset had in the first version that had the DOI (the items' ``sci:doi``). The snapshot's
DOIs are read once from its item JSON (only items whose text holds ``"sci:doi"`` are
parsed) and kept for the snapshot's life.

>>> _first_per_key([DoiRow("10.1234/a", "c/x", "c", "x", "bafkqaaa", 0, 2), DoiRow("10.1234/a", "c/x", "c", "x", "b", 2, None)])
{'c/x': DoiRow(doi='10.1234/a', key='c/x', collection='c', id='x', data='bafkqaaa', from_seq=0, to_seq=2)}
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import quote

import duckdb
import orjson

from halodb.errors import InputError, RequestError
from halodb.ipld.spelling import same_content
from halodb.serve.snapshot import Snapshot, Version
from halodb.util.doi import normalize_doi

__all__ = ["DoiRow", "resolve_doi"]


class DoiRow(NamedTuple):
    """A dataset version (``from_seq`` to before ``to_seq``; None: still current) whose item has ``doi``."""

    doi: str
    key: str
    collection: str | None
    id: str | None
    data: str | None
    from_seq: int
    to_seq: int | None


def _rows(snap: Snapshot, cur: duckdb.DuckDBPyConnection) -> list[DoiRow]:
    out = []
    for key, collection, item_id, data, from_seq, to_seq, row in cur.execute(
            "SELECT key, collection, id, data_cid, from_seq, to_seq, item_row FROM search_rows ORDER BY from_seq").fetchall():
        text = snap.item_json(row)
        if '"sci:doi"' not in text:
            continue
        props = orjson.loads(text).get("properties")
        value = props.get("sci:doi") if isinstance(props, dict) else None
        try:
            doi = normalize_doi(str(value), "sci:doi") if isinstance(value, str) else None
        except InputError:  # an item synced from elsewhere whose sci:doi is none: it names no DOI
            continue
        if doi is None:
            continue
        out.append(DoiRow(doi, key, collection, item_id, data, from_seq, None if to_seq >= 2147483647 else to_seq))
    return out


def _first_per_key(rows: list[DoiRow]) -> dict[str, DoiRow]:
    first: dict[str, DoiRow] = {}
    for r in rows:
        if r.key not in first or r.from_seq < first[r.key].from_seq:
            first[r.key] = r
    return first


def resolve_doi(snap: Snapshot, cur: duckdb.DuckDBPyConnection, version: Version, text: str,
                root: str) -> dict[str, Any]:
    """What ``text`` (a DOI) was minted for in the history up to ``version``; a
    :class:`RequestError` (400) for no DOI, 404 for one no version had."""
    try:
        doi = normalize_doi(text, "doi")
    except InputError as exc:
        raise RequestError(str(exc), parameter="doi") from None
    rows: list[DoiRow] = snap.memo(("dois", ""), lambda: _rows(snap, cur))
    mine = [r for r in rows if r.doi == doi and r.from_seq <= version.seq]
    if not mine:
        raise RequestError(f"no dataset of {snap.name} up to commit {version.cid} had the DOI {doi!r}",
                           parameter="doi", status=404)
    held = [r for r in mine if r.to_seq is None or version.seq < r.to_seq]
    first = _first_per_key(mine)
    key = held[0].key if held else max(mine, key=lambda r: min(r.to_seq or version.seq + 1, version.seq + 1)).key
    minted = first[key]
    state = "withdrawn"
    if held:
        state = "current" if same_content(held[0].data, minted.data) else "superseded"
    commit = snap.versions[minted.from_seq]
    links = []
    if minted.collection is not None and minted.id is not None:
        path = f"collections/{quote(minted.collection, safe='')}/items/{quote(minted.id, safe='')}"
        links.append({"rel": "item", "href": f"{root}versions/{commit.cid}/{path}", "type": "application/geo+json",
                      "title": "the dataset as the DOI was minted for it"})
        if held:
            links.append({"rel": "latest-version", "href": f"{root}{path}", "type": "application/geo+json"})
    return {"doi": doi, "key": key, "data_cid": minted.data, "commit": commit.cid,
            "time": commit.time.strftime("%Y-%m-%dT%H:%M:%SZ"), "version": commit.seq + 1, "state": state,
            "links": links}
