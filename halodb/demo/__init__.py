"""``halodb demo``: a generated campaign (:mod:`halodb.demo.campaign`) built, synced and queried.

Sits on the Python API: may import :mod:`halodb.api` and every layer below; never cli or
testing. Only the CLI imports it.
"""
