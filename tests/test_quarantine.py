"""#10.8: a damaged block in a real home is set aside and repaired, never kept or blamed on
the wrong party.

Each test flips one byte of a stored block in a real registry home's block store (what a bad
disk does: same size, other bytes), then

* ``import-car`` of a good CAR replaces it (the old size check kept it forever);
* with a remote (a real Kubo node, through its RPC API and through its gateway), ``sync``
  sets the damaged copy aside and fetches the block again (it used to fail, blaming Kubo);
* with no remote, ``sync`` fails naming the damaged copy's database, its CID and where it
  was moved (the store's quarantine table), and a re-import then lets the sync succeed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from halodb.blockstore import SqliteStore
from halodb.ipld import CID
from halodb.testing.blockstore import damage_row

from .conftest import cid_for, make_item, run_cli_in_process
from .kubo_node import KuboNode


def _publish_a_version(home: Path, tmp_path: Path, *store: str) -> CID:
    """A home whose name ``latest`` points at a commit of one item; returns the commit."""
    item = tmp_path / "a1.json"
    item.write_text(json.dumps(make_item("A1", cid_for("a1"))))
    assert run_cli_in_process(home, *store, "init").code == 0
    assert run_cli_in_process(home, *store, "add", str(item)).code == 0
    r = run_cli_in_process(home, *store, "commit", "-m", "one", "--time", "2024-08-12T10:00:00Z")
    assert r.code == 0, r.err
    assert run_cli_in_process(home, *store, "publish", "latest").code == 0
    return CID.parse(r.out.strip())


def _damage(blocks: SqliteStore, cid: CID) -> tuple[bytes, bytes]:
    """Flip one byte of the stored copy of ``cid``; returns (the good bytes, the damaged ones)."""
    good = blocks.get(cid)
    return good, damage_row(blocks.db_path, cid)


def test_import_car_repairs_a_damaged_block_file(home: Path, tmp_path: Path) -> None:
    head = _publish_a_version(home, tmp_path)
    car = tmp_path / "latest.car"
    assert run_cli_in_process(home, "export-car", "latest", str(car)).code == 0
    blocks = SqliteStore(home / "blocks")
    good, bad = _damage(blocks, head)

    r = run_cli_in_process(home, "import-car", str(car))
    assert r.code == 0, r.err
    assert blocks.get(head) == good
    assert blocks.quarantined(head) == [bad]  # the evidence
    r = run_cli_in_process(home, "sync", "latest")
    assert r.code == 0, r.err


@pytest.mark.parametrize("via", ["rpc", "gateway"])
def test_sync_fetches_a_damaged_block_again_from_the_remote(
    home: Path, tmp_path: Path, kubo: KuboNode, via: str
) -> None:
    head = _publish_a_version(home, tmp_path, "--store", kubo.api)  # blocks in the home and in Kubo
    blocks = SqliteStore(home / "blocks")
    good, bad = _damage(blocks, head)

    r = run_cli_in_process(home, "--store", kubo.api if via == "rpc" else kubo.gateway, "sync", "latest")
    assert r.code == 0, r.err
    assert blocks.get(head) == good
    assert blocks.quarantined(head) == [bad]


def test_sync_without_a_remote_names_the_damaged_file_and_sets_it_aside(home: Path, tmp_path: Path) -> None:
    head = _publish_a_version(home, tmp_path)
    car = tmp_path / "latest.car"
    assert run_cli_in_process(home, "export-car", "latest", str(car)).code == 0
    blocks = SqliteStore(home / "blocks")
    path = blocks.db_path
    _, bad = _damage(blocks, head)

    r = run_cli_in_process(home, "sync", "latest")
    assert r.code == 2
    message = r.err.strip()
    assert "\n" not in message and "Traceback" not in r.err
    assert str(path) in message and str(head) in message and "quarantine" in message
    assert "import-car" in message
    assert blocks.quarantined(head) == [bad] and not blocks.has(head)

    r = run_cli_in_process(home, "sync", "latest")  # missing now: the error still says why
    assert r.code == 2 and str(head) in r.err and "quarantine" in r.err
    assert run_cli_in_process(home, "import-car", str(car)).code == 0
    r = run_cli_in_process(home, "sync", "latest")
    assert r.code == 0, r.err
