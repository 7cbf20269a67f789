"""Scanning: STAC items from Zarr and ``dataset_meta.yaml`` (:mod:`~halodb.scan.extract`), and
campaign roots on IPFS turned into what to stage (:mod:`~halodb.scan.scanner`).

May import stac, unixfs and every layer below; never api, demo, cli or testing (the registry
passes in what a scan needs). Re-exports the tree.yaml readers of :mod:`halodb.campaign`.
"""

from halodb.campaign import TreeVersion, flatten_tree, load_tree, load_tree_history

__all__ = ["TreeVersion", "flatten_tree", "load_tree", "load_tree_history"]
