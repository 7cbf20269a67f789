"""A prolly tree: a deterministic, history-independent search tree of DAG-CBOR nodes.

Shape. Entries ``(key, value)`` are sorted by key (UTF-8 byte order = code point order).
Level 0 (leaves) holds the entries; level ``L+1`` holds one entry ``(first key, link)`` per
node of level ``L``. A node ends after an entry whose key is a *boundary* at that level:
``sha256(bytes([level]) + key.encode())``, read as a big-endian uint32 from its first four
bytes, is below ``2**32 // fanout(level)``. Boundaries depend only on keys, so the same set
of entries always gives the same nodes and the same root CID, whatever the order of the
inserts (history independence), and changing a value never moves a boundary. The root is
the first level that has a single node; the empty tree is a leaf with no entries.

Checks. Trees come from outside, so every walk checks each node against the node that
links it (:func:`check_child`): its level is one less (and within ``0..MAX_LEVEL``), its
first key is the key it is linked by, and its last key is below where the next subtree
begins. Such a tree links no node twice, so a walk costs at most what the tree's distinct
blocks hold: seven blocks cannot pose as 40^6 leaves (a "DAG bomb"), and a wrong node is a
:class:`~halodb.errors.TreeShapeError` naming it, its parent and the rule it breaks.

Updates. :meth:`ProllyTree.mutate` rewrites, level by level, only the nodes a change falls
in (plus a right neighbour when a boundary key was removed), so ``k`` changes write
``O(k log n)`` new nodes. :meth:`ProllyTree.diff` walks both trees together in key order
and skips every pair of subtrees whose CIDs are equal.

>>> from halodb.blockstore import MemoryStore
>>> tree = ProllyTree(MemoryStore())
>>> a = tree.build([("a", 1), ("b", 2)])
>>> b = tree.mutate(a, {"b": 3, "c": 4})
>>> [(c.key, c.old, c.new) for c in tree.diff(a, b)]
[('b', 2, 3), ('c', None, 4)]
>>> tree.mutate(tree.build([]), {"c": 4, "b": 3, "a": 1}) == tree.build([("a", 1), ("b", 3), ("c", 4)])
True
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from typing import Any

from halodb.blockstore.base import BlockStore
from halodb.errors import TreeShapeError
from halodb.index.model import Change
from halodb.ipld import CID, DAG_CBOR, decode, encode
from halodb.ipld.codec import cbor_head, encode_shallow
from halodb.ipld.limits import BLOCK_SIZE_NORM
from halodb.util.native import native

#: sentinel value in a change set: delete this key
DELETE: Any = object()

#: The highest level a node may have (leaves are level 0). A tree of 10^9 entries has about
#: 6 levels; the chunking rule hashes the level as one byte, so no level may exceed 255.
MAX_LEVEL = 32

#: The largest tree node read or written: the block size every IPFS peer stores (1 MiB). A
#: format-3 leaf holds its items, so this is what bounds it; older nodes stay near 4 KiB.
MAX_NODE_SIZE = BLOCK_SIZE_NORM

#: What a walk remembers of a node it has checked: (level, first key, last key); the keys are
#: None for the empty tree.
NodeSpan = tuple[int, str | None, str | None]


@dataclass(frozen=True, slots=True)
class Encoded:
    """A run of entries for :meth:`ProllyTree.build_sorted` and :meth:`~ProllyTree.leaves_sorted`
    whose values are encoded already: ``keys`` in strictly increasing order, ``values`` the
    DAG-CBOR of each one's value (:func:`~halodb.ipld.codec.encode_shallow`). How a build of
    many entries hands them over a batch at a time, without a Python object per value.

    >>> Encoded(["a", "b"], [b"\\x01", b"\\x02"]).keys
    ['a', 'b']
    """

    keys: list[str]
    values: list[bytes]


@dataclass(frozen=True, slots=True)
class TreeParams:
    """Expected entries per node: leaves, and internal (branch) nodes.

    With ``leaf_bytes`` (index format 3) a leaf ends by size instead: an entry of ``s``
    bytes (its key's UTF-8 plus its value's DAG-CBOR) is a boundary when the hash of its
    key is below ``2**32 * s // leaf_bytes``, so a leaf holds about ``leaf_bytes`` whatever
    its entries weigh, and one of 16 times that is as likely as ``e**-16``. The rule still
    reads one entry only, so the same entries give the same tree; but changing a value may
    move a boundary (``mutate`` re-cuts the leaves it touches, as for a removed key).

    >>> TreeParams(leaf_bytes=65536).leaf_threshold(1024) == (1 << 32) // 64
    True
    """

    leaf_fanout: int = 20
    branch_fanout: int = 40
    leaf_bytes: int | None = None

    def threshold(self, level: int) -> int:
        return (1 << 32) // (self.leaf_fanout if level == 0 else self.branch_fanout)

    def leaf_threshold(self, size: int) -> int:
        """The level-0 threshold of an entry of ``size`` bytes (``leaf_bytes`` set)."""
        assert self.leaf_bytes is not None
        return min((1 << 32) * size // self.leaf_bytes, 1 << 32)


def entry_size(key: str, value: Any) -> int:
    """What an entry weighs for the size rule: its key's UTF-8 plus its value's DAG-CBOR."""
    return len(key.encode()) + len(encode(value))


@dataclass(frozen=True, slots=True)
class Node:
    """One tree node: ``values`` are entries' values in a leaf, child links otherwise."""

    level: int
    keys: list[str]
    values: list[Any]

    def to_ipld(self) -> dict[str, Any]:
        return {"level": self.level, "keys": self.keys, "values": self.values}

    @classmethod
    def from_ipld(cls, value: Any, cid: CID, parent: CID | None = None) -> Node:
        """The node ``cid`` decoded as ``value``; :class:`TreeShapeError` unless it has the shape
        of a node (``parent``, the node linking it, is named in the error)."""
        if not isinstance(value, dict):
            raise shape_error(cid, parent, "map", "is not a map")
        level, keys, values = value.get("level"), value.get("keys"), value.get("values")
        if type(level) is not int or not isinstance(keys, list) or not isinstance(values, list):
            raise shape_error(cid, parent, "shape", "is not {level: Int, keys: [String], values: [Any]}")
        if not 0 <= level <= MAX_LEVEL:
            raise shape_error(cid, parent, "level", f"has level {level}; levels run from 0 (leaves) to {MAX_LEVEL}")
        if len(keys) != len(values):
            raise shape_error(cid, parent, "shape", f"has {len(keys)} keys but {len(values)} values")
        if not all(type(k) is str for k in keys):
            raise shape_error(cid, parent, "shape", "has a key that is not a string")
        if any(keys[i] >= keys[i + 1] for i in range(len(keys) - 1)):
            raise shape_error(cid, parent, "order", "has keys that are not strictly increasing")
        if level > 0 and (not keys or not all(isinstance(v, CID) for v in values)):
            raise shape_error(cid, parent, "shape", f"is an internal node (level {level}) but does not hold links only")
        return cls(level, keys, values)

    def span(self) -> NodeSpan:
        """What a walk needs to check this node again without it: level, first and last key."""
        return (self.level, self.keys[0], self.keys[-1]) if self.keys else (self.level, None, None)


