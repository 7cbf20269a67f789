"""The error tree: typed context per class, and one complete map per third-party boundary.

* Context is declared per class (annotated attributes): an undeclared key is a TypeError,
  every declared key reads back, errors survive pickling and copying, and every raise site
  and every map translation in ``halodb/`` uses only declared keys (checked on the source).
* Every exception class httpx, dnspython, DuckDB, zarr (with its codecs) and cryptography
  define is translated by each map of that library, to the class users saw before the maps;
  no ``except`` block translates those libraries' exceptions without a map.
"""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
import pickle
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import halodb
import halodb.errors
from halodb.errors import (
    ERROR_MAPS,
    PinError,
    BlockNotFoundError,
    BlockStoreError,
    CacheError,
    CIDLike,
    DatasetError,
    DecodeError,
    EncodeError,
    ErrorMap,
    HaloDBError,
    InputError,
    MigrationError,
    NameUpdateError,
    QueryError,
    RequestError,
    ResolverError,
    UnixFSError,
    VerificationError,
)
from halodb.ipld import CID

HALODB = Path(halodb.__file__).parent


# --- the classes and their declared context --------------------------------------------------
def _error_classes() -> list[type[HaloDBError]]:
    found: list[type[HaloDBError]] = []
    todo: list[type[HaloDBError]] = [HaloDBError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted({c for c in found if c.__module__ == "halodb.errors"}, key=lambda c: c.__name__)


ERROR_CLASSES = _error_classes()


def declared(cls: type[HaloDBError]) -> dict[str, str]:
    """The context keys ``cls`` declares (its and its bases' annotations) and their types."""
    keys: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if isinstance(klass, type) and issubclass(klass, HaloDBError):
            keys.update({k: str(t) for k, t in vars(klass).get("__annotations__", {}).items()
                         if not k.startswith("_") and k not in ("message", "context")})
    return keys


def test_the_tree_is_complete_and_exported() -> None:
    assert len(ERROR_CLASSES) > 30
    for cls in ERROR_CLASSES:
        assert getattr(halodb, cls.__name__) is cls and cls.__name__ in halodb.__all__, cls
        assert getattr(halodb.errors, cls.__name__) is cls


def test_no_catch_all_getattr() -> None:
    for cls in ERROR_CLASSES:
        assert "__getattr__" not in vars(cls), cls
    err: Any = BlockNotFoundError("gone", cid=None)
    with pytest.raises(AttributeError):
        _ = err.cdi


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_an_undeclared_key_is_a_type_error(cls: type[HaloDBError]) -> None:
    with pytest.raises(TypeError, match=rf"{cls.__name__} takes no context 'cdi'"):
        cls("oops", cdi="x")


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_declared_context_reads_back(cls: type[HaloDBError]) -> None:
    keys = declared(cls)
    assert "path" in keys  # the one context every error may carry
    context = {k: f"{k} of {cls.__name__}" for k in keys}
    err = cls("it failed", **context)
    assert str(err) == err.message == "it failed" and err.args == ("it failed",)
    assert err.context == context
    for k, v in context.items():
        assert getattr(err, k) == v
    bare = cls("it failed")
    assert bare.context == {}
    for k in keys:
        if k == "path":
            assert not hasattr(bare, "path")  # exists only when known
        else:
            assert getattr(bare, k) is None, (cls, k)  # optional context defaults to None


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_docstrings_list_the_context(cls: type[HaloDBError]) -> None:
    own = [k for k in vars(cls).get("__annotations__", {}) if not k.startswith("_") and k not in ("message", "context")]
    for k in own:
        assert f"``.{k}``" in (cls.__doc__ or ""), f"{cls.__name__}'s docstring does not mention .{k}"


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_pickle_and_copy_keep_message_and_context(cls: type[HaloDBError]) -> None:
    context = {k: f"{k}-value" for k in declared(cls)}
    err = cls("it failed", **context)
    err.add_note("a note")
    for twin in (pickle.loads(pickle.dumps(err)), copy.copy(err), copy.deepcopy(err)):
        assert type(twin) is cls and twin is not err
        assert twin.message == "it failed" and str(twin) == "it failed" and twin.args == ("it failed",)
        assert twin.context == context and twin.context is not err.context
        assert all(getattr(twin, k) == v for k, v in context.items())
        assert twin.__notes__ == ["a note"]


def test_context_added_after_raising_survives_pickling() -> None:
    # what halodb.unixfs.tree.annotate does to an error met while reading a tree path
    err = BlockNotFoundError("gone", cid=None)
    err.context["path"] = "a/b.nc"
    err.path = "a/b.nc"
    twin = pickle.loads(pickle.dumps(err))
    assert twin.context == {"cid": None, "path": "a/b.nc"} and twin.path == "a/b.nc"


def test_a_cid_is_cid_like() -> None:
    cid: CIDLike = CID.for_bytes(b"block")  # mypy checks that CID has what CIDLike promises
    err = BlockNotFoundError("gone", cid=cid)
    assert err.cid == cid and err.cid is not None and err.cid.codec == CID.for_bytes(b"block").codec


def test_errors_imports_nothing_of_halodb() -> None:
    tree = ast.parse((HALODB / "errors.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("halodb"), node.module
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("halodb") for a in node.names)


# --- the source: every construction and translation uses declared keys -------------------------
def _modules() -> Iterator[tuple[str, Path, ast.Module]]:
    for path in sorted(HALODB.rglob("*.py")):
        rel = path.relative_to(HALODB.parent)
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        yield name, path, ast.parse(path.read_text(), str(path))


def _keywords(call: ast.Call) -> set[str]:
    return {k.arg for k in call.keywords if k.arg is not None}


def test_every_raise_site_uses_declared_context() -> None:
    by_name = {c.__name__: c for c in ERROR_CLASSES}
    wrong = []
    sites = 0
    for _, path, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            cls = by_name.get(name or "")
            if cls is None:
                continue
            sites += 1
            undeclared = _keywords(node) - set(declared(cls))
            if undeclared:
                wrong.append(f"{path}:{node.lineno}: {cls.__name__} does not declare {sorted(undeclared)}")
    assert sites > 250
    assert not wrong, "\n".join(wrong)


def test_every_translation_uses_context_each_class_of_its_map_declares() -> None:
    wrong = []
    sites = 0
    for module_name, path, tree in _modules():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "translate" and isinstance(node.func.value, ast.Name)):
                continue
            module = importlib.import_module(module_name)
            if not hasattr(module, node.func.value.id):
                continue  # a local name: str.translate or bytes.translate, not an error map
            emap = getattr(module, node.func.value.id)
            assert isinstance(emap, ErrorMap), f"{path}:{node.lineno}: {node.func.value.id} is not an ErrorMap"
            sites += 1
            for target in set(emap.table.values()):
                undeclared = _keywords(node) - set(declared(target))
                if undeclared:
                    wrong.append(f"{path}:{node.lineno}: {target.__name__} does not declare {sorted(undeclared)}")
    assert sites >= 15
    assert not wrong, "\n".join(wrong)


# --- the maps --------------------------------------------------------------------------------
LIBRARIES = {  # library -> the top-level packages its exceptions are defined in
    "httpx": ("httpx",),
    "aiohttp": ("aiohttp",),
    "dnspython": ("dns",),
    "duckdb": ("duckdb", "_duckdb"),
    "zarr": ("zarr", "numcodecs"),
    "cryptography": ("cryptography",),
    "multiformats": ("multiformats",),
}

BOUNDARY_MODULES = ["halodb.blockstore._boundary", "halodb.naming._boundary", "halodb.naming.ipns_record",
                    "halodb.cache._boundary", "halodb.scan._boundary", "halodb.serve._boundary",
                    "halodb.pins._boundary", "halodb.ipld._boundary"]

# every map, and the one HaloDB error class it gives (the class users saw before the maps)
EXPECTED_MAPS: dict[str, tuple[str, type[HaloDBError]]] = {
    "halodb.blockstore._boundary.HTTPX": ("httpx", BlockStoreError),
    "halodb.blockstore._boundary.AIOHTTP": ("aiohttp", BlockStoreError),
    "halodb.naming.ipns_record.CRYPTOGRAPHY": ("cryptography", VerificationError),
    "halodb.naming._boundary.DNS_LOOKUP": ("dnspython", ResolverError),
    "halodb.naming._boundary.DNS_QUERY": ("dnspython", ResolverError),
    "halodb.naming._boundary.DNS_UPDATE": ("dnspython", NameUpdateError),
    "halodb.naming._boundary.TSIG_KEY": ("dnspython", InputError),
    "halodb.cache._boundary.DUCKDB": ("duckdb", CacheError),
    "halodb.cache._boundary.DUCKDB_QUERY": ("duckdb", QueryError),
    "halodb.cache._boundary.DUCKDB_MIGRATION": ("duckdb", MigrationError),
    "halodb.scan._boundary.ZARR": ("zarr", DatasetError),
    "halodb.serve._boundary.DUCKDB_REQUEST": ("duckdb", RequestError),
    "halodb.pins._boundary.HTTPX": ("httpx", PinError),
    "halodb.ipld._boundary.MULTIFORMATS_DECODE": ("multiformats", DecodeError),
    "halodb.ipld._boundary.MULTIFORMATS_ENCODE": ("multiformats", EncodeError),
}


def _maps() -> dict[str, ErrorMap[Any]]:
    found: dict[str, ErrorMap[Any]] = {}
    for module_name in BOUNDARY_MODULES:
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if isinstance(value, ErrorMap):
                found[f"{module_name}.{name}"] = value
    return found


def _subclasses(roots: Iterable[type[BaseException]], packages: tuple[str, ...]) -> set[type[BaseException]]:
    """``roots`` and every subclass of them defined in ``packages``."""
    seen: set[type[BaseException]] = set()
    todo = list(roots)
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        todo.extend(s for s in cls.__subclasses__() if s.__module__.split(".")[0] in packages)
    return seen


def _defined_in(packages: tuple[str, ...]) -> set[type[BaseException]]:
    """Every exception class a loaded public module of ``packages`` defines or re-exports, and their
    subclasses. Private modules' own exceptions are the library's internal business (DuckDB's
    ``_sources.nodes.Untranslatable`` is raised and caught inside DuckDB); httpx's, defined in
    ``httpx._exceptions``, count because ``httpx`` exports them."""
    roots: set[type[BaseException]] = set()
    for name, module in list(sys.modules.items()):
        parts = name.split(".")
        if parts[0] in packages and not any(p.startswith("_") for p in parts[1:]) and module is not None:
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, BaseException) and obj.__module__.split(".")[0] in packages:
                    roots.add(obj)
    return _subclasses(roots, packages)


