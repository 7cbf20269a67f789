"""UnixFS trees added by a real Kubo, read back through the Kubo RPC and gateway block stores.

Every listing and every file's bytes (whole and random ranges) are compared with the local
folder that ``ipfs add -r`` read, for CIDv0 and CIDv1, raw and dag-pb leaves, tiny chunks
(multi-level files), trickle DAGs, inlined identity CIDs, preserved mode/mtime, and
HAMT-sharded folders (fanout 16 and 256). Malformed blocks and absurd trees are hand-made.
"""

from __future__ import annotations

import base64
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from halodb.blockstore import BlockStore, MemoryStore
from halodb.blockstore.gateway import GatewayStore
from halodb.blockstore.kubo import KuboStore
from halodb.errors import BlockNotFoundError, InputError, TreePathError, UnixFSError
from halodb.ipld import CID, RAW, encode
from halodb.filetree import LocalTree
from halodb.unixfs import UnixFSTree, decode_pb, walk_tree
from halodb.unixfs.build import encode_data, encode_pb, put_directory, put_file, put_pb, put_symlink
from halodb.unixfs.data import FILE, HAMT_SHARD, decode_data

from .conftest import shared_data

SIZES = [0, 1, 255, 256, 257, 1000, 4096, 70_000, 300_000]
OPTIONS = {
    "v0": ["--cid-version", "0"],
    "v1-raw": ["--cid-version", "1", "--raw-leaves"],
    "chunk256": ["--chunker", "size-256"],
    "chunk256-raw-v1": ["--chunker", "size-256", "--raw-leaves", "--cid-version", "1"],
    "trickle": ["--trickle", "--chunker", "size-256"],
    "inline": ["--cid-version", "1", "--inline", "--inline-limit", "64"],
    "mtime": ["--preserve-mode", "--preserve-mtime"],
    "hamt16": ["--cid-version", "1", "--max-directory-links", "8", "--max-hamt-fanout", "16"],
    "hamt256": ["--max-directory-links", "100"],
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nested folders, files of many sizes, odd names, and a 300-entry folder."""
    rng = random.Random(5)
    root = tmp_path_factory.mktemp("unixfs") / "campaign"
    (root / "ds.zarr" / "time").mkdir(parents=True)
    (root / "ds.zarr" / ".zgroup").write_text('{"zarr_format": 2}')
    (root / "ds.zarr" / "time" / ".zarray").write_text('{"chunks": [10]}')
    (root / "ds.zarr" / "time" / "0").write_bytes(rng.randbytes(80))
    sizes = root / "sizes"
    sizes.mkdir()
    for size in SIZES:
        (sizes / f"f{size}.bin").write_bytes(rng.randbytes(size))
    (root / "odd names").mkdir()
    (root / "odd names" / "été 2024.txt").write_text("sommer", encoding="utf-8")
    (root / "odd names" / "empty").mkdir()
    big = root / "big"
    big.mkdir()
    for i in range(300):
        (big / f"n{i:04d}.txt").write_bytes(f"entry {i}\n".encode() * (i % 7))
    return root


@pytest.fixture(scope="module")
def roots(kubo: Any, folder: Path) -> dict[str, str]:
    """The root CID of ``folder`` added with each option set (``-H``: Zarr's dot files are hidden files)."""
    return {name: kubo.ipfs("add", "-r", "-Q", "-E", "-H", *opts, str(folder)).decode().strip()
            for name, opts in OPTIONS.items()}


@pytest.fixture(params=["kubo", "gateway"])
def store(request: pytest.FixtureRequest, kubo: Any) -> Iterator[BlockStore]:
    s: BlockStore = KuboStore(kubo.api) if request.param == "kubo" else GatewayStore([kubo.gateway])
    yield s
    s.close()


def _local_paths(root: Path) -> dict[str, str]:
    out = {"": "dir"}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        for name in dirnames:
            out[(rel / name).as_posix()] = "dir"
        for name in filenames:
            out[(rel / name).as_posix()] = "file"
    return out


@pytest.mark.parametrize("option", list(OPTIONS))
def test_tree_matches_the_folder(option: str, store: BlockStore, roots: dict[str, str], folder: Path) -> None:
    tree = UnixFSTree(store, roots[option])
    local = LocalTree(folder)
    rng = random.Random(option)
    walked = {entry.path: entry.kind for entry in tree.walk()}
    assert walked == _local_paths(folder)
    for path, kind in walked.items():
        assert tree.stat(path) == local.stat(path) if path else tree.stat(path) is not None
        if kind == "dir":
            assert tree.list(path) == local.list(path), path
            continue
        data = local.read(path)
        assert tree.read(path) == data, path
        for _ in range(4):
            start = rng.randrange(len(data) + 1)
            end = rng.randrange(start, len(data) + 3)
            assert tree.read(path, start, end) == data[start:end], (path, start, end)
        assert tree.read(path, len(data) + 5) == b""


def test_cid_versions_inline_cids_and_mtime_are_really_used(kubo: Any, roots: dict[str, str], folder: Path) -> None:
    assert CID.parse(roots["v0"]).version == 0 and roots["v0"].startswith("Qm")
    store = KuboStore(kubo.api)
    inline = [e for e in walk_tree(store, roots["inline"]) if e.cid.inline_data is not None]
    assert any(e.kind == "file" for e in inline)
    raw = [e for e in walk_tree(store, roots["v1-raw"]) if e.cid.codec == RAW]
    assert len(raw) > 300
    tree = UnixFSTree(store, roots["mtime"])
    node = tree.node(tree.resolve("sizes/f1.bin") or tree.root)
    local = os.stat(folder / "sizes" / "f1.bin")
    assert node.fs is not None and node.fs.mtime is not None and node.fs.mode is not None
    assert node.fs.mtime[0] == int(local.st_mtime) and node.fs.mode == local.st_mode & 0o7777


@pytest.mark.parametrize(("option", "fanout"), [("hamt16", 16), ("hamt256", 256)])
def test_big_folders_are_hamt_sharded_and_looked_up_by_hash(kubo: Any, roots: dict[str, str], option: str,
                                                            fanout: int) -> None:
    store = KuboStore(kubo.api)
    tree = UnixFSTree(store, roots[option])
    big = tree.node(tree.resolve("big") or tree.root)
    assert big.fs is not None and big.fs.type == HAMT_SHARD and big.fs.fanout == fanout and big.pb is not None
    width = len(f"{fanout - 1:X}")
    assert any(len(link.name or "") == width for link in big.pb.links)  # sub-shards exist
    dag_pb_entries = {link.cid for link in tree.links(big).values() if link.cid.codec != RAW}
    # A fresh tree resolves names by hashing, without listing the folder first.
    fresh = UnixFSTree(store, roots[option])
    fresh.resolve("big")
    store.stats.reset()
    for i in range(0, 300, 37):
        entry = fresh.stat(f"big/n{i:04d}.txt")
        assert entry is not None and entry.size == len(f"entry {i}\n") * (i % 7)
    assert fresh.stat("big/missing.txt") is None
    lookups = store.stats.blocks_read
    assert fresh.node(fresh.resolve("big") or fresh.root)._names is None  # never listed
    store.stats.reset()
    names = UnixFSTree(store, roots[option]).names("big")
    shards = store.stats.blocks_read
    assert names == sorted(f"n{i:04d}.txt" for i in range(300))
    store.stats.reset()
    assert len(UnixFSTree(store, roots[option]).list("big")) == 300
    # names() reads only shards; list() also reads every distinct dag-pb entry (raw leaves are sized by Tsize).
    assert store.stats.blocks_read == shards + len(dag_pb_entries) and lookups < store.stats.blocks_read
    assert (len(dag_pb_entries) > 200) == (option == "hamt256")


def test_range_reads_fetch_only_the_chunks_they_need(kubo: Any, roots: dict[str, str], folder: Path) -> None:
    store = KuboStore(kubo.api)
    tree = UnixFSTree(store, roots["chunk256"])
    root_node = tree.node(tree.resolve("sizes/f300000.bin") or tree.root)
    assert root_node.fs is not None and root_node.pb is not None and len(root_node.pb.links) > 1
    child = tree.node(root_node.pb.links[0].cid)
    assert child.pb is not None and child.pb.links, "expected a file DAG of more than two levels"
    store.stats.reset()
    fresh = UnixFSTree(store, roots["chunk256"])
    data = (folder / "sizes" / "f300000.bin").read_bytes()
    assert fresh.read("sizes/f300000.bin", 150_000, 150_300) == data[150_000:150_300]
    # 3 folders/file root + 1 inner node + 2 leaves (the range crosses a chunk boundary) ...
    assert store.stats.blocks_read <= 8
    # ... out of more than a thousand 256-byte chunks.
    assert len(data) // 256 > 1000


def test_missing_paths_and_wrong_kinds(kubo: Any, roots: dict[str, str]) -> None:
    tree = UnixFSTree(KuboStore(kubo.api), roots["v1-raw"])
    assert tree.stat("nope") is None and tree.stat("sizes/f1.bin/deeper") is None
    assert not tree.exists("big/nope.txt") and tree.exists("big/n0001.txt")
    with pytest.raises(TreePathError) as err:
        tree.list("sizes/f1.bin")
    assert err.value.path == "sizes/f1.bin"
    with pytest.raises(TreePathError):
        tree.read("sizes")
    with pytest.raises(TreePathError):
        tree.read("sizes/none.bin")
    with pytest.raises(TreePathError):
        tree.list("../x")
    with pytest.raises(InputError):
        tree.read("sizes/f1000.bin", -1)
    assert tree.list("/odd names/") == tree.list("odd names") and tree.list("odd names/empty") == []


def test_symlinks_are_listed_but_not_followed(kubo: Any, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "target.txt").write_text("t")
    (tmp_path / "d" / "link").symlink_to("target.txt")
    root = kubo.ipfs("add", "-r", "-Q", str(tmp_path / "d")).decode().strip()
    tree = UnixFSTree(KuboStore(kubo.api), root)
    assert [(e.name, e.is_dir, e.size) for e in tree.list("")] == [("link", False, 10), ("target.txt", False, 1)]
    assert [e.kind for e in tree.walk()] == ["dir", "symlink", "file"]
    with pytest.raises(TreePathError, match="symbolic link to 'target.txt'"):
        tree.read("link")


def test_depth_and_size_limits(kubo: Any, tmp_path: Path) -> None:
    deep = tmp_path / "deep"
    path = deep
    for i in range(70):
        path = path / f"d{i}"
    path.mkdir(parents=True)
    (path / "bottom.txt").write_text("bottom")
    root = kubo.ipfs("add", "-r", "-Q", str(deep)).decode().strip()
    store = KuboStore(kubo.api)
    with pytest.raises(UnixFSError, match="deeper than 64 levels") as err:
        list(walk_tree(store, root))
    assert err.value.path.count("/") == 64 and err.value.cid == CID.parse(root)
    assert [e.path for e in walk_tree(store, root, max_depth=71)][-1].endswith("d69/bottom.txt")
    with pytest.raises(UnixFSError, match="more than 10 entries"):
        list(walk_tree(store, root, max_depth=100, max_entries=10))
    assert UnixFSTree(store, root).read("/".join(f"d{i}" for i in range(70)) + "/bottom.txt") == b"bottom"


def test_prune_stops_at_dataset_folders(kubo: Any, roots: dict[str, str]) -> None:
    store = KuboStore(kubo.api)
    seen = []

    def prune(path: str, names: Any) -> bool:
        seen.append(path)
        return ".zgroup" in names

    paths = [e.path for e in walk_tree(store, roots["v0"], prune=prune)]
    assert "ds.zarr" in paths and not any(p.startswith("ds.zarr/") for p in paths)
    assert "" in seen and "ds.zarr" in seen and "big" in seen


# -- malformed input --------------------------------------------------------------------------
def test_dag_pb_blocks_that_are_not_unixfs(kubo: Any) -> None:
    store = KuboStore(kubo.api)
    no_data = put_pb(store, encode_pb([], None))
    not_unixfs = put_pb(store, encode_pb([], b"\xff\xff\xff"))
    bad_pb = put_pb(store, b"\x0a\x05ab")  # Data runs past the end
    cbor = store.put(encode({"a": 1}))
    for cid, why in [(no_data, "without UnixFS Data"), (not_unixfs, "not a valid UnixFS node"),
                     (bad_pb, "runs past the end"), (cbor, "not dag-pb or raw")]:
        with pytest.raises(UnixFSError, match=why) as err:
            UnixFSTree(store, cid).list("")
        assert err.value.cid == cid
    parent = put_directory(store, {"ok.txt": put_file(store, b"ok"), "broken": not_unixfs})
    tree = UnixFSTree(store, parent)
    assert tree.read("ok.txt") == b"ok"
    with pytest.raises(UnixFSError) as err:
        tree.list("")  # the listing needs the broken child's kind
    assert err.value.cid == not_unixfs
    with pytest.raises(UnixFSError) as err:
        tree.stat("broken")
    assert err.value.path == "broken"


def test_lying_and_missing_file_chunks() -> None:
    store = MemoryStore()
    chunk = store.put(b"x" * 10, codec=RAW)
    lies = put_pb(store, encode_pb([(chunk, "", 10)], encode_data(FILE, filesize=20, blocksizes=(20,))))
    ghost = CID.for_bytes(b"never stored", RAW)
    hole = put_pb(store, encode_pb([(chunk, "", 10), (ghost, "", 12)], encode_data(FILE, filesize=22, blocksizes=(10, 12))))
    mismatch = put_pb(store, encode_pb([(chunk, "", 10)], encode_data(FILE, filesize=10, blocksizes=(10, 5))))
    root = put_directory(store, {"lies": lies, "hole": hole, "mismatch": mismatch})
    tree = UnixFSTree(store, root)
    with pytest.raises(UnixFSError, match="holds 10 bytes where 20 were declared") as err:
        tree.read("lies")
    assert err.value.path == "lies"
    assert tree.read("hole", 0, 10) == b"x" * 10  # the chunks before the hole are fine
    with pytest.raises(BlockNotFoundError) as missing:
        tree.read("hole", 5, 15)
    assert missing.value.cid == ghost and missing.value.path == "hole"
    with pytest.raises(UnixFSError, match="1 links but 2 blocksizes"):
        tree.stat("mismatch")


def test_hamt_shards_with_bad_names_or_fanout() -> None:
    store = MemoryStore()
    leaf = put_file(store, b"v")
    for fanout, name, why in [(256, "ZZa", "does not start with a 2-digit slot"), (100, "00a", "not a power of two"),
                              (16, "a", "does not start with a 1-digit slot")]:
        shard = put_pb(store, encode_pb([(leaf, name, 1)], encode_data(HAMT_SHARD, data=b"\x01", hash_type=0x22,
                                                                        fanout=fanout)))
        with pytest.raises(UnixFSError, match=why):
            UnixFSTree(store, shard).list("")
    wrong_hash = put_pb(store, encode_pb([], encode_data(HAMT_SHARD, hash_type=0x12, fanout=256)))
    with pytest.raises(UnixFSError, match="not murmur3"):
        UnixFSTree(store, wrong_hash).list("")


# -- codecs -------------------------------------------------------------------------------------
def test_dag_pb_codec_fixtures() -> None:
    base = shared_data("ipld-codec-fixtures")
    checked = 0
    for block_file in sorted(base.glob("fixtures/*/*.dag-pb")):
        expected = json.loads(next(block_file.parent.glob("*.dag-json")).read_text())
        data = block_file.read_bytes()
        assert CID.parse(block_file.stem).verify(data)
        node = decode_pb(data)
        want_data = expected.get("Data")
        assert node.data == (None if want_data is None else base64.b64decode(want_data["/"]["bytes"] + "=="))
        got = [{"Hash": str(link.cid), "Name": link.name, "Tsize": link.tsize} for link in node.links]
        assert got == [{"Hash": link["Hash"]["/"], "Name": link.get("Name"), "Tsize": link.get("Tsize")}
                       for link in expected.get("Links", [])], block_file.parent.name
        checked += 1
    assert checked >= 15
    negatives = json.loads((base / "negative-fixtures" / "dag-pb" / "decode" / "edges.json").read_text())
    for case in negatives:
        with pytest.raises(UnixFSError):
            decode_pb(bytes.fromhex(case["hex"]))
    assert len(negatives) >= 9


def test_unixfs_data_round_trip_and_strictness() -> None:
    d = decode_data(encode_data(FILE, data=b"abc", filesize=9, blocksizes=(3, 6)))
    assert (d.type, d.data, d.filesize, d.blocksizes) == (FILE, b"abc", 9, (3, 6))
    assert decode_data(bytes.fromhex("0802" + "2202" + "0306")).blocksizes == (3, 6)  # packed blocksizes
    for bad, why in [("", "without a Type"), ("0809", "unknown node type"), ("0a00", "wrong wire type"),
                     ("08", "truncated varint")]:
        with pytest.raises(UnixFSError, match=why):
            decode_data(bytes.fromhex(bad))


def test_builder_matches_kubo_for_flat_folders(kubo: Any, tmp_path: Path) -> None:
    """The hand-made blocks the tests above rely on are what Kubo makes for the same folder."""
    (tmp_path / "flat").mkdir()
    files = {"a.txt": b"alpha", "b.bin": bytes(range(200)), "z": b""}
    for name, content in files.items():
        (tmp_path / "flat" / name).write_bytes(content)
    expected = kubo.ipfs("add", "-r", "-Q", "--cid-version", "1", "--raw-leaves", str(tmp_path / "flat")).decode()
    store = MemoryStore()
    assert str(put_directory(store, {n: put_file(store, c) for n, c in files.items()})) == expected.strip()
    link = put_symlink(store, "a.txt")
    (tmp_path / "flat" / "link").symlink_to("a.txt")
    expected = kubo.ipfs("add", "-r", "-Q", "--cid-version", "1", "--raw-leaves", str(tmp_path / "flat")).decode()
    entries = {n: put_file(store, c) for n, c in files.items()} | {"link": link}
    assert str(put_directory(store, entries)) == expected.strip()


def test_a_folder_that_contains_itself_is_reported() -> None:
    class Unverified(MemoryStore):
        trusted_reads = True  # fault injection: a store that hands out blocks unchecked

    store = Unverified()
    loop = CID.parse("bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
    store._put(loop, encode_pb([(loop, "again", 1)], encode_data(1)))
    with pytest.raises(UnixFSError, match="folder again contains itself") as err:
        list(walk_tree(store, loop))
    assert err.value.path == "again"


def test_identity_cids_verify_their_inline_bytes() -> None:
    inline = CID.parse("bafkqaa3bmjrq")  # raw codec, identity multihash of b"abc"
    assert inline.inline_data == b"abc" and inline.verify(b"abc")
    assert not inline.verify(b"abd") and not inline.verify(b"abcd")
    assert CID.for_bytes(b"x", RAW).inline_data is None


# -- campaign trees in MFS ------------------------------------------------------------------
@pytest.fixture(scope="module")
def datasets(kubo: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Leaf CIDs of real datasets and files added to the node, by kind."""
    base = tmp_path_factory.mktemp("datasets")
    (base / "v2.zarr" / "time").mkdir(parents=True)
    (base / "v2.zarr" / ".zgroup").write_text('{"zarr_format": 2}')
    (base / "v2.zarr" / "time" / ".zarray").write_text("{}")
    (base / "v3.zarr").mkdir()
    (base / "v3.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    (base / "consolidated.zarr").mkdir()
    (base / "consolidated.zarr" / ".zmetadata").write_text("{}")
    (base / "sonde").mkdir()
    (base / "sonde" / "dataset_meta.yaml").write_text("title: a sonde\n")
    (base / "sonde" / "data.csv").write_text("t,p\n0,1000\n")
    (base / "flight-ids.json").write_text('["HALO-20240811a"]')
    out = {}
    for name in ["v2.zarr", "v3.zarr", "consolidated.zarr", "sonde"]:
        out[name] = kubo.ipfs("add", "-r", "-Q", "-H", str(base / name)).decode().strip()
    out["file-v1"] = kubo.ipfs("add", "-Q", "--cid-version", "1", str(base / "flight-ids.json")).decode().strip()
    out["file-v0"] = kubo.ipfs("add", "-Q", "--cid-version", "0", str(base / "sonde" / "data.csv")).decode().strip()
    return out


def _mfs_names(kubo: Any) -> list[str]:
    names: list[str] = kubo.ipfs("files", "ls", "/").decode().split()
    return names


def test_build_and_export_round_trip(kubo: Any, datasets: dict[str, str], tmp_path: Path) -> None:
    import yaml

    from halodb.campaign import load_tree
    from halodb.unixfs.mfs import build_tree, export_tree

    text = f"""
meta:
  flight-ids: {datasets["file-v1"]}
products:
  HALO:
    BAHAMAS.zarr: {datasets["v2.zarr"]}
    radar.zarr: {datasets["v3.zarr"]}
    dropsondes:
      Level_3: {datasets["consolidated.zarr"]}
  RV Meteor:
    radiosondes: {datasets["sonde"]}
    notes.csv: {datasets["file-v0"]}
  empty: null
"""
    (tmp_path / "tree.yaml").write_text(text)
    tree = load_tree(tmp_path / "tree.yaml")
    before = _mfs_names(kubo)
    root = build_tree(kubo.api, tree)
    assert _mfs_names(kubo) == before  # the temporary MFS folder is gone
    assert root.version == 1
    store = KuboStore(kubo.api)
    exported = export_tree(store, root)
    assert exported == tree
    assert yaml.safe_load(yaml.safe_dump(exported)) == tree
    ufs = UnixFSTree(store, root)
    assert ufs.read("products/HALO/BAHAMAS.zarr/.zgroup") == b'{"zarr_format": 2}'
    assert ufs.list("products/empty") == []
    assert build_tree(kubo.api.replace("kubo+", ""), tree) == root  # same tree, same root; plain http:// works
    # A leaf that is an ordinary folder (no dataset marker) is walked into on export.
    grouped = {"campaign": {"sondes": str(build_tree(kubo.api, {"a": datasets["sonde"]}))}}
    assert export_tree(store, build_tree(kubo.api, grouped)) == {"campaign": {"sondes": {"a": datasets["sonde"]}}}


def test_build_pins_and_checks_its_input(kubo: Any, datasets: dict[str, str]) -> None:
    from halodb.errors import BlockStoreError
    from halodb.unixfs.mfs import build_tree, export_tree

    root = build_tree(kubo.api, {"x": {"v2.zarr": datasets["v2.zarr"]}}, pin=True, offline=True)
    assert str(root) in kubo.ipfs("pin", "ls", "--type", "recursive", str(root)).decode()
    before = _mfs_names(kubo)
    with pytest.raises(InputError, match="not a CID"):
        build_tree(kubo.api, {"x": "not-a-cid"})
    with pytest.raises(InputError, match="path segment .a/b. is not allowed"):
        build_tree(kubo.api, {"a/b": datasets["v2.zarr"]})
    ghost = CID.for_bytes(b"no node has this block", RAW)
    with pytest.raises(BlockStoreError, match="files/cp"):
        build_tree(kubo.api, {"ok": datasets["v3.zarr"], "ghost": str(ghost)}, offline=True)
    assert _mfs_names(kubo) == before
    with pytest.raises(InputError, match="not a folder"):
        export_tree(KuboStore(kubo.api), datasets["file-v1"])


def test_orcestra_tree_shape_round_trips(kubo: Any) -> None:
    """The real campaign tree's 245 paths, with a small stand-in file for every dataset."""
    from halodb.campaign import flatten_tree, load_tree
    from halodb.unixfs.mfs import build_tree, export_tree

    real = load_tree(shared_data("orcestra", "tree.yaml"))
    paths = flatten_tree(real)
    store = KuboStore(kubo.api)
    stand_ins = {path: CID.for_bytes(f"stand-in for {path}".encode(), RAW) for path in paths}
    store.put_many((cid, f"stand-in for {path}".encode()) for path, cid in stand_ins.items())

    def substitute(node: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in node.items():
            path = f"{prefix}/{name}" if prefix else name
            out[name] = substitute(value, path) if isinstance(value, dict) else (
                None if value is None else str(stand_ins[path]))
        return out

    tree = substitute(real, "")
    root = build_tree(kubo.api, tree, offline=True)
    assert export_tree(store, root) == tree
    assert len(paths) == 245