@dataclass(frozen=True, slots=True)
class LeafColumns:
    """A leaf read straight into columns by the compiled module (:meth:`ProllyTree.leaves`
    with ``fields``): its keys and, for each field, every entry's value there (bytes, str,
    or None where the entry's map has no such field or null). ``cid``: the leaf's block.

    >>> LeafColumns(CID.for_bytes(b"x"), ["a"], ([b"\\xa0"],)).span()
    (0, 'a', 'a')
    """

    cid: CID
    keys: list[str]
    columns: tuple[list[Any], ...]
    level: int = 0

    def span(self) -> NodeSpan:
        return (0, self.keys[0], self.keys[-1]) if self.keys else (0, None, None)


def shape_error(cid: CID, parent: CID | None, rule: str, problem: str) -> TreeShapeError:
    """``tree node <cid> (linked from node <parent>) <problem>`` as a :class:`TreeShapeError`."""
    linked = f" (linked from node {parent})" if parent is not None else ""
    return TreeShapeError(f"tree node {cid}{linked} {problem}", cid=cid, parent=parent, rule=rule)


def check_child(parent_cid: CID, parent: Node, i: int, cid: CID, span: NodeSpan, hi: str | None) -> None:
    """Check the node ``cid`` (its :meth:`Node.span`) as the ``i``-th child of ``parent``, whose
    subtree ends before ``hi`` (None: at the end of the tree).

    >>> from halodb.ipld import CID
    >>> p, c = CID.for_bytes(b"p"), CID.for_bytes(b"c")
    >>> check_child(p, Node(1, ["a", "m"], [c, c]), 0, c, (0, "a", "k"), None)
    >>> check_child(p, Node(1, ["a", "m"], [c, c]), 1, c, (0, "a", "k"), None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    halodb.errors.TreeShapeError: tree node ... begins at key 'a', not at 'm', the key its parent links it by
    """
    end = parent.keys[i + 1] if i + 1 < len(parent.keys) else hi
    _check_span(cid, span, parent_cid, parent.level - 1, parent.keys[i], end)


def _check_span(cid: CID, span: NodeSpan, parent_cid: CID, level: int, separator: str, end: str | None) -> None:
    """Check a child of ``parent_cid``: it must have ``level``, begin at ``separator`` and end before ``end``."""
    have, first, last = span
    if have != level:
        raise shape_error(cid, parent_cid, "level", f"has level {have}; its parent has level {level + 1}, "
                          f"so it must have level {level}")
    if first is None or last is None:
        raise shape_error(cid, parent_cid, "shape", "is empty; only a tree's root may be")
    if first != separator:
        raise shape_error(cid, parent_cid, "separator", f"begins at key {first!r}, not at {separator!r}, "
                          "the key its parent links it by")
    if end is not None and last >= end:
        raise shape_error(cid, parent_cid, "range", f"holds key {last!r}, which is not below {end!r}, "
                          "where the next subtree begins")


