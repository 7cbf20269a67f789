"""Whether a change of a dataset entry is only a respelling of its data CID.

A ``Qm…`` data CID rewritten as the ``bafy…`` of the same multihash, with the same path and
DOI and an item that differs only where that CID is written, is the same content: ``log``
does not count it as a change, ``diff`` marks it ``=``. See :mod:`halodb.ipld.spelling`.

>>> from halodb.blockstore import MemoryStore
>>> from halodb.ipld import make_block
>>> v0, v1 = "QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY", "bafybeibcvvrry2potayjlnnyvtict74uv7y5y3ciqn4hqwe2sk4q37vdc4"
>>> store = MemoryStore()
>>> (a, raw_a), (b, raw_b) = make_block({"href": f"ipfs://{v0}"}), make_block({"href": f"ipfs://{v1}"})
>>> store.put_many([(a, raw_a), (b, raw_b)])
2
>>> is_respelled(store, Entry(a, v0, "p"), Entry(b, v1, "p")), is_respelled(store, Entry(a, v0, "p"), Entry(b, v1, "q"))
(True, False)
"""

from __future__ import annotations

from halodb.blockstore.base import BlockStore
from halodb.index.model import Entry
from halodb.ipld import decode
from halodb.ipld.spelling import is_respelling, respelled_data

__all__ = ["is_respelled"]


def is_respelled(store: BlockStore, old: Entry, new: Entry) -> bool:
    """Whether ``new`` is ``old`` with its data CID respelled and nothing else changed (reads
    the two item blocks, or takes them from the entries that hold them inline, only when the
    data CIDs share a multihash)."""
    if old.path != new.path or old.doi != new.doi or not respelled_data(old.data, new.data):
        return False
    assert old.data is not None and new.data is not None
    if old.item == new.item:
        return True
    old_item = decode(old.inline if old.inline is not None else store.get(old.item), cid=old.item)
    new_item = decode(new.inline if new.inline is not None else store.get(new.item), cid=new.item)
    return is_respelling(old_item, new_item, old.data, new.data)
