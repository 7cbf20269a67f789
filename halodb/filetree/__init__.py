"""Read-only file trees: the interface (:class:`Tree`) dataset extraction reads through.

Below both :mod:`halodb.unixfs` (a UnixFS tree on IPFS is a ``Tree``) and
:mod:`halodb.scan` (which reads datasets from any ``Tree``). Imports only
:mod:`halodb.errors`.
"""

from halodb.filetree.tree import LocalTree, Tree, TreeEntry

__all__ = ["LocalTree", "Tree", "TreeEntry"]
