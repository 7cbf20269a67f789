"""Scanning: campaign trees (tree.yaml), reading dataset folders (:mod:`~halodb.scan.source`),
STAC metadata extraction from Zarr and ``dataset_meta.yaml`` (:mod:`~halodb.scan.extract`),
and scanning whole UnixFS trees into the stage (:mod:`~halodb.scan.scanner`)."""

from halodb.scan.tree import TreeVersion, flatten_tree, load_tree, load_tree_history

__all__ = ["TreeVersion", "flatten_tree", "load_tree", "load_tree_history"]
