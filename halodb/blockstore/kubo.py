"""A block store backed by a Kubo (go-ipfs) node, through its RPC API over httpx.

``--store kubo+http://127.0.0.1:5001``. Reads ask the node with ``offline=true``, so an
absent block is reported at once instead of being searched for on the network (fetching
from peers is the gateway backend's job); batched writes go as one CAR through
``dag/import``, not one request per block. Kubo keys blocks by multihash, so it cannot
list them under their original codec: ``supports_listing`` is False.

>>> KuboStore.api_base("kubo+http://127.0.0.1:5001")
'http://127.0.0.1:5001/api/v0/'
"""

from __future__ import annotations

import io
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from halodb.blockstore._boundary import HTTPX
from halodb.blockstore.base import Block, BlockStore
from halodb.blockstore.car import import_car, write_car
from halodb.errors import BlockStoreError, StoreURLError
from halodb.ipld import CID, DAG_CBOR, DAG_PB, RAW

_CODEC_NAMES = {DAG_CBOR: "dag-cbor", RAW: "raw", DAG_PB: "dag-pb"}


class KuboStore(BlockStore):
    """Blocks in a Kubo node, addressed by its RPC API URL."""

    supports_deletes = True
    supports_listing = False
    supports_pinning = True
    is_remote = True
    supports_dag_export = True

    def __init__(self, url: str, *, timeout: float = 60.0, concurrency: int = 8,
                 client: httpx.Client | None = None) -> None:
        super().__init__()
        self.url = url
        self.concurrency = concurrency  #: block/get requests in flight at once in get_many
        self.base = self.api_base(url)
        self._client = client or httpx.Client(timeout=timeout)
        self._own_client = client is None

    @staticmethod
    def api_base(url: str) -> str:
        """The RPC base URL of a ``kubo+http://host:port`` store URL."""
        if not url.startswith(("kubo+http://", "kubo+https://")):
            raise StoreURLError(f"not a Kubo store URL: {url!r} (expected kubo+http://host:port)", url=url)
        return url[len("kubo+"):].rstrip("/") + "/api/v0/"

    def describe(self) -> str:
        return f"Kubo node at {self.url}"

    # -- RPC ------------------------------------------------------------------------------
    def _rpc(self, command: str, params: dict[str, Any], *, content: bytes | None = None) -> httpx.Response:
        files = {"file": ("data", content, "application/octet-stream")} if content is not None else None
        try:
            return self._client.post(self.base + command, params=params, files=files)
        except HTTPX.caught as exc:
            raise HTTPX.translate(exc, f"cannot reach {self.describe()} ({command}): {exc}", store=self.url) from exc

    def call(self, command: str, **params: Any) -> Any:
        """Run one RPC command and return its decoded JSON answer; ``BlockStoreError`` (with
        Kubo's own message) when the node refuses.

        Used beyond blocks, e.g. by :mod:`halodb.naming.ipns` for ``name/publish``.
        """
        r = self._rpc(command, {k.replace("_", "-"): v for k, v in params.items()})
        if r.status_code != 200:
            raise self._fail(command, r)
        return r.json() if r.content.strip() else None

    @staticmethod
    def _message(response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return response.text.strip()
        return str(body.get("Message", body)) if isinstance(body, dict) else str(body)

    def _fail(self, command: str, response: httpx.Response, cid: CID | None = None) -> BlockStoreError:
        return BlockStoreError(
            f"{self.describe()} refused {command}: HTTP {response.status_code}: {self._message(response)}",
            store=self.url,
            cid=cid,
        )

    @staticmethod
    def _not_found(response: httpx.Response) -> bool:
        return response.status_code == 500 and "not found" in response.text.lower()

    # -- primitives -----------------------------------------------------------------------
    def _get(self, cid: CID) -> bytes | None:
        r = self._rpc("block/get", {"arg": str(cid), "offline": "true"})
        if r.status_code == 200:
            return r.content
        if self._not_found(r):
            return None
        raise self._fail("block/get", r, cid)

    def _has(self, cid: CID) -> bool:
        r = self._rpc("block/stat", {"arg": str(cid), "offline": "true"})
        if r.status_code == 200:
            return True
        if self._not_found(r):
            return False
        raise self._fail("block/stat", r, cid)

    def _put(self, cid: CID, data: bytes) -> None:
        codec = _CODEC_NAMES.get(cid.codec)
        if codec is None:
            self._put_many([(cid, data)])
            return
        r = self._rpc("block/put", {"cid-codec": codec, "mhtype": "sha2-256", "pin": "false"}, content=data)
        if r.status_code != 200:
            raise self._fail("block/put", r, cid)
        key = r.json().get("Key")
        if key is None or CID.parse(key).multihash != cid.multihash:
            raise BlockStoreError(f"{self.describe()} stored block {cid} as {key}", store=self.url, cid=cid)

    def _get_many(self, cids: list[CID]) -> dict[CID, bytes]:
        if len(cids) <= 1 or self.concurrency <= 1:
            return super()._get_many(cids)
        with ThreadPoolExecutor(min(self.concurrency, len(cids))) as pool:
            found = list(pool.map(self._get, cids))
        return {cid: data for cid, data in zip(cids, found) if data is not None}

    def _put_many(self, blocks: list[Block]) -> None:
        buf = io.BytesIO()
        write_car(buf, [], blocks)
        r = self._rpc("dag/import", {"pin-roots": "false", "stats": "false"}, content=buf.getvalue())
        if r.status_code != 200:
            raise self._fail("dag/import", r)
        for line in r.text.splitlines():  # a stream of JSON objects; errors arrive in-band
            if line.strip() and "Message" in (obj := json.loads(line)) and obj.get("Type") == "error":
                raise BlockStoreError(f"{self.describe()} dag/import failed: {obj['Message']}", store=self.url)

    def _delete(self, cid: CID) -> None:
        r = self._rpc("block/rm", {"arg": str(cid), "force": "true"})
        if r.status_code != 200:
            raise self._fail("block/rm", r, cid)

    def fetch_dag(self, root: CID, into: BlockStore) -> int:
        """Bulk read: the whole DAG under ``root`` as ONE CAR (``dag/export``), verified and
        checked for completeness, imported into ``into``; returns the blocks imported."""
        try:
            with self._client.stream("POST", self.base + "dag/export", params={"arg": str(root), "offline": "true"}) as r:
                if r.status_code != 200:
                    r.read()
                    raise self._fail("dag/export", r, root)
                with tempfile.TemporaryFile() as f:
                    for chunk in r.iter_bytes():
                        f.write(chunk)
                    f.seek(0)
                    before = into.stats.blocks_written
                    import_car(into, f)
                    return into.stats.blocks_written - before
        except HTTPX.caught as exc:
            raise HTTPX.translate(exc, f"cannot reach {self.describe()} (dag/export): {exc}", store=self.url) from exc

    def pin(self, cid: CID, *, replaces: CID | None = None) -> None:
        """Pin ``cid`` recursively; with ``replaces``, move that pin (``pin/update``, unpinning it;
        when ``cid`` is pinned already, ``replaces`` is only unpinned).

        Runs offline: every block must already be in the node, or the pin fails with an error
        naming what is missing instead of searching the network.
        """
        if replaces is not None and replaces != cid and self._pinned(replaces):
            r = self._rpc("pin/update", {"arg": [str(replaces), str(cid)], "unpin": "true", "offline": "true"})
            if r.status_code == 200:
                return
            if "already recursively pinned" not in r.text:
                raise self._fail("pin/update", r, cid)
            # ``cid`` is pinned already (another name's head, a follower's pin): only the old pin
            # goes, as ``pin/update`` would have removed it
            r = self._rpc("pin/rm", {"arg": str(replaces), "recursive": "true"})
            if r.status_code != 200 and "not pinned" not in r.text:
                raise self._fail("pin/rm", r, replaces)
            return
        r = self._rpc("pin/add", {"arg": str(cid), "recursive": "true", "offline": "true"})
        if r.status_code != 200:
            raise self._fail("pin/add", r, cid)

    def _pinned(self, cid: CID) -> bool:
        r = self._rpc("pin/ls", {"arg": str(cid), "type": "recursive", "offline": "true"})
        return r.status_code == 200

    def close(self) -> None:
        if self._own_client:
            self._client.close()
