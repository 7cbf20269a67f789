"""A read-only block store over trustless HTTP gateways (``--store https://host/``).

Blocks are asked for as ``GET /ipfs/{cid}?format=raw`` with
``Accept: application/vnd.ipld.raw`` and verified against their CID before anything else
sees them: a gateway answering with wrong bytes is treated like one that failed, and the
next gateway is asked. HTTP 429 and 5xx are retried with exponential backoff; 404 and
410 mean the gateway does not have the block. Batches are fetched concurrently, bounded
by ``concurrency``. The raw leaves of a UnixFS file come as the file's bytes, one ``Range``
request per run of adjacent leaves, cut into the leaves and each verified
(:meth:`GatewayStore.get_leaves`).

Every request has a total **deadline** (``deadline`` seconds, default
``$HALODB_GATEWAY_DEADLINE``, else 60) and every answer a **size cap**: a raw block at most
:data:`~halodb.ipld.limits.MAX_BLOCK_SIZE`, an IPNS record at most its 10 KiB, a file's bytes
the range asked for, and a CAR only the blocks of the DAG asked for (checked section by
section as it arrives, see :func:`~halodb.blockstore.car.receive_dag`;
``fetch_dag(max_bytes=...)`` caps it further). aiohttp's own timeout bounds each read of a
socket, not the whole request, so the deadline is an ``asyncio.timeout`` around it (a
streamed CAR: the reading thread waits for each piece at most until the deadline); bodies
are streamed and reading stops at the cap. A gateway past its deadline or its cap has failed
(:class:`GatewayError`): the next one is asked, and it is asked last from then on.

The synchronous API runs its requests on one shared background loop
(:class:`~halodb.util.background_loop.BackgroundLoop`); the ``aget_*`` coroutines run them
on the caller's loop (zarr's, reading a dataset), with an aiohttp session per loop.

>>> GatewayStore(["http://127.0.0.1:8080"], deadline=5).gateways
['http://127.0.0.1:8080/']
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import re
import tempfile
import time
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

import aiohttp
import yarl

from halodb.blockstore._gateway_boundary import AIOHTTP
from halodb.blockstore.base import BlockBytes, BlockStore, FileStart, Leaf, Rebuild
from halodb.blockstore.car import import_reachable, receive_blocks, receive_dag
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
from halodb.util.background_loop import BackgroundLoop

log = logging.getLogger(__name__)

RAW_BLOCK = "application/vnd.ipld.raw"
CAR_V1 = "application/vnd.ipld.car; version=1; order=dfs; dups=n"
_RETRY_STATUS = {429, 500, 502, 503, 504}
#: answers of a gateway that does not send CARs (a plain path gateway): not asked for one again
_NO_CAR_STATUS = {400, 406, 415, 501}
#: blocks of a file's CAR are handed on in batches of about this many bytes
_FILE_BATCH = 8 << 20
_ABSENT_STATUS = {404, 410}
_MISMATCH = "answered with bytes that do not match the CID"
#: the bytes of a streamed body handed from the loop to the reading thread at a time (the rest,
#: at the end): a trip between the threads costs more than waiting for more of the body on the
#: loop, and a hostile body is read at most this far (and one socket read) ahead of the checks
_PIECE = 1 << 19
#: bytes aiohttp buffers of a body before it stops reading the socket (at twice this): its
#: default, 64 KiB, stalls a CAR stream whenever the reading thread is busy checking blocks
_READ_BUFFER = 1 << 20
#: seconds ``close`` waits for a session to close on another thread's loop (zarr's)
_CLOSE_WAIT = 5.0
#: Why a gateway's CAR of a whole DAG is not taken (the next gateway is asked).
_DAG_FAILURES: tuple[type[BaseException], ...] = (GatewayError, CarError, VerificationError, DecodeError)

#: seconds a request to a gateway may take in all, unless ``$HALODB_GATEWAY_DEADLINE`` says otherwise
DEFAULT_DEADLINE = 60.0
DEADLINE_ENV = "HALODB_GATEWAY_DEADLINE"

T = TypeVar("T")


def range_cap(length: int) -> int:
    """The most bytes a CAR of a ``length``-byte range of a file may have: the range, an
    eighth more for the nodes above the leaves and the CAR's own framing, and four blocks
    (the leaves the range starts and ends in stick out of it).

    >>> range_cap(0) == 4 * MAX_BLOCK_SIZE
    True
    """
    return length + length // 8 + 4 * MAX_BLOCK_SIZE


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


class GatewayStore(BlockStore):
    """Read-only blocks from one or more trustless gateways, tried in order.

    ``timeout`` bounds each connect and each read of a socket; ``deadline`` the whole
    request. At most ``concurrency`` requests are in flight at once (connections are kept
    alive and shared by every thread using the store).
    """

    supports_writes = False
    is_remote = True
    supports_dag_export = True
    supports_file_export = True
    supports_file_bytes = True
    trusted_reads = True  # every block is verified against its CID as it arrives (_fetch)

    def __init__(
        self,
        gateways: list[str],
        *,
        timeout: float = 30.0,
        deadline: float | None = None,
        retries: int = 2,
        backoff: float = 0.25,
        concurrency: int = 16,
    ) -> None:
        super().__init__()
        if not gateways:
            raise StoreURLError("no gateway given", url="")
        self.gateways = [_checked_url(g.rstrip("/") + "/") for g in gateways]
        #: seconds one request may take in all (connecting, waiting, reading the whole body)
        self.deadline = gateway_deadline() if deadline is None else deadline
        self.timeout = min(timeout, self.deadline)
        self.retries = retries
        self.backoff = backoff
        self.concurrency = max(1, concurrency)
        #: the HTTP proxy of each gateway, from the environment (``https_proxy``, ``no_proxy``...)
        self.proxies = {g: _proxy_for(g) for g in self.gateways}
        self._sessions = _Sessions(self.timeout, self.concurrency)
        self._finalizer = weakref.finalize(self, self._sessions.close)
        self._demoted: set[str] = set()  # gateways that broke a deadline or a cap, or lied: asked last
        self._no_car: set[str] = set()  # gateways that answered a file's CAR with something else
        self._no_bytes: set[str] = set()  # gateways that answered a file's plain bytes with a refusal
        #: why asking for a file's bytes failed (the leaves then came block by block), in order
        self.file_bytes_failures: list[str] = []
        self.requests = 0  #: HTTP requests made (benchmarks)
        self.bytes_received = 0  #: response bytes received

    def describe(self) -> str:
        return "gateway " + ", ".join(self.gateways)

    def ordered(self) -> list[str]:
        """The gateways in the order to ask them: those that broke a deadline or a cap last."""
        return [g for g in self.gateways if g not in self._demoted] + [g for g in self.gateways if g in self._demoted]

    # -- one bounded request ------------------------------------------------------------
    async def _aget(self, gateway: str, path: str, *, accept: str, limit: int, what: str,
                    params: dict[str, str] | None = None) -> tuple[int, bytes | None]:
        """GET ``gateway + path`` within the deadline: ``(status, body)`` for HTTP 200, else
        ``(status, None)`` without reading the body.

        Raises :class:`GatewayError` past the deadline, when the body (or its Content-Length)
        exceeds ``limit`` bytes (``what`` names the thing capped), or when it comes encoded
        although identity was asked; aiohttp's errors pass through.
        """
        url = f"{gateway}{path}"
        session, slots = self._sessions.session(), self._sessions.slots
        try:
            async with slots, asyncio.timeout(self.deadline):  # the deadline runs from when a slot is free
                self.requests += 1
                async with session.get(url, params=params, headers=_headers(accept), proxy=self.proxies[gateway]) as r:
                    if r.status != 200:
                        return r.status, None
                    self._check_head(gateway, url, r, limit, what)
                    pieces, got = [], 0
                    while piece := await r.content.readany():
                        got += len(piece)
                        self.bytes_received += len(piece)
                        if got > limit:
                            raise self._over(gateway, url, limit, what, "sent more")  # and read no further
                        pieces.append(piece)
                    return 200, b"".join(pieces)
        except TimeoutError as exc:
            if isinstance(exc, AIOHTTP.caught):
                raise  # a socket's own timeout (``timeout``), not the deadline
            raise self._past_deadline(gateway, url) from None

    def _check_head(self, gateway: str, url: str, r: aiohttp.ClientResponse, limit: int | None, what: str) -> None:
        encoding = r.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise GatewayError(f"{gateway}: answered with Content-Encoding {encoding!r}, not identity", url=url)
        declared = r.headers.get("content-length", "").strip()
        if limit is not None and declared.isdigit() and int(declared) > limit:
            raise self._over(gateway, url, limit, what, f"announces {declared} bytes, more")

    def _past_deadline(self, gateway: str, url: str) -> GatewayError:
        self._demoted.add(gateway)
        return GatewayError(f"{gateway}: no whole answer within the {self.deadline:g} s deadline ({DEADLINE_ENV})",
                            url=url, deadline=self.deadline)

    def _over(self, gateway: str, url: str, limit: int, what: str, how: str) -> GatewayError:
        self._demoted.add(gateway)
        return GatewayError(f"{gateway}: {how} than the {limit} bytes {what} may have", url=url, limit=limit)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return BackgroundLoop.shared().run(coro)

    def ask(self, gateway: str, path: str, *, accept: str, limit: int, what: str) -> tuple[int, bytes]:
        """One bounded GET of a small document (an IPNS record): ``(status, body)``, the body
        empty unless the status is 200. Every failure is a :class:`BlockStoreError` whose
        message starts with the gateway (:class:`GatewayError` past the deadline or the cap).
        """
        try:
            status, body = self._run(self._aget(gateway, path, accept=accept, limit=limit, what=what))
        except AIOHTTP.caught as exc:
            raise AIOHTTP.translate(exc, f"{gateway}: {_why(exc)}", store=self.describe()) from None
        return status, body or b""

    # -- blocks -------------------------------------------------------------------------
    async def _fetch(self, gateway: str, cid: CID) -> tuple[bytes | None, str]:
        """Ask one gateway (with retries): (verified bytes | None, why not)."""
        why = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                status, data = await self._aget(gateway, f"ipfs/{cid}", params={"format": "raw"}, accept=RAW_BLOCK,
                                                limit=MAX_BLOCK_SIZE, what="a block")
            except GatewayError as exc:  # past the deadline or the cap: not asked again now
                return None, exc.message.removeprefix(f"{gateway}: ")
            except AIOHTTP.caught as exc:  # recorded; the failures of every gateway become one BlockStoreError
                why = _why(exc)
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

    async def _aget_block(self, cid: CID) -> bytes | None:
        failures = []
        for gateway in self.ordered():
            data, why = await self._fetch(gateway, cid)
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

    async def _aget_many(self, cids: list[CID]) -> dict[CID, bytes]:
        async with asyncio.TaskGroup() as group:  # the first failure cancels the rest
            tasks = [group.create_task(self._aget_block(cid)) for cid in cids]
        return {cid: data for cid, task in zip(cids, tasks) if (data := task.result()) is not None}

    def _get(self, cid: CID) -> bytes | None:
        return self._run(self._aget_block(cid))

    def _get_many(self, cids: list[CID]) -> dict[CID, bytes]:
        try:
            return self._run(self._aget_many(cids))
        except BaseExceptionGroup as group:  # one block's failure is the answer
            raise group.exceptions[0] from None

    def _has(self, cid: CID) -> bool:
        return self._get(cid) is not None

    def close(self) -> None:
        self._finalizer()

    # -- the raw leaves of a file, cut from its bytes --------------------------------------------
    def reads_file_bytes(self) -> bool:
        return any(g not in self._no_bytes for g in self.gateways)

    def get_leaves(self, file: CID, leaves: Sequence[Leaf]) -> dict[CID, bytes]:
        """The raw leaves ``(cid, offset, size)`` of the file under ``file``: each run of
        adjacent leaves is ONE plain request for that byte range of the file (``GET
        /ipfs/{file}`` with ``Range: bytes=A-B``, as a browser or ``ipfsspec`` reads a file:
        cheaper for the gateway than a CAR), cut into the leaves, each hashed against its CID.

        A gateway that refuses plain answers (HTTP 400, 406, 415, 501: a trustless-only
        gateway) is not asked for them again (a warning in the log, once); one whose bytes do
        not match the leaves is asked last from then on, and the next gateway is asked. What
        no gateway sent intact comes block by block (:meth:`get_many`, ``?format=raw``; every
        failure recorded in :attr:`file_bytes_failures` and logged), so a lie costs requests,
        never a wrong byte.

        >>> # GatewayStore(["http://127.0.0.1:8080"]).get_leaves(file_cid, [(leaf, 0, 262144)])
        """
        found = self._run(self._aget_leaves(file, leaves, views=False))
        return {cid: data if isinstance(data, bytes) else bytes(data) for cid, data in found.items()}

    async def aget_leaves(self, file: CID, leaves: Sequence[Leaf]) -> dict[CID, BlockBytes]:
        """:meth:`get_leaves` on the running event loop (zarr's, reading a dataset): no thread.
        The leaves of a run come as views into the run's bytes (one copy off the socket)."""
        return await self._aget_leaves(file, leaves, views=True)

    async def aget_file(self, file: CID, end: int, leaves_of: Callable[[bytes], Sequence[Leaf] | None], *,
                        rebuild: Rebuild | None = None) -> FileStart | None:
        """The root of the file ``file`` and the raw leaves of its bytes ``[0, end)``, the
        file's plain bytes asked for with ``GET /ipfs/{file}`` (``Range: bytes=0-{end - 1}``; at
        most ``end`` bytes read, once the root is in at most its leaves' bytes):

        * with ``rebuild``, the bytes alone first, ONE request: when ``rebuild(bytes)`` makes of
          them a root block that hashes to ``file`` (and the leaves it named in it), that is
          the answer; else the root is asked for next (``?format=raw``);
        * without it, the root and the bytes at once: one round trip, two requests.

        With the root in, the bytes are cut into the leaves it names (``leaves_of``) and each
        leaf hashed against its CID, as :meth:`get_leaves` does. Bytes that do not match (the
        gateway is asked last from then on, the failure recorded in
        :attr:`file_bytes_failures`) or that do not cover the leaves (``end`` inside the last
        one) are not used: the leaves then come as :meth:`aget_leaves` brings them (the other
        gateways' ranges, then block by block; not from the gateway that lied). A gateway that
        refuses plain answers is not asked for them again. Otherwise as
        :meth:`BlockStore.aget_file`.
        """
        gateway = next((g for g in self.ordered() if g not in self._no_bytes), None)
        if gateway is None or end <= 0:
            return await super().aget_file(file, end, leaves_of)
        cap = [end]  # the bytes to read: ``end``, then (the root in) at most the leaves' bytes
        plain = asyncio.ensure_future(self._aplain(gateway, file, end, cap))
        if rebuild is not None:
            await asyncio.wait([plain])
            if not plain.exception():
                status, pieces = plain.result()
                if pieces is not None:
                    whole = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                    got = rebuild(whole)
                    if got is not None and file.verify(got[0]):
                        for cid, data in got[1].items():
                            self._check(cid, data)  # (counted; verified by rebuild: the root names them)
                        return FileStart(got[0], dict(got[1]))
                    plain = asyncio.ensure_future(_done((status, [whole])))  # (cut below, once the root is in)
        try:
            root = (await self.aget_many([file])).get(file)
            leaves = leaves_of(root) if root is not None else None
        except BaseException:
            await _cancelled(plain)
            raise
        if root is None or not leaves:
            await _cancelled(plain)
            return None if root is None else FileStart(root, {})
        run = sorted(leaves, key=lambda leaf: leaf[1])
        cap[0] = min(end, _end_of(run))
        what = f"bytes 0-{cap[0] - 1} of the file {file}"
        skip, why = None, ""
        try:
            status, pieces = await plain
        except AIOHTTP.caught as exc:
            why = f"{gateway}: {_why(exc)}"
        except GatewayError as exc:  # past the deadline, over the cap, an encoding
            why = exc.message
        else:
            if pieces is None and status in _NO_CAR_STATUS:
                self._refuses_bytes(gateway, status)
            elif pieces is None:
                why = f"{gateway}: " + ("answered with another Content-Range" if status == 0 else f"HTTP {status}")
            elif run[0][1] == 0 and len(_runs(run)) == 1 and not (sum(map(len, pieces)) == cap[0] < _end_of(run)):
                cut = _cut(pieces, 0, run, views=True)
                if cut is not None:
                    for cid, data in cut.items():
                        self._check(cid, data)  # (counted; verified by _cut)
                    return FileStart(root, cut)
                self._demoted.add(gateway)
                skip, why = gateway, f"{gateway}: {_MISMATCH} of the leaves in {what}"
            # (else bytes that cannot be checked: ``end`` inside the last leaf, or leaves that do not
            # tile the file from 0: the root has data of its own. Asked for as ranges below.)
        if why:
            failure = f"the {what} asked as they are were not intact, its leaves are fetched again: {why}"
            self.file_bytes_failures.append(failure)
            log.warning("%s", failure)
        return FileStart(root, await self._aget_leaves(file, leaves, views=True, skip=skip))

    async def _aplain(self, gateway: str, file: CID, end: int, cap: list[int]) -> tuple[int, list[bytes] | None]:
        """GET the file ``file``'s bytes from 0 as they are (``Range: bytes=0-{end - 1}``) within
        the deadline: ``(status, the bytes in the pieces they came in)``, at most ``cap[0]``
        bytes (which may shrink while they come); a range answer that does not start at 0, or
        a redirect: ``(status, None)``."""
        url = f"{gateway}ipfs/{file}"
        headers = {"Accept": "*/*", "Accept-Encoding": "identity", "Range": f"bytes=0-{end - 1}"}
        session, slots = self._sessions.session(), self._sessions.slots
        try:
            async with slots, asyncio.timeout(self.deadline):
                self.requests += 1
                async with session.get(url, headers=headers, proxy=self.proxies[gateway], allow_redirects=False) as r:
                    if r.status == 206:
                        if not _content_range_within(r.headers.get("content-range", ""), end):
                            return 0, None
                    elif r.status != 200:
                        return r.status, None
                    self._check_head(gateway, url, r, end if r.status == 206 else None, f"the bytes of the file {file}")
                    pieces, got = [], 0
                    while got < cap[0] and (piece := await r.content.readany()):
                        got += len(piece)
                        self.bytes_received += len(piece)
                        pieces.append(piece)
                    if got > cap[0]:  # (the rest is not read; an honest gateway sends no more than the file)
                        pieces[-1] = pieces[-1][:len(pieces[-1]) - (got - cap[0])]
                    return r.status, pieces
        except TimeoutError as exc:
            if isinstance(exc, AIOHTTP.caught):
                raise  # a socket's own timeout
            raise self._past_deadline(gateway, url) from None

    def _refuses_bytes(self, gateway: str, status: int) -> None:
        """``gateway`` answered a plain request with a refusal: not asked for plain bytes again."""
        if gateway not in self._no_bytes:
            self._no_bytes.add(gateway)
            log.warning("%s sends no plain file bytes (HTTP %s): files are read from it as CARs", gateway, status)

    async def _aget_leaves(self, file: CID, leaves: Sequence[Leaf], *, views: bool,
                           skip: str | None = None) -> dict[CID, BlockBytes]:
        out: dict[CID, BlockBytes] = {}
        for run in _runs(leaves):
            out.update(await self._aleaves_of(file, run, views, skip))
        for cid, data in out.items():
            self._check(cid, data)  # (counted; verified as it arrived)
        missing = [cid for cid, _, _ in leaves if cid not in out]
        if missing:
            out.update(await self.aget_many(missing))
        return out

    async def aget_many(self, cids: Sequence[CID]) -> dict[CID, bytes]:
        """:meth:`get_many` on the running event loop: no thread."""
        try:
            found = await self._aget_many(list(dict.fromkeys(cids)))
        except BaseExceptionGroup as group:  # one block's failure is the answer
            raise group.exceptions[0] from None
        for cid, data in found.items():
            self._check(cid, data)
        return found

    async def _aleaves_of(self, file: CID, run: list[Leaf], views: bool, skip: str | None = None) -> dict[CID, BlockBytes]:
        """One run of adjacent raw leaves from the first gateway (but ``skip``) that sends their
        bytes intact; {} when none did (recorded)."""
        start, end = run[0][1], run[-1][1] + run[-1][2]
        what = f"bytes {start}-{end - 1} of the file {file}"
        failures = []
        for gateway in self.ordered():
            if gateway in self._no_bytes or gateway == skip:
                continue
            try:
                status, pieces = await self._arange(gateway, file, start, end, what)
            except AIOHTTP.caught as exc:
                failures.append(f"{gateway}: {_why(exc)}")
                continue
            except GatewayError as exc:  # past the deadline, over the cap, an encoding
                failures.append(exc.message)
                continue
            if pieces is None:
                if status in _NO_CAR_STATUS:
                    self._refuses_bytes(gateway, status)
                elif status == 0:
                    failures.append(f"{gateway}: answered with another Content-Range than bytes {start}-{end - 1}")
                elif status == 200:
                    failures.append(f"{gateway}: answered a range with the whole file (HTTP 200)")
                else:
                    failures.append(f"{gateway}: HTTP {status}")
                continue
            got = _cut(pieces, start, run, views=views)
            if got is not None:
                return got
            self._demoted.add(gateway)
            failures.append(f"{gateway}: {_MISMATCH} of the leaves in {what}")
        if failures:
            why = f"no gateway sent {what} intact, its leaves are fetched block by block: " + "; ".join(failures)
            self.file_bytes_failures.append(why)
            log.warning("%s", why)
        return {}

    async def _arange(self, gateway: str, file: CID, start: int, end: int,
                      what: str) -> tuple[int, list[bytes] | None]:
        """GET bytes ``[start, end)`` of the file ``file`` as they are, within the deadline:
        ``(status, the bytes in the pieces they came in)``, or ``(status, None)`` for an answer
        that is not them (a refusal, an error; a range not honoured: status 0). Reads at most
        ``end - start`` bytes."""
        url = f"{gateway}ipfs/{file}"
        limit = end - start
        headers = {"Accept": "*/*", "Accept-Encoding": "identity", "Range": f"bytes={start}-{end - 1}"}
        session, slots = self._sessions.session(), self._sessions.slots
        try:
            async with slots, asyncio.timeout(self.deadline):
                self.requests += 1
                async with session.get(url, headers=headers, proxy=self.proxies[gateway]) as r:
                    if r.status == 206:
                        if not _content_range_is(r.headers.get("content-range", ""), start, end):
                            return 0, None
                    elif r.status != 200 or start != 0:  # a 200 is the whole file: its head will do
                        return r.status, None
                    self._check_head(gateway, url, r, None if r.status == 200 else limit, f"the {what}")
                    pieces, got = [], 0
                    while got < limit and (piece := await r.content.readany()):
                        got += len(piece)
                        self.bytes_received += len(piece)
                        pieces.append(piece)
                    if got > limit:
                        if r.status == 206:
                            raise self._over(gateway, url, limit, f"the {what}", "sent more")
                        pieces[-1] = pieces[-1][:len(pieces[-1]) - (got - limit)]  # (the rest is not read)
                    return r.status, pieces
        except TimeoutError as exc:
            if isinstance(exc, AIOHTTP.caught):
                raise  # a socket's own timeout
            raise self._past_deadline(gateway, url) from None

    # -- a whole DAG as one CAR ----------------------------------------------------------
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
            try:
                with self._stream(gateway, f"ipfs/{root}", params={"format": "car", "dag-scope": "all"},
                                  accept=CAR_V1, limit=max_bytes, what="this CAR") as (status, _, chunks):
                    if status != 200:
                        failures.append(f"{gateway}: HTTP {status}")
                        continue
                    with cast(BinaryIO, tempfile.TemporaryFile()) as car:
                        receive_dag(chunks, root, car, max_block_size=MAX_BLOCK_SIZE)
                        car.seek(0)
                        return import_reachable(into, car, verified=True).imported  # (verified as received)
            except AIOHTTP.caught as exc:
                failures.append(f"{gateway}: {_why(exc)}")
            except _DAG_FAILURES as exc:
                message = exc.message if isinstance(exc, GatewayError) else f"{gateway}: {exc}"
                failures.append(message)
        raise BlockStoreError(f"no gateway returned the DAG of {root} whole: " + "; ".join(failures),
                              cid=root, store=self.describe())

    def stream_dag(self, root: CID, into: BlockStore) -> int:
        """Fetch the whole DAG under ``root`` as ONE CAR request (as :meth:`fetch_dag`), putting
        each block into ``into`` as it arrives and passes the checks of
        :func:`~halodb.blockstore.car.receive_blocks` (verified, linked from the blocks before
        it, sent once), in batches of 8 MiB: no temporary file, the CAR read once. For a
        cache (a prefetch): an answer cut short keeps the good blocks that came, the next
        gateway is asked, and whatever none sent is read block by block later. Returns the
        blocks put; :class:`~halodb.errors.BlockStoreError` when no gateway sent it whole.
        """
        failures = []
        stored = 0
        for gateway in self.ordered():
            try:
                with self._stream(gateway, f"ipfs/{root}", params={"format": "car", "dag-scope": "all"},
                                  accept=CAR_V1, limit=None, what="this CAR") as (status, _, chunks):
                    if status != 200:
                        failures.append(f"{gateway}: HTTP {status}")
                        continue
                    return stored + self._put_received(receive_blocks(chunks, root, max_block_size=MAX_BLOCK_SIZE),
                                                       into)
            except AIOHTTP.caught as exc:
                failures.append(f"{gateway}: {_why(exc)}")
            except GatewayError as exc:  # before the body: the deadline
                failures.append(exc.message)
            except _FileFailure as failure:
                stored += failure.stored
                cause = failure.cause
                if isinstance(cause, VerificationError):
                    self._demoted.add(gateway)
                failures.append(cause.message if isinstance(cause, GatewayError) else (
                    f"{gateway}: {_why(cause)}" if isinstance(cause, AIOHTTP.caught) else f"{gateway}: {cause}"))
        raise BlockStoreError(f"no gateway returned the DAG of {root} whole: " + "; ".join(failures),
                              cid=root, store=self.describe())

    # -- one file (or a byte range of it) as one CAR ------------------------------------------
    def fetch_file(self, root: CID, into: BlockStore, *, start: int = 0, end: int | None = None,
                   max_bytes: int | None = None) -> int:
        """Fetch the blocks of the file under ``root`` that hold bytes ``[start, end)`` (the
        whole file when ``end`` is None) as ONE CAR request, and put them into ``into``.

        Asks ``GET /ipfs/{root}?format=car&dag-scope=entity`` (with ``entity-bytes=start:end-1``
        for a range: the trustless gateway's range request). Each block is checked as it
        arrives (:func:`~halodb.blockstore.car.receive_blocks`: verified, linked from the blocks
        before it, sent once) and handed to ``into`` in batches, so at most a batch (8 MiB) is
        held here; ``max_bytes`` caps the answer (for a range, by default :func:`range_cap`:
        a gateway cannot send a whole large file for a small range). The CAR need not be complete: the reader
        fetches what it lacks block by block. Returns the blocks put.

        A gateway that answers with something else than a CAR (a plain path gateway: HTTP 400,
        406, 415, 501, or another Content-Type) is not asked for one again (a warning in the log,
        once); when no gateway sends CARs, nothing is asked and 0 returned. A block that does
        not match its CID: the gateway is asked last from then on, and the next gateway is
        asked; when every gateway asked failed and one of them lied,
        :class:`~halodb.errors.VerificationError` naming the file; any other failure is a
        :class:`~halodb.errors.BlockStoreError` (the blocks that came before it were kept).

        >>> # GatewayStore(["http://127.0.0.1:8080"]).fetch_file(file_cid, MemoryStore(), start=0, end=4096)
        """
        if max_bytes is None and end is not None:
            max_bytes = range_cap(end - start)
        params = {"format": "car", "dag-scope": "entity"}
        if start or end is not None:
            last = "*" if end is None else str(max(end - 1, start))
            params["entity-bytes"] = f"{start}:{last}"
        what = f"the file {root}" + ("" if "entity-bytes" not in params else f" (bytes {params['entity-bytes']})")
        failures: list[str] = []
        lied = False
        stored = 0
        asked = [g for g in self.ordered() if g not in self._no_car]
        if not asked:
            return 0
        for gateway in asked:
            try:
                with self._stream(gateway, f"ipfs/{root}", params=params, accept=CAR_V1, limit=max_bytes,
                                  what=f"the CAR of {what}") as (status, content_type, chunks):
                    if status in _NO_CAR_STATUS or (status == 200 and not _is_car(content_type)):
                        if gateway not in self._no_car:
                            self._no_car.add(gateway)
                            log.warning("%s sends no CARs (HTTP %s, %s): files are read from it block by block",
                                        gateway, status, content_type or "no Content-Type")
                        continue
                    if status != 200:
                        failures.append(f"{gateway}: HTTP {status}")
                        continue
                    return stored + self._put_received(receive_blocks(chunks, root, max_block_size=MAX_BLOCK_SIZE),
                                                       into)
            except AIOHTTP.caught as exc:
                failures.append(f"{gateway}: {_why(exc)}")
            except GatewayError as exc:  # before the body: the deadline, or a Content-Length past the cap
                failures.append(exc.message)
            except _FileFailure as failure:
                stored += failure.stored
                cause = failure.cause
                if isinstance(cause, VerificationError):
                    lied = True
                    self._demoted.add(gateway)
                message = cause.message if isinstance(cause, GatewayError) else (
                    f"{gateway}: {_why(cause)}" if isinstance(cause, AIOHTTP.caught) else f"{gateway}: {cause}")
                failures.append(message)
        if not failures:
            return stored  # none of them sends CARs
        why = "; ".join(failures)
        if lied:
            raise VerificationError(f"no gateway returned {what} intact: {why}", cid=root, source=self.describe())
        raise BlockStoreError(f"no gateway returned {what} as a CAR: {why}", cid=root, store=self.describe())

    @staticmethod
    def _put_received(blocks: Iterator[tuple[CID, bytes]], into: BlockStore) -> int:
        """Put ``blocks`` (verified) into ``into`` in batches; a failure while receiving raises
        :class:`_FileFailure` after the blocks received before it were put."""
        batch: list[tuple[CID, bytes]] = []
        size = stored = 0
        try:
            for cid, data in blocks:
                batch.append((cid, data))
                size += len(data)
                if size >= _FILE_BATCH:
                    into.put_many(batch, verify=False)
                    stored, batch, size = stored + len(batch), [], 0
        except (*_DAG_FAILURES, *AIOHTTP.caught) as exc:
            if batch:
                into.put_many(batch, verify=False)
            raise _FileFailure(stored + len(batch), exc) from None
        if batch:
            into.put_many(batch, verify=False)
        return stored + len(batch)

    @contextlib.contextmanager
    def _stream(self, gateway: str, path: str, *, params: dict[str, str], accept: str, limit: int | None,
                what: str) -> Iterator[tuple[int, str, Iterator[bytes]]]:
        """GET ``gateway + path`` for a body read piece by piece in this thread: ``(status,
        content type, chunks)``; the chunks stop at the deadline (or past ``limit`` bytes) with a
        :class:`GatewayError`. The body of an answer other than 200 is not read."""
        url = f"{gateway}{path}"
        loop = BackgroundLoop.shared()
        ends = time.monotonic() + self.deadline
        self.requests += 1

        def wait(coro: Coroutine[Any, Any, T]) -> T:
            try:
                return loop.run(coro, max(ends - time.monotonic(), 0.0))
            except TimeoutError as exc:
                if isinstance(exc, AIOHTTP.caught):
                    raise  # a socket's own timeout
                raise self._past_deadline(gateway, url) from None

        async def piece(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
            """_PIECE bytes of the body (or the rest: then True) per trip between the threads."""
            parts: list[bytes] = []
            size = 0
            while size < _PIECE:
                part = await response.content.readany()
                if not part:
                    return b"".join(parts), True
                parts.append(part)
                size += len(part)
            return b"".join(parts), False

        async def start() -> tuple[aiohttp.ClientResponse, bytes, bool]:  # the head and the first piece
            response = await self._sessions.session().get(url, params=params, headers=_headers(accept),
                                                          proxy=self.proxies[gateway])
            try:
                if response.status != 200:
                    return response, b"", True
                self._check_head(gateway, url, response, limit, what)
                return (response, *await piece(response))
            except BaseException:
                response.close()
                raise

        response, first, ended = wait(start())
        try:
            def chunks() -> Iterator[bytes]:
                nonlocal ended
                chunk, got = first, 0
                while chunk:
                    got += len(chunk)
                    self.bytes_received += len(chunk)
                    if limit is not None and got > limit:
                        raise self._over(gateway, url, limit, what, "sent more")  # and read no further
                    yield chunk
                    if ended:
                        return
                    chunk, ended = wait(piece(response))

            yield response.status, response.headers.get("content-type", ""), chunks()
        finally:
            if not ended or response.status != 200:  # (on its loop) a body not read to its end drops the connection
                loop.loop.call_soon_threadsafe(response.close)


class _FileFailure(Exception):
    """A file's CAR that broke off (``cause``) after ``stored`` good blocks were put."""

    def __init__(self, stored: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.stored = stored
        self.cause = cause


class _Sessions:
    """The aiohttp sessions of one store: one per event loop that makes requests (the shared
    background loop of the synchronous API; zarr's loop when a dataset is read with
    :meth:`GatewayStore.aget_leaves` and :meth:`GatewayStore.aget_many`), each made on first
    use there (again in a forked child): keep-alive connections, at most ``limit`` requests at
    once per loop."""

    def __init__(self, timeout: float, limit: int) -> None:
        self.timeout = timeout
        self.limit = limit
        self._by_loop: dict[asyncio.AbstractEventLoop, tuple[aiohttp.ClientSession, asyncio.Semaphore]] = {}
        self._pid = 0

    def _mine(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._pid != os.getpid():  # a forked child: its parent's sessions are not its own
            self._by_loop, self._pid = {}, os.getpid()
        found = self._by_loop.get(loop)
        if found is None or found[0].closed:
            for gone in [other for other in self._by_loop if other.is_closed()]:  # (loops run and ended)
                _drop(self._by_loop.pop(gone)[0])
            found = self._by_loop[loop] = (aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout),
                connector=aiohttp.TCPConnector(limit=self.limit),
                auto_decompress=False, raise_for_status=False,  # (proxies: _proxy_for, read once)
                read_bufsize=_READ_BUFFER), asyncio.Semaphore(self.limit))
        return found

    def session(self) -> aiohttp.ClientSession:
        """The session of the running loop (called on it)."""
        return self._mine()[0]

    @property
    def slots(self) -> asyncio.Semaphore:
        """At most ``limit`` requests at once on the running loop (called on it)."""
        return self._mine()[1]

    def close(self) -> None:
        """Close every loop's session: on its loop when it still runs (waiting for it, at most
        :data:`_CLOSE_WAIT` seconds, unless called on that loop), else its connections here
        (a loop that ended cannot run the close; left alone, aiohttp would warn of an unclosed
        session, and a close scheduled but not waited for was at exit a task destroyed while
        pending)."""
        sessions, self._by_loop = self._by_loop, {}
        if self._pid != os.getpid():
            return
        shared = BackgroundLoop.shared()
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, (session, _) in sessions.items():
            with contextlib.suppress(Exception):
                if loop is shared.loop and shared.alive:
                    shared.run(session.close(), timeout=_CLOSE_WAIT)
                    continue
                if loop.is_running() and not loop.is_closed():  # another thread's loop (zarr's): closed there
                    closing = asyncio.run_coroutine_threadsafe(session.close(), loop)
                    if loop is not here:  # (on that loop, it closes once this call returns to it)
                        with contextlib.suppress(concurrent.futures.TimeoutError):
                            closing.result(timeout=_CLOSE_WAIT)
                    continue  # (closed there, or closing: its connections are that loop's to touch)
                _drop(session)  # the loop ended: nothing else uses its connections


def _drop(session: aiohttp.ClientSession) -> None:
    """Close the connections of a session whose loop ended: its sockets closed here, the
    session then counting as closed (as fsspec's HTTP file system does for a loop that is
    gone)."""
    connector = session.connector
    if connector is not None and not connector.closed:
        with contextlib.suppress(Exception):
            connector._close()  # noqa: SLF001 - the synchronous close, for a loop that cannot run the async one


def _runs(leaves: Sequence[Leaf]) -> list[list[Leaf]]:
    """``leaves`` in runs of adjacent byte ranges (each leaf starts where the one before ends).

    >>> from halodb.ipld import CID
    >>> a, b, c = (CID.for_bytes(x, 0x55) for x in (b"a", b"b", b"c"))
    >>> [[off for _, off, _ in run] for run in _runs([(a, 0, 4), (b, 4, 4), (c, 10, 1)])]
    [[0, 4], [10]]
    """
    runs: list[list[Leaf]] = []
    for leaf in sorted(leaves, key=lambda leaf: leaf[1]):
        if runs and runs[-1][-1][1] + runs[-1][-1][2] == leaf[1]:
            runs[-1].append(leaf)
        else:
            runs.append([leaf])
    return runs


def _end_of(run: Sequence[Leaf]) -> int:
    """Where the last leaf of ``run`` (sorted by offset) ends in the file."""
    return run[-1][1] + run[-1][2]


def _cut(pieces: list[bytes], start: int, run: list[Leaf], *, views: bool = False) -> dict[CID, BlockBytes] | None:
    """The leaves of ``run`` cut from ``pieces`` (the file's bytes from ``start``, as they came
    off the socket), each hashed against its CID; None when the bytes are not as long as the
    run or a leaf does not match. Each leaf is copied once, straight from the pieces; with
    ``views``, the pieces are joined once instead and each leaf is a ``memoryview`` into that
    (a reader that wants the run's bytes whole then has them without another copy).

    >>> from halodb.ipld import CID
    >>> a, b = CID.for_bytes(b"ab", 0x55), CID.for_bytes(b"c", 0x55)
    >>> _cut([b"a", b"bc"], 0, [(a, 0, 2), (b, 2, 1)]) == {a: b"ab", b: b"c"}
    True
    >>> views = _cut([b"a", b"bc"], 0, [(a, 0, 2), (b, 2, 1)], views=True)
    >>> [bytes(v) for v in views.values()], views[a].obj
    ([b'ab', b'c'], b'abc')
    >>> _cut([b"abd"], 0, [(a, 0, 2), (b, 2, 1)]), _cut([b"ab"], 0, [(a, 0, 2), (b, 2, 1)])
    (None, None)
    """
    if sum(map(len, pieces)) != run[-1][1] + run[-1][2] - start:
        return None
    out: dict[CID, BlockBytes] = {}
    if views:
        whole = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if len(run) == 1:
            return {run[0][0]: whole} if run[0][0].verify(whole) else None
        view = memoryview(whole)
        for cid, offset, size in run:
            leaf = view[offset - start:offset - start + size]
            if not cid.verify(leaf):
                return None
            out[cid] = leaf
        return out
    source = iter(pieces)
    piece, at = b"", 0
    for cid, _, size in run:
        parts: list[bytes | memoryview] = []
        while size:
            if at == len(piece):
                piece, at = next(source), 0
            take = min(size, len(piece) - at)
            parts.append(piece if take == len(piece) else memoryview(piece)[at:at + take])
            at += take
            size -= take
        first = parts[0] if len(parts) == 1 else None
        joined = first if isinstance(first, bytes) else b"".join(parts)
        if not cid.verify(joined):
            return None
        out[cid] = joined
    return out


def _content_range_is(header: str, start: int, end: int) -> bool:
    """Whether a ``Content-Range`` header names exactly bytes ``[start, end)``.

    >>> _content_range_is("bytes 0-99/1000", 0, 100), _content_range_is("bytes 0-99/*", 0, 50)
    (True, False)
    """
    unit, _, rest = header.strip().partition(" ")
    span = rest.partition("/")[0].strip()
    return unit.lower() == "bytes" and span == f"{start}-{end - 1}"


def _content_range_within(header: str, end: int) -> bool:
    """Whether a ``Content-Range`` header names bytes from 0 of a file, ending before ``end``
    and at the file's end or at ``end`` (the answer to ``Range: bytes=0-{end - 1}``).

    >>> _content_range_within("bytes 0-99/100", 1000), _content_range_within("bytes 0-99/1000", 100)
    (True, True)
    >>> _content_range_within("bytes 0-99/1000", 1000), _content_range_within("bytes 1-99/100", 1000)
    (False, False)
    """
    unit, _, rest = header.strip().partition(" ")
    span, _, total = rest.partition("/")
    first, _, last = span.strip().partition("-")
    if unit.lower() != "bytes" or first != "0" or not last.isdigit():
        return False
    stop = int(last) + 1
    return stop <= end and (stop == end or total.strip() == str(stop))


async def _done(value: T) -> T:
    """``value``, from a coroutine (a result already in hand, as a task)."""
    return value


async def _cancelled(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait for it to end; what it raised is dropped (no longer wanted)."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # (retrieved, so not logged as never retrieved)


def _is_car(content_type: str) -> bool:
    """Whether a Content-Type names a CAR (``application/vnd.ipld.car``, any parameters).

    >>> _is_car("application/vnd.ipld.car; version=1; order=dfs; dups=n"), _is_car("application/octet-stream")
    (True, False)
    """
    return content_type.partition(";")[0].strip().lower() == "application/vnd.ipld.car"


def _headers(accept: str) -> dict[str, str]:
    return {"Accept": accept, "Accept-Encoding": "identity"}


def _why(exc: BaseException) -> str:
    """An aiohttp failure in words (its class name first: ``ClientConnectorError: ...``)."""
    return f"{type(exc).__name__}: {exc}"


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``http_proxy``, ``https_proxy``, ``all_proxy``,
    minus ``no_proxy``), as curl and httpx read it; None for none. Read once per store:
    aiohttp's own ``trust_env`` reads it (and ``~/.netrc``) again on every request.

    >>> _proxy_for("http://127.0.0.1:8080/") is None or True
    True
    """
    parsed = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parsed.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parsed.scheme) or proxies.get("all")


def _checked_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host (and a numeric port); else StoreURLError."""
    try:
        parsed = yarl.URL(url)
        port = parsed.port
    except ValueError as exc:
        raise StoreURLError(f"{url}: not a gateway URL: {exc}", url=url) from None
    if parsed.scheme not in ("http", "https") or not parsed.host or port is None:
        raise StoreURLError(f"{url}: not a gateway URL: expected http(s)://HOST[:PORT]/", url=url)
    return url