def library_exceptions(library: str) -> set[type[BaseException]]:
    """Every exception class ``library`` defines (in the modules HaloDB uses, all loaded)."""
    packages = LIBRARIES[library]
    if library == "httpx":
        import httpx

        return _defined_in(packages) | _subclasses(
            [getattr(httpx, n) for n in httpx.__all__
             if inspect.isclass(getattr(httpx, n)) and issubclass(getattr(httpx, n), BaseException)], packages)
    if library == "aiohttp":  # what a client request can raise: websockets, multipart, servers are not used
        import aiohttp
        import aiohttp.http_exceptions

        client_side = [aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError]
        return {c for c in _defined_in(packages) if issubclass(c, tuple(client_side))} | _subclasses(client_side, packages)
    if library == "dnspython":
        for m in ("exception", "message", "name", "nameserver", "query", "rcode", "rdata", "rdataclass",
                  "rdatatype", "resolver", "rrset", "tsig", "update"):
            importlib.import_module(f"dns.{m}")
        import dns.exception

        return _defined_in(packages) | _subclasses([dns.exception.DNSException], packages)
    if library == "duckdb":
        import duckdb

        return _defined_in(packages) | _subclasses([duckdb.Error, duckdb.Warning], packages)
    if library == "zarr":
        import zarr
        import zarr.errors
        import zarr.storage

        importlib.import_module("halodb.scan.zarr_meta")
        zarr.open_group(zarr.storage.MemoryStore(), mode="w").create_array("x", shape=(2,), dtype="f8")
        return _defined_in(packages)
    if library == "cryptography":
        import cryptography.exceptions

        return _defined_in(packages)
    if library == "multiformats":
        import pkgutil

        import multiformats

        for info in pkgutil.walk_packages(multiformats.__path__, "multiformats."):
            importlib.import_module(info.name)
        return _defined_in(packages)
    raise AssertionError(library)


