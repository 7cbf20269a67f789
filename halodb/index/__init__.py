"""The index DAG: prolly trees, the index root (datasets, by_path, by_data), commits, diff, log.

Owns the on-disk format of every index block (``schemas/halodb.ipldsch``). May import only
blockstore, ipld, util and errors: never naming or cache (the three are independent), nothing
above, nor DuckDB, Arrow, Zarr, NumPy, pydantic or pystac.
"""
