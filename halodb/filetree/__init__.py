"""Read-only file trees: :class:`Tree`, the interface dataset extraction reads through.

Owns the interface and :class:`LocalTree`; :mod:`halodb.unixfs` implements it for IPFS and
:mod:`halodb.scan` reads through it. May import sync and the layers below (it uses errors
only); never campaign (its sibling), stac, unixfs, scan or anything above.
"""

from halodb.filetree.tree import LocalTree, Tree, TreeEntry

__all__ = ["LocalTree", "Tree", "TreeEntry"]
