"""The fast paths of reading and parsing items (orjson decoding without the deep copy, the
quick check before the pydantic model) against the slow paths they stand in for: on any
item, valid or broken in any place, both give the same item or the same error."""

from __future__ import annotations

import copy
import io
import json
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from halodb.errors import HaloDBError
from halodb.stac import items as stac_items
from halodb.stac import parse_item, read_items

CID = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
RING = [[-20.0, 10.0], [-19.0, 10.0], [-19.0, 11.0], [-20.0, 10.0]]
GEOMETRIES: list[Any] = [
    {"type": "Point", "coordinates": [-20.5, 10]},
    {"type": "LineString", "coordinates": [[-23.0, 16.7], [-25.5, 13.0, 100]]},
    {"type": "Polygon", "coordinates": [RING]},
    {"type": "MultiPoint", "coordinates": [[1, 2], [3.5, 4]]},
    {"type": "MultiLineString", "coordinates": [[[1, 2], [3, 4]]]},
    {"type": "MultiPolygon", "coordinates": [[RING], []]},
    {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [1, 2]}]},
]
#: values put anywhere in an item: the edges of every rule the quick check reproduces
ODD: list[Any] = [
    None, True, False, 0, 1, -1, 2.5, -90.5, 180.0, 200, 2**63, 2**64, -(2**64) - 1, 10**30, float("nan"),
    float("inf"), "", " ", "x", "\t", "Feature", "1.1.0", "1.0.0-rc.1", "2.0.0", "a/b", "a/../b", "a/\x7fb", "./a",
    "2024-08-11T10:00:00Z", "2024-08-11T10:00:00.500Z", "2024-08-11T10:00:00+02:00", "2024-02-30T10:00:00Z",
    "2024-08-11t10:00:00z", "2024-08-11T23:59:60Z", "9999-12-31T23:59:59Z", "2024-08-11", "\ud800",
    [], {}, [1], [1, 2], [1, 2, 3, 4], [-1, -2, 1, 2], [0, 0, 5, 1, 1, 3], [[1, 2]], [RING], {"href": "x"},
    {"rel": "self", "href": "x"}, [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]], *GEOMETRIES,
]


NUMBERS: list[Any] = [-200, -180.5, -180, -91, -90.0, -1, 0, 0.5, 5, 17, 90, 90.5, 180.0, 181, True, "1", None]


def base_item(geometry: Any, *, stub: bool | None, times: int) -> dict[str, Any]:
    props: dict[str, Any] = {"title": "HALO", "halodb:path": "products/HALO/x.zarr", "platform": "HALO"}
    if times == 0:
        props.update(datetime=None, start_datetime="2024-08-11T10:00:00Z", end_datetime="2024-08-11T18:30:00Z")
    elif times == 1:
        props.update(datetime="2024-08-11T10:00:00Z", created="2024-09-01T00:00:00Z")
    else:
        props.update(datetime=None)
    if stub is not None:
        props["halodb:stub"] = stub
    item: dict[str, Any] = {
        "type": "Feature", "stac_version": "1.1.0", "stac_extensions": [], "id": "HALO-20240811a",
        "collection": "halo", "geometry": geometry, "properties": props,
        "links": [{"rel": "license", "href": "https://example.org/", "type": "text/html"}],
        "assets": {"data": {"href": f"ipfs://{CID}/x.zarr", "type": "application/vnd.zarr", "roles": ["data"]},
                   "meta": {"href": "https://example.org/x", "title": "x"}},
    }
    if geometry is not None:
        item["bbox"] = [-25.5, 10.0, -19.0, 16.7] if times < 2 else [-25.5, 10.0, 0, -19.0, 16.7, 100]
    return item


def _paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*here, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*here, i))
    return out


@st.composite
def items(draw: st.DrawFn) -> dict[str, Any]:
    """A valid item with up to three changes: a value replaced, a key removed or added, a
    list shortened, a number moved to a bound."""
    geometry = draw(st.sampled_from([None, *GEOMETRIES]))
    item = base_item(copy.deepcopy(geometry), stub=draw(st.sampled_from([None, True, False])),
                     times=draw(st.integers(0, 2)))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(_paths(item)))
        if not path:
            continue
        parent = item
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.integers(0, 4))
        target = parent[path[-1]]
        if action == 3 and isinstance(target, list) and target:
            target.pop(draw(st.integers(0, len(target) - 1)))  # a list one short
        elif action == 4 and isinstance(target, (int, float)):
            parent[path[-1]] = draw(st.sampled_from(NUMBERS))  # a number at or past a bound
        elif action == 0:
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(ODD)))
        elif action == 1 and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["type", "href", "rel", "datetime", "end_datetime", "halodb:stub",
                                         "bbox", "roles", "geometries", "coordinates", "zz"]))] = copy.deepcopy(
                draw(st.sampled_from(ODD)))
    return item


def outcome(run: Any) -> tuple[str, Any]:
    try:
        return "ok", run()
    except HaloDBError as exc:
        return "error", (str(exc), getattr(exc, "problems", None))


def slow() -> Any:
    """The paths before the fast ones: json module and deep copy, then always the model."""
    return mock.patch.multiple(stac_items, _decode_fast=lambda line: None, _quick_ok=lambda item: False)


def parsed_lines(text: str) -> list[tuple[str, dict[str, Any]]]:
    return [(source, parse_item(value, source)) for source, value in read_items(["-"], io.StringIO(text))]


