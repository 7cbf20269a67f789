"""Collections derived from the items of one version: extents, summaries and counts.

HaloDB stores items, not collection documents: a collection is every item with that
``collection`` id. Its spatial extent is the union of the items' 2D bboxes, its temporal
extent the span of their times, its summaries the platforms and instruments they name, its
keywords theirs, and ``halodb:item_count`` how many there are. Computed once per version and
snapshot (:meth:`Snapshot.memo`).

>>> # derive(cursor, version) -> [CollectionStats(id="HALO", count=120, ...), ...]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from halodb.serve.snapshot import Version

__all__ = ["CollectionStats", "derive"]

_STATS = """
SELECT i.collection, count(*),
       min(i.xmin), min(i.ymin), max(i.xmax), max(i.ymax),
       min(i.t_start), max(i.t_end),
       list_sort(list_distinct(list(i.platform))),
       list_sort(list_distinct(flatten(list(coalesce(i.instruments, []))))),
       list_sort(list_distinct(flatten(list(coalesce(i.keywords, [])))))
FROM versions AS v JOIN items AS i ON i.item_cid = v.item_cid
WHERE v.from_seq <= ? AND (v.to_seq IS NULL OR ? < v.to_seq) AND i.collection IS NOT NULL
GROUP BY i.collection ORDER BY i.collection"""


@dataclass(frozen=True)
class CollectionStats:
    """What the items of one collection say about it."""

    id: str
    count: int
    bbox: list[float] | None
    start: datetime | None
    end: datetime | None
    platforms: list[str]
    instruments: list[str]
    keywords: list[str]

    def document(self, name: str) -> dict[str, Any]:
        """The STAC Collection (without links) for this collection of ``name``."""
        platforms = ", ".join(self.platforms) or "unknown platforms"
        doc: dict[str, Any] = {
            "type": "Collection",
            "stac_version": "1.1.0",
            "id": self.id,
            "title": self.id,
            "description": f"{self.count} dataset(s) of {name} in collection {self.id} ({platforms}).",
            "license": "other",
            "extent": {
                "spatial": {"bbox": [self.bbox or [-180.0, -90.0, 180.0, 90.0]]},
                "temporal": {"interval": [[_time(self.start), _time(self.end)]]},
            },
            "summaries": {"platform": self.platforms, "instruments": self.instruments},
            "halodb:item_count": self.count,
        }
        if self.keywords:
            doc["keywords"] = self.keywords
        return doc


def derive(cur: duckdb.DuckDBPyConnection, version: Version) -> list[CollectionStats]:
    """Every collection of the items valid in ``version``, by id."""
    found = []
    for cid, n, xmin, ymin, xmax, ymax, start, end, platforms, instruments, keywords in cur.execute(
            _STATS, [version.seq, version.seq]).fetchall():
        bbox = None if None in (xmin, ymin, xmax, ymax) else [xmin, ymin, xmax, ymax]
        found.append(CollectionStats(cid, int(n), bbox, start, end, [p for p in platforms if p is not None],
                                     list(instruments), list(keywords)))
    return found


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")
