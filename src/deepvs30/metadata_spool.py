"""SeisBench's dataset writer with the metadata spooled to disk instead of held to the end.

:class:`seisbench.data.WaveformDataWriter` keeps every record's metadata (a dict of a few kB)
until it closes, then writes ``metadata.csv`` from one DataFrame of them all: memory that
grows with the dataset. :class:`SpooledWriter` is that writer (its own bucketing, packing and
names, so ``waveforms.hdf5`` is unchanged) except that a record's metadata is held only until
its bucket is written; then it goes to an SQLite file, and ``metadata.csv`` is written from
there in chunks at the end: the same bytes as SeisBench's.

Waveforms are held too: SeisBench's writer keeps up to ``bucket_size`` records per length class
(classes 1.2x apart) until a class fills, so what it holds grows with the number of classes
an archive's record lengths fall in, up to about ``bucket_size`` times the summed record sizes
of all classes (~0.7 GB for the real records' 14 classes at 256 per bucket, more for long
200 Hz records), reached only in archives large enough to fill them. ``cache_bytes`` caps it:
past it, the bucket holding the most bytes is written early (a shorter bucket, the same
records). Under the cap nothing changes, byte for byte.

The same bytes because each column gets the dtype pandas infers over the whole table, which
depends only on the kinds of values in the column (:func:`value_kind`): one example of each
kind found in the whole column goes in front of every chunk while pandas converts it, and is
dropped before the chunk is written. Columns come in order of first appearance, as in
``pd.DataFrame(list_of_dicts)``. A table with a column that pandas formats as a whole (dates)
is written in one piece, as SeisBench does.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seisbench.data as sbd

from deepvs30.scratch_db import scratch_db

CHUNK_ROWS = 256  # metadata rows converted and written at a time
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1


def value_kind(value: Any) -> tuple:
    """What pandas' type inference sees of one value: its type, whether it is NaN, and for
    integers the sign and whether they fit int64 / uint64."""
    if isinstance(value, float | np.floating) and value != value:
        return (type(value), "nan")
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        return (type(value), value < 0, value > _INT64_MAX, value > _UINT64_MAX)
    return (type(value),)


class MetadataSpool:
    """Metadata rows by number in an SQLite file (made anew), read back in number order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = scratch_db(
            path, "CREATE TABLE rows (row INTEGER PRIMARY KEY, metadata BLOB NOT NULL);"
        )

    def add(self, rows: Iterable[tuple[int, dict]]) -> None:
        pickled = ((n, pickle.dumps(meta, pickle.HIGHEST_PROTOCOL)) for n, meta in rows)
        self.db.executemany("INSERT INTO rows VALUES (?, ?)", pickled)

    def rows(self) -> Iterator[dict]:
        for (blob,) in self.db.execute("SELECT metadata FROM rows ORDER BY row"):
            yield pickle.loads(blob)

    def close(self) -> None:
        self.db.close()
        self.path.unlink(missing_ok=True)


@dataclass
class ColumnKinds:
    """The columns of a table in order of first appearance, and the kinds of values in each
    (a missing cell counts as NaN, as pandas fills it)."""

    examples: dict[str, dict[tuple, Any]] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)  # rows that hold the column
    n_rows: int = 0

    def add(self, row: dict) -> None:
        self.n_rows += 1
        for column, value in row.items():
            self.examples.setdefault(column, {}).setdefault(value_kind(value), value)
            self.present[column] = self.present.get(column, 0) + 1

    def example_rows(self) -> list[dict]:
        """Rows holding every kind of every column (each column's last example repeated)."""
        kinds = {
            column: [*found.values(), *([np.nan] if self.present[column] < self.n_rows else [])]
            for column, found in self.examples.items()
        }
        n = max(len(values) for values in kinds.values())
        return [
            {c: values[min(i, len(values) - 1)] for c, values in kinds.items()} for i in range(n)
        ]


