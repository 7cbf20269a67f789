"""Naming: names that point at the newest commit (local, DNSLink, IPNS), and version references.

Owns resolving and publishing names. May import only blockstore, ipld, util and errors: never
index or cache (the three are independent), nothing above, nor DuckDB, Arrow, Zarr, NumPy,
pydantic or pystac.

>>> parse_ref("latest@2024-09-15T00:00Z").name
'latest'
"""

from halodb.naming.base import NameRecord, NameStore, Resolution
from halodb.naming.local import LocalNames, check_name
from halodb.naming.refs import Ref, parse_ref

__all__ = ["LocalNames", "NameRecord", "NameStore", "Ref", "Resolution", "check_name", "parse_ref"]
