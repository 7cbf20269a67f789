"""Atomic file writes: readers see the old file or the new one, whole, never a part.

>>> import tempfile, pathlib, json
>>> path = pathlib.Path(tempfile.mkdtemp()) / "state.json"
>>> write_json_atomic(path, {"head": None})
>>> json.loads(path.read_text())
{'head': None}
>>> with atomic_file(path) as f:
...     _ = f.write(b"{}")
>>> path.read_text()
'{}'
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_file", "write_json_atomic"]


@contextmanager
def atomic_file(path: Path, *, durable: bool = True) -> Iterator[IO[bytes]]:
    """A binary file that replaces ``path`` when the block ends without an error: a temp file
    in the same folder, flushed (and fsynced when ``durable``), renamed over ``path``. On an
    error the temp file is removed and ``path`` is untouched."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, value: Any, **dump: Any) -> None:
    """Write ``value`` as JSON to ``path`` atomically and durably (see :func:`atomic_file`);
    ``dump`` goes to :func:`json.dumps`."""
    data = json.dumps(value, **dump).encode("utf-8")
    with atomic_file(path) as f:
        f.write(data)