def write_metadata_csv(spool: MetadataSpool, path: Path, rename: dict | None = None) -> None:
    """The spooled rows as ``metadata.csv``, byte for byte as
    ``pd.DataFrame(rows).rename(columns=rename).to_csv(path, index=False)``."""
    kinds = ColumnKinds()
    for row in spool.rows():
        kinds.add(row)
    examples, columns = kinds.example_rows(), list(kinds.examples)
    if not all(map(_formatted_by_value, pd.DataFrame(examples, columns=columns).dtypes)):
        # e.g. dates: pandas formats such a column as a whole (no chunks, no bound on memory)
        table = pd.DataFrame(list(spool.rows()))
        table.rename(columns=rename or {}).to_csv(path, index=False)
        return
    rows = spool.rows()
    with path.open("w", newline="", encoding="utf-8") as fh:
        header = True
        while chunk := list(islice(rows, CHUNK_ROWS)):
            table = pd.DataFrame(examples + chunk, columns=columns).iloc[len(examples) :]
            if rename:
                table = table.rename(columns=rename)
            table.to_csv(fh, header=header, index=False)
            header = False


def _formatted_by_value(dtype: Any) -> bool:
    """Whether pandas writes each value of a column of ``dtype`` to CSV by itself, whatever the
    other values (numbers, booleans, text, objects; not dates)."""
    if isinstance(dtype, pd.StringDtype):
        return True
    return isinstance(dtype, np.dtype) and dtype.kind in "biufO"


class _RowNumbers:
    """Stands in for SeisBench's list of every record's metadata: numbers the records in the
    order they are added, and knows only those whose bucket is not written yet."""

    def __init__(self) -> None:
        self.n_added = 0
        self.pending: dict[int, int] = {}  # id(metadata) -> row

    def append(self, metadata: dict) -> None:
        self.pending[id(metadata)] = self.n_added
        self.n_added += 1

    def pop(self, metadata: dict) -> int:
        return self.pending.pop(id(metadata))

    def __len__(self) -> int:
        return self.n_added


def _bucket_bytes(bucket: list[tuple[dict, np.ndarray]]) -> int:
    return sum(waveform.nbytes for _, waveform in bucket)


class SpooledWriter(sbd.WaveformDataWriter):
    """:class:`seisbench.data.WaveformDataWriter` whose metadata goes to ``spool_path`` as
    each bucket is written (needs a bucketer, as by default), holding at most ``cache_bytes``
    of waveforms in unwritten buckets (plus the record being added; None: no cap)."""

    def __init__(
        self,
        metadata_path: Path,
        waveforms_path: Path,
        spool_path: Path,
        cache_bytes: int | None = None,
    ) -> None:
        super().__init__(metadata_path, waveforms_path)
        self._metadata = _RowNumbers()
        self._spool = MetadataSpool(spool_path)
        self.cache_bytes = cache_bytes  # waveform bytes held in unwritten buckets, at most
        self.cached_bytes = 0  # held now
        self.peak_cached_bytes = 0  # held at most so far

    def add_trace(self, metadata: dict, waveform: np.ndarray) -> None:
        self.cached_bytes += waveform.nbytes
        self.peak_cached_bytes = max(self.peak_cached_bytes, self.cached_bytes)
        super().add_trace(metadata, waveform)  # writes the record's bucket if it is full
        while self.cache_bytes is not None and self.cached_bytes > self.cache_bytes:
            self._write_largest_bucket()

    def _write_largest_bucket(self) -> None:
        """Write out the unwritten bucket that holds the most waveform bytes (as SeisBench's
        ``flush_hdf5`` writes each)."""
        sizes = {key: _bucket_bytes(b) for key, b in self._cache.items() if b}
        largest = max(sizes, key=sizes.__getitem__)
        self._write_bucket(self._cache[largest])
        self._cache[largest] = []

    def _write_bucket(self, bucket: list[tuple[dict, np.ndarray]]) -> None:
        super()._write_bucket(bucket)  # gives each record its final trace_name
        self.cached_bytes -= _bucket_bytes(bucket)
        self._spool.add((self._metadata.pop(meta), meta) for meta, _ in bucket)

    def _finalize(self) -> None:
        """SeisBench's, the metadata written from the spool."""
        try:
            self.flush_hdf5()
            if len(self._metadata) == 0:
                return
            if self.data_format:
                group = self._waveform_file.create_group("data_format")
                for key, value in self.data_format.items():
                    group.create_dataset(key, data=value)
            write_metadata_csv(self._spool, self.metadata_path, self.metadata_dict)
        finally:
            self._spool.close()
