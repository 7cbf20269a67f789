"""A Kubo node as a pinning node: its recursive pins with their names, pin, unpin, and a small
state file in its MFS, through the node's RPC API.

Pins HaloDB makes carry a name (``ipfs pin add --name``) that says who made them, so a
follower tells its own pins from those a human or another policy made (see
:mod:`halodb.pins.follow`). Pinning asks the node to fetch what it lacks from its peers, so
every pin request is bounded by ``pin_timeout`` (Kubo's own ``timeout`` option cancels the
work on the node too); every other request by ``timeout``.

>>> KuboPinNode("kubo+http://127.0.0.1:5001").base
'http://127.0.0.1:5001/api/v0/'
>>> KuboPinNode("http://127.0.0.1:5001")
Traceback (most recent call last):
...
halodb.errors.StoreURLError: not a Kubo store URL: 'http://127.0.0.1:5001' (expected kubo+http://host:port)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from halodb.blockstore.kubo import KuboStore
from halodb.errors import PinError
from halodb.ipld import CID
from halodb.pins._boundary import HTTPX

__all__ = ["MAX_PIN_NAME", "KuboPinNode", "NodePin"]

MAX_PIN_NAME = 255  #: the longest pin name HaloDB gives (Kubo stores longer ones, the API allows 255)
MAX_STATE_BYTES = 1 << 20  #: a state file in the node's MFS larger than this is refused


@dataclass(frozen=True)
class NodePin:
    """A recursive pin on a node: its CID as the node spells it, and its name ("" for none)."""

    cid: str
    name: str

    @property
    def multihash(self) -> bytes:
        return CID.parse(self.cid).multihash


class KuboPinNode:
    """One Kubo node, addressed by its ``kubo+http://host:port`` RPC URL."""

    def __init__(self, url: str, *, timeout: float = 30.0, pin_timeout: float = 600.0) -> None:
        self.url = url
        self.base = KuboStore.api_base(url)
        self.timeout = timeout
        self.pin_timeout = pin_timeout  #: seconds one pin may take, fetching included
        self._client = httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=32))

    def __repr__(self) -> str:
        return f"KuboPinNode({self.url!r})"

    # -- RPC ------------------------------------------------------------------------------
    def _post(self, command: str, params: dict[str, Any], *, timeout: float | None = None,
              content: bytes | None = None, cid: str | None = None) -> httpx.Response:
        files = {"file": ("data", content, "application/octet-stream")} if content is not None else None
        wait = self.timeout
        if timeout is not None:  # Kubo stops the command itself at the deadline, and says so: wait a little longer
            params = {**params, "timeout": f"{int(timeout * 1000)}ms"}
            wait = timeout + 5.0
        try:
            return self._client.post(self.base + command, params=params, files=files, timeout=wait)
        except HTTPX.caught as exc:
            what = "did not answer in time" if isinstance(exc, httpx.TimeoutException) else f"cannot be reached: {exc}"
            raise HTTPX.translate(exc, f"Kubo node {self.url} {what} ({command}{' ' + cid if cid else ''})",
                                  node=self.url, cid=cid) from exc

    def _refused(self, command: str, response: httpx.Response, cid: str | None = None) -> PinError:
        try:
            body = response.json()
            message = str(body.get("Message", body)) if isinstance(body, dict) else str(body)
        except ValueError:
            message = response.text.strip()[:500]
        return PinError(f"Kubo node {self.url} refused {command}{' ' + cid if cid else ''}: HTTP "
                        f"{response.status_code}: {message}", node=self.url, cid=cid, status=response.status_code)

    # -- pins -----------------------------------------------------------------------------
    def pins(self) -> Iterator[NodePin]:
        """Every recursive pin on the node, with its name."""
        r = self._post("pin/ls", {"type": "recursive", "names": "true", "stream": "true"})
        if r.status_code != 200:
            raise self._refused("pin/ls", r)
        for line in r.text.splitlines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                yield NodePin(cid=str(obj["Cid"]), name=str(obj.get("Name") or ""))
            except (ValueError, KeyError, TypeError):
                raise PinError(f"Kubo node {self.url} answered pin/ls with {line[:200]!r}", node=self.url) from None

    def pin(self, cid: str, name: str) -> None:
        """Pin ``cid`` recursively under ``name``, fetching what the node lacks from its peers
        (within ``pin_timeout``)."""
        r = self._post("pin/add", {"arg": cid, "recursive": "true", "name": name[:MAX_PIN_NAME]},
                       timeout=self.pin_timeout, cid=cid)
        if r.status_code != 200:
            raise self._refused("pin/add", r, cid)

    def move_pin(self, old: str, new: str, name: str) -> None:
        """Replace the recursive pin of ``old`` with one of ``new`` (``pin/update``: only the
        difference is fetched and walked), named ``name``."""
        r = self._post("pin/update", {"arg": [old, new], "unpin": "true"}, timeout=self.pin_timeout, cid=new)
        if r.status_code != 200:
            raise self._refused("pin/update", r, new)
        self.pin(new, name)  # pin/update keeps no name: set it (the DAG is local now, so this is quick)

    def unpin(self, cid: str) -> None:
        r = self._post("pin/rm", {"arg": cid, "recursive": "true"}, cid=cid)
        if r.status_code != 200 and "not pinned" not in r.text:
            raise self._refused("pin/rm", r, cid)

    def pin_of(self, cid: str) -> NodePin | None:
        """The node's recursive pin of exactly ``cid`` (Kubo keys pins by CID: a CIDv0 and its
        CIDv1 are two pins), with its name; None when the node has none."""
        r = self._post("pin/ls", {"arg": cid, "type": "recursive", "names": "true"}, cid=cid)
        if r.status_code == 500 and "not pinned" in r.text:
            return None
        if r.status_code != 200:
            raise self._refused("pin/ls", r, cid)
        try:
            keys = r.json()["Keys"]
            found = [NodePin(cid=str(k), name=str((v or {}).get("Name") or "")) for k, v in keys.items()
                     if (v or {}).get("Type") == "recursive"]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise PinError(f"Kubo node {self.url} answered pin/ls {cid} with {r.text[:200]!r}", node=self.url,
                           cid=cid) from None
        return found[0] if found else None

    def connect(self, addresses: list[str], *, timeout: float = 10.0) -> bool:
        """Ask the node to connect to the peers at ``addresses`` (multiaddrs ending ``/p2p/ID``),
        all within ``timeout``; whether it connected to all. Best effort: a refusal or a peer out
        of reach is False, never an error."""
        if not addresses:
            return True
        try:
            r = self._post("swarm/connect", {"arg": addresses}, timeout=timeout)
        except PinError:
            return False
        return r.status_code == 200

    def has_block(self, cid: str) -> bool:
        """Whether the node holds the block ``cid`` itself (asking no peer)."""
        r = self._post("block/stat", {"arg": cid, "offline": "true"}, cid=cid)
        if r.status_code == 200:
            return True
        if r.status_code == 500 and "not found" in r.text.lower():
            return False
        raise self._refused("block/stat", r, cid)

    def peer_addresses(self) -> list[str]:
        """The node's swarm multiaddrs with its peer ID (``/ip4/.../p2p/ID``)."""
        r = self._post("id", {})
        if r.status_code != 200:
            raise self._refused("id", r)
        return [str(a) for a in (r.json().get("Addresses") or [])]

    # -- state in the node's MFS ----------------------------------------------------------
    def read_state(self, path: str) -> dict[str, Any] | None:
        """The JSON object at ``path`` in the node's MFS, or None when there is none."""
        r = self._post("files/read", {"arg": path, "count": str(MAX_STATE_BYTES + 1)})
        if r.status_code != 200:
            if "does not exist" in r.text or "not exist" in r.text:
                return None
            raise self._refused("files/read", r)
        if len(r.content) > MAX_STATE_BYTES:
            raise PinError(f"Kubo node {self.url}: {path} is larger than {MAX_STATE_BYTES} bytes", node=self.url)
        try:
            value = json.loads(r.content)
        except ValueError:
            raise PinError(f"Kubo node {self.url}: {path} is not JSON", node=self.url) from None
        if not isinstance(value, dict):
            raise PinError(f"Kubo node {self.url}: {path} is not a JSON object", node=self.url)
        return value

    def write_state(self, path: str, value: dict[str, Any]) -> None:
        """Replace the file at ``path`` in the node's MFS with ``value`` as JSON (MFS replaces
        a file's root at once: a reader sees the old or the new file)."""
        data = json.dumps(value, sort_keys=True).encode()
        r = self._post("files/write", {"arg": path, "create": "true", "parents": "true", "truncate": "true",
                                       "raw-leaves": "true"}, content=data)
        if r.status_code != 200:
            raise self._refused("files/write", r)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> KuboPinNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
