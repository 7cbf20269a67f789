"""UnixFS on IPFS: dag-pb and UnixFS decoding, trees read through block stores, campaign roots.

Owns reading what ``ipfs add -r`` makes (:class:`UnixFSTree`, a :class:`~halodb.filetree.Tree`;
:func:`walk_tree`) and campaign roots in Kubo's MFS (:mod:`halodb.unixfs.mfs`). May import
campaign, filetree, sync and below; never stac (its sibling), scan or anything above.

>>> from halodb.blockstore import MemoryStore
>>> from halodb.unixfs.build import put_directory, put_file
>>> store = MemoryStore()
>>> root = put_directory(store, {"data.zarr": put_directory(store, {".zgroup": put_file(store, b"{}")})})
>>> UnixFSTree(store, root).read("data.zarr/.zgroup")
b'{}'
"""

from halodb.unixfs.dagpb import PBLink, PBNode, decode_pb
from halodb.unixfs.data import UnixFSData, decode_data
from halodb.unixfs.tree import UnixFSTree, WalkEntry, walk_tree

__all__ = ["PBLink", "PBNode", "UnixFSData", "UnixFSTree", "WalkEntry", "decode_data", "decode_pb", "walk_tree"]