@settings(max_examples=600, deadline=None)
@given(items())
def test_parse_item_quick_check_agrees_with_the_model(item: dict[str, Any]) -> None:
    fast = outcome(lambda: parse_item(copy.deepcopy(item), "x.json"))
    with slow():
        assert fast == outcome(lambda: parse_item(copy.deepcopy(item), "x.json"))


@settings(max_examples=600, deadline=None)
@given(items())
def test_reading_ndjson_fast_agrees_with_the_json_module(item: dict[str, Any]) -> None:
    text = json.dumps(item) + "\n" + json.dumps({"type": "FeatureCollection", "features": [item]}) + "\n"
    fast = outcome(lambda: parsed_lines(text))
    with slow():
        assert fast == outcome(lambda: parsed_lines(text))


def test_quick_check_takes_the_common_item_and_leaves_odd_times_to_the_model() -> None:
    """Not a tautology: the fast path must be taken for a plain item, or it is useless."""
    item = base_item(GEOMETRIES[1], stub=None, times=0)
    assert stac_items._quick_ok(item)
    assert not stac_items._quick_ok({**item, "properties": {**item["properties"], "datetime": "2024-08-11T10:00:00+02:00"}})
    line = json.dumps(item)
    assert stac_items._decode_fast(line) == item
    assert stac_items._decode_fast(line.replace("10.0", "1" * 19)) is None  # orjson would make it a float
    assert stac_items._decode_fast("[" * 64 + "]" * 64) is None
    assert stac_items._decode_fast('{"a": NaN}') is None


def test_an_integer_past_64_bits_on_a_line_is_refused_as_before() -> None:
    item = base_item(None, stub=None, times=1)
    item["properties"]["n"] = 2**64
    text = json.dumps(item) + "\n"
    kind, (message, _) = outcome(lambda: parsed_lines(text))
    assert kind == "error" and "properties.n" in message


def single_changes(item: dict[str, Any]) -> list[dict[str, Any]]:
    """Every item one change away from ``item``: each value replaced by each of NUMBERS,
    each key removed, each list one element short at either end."""
    out = []
    for path in _paths(item)[1:]:
        variants: list[Any] = [*NUMBERS, "delete"]
        for change in variants + ["pop0", "pop1"]:
            changed = copy.deepcopy(item)
            parent = changed
            for part in path[:-1]:
                parent = parent[part]
            target = parent[path[-1]]
            if change in ("pop0", "pop1"):
                if not isinstance(target, list) or not target:
                    continue
                target.pop(0 if change == "pop0" else -1)
            elif change == "delete":
                if not isinstance(parent, dict):
                    continue
                del parent[path[-1]]
            else:
                parent[path[-1]] = change
            out.append(changed)
    return out


def test_every_single_change_gets_the_same_answer_from_the_quick_check_and_the_model() -> None:
    """Systematic, where the property tests above sample: one change anywhere in each kind
    of item; also asserts that both answers occur (a check that always refuses would pass)."""
    answers: set[object] = set()
    for geometry in [None, *GEOMETRIES]:
        for times in (0, 1, 2):
            for item in single_changes(base_item(geometry, stub=None, times=times)):
                fast = outcome(lambda: parse_item(copy.deepcopy(item), "x.json"))
                with slow():
                    assert fast == outcome(lambda: parse_item(copy.deepcopy(item), "x.json")), item
                answers.add(fast[0])
                answers.add(stac_items._quick_ok(item))
    assert answers == {"ok", "error", True, False}


# --- ndjson read by add: the first error in input order -----------------------------------
def lines_of(kinds: list[str]) -> str:
    out = []
    for n, kind in enumerate(kinds):
        item = base_item(GEOMETRIES[n % len(GEOMETRIES)], stub=None, times=n % 3)
        item["id"] = f"x{n}"
        if kind == "same again":  # the item of line 1, if that is an item
            item = base_item(GEOMETRIES[0], stub=None, times=0) | {"id": "x0"}
        elif kind == "clash":
            item["id"] = "x0"
            item["properties"]["title"] = f"another {n}"
        elif kind == "invalid":
            item["properties"]["datetime"] = "yesterday"
        elif kind == "bad cid":
            item["assets"]["data"]["href"] = "ipfs://notacid/x.zarr"
        elif kind == "bad doi":
            item["properties"]["sci:doi"] = "n/a"
        elif kind == "collection":
            item = {"type": "FeatureCollection", "features": [item, {**item, "id": f"y{n}"}]}
        out.append({"blank": "", "bad json": '{"type": "Feature",'}.get(kind, json.dumps(item)))
    return "\n".join(out) + "\n"


def test_a_read_error_comes_after_the_errors_of_the_lines_before() -> None:
    """stdin that fails part-way: the invalid item read before the failure is the error;
    without it, the read error itself."""
    from halodb.api import staging

    class Failing(io.StringIO):
        def __init__(self, kinds: Any) -> None:
            super().__init__()
            self.kinds = kinds

        def __iter__(self) -> Any:
            yield from lines_of(self.kinds).splitlines(keepends=True)
            raise HaloDBError("stdin broke")

    for kinds, expected in ([["item", "invalid", "item"], "<stdin>:2: properties.datetime"],
                            [["item", "item"], "stdin broke"]):
        kind, (message, _) = outcome(
            lambda: list(staging.prepare_batches(read_items(["-"], Failing(kinds)), None, 1)))
        assert kind == "error" and expected in message, message
