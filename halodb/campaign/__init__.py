"""Campaign input: ORCESTRA-style ``tree.yaml`` files (path -> CID) and their history.

Reads and checks what a campaign hands HaloDB; builds nothing. Imports only
:mod:`halodb.ipld` and :mod:`halodb.util`; unixfs (MFS builds) and the API import it.
"""

from halodb.campaign.treeyaml import MAX_DEPTH, TreeVersion, flatten_tree, load_tree, load_tree_history

__all__ = ["MAX_DEPTH", "TreeVersion", "flatten_tree", "load_tree", "load_tree_history"]
