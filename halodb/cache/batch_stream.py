"""Arrow tables handed from one thread to ONE running DuckDB statement as they are made.

DuckDB inserts a large ``INSERT ... SELECT`` on all its threads, each writing row groups of
its own, but an ``INSERT`` of fewer rows than a row group or two runs on one thread and
leaves its rows for the commit to compress. A sync makes its items 8,192 at a time: a
:class:`BatchStream` lets one statement insert a million of them, reading each batch as
Python makes it, while no more than ``depth`` batches wait in memory.

The producer :meth:`~BatchStream.put` s tables and :meth:`~BatchStream.close` s the stream;
the statement reads :meth:`~BatchStream.reader` on DuckDB's threads and, when it ends for
whatever reason, calls :meth:`~BatchStream.end`, which wakes a producer waiting for room
(:class:`StreamEnded`). A producer that fails closes the stream with its error, which the
statement then raises: a statement never waits for a batch that will not come.

>>> import threading, duckdb, pyarrow as pa
>>> stream = BatchStream(pa.schema([("x", pa.int64())]), depth=2)
>>> def produce():
...     for lo in range(0, 10, 3):
...         stream.put(pa.table({"x": list(range(lo, min(lo + 3, 10)))}))
...     stream.close()
>>> producer = threading.Thread(target=produce); producer.start()
>>> try:
...     total = duckdb.connect().from_arrow(stream.reader()).aggregate("sum(x)").fetchall()
... finally:
...     stream.end()
>>> producer.join(); total, stream.rows
([(45,)], 10)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator

import pyarrow as pa

__all__ = ["BatchStream", "StreamEnded"]


class StreamEnded(Exception):
    """The statement reading the stream ended before the producer closed it (it failed)."""


class BatchStream:
    """A bounded hand-over of Arrow tables of one ``schema`` from a producer thread to a
    statement reading :meth:`reader`; see the module docstring."""

    def __init__(self, schema: pa.Schema, *, depth: int) -> None:
        self.schema = schema
        self.rows = 0  #: rows put so far
        self._depth = depth
        self._tables: deque[pa.Table] = deque()
        self._ready = threading.Condition()
        self._closed = False  # the producer put its last table
        self._error: BaseException | None = None  # why the producer gave up
        self._ended = False  # the statement stopped reading

    def put(self, table: pa.Table) -> None:
        """Hand ``table`` over, waiting while ``depth`` tables wait already; raises
        :class:`StreamEnded` when the statement ended (it will read no more)."""
        if table.schema != self.schema:
            table = table.cast(self.schema)
        with self._ready:
            while len(self._tables) >= self._depth and not self._ended:
                self._ready.wait()
            if self._ended:
                raise StreamEnded("the statement reading the stream ended")
            if self._closed:
                raise ValueError("put on a closed stream")
            self._tables.append(table)
            self.rows += table.num_rows
            self._ready.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        """No more tables: the statement reads what waits and ends (raising ``error``
        instead, when given, so that it writes nothing). A second close does nothing."""
        with self._ready:
            if not self._closed:
                self._closed, self._error = True, error
                if error is not None:
                    self._tables.clear()
                self._ready.notify_all()

    @property
    def aborted(self) -> bool:
        """Whether the producer closed the stream with an error."""
        return self._error is not None

    def end(self) -> None:
        """The statement stopped reading (call it when the statement returns or raises)."""
        with self._ready:
            self._ended = True
            self._tables.clear()
            self._ready.notify_all()

    def reader(self) -> pa.RecordBatchReader:
        """The tables as one stream of record batches, read once."""
        return pa.RecordBatchReader.from_batches(self.schema, self._batches())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        while True:
            with self._ready:
                while not self._tables and not self._closed:
                    self._ready.wait()
                if self._error is not None:
                    raise self._error
                if not self._tables:
                    return
                table = self._tables.popleft()
                self._ready.notify_all()
            yield from table.to_batches()
