"""UnixFS on IPFS: dag-pb and UnixFS decoding, trees read through block stores, campaign roots.

``ipfs add -r`` turns a folder into UnixFS: dag-pb directory nodes (HAMT-sharded when
big) and files chunked into dag-pb or raw leaves. :class:`UnixFSTree` reads such a tree
through any :class:`~halodb.blockstore.BlockStore` as a :class:`~halodb.filetree.Tree`;
:func:`walk_tree` lists it recursively with limits; :mod:`halodb.unixfs.mfs` builds and
exports campaign roots (``tree.yaml``) in a Kubo node's MFS.

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
