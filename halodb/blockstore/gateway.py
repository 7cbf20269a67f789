"""A read-only block store over trustless HTTP gateways (``--store https://host/``).

Blocks are asked for as ``GET /ipfs/{cid}?format=raw`` with
``Accept: application/vnd.ipld.raw`` and verified against their CID before anything else
sees them: a gateway answering with wrong bytes is treated like one that failed, and the
next gateway is asked. HTTP 429 and 5xx are retried with exponential backoff; 404 and
410 mean the gateway does not have the block. Batches are fetched concurrently, bounded
by ``concurrency``.

Every request has a total **deadline** (``deadline`` seconds, default
``$HALODB_GATEWAY_DEADLINE``, else 60) and every answer a **size cap**: a raw block at most
:data:`~halodb.ipld.limits.MAX_BLOCK_SIZE`, an IPNS record at most its 10 KiB, and a CAR only
the blocks of the DAG asked for (checked section by section as it arrives, see
:func:`~halodb.blockstore.car.receive_dag`; ``fetch_dag(max_bytes=...)`` caps it further).
httpx's own timeout bounds each read, not the whole request, so the request runs on a
thread the caller waits for at most the deadline; bodies are streamed and reading stops at
the cap. A gateway past its deadline or its cap has failed (:class:`GatewayError`): the
next one is asked, and it is asked last from then on.

>>> GatewayStore(["http://127.0.0.1:8080"], deadline=5).gateways
['http://127.0.0.1:8080/']
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Generic, TypeVar, cast

import httpx

from halodb.blockstore._boundary import HTTPX
from halodb.blockstore.base import BlockStore
from halodb.blockstore.car import import_reachable, receive_dag
from halodb.errors import (
    BlockStoreError,
    CarError,
    DecodeError,
    GatewayError,
    InputError,
    StoreURLError,
    VerificationError,
)
from halodb.ipld import CID
from halodb.ipld.limits import MAX_BLOCK_SIZE

RAW_BLOCK = "application/vnd.ipld.raw"
CAR_V1 = "application/vnd.ipld.car; version=1; order=dfs; dups=n"
_RETRY_STATUS = {429, 500, 502, 503, 504}
_ABSENT_STATUS = {404, 410}
_MISMATCH = "answered with bytes that do not match the CID"
#: Why a gateway's CAR of a whole DAG is not taken (the next gateway is asked).
_DAG_FAILURES: tuple[type[BaseException], ...] = (*HTTPX.caught, GatewayError, CarError, VerificationError, DecodeError)

#: seconds a request to a gateway may take in all, unless ``$HALODB_GATEWAY_DEADLINE`` says otherwise
DEFAULT_DEADLINE = 60.0
DEADLINE_ENV = "HALODB_GATEWAY_DEADLINE"

T = TypeVar("T")


def gateway_deadline(env: Mapping[str, str] | None = None) -> float:
    """``$HALODB_GATEWAY_DEADLINE`` (seconds, more than 0), else :data:`DEFAULT_DEADLINE`.

    >>> gateway_deadline({}), gateway_deadline({"HALODB_GATEWAY_DEADLINE": "2.5"})
    (60.0, 2.5)
    """
    text = (os.environ if env is None else env).get(DEADLINE_ENV, "").strip()
    if not text:
        return DEFAULT_DEADLINE
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{DEADLINE_ENV}={text!r}: expected a number of seconds, more than 0", source=DEADLINE_ENV)
    return value


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


class _Bounded(Generic[T]):
    """One request run on a daemon thread, waited for at most ``seconds``.

    The work gets a ``check`` to call between chunks: it raises once the caller has given
    up, so an abandoned request stops reading at its next chunk (or at httpx's read timeout
    when nothing arrives). A result that comes too late goes to ``discard`` (closing a file).
    """

    def __init__(self, work: Callable[[Callable[[], None]], T], discard: Callable[[T], None] | None) -> None:
        self.work = work
        self.discard = discard
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.abandoned = False
        self.value: T | None = None
        self.error: BaseException | None = None

    def check(self) -> None:
        if self.abandoned:
            raise GatewayError("request abandoned after its deadline")

    def _run(self) -> None:
        value: T | None = None
        error: BaseException | None = None
        try:
            value = self.work(self.check)
        except BaseException as exc:  # handed to the caller's thread below
            error = exc
        with self.lock:
            late = self.abandoned
            self.value, self.error = value, error
            self.done.set()
        if late and value is not None and self.discard is not None:
            self.discard(value)

    def run(self, seconds: float) -> T | None:
        """The work's result; ``None`` when the deadline passed first (the work is abandoned)."""
        threading.Thread(target=self._run, name="halodb-gateway-request", daemon=True).start()
        self.done.wait(seconds)
        with self.lock:
            if not self.done.is_set():
                self.abandoned = True
                return None
        if self.error is not None:
            raise self.error
        return self.value


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
        deadline: float | None = None,
        retries: int = 2,
        backoff: float = 0.25,
        concurrency: int = 8,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__()
        if not gateways:
            raise StoreURLError("no gateway given", url="")
        self.gateways = [g.rstrip("/") + "/" for g in gateways]
        #: seconds one request may take in all (connecting, waiting, reading the whole body)
        self.deadline = gateway_deadline() if deadline is None else deadline
        self.retries = retries
        self.backoff = backoff
        self.concurrency = concurrency
        self._client = client or httpx.Client(timeout=min(timeout, self.deadline), follow_redirects=False)
        self._own_client = client is None
        self._demoted: set[str] = set()  # gateways that broke a deadline or a cap: asked last
        self.requests = 0  #: HTTP requests made (benchmarks)
        self.bytes_received = 0  #: response bytes received

    def describe(self) -> str:
        return "gateway " + ", ".join(self.gateways)

    @property
    def client(self) -> httpx.Client:
        """The HTTP client."""
        return self._client

    def ordered(self) -> list[str]:
        """The gateways in the order to ask them: those that broke a deadline or a cap last."""
        return [g for g in self.gateways if g not in self._demoted] + [g for g in self.gateways if g in self._demoted]

    # -- one bounded request ------------------------------------------------------------
    def _request(
        self, gateway: str, path: str, *, accept: str, limit: int | None, what: str,
        consume: Callable[[Iterator[bytes]], T], discard: Callable[[T], object] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, T | None]:
        """GET ``gateway + path``: ``(status, consume(body chunks))`` for HTTP 200, else
        ``(status, None)`` without reading the body.

        Raises :class:`GatewayError` past the deadline, when the body (or its
        Content-Length) exceeds ``limit`` bytes (``what`` names the thing capped), or when
        it comes encoded although identity was asked; httpx's errors pass through.
        """
        url = f"{gateway}{path}"

        def work(check: Callable[[], None]) -> tuple[int, T | None]:
            headers = {"Accept": accept, "Accept-Encoding": "identity"}
            with self._client.stream("GET", url, params=params, headers=headers) as r:
                if r.status_code != 200:
                    return r.status_code, None
                encoding = r.headers.get("content-encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise GatewayError(f"{gateway}: answered with Content-Encoding {encoding!r}, not identity", url=url)
                declared = r.headers.get("content-length", "").strip()
                if limit is not None and declared.isdigit() and int(declared) > limit:
                    raise self._over(gateway, url, limit, what, f"announces {declared} bytes, more")

                def chunks() -> Iterator[bytes]:
                    got = 0
                    for chunk in r.iter_bytes():  # identity-encoded (checked above): the bytes as sent
                        check()
                        got += len(chunk)
                        self.bytes_received += len(chunk)
                        if limit is not None and got > limit:
                            raise self._over(gateway, url, limit, what, "sent more")  # and read no further
                        yield chunk

                return 200, consume(chunks())

        self.requests += 1
        bounded: _Bounded[tuple[int, T | None]] = _Bounded(
            work, None if discard is None else lambda answer: _discard_value(answer, discard))
        answer = bounded.run(self.deadline)
        if answer is None:
            self._demoted.add(gateway)
            raise GatewayError(
                f"{gateway}: no whole answer within the {self.deadline:g} s deadline ({DEADLINE_ENV})",
                url=url, deadline=self.deadline)
        return answer

    def _over(self, gateway: str, url: str, limit: int, what: str, how: str) -> GatewayError:
        self._demoted.add(gateway)
        return GatewayError(f"{gateway}: {how} than the {limit} bytes {what} may have", url=url, limit=limit)

    def ask(self, gateway: str, path: str, *, accept: str, limit: int, what: str) -> tuple[int, bytes]:
        """One bounded GET of a small document (an IPNS record): ``(status, body)``, the body
        empty unless the status is 200. Every failure is a :class:`BlockStoreError` whose
        message starts with the gateway (:class:`GatewayError` past the deadline or the cap).
        """
        try:
            status, body = self._request(gateway, path, accept=accept, limit=limit, what=what, consume=b"".join)
        except HTTPX.caught as exc:
            raise HTTPX.translate(exc, f"{gateway}: {type(exc).__name__}: {exc}", store=self.describe()) from None
        return status, body or b""

    # -- blocks -------------------------------------------------------------------------
    def _fetch(self, gateway: str, cid: CID) -> tuple[bytes | None, str]:
        """Ask one gateway (with retries): (verified bytes | None, why not)."""
        why = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                status, data = self._request(
                    gateway, f"ipfs/{cid}", params={"format": "raw"}, accept=RAW_BLOCK, limit=MAX_BLOCK_SIZE,
                    what="a block", consume=b"".join)
            except GatewayError as exc:  # past the deadline or the cap: not asked again now
                return None, exc.message.removeprefix(f"{gateway}: ")
            except HTTPX.caught as exc:  # recorded; the failures of every gateway become one BlockStoreError
                why = f"{type(exc).__name__}: {exc}"
                continue
            if status == 200:
                assert data is not None
                if cid.verify(data):
                    return data, ""
                return None, _MISMATCH
            if status in _ABSENT_STATUS:
                return None, "absent"
            why = f"HTTP {status}"
            if status not in _RETRY_STATUS:
                break
        return None, why

    def _get(self, cid: CID) -> bytes | None:
        failures = []
        for gateway in self.ordered():
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

    def fetch_dag(self, root: CID, into: BlockStore, *, max_bytes: int | None = None) -> int:
        """Fetch the whole DAG under ``root`` as ONE CAR request and import it into ``into``.

        Asks ``GET /ipfs/{root}?format=car&dag-scope=all`` (depth-first, no duplicates). The
        CAR is checked as it arrives — its root is ``root``, each block verified, linked from
        the blocks before it and sent once — and spooled to a temporary file, which then holds
        at most the requested DAG (and at most ``max_bytes``, when given); then it must be
        complete (every link present in it or already in ``into``), else the next gateway is
        asked. Nothing is written from a bad CAR, and only blocks ``root`` reaches are.
        Returns the blocks imported.
        """
        failures = []
        for gateway in self.ordered():

            def spool(chunks: Iterator[bytes]) -> BinaryIO:
                f = cast(BinaryIO, tempfile.TemporaryFile())
                try:
                    receive_dag(chunks, root, f, max_block_size=MAX_BLOCK_SIZE)
                except BaseException:
                    f.close()
                    raise
                f.seek(0)
                return f

            try:
                status, car = self._request(
                    gateway, f"ipfs/{root}", params={"format": "car", "dag-scope": "all"}, accept=CAR_V1,
                    limit=max_bytes, what="this CAR", consume=spool, discard=_close)
                if car is None:
                    failures.append(f"{gateway}: HTTP {status}")
                    continue
                with car:
                    return import_reachable(into, car).imported
            except _DAG_FAILURES as exc:
                message = exc.message if isinstance(exc, GatewayError) else f"{gateway}: {exc}"
                failures.append(message)
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


def _close(f: BinaryIO | None) -> None:
    if f is not None:
        f.close()


def _discard_value(answer: tuple[int, T | None], discard: Callable[[T], object]) -> None:
    if answer[1] is not None:
        discard(answer[1])
