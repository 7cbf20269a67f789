"""`halodb tree build --publish`: a campaign root folder named by DNSLink (real BIND) and read
back by `tree export` and `scan` through that name; local names are refused before anything is built."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .conftest import run_cli


def test_tree_build_publishes_the_root_under_a_dnslink_name(kubo: Any, dns_server: Any, tmp_path: Path,
                                                             home: Path) -> None:
    leaves = {name: kubo.ipfs("add", "-Q", "--cid-version", "1", input=f"{name} data".encode()).decode().strip()
              for name in ("a.txt", "b.txt")}
    tree = {"products": {"HALO": {"a.txt": leaves["a.txt"]}, "b.txt": leaves["b.txt"]}}
    (tmp_path / "tree.yaml").write_text(yaml.safe_dump(tree))
    env = {"HALODB_NAMESERVER": dns_server.nameserver, "HALODB_TSIG_KEY": dns_server.key_env}
    name = "dnslink:data.campaign.test"

    r = run_cli(home, "--store", kubo.api, "tree", "build", str(tmp_path / "tree.yaml"), "--publish", name,
                "--json", env=env)
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["pinned"] and out["published"] == name
    assert dns_server.txt("_dnslink.data.campaign.test") == [f"dnslink=/ipfs/{out['root']}"]
    assert out["root"] in kubo.ipfs("pin", "ls", "--type", "recursive", "-q").decode()
    r = run_cli(home, "--store", kubo.api, "tree", "export", name, env=env)
    assert r.code == 0, r.err
    assert yaml.safe_load(r.out) == tree

    # a local name would be read as a commit by log, sync and gc: refused, nothing built
    before = set(kubo.ipfs("pin", "ls", "--type", "recursive", "-q").decode().split())  # Kubo lists pins in no fixed order
    tree["products"]["c.txt"] = leaves["a.txt"]
    (tmp_path / "tree.yaml").write_text(yaml.safe_dump(tree))
    r = run_cli(home, "--store", kubo.api, "tree", "build", str(tmp_path / "tree.yaml"), "--publish", "latest")
    assert r.code == 2 and "local names point at commits" in r.err
    assert set(kubo.ipfs("pin", "ls", "--type", "recursive", "-q").decode().split()) == before
