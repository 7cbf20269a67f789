"""Tests for halodb.demo.campaign: the synthetic ORCESTRA-like campaign and bulk items."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pytest

from halodb.demo.campaign import COLLECTIONS, DemoVersion, generate_campaign, generate_items, mutate_items
from halodb.errors import InputError
from halodb.ipld import CID
from tests.pystac_oracle import validate_with_pystac
from halodb.stac import data_cid, dataset_key, item_path, parse_item


@pytest.fixture(scope="module")
def campaign() -> list[DemoVersion]:
    return generate_campaign()


def replay(versions: list[DemoVersion]) -> list[tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]]:
    """(state before, state after) of every version, as key -> item."""
    live: dict[str, dict[str, Any]] = {}
    out = []
    for v in versions:
        before = dict(live)
        for item in v.upserts:
            live[dataset_key(item)] = item
        for key in v.removals:
            del live[key]
        out.append((before, dict(live)))
    return out


def test_deterministic(campaign: list[DemoVersion]) -> None:
    assert generate_campaign() == campaign
    assert generate_campaign(2024) == campaign
    other = generate_campaign(7)
    assert other != campaign
    assert other == generate_campaign(7)


def test_size_and_span(campaign: list[DemoVersion]) -> None:
    keys = {dataset_key(i) for v in campaign for i in v.upserts}
    assert len(keys) >= 300
    assert len(campaign) >= 20
    assert {k.split("/", 1)[0] for k in keys} == set(COLLECTIONS)
    times = [v.time for v in campaign]
    assert all(t.tzinfo is not None and t.utcoffset() == timezone.utc.utcoffset(None) for t in times)
    assert times == sorted(times)
    assert times[0] >= datetime(2024, 8, 10, tzinfo=timezone.utc)
    assert times[-1] < datetime(2024, 10, 16, tzinfo=timezone.utc)
    assert (times[-1] - times[0]).days >= 60
    assert all(v.author and v.message for v in campaign)


def test_every_item_is_valid_and_canonical(campaign: list[DemoVersion]) -> None:
    for n, v in enumerate(campaign):
        for item in v.upserts:
            source = f"version {n}: {item['id']}"
            assert parse_item(item, source) == item  # already normalized
            cid = data_cid(item)
            assert cid is not None and CID.parse(cid).version == 1
            assert item["assets"]["data"]["type"] == "application/vnd.zarr"
            props = item["properties"]
            for field in ("title", "description", "platform", "instruments", "keywords", "halodb:path"):
                assert props[field], (source, field)
            assert props["license"] == "CC-BY-4.0" and props["mission"] == "ORCESTRA"
            assert item_path(item) == props["halodb:path"]
            assert item["collection"] in COLLECTIONS


def test_a_sample_validates_with_pystac(campaign: list[DemoVersion]) -> None:
    seen = set()
    for v in campaign:
        for item in v.upserts:
            kind = (item["collection"], item["geometry"]["type"])
            if kind not in seen:
                seen.add(kind)
                validate_with_pystac(item, item["id"])
    assert len(seen) >= 5


def test_geometry_is_in_the_campaign_region(campaign: list[DemoVersion]) -> None:
    for v in campaign:
        for item in v.upserts:
            west, south, east, north = item["bbox"]
            assert -62 <= west <= east <= -20, item["id"]
            assert 8 <= south <= north <= 18, item["id"]
            kind = item["geometry"]["type"]
            if item["collection"] in ("radiosondes",) or item["id"].endswith(tuple(f"_s{i:02d}" for i in range(1, 10))):
                assert kind == "Point"
            if item["collection"] == "halo-flights":
                assert kind == "LineString"


def test_has_additions_data_updates_metadata_updates_and_removals(campaign: list[DemoVersion]) -> None:
    adds = data_updates = meta_updates = removals = 0
    for (before, _), v in zip(replay(campaign), campaign):
        for item in v.upserts:
            old = before.get(dataset_key(item))
            if old is None:
                adds += 1
            elif data_cid(old) != data_cid(item):
                data_updates += 1
            else:
                meta_updates += 1
        removals += len(v.removals)
    assert adds >= 300
    assert data_updates >= 20
    assert meta_updates >= 10
    assert removals >= 10


def test_some_datasets_have_three_data_versions(campaign: list[DemoVersion]) -> None:
    cids: dict[str, set[str]] = {}
    for v in campaign:
        for item in v.upserts:
            cids.setdefault(dataset_key(item), set()).add(str(data_cid(item)))
    assert max(len(c) for c in cids.values()) >= 3


def test_changes_are_consistent(campaign: list[DemoVersion]) -> None:
    removed_ever: set[str] = set()
    for (before, after), v in zip(replay(campaign), campaign):
        assert v.upserts or v.removals, "every version changes something"
        keys = [dataset_key(i) for i in v.upserts]
        assert len(keys) == len(set(keys)), "a key appears once per version"
        assert not set(keys) & set(v.removals)
        for key in v.removals:
            assert key in before, f"{key} removed before it exists"
        for item in v.upserts:
            key = dataset_key(item)
            assert key not in removed_ever, f"{key} comes back after withdrawal"
            if key in before:
                assert before[key] != item, f"{key} re-published unchanged"
                assert item["properties"]["created"] == before[key]["properties"]["created"]
                assert item["properties"]["updated"] > before[key]["properties"]["updated"]
        removed_ever.update(v.removals)
        paths = Counter(item_path(i) for i in after.values())
        assert max(paths.values()) == 1, "paths are unique among live datasets"


def test_versions_do_not_share_item_objects(campaign: list[DemoVersion]) -> None:
    fresh = generate_campaign()
    fresh[0].upserts[0]["properties"]["title"] = "changed"
    for v in fresh[1:]:
        for item in v.upserts:
            assert item["properties"]["title"] != "changed"
    assert campaign == generate_campaign()


def test_messages_describe_the_changes(campaign: list[DemoVersion]) -> None:
    text = "\n".join(v.message for v in campaign)
    for word in ("Add", "reprocess", "withdraw", "metadata"):
        assert word.lower() in text.lower()


# --- bulk items -------------------------------------------------------------------------------
def test_generate_items_valid_varied_deterministic() -> None:
    items = generate_items(1000, seed=3)
    assert len(items) == 1000
    assert items == generate_items(1000, seed=3)
    assert generate_items(10, seed=4) != generate_items(10, seed=3)
    keys = {dataset_key(i) for i in items}
    assert len(keys) == 1000
    assert len({data_cid(i) for i in items}) == 1000
    for item in items:
        assert parse_item(item, item["id"]) == item
    assert {i["collection"] for i in items} == set(COLLECTIONS)
    assert {i["geometry"]["type"] for i in items} == {"Point", "LineString"}
    size = sum(len(json.dumps(i)) for i in items) / len(items)
    assert 600 <= size <= 1600, size
    validate_with_pystac(items[0])
    validate_with_pystac(items[2])


def test_generate_items_edge_cases() -> None:
    assert generate_items(0, seed=1) == []
    with pytest.raises(InputError):
        generate_items(-1, seed=1)


def test_mutate_items() -> None:
    items = generate_items(200, seed=5)
    snapshot = json.dumps(items)
    changed = mutate_items(items, 25, seed=9)
    assert json.dumps(items) == snapshot, "input untouched"
    assert changed == mutate_items(items, 25, seed=9)
    assert len(changed) == 25
    by_key = {dataset_key(i): i for i in items}
    keys = [dataset_key(c) for c in changed]
    assert len(set(keys)) == 25
    assert keys == [k for k in by_key if k in set(keys)], "returned in input order"
    for c in changed:
        old = by_key[dataset_key(c)]
        assert parse_item(c, c["id"]) == c
        assert data_cid(c) != data_cid(old)
        assert item_path(c) == item_path(old)
    twice = mutate_items(changed, 25, seed=9)
    assert all(data_cid(a) != data_cid(b) for a, b in zip(changed, twice))


def test_mutate_items_bounds_and_items_without_data_asset() -> None:
    items = generate_items(3, seed=1)
    with pytest.raises(InputError):
        mutate_items(items, 4, seed=1)
    assert mutate_items(items, 0, seed=1) == []
    bare = [{**items[0], "assets": {}}]
    (c,) = mutate_items(bare, 1, seed=1)
    assert data_cid(c) is not None
