"""The core of a search answered with NumPy: version, ``collections``, ``ids``, ``bbox``,
``intersects``, ``datetime`` and free text ``q``, in the default order.

Most STAC searches ask only these. Answering one with DuckDB costs a few milliseconds of
planning and scanning per query however few rows match, which on a small machine is most
of what a server can give; answered here, it costs a few comparisons over arrays of the
snapshot's ``search_rows`` (ten of them at 100,000 rows: well under a millisecond) and an
exact geometry test (shapely) of the few rows whose bbox straddles the query's edge.
Free text keeps SQL's meaning (each word a substring of the item's lower-case text) but
looks in the distinct words of all texts (a 1.8 MB buffer at 100,000 items, where the texts
are 12.7 MB) and takes the items of the words that contain it. Anything else a search
asks — a CQL2 ``filter``, a ``sortby`` — goes to SQL
(``search.run_search``), and both give the same pages and counts
(``tests/test_serve_search.py`` compares them on generated searches).

The arrays are ``search_rows`` in its stored order, which is the default order of a search
(``snapshot.DEFAULT_ORDER``): the rows a search matches, in position order, are its results
in order, so a page is a slice and ``numberMatched`` is a length.

>>> # rows, matched = snap.arrays.search(snap.head, SearchParams(bbox=[-60, 0, -20, 20]), 0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from halodb.serve import spatial
from halodb.serve.deadlines import Deadline
from halodb.serve.params import SearchParams

__all__ = ["SearchArrays", "answers"]

#: the page columns of a hit, as ``search.run_search`` reads them
Row = tuple[str, str | None, str | None, str, int]

_NO_START = 9223372036854775807  # t_start of a row without a time
#: the whitespace the words of a text are split at (RE2's \\s in DuckDB, here too)
_WHITESPACE = "\t\n\f\r "
_SPLIT = re.compile(f"[{re.escape(_WHITESPACE)}]+")
# the distinct words of each item's text, sorted by word (they are the dictionary's order)
_POSTINGS = f"""
SELECT DISTINCT word, item_row FROM (
    SELECT rowid AS item_row, unnest(string_split_regex(coalesce(text, ''), '[{_WHITESPACE}]+')) AS word FROM items)
WHERE word <> '' ORDER BY word, item_row"""
_COLUMNS = """
SELECT from_seq, to_seq,
       coalesce(epoch_us(t_start), 9223372036854775807) AS t_start,  -- NULL: after every end
       coalesce(epoch_us(t_end), -9223372036854775808) AS t_end,     -- NULL: before every start
       xmin, ymin, xmax, ymax, wkb IS NOT NULL AS has_geometry, item_row, collection, id,
       key, data_cid, path, item_cid
