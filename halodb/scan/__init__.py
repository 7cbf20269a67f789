"""Scanning: campaign trees (tree.yaml), reading dataset folders (:mod:`~halodb.filetree`),
STAC metadata extraction from Zarr and ``dataset_meta.yaml`` (:mod:`~halodb.scan.extract`),
and scanning whole UnixFS trees into the stage (:mod:`~halodb.scan.scanner`)."""

from halodb.campaign import TreeVersion, flatten_tree, load_tree, load_tree_history

__all__ = ["TreeVersion", "flatten_tree", "load_tree", "load_tree_history"]
