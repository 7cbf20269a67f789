"""Campaign input: ORCESTRA-style ``tree.yaml`` files (path -> CID) and their history, and the
bounded YAML reader that pin lists use too.

Owns reading and checking what a campaign hands HaloDB; builds nothing. May import sync and
the layers below (it uses ipld, util, errors); never filetree (its sibling), stac, unixfs,
scan or anything above (unixfs, scan, the API and the CLI import it).
"""

from halodb.campaign.treeyaml import MAX_DEPTH, TreeVersion, flatten_tree, load_tree, load_tree_history, load_yaml

__all__ = ["MAX_DEPTH", "TreeVersion", "flatten_tree", "load_tree", "load_tree_history", "load_yaml"]
