"""Two spellings of one content: a CIDv0 ``Qm…`` and a CIDv1 ``bafy…`` of the same multihash.

IPFS keys blocks by multihash, so ``Qm…`` and the ``bafy…`` that ORCESTRA converted it to
name the same bytes. A dataset whose data CID is only respelled has not changed: its STAC
item differs from the one before only where the CID is written. The spelling is kept for
display; these functions say when two spellings (and two items) are the same content.

>>> same_multihash("QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY",
...                "bafybeibcvvrry2potayjlnnyvtict74uv7y5y3ciqn4hqwe2sk4q37vdc4")
True
>>> is_respelling({"href": "ipfs://QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY"},
...               {"href": "ipfs://bafybeibcvvrry2potayjlnnyvtict74uv7y5y3ciqn4hqwe2sk4q37vdc4"},
...               "QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY",
...               "bafybeibcvvrry2potayjlnnyvtict74uv7y5y3ciqn4hqwe2sk4q37vdc4")
True
"""

from __future__ import annotations

from typing import Any

from halodb.errors import CIDError
from halodb.ipld.cid import CID

__all__ = ["is_respelling", "respelled_data", "same_content", "same_multihash"]


def same_multihash(a: str | None, b: str | None) -> bool:
    """Whether two CIDs (as text) name the same bytes: equal, or parsed with one multihash.
    Text that is not a CID equals only itself.

    >>> same_multihash("QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY", "bafkqaaa"), same_multihash(None, None)
    (False, True)
    """
    if a is None or b is None or a == b:
        return a == b
    try:
        return CID.parse(a).multihash == CID.parse(b).multihash
    except CIDError:
        return False


def same_content(a: str | None, b: str | None) -> bool:
    """Whether two CIDs (as text) name the same content: the same multihash *and* codec (a
    ``Qm…`` is dag-pb: its ``bafy…`` is the same node, a raw ``bafk…`` of the same bytes is
    the node's protobuf read as a file — other content). Pins compare by multihash alone
    (:func:`same_multihash`): a node stores the bytes once.

    >>> same_content("QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY",
    ...              "bafybeibcvvrry2potayjlnnyvtict74uv7y5y3ciqn4hqwe2sk4q37vdc4")
    True
    >>> same_content("QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY",
    ...              "bafkreibcvvrry2potayjlnnyvtict74uv7y5y3ciqn4hqwe2sk4q37vdc4")
    False
    """
    if a is None or b is None or a == b:
        return a == b
    try:
        x, y = CID.parse(a), CID.parse(b)
    except CIDError:
        return False
    return x.codec == y.codec and x.multihash == y.multihash


def respelled_data(old: str | None, new: str | None) -> bool:
    """Whether ``new`` is another spelling of ``old``: different text, the same content
    (:func:`same_content`).

    >>> respelled_data("QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY", "QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY")
    False
    """
    return old is not None and new is not None and old != new and same_content(old, new)


def is_respelling(old_value: Any, new_value: Any, old_cid: str, new_cid: str) -> bool:
    """Whether ``new_value`` (a decoded item: dicts, lists, strings…) is ``old_value`` with the
    CID ``old_cid`` written as ``new_cid`` and nothing else changed; both CIDs must be
    spellings of one content (:func:`respelled_data`).

    >>> v0, v1 = "QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY", "bafybeibcvvrry2potayjlnnyvtict74uv7y5y3ciqn4hqwe2sk4q37vdc4"
    >>> is_respelling({"href": f"ipfs://{v0}", "title": "a"}, {"href": f"ipfs://{v1}", "title": "b"}, v0, v1)
    False
    """
    if not respelled_data(old_cid, new_cid):
        return False
    return bool(_spelled_back(new_value, new_cid, old_cid) == old_value)


def _spelled_back(value: Any, new_cid: str, old_cid: str) -> Any:
    if isinstance(value, str):
        return value.replace(new_cid, old_cid)
    if isinstance(value, dict):
        return {_spelled_back(k, new_cid, old_cid): _spelled_back(v, new_cid, old_cid) for k, v in value.items()}
    if isinstance(value, list):
        return [_spelled_back(v, new_cid, old_cid) for v in value]
    return value
