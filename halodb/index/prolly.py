"""A prolly tree: a deterministic, history-independent search tree of DAG-CBOR nodes.

Shape. Entries ``(key, value)`` are sorted by key (UTF-8 byte order = code point order).
Level 0 (leaves) holds the entries; level ``L+1`` holds one entry ``(first key, link)`` per
node of level ``L``. A node ends after an entry whose key is a *boundary* at that level:
``sha256(bytes([level]) + key.encode())``, read as a big-endian uint32 from its first four
bytes, is below ``2**32 // fanout(level)``. Boundaries depend only on keys, so the same set
of entries always gives the same nodes and the same root CID, whatever the order of the
inserts (history independence), and changing a value never moves a boundary. The root is
the first level that has a single node; the empty tree is a leaf with no entries.

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
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from halodb.blockstore.base import BlockStore
from halodb.errors import SchemaError
from halodb.index.model import Change
from halodb.ipld import CID, DAG_CBOR, decode, encode

#: sentinel value in a change set: delete this key
DELETE: Any = object()


@dataclass(frozen=True, slots=True)
class TreeParams:
    """Expected entries per node: leaves, and internal (branch) nodes."""

    leaf_fanout: int = 20
    branch_fanout: int = 40

    def threshold(self, level: int) -> int:
        return (1 << 32) // (self.leaf_fanout if level == 0 else self.branch_fanout)


@dataclass(frozen=True, slots=True)
class Node:
    """One tree node: ``values`` are entries' values in a leaf, child links otherwise."""

    level: int
    keys: list[str]
    values: list[Any]

    def to_ipld(self) -> dict[str, Any]:
        return {"level": self.level, "keys": self.keys, "values": self.values}

    @classmethod
    def from_ipld(cls, value: Any, cid: CID) -> Node:
        if not isinstance(value, dict):
            raise SchemaError(f"tree node {cid} is not a map", cid=cid)
        level, keys, values = value.get("level"), value.get("keys"), value.get("values")
        if not isinstance(level, int) or not isinstance(keys, list) or not isinstance(values, list):
            raise SchemaError(f"tree node {cid} is not {{level, keys, values}}", cid=cid)
        if len(keys) != len(values):
            raise SchemaError(f"tree node {cid} has {len(keys)} keys but {len(values)} values", cid=cid)
        if not all(type(k) is str for k in keys):
            raise SchemaError(f"tree node {cid} has a non-string key", cid=cid)
        if any(keys[i] >= keys[i + 1] for i in range(len(keys) - 1)):
            raise SchemaError(f"tree node {cid} keys are not strictly sorted", cid=cid)
        if level > 0 and (not keys or not all(isinstance(v, CID) for v in values)):
            raise SchemaError(f"internal tree node {cid} must hold links", cid=cid)
        return cls(level, keys, values)


class NodeCache:
    """A bounded LRU of decoded nodes, shared by trees over one store."""

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._nodes: OrderedDict[CID, Node] = OrderedDict()

    def get(self, cid: CID) -> Node | None:
        node = self._nodes.get(cid)
        if node is not None:
            self._nodes.move_to_end(cid)
        return node

    def put(self, cid: CID, node: Node) -> None:
        self._nodes[cid] = node
        if len(self._nodes) > self.capacity:
            self._nodes.popitem(last=False)