def test_the_maps_are_the_expected_ones() -> None:
    maps = _maps()
    assert sorted(maps) == sorted(EXPECTED_MAPS)
    assert {id(m) for m in ERROR_MAPS} == {id(m) for m in maps.values()}, "an ErrorMap outside the boundary modules"
    assert {m.library for m in maps.values()} == set(LIBRARIES)
    for name, m in maps.items():
        assert m.library == EXPECTED_MAPS[name][0] and m.boundary and m.caught == tuple(m.table)


@pytest.mark.parametrize("name", sorted(EXPECTED_MAPS))
def test_every_exception_of_the_library_is_mapped(name: str) -> None:
    library, expected = EXPECTED_MAPS[name]
    emap = _maps()[name]
    exceptions = library_exceptions(library)
    assert len(exceptions) >= {"httpx": 25, "aiohttp": 25, "dnspython": 50, "duckdb": 30, "zarr": 20, "cryptography": 8,
                                 "multiformats": 8}[library]
    unmapped = sorted(f"{c.__module__}.{c.__qualname__}" for c in exceptions if not issubclass(c, emap.caught))
    assert not unmapped, f"{name} does not catch {unmapped}"
    for exc in exceptions:
        assert emap.error_class(exc) is expected, (name, exc)


def test_the_direct_dns_maps_also_translate_the_socket() -> None:
    maps = _maps()
    for name in ("halodb.naming._boundary.DNS_QUERY", "halodb.naming._boundary.DNS_UPDATE"):
        for exc in (ConnectionRefusedError, TimeoutError, EOFError, ValueError):
            assert maps[name].error_class(exc) is EXPECTED_MAPS[name][1]


