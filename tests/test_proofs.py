"""Inclusion proofs (issue 12, part 2): `halodb prove` writes a CAR of only the blocks that
answer "what did X hold at T"; `halodb verify` checks it offline in an empty home, and
refuses a changed byte, a missing block, a wrong path and an untrusted signer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import halodb
from halodb.api.keys import create_key
from halodb.blockstore.car import read_car, write_car
from halodb.errors import ProofError
from halodb.index.proof import verify_proof
from halodb.ipld import CID, make_block

from .conftest import cid_for, make_item, run_cli_in_process


@pytest.fixture
def history(registry: halodb.Registry) -> list[CID]:
    """200 datasets; f7 reprocessed; f9 withdrawn. Signed by alice."""
    create_key(registry.home, "alice")
    registry.add([make_item(f"f{i}", cid_for(f"v1-{i}"), path=f"products/HALO/f{i}.zarr") for i in range(200)])
    c1 = registry.commit("200 flights", time="2024-08-12T00:00:00Z", sign=["alice"])
    registry.add([make_item("f7", cid_for("v2-7"), path="products/HALO/f7.zarr")])
    c2 = registry.commit("reprocess f7", time="2024-08-20T00:00:00Z", sign=["alice"])
    registry.remove(["halo/f9"])
    c3 = registry.commit("withdraw f9", time="2024-09-01T00:00:00Z", sign=["alice"])
    return [c1, c2, c3]


@pytest.mark.parametrize("key, at", [("halo/f7", "2024-08-15"), ("halo/f7", "2024-08-25"),
                                     ("products/HALO/f3.zarr", "2024-09-05"), ("halo/f9", "2024-09-05"),
                                     ("halo/nope", "2024-08-15")])
def test_a_proof_answers_as_the_registry_does(registry: halodb.Registry, history: list[CID], tmp_path: Path,
                                              key: str, at: str) -> None:
    out = tmp_path / "proof.car"
    blocks = registry.prove(key, at, out)
    answer = verify_proof(str(out))
    assert answer.data == registry.cid_at(key, at)
    assert answer.head == history[-1] and answer.blocks == blocks
    assert answer.version == registry.resolve(f"HEAD@{at}")
    assert out.stat().st_size < 160 * 1024  # a few leaves (~64 KiB with their items, index format 3), not the index
    assert len(answer.signers) == 1


def test_verify_in_an_empty_home_prints_the_verified_answer(registry: halodb.Registry, history: list[CID],
                                                            tmp_path: Path, home: Path) -> None:
    r = run_cli_in_process(home, "prove", "products/HALO/f7.zarr", "--at", "2024-08-25", "-o", str(tmp_path / "p.car"))
    assert r.code == 0 and cid_for("v2-7") in r.out, r.err
    empty = tmp_path / "empty-home"
    r = run_cli_in_process(empty, "verify", str(tmp_path / "p.car"), "--json")
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert (info["dataset"], info["data"], info["version"]) == ("halo/f7", cid_for("v2-7"), str(history[1]))
    assert not empty.exists()  # verifying needs no home
    policy = tmp_path / "policy.json"
    [did] = [line.split()[1] for line in run_cli_in_process(home, "key", "ls").out.splitlines()]
    policy.write_text(json.dumps({"keys": [did]}))
    r = run_cli_in_process(empty, "verify", str(tmp_path / "p.car"), "--trust", str(policy))
    assert r.code == 0 and f"signed by {did} (trusted)" in r.out, r.err
    stranger = tmp_path / "stranger.json"
    stranger.write_text(json.dumps({"keys": [create_key(tmp_path / "s", "mallory")]}))
    r = run_cli_in_process(empty, "verify", str(tmp_path / "p.car"), "--trust", str(stranger))
    assert r.code == 2 and "the trust policy needs 1 of" in r.err and len(r.err.splitlines()) == 1, r.err
    stranger.write_text(json.dumps({"keys": []}))
    r = run_cli_in_process(empty, "verify", str(tmp_path / "p.car"), "--trust", str(stranger))
    assert r.code == 2 and "the trust policy lists no keys" in r.err and len(r.err.splitlines()) == 1, r.err
    # a proof is checked, not imported: importing one says so
    r = run_cli_in_process(tmp_path / "other-home", "import-car", str(tmp_path / "p.car"))
    assert r.code == 2 and "`halodb verify`" in r.err and len(r.err.splitlines()) == 1, r.err


def blocks_of(path: Path) -> tuple[list[CID], list[tuple[CID, bytes]]]:
    roots, blocks = read_car(str(path))
    return roots, list(blocks)


@pytest.mark.parametrize("damage", ["changed_byte", "missing_block", "wrong_path", "two_roots", "not_a_claim"])
def test_a_damaged_proof_is_refused(registry: halodb.Registry, history: list[CID], tmp_path: Path,
                                    damage: str, home: Path) -> None:
    good = tmp_path / "good.car"
    registry.prove("halo/f7", "2024-08-25", good)
    roots, blocks = blocks_of(good)
    bad = tmp_path / "bad.car"
    if damage == "changed_byte":
        data = bytearray(good.read_bytes())
        data[-5] ^= 0x01  # inside the last block
        bad.write_bytes(bytes(data))
    elif damage == "missing_block":
        write_car(str(bad), roots, blocks[:-1])  # the item, read last
    elif damage == "wrong_path":  # the claim now asks for another dataset than the blocks reach
        claim, claim_bytes = make_block({"type": "halodb/proof", "version": 1, "head": history[-1],
                                         "key": "halo/f150", "at": "2024-08-25T00:00:00Z"})
        write_car(str(bad), [claim], [(claim, claim_bytes), *blocks[1:]])
    elif damage == "two_roots":
        write_car(str(bad), [roots[0], roots[0]], blocks)
    else:
        write_car(str(bad), [blocks[1][0]], blocks)
    with pytest.raises(ProofError):
        verify_proof(str(bad))
    r = run_cli_in_process(home, "verify", str(bad))
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, r.err
