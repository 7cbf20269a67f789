"""``halodb demo``: a generated campaign (:mod:`halodb.demo.campaign`) built, synced and queried.

Sits on the Python API (:mod:`halodb.api`); only the CLI imports it.
"""
