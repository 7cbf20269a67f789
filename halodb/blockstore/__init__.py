"""Block stores: one interface (:class:`BlockStore`, capability flags), its backends, CAR files.

Owns where blocks live, and that every block read or written is verified against its CID.
May import only :mod:`halodb.ipld`, :mod:`halodb.util` and :mod:`halodb.errors`: never the
index, names, cache or anything above, nor DuckDB, Arrow, Zarr, NumPy, pydantic or pystac.

>>> import tempfile
>>> from pathlib import Path
>>> store = open_store("memory:", Path(tempfile.gettempdir()))
>>> cid = store.put(b"hello", codec=0x55)
>>> store.get(cid)
b'hello'
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

from halodb.blockstore.base import Block, BlockStore, StoreStats
from halodb.blockstore.car import CarStore, import_car, read_car, write_car
from halodb.blockstore.directory import DirectoryStore
from halodb.blockstore.memory import MemoryStore
from halodb.blockstore.sqlite import SqliteStore
from halodb.errors import StoreURLError

__all__ = [
    "Block",
    "BlockStore",
    "CarStore",
    "DirectoryStore",
    "MemoryStore",
    "SqliteStore",
    "StoreStats",
    "import_car",
    "open_store",
    "read_car",
    "write_car",
]

SUPPORTED_URLS = (
    "memory:",
    "file:///absolute/path (or a plain path): the folder of an embedded store",
    "car:/path/to/file.car",
    "kubo+http://host:port (a Kubo node's RPC API)",
    "https://gateway/[,https://another/] (trustless gateways, read-only)",
    "gateway: (gateways from IPFS_GATEWAY, $IPFS_PATH/gateway, ~/.ipfs/gateway)",
)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def open_store(url: str | None, home: Path, *, lazy: bool = False) -> BlockStore:
    """Open the block store named by ``url`` (a ``--store`` option).

    * None or ``""``: the default :class:`SqliteStore` in ``home / "blocks"`` (a
      :class:`DirectoryStore` found there, the layout before, is migrated into it)
    * ``memory:``: a fresh :class:`MemoryStore`
    * ``file:///abs/path`` or a plain path (``~`` expanded): a :class:`SqliteStore` there
    * ``car:/path/x.car``: a read-only :class:`CarStore`
    * ``kubo+http://host:port``: a :class:`~halodb.blockstore.kubo.KuboStore`
    * ``https://gw/`` (comma-separated for fallbacks): a read-only
      :class:`~halodb.blockstore.gateway.GatewayStore`

    Anything else raises :class:`~halodb.errors.StoreURLError`.

    >>> type(open_store("memory:", Path("/tmp"))).__name__
    'MemoryStore'
    """
    if not url:
        return SqliteStore(home / "blocks", lazy=lazy)
    m = _SCHEME.match(url)
    scheme = m.group(1).lower() if m else ""
    if not m or (len(scheme) == 1 and sys.platform == "win32"):  # a path, maybe C:\...
        _refuse_an_address(url)
        return SqliteStore(Path(url).expanduser())
    if scheme == "memory" and url[len(scheme) + 1:] in ("", "//"):
        return MemoryStore()
    if scheme == "file":
        return SqliteStore(_file_url_path(url))
    if scheme == "gateway" and url[len(scheme) + 1:] in ("", "//"):
        from halodb.blockstore.gateway import GatewayStore, discover_gateways

        found = discover_gateways()
        if not found:
            raise StoreURLError(
                "gateway: found no gateway (set IPFS_GATEWAY, or write one in $IPFS_PATH/gateway or ~/.ipfs/gateway)",
                url=url,
            )
        return GatewayStore(found)
    if scheme in ("http", "https"):
        from halodb.blockstore.gateway import GatewayStore

        gateways = [u.strip() for u in url.split(",") if u.strip()]
        for gateway in gateways:
            _check_http_url(gateway, url)
        return GatewayStore(gateways)
    if scheme in ("kubo+http", "kubo+https"):
        from halodb.blockstore.kubo import KuboStore

        _check_http_url(url, url)
        return KuboStore(url)
    if scheme == "car":
        rest = url[len(scheme) + 1:]
        if rest.startswith("//"):
            return CarStore(_file_url_path("file:" + rest, url))
        if rest:
            return CarStore(Path(unquote(rest)).expanduser())
    raise _unsupported(url)


#: ``HOST:PORT`` and the multiaddress Kubo prints for its API (``/ip4/127.0.0.1/tcp/5001``)
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})/?$")
_MULTIADDR = re.compile(r"^/(?:ip4|ip6|dns|dns4|dns6)/(?P<host>[^/]+)/tcp/(?P<port>[0-9]{1,5})(?:/http)?/?$")


def _refuse_an_address(url: str) -> None:
    """Refuse a store given as a path that is a network address (``127.0.0.1:5001``,
    ``/ip4/127.0.0.1/tcp/5001``) and no existing folder: it would silently become an empty
    block store folder of that name. The error says which URL was meant."""
    found = _HOST_PORT.match(url) or _MULTIADDR.match(url)
    if found is None or Path(url).expanduser().exists():
        return
    host = found["host"]
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    where = f"{host}:{found['port']}"
    raise StoreURLError(f"block store {url!r} is a network address, not a folder: a Kubo node's RPC API is "
                        f"kubo+http://{where}, a gateway http://{where}/ (a folder of that name: ./{url.lstrip('/')})",
                        url=url)


def _check_http_url(url: str, original: str) -> None:
    """Refuse an HTTP(S) URL without a host, or whose host or port cannot be parsed, before
    anything is asked of it (a store is opened lazily: a bad URL would otherwise surface
    only when a block is missing locally)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", ...
        why = str(exc)
    else:
        if parts.hostname and port != 0:
            return
        why = "no host" if not parts.hostname else "port 0"
    shown = "" if url == original else f" ({url!r})"
    raise StoreURLError(f"invalid block store URL {original!r}{shown}: {why}", url=original)


def _file_url_path(url: str, original: str | None = None) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or not parts.path or parts.query or parts.fragment:
        raise _unsupported(original or url, "expected file:///absolute/path")
    path = unquote(parts.path)
    if os.name == "nt" and re.match(r"^/[A-Za-z]:", path):  # pragma: no cover - Windows
        path = path[1:]
    return Path(path)


def _unsupported(url: str, detail: str = "") -> StoreURLError:
    extra = f" ({detail})" if detail else ""
    return StoreURLError(
        f"unsupported block store URL {url!r}{extra}. Supported: {', '.join(SUPPORTED_URLS)}.",
        url=url,
    )
