"""``halodb serve``: a read-only STAC API 1.0 over the cache of one synced name, with time
travel (``?as_of=``, ``/versions/{commit}/``), a ``/changes`` feed, and HTML landing pages.

A top layer beside the CLI: it reads the cache (copied into an in-memory
:class:`~halodb.serve.snapshot.Snapshot`) and never writes it except through the registry's
own sync (``--watch``); nothing below imports it.

>>> # with halodb.open() as reg: serve(reg, "orcestra", ServeConfig(port=8000))
"""

from halodb.serve.app import ServeOptions, create_app
from halodb.serve.server import ServeConfig, pick_name, serve
from halodb.serve.snapshot import Snapshot, SnapshotHolder

__all__ = ["ServeConfig", "ServeOptions", "Snapshot", "SnapshotHolder", "create_app", "pick_name", "serve"]
