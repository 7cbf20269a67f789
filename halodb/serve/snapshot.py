"""A serving snapshot: one name's synced history, copied out of the cache into memory.

``halodb serve`` answers every request from a :class:`Snapshot`: an in-memory DuckDB database
(``snapshot_schema.sql``) holding the name's commits, every item block of its history and
which item each dataset key had in which commits. Building one reads the cache file once
(read-only, for as long as three queries take) and then never touches it again, so a
``halodb sync`` of the same cache — by this server's watcher or by another process — is never
blocked by readers, and readers are never blocked by it: a new snapshot is built beside the
old one and replaces it whole (:class:`SnapshotHolder`); a request that started on the old
one finishes on it.

>>> # with halodb.open() as reg: snap = Snapshot.build(reg.queries, "orcestra")
>>> # snap.head.cid, snap.version_at(datetime(2024, 9, 1, tzinfo=timezone.utc))
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.resources import files
from typing import Any

import duckdb
import pyarrow as pa
import shapely

from halodb.cache import Cache
from halodb.errors import InputError
from halodb.serve import spatial
from halodb.serve.arrays import SearchArrays

__all__ = ["DEFAULT_ORDER", "FILL_SEARCH_ROWS", "SCHEMA", "Snapshot", "SnapshotHolder", "Version"]

SCHEMA = files("halodb.serve").joinpath("snapshot_schema.sql").read_text(encoding="utf-8")

_COMMITS = """
SELECT n.seq, c.cid, c.time, c.parents, c.author, c.message
FROM name_commits AS n JOIN commits AS c ON c.cid = n.cid
WHERE n.name = ? ORDER BY n.seq"""

_VERSIONS = """
SELECT v.key, v.item_cid, v.data_cid, v.path, f.seq AS from_seq, t.seq AS to_seq,
       coalesce(v.respelled, false) AS respelled,
       CAST(sum(CASE WHEN v.respelled THEN 0 ELSE 1 END) OVER (PARTITION BY v.key ORDER BY f.seq) AS INTEGER) AS content
FROM item_versions AS v
JOIN name_commits AS f ON f.name = v.name AND f.cid = v.valid_from_commit
LEFT JOIN name_commits AS t ON t.name = v.name AND t.cid = v.valid_to_commit
WHERE v.name = ?"""

_ITEMS = """
SELECT s.item_cid, s.id, s.collection, s.datetime, s.start_datetime, s.end_datetime, s.bbox,
       s.platform, s.instruments, s.title,
       json_extract_string(s.item, '$.properties.description') AS description, s.keywords,
       json_extract_string(s.item, '$.properties.mission') AS mission,
       TRY_CAST(json_extract_string(s.item, '$.properties."eo:cloud_cover"') AS DOUBLE) AS cloud_cover,
       CAST(json_extract(s.item, '$.geometry') AS VARCHAR) AS geometry, CAST(s.item AS VARCHAR) AS item
FROM stac_items AS s
WHERE s.item_cid IN (SELECT item_cid FROM item_versions WHERE name = ?)"""

# the source rows (registered as `src`) into the items table: spans, 2D bbox (the item's, or
# else its geometry's bounds), search text
_FILL_ITEMS = """
INSERT INTO items
SELECT item_cid, id, collection, datetime, start_datetime, end_datetime,
       coalesce(start_datetime, datetime, end_datetime), coalesce(end_datetime, datetime, start_datetime),
       CASE WHEN len(bbox) IN (4, 6) THEN bbox[1] ELSE gxmin END,
       CASE WHEN len(bbox) IN (4, 6) THEN bbox[2] ELSE gymin END,
       CASE len(bbox) WHEN 4 THEN bbox[3] WHEN 6 THEN bbox[4] ELSE gxmax END,
       CASE len(bbox) WHEN 4 THEN bbox[4] WHEN 6 THEN bbox[5] ELSE gymax END,
       platform, instruments, title, description, keywords, mission, cloud_cover,
       lower(concat_ws(' ', title, description, array_to_string(keywords, ' '))),
       CASE WHEN geometry IS NULL OR geometry = 'null' THEN NULL ELSE geometry END, wkb
FROM src"""

#: the order of a search without sortby (then by dataset key, unique within a version)
DEFAULT_ORDER = "i.t_start DESC NULLS LAST, i.collection NULLS FIRST, i.id"

# what searches read (halodb/serve/search.py): each row of `versions` with the columns of its
# item, so that a search filters one table instead of joining 100,000 rows on item_cid per
# query; in the default order of a search, so that a top-N scan finds its page in the first
# rows and the arrays (arrays.py) give matches in order by position. The item JSON is not in
# the database: a page takes its items' JSON by `item_row` from the snapshot
# (Snapshot.item_json). Its to_seq is never NULL (a current row ends past any commit), so
# that "in version s" is two comparisons DuckDB pushes into the scan, not an OR.
FILL_SEARCH_ROWS = f"""
CREATE TABLE search_rows AS
SELECT v.key, v.data_cid, v.path, v.from_seq, coalesce(v.to_seq, 2147483647) AS to_seq, i.rowid AS item_row,
       i.* EXCLUDE (geometry)
