"""The embedded default block store: one file per block in a sharded directory.

Layout::

    <root>/<shard>/<name>

* ``<name>`` is the lowercase base32 multibase text (``b...``) of the CID's binary form.
  For every CIDv1 that is exactly ``str(cid)`` (``bafyrei...`` for dag-cbor,
  ``bafkrei...`` for raw); a CIDv0 (``Qm...``) is stored as ``bciqa...`` so that every
  name is lowercase and safe on case-insensitive file systems. The name parses back to
  the same CID, so listing needs no side index.
* ``<shard>`` is ``name[-3:-1]``: the second- and third-to-last characters. The start of
  a name is constant (``bafyrei``) and the very last character of a sha2-256 CIDv1 carries
  only 3 bits, while these two carry 5 bits of digest each, giving 1024 evenly filled
  shards (the same idea as Kubo's flatfs ``next-to-last/2``). 100k blocks make ~100 files
  per directory.
* Files whose name starts with ``.`` are temporary files of writes in progress (or of a
  write that crashed); they are never read or listed.
* ``<root>/.quarantine/<name>`` (``<name>.2``, ... when taken) holds damaged copies of
  blocks, kept as evidence; nothing reads them, ``gc`` leaves them (delete them by hand).

Writes are atomic: the bytes go to a temporary file in the shard directory, which
``os.replace`` then renames onto the final name, so a reader sees either no block or the
whole block, never a partial file. A block already stored is not rewritten: its file is
read and compared with the bytes to put (a size check alone would keep a damaged copy
forever). A file that differs (damaged, or truncated by a crash before a flush) is linked
into the quarantine and replaced.

Damaged copies: a read whose bytes do not hash to the CID moves the file into the
quarantine (:meth:`~halodb.blockstore.base.BlockStore.quarantine`), so the block is missing
from then on and a re-import (or a :class:`~halodb.blockstore.caching.CachingStore`, which
fetches it again from its remote) writes it anew; the error names the file and where it
went. The move is checked: if a writer repaired the block just before it, the good copy is
put back.

Temporary files of killed writers: a writer holds an exclusive ``flock`` on its temporary
file from just after creating it until it has renamed it, so
:meth:`DirectoryStore.remove_stale_temp_files` (run by ``gc``) removes exactly the ones no
live writer holds, in any process, at once, with no age guess. (A writer whose file was
removed between its ``open`` and its ``flock`` sees the link count 0 and starts over.)

Durability: single writes are not fsync'ed (far too slow for 100k blocks). :meth:`flush`
makes every write and delete since the last flush durable: it fsyncs each file written,
then each directory touched. When many files are pending on Linux (see
``sync_all_threshold``), it calls ``os.sync()`` once instead, which on Linux waits until
all dirty data of the system is on disk and is much faster than thousands of fsyncs.
Until a flush, a crash can lose or truncate recent blocks, but never corrupts a block
silently: every read is verified against its CID.

>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as tmp:
...     store = DirectoryStore(Path(tmp))
...     cid = store.put(b"hello", codec=0x55)
...     store.flush()
...     print(store.get(cid), store.path_of(cid).parent.name == str(cid)[-3:-1])
b'hello' True
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libipld

from halodb.blockstore.base import Block, BlockStore
from halodb.errors import BlockStoreError, CIDError, VerificationError
from halodb.ipld import CID

#: the folder under the root where damaged block files are set aside
QUARANTINE = ".quarantine"
#: ``.<name>.<pid>.<n>.tmp``: the temporary file of a block write (in a shard directory)
_TEMP_NAME = re.compile(r"\.b[a-z2-7]+\.\d+\.\d+\.tmp")
_WRITE_ATTEMPTS = 5
_PARALLEL_MIN = 256
_WRITER_THREADS = 8
#: bytes asked for by the first read of a block; a shorter result is the whole block
_FIRST_READ = 16_384
_tmp_counter = itertools.count()
_O_READ = os.O_RDONLY | getattr(os, "O_BINARY", 0)
_O_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def block_name(cid: CID) -> str:
    """The file name of ``cid``: lowercase base32 of its binary form.

    >>> block_name(CID.parse("QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY"))[:5]
    'bciqc'
    """
    if cid.version == 1:
        return str(cid)
    return libipld.encode_multibase("b", cid.buffer)


def cid_from_name(name: str) -> CID | None:
    """The CID a block file name stands for, or None when the name is not one.

    >>> cid_from_name("bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq") is not None
    True
    """
    if not name.startswith("b"):
        return None
    try:
        base, buf = libipld.decode_multibase(name)
    except ValueError:
        return None
    if base != "b":
        return None
    try:
        return CID.parse(bytes(buf))
    except CIDError:
        return None


class DirectoryStore(BlockStore):
    """Blocks as files under ``root`` (created if missing); see the module docstring.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     store = DirectoryStore(Path(tmp) / "blocks")
    ...     cid = store.put(b"x", codec=0x55)
    ...     print(list(store.iter_cids()) == [cid])
    True
    """

    supports_deletes = True
    supports_listing = True
    supports_quarantine = True
    #: above this many pending files, :meth:`flush` on Linux calls ``os.sync()`` once
    sync_all_threshold: int = 1000

    def __init__(self, root: Path | str) -> None:
        super().__init__()
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BlockStoreError(
                f"cannot create block store directory {self.root}: {exc}", path=self.root
            ) from exc
        self._root = os.fspath(self.root)
        self._shards: set[str] = set()
        self._pending_files: set[str] = set()
        self._pending_dirs: set[str] = set()
        self._pending_lock = threading.Lock()  # writers in many threads, and flush

    # -- paths ---------------------------------------------------------------------------
    def path_of(self, cid: CID) -> Path:
        """Where the block ``cid`` is (or would be) stored."""
        return Path(self._path(cid))

    def _path(self, cid: CID) -> str:
        name = block_name(cid)
        return f"{self._root}/{name[-3:-1]}/{name}"

    @property
    def quarantine_dir(self) -> Path:
        """Where damaged block files are set aside."""
        return self.root / QUARANTINE

    def describe(self) -> str:
        return f"directory store {self.root}"

    # -- reads ---------------------------------------------------------------------------
    def _get(self, cid: CID) -> bytes | None:
        return self._read(self._path(cid), cid)

    def _read(self, path: str, cid: CID) -> bytes | None:
        # the hot path of a sync: raw os.open/os.read is ~2x faster than open().read()
        try:
            fd = os.open(path, _O_READ)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BlockStoreError(f"cannot read block {cid} from {path}: {exc}", cid=cid, path=path) from exc
        try:
            data = os.read(fd, _FIRST_READ)  # most blocks fit: no fstat needed
            if len(data) < _FIRST_READ:
                return data
            size = os.fstat(fd).st_size
            parts = [data]
            while len(data) < size:
                more = os.read(fd, size - len(data))
                if not more:
                    break
                parts.append(more)
                data = b"".join(parts)
            return data
        except OSError as exc:
            raise BlockStoreError(f"cannot read block {cid} from {path}: {exc}", cid=cid, path=path) from exc
        finally:
            os.close(fd)

    def _has(self, cid: CID) -> bool:
        return os.path.isfile(self._path(cid))

    def _iter_cids(self) -> Iterator[CID]:
        try:
            shards = sorted(e.name for e in os.scandir(self._root) if e.is_dir() and len(e.name) == 2)
        except FileNotFoundError:
            return
        for shard in shards:
            try:
                entries = list(os.scandir(f"{self._root}/{shard}"))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.startswith(".") or entry.name[-3:-1] != shard:
                    continue
                cid = cid_from_name(entry.name)
                if cid is not None:
                    yield cid

    # -- damaged copies ------------------------------------------------------------------
    def _quarantine(self, cid: CID) -> str | None:
        path = self._path(cid)
        target = self._quarantine_target(cid, path)
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return None  # gone meanwhile (another reader set it aside)
        except OSError as exc:
            raise BlockStoreError(f"cannot move the damaged block file {path} to {target}: {exc}",
                                  cid=cid, path=path) from exc
        self._note(dirs=(os.path.dirname(path), os.path.dirname(target)))
        moved = self._read(target, cid)
        if moved is not None and cid.verify(moved):
            # a writer repaired the block between the failed read and the rename: put it back
            try:
                try:
                    os.link(target, path)
                except FileExistsError:
                    pass  # written yet again meanwhile
                os.unlink(target)
            except OSError as exc:
                raise BlockStoreError(f"cannot move block file {target} back to {path}: {exc}",
                                      cid=cid, path=path) from exc
            return None
        return target

    def _quarantine_target(self, cid: CID, path: str) -> str:
        """A free name in the quarantine for the file of ``cid`` (``<name>``, ``<name>.2``, ...)."""
        folder = f"{self._root}/{QUARANTINE}"
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise BlockStoreError(f"cannot create the quarantine folder {folder}: {exc}", cid=cid, path=path) from exc
        name = block_name(cid)
        target = f"{folder}/{name}"
        n = 1
        while os.path.lexists(target):
            n += 1
            target = f"{folder}/{name}.{n}"
        return target

    def _keep_evidence(self, cid: CID, path: str) -> None:
        """Hard-link the damaged file of ``cid`` into the quarantine before it is replaced
        (the block stays readable meanwhile); best effort: the repair matters more."""
        for _ in range(_WRITE_ATTEMPTS):
            try:
                os.link(path, self._quarantine_target(cid, path))
                return
            except FileExistsError:
                continue  # another process took that name meanwhile
            except (OSError, BlockStoreError):
                return

    def _missing_note(self, cid: CID) -> str:
        kept = f"{self._root}/{QUARANTINE}/{block_name(cid)}"
        if not os.path.lexists(kept):
            return ""
        return (f" (a damaged copy of it was set aside in {kept}: re-import the block with halodb import-car,"
                " or fetch it again from a store that has it with --store)")

    def _damaged(self, cid: CID, moved_to: str | None) -> VerificationError:
        where = f"; moved it to {moved_to}" if moved_to else ""
        path = self._path(cid)
        return VerificationError(
            f"block file {path} is damaged: it does not hash to its CID {cid}{where}. Re-import the block"
            " (halodb import-car) or fetch it again from a store that has it (--store with a gateway or Kubo)",
            cid=cid, source=self.describe(), path=path,
        )

    # -- writes --------------------------------------------------------------------------
    def _put(self, cid: CID, data: bytes) -> None:
        name = block_name(cid)
        shard = name[-3:-1]
        shard_dir = f"{self._root}/{shard}"
        path = f"{shard_dir}/{name}"
        stored = self._read(path, cid)
        if stored is not None:
            if stored == data:
                return  # already stored (content addressed: same CID, same bytes)
            self._keep_evidence(cid, path)  # a damaged or truncated copy: replaced below
        if shard not in self._shards:
            try:
                os.makedirs(shard_dir, exist_ok=True)
            except OSError as exc:
                raise BlockStoreError(
                    f"cannot create shard directory {shard_dir}: {exc}", cid=cid, path=shard_dir
                ) from exc
            self._shards.add(shard)
            self._note(dirs=(self._root,))
        for _ in range(_WRITE_ATTEMPTS):
            if self._write(cid, path, f"{shard_dir}/.{name}.{os.getpid()}.{next(_tmp_counter)}.tmp", data):
                self._note(files=(path,), dirs=(shard_dir,))
                return
        raise BlockStoreError(f"cannot write block {cid} to {path}: its temporary file was removed"
                              f" {_WRITE_ATTEMPTS} times while being written", cid=cid, path=path)

    def _write(self, cid: CID, path: str, tmp: str, data: bytes) -> bool:
        """Write ``data`` to ``tmp``, under its lock, and rename it to ``path``; False when
        ``gc`` removed ``tmp`` before the lock was taken (start over with a new name)."""
        try:
            fd = os.open(tmp, _O_WRITE, 0o644)
        except OSError as exc:
            raise BlockStoreError(f"cannot write block {cid} to {path}: {exc}", cid=cid, path=path) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held until the rename: gc leaves the file alone
            if os.fstat(fd).st_nlink == 0:
                return False
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.replace(tmp, path)
            return True
        except BaseException as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise BlockStoreError(
                    f"cannot write block {cid} to {path}: {exc}", cid=cid, path=path
                ) from exc
            raise
        finally:
            os.close(fd)

    def _put_many(self, blocks: list[Block]) -> None:
        # Creating a file costs a journal round trip on ext4 (~100 us here); the syscalls
        # release the GIL, so a few threads writing into different shards overlap them
        # (2.4x faster for 20k blocks on a 2-core machine).
        if len(blocks) < _PARALLEL_MIN:
            for cid, data in blocks:
                self._put(cid, data)
            return
        try:
            with ThreadPoolExecutor(_WRITER_THREADS) as pool:
                for _ in pool.map(lambda b: self._put(b[0], b[1]), blocks, chunksize=64):
                    pass
        except RuntimeError as exc:  # at exit no new pool threads start: write them here (puts repeat harmlessly)
            if "shutdown" not in str(exc):
                raise
            for cid, data in blocks:
                self._put(cid, data)

    def _delete(self, cid: CID) -> None:
        path = self._path(cid)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise BlockStoreError(f"cannot delete block {cid} at {path}: {exc}", cid=cid, path=path) from exc
        with self._pending_lock:
            self._pending_files.discard(path)
            self._pending_dirs.add(os.path.dirname(path))

    def remove_stale_temp_files(self) -> int:
        """Remove the temporary files of block writes that were killed; returns how many.

        A file is removed only when no writer holds its lock (see the module docstring), so
        the writes running in other processes meanwhile are not disturbed.

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     store = DirectoryStore(Path(tmp))
        ...     cid = store.put(b"x", codec=0x55)
        ...     left = store.path_of(cid).with_name(f".{store.path_of(cid).name}.99.0.tmp")
        ...     _ = left.write_bytes(b"x")  # as a write killed before its rename leaves it
        ...     print(store.remove_stale_temp_files(), left.exists(), store.has(cid))
        1 False True
        """
        removed = 0
        try:
            shards = [e.path for e in os.scandir(self._root) if e.is_dir() and len(e.name) == 2]
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise BlockStoreError(f"cannot list {self.describe()}: {exc}", path=self.root) from exc
        for shard in shards:
            try:
                entries = [e for e in os.scandir(shard) if _TEMP_NAME.fullmatch(e.name)]
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise BlockStoreError(f"cannot list {shard}: {exc}", path=shard) from exc
            removed += sum(_remove_if_abandoned(e.path) for e in entries)
        return removed

    def flush(self) -> None:
        """Make every write and delete since the last flush durable.

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     store = DirectoryStore(Path(tmp))
        ...     _ = store.put(b"x", codec=0x55)
        ...     store.flush()
        """
        with self._pending_lock:  # what was written until now; later writes wait for the next flush
            files, dirs = self._pending_files, self._pending_dirs
            self._pending_files, self._pending_dirs = set(), set()
        if not files and not dirs:
            return
        try:
            if sys.platform == "linux" and len(files) > self.sync_all_threshold:
                os.sync()
            else:
                for path in files:
                    _fsync_path(path, directory=False)
                if os.name != "nt":  # directories cannot be fsync'ed on Windows
                    for path in sorted(dirs, key=len, reverse=True):
                        _fsync_path(path, directory=True)
        except OSError as exc:
            self._note(files=files, dirs=dirs)  # still not durable: the next flush tries again
            raise BlockStoreError(f"cannot flush {self.describe()}: {exc}", path=self.root) from exc

    def _note(self, *, files: Iterable[str] = (), dirs: Iterable[str] = ()) -> None:
        """Remember files and folders written since the last flush."""
        with self._pending_lock:
            self._pending_files.update(files)
            self._pending_dirs.update(dirs)

    def close(self) -> None:
        """Flush; the store holds no other resources."""
        self.flush()


def _remove_if_abandoned(path: str) -> bool:
    """Remove the temporary file ``path`` unless a live writer holds its lock."""
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, PermissionError):
        return False  # renamed by its writer meanwhile, or not ours to remove
    except OSError as exc:
        raise BlockStoreError(f"cannot open the temporary file {path}: {exc}", path=path) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its writer is alive
        locked = os.fstat(fd)
        try:
            now = os.stat(path)
        except FileNotFoundError:
            return False
        if (now.st_dev, now.st_ino) != (locked.st_dev, locked.st_ino):
            return False  # the name moved on to another file meanwhile
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise BlockStoreError(f"cannot remove the temporary file {path}: {exc}", path=path) from exc
    finally:
        os.close(fd)


def _fsync_path(path: str, *, directory: bool) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except FileNotFoundError:
        return  # deleted since it was written: nothing to make durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
