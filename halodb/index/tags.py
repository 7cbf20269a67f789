"""Tags: immutable names for versions, kept in the DAG (``NAME@v1.0``).

A format-2 commit may link a tags block ``{type: "halodb/tags", tags: {name: &Tag}}``;
every later commit carries it forward, and a new tag is a commit whose tags block adds one.
A tag, once made, is never dropped nor moved (:func:`check_kept`, which sync applies).

>>> from halodb.blockstore import MemoryStore
>>> from halodb.index.history import write_commit
>>> from halodb.index.index import Index
>>> from halodb.util.times import parse_time
>>> store = MemoryStore(); root = Index(store).write_root(Index(store).empty())
>>> c1 = write_commit(store, Commit(root, parse_time("2024-08-12"), "me", "first"))
>>> tag_cid = write_tag(store, Tag("v1.0", c1, parse_time("2024-08-13"), "me"))
>>> tags = write_tags(store, {"v1.0": tag_cid})
>>> load_tags(store, Commit(root, parse_time("2024-08-13"), "me", "tag v1.0", (c1,), tags=tags)) == {"v1.0": tag_cid}
True
"""

from __future__ import annotations

from halodb.blockstore.base import BlockStore
from halodb.errors import SchemaError
from halodb.index.model import Commit, Tag, tags_from_ipld, tags_to_ipld
from halodb.ipld import CID, decode, make_block

__all__ = ["check_kept", "load_tag", "load_tags", "write_tag", "write_tags"]


def load_tags(store: BlockStore, commit: Commit) -> dict[str, CID]:
    """The tags a version carries: ``name -> tag block CID`` (empty without a tags block)."""
    if commit.tags is None:
        return {}
    return tags_from_ipld(decode(store.get(commit.tags), cid=commit.tags), cid=commit.tags)


def load_tag(store: BlockStore, cid: CID) -> Tag:
    """The tag block ``cid``; :class:`SchemaError` if it is not one."""
    return Tag.from_ipld(decode(store.get(cid), cid=cid), cid=cid)


def write_tag(store: BlockStore, tag: Tag) -> CID:
    cid, data = make_block(tag.to_ipld())
    store.put_many([(cid, data)], verify=False)
    return cid


def write_tags(store: BlockStore, tags: dict[str, CID]) -> CID:
    cid, data = make_block(tags_to_ipld(tags))
    store.put_many([(cid, data)], verify=False)
    return cid


def check_kept(store: BlockStore, old: Commit | None, new: Commit, new_cid: CID) -> None:
    """:class:`SchemaError` unless ``new`` keeps every tag of ``old`` (its parent) unchanged."""
    if old is None or old.tags is None or old.tags == new.tags:
        return
    before = load_tags(store, old)
    after = load_tags(store, new)
    for name, cid in sorted(before.items()):
        if after.get(name) != cid:
            how = "drops" if name not in after else "moves"
            raise SchemaError(f"commit {new_cid} {how} tag {name} (was tag block {cid}); tags are immutable",
                              cid=new_cid)