FROM versions AS v JOIN items AS i ON i.item_cid = v.item_cid
ORDER BY {DEFAULT_ORDER}, v.key"""


@dataclass(frozen=True)
class Version:
    """One commit of the served name's history (``seq`` 0 = the oldest)."""

    seq: int
    cid: str
    time: datetime
    parents: tuple[str, ...]
    author: str
    message: str


class Snapshot:
    """One name's history in memory, answering queries through :meth:`cursor`."""

    def __init__(self, name: str, versions: list[Version], con: duckdb.DuckDBPyConnection,
                 item_json: pa.StringArray, arrays: SearchArrays) -> None:
        if not versions:
            raise InputError(f"{name} has no synced version to serve; run `halodb sync {name}` first", source=name)
        self.name = name
        self.versions = versions
        self.head = versions[-1]
        self.built_at = datetime.now(timezone.utc)
        self._con = con
        self._item_json = item_json
        self.arrays = arrays  #: search_rows as NumPy arrays, for the core of a search
        self._by_cid = {v.cid: v for v in versions}
        self._times = [v.time for v in versions]
        self._memo: dict[tuple[str, Any], Any] = {}
        self._memo_lock = threading.Lock()

    @classmethod
    def build(cls, cache: Cache, name: str) -> Snapshot:
        """Copy ``name``'s history out of ``cache`` (read with :meth:`Cache.sql_arrow`).

        The three reads share one connection (:meth:`Cache.session`): while it is open no
        other process can write the file, so a sync elsewhere cannot slip between them and
        leave versions pointing at commits the copy does not have."""
        with cache.session():
            commits = cache.sql_arrow(_COMMITS, [name])
            versions_rows = cache.sql_arrow(_VERSIONS, [name])
            items_rows = cache.sql_arrow(_ITEMS, [name])
        geometries = shapely.from_geojson(items_rows.column("geometry").to_pylist(), on_invalid="ignore")
        wkb = pa.array(shapely.to_wkb(geometries).tolist(), type=pa.binary())
        bounds = shapely.bounds(geometries)  # NaN for no geometry; the item's own bbox comes first
        # the JSON stays out of the database: an Arrow array in the order of the items table's
        # rows (one INSERT, insertion order preserved), read by row for the few items of a page
        item_json = items_rows.column("item").combine_chunks()
        src = items_rows.drop_columns(["item"]).append_column("wkb", wkb)
        for n, column in enumerate(("gxmin", "gymin", "gxmax", "gymax")):
            src = src.append_column(column, pa.array(bounds[:, n], type=pa.float64(), from_pandas=True))
        con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                                 "autoload_known_extensions": False})
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(SCHEMA)
            con.register("src", src)
            con.execute(_FILL_ITEMS)
            con.unregister("src")
            con.register("src", versions_rows)
            con.execute("INSERT INTO versions SELECT * FROM src")
            con.unregister("src")
            con.register("src", commits)
            con.execute("INSERT INTO commits SELECT * FROM src")
            con.unregister("src")
            con.execute(FILL_SEARCH_ROWS)
            arrays = SearchArrays.build(con, wkb)
            spatial.register(con)  # added to the database: every cursor of it has the function
            # one thread per query: a server runs many requests at once, each on its own
            # cursor, so parallelism comes from the requests; splitting each small query
            # over the cores too only adds handoffs (8 clients, 100,000 items, in SQL: box
            # searches 138 -> 162/s, CQL2 224 -> 246/s, q 108 -> 153/s; docs/internals/serve.md)
            con.execute("SET threads = 1")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        except BaseException:
            con.close()
            raise
        versions = [Version(int(r["seq"]), r["cid"], _utc(r["time"]), tuple(r["parents"]), r["author"], r["message"])
                    for r in commits.to_pylist()]
        return cls(name, versions, con, item_json, arrays)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own for one request (close it after)."""
        return self._con.cursor()

    def item_json(self, row: int) -> str:
        """The JSON text of the item in row ``row`` of the ``items`` table (``item_row``)."""
        return str(self._item_json[row].as_py())

    def version(self, cid: str) -> Version | None:
        """The commit ``cid`` of this history, or None."""
        return self._by_cid.get(cid)

    def version_at(self, when: datetime) -> Version | None:
        """The commit current at ``when`` (the last one at or before it), or None before the first."""
        at = bisect.bisect_right(self._times, when)
        return self.versions[at - 1] if at else None

    def memo(self, key: tuple[str, Any], compute: Any) -> Any:
        """``compute()`` once per ``key`` for this snapshot (collections, counts: they never change)."""
        with self._memo_lock:
            if key in self._memo:
                return self._memo[key]
        value = compute()
        with self._memo_lock:
            if len(self._memo) > 4096:
                self._memo.clear()
            self._memo[key] = value
        return value

    def close(self) -> None:
        self._con.close()


class SnapshotHolder:
    """The snapshot requests read now; :meth:`replace` swaps in a new one atomically.

    A request takes :attr:`current` once and uses that snapshot to its end; the replaced one
    is freed when its last request lets go of it.
    """

    def __init__(self, snapshot: Snapshot) -> None:
        self._current = snapshot
        self._lock = threading.Lock()

    @property
    def current(self) -> Snapshot:
        with self._lock:
            return self._current

    def replace(self, snapshot: Snapshot) -> Snapshot:
        """Serve ``snapshot`` from now on; returns the old one (not closed: requests may use it)."""
        with self._lock:
            old, self._current = self._current, snapshot
        return old


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