class NodeCache:
    """A bounded LRU of decoded nodes, shared by trees over one store: at most ``capacity``
    nodes whose blocks take at most ``max_bytes`` (format-3 leaves hold their items).

    >>> cache = NodeCache(capacity=10, max_bytes=100)
    >>> for i in range(3):
    ...     cache.put(CID.for_bytes(bytes([i])), Node(0, [], []), size=40)
    >>> cache.get(CID.for_bytes(b"\\x00")) is None, len(cache), cache.bytes
    (True, 2, 80)
    """

    def __init__(self, capacity: int = 50_000, max_bytes: int = 256 << 20) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0
        self._nodes: OrderedDict[CID, tuple[Node, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._nodes)

    def clear(self) -> None:
        """Forget every node (the next read of each verifies its block again)."""
        self._nodes.clear()
        self.bytes = 0

    def get(self, cid: CID) -> Node | None:
        held = self._nodes.get(cid)
        if held is None:
            return None
        self._nodes.move_to_end(cid)
        return held[0]

    def put(self, cid: CID, node: Node, size: int = 0) -> None:
        held = self._nodes.pop(cid, None)
        if held is not None:
            self.bytes -= held[1]
        self._nodes[cid] = (node, size)
        self.bytes += size
        while len(self._nodes) > self.capacity or (self.bytes > self.max_bytes and len(self._nodes) > 1):
            self.bytes -= self._nodes.popitem(last=False)[1][1]


class ProllyTree:
    """Operations on prolly trees stored in ``store``; trees are named by their root CID."""

    def __init__(self, store: BlockStore, params: TreeParams | None = None, cache: NodeCache | None = None) -> None:
        self.store = store
        self.params = params or TreeParams()
        self.cache = cache if cache is not None else NodeCache()
        self._pending: dict[CID, tuple[Node, bytes]] = {}
        self._boundary_memo: dict[tuple[int, str], bool] = {}

    # -- nodes ------------------------------------------------------------------------------
    def load(self, cid: CID, parent: CID | None = None, *, keep: bool = True) -> Node:
        """The decoded node ``cid`` (verified, cached); ``parent`` is named if it is malformed.
        ``keep=False``: a node read from the store is not put into the cache (a walk that
        reads each node once)."""
        node = self.cache.get(cid)
        if node is not None:
            return node
        pending = self._pending.get(cid)
        if pending is not None:
            return pending[0]
        data = self._read(cid, parent)
        node = Node.from_ipld(decode(data, cid=cid), cid, parent)
        if keep:
            self.cache.put(cid, node, len(data))
        return node

    def _read(self, cid: CID, parent: CID | None) -> bytes:
        """The block of node ``cid`` (verified), refused when larger than a node may be."""
        data = self.store.get(cid)
        if len(data) > MAX_NODE_SIZE:
            raise shape_error(cid, parent, "size", f"is {len(data)} bytes; a tree node may take at most {MAX_NODE_SIZE}")
        return data

    def _load_leaf(self, cid: CID, parent: CID, fields: list[str], module: Any) -> Node | LeafColumns:
        """The leaf ``cid`` as :class:`LeafColumns` of ``fields`` when the compiled ``module``
        takes it (see :meth:`leaves`), else as :meth:`load` with ``keep=False`` gives it."""
        if self.cache.get(cid) is not None or cid in self._pending:
            return self.load(cid, parent, keep=False)
        data = self._read(cid, parent)
        made = module.leaf_columns(data, fields)
        if made is None:
            return Node.from_ipld(decode(data, cid=cid), cid, parent)
        keys, columns = made
        return LeafColumns(cid, keys, columns)

    def child(self, parent_cid: CID, parent: Node, i: int, hi: str | None) -> tuple[CID, Node]:
        """The ``i``-th child of ``parent`` (whose subtree ends before ``hi``), checked against it."""
        cid = parent.values[i]
        node = self.load(cid, parent_cid)
        keys, pkeys = node.keys, parent.keys
        end = pkeys[i + 1] if i + 1 < len(pkeys) else hi
        if node.level != parent.level - 1 or not keys or keys[0] != pkeys[i] or (end is not None and keys[-1] >= end):
            _check_span(cid, node.span(), parent_cid, parent.level - 1, pkeys[i], end)
        return cid, node

    def _emit(self, keys: list[str], values: list[Any], level: int) -> tuple[str, CID]:
        node = Node(level, keys, values)
        data = encode(node.to_ipld())
        cid = CID.for_bytes(data, DAG_CBOR)
        if len(data) > MAX_NODE_SIZE:
            raise shape_error(cid, None, "size", f"would be {len(data)} bytes ({len(keys)} entries from key "
                              f"{keys[0][:80]!r}); a tree node may take at most {MAX_NODE_SIZE}")
        self._pending[cid] = (node, data)
        return keys[0], cid

    def _flush(self) -> None:
        if self._pending:
            blocks = [(cid, data) for cid, (_, data) in self._pending.items()]
            self.store.put_many(blocks, verify=False)
            for cid, (node, data) in self._pending.items():
                self.cache.put(cid, node, len(data))
            self._pending.clear()

    def _is_boundary(self, key: str, level: int, value: Any = None) -> bool:
        """Whether an entry ends its node (the chunking rule; ``value`` counts only for the
        leaves of a tree with ``leaf_bytes``)."""
        if level == 0 and self.params.leaf_bytes is not None:
            h = hashlib.sha256(b"\x00" + key.encode()).digest()
            return int.from_bytes(h[:4], "big") < self.params.leaf_threshold(entry_size(key, value))
        memo = self._boundary_memo.get((level, key))
        if memo is None:
            h = hashlib.sha256(bytes((level,)) + key.encode()).digest()
            memo = int.from_bytes(h[:4], "big") < self.params.threshold(level)
            if len(self._boundary_memo) > 1_000_000:
                self._boundary_memo.clear()
            self._boundary_memo[(level, key)] = memo
        return memo

    def _chunk(self, keys: list[str], values: list[Any], level: int) -> tuple[list[tuple[str, CID]], list[str], list[Any]]:
        """Emit every complete node of a run; return them and the tail without a boundary."""
        out: list[tuple[str, CID]] = []
        start = 0
        for i, k in enumerate(keys):
            if self._is_boundary(k, level, values[i]):
                out.append(self._emit(keys[start:i + 1], values[start:i + 1], level))
                start = i + 1
        return out, keys[start:], values[start:]

    # -- building -----------------------------------------------------------------------------
    def empty(self) -> CID:
        """The root of the empty tree (written to the store)."""
        cid = self._emit_empty()
        self._flush()
        return cid

    def _emit_empty(self) -> CID:
        node = Node(0, [], [])
        data = encode(node.to_ipld())
        cid = CID.for_bytes(data, DAG_CBOR)
        self._pending[cid] = (node, data)
        return cid

    def build(self, entries: Iterable[tuple[str, Any]]) -> CID:
        """Build a tree from entries (any order; a later duplicate key wins)."""
        merged = dict(entries)
        keys = sorted(merged)
        try:
            root = self._build_levels(keys, [merged[k] for k in keys], 0)
            self._flush()
        finally:
            self._pending.clear()
        return root

    def build_sorted(self, entries: Iterable[tuple[str, Any] | Encoded], *, batch_bytes: int = 8 << 20,
                     tail: tuple[str, Callable[[], list[tuple[str, CID]] | None]] | None = None) -> CID:
        """Build a tree from entries in strictly increasing key order (else ``ValueError``),
        each ``(key, value)`` or a run of them :class:`Encoded` already, as :meth:`build`
        does (the same entries give the same tree), but streaming: it holds
        one unfinished node per level, and writes the finished ones to the store about
        ``batch_bytes`` at a time (not into the node cache), so a tree of any size is built in
        bounded memory. The writes run in a thread, one batch at a time, while the next batch
        is built (SQLite writes without holding the GIL); every one has ended when this
        returns or raises. Nodes written before an error are left in the store, linked from
        nowhere (``gc`` deletes them).

        ``tail``: ``(split, leaves)``, where ``leaves()`` gives the leaves of the entries from
        key ``split`` on but the first (:meth:`leaves_sorted`, built elsewhere meanwhile; None
        or none: there are none). It is called when ``entries`` reach ``split``; once the leaf
        that holds ``split`` is finished, its leaves take the place of the rest of ``entries``.

        >>> from halodb.blockstore import MemoryStore
        >>> tree = ProllyTree(MemoryStore())
        >>> entries = [(f"{n:04d}", n) for n in range(3000)]
        >>> tree.build_sorted(iter(entries), batch_bytes=1000) == tree.build(entries)
        True
        >>> rest = lambda: tree.leaves_sorted(iter(entries[1500:]))
        >>> tree.build_sorted(iter(entries), tail=("1500", rest)) == tree.build(entries)
        True
        """
        builder = _SortedBuilder(self, batch_bytes)
        last: str | None = None
        split, leaves = tail if tail is not None else (None, None)
        adopted: list[tuple[str, CID]] | None = None
        try:
            for entry in entries:
                if isinstance(entry, Encoded):
                    keys, values = entry.keys, entry.values
                    if not keys:
                        continue
                    if split is not None and keys[-1] >= split and adopted != []:
                        # up to ``split`` as one run; then to the leaf that holds it, if the tail was built
                        at = bisect_left(keys, split)
                        last = builder.push_run(keys[:at], values[:at], last, "build_sorted")
                        if adopted is None:
                            assert leaves is not None
                            adopted = leaves() or []
                        if adopted:
                            at += builder.push_to_boundary(keys[at:], values[at:], last, "build_sorted")
                            last = keys[at - 1]
                            if not builder.begun(0):  # the leaf that holds ``split`` is finished
                                builder.adopt(adopted)
                                break
                        keys, values = keys[at:], values[at:]
                    last = builder.push_run(keys, values, last, "build_sorted")
                    continue
                key, value = entry
                if last is not None and key <= last:
                    raise ValueError(f"build_sorted: key {key!r} is not above the key before it, {last!r}")
                last = key
                builder.push(0, key, value)
                if split is not None and key >= split:
                    if adopted is None:
                        assert leaves is not None
                        adopted = leaves() or []
                    if adopted and not builder.begun(0):  # the leaf that holds ``split`` is finished
                        builder.adopt(adopted)
                        break
            root = builder.finish()
            builder.write()
            builder.drain()
        finally:
            builder.close()
            self._pending.clear()
        return root

    def leaves_sorted(self, entries: Iterable[tuple[str, Any] | Encoded], *, batch_bytes: int = 8 << 20
                      ) -> list[tuple[str, CID]]:
        """The leaves (first key, CID) of a tree's entries from some key on, given in key order:
        all but the first, which begins at the first key given and so is not a leaf of the
        whole tree unless a leaf ends just before it (the one before finishes it:
        :meth:`build_sorted` ``tail``). They are written to the store as :meth:`build_sorted`
        writes, but for the first. Cutting leaves reads only their own entries, so these are
        the whole tree's leaves after the first boundary."""
        builder = _SortedBuilder(self, batch_bytes, leaves=[])
        last: str | None = None
        try:
            for entry in entries:
                if isinstance(entry, Encoded):
                    last = builder.push_run(entry.keys, entry.values, last, "leaves_sorted")
                    continue
                key, value = entry
                if last is not None and key <= last:
                    raise ValueError(f"leaves_sorted: key {key!r} is not above the key before it, {last!r}")
                last = key
                builder.push(0, key, value)
            if builder.begun(0):
                builder._finish_node(0)
            builder.write()
            builder.drain()
        finally:
            builder.close()
            self._pending.clear()
        assert builder.leaves is not None
        return builder.leaves[1:]

    def _build_levels(self, keys: list[str], values: list[Any], level: int) -> CID:
        if not keys:
            return self._emit_empty()
        while True:
            nodes, tail_k, tail_v = self._chunk(keys, values, level)
            if tail_k:
                nodes.append(self._emit(tail_k, tail_v, level))
            if len(nodes) == 1:
                return nodes[0][1]
            keys = [k for k, _ in nodes]
            values = [c for _, c in nodes]
            level += 1

    # -- reading ------------------------------------------------------------------------------
    def get(self, root: CID, key: str) -> Any | None:
        """The value at ``key``, or None."""
        leaf = self._leaf_for(root, key)
        if leaf is None:
            return None
        i = bisect_right(leaf.keys, key) - 1
        return leaf.values[i] if i >= 0 and leaf.keys[i] == key else None

    def floor(self, root: CID, key: str) -> tuple[str, Any] | None:
        """The entry with the greatest key ``<= key``, or None.

        >>> from halodb.blockstore import MemoryStore
        >>> tree = ProllyTree(MemoryStore())
        >>> root = tree.build((f"{n:03d}", n) for n in range(0, 500, 10))
        >>> tree.floor(root, "125"), tree.floor(root, "130"), tree.floor(root, "0")
        (('120', 120), ('130', 130), None)
        """
        leaf = self._leaf_for(root, key)
        if leaf is None:
            return None
        i = bisect_right(leaf.keys, key) - 1
        return (leaf.keys[i], leaf.values[i]) if i >= 0 else None

    def _leaf_for(self, root: CID, key: str) -> Node | None:
        """The leaf that holds ``key`` or, failing that, the greatest key below it (None: every
        key is above ``key``): one node per level, each checked against its parent. An
        internal node's keys are its children's first keys, so that is the child before the
        first key past ``key``."""
        cid, node, hi = root, self.load(root), None
        while node.level > 0:
            keys = node.keys
            i = bisect_right(keys, key) - 1
            if i < 0:
                return None
            if i + 1 < len(keys):
                hi = keys[i + 1]
            child_cid = node.values[i]
            child = self.load(child_cid, cid)
            ck = child.keys
            if child.level != node.level - 1 or not ck or ck[0] != keys[i] or (hi is not None and ck[-1] >= hi):
                _check_span(child_cid, child.span(), cid, node.level - 1, keys[i], hi)  # raises, naming the rule
            cid, node = child_cid, child
        return node

    def items(self, root: CID, start: str | None = None, stop: str | None = None, *, keep: bool = True
              ) -> Iterator[tuple[str, Any]]:
        """Entries with ``start <= key < stop`` in key order. ``keep=False``: the leaves read
        are not kept in the node cache (a walk of a whole tree reads each once)."""
        yield from self._items(root, self.load(root), None, start, stop, keep)

    def _items(self, cid: CID, node: Node, hi: str | None, start: str | None, stop: str | None, keep: bool = True
               ) -> Iterator[tuple[str, Any]]:
        keys = node.keys
        if node.level == 0:
            for k, v in zip(keys, node.values):
                if (start is None or k >= start) and (stop is None or k < stop):
                    yield k, v
            return
        first = 0 if start is None else max(bisect_right(keys, start) - 1, 0)
        level, n, links = node.level - 1, len(keys), node.values
        for i in range(first, n):
            key = keys[i]
            if stop is not None and key >= stop:
                break
            end = keys[i + 1] if i + 1 < n else hi
            child_cid = links[i]
            child = self.load(child_cid, cid, keep=keep or level > 0)
            ck = child.keys
            if child.level != level or not ck or ck[0] != key or (end is not None and ck[-1] >= end):
                _check_span(child_cid, child.span(), cid, level, key, end)  # raises, naming the rule
            yield from self._items(child_cid, child, end, start, stop, keep)

    def leaves(self, root: CID, *, keep: bool = True, fields: list[str] | None = None) -> Iterator[Node | LeafColumns]:
        """The leaves of the whole tree in key order (the root, when it is one, even empty),
        each checked against its parent as :meth:`items` checks it: for a caller that takes
        a leaf's entries in bulk. ``keep=False``: leaves stay out of the node cache.

        ``fields`` (with ``keep=False``): a leaf whose entries are maps of only these fields,
        each bytes, text or null, may come as :class:`LeafColumns` instead of a
        :class:`Node` — read by the compiled module, when it is installed, without decoding
        the entries into Python maps (any other leaf comes as a :class:`Node`)."""
        module = native() if fields is not None and not keep else None
        read_leaf: Callable[[CID, CID], Node | LeafColumns] | None = None
        if fields is not None and module is not None and hasattr(module, "leaf_columns"):  # (not: an older build)
            read_leaf = partial(self._load_leaf, fields=fields, module=module)
        yield from self._leaves(root, self.load(root), None, keep, read_leaf)

    def _leaves(self, cid: CID, node: Node, hi: str | None, keep: bool,
                read_leaf: Callable[[CID, CID], Node | LeafColumns] | None = None) -> Iterator[Node | LeafColumns]:
        if node.level == 0:
            yield node
            return
        keys, level, n, links = node.keys, node.level - 1, len(node.keys), node.values
        for i in range(n):
            key = keys[i]
            end = keys[i + 1] if i + 1 < n else hi
            child_cid = links[i]
            child: Node | LeafColumns = (read_leaf(child_cid, cid) if read_leaf is not None and level == 0
                                         else self.load(child_cid, cid, keep=keep or level > 0))
            ck = child.keys
            if child.level != level or not ck or ck[0] != key or (end is not None and ck[-1] >= end):
                _check_span(child_cid, child.span(), cid, level, key, end)  # raises, naming the rule
            if type(child) is LeafColumns:
                yield child
            else:
                assert type(child) is Node
                yield from self._leaves(child_cid, child, end, keep, read_leaf)

    def count(self, root: CID) -> int:
        return sum(1 for _ in self.items(root))

    def height(self, root: CID) -> int:
        return self.load(root).level

    def node_cids(self, root: CID) -> Iterator[CID]:
        """Every node CID of the tree (pre-order), each checked against its parent."""
        for cid, _ in self.walk_nodes(root):
            yield cid

    def walk_nodes(self, root: CID, seen: MutableMapping[CID, NodeSpan] | None = None) -> Iterator[tuple[CID, Node]]:
        """Every node of the tree with its CID (pre-order), each checked against its parent.

        ``seen`` (CID -> :meth:`Node.span`) is shared by walks over several versions of a tree:
        a node in it is checked against its parent but not walked again (nor yielded), and
        each node walked is added to it, so a history costs its distinct nodes, once.
        """
        spans: MutableMapping[CID, NodeSpan] = {} if seen is None else seen
        if root in spans:
            return
        node = self.load(root)
        spans[root] = node.span()
        yield root, node
        # (parent cid, parent, index of the child, where the parent's subtree ends)
        stack: list[tuple[CID, Node, int, str | None]] = []
        if node.level > 0:
            stack.extend((root, node, i, None) for i in reversed(range(len(node.keys))))
        while stack:
            parent_cid, parent, i, hi = stack.pop()
            cid = parent.values[i]
            span = spans.get(cid)
            if span is not None:
                check_child(parent_cid, parent, i, cid, span, hi)
                continue
            node = self.load(cid, parent_cid)
            span = node.span()
            check_child(parent_cid, parent, i, cid, span, hi)
            spans[cid] = span
            yield cid, node
            if node.level > 0:
                end = parent.keys[i + 1] if i + 1 < len(parent.keys) else hi
                stack.extend((cid, node, j, end) for j in reversed(range(len(node.keys))))

    # -- mutation --------------------------------------------------------------------------
    def mutate(self, root: CID, changes: Mapping[str, Any]) -> CID:
        """Apply ``{key: value or DELETE}`` and return the new root; writes only new nodes."""
        if not changes:
            return root
        try:
            new_root = self._mutate(root, changes)
            self._flush()
        finally:
            self._pending.clear()
        return new_root

    def _mutate(self, root_cid: CID, changes: Mapping[str, Any]) -> CID:
        root = self.load(root_cid)
        if not root.keys:
            keys = sorted(k for k, v in changes.items() if v is not DELETE)
            return self._build_levels(keys, [changes[k] for k in keys], 0)
        height = root.level
        level_changes = sorted(changes.items(), key=lambda kv: kv[0])
        top: list[tuple[str, CID]] = []
        for level in range(height + 1):
            removed, created = self._rewrite_level(root_cid, root, level, level_changes)
            if level == height:
                top = created
                break
            upper: dict[str, Any] = dict.fromkeys(removed, DELETE)
            upper.update(created)
            level_changes = sorted(upper.items(), key=lambda kv: kv[0])
        if not top:
            return self._emit_empty()
        level = height
        while len(top) > 1:
            nodes, tail_k, tail_v = self._chunk([k for k, _ in top], [c for _, c in top], level + 1)
            if tail_k:
                nodes.append(self._emit(tail_k, tail_v, level + 1))
            top = nodes
            level += 1
        new_root = top[0][1]
        while True:  # a root with one child is not a root: the child is
            node = self.load(new_root)
            if node.level == 0 or len(node.keys) > 1:
                return new_root
            new_root = node.values[0]

    def _descend(self, root_cid: CID, root: Node, key: str, level: int) -> tuple[list[list[Any]], Node]:
        path: list[list[Any]] = []  # [node, index, cid] from the root down to level+1
        cid, node = root_cid, root
        while node.level > level:
            i = max(bisect_right(node.keys, key) - 1, 0)
            path.append([node, i, cid])
            cid, node = self.child(cid, node, i, self._upper_bound(path))
        return path, node

    @staticmethod
    def _upper_bound(path: list[list[Any]]) -> str | None:
        """First key of the node after the current one at this level (None: it is the last)."""
        for node, i, _ in reversed(path):
            if i + 1 < len(node.keys):
                return str(node.keys[i + 1])
        return None

    def _advance(self, path: list[list[Any]], level: int) -> Node | None:
        """Move ``path`` to the next node at ``level`` and return it (None at the end)."""
        depth = len(path) - 1
        while depth >= 0:
            node, i, cid = path[depth]
            if i + 1 < len(node.keys):
                path[depth][1] = i + 1
                del path[depth + 1:]
                cid, child = self.child(cid, node, i + 1, self._upper_bound(path))
                while child.level > level:
                    path.append([child, 0, cid])
                    cid, child = self.child(cid, child, 0, self._upper_bound(path))
                return child
            depth -= 1
        return None

    def _rewrite_level(
        self, root_cid: CID, root: Node, level: int, changes: list[tuple[str, Any]]
    ) -> tuple[list[str], list[tuple[str, CID]]]:
        removed: list[str] = []
        created: list[tuple[str, CID]] = []
        ci = 0
        n = len(changes)
        while ci < n:
            path, node = self._descend(root_cid, root, changes[ci][0], level)
            removed.append(node.keys[0])
            upper = self._upper_bound(path)
            cj = ci
            while cj < n and (upper is None or changes[cj][0] < upper):
                cj += 1
            keys, values = _merge(node.keys, node.values, changes[ci:cj])
            ci = cj
            while True:
                nodes, tail_k, tail_v = self._chunk(keys, values, level)
                created.extend(nodes)
                if not tail_k:
                    break
                nxt = self._advance(path, level)
                if nxt is None:
                    created.append(self._emit(tail_k, tail_v, level))
                    break
                removed.append(nxt.keys[0])
                upper = self._upper_bound(path)
                cj = ci
                while cj < n and (upper is None or changes[cj][0] < upper):
                    cj += 1
                keys, values = _merge(tail_k + nxt.keys, tail_v + nxt.values, changes[ci:cj])
                ci = cj
        return removed, created

    # -- diff ---------------------------------------------------------------------------------
    def diff(self, old: CID | None, new: CID | None, *, old_count: int | None = None,
             new_count: int | None = None, start: str | None = None, stop: str | None = None) -> Iterator[Change]:
        """Changes from ``old`` to ``new`` in key order; equal subtrees are never read.

        Every node read is checked against its parent; ``old_count``/``new_count``, when given,
        are the entries each tree declares to hold: reading more of either is a
        :class:`TreeShapeError` (``rule="count"``). With ``start``/``stop`` only the keys
        ``start <= key < stop`` are compared, and subtrees wholly outside are never read.

        >>> from halodb.blockstore import MemoryStore
        >>> tree = ProllyTree(MemoryStore())
        >>> a = tree.build((f"{n:03d}", n) for n in range(500))
        >>> b = tree.mutate(a, {"010": -1, "250": -1, "251": -1})
        >>> [c.key for c in tree.diff(a, b, start="200", stop="300")]
        ['250', '251']
        """
        if old == new:
            return
        sa = self._stream(old)
        sb = self._stream(new)
        if start is not None or stop is not None:
            expand_all = self._expand

            def ranged(stack: list[tuple[Any, ...]], budget: list[Any]) -> None:
                expand_all(stack, budget)
                _prune(stack, start, stop)

            expand = ranged
        else:
            expand = self._expand
        # each side's budget: [entries it may still read, its root, the entries declared, whether
        # to keep its leaves in the node cache]. Compared with nothing (a full sync), the new
        # tree is read once, leaf by leaf: its leaves (format 3: ~64 KiB of items each) would
        # only push out of the cache what is worth keeping, and hold memory up to its cap.
        ba: list[Any] = [(1 << 62) if old_count is None else old_count, old, old_count, True]
        bb: list[Any] = [(1 << 62) if new_count is None else new_count, new, new_count, old is not None]
        while sa and sb:
            ha, hb = sa[-1], sb[-1]
            ka, kb = ha[1], hb[1]
            if ka < kb:
                if ha[0] == _NODE:
                    expand(sa, ba)
                else:
                    sa.pop()
                    yield Change(ka, ha[2], None)
            elif kb < ka:
                if hb[0] == _NODE:
                    expand(sb, bb)
                else:
                    sb.pop()
                    yield Change(kb, None, hb[2])
            elif ha[0] == _NODE and hb[0] == _NODE:
                if ha[2] == hb[2]:
                    sa.pop()
                    sb.pop()
                elif ha[3] > hb[3]:
                    expand(sa, ba)
                elif hb[3] > ha[3]:
                    expand(sb, bb)
                else:
                    expand(sa, ba)
                    expand(sb, bb)
            elif ha[0] == _NODE:
                expand(sa, ba)
            elif hb[0] == _NODE:
                expand(sb, bb)
            else:
                sa.pop()
                sb.pop()
                if ha[2] != hb[2]:
                    yield Change(ka, ha[2], hb[2])
        while sa:
            h = sa[-1]
            if h[0] == _NODE:
                expand(sa, ba)
            else:
                sa.pop()
                yield Change(h[1], h[2], None)
        while sb:
            h = sb[-1]
            if h[0] == _NODE:
                expand(sb, bb)
            else:
                sb.pop()
                yield Change(h[1], None, h[2])

    def _stream(self, root: CID | None) -> list[tuple[Any, ...]]:
        if root is None:
            return []
        node = self.load(root)
        if not node.keys:
            return []
        # (_NODE, first key, cid, level, where its subtree ends, parent cid); the root's are None
        return [(_NODE, node.keys[0], root, node.level, None, None)]

    def _expand(self, stack: list[tuple[Any, ...]], budget: list[Any]) -> None:
        """Replace the node on top of ``stack`` by its entries or its children, checked; entries
        are taken from ``budget`` (see :meth:`diff`)."""
        _, key, cid, level, end, parent = stack.pop()
        node = self.load(cid, parent, keep=level > 0 or budget[3])
        keys = node.keys
        if parent is not None and (node.level != level or not keys or keys[0] != key
                                   or (end is not None and keys[-1] >= end)):
            _check_span(cid, node.span(), parent, level, key, end)
        if level == 0:
            budget[0] -= len(keys)
            if budget[0] < 0:
                raise TreeShapeError(
                    f"tree {budget[1]} holds more than the {budget[2]} entries its index root declares",
                    cid=budget[1], rule="count",
                )
            stack.extend(zip(repeat(_ENTRY), reversed(keys), reversed(node.values)))
            return
        lvl = level - 1
        ends = keys[1:]
        ends.append(end)
        stack.extend(zip(repeat(_NODE), reversed(keys), reversed(node.values), repeat(lvl), reversed(ends), repeat(cid)))

_NODE = 0
_ENTRY = 1


class _SortedBuilder:
    """:meth:`ProllyTree.build_sorted`: the unfinished node of each level (its keys and the
    DAG-CBOR of its keys and values), and how many nodes each level has finished. A level's
    first node is passed up only once it has a second one: a level of one node is the root,
    and no level above it may be begun (it would write a node the tree does not link).

    Each value is encoded once (:func:`~halodb.ipld.codec.encode_shallow`): its bytes give
    the entry's size for the chunking rule and are copied into the node, which is written
    from its entries' encodings (:func:`_node_bytes`), not encoded again as a whole."""

    def __init__(self, tree: ProllyTree, batch_bytes: int, leaves: list[tuple[str, CID]] | None = None) -> None:
        self.tree = tree
        #: (:meth:`ProllyTree.leaves_sorted`) the leaves finished, level 0 only, the first not written
        self.leaves = leaves
        self.batch_bytes = batch_bytes
        self.pending: list[tuple[CID, bytes]] = []
        self.pending_bytes = 0
        self.writer: ThreadPoolExecutor | None = None
        self.writing: Future[int] | None = None
        #: per level: the unfinished node's keys, and its keys' and values' DAG-CBOR
        self.runs: list[tuple[list[str], list[bytes], list[bytes]]] = []
        self.done: list[int] = []
        self.first: list[tuple[str, CID] | None] = []
        params = tree.params
        self.leaf_bytes = params.leaf_bytes
        self.thresholds = [params.threshold(0), params.threshold(1)]
        cutter = getattr(native(), "LeafCutter", None)  # (None: not installed, or a build from before it)
        #: level 0 in compiled code when it is installed (halodb_native.LeafCutter: the same rule
        #: and bytes, tests/test_native.py); the levels above here
        self.cutter = None if cutter is None else cutter(params.leaf_bytes or 0, self.thresholds[0], CID)

    def _level(self, level: int) -> None:
        if level == len(self.runs):
            self.runs.append(([], [], []))
            self.done.append(0)
            self.first.append(None)

    def push(self, level: int, key: str, value: Any) -> None:
        self._level(level)
        if level == 0 and self.cutter is not None:
            finished = self.cutter.push_value(key, value)  # (a text, null or entry: encoded there)
            if finished is NotImplemented:
                finished = self.cutter.push_one(key, encode_shallow(value))
            if finished is not None:
                self._take(0, *finished)
            return
        self._push_encoded(level, key, encode_shallow(value))

    def push_run(self, keys: list[str], values: list[bytes], last: str | None, caller: str) -> str | None:
        """Push the leaf entries ``keys`` with their values' DAG-CBOR ``values``, the keys
        strictly increasing from above ``last`` (else ``ValueError`` naming ``caller``); the
        last key pushed (``last`` if none)."""
        self._run(keys, values, last, caller, to_boundary=False)
        return keys[-1] if keys else last

    def push_to_boundary(self, keys: list[str], values: list[bytes], last: str | None, caller: str) -> int:
        """:meth:`push_run` up to the first entry that finishes a leaf; how many were pushed."""
        return self._run(keys, values, last, caller, to_boundary=True)

    def _run(self, keys: list[str], values: list[bytes], last: str | None, caller: str, *, to_boundary: bool) -> int:
        self._level(0)
        if keys and last is not None and keys[0] <= last:
            raise ValueError(f"{caller}: key {keys[0]!r} is not above the key before it, {last!r}")
        if self.cutter is not None:
            finished, pushed, ordered = self.cutter.push_sorted(keys, values, to_boundary)
            for node in finished:
                self._take(0, *node)
            if not ordered:
                raise ValueError(f"{caller}: key {keys[pushed]!r} is not above the key before it, {keys[pushed - 1]!r}")
            return int(pushed)
        pushed = 0
        for key, encoded in zip(keys, values):
            if pushed and key <= keys[pushed - 1]:
                raise ValueError(f"{caller}: key {key!r} is not above the key before it, {keys[pushed - 1]!r}")
            pushed += 1
            if self._push_encoded(0, key, encoded) and to_boundary:
                break
        return pushed

    def _push_encoded(self, level: int, key: str, encoded: bytes) -> bool:
        """Push an entry whose value's DAG-CBOR is ``encoded``; whether it finished a node."""
        keys, encoded_keys, encoded_values = self.runs[level]
        utf8 = key.encode()
        keys.append(key)
        encoded_keys.append(cbor_head(3, len(utf8)) + utf8)
        encoded_values.append(encoded)
        # the chunking rule of ProllyTree._is_boundary, with the entry's size from its encoding
        if level == 0 and self.leaf_bytes is not None:
            threshold = min((1 << 32) * (len(utf8) + len(encoded)) // self.leaf_bytes, 1 << 32)
        else:
            threshold = self.thresholds[min(level, 1)]
        if int.from_bytes(hashlib.sha256(bytes((level,)) + utf8).digest()[:4], "big") < threshold:
            self._finish_node(level)
            return True
        return False

    def begun(self, level: int) -> bool:
        """Whether ``level`` has a node begun and not finished."""
        if level == 0 and self.cutter is not None:
            return bool(self.cutter.pending())
        return level < len(self.runs) and bool(self.runs[level][0])

    def _finish_node(self, level: int) -> None:
        if level == 0 and self.cutter is not None:
            finished = self.cutter.finish()
            if finished is not None:
                self._take(0, *finished)
            return
        keys, encoded_keys, encoded_values = self.runs[level]
        data = _node_bytes(level, encoded_keys, encoded_values)
        self.runs[level] = ([], [], [])
        self._take(level, keys[0], len(keys), CID.for_bytes(data, DAG_CBOR).buffer, data)

    def _take(self, level: int, first: str, entries: int, buffer: bytes, data: bytes) -> None:
        """A finished node of ``level``: ``entries`` entries from key ``first``, its CID's
        ``buffer`` and its ``data``."""
        cid = CID(buffer)
        if len(data) > MAX_NODE_SIZE:
            raise shape_error(cid, None, "size", f"would be {len(data)} bytes ({entries} entries from key "
                              f"{first[:80]!r}); a tree node may take at most {MAX_NODE_SIZE}")
        if self.leaves is not None:
            self.leaves.append((first, cid))
            if len(self.leaves) > 1:
                self.pending.append((cid, data))
                self.pending_bytes += len(data)
        else:
            self.pending.append((cid, data))
            self.pending_bytes += len(data)
            self._finished(level, first, cid)
        if self.pending_bytes >= self.batch_bytes:
            self.write()

    def adopt(self, leaves: list[tuple[str, CID]]) -> None:
        """Take ``leaves``, built elsewhere, as the next finished leaves."""
        for first, cid in leaves:
            self._finished(0, first, cid)

    def _finished(self, level: int, first: str, cid: CID) -> None:
        """Pass a finished node of ``level`` up (see the class)."""
        self.done[level] += 1
        if self.done[level] == 1:
            self.first[level] = (first, cid)
        else:
            held = self.first[level]
            if held is not None:
                self.first[level] = None
                self.push(level + 1, *held)
            self.push(level + 1, first, cid)

    def finish(self) -> CID:
        """Finish every level's last node; the root's CID."""
        if not self.runs:
            return self.tree._emit_empty()
        level = 0
        while True:
            if self.begun(level):
                self._finish_node(level)
            if self.done[level] == 1:
                held = self.first[level]
                assert held is not None
                return held[1]
            level += 1

    def write(self) -> None:
        """Hand the finished nodes to the writer thread (they stay out of the node cache),
        once it has written the batch before (so at most two batches are held)."""
        self._wait()
        if self.pending:
            if self.writer is None:
                self.writer = ThreadPoolExecutor(1, thread_name_prefix="halodb-tree-writer")
            self.writing = self.writer.submit(self.tree.store.put_many, self.pending, verify=False)
            self.pending = []
        self.pending_bytes = 0

    def _wait(self) -> None:
        """Wait for the batch being written; its error, if it failed."""
        writing, self.writing = self.writing, None
        if writing is not None:
            writing.result()

    def drain(self) -> None:
        """Wait until every node handed over is written (and the empty tree's, if :meth:`finish`
        made it)."""
        self._wait()
        self.tree._flush()

    def close(self) -> None:
        """End the writer thread, once the batch it writes is written (also after an error)."""
        if self.writer is not None:
            self.writer.shutdown(wait=True)
            self.writer = None


#: how a node's DAG-CBOR begins: a map of three (keys ``keys``, ``level``, ``values``, in
#: DAG-CBOR's order: shorter keys first), then the key ``keys``
_NODE_HEAD = b"\xa3\x64keys"


def _node_bytes(level: int, encoded_keys: list[bytes], encoded_values: list[bytes]) -> bytes:
    """The DAG-CBOR of ``Node(level, keys, values).to_ipld()`` from the encodings of its keys
    and values: byte for byte what :func:`~halodb.ipld.encode` writes (``tests/test_prolly.py``).

    >>> from halodb.ipld import encode
    >>> _node_bytes(1, [encode("a")], [encode(None)]) == encode(Node(1, ["a"], [None]).to_ipld())
    True
    """
    n = len(encoded_keys)
    return b"".join((_NODE_HEAD, cbor_head(4, n), *encoded_keys, b"\x65level", cbor_head(0, level),
                     b"\x66values", cbor_head(4, n), *encoded_values))


def _prune(stack: list[tuple[Any, ...]], start: str | None, stop: str | None) -> None:
    """Drop from ``stack`` (reversed: its last item comes first in key order) the entries and
    subtrees that lie wholly outside ``start <= key < stop``."""
    keep = []
    for item in stack[::-1]:
        key = item[1]
        if stop is not None and key >= stop:
            continue
        if start is not None and (key < start if item[0] == _ENTRY else item[4] is not None and item[4] <= start):
            continue
        keep.append(item)
    stack[:] = keep[::-1]


def _merge(keys: list[str], values: list[Any], changes: list[tuple[str, Any]]) -> tuple[list[str], list[Any]]:
    """Apply sorted ``changes`` to sorted entries."""
    if not changes:
        return list(keys), list(values)
    out_k: list[str] = []
    out_v: list[Any] = []
    i = j = 0
    nk, nc = len(keys), len(changes)
    while i < nk or j < nc:
        if j >= nc or (i < nk and keys[i] < changes[j][0]):
            out_k.append(keys[i])
            out_v.append(values[i])
            i += 1
            continue
        ck, cv = changes[j]
        if i < nk and keys[i] == ck:
            i += 1
        if cv is not DELETE:
            out_k.append(ck)
            out_v.append(cv)
        j += 1
    return out_k, out_v
