"""STAC items: the one parse point, keys, data CIDs, item files, offline schema checks.

Owns what a STAC item must be before it enters the index. May import campaign, filetree,
sync and the layers below (it uses ipld and errors); never unixfs (its sibling), scan, api,
demo, cli or testing.
"""

from halodb.stac import items as _items
from halodb.stac.items import *  # noqa: F403 - the package answers with its items module's names

__all__ = list(_items.__all__)
