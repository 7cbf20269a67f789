"""Extraction results cached by dataset CID, so a re-scan extracts only what changed.

A dataset's CID fixes every byte of it, so what extraction made of it (the item, or the
errors) holds until the extractor changes. One JSON file per CID under
``HOME/scan-cache/<version>/``, where the version is :data:`EXTRACTOR_VERSION` and the
HaloDB version: an upgrade reads an empty folder and re-extracts. Files are written to a
temporary name, synced and renamed, so a crash leaves either the old file or the new one;
a file that does not parse, or does not have the shape :meth:`ScanCache.put` writes, is
treated as missing.

The cached item is *placeless*: its ``id`` is a placeholder and it has no collection or
``halodb:path``; the scanner sets those from the dataset's path in the tree (the same CID
may sit at several paths).

>>> import tempfile
>>> cache = ScanCache(tempfile.mkdtemp())
>>> cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
>>> cache.get(cid, max_coordinate_bytes=1) is None
True
>>> cache.put(Extracted(cid, None, [{"severity": "error", "attribute": "time", "message": "missing",
...                                  "file": None}], {}), max_coordinate_bytes=1)
>>> cache.get(cid, max_coordinate_bytes=1).problems[0]["attribute"]
'time'
>>> cache.get(cid, max_coordinate_bytes=2) is None   # other limits: extract again
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from halodb.util.fs import write_json_atomic
from halodb.util.version import VERSION as __version__

#: bump when extraction changes what it makes of a dataset: cached results are then ignored
EXTRACTOR_VERSION = 1


@dataclass
class Extracted:
    """What extraction made of one dataset CID: a placeless item (None on errors), problems, findings."""

    cid: str
    item: dict[str, Any] | None
    problems: list[dict[str, Any]]
    found: dict[str, Any]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [p for p in self.problems if p.get("severity") == "error"]


class ScanCache:
    """One JSON file per dataset CID in ``folder/<version>/``, written atomically."""

    def __init__(self, folder: str | Path, *, version: str | None = None) -> None:
        self.version = version or f"x{EXTRACTOR_VERSION}-halodb{__version__}"
        self.folder = Path(folder) / self.version

    def _file(self, cid: str) -> Path:
        if not cid.isalnum():
            raise ValueError(f"not a CID: {cid!r}")
        return self.folder / cid[-2:] / f"{cid}.json"

    def get(self, cid: str, *, max_coordinate_bytes: int) -> Extracted | None:
        """The cached result for ``cid`` under these limits, or None."""
        try:
            with open(self._file(cid), encoding="utf-8") as f:
                raw = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict) or raw.get("cid") != cid or raw.get("max_coordinate_bytes") != max_coordinate_bytes:
            return None
        item, problems, found = raw.get("item"), raw.get("problems") or [], raw.get("found") or {}
        if (not isinstance(item, (dict, type(None))) or not isinstance(found, dict) or not isinstance(problems, list)
                or not all(isinstance(p, dict) for p in problems)):
            return None  # not what put() writes (edited by hand, or by another tool): extract again
        return Extracted(cid, item, problems, found)

    def put(self, result: Extracted, *, max_coordinate_bytes: int) -> None:
        """Store ``result`` (replacing any earlier one) atomically."""
        path = self._file(result.cid)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"cid": result.cid, "version": self.version, "max_coordinate_bytes": max_coordinate_bytes,
                "item": result.item, "problems": result.problems, "found": result.found}
        write_json_atomic(path, body, ensure_ascii=False, default=str)

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*/*.json")) if self.folder.exists() else 0


__all__ = ["EXTRACTOR_VERSION", "Extracted", "ScanCache"]
