"""Scanning: campaign trees (tree.yaml) now; Zarr metadata extraction later."""

from halodb.scan.tree import TreeVersion, flatten_tree, load_tree, load_tree_history

__all__ = ["TreeVersion", "flatten_tree", "load_tree", "load_tree_history"]