FROM search_rows ORDER BY rowid"""


def answers(p: SearchParams) -> bool:
    """Whether the arrays answer ``p`` (else SQL does): no filter and no sort."""
    return p.filter is None and not p.sortby and not any("\x00" in w for words in p.q or [] for w in words)


def _floats(table: pa.Table, name: str) -> np.ndarray[Any, Any]:
    """A DOUBLE column with NaN for NULL (a comparison with NaN is false, as SQL's NULL)."""
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


@dataclass(frozen=True)
class SearchArrays:
    """``search_rows`` as arrays (one element per row, in the stored order), with the
    items' WKB by ``item_row`` for the exact geometry test."""

    from_seq: np.ndarray[Any, Any]
    to_seq: np.ndarray[Any, Any]
    t_start: np.ndarray[Any, Any]  # microseconds since 1970
    t_end: np.ndarray[Any, Any]
    xmin: np.ndarray[Any, Any]
    ymin: np.ndarray[Any, Any]
    xmax: np.ndarray[Any, Any]
    ymax: np.ndarray[Any, Any]
    has_geometry: np.ndarray[Any, Any]
    item_row: np.ndarray[Any, Any]
    collection_code: np.ndarray[Any, Any]  # -1: no collection
    collection_codes: dict[str, int]
    positions_of_id: dict[str, list[int]]
    hits: pa.Table  # key, data_cid, path, item_cid, item_row
    wkb: pa.Array  # by item_row
    timed: int  #: rows with a time: they come first (t_start descending)
    longest_span: int  #: the longest t_end - t_start of a row, in microseconds
    text: bytes  #: every item's lower-case search text (UTF-8), one after the other, by item_row
    text_ends: np.ndarray[Any, Any]  #: where each item's text ends in :attr:`text` (its start: the previous end)
    words: pa.StringArray  #: the distinct words of the texts (split at whitespace), sorted
    words_text: bytes  #: the same, each followed by a newline (UTF-8)
    words_ends: np.ndarray[Any, Any]  #: where each word's newline ends in :attr:`words_text`
    postings: np.ndarray[Any, Any]  #: the item rows of each word, word after word
    posting_ends: np.ndarray[Any, Any]  #: where each word's item rows end in :attr:`postings`

    @classmethod
    def build(cls, con: duckdb.DuckDBPyConnection, wkb: pa.Array) -> SearchArrays:
        """The arrays of the ``search_rows`` of ``con``; ``wkb``: the items' WKB by item row."""
        table: pa.Table = con.sql(_COLUMNS).to_arrow_table()
        texts = con.sql("SELECT coalesce(text, '') AS text FROM items ORDER BY rowid").to_arrow_table()
        text = pc.cast(texts.column("text"), pa.large_string()).combine_chunks()
        offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[text.offset:text.offset + len(text) + 1]
        data = text.buffers()[2]
        start = int(offsets[0]) if len(offsets) else 0
        postings = con.sql(_POSTINGS).to_arrow_table()
        encoded = pc.dictionary_encode(postings.column("word")).combine_chunks()
        word_of = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        words = encoded.dictionary
        words_text = b"".join(w.encode() + b"\n" for w in words.to_pylist())
        words_ends = np.cumsum(np.asarray(pc.binary_length(pc.cast(words, pa.binary())).to_numpy(
            zero_copy_only=False), dtype=np.int64) + 1) if len(words) else np.zeros(0, dtype=np.int64)
        collections = pc.dictionary_encode(table.column("collection")).combine_chunks()
        codes = np.asarray(collections.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int32)
        positions_of_id: dict[str, list[int]] = {}
        for position, item_id in enumerate(table.column("id").to_pylist()):
            if item_id is not None:
                positions_of_id.setdefault(item_id, []).append(position)

        def ints(name: str) -> np.ndarray[Any, Any]:
            return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.int64)

        t_start, t_end = ints("t_start"), ints("t_end")
        timed = int(np.count_nonzero(t_start != _NO_START))
        spans = t_end[:timed] - t_start[:timed]
        return cls(
            from_seq=ints("from_seq"), to_seq=ints("to_seq"), t_start=t_start, t_end=t_end,
            xmin=_floats(table, "xmin"), ymin=_floats(table, "ymin"), xmax=_floats(table, "xmax"),
            ymax=_floats(table, "ymax"),
            has_geometry=np.asarray(table.column("has_geometry").to_numpy(zero_copy_only=False), dtype=bool),
            item_row=ints("item_row"), collection_code=codes,
            collection_codes={str(name): n for n, name in enumerate(collections.dictionary.to_pylist())},
            positions_of_id=positions_of_id,
            hits=table.select(["key", "data_cid", "path", "item_cid", "item_row"]), wkb=wkb,
            timed=timed, longest_span=int(spans.max()) if timed else 0,
            text=data.to_pybytes()[start:int(offsets[-1])] if data is not None and len(offsets) else b"",
            text_ends=(offsets[1:] - start).astype(np.int64),
            words=words, words_text=words_text, words_ends=words_ends,
            postings=np.asarray(postings.column("item_row").to_numpy(zero_copy_only=False), dtype=np.int64),
            posting_ends=np.searchsorted(word_of, np.arange(len(words)), side="right").astype(np.int64),
        )

    def search(self, seq: int, p: SearchParams, offset: int, *, collection: str | None = None,
               deadline: Deadline | None = None) -> tuple[list[Row], int]:
        """The page at ``offset`` of the rows of version ``seq`` that ``p`` matches, and how
        many match (``p`` must be one the arrays :func:`answer <answers>`).

        The conditions narrow an array of positions one after the other, each tested on the
        positions left: first the rows whose time can meet the interval (a binary search:
        the rows are in ``t_start`` order), or the rows of the ``ids``, or of the items the
        free text matched. Free text, the one part whose work grows with the request, stops
        at ``deadline``."""
        text = None if p.q is None else self._free_text(p.q, deadline or Deadline(float("inf")))
        if p.ids is not None:  # a few rows: test only those
            pos = np.unique(np.fromiter((n for i in p.ids for n in self.positions_of_id.get(i, ())), dtype=np.int64))
        elif p.interval is None and text is not None:  # the rows of the items the text matched
            pos, text = np.flatnonzero(text[self.item_row]), None
        else:
            pos = np.arange(*self._time_window(p.interval), dtype=np.int64)
        pos = pos[(self.from_seq[pos] <= seq) & (seq < self.to_seq[pos])]
        if p.collections is not None:
            pos = pos[self._codes(p.collections)[self.collection_code[pos]]]
        if collection is not None:
            pos = pos[self._codes([collection])[self.collection_code[pos]]]
        if p.interval is not None:
            start, end = p.interval
            if start is not None:
                pos = pos[self.t_end[pos] >= _micros(start)]
            if end is not None:
                pos = pos[self.t_start[pos] <= _micros(end)]
        if text is not None:
            pos = pos[text[self.item_row[pos]]]
        if p.bbox is not None:
            pos = pos[self._intersects(spatial.IntersectsQuery.of_bbox(p.bbox), pos)]
        if p.intersects is not None:
            pos = pos[self._intersects(spatial.IntersectsQuery.of_geometry(p.intersects), pos)]
        page = pos[offset:offset + p.limit]
        rows = self.hits.take(pa.array(page, type=pa.int64())).to_pylist() if len(page) else []
        return [(r["key"], r["data_cid"], r["path"], r["item_cid"], r["item_row"]) for r in rows], len(pos)

    def _time_window(self, interval: tuple[datetime | None, datetime | None] | None) -> tuple[int, int]:
        """The range of positions whose time can meet ``interval``: ``t_start`` descends
        (rows without a time come last, and meet no interval), and no row's span is longer
        than :attr:`longest_span`."""
        if interval is None:
            return 0, len(self.t_start)
        start, end = interval
        lo, hi = 0, self.timed
        descending = self.t_start[:hi]
        if end is not None:  # t_start <= end: from the first such row on
            lo = len(descending) - int(np.searchsorted(descending[::-1], _micros(end), side="right"))
        if start is not None:  # t_end >= start needs t_start >= start - longest span
            hi = len(descending) - int(np.searchsorted(descending[::-1], _micros(start) - self.longest_span, side="left"))
        return lo, max(lo, hi)

    def _free_text(self, alternatives: list[list[str]], deadline: Deadline) -> np.ndarray[Any, Any]:
        """Which items' text holds every word of some alternative (as SQL's ``contains``)."""
        found = np.zeros(len(self.text_ends), dtype=bool)
        for words in alternatives:
            every = np.ones(len(self.text_ends), dtype=bool)
            for word in words:
                every &= self._containing(word, deadline)
            found |= every
        return found

    def _containing(self, word: str, deadline: Deadline) -> np.ndarray[Any, Any]:
        """Which items' text contains ``word`` (as SQL's ``contains``).

        A word without whitespace lies within one word of a text: the items are those of
        the words (:attr:`words`) containing it. A phrase lies in the items holding each of
        its parts, and is looked for in their texts."""
        parts = [part for part in _SPLIT.split(word) if part]
        found = np.ones(len(self.text_ends), dtype=bool)
        for part in parts:
            found &= self._items_of_words_containing(part, deadline)
        if parts != [word]:  # whitespace: the whole phrase, in the texts of the candidates
            needle = word.encode()
            for n, item in enumerate(np.flatnonzero(found)):
                if n % 1024 == 0:
                    deadline.check()
                end = int(self.text_ends[item])
                found[item] = self.text.find(needle, int(self.text_ends[item - 1]) if item else 0, end) >= 0
        return found

    def _items_of_words_containing(self, part: str, deadline: Deadline) -> np.ndarray[Any, Any]:
        deadline.check()
        needle = part.encode()
        if len(needle) <= 2:  # found in many words: one vectorized pass over all of them
            ids = np.flatnonzero(np.asarray(pc.match_substring(self.words, part).to_numpy(zero_copy_only=False)))
        else:  # in a few: jump from one to the next
            matched, at = [], 0
            while (at := self.words_text.find(needle, at)) >= 0:
                hit = int(np.searchsorted(self.words_ends, at, side="right"))
                matched.append(hit)
                at = int(self.words_ends[hit])
                if len(matched) % 1024 == 0:
                    deadline.check()
            ids = np.asarray(matched, dtype=np.int64)
        found = np.zeros(len(self.text_ends), dtype=bool)
        for word in ids:
            found[self.postings[int(self.posting_ends[word - 1]) if word else 0:int(self.posting_ends[word])]] = True
        return found

    def _codes(self, names: list[str]) -> np.ndarray[Any, Any]:
        """A lookup of collection codes: true for the codes of ``names`` (index -1, no
        collection, is the last entry: false)."""
        table = np.zeros(len(self.collection_codes) + 1, dtype=bool)
        table[[self.collection_codes[n] for n in names if n in self.collection_codes]] = True
        return table

    def _intersects(self, query: spatial.IntersectsQuery, pos: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Which of the rows at ``pos`` have a geometry that intersects the query: the bbox
        overlap, then (for the rows whose bbox straddles the query) the exact test, as the
        SQL does."""
        xmin, ymin, xmax, ymax = self.xmin[pos], self.ymin[pos], self.xmax[pos], self.ymax[pos]
        crossing = xmin > xmax  # an item bbox across the antimeridian
        overlap = np.zeros(len(pos), dtype=bool)
        inside = np.zeros(len(pos), dtype=bool)
        for west, south, east, north in query.boxes:
            overlap |= (ymin <= north) & (ymax >= south) & (
                ((xmin <= east) & (xmax >= west)) | (crossing & ((xmin <= east) | (xmax >= west))))
            if query.inside_is_true:
                inside |= (xmin >= west) & (xmax <= east) & (ymin >= south) & (ymax <= north) & ~crossing
        found: np.ndarray[Any, Any] = overlap & self.has_geometry[pos]
        straddling = np.flatnonzero(found & ~inside)
        if len(straddling):
            rows = self.item_row[pos[straddling]]
            wkb = self.wkb.take(pa.array(rows, type=pa.int64())).to_numpy(zero_copy_only=False)
            found[straddling] = spatial.intersects_exactly(wkb, query.geometry)
        return found


def _micros(value: datetime) -> int:
    """Microseconds since 1970 of an aware datetime (as DuckDB's ``epoch_us``)."""
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
