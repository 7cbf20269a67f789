"""Fuzz: STAC items from bytes to a staged block, the path ``halodb add`` takes.

``read_items`` (a ``.json`` file, or ndjson lines on stdin) → ``parse_item`` →
``dataset_key`` → the item block → ``data_cid``/``item_path`` (``api.staging.prepare_items``,
which stores nothing). Inputs: the STAC specification's example items from
``../shared/data`` and HaloDB-style items, with bytes flipped, cut and spliced, or with a
field replaced by a value of the wrong shape (deep nesting, huge integers, NaN, odd
unicode, lists for objects); raw bytes. Claims: each input gives staged entries or a
:class:`~halodb.errors.HaloDBError` within memory linear in its size; a valid item is
normalized once (parsing it again changes nothing) and its block decodes to it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from halodb import stac
from halodb.api.staging import PreparedItems, prepare_items
from halodb.errors import HaloDBError
from halodb.ipld import decode

from ..conftest import SHARED_DATA, make_item
from ..requirements import require
from .support import EDGE_INTS, ODD_TEXT, bounded, cids, fuzz, mutated, nested, outcome

EXAMPLES = SHARED_DATA / "stac-examples" / "examples"
EXAMPLE_FILES = ["core-item.json", "simple-item.json", "extended-item.json", "collectionless-item.json",
                 "extensions-collection/proj-example/proj-example.json"]


def _examples() -> list[dict[str, Any]]:
    found = [json.loads((EXAMPLES / name).read_text()) for name in EXAMPLE_FILES if (EXAMPLES / name).is_file()]
    return found + [make_item("x", "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq", path="products/x.zarr")]


ITEMS = _examples()
WRONG = st.recursive(
    st.one_of(st.none(), EDGE_INTS.filter(lambda n: abs(n) < 10**300), st.floats(), ODD_TEXT, st.booleans(),
              cids().map(lambda c: f"ipfs://{c}"), st.sampled_from(["2024-02-30T00:00:00Z", "9999-12-31T23:59:59-01:00",
                                                                   "ipfs://x/../../etc", "Feature", "1.1.0"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(ODD_TEXT, inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def reshaped(draw: st.DrawFn) -> Any:
    """An example item with one to three fields (at any depth) replaced, removed or deeply nested."""
    item = json.loads(json.dumps(draw(st.sampled_from(ITEMS))))
    for _ in range(draw(st.integers(1, 3))):
        node: Any = item
        for _ in range(draw(st.integers(0, 3))):  # walk down a few levels
            keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
            child = node[draw(st.sampled_from(keys))] if keys else None
            if not isinstance(child, (dict, list)) or not child:
                break
            node = child
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            continue
        key = draw(st.sampled_from(keys))
        action = draw(st.sampled_from(["replace", "delete", "nest"]))
        if action == "delete" and isinstance(node, dict):
            del node[key]
        elif action == "nest":
            node[key] = nested(draw(st.integers(50, 400)), node[key], kind=draw(st.sampled_from(["list", "map"])))
        else:
            node[key] = draw(WRONG)
    return item


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


DOCUMENTS = st.one_of(
    reshaped().map(_dump),
    mutated(st.sampled_from(ITEMS).map(_dump), max_edits=3),
    st.binary(max_size=64),
    st.lists(reshaped(), min_size=1, max_size=2).map(lambda fs: _dump({"type": "FeatureCollection", "features": fs})),
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("fuzz-stac")


def _add_file(path: Path) -> PreparedItems:
    return prepare_items(stac.read_items([str(path)], None), None)


def test_the_spec_examples_seed_the_mutations() -> None:
    require(EXAMPLES.is_dir(), f"reference data missing: {EXAMPLES}")
    assert len(ITEMS) == len(EXAMPLE_FILES) + 1


@fuzz(60)
@given(DOCUMENTS)
@example(b'{"type": "Feature", "id": ' + b"1" * 5000 + b"}")  # more digits than int() converts
@example(b"[" * 100_000)  # deeper than json's recursion
@example(_dump({**ITEMS[-1], "properties": {**ITEMS[-1]["properties"], "x": nested(300)}}))  # deeper than MAX_NESTING
@example(_dump({**ITEMS[-1], "bbox": [float("nan")] * 4}))
@example(_dump({**ITEMS[-1], "properties": {**ITEMS[-1]["properties"], "n": 2**64}}))  # beyond DAG-CBOR's integers
@example(b"\xef\xbb\xbf" + _dump(ITEMS[-1]))  # a UTF-8 byte-order mark
def test_any_item_file(folder: Path, content: bytes) -> None:
    path = folder / "item.json"
    path.write_bytes(content)
    result = bounded(len(content), _add_file, path, per_byte=4096, slack=4 << 20)
    assert isinstance(result, (PreparedItems, HaloDBError)), result


@fuzz(30)
@given(st.lists(st.one_of(DOCUMENTS, st.just(b"")), min_size=1, max_size=3))
@example([b"\xff\xfe", b"{}"])
def test_any_ndjson_on_stdin(lines: list[bytes]) -> None:
    text = b"\n".join(line.replace(b"\n", b" ") for line in lines).decode("utf-8", "surrogateescape")
    result = outcome(lambda: prepare_items(stac.read_items(["-"], io.StringIO(text)), None))
    assert isinstance(result, (PreparedItems, HaloDBError)), result


@fuzz(50)
@given(st.sampled_from(ITEMS), st.sampled_from([None, "halo"]))
def test_a_valid_item_is_normalized_once(item: dict[str, Any], collection: str | None) -> None:
    if "collection" not in item:
        collection = "halo"  # a collectionless item needs one to be keyed
    prepared = prepare_items([("x.json", item)], collection)
    (cid, block), = prepared.blocks
    again = stac.parse_item(decode(block), "block")
    assert again == decode(block)
    assert prepare_items([("y.json", again)], collection).blocks == [(cid, block)]
