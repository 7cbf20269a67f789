"""The index DAG: prolly trees, the index root (datasets, by_path, by_data), commits, diff.

Owns the on-disk format of every index block (``schemas/halodb.ipldsch``). Imports only
:mod:`halodb.blockstore`, :mod:`halodb.ipld` and :mod:`halodb.util`.
"""
