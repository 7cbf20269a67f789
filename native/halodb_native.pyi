"""HaloDB's compiled hot loops (Rust); see docs/internals/native.md."""

MAX_ITEM_SIZE: int

def prepare_item(line: str) -> tuple[str, str, bytes, bytes, str | None, str | None, str | None] | None:
    """An ndjson line as ``halodb add`` stages it: ``(key, collection, cid, block, data, path,
    doi)``, or None to leave the line to the Python path."""

def prepare_lines(
    lines: list[str],
) -> list[tuple[str, str, bytes, bytes, str | None, str | None, str | None] | None]:
    """:func:`prepare_item` of each line, computed without holding the GIL."""