class ProllyTree:
    """Operations on prolly trees stored in ``store``; trees are named by their root CID."""

    def __init__(self, store: BlockStore, params: TreeParams | None = None, cache: NodeCache | None = None) -> None:
        self.store = store
        self.params = params or TreeParams()
        self.cache = cache if cache is not None else NodeCache()
        self._pending: dict[CID, tuple[Node, bytes]] = {}
        self._boundary_memo: dict[tuple[int, str], bool] = {}

    # -- nodes ------------------------------------------------------------------------------
    def load(self, cid: CID) -> Node:
        """The decoded node ``cid`` (verified, cached)."""
        node = self.cache.get(cid)
        if node is not None:
            return node
        pending = self._pending.get(cid)
        if pending is not None:
            return pending[0]
        data = self.store.get(cid)
        node = Node.from_ipld(decode(data, cid=cid), cid)
        self.cache.put(cid, node)
        return node

    def _emit(self, keys: list[str], values: list[Any], level: int) -> tuple[str, CID]:
        node = Node(level, keys, values)
        data = encode(node.to_ipld())
        cid = CID.for_bytes(data, DAG_CBOR)
        self._pending[cid] = (node, data)
        return keys[0], cid

    def _flush(self) -> None:
        if self._pending:
            blocks = [(cid, data) for cid, (_, data) in self._pending.items()]
            self.store.put_many(blocks, verify=False)
            for cid, (node, _) in self._pending.items():
                self.cache.put(cid, node)
            self._pending.clear()

    def _is_boundary(self, key: str, level: int) -> bool:
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
            if self._is_boundary(k, level):
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
        node = self.load(root)
        while node.level > 0:
            i = max(bisect_right(node.keys, key) - 1, 0)
            node = self.load(node.values[i])
        i = bisect_right(node.keys, key) - 1
        if i >= 0 and node.keys[i] == key:
            return node.values[i]
        return None

    def items(self, root: CID, start: str | None = None, stop: str | None = None) -> Iterator[tuple[str, Any]]:
        """Entries with ``start <= key < stop`` in key order."""
        yield from self._items(self.load(root), start, stop)

    def _items(self, node: Node, start: str | None, stop: str | None) -> Iterator[tuple[str, Any]]:
        keys = node.keys
        if node.level == 0:
            for k, v in zip(keys, node.values):
                if (start is None or k >= start) and (stop is None or k < stop):
                    yield k, v
            return
        first = 0 if start is None else max(bisect_right(keys, start) - 1, 0)
        for i in range(first, len(keys)):
            if stop is not None and keys[i] >= stop:
                break
            yield from self._items(self.load(node.values[i]), start, stop)

    def count(self, root: CID) -> int:
        return sum(1 for _ in self.items(root))

    def height(self, root: CID) -> int:
        return self.load(root).level

    def node_cids(self, root: CID) -> Iterator[CID]:
        """Every node CID of the tree (pre-order)."""
        stack = [root]
        while stack:
            cid = stack.pop()
            yield cid
            node = self.load(cid)
            if node.level > 0:
                stack.extend(reversed(node.values))

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
            removed, created = self._rewrite_level(root, level, level_changes)
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

    def _descend(self, root: Node, key: str, level: int) -> tuple[list[list[Any]], Node]:
        path: list[list[Any]] = []  # [node, index] pairs from the root down to level+1
        node = root
        while node.level > level:
            i = max(bisect_right(node.keys, key) - 1, 0)
            path.append([node, i])
            node = self.load(node.values[i])
        return path, node

    @staticmethod
    def _upper_bound(path: list[list[Any]]) -> str | None:
        """First key of the node after the current one at this level (None: it is the last)."""
        for node, i in reversed(path):
            if i + 1 < len(node.keys):
                return str(node.keys[i + 1])
        return None

    def _advance(self, path: list[list[Any]], level: int) -> Node | None:
        """Move ``path`` to the next node at ``level`` and return it (None at the end)."""
        depth = len(path) - 1
        while depth >= 0:
            node, i = path[depth]
            if i + 1 < len(node.keys):
                path[depth][1] = i + 1
                del path[depth + 1:]
                child = self.load(node.values[i + 1])
                while child.level > level:
                    path.append([child, 0])
                    child = self.load(child.values[0])
                return child
            depth -= 1
        return None

    def _rewrite_level(
        self, root: Node, level: int, changes: list[tuple[str, Any]]
    ) -> tuple[list[str], list[tuple[str, CID]]]:
        removed: list[str] = []
        created: list[tuple[str, CID]] = []
        ci = 0
        n = len(changes)
        while ci < n:
            path, node = self._descend(root, changes[ci][0], level)
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
    def diff(self, old: CID | None, new: CID | None) -> Iterator[Change]:
        """Changes from ``old`` to ``new`` in key order; equal subtrees are never read."""
        if old == new:
            return
        sa = self._stream(old)
        sb = self._stream(new)
        while sa and sb:
            ha, hb = sa[-1], sb[-1]
            ka, kb = ha[1], hb[1]
            if ka < kb:
                if ha[0] == _NODE:
                    self._expand(sa)
                else:
                    sa.pop()
                    yield Change(ka, ha[2], None)
            elif kb < ka:
                if hb[0] == _NODE:
                    self._expand(sb)
                else:
                    sb.pop()
                    yield Change(kb, None, hb[2])
            elif ha[0] == _NODE and hb[0] == _NODE:
                if ha[2] == hb[2]:
                    sa.pop()
                    sb.pop()
                elif ha[3] > hb[3]:
                    self._expand(sa)
                elif hb[3] > ha[3]:
                    self._expand(sb)
                else:
                    self._expand(sa)
                    self._expand(sb)
            elif ha[0] == _NODE:
                self._expand(sa)
            elif hb[0] == _NODE:
                self._expand(sb)
            else:
                sa.pop()
                sb.pop()
                if ha[2] != hb[2]:
                    yield Change(ka, ha[2], hb[2])
        while sa:
            h = sa[-1]
            if h[0] == _NODE:
                self._expand(sa)
            else:
                sa.pop()
                yield Change(h[1], h[2], None)
        while sb:
            h = sb[-1]
            if h[0] == _NODE:
                self._expand(sb)
            else:
                sb.pop()
                yield Change(h[1], None, h[2])

    def _stream(self, root: CID | None) -> list[tuple[Any, ...]]:
        if root is None:
            return []
        node = self.load(root)
        if not node.keys:
            return []
        return [(_NODE, node.keys[0], root, node.level)]

    def _expand(self, stack: list[tuple[Any, ...]]) -> None:
        item = stack.pop()
        node = self.load(item[2])
        if node.level == 0:
            stack.extend((_ENTRY, k, v) for k, v in zip(reversed(node.keys), reversed(node.values)))
        else:
            lvl = node.level - 1
            stack.extend((_NODE, k, c, lvl) for k, c in zip(reversed(node.keys), reversed(node.values)))


_NODE = 0
_ENTRY = 1


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
