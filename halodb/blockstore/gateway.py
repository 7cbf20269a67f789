"""A read-only block store over trustless HTTP gateways (``--store https://host/``).

Blocks are asked for as ``GET /ipfs/{cid}?format=raw`` with
``Accept: application/vnd.ipld.raw`` and verified against their CID before anything else
sees them: a gateway answering with wrong bytes is treated like one that failed, and the
next gateway is asked. HTTP 429 and 5xx are retried with exponential backoff; 404 and
410 mean the gateway does not have the block. Batches are fetched concurrently, bounded
by ``concurrency``.

>>> GatewayStore(["http://127.0.0.1:8080"]).gateways
['http://127.0.0.1:8080/']
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import httpx

from halodb.blockstore._boundary import HTTPX
from halodb.blockstore.base import BlockStore
from halodb.blockstore.car import import_car
from halodb.errors import BlockStoreError, CarError, StoreURLError, VerificationError
from halodb.ipld import CID

RAW_BLOCK = "application/vnd.ipld.raw"
CAR_V1 = "application/vnd.ipld.car; version=1"
_RETRY_STATUS = {429, 500, 502, 503, 504}
_ABSENT_STATUS = {404, 410}
_MISMATCH = "answered with bytes that do not match the CID"
#: Why a gateway's CAR of a whole DAG is not taken (the next gateway is asked).
_DAG_FAILURES: tuple[type[BaseException], ...] = (*HTTPX.caught, CarError, VerificationError)


def discover_gateways(env: Mapping[str, str] | None = None, home: Path | None = None) -> list[str]:
    """Gateways found the way other IPFS tools look for them, in this order:

    ``$IPFS_GATEWAY`` (several may be separated by commas or whitespace), then the first
    line(s) of ``$IPFS_PATH/gateway``, ``~/.ipfs/gateway``, ``$XDG_CONFIG_HOME/ipfs/gateway``
    and ``/etc/ipfs/gateway``. Empty when none is configured.

    >>> discover_gateways({"IPFS_GATEWAY": "http://127.0.0.1:8080, https://gw.example/"}, Path("/nonexistent"))
    ['http://127.0.0.1:8080', 'https://gw.example/']
    """
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    if env.get("IPFS_GATEWAY", "").strip():
        return [g for g in re.split(r"[\s,]+", env["IPFS_GATEWAY"].strip()) if g]
    files = []
    if env.get("IPFS_PATH"):
        files.append(Path(env["IPFS_PATH"]) / "gateway")
    files.append(home / ".ipfs" / "gateway")
    files.append(Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "ipfs" / "gateway")
    files.append(Path("/etc/ipfs/gateway"))
    for f in files:
        try:
            found = [line.strip() for line in f.read_text().splitlines() if line.strip()]
        except OSError:
            continue
        if found:
            return found
    return []


class GatewayStore(BlockStore):
    """Read-only blocks from one or more trustless gateways, tried in order."""

    supports_writes = False
    is_remote = True
    supports_dag_export = True

    def __init__(
        self,
        gateways: list[str],
        *,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.25,
        concurrency: int = 8,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__()
        if not gateways:
            raise StoreURLError("no gateway given", url="")
        self.gateways = [g.rstrip("/") + "/" for g in gateways]
        self.retries = retries
        self.backoff = backoff
        self.concurrency = concurrency
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)
        self._own_client = client is None
        self.requests = 0  #: HTTP requests made (benchmarks)
        self.bytes_received = 0  #: response bytes received

    def describe(self) -> str:
        return "gateway " + ", ".join(self.gateways)

    @property
    def client(self) -> httpx.Client:
        """The HTTP client (shared with other gateway requests, e.g. IPNS records)."""
        return self._client

    def _fetch(self, gateway: str, cid: CID) -> tuple[bytes | None, str]:
        """Ask one gateway (with retries): (verified bytes | None, why not)."""
        url = f"{gateway}ipfs/{cid}"
        why = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                self.requests += 1
                r = self._client.get(url, params={"format": "raw"}, headers={"Accept": RAW_BLOCK})
            except HTTPX.caught as exc:  # recorded; the failures of every gateway become one BlockStoreError
                why = f"{type(exc).__name__}: {exc}"
                continue
            self.bytes_received += len(r.content)
            if r.status_code == 200:
                if cid.verify(r.content):
                    return r.content, ""
                return None, _MISMATCH
            if r.status_code in _ABSENT_STATUS:
                return None, "absent"
            why = f"HTTP {r.status_code}"
            if r.status_code not in _RETRY_STATUS:
                break
        return None, why

    def _get(self, cid: CID) -> bytes | None:
        failures = []
        for gateway in self.gateways:
            data, why = self._fetch(gateway, cid)
            if data is not None:
                return data
            if why != "absent":
                failures.append(f"{gateway}: {why}")
        if any(_MISMATCH in f for f in failures):
            raise VerificationError(
                f"no gateway returned block {cid} intact: " + "; ".join(failures), cid=cid, source=self.describe()
            )
        if failures:
            raise BlockStoreError(
                f"no gateway returned block {cid}: " + "; ".join(failures), cid=cid, store=self.describe()
            )
        return None

    def fetch_dag(self, root: CID, into: BlockStore) -> int:
        """Fetch the whole DAG under ``root`` as ONE CAR request and import it into ``into``.

        Asks ``GET /ipfs/{root}?format=car&dag-scope=all``. Every block is verified and the
        CAR must be complete (every link present in it or already in ``into``), else the
        next gateway is asked; nothing is written from a bad CAR. Returns the blocks imported.
        """
        failures = []
        for gateway in self.gateways:
            try:
                self.requests += 1
                with self._client.stream(
                    "GET", f"{gateway}ipfs/{root}", params={"format": "car", "dag-scope": "all"},
                    headers={"Accept": CAR_V1},
                ) as r:
                    if r.status_code != 200:
                        failures.append(f"{gateway}: HTTP {r.status_code}")
                        continue
                    with tempfile.TemporaryFile() as f:
                        for chunk in r.iter_bytes():
                            self.bytes_received += len(chunk)
                            f.write(chunk)
                        f.seek(0)
                        before = into.stats.blocks_written
                        import_car(into, f)
                        return into.stats.blocks_written - before
            except _DAG_FAILURES as exc:
                failures.append(f"{gateway}: {exc}")
        raise BlockStoreError(f"no gateway returned the DAG of {root} whole: " + "; ".join(failures),
                              cid=root, store=self.describe())

    def _has(self, cid: CID) -> bool:
        return self._get(cid) is not None

    def _get_many(self, cids: list[CID]) -> dict[CID, bytes]:
        if len(cids) <= 1 or self.concurrency <= 1:
            return super()._get_many(cids)
        with ThreadPoolExecutor(self.concurrency) as pool:
            found = list(pool.map(self._get, cids))
        return {cid: data for cid, data in zip(cids, found) if data is not None}

    def close(self) -> None:
        if self._own_client:
            self._client.close()
