"""Conformance suites that an outside backend can run against its own implementation.

Owns the suites every implementation of an interface must pass, and the harness that runs a
server for tests. May import every layer below (it uses blockstore, ipld and errors); never
cli, its sibling; nothing imports it.

HaloDB's own backends are tested with these suites, and a third-party backend (a block
store for some other system) imports the same classes and runs them in its own test
suite: whatever passes them behaves as the registry expects.

* :mod:`halodb.testing.blockstore` -- :class:`~halodb.testing.blockstore.BlockStoreTests`,
  the suite every :class:`~halodb.blockstore.BlockStore` backend must pass.
* :mod:`halodb.testing.servers` -- :class:`~halodb.testing.servers.ServerProcess`, a server
  (``halodb serve``, or a peer STAC API) in a subprocess for tests and benchmarks.

The suites are pytest test classes, so ``halodb.testing`` needs **pytest** (a test
dependency: ``pip install 'halodb[test]'`` or just ``pytest``); the rest of HaloDB never
imports this package. Subclass a suite in a module pytest collects (``test_*.py``), name
the subclass ``Test...``, and implement its hooks::

    # tests/test_my_store.py
    from pathlib import Path

    from halodb.blockstore import BlockStore
    from halodb.ipld import CID
    from halodb.testing.blockstore import BlockStoreTests

    from my_package import MyStore


    class TestMyStore(BlockStoreTests):
        def make_store(self, tmp_path: Path) -> BlockStore:
            return MyStore(tmp_path / "blocks")  # an empty store

        # optional: lets the corruption tests run (they skip without it)
        def corrupt(self, store: BlockStore, cid: CID) -> None:
            assert isinstance(store, MyStore)
            store.overwrite_raw_bytes(cid, b"garbage")

Tests choose themselves by the store's capability flags (``supports_writes``,
``supports_deletes``, ``supports_listing``): a read-only backend overrides ``populate``
instead and the write tests check that it refuses writes.
"""