def test_error_class_walks_the_mro_to_the_nearest_base() -> None:
    m = ErrorMap("example", "a test", {LookupError: InputError, KeyError: UnixFSError})
    try:
        assert m.error_class(KeyError) is UnixFSError and m.error_class(IndexError("i")) is InputError
        with pytest.raises(LookupError, match="ValueError is not in the example map of a test"):
            m.error_class(ValueError())
        err = m.translate(KeyError("k"), "no k", cid=None, path="a")
        assert type(err) is UnixFSError and err.message == "no k" and err.path == "a"
        with pytest.raises(TypeError):
            m.translate(KeyError("k"), "no k", cdi=None)
    finally:
        ERROR_MAPS.remove(m)


# --- except blocks: a translation of a mapped library goes through its map ---------------------
def _third_party_names(tree: ast.Module) -> set[str]:
    """Names bound in the module to one of the mapped libraries (``httpx``, ``dns``, ``InvalidSignature``)."""
    packages = {p for ps in LIBRARIES.values() for p in ps}
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in packages:
                    names.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in packages:
            names.update(a.asname or a.name for a in node.names)
    return names


def _roots(expr: ast.expr | None) -> Iterator[str]:
    if isinstance(expr, ast.Tuple):
        for e in expr.elts:
            yield from _roots(e)
    elif isinstance(expr, ast.Starred):
        yield from _roots(expr.value)
    elif isinstance(expr, ast.Attribute):
        yield from _roots(expr.value)
    elif isinstance(expr, ast.Name):
        yield expr.id


def test_no_except_block_translates_a_mapped_library_without_its_map() -> None:
    """A handler that names httpx, dnspython, DuckDB, zarr or cryptography exceptions may
    swallow them or answer (NXDOMAIN is an answer), but raises only through a map."""
    wrong = []
    for _, path, tree in _modules():
        if path.name == "_boundary.py":
            continue
        third = _third_party_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and third & set(_roots(node.type)):
                raises = [r for stmt in node.body for r in ast.walk(stmt) if isinstance(r, ast.Raise) and r.exc is not None]
                if raises:
                    wrong.append(f"{path}:{node.lineno}: except {ast.unparse(node.type or node)} raises without an ErrorMap")
    assert not wrong, "\n".join(wrong)


# --- failures that escaped untranslated before the maps ------------------------------------------
def test_a_kubo_url_that_does_not_parse_is_a_block_store_error() -> None:
    from halodb.blockstore.kubo import KuboStore

    store = KuboStore("kubo+http://127.0.0.1:notaport")
    try:
        with pytest.raises(BlockStoreError, match="Invalid port") as info:
            store.has(CID.for_bytes(b"x"))
        assert info.value.store == "kubo+http://127.0.0.1:notaport"
    finally:
        store.close()


def test_a_gateway_url_that_does_not_parse_is_refused_at_once() -> None:
    from halodb.blockstore.gateway import GatewayStore
    from halodb.errors import StoreURLError

    for url in ("http://127.0.0.1:notaport", "ftp://127.0.0.1/", "http:///ipfs"):
        with pytest.raises(StoreURLError, match="not a gateway URL") as info:
            GatewayStore([url], retries=0)
        assert info.value.url is not None and info.value.url.startswith(url.rstrip("/"))


def test_a_primary_that_is_no_ip_address_is_a_resolver_error() -> None:
    from halodb.naming.dnsclient import ResolverConfig
    from halodb.naming.dnsupdate import DNSLinkNames

    names = DNSLinkNames(ResolverConfig(nameservers=(("127.0.0.1", 53),)))
    with pytest.raises(ResolverError, match="ValueError") as info:
        names._read("_dnslink.x.campaign.test.", ("localhost", 53))
    assert info.value.nameserver == "localhost:53" and info.value.rcode == "ValueError"


def test_a_tsig_key_name_that_is_no_dns_name_is_an_input_error(tmp_path: Path) -> None:
    from halodb.naming.tsig import key_from_file

    keyfile = tmp_path / "k.key"
    keyfile.write_text('key "k1" { algorithm hmac-sha256; secret "c2VjcmV0"; };\n')
    with pytest.raises(InputError, match="'a..b' is not a key name") as info:
        key_from_file(keyfile, "a..b")
    assert info.value.source == str(keyfile)
    assert key_from_file(keyfile, "k1").name.to_text() == "k1."
