"""Small file-system helpers shared by the stores that keep JSON files.

>>> import tempfile, pathlib, json
>>> path = pathlib.Path(tempfile.mkdtemp()) / "state.json"
>>> write_json_atomic(path, {"head": None})
>>> json.loads(path.read_text())
{'head': None}
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, value: Any, **dump: Any) -> None:
    """Write ``value`` as JSON to ``path`` so that readers see the old file or the new one,
    whole, never a part (temp file in the same folder, fsync, rename); ``dump`` goes to
    :func:`json.dump`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, **dump)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["write_json_atomic"]
