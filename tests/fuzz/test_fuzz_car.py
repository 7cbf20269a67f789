"""Fuzz: CARv1 files (``halodb.blockstore.car``): streamed reading, the CAR store, import.

Inputs: CARs written by :func:`write_car` from generated DAG-CBOR blocks (and the codec
fixtures), with bytes flipped, cut, spliced and extended; headers and section lengths that
claim far more than the file holds; raw bytes. Claims: reading a stream, opening a
:class:`CarStore` over a file and importing into a real :class:`MemoryStore` each give
blocks or a :class:`~halodb.errors.HaloDBError` (no block that fails its CID is ever
returned or stored), within memory linear in the file; and a CAR reads back as written.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from halodb.blockstore import CarStore, MemoryStore, import_car, read_car, write_car
from halodb.errors import HaloDBError
from halodb.ipld import CID, encode, make_block
from halodb.ipld.protobuf import encode_varint

from .support import bounded, data_model, fuzz, mutated
from .test_fuzz_dag_cbor import FIXTURE_BLOCKS


def _car(roots: list[CID], blocks: list[tuple[CID, bytes]]) -> bytes:
    buf = io.BytesIO()
    write_car(buf, roots, blocks)
    return buf.getvalue()


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[CID], list[tuple[CID, bytes]]]:
    """A small DAG: leaf blocks, one block linking them (the root), in a drawn order."""
    leaves = [make_block(v) for v in draw(st.lists(data_model(max_leaves=4), max_size=3))]
    if len(FIXTURE_BLOCKS) > 0 and draw(st.booleans()):
        data = draw(st.sampled_from(FIXTURE_BLOCKS))
        leaves.append((CID.for_bytes(data), data))
    root = make_block({"links": [cid for cid, _ in leaves]})
    blocks = draw(st.permutations([root, *leaves]))
    return [root[0]] if draw(st.booleans()) else [], list(blocks)


CARS = dags().map(lambda d: _car(*d))
HEADER = encode({"roots": [], "version": 1})


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("fuzz-car")


def _read_stream(data: bytes) -> list[tuple[CID, bytes]]:
    roots, blocks = read_car(io.BytesIO(data))
    assert all(isinstance(r, CID) for r in roots)
    out = list(blocks)
    assert all(cid.verify(block) for cid, block in out)
    return out


def _open_store(path: Path) -> list[Any]:
    with CarStore(path) as store:
        return [store.get(cid) for cid in store.iter_cids()]


def _import(data: bytes) -> list[CID]:
    store = MemoryStore()
    try:
        return import_car(store, io.BytesIO(data))
    except HaloDBError:
        assert len(store) == 0, "a failed import stored blocks"
        raise


HOSTILE = [
    encode_varint(2**62) + HEADER,  # a header that claims 4 EiB
    encode_varint(len(HEADER)) + HEADER + encode_varint(2**62) + b"\x01\x71\x12\x20",  # a section that claims 4 EiB
    encode_varint(len(HEADER)) + HEADER + encode_varint(2**31) + b"\x12\x20" + bytes(32),
    encode_varint(len(HEADER)) + HEADER + b"\xff" * 12,  # an endless varint
    encode_varint(len(HEADER)) + HEADER + b"\x80\x00",  # a non-minimal varint
    b"\x0a\xa1\x67version\x01",  # a header without roots
]


@fuzz(60)
@given(st.one_of(mutated(CARS), st.binary(max_size=64), st.sampled_from(HOSTILE)))
def test_any_car_stream(data: bytes) -> None:
    result = bounded(len(data), _read_stream, data, per_byte=64)
    assert isinstance(result, (list, HaloDBError)), result


@fuzz(40)
@given(st.one_of(mutated(CARS), st.sampled_from(HOSTILE)))
def test_any_car_file(folder: Path, data: bytes) -> None:
    path = folder / "x.car"
    path.write_bytes(data)
    # slack: a section that claims more than the file holds costs one read buffer (1 MiB) before it is found short
    result = bounded(len(data), _open_store, path, per_byte=64, slack=3 << 20)
    assert isinstance(result, (list, HaloDBError)), result


@fuzz(40)
@given(st.one_of(mutated(CARS), st.sampled_from(HOSTILE)))
def test_any_car_import(data: bytes) -> None:
    result = bounded(len(data), _import, data, per_byte=64)
    assert isinstance(result, (list, HaloDBError)), result


@fuzz(30)
@given(dags())
def test_a_car_reads_back_as_written(dag: tuple[list[CID], list[tuple[CID, bytes]]]) -> None:
    roots, blocks = dag
    got_roots, got = read_car(io.BytesIO(_car(roots, blocks)))
    assert got_roots == roots and list(got) == blocks
