"""Predictions as Parquet, written so that memory stays flat and a kill never corrupts them.

Rows are buffered and written as small chunk files in a hidden staging folder beside the output
(``.preds.parquet.parts/chunk-000001.parquet``), each through a temporary name and a rename, so
a chunk on disk is always whole. A chunk is written every ``rows_per_chunk`` rows or every
``chunk_seconds`` seconds, whichever comes first, so a kill loses at most that much work. When
every file is scored the chunks are streamed, one row group each, into ``preds.parquet.tmp``,
which is renamed to ``preds.parquet``. ``--resume`` reads back the paths of the chunks already
written and scores only the rest. Chunks carry page checksums: on resume a chunk that no longer
reads back whole (truncated, a flipped bit) is deleted and its rows are scored again.

Every text column is valid UTF-8. A file name that is not (the OS hands it over with surrogates)
is written to ``path`` with its odd bytes as ``\\xNN`` escapes and, in that row only, its real
bytes to ``path_bytes`` (null elsewhere): the row names its file losslessly and ``--resume``
recognises it.
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cxr_fast.choices import CHUNK_SECONDS, ROWS_PER_CHUNK
from cxr_fast.data.discover import display_path, path_bytes, real_path
from cxr_fast.scoring.row_info import INFO_FIELDS

SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        # The file name's bytes where ``path`` is not the name itself (not UTF-8), else null.
        pa.field("path_bytes", pa.binary()),
        pa.field("prob_pneumonia", pa.float32()),
        pa.field("pred", pa.string()),
        pa.field("threshold", pa.float32(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        *INFO_FIELDS,
        # The input gate's out-of-distribution score (null where the model has no fitted gate).
        pa.field("ood_score", pa.float32()),
    ]
)
# Only in files scored with --cam-dir: the overlay of the K most suspicious images.
CAM_FIELD = pa.field("cam_path", pa.string())
STATUS_OK = "ok"
STATUS_ERROR = "error"


def staging_dir(out: Path) -> Path:
    """The hidden folder holding an unfinished output's chunks."""
    return out.parent / f".{out.name}.parts"


class ChunkedParquetWriter:
    """Collects prediction rows; :meth:`finish` publishes the complete file atomically."""

    def __init__(
        self,
        out: Path,
        metadata: dict[str, str],
        rows_per_chunk: int = ROWS_PER_CHUNK,
        chunk_seconds: float = CHUNK_SECONDS,
        schema: pa.Schema = SCHEMA,
    ):
        self.out = out
        # SCHEMA, or SCHEMA with columns of a stage's own appended (listen's calling AE).
        self.schema = schema
        self.metadata = {k.encode(): v.encode() for k, v in metadata.items()}
        self.rows_per_chunk = rows_per_chunk
        self.chunk_seconds = chunk_seconds
        self.staging = staging_dir(out)
        self.staging.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, list] = {name: [] for name in schema.names}
        # Numbered after the last one: after a deleted chunk, a count would name an existing one.
        self._chunks = max((_number(chunk) for chunk in self._chunk_files()), default=0)
        self._flushed_at = time.monotonic()

    def set_metadata(self, key: str, value) -> None:
        """Set (or replace) one file-level metadata value (JSON) before :meth:`finish`."""
        self.metadata[key.encode()] = json.dumps(value).encode()

    def _chunk_files(self) -> list[Path]:
        return sorted(self.staging.glob("chunk-*.parquet"))

    def drop_unreadable(self) -> int:
        """Delete the chunks that do not read back whole, checksums verified (a truncated
        file, a flipped bit), and what interrupted chunk writes left; returns how many chunks
        went. Their rows are not done, so ``--resume`` scores them again."""
        dropped = 0
        for chunk in self._chunk_files():
            try:
                pq.read_table(chunk, schema=self.schema, page_checksum_verification=True)
            except (pa.ArrowException, OSError, ValueError):
                chunk.unlink()
                dropped += 1
        for partial in self.staging.glob("chunk-*.tmp"):
            partial.unlink(missing_ok=True)
        return dropped

    def done_paths(self) -> set[str]:
        """Paths already written by an earlier, interrupted run (for ``--resume``)."""
        done: set[str] = set()
        for chunk in self._chunk_files():
            done.update(real_paths(_read(chunk, "path", "path_bytes")))
        return done

    def add(self, row: dict) -> None:
        """Buffer one row (keys = schema names; ``path`` the real one, ``path_bytes`` is
        derived); writes a chunk when the buffer is full or the last chunk is
        ``chunk_seconds`` old."""
        row = {**row, "path_bytes": path_bytes(row["path"])}
        for name in self.schema.names:
            self._rows[name].append(_text(row.get(name)))
        if (
            len(self._rows["path"]) >= self.rows_per_chunk
            or time.monotonic() - self._flushed_at >= self.chunk_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Write buffered rows as one chunk file (temporary name, then rename)."""
        self._flushed_at = time.monotonic()
        if not self._rows["path"]:
            return
        table = pa.Table.from_pydict(self._rows, schema=self.schema)
        final = self.staging / f"chunk-{self._chunks + 1:06d}.parquet"
        tmp = final.with_suffix(".tmp")
        try:
            # Checksums: a chunk damaged on disk must fail to read, not resume with wrong rows.
            pq.write_table(table, tmp, write_page_checksum=True)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a partial chunk (a full disk) only takes space
            raise
        self._chunks += 1
        self._rows = {name: [] for name in self.schema.names}

    def count_status(self, status: str) -> int:
        """Rows with ``status`` in every chunk written so far (resumed ones included)."""
        self.flush()
        return sum(
            pc.sum(pc.equal(pq.read_table(chunk, columns=["status"])["status"], status)).as_py()
            or 0
            for chunk in self._chunk_files()
        )

    def top_k(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` scored rows with the highest probability, highest first (all chunks,
        resumed ones included; one chunk in memory at a time)."""
        self.flush()
        best: list[tuple[float, str]] = []
        for chunk in self._chunk_files():
            table = _read(chunk, "path", "path_bytes", "prob_pneumonia", "status")
            table = table.filter(pc.equal(table["status"], STATUS_OK))
            if table.num_rows:
                top = table.take(pc.select_k_unstable(table, k, [("prob_pneumonia", "descending")]))
                rows = zip(top["prob_pneumonia"].to_pylist(), real_paths(top), strict=True)
                best = heapq.nlargest(k, [*best, *rows])
        return [(path, prob) for prob, path in best]

    def finish(self, cam_paths: dict[str, str] | None = None) -> int:
        """Stream every chunk into the output file, publish it, remove the staging folder;
        returns the number of rows. ``cam_paths`` (path -> overlay file) adds a ``cam_path``
        column, null for the files without an overlay."""
        self.flush()
        tmp = self.out.with_name(self.out.name + ".tmp")
        schema = self.schema if cam_paths is None else self.schema.append(CAM_FIELD)
        rows = 0
        try:
            with pq.ParquetWriter(tmp, schema.with_metadata(self.metadata)) as writer:
                for chunk in self._chunk_files():
                    table = pq.read_table(chunk, schema=self.schema)
                    if cam_paths is not None:
                        cams = [_text(cam_paths.get(path)) for path in real_paths(table)]
                        table = table.append_column(CAM_FIELD, pa.array(cams, pa.string()))
                    writer.write_table(table)
                    rows += table.num_rows
            os.replace(tmp, self.out)
        except BaseException:
            tmp.unlink(missing_ok=True)  # the chunks stay: --resume publishes them
            raise
        shutil.rmtree(self.staging, ignore_errors=True)
        return rows


def _text(value):
    """``value``, with a str made valid UTF-8 (Arrow refuses surrogates: see the module
    docstring); the ASCII test keeps the common case cheap."""
    if isinstance(value, str) and not value.isascii():
        return display_path(value)
    return value


def _read(chunk: Path, *columns: str) -> pa.Table:
    """``columns`` of a chunk file, those it has (``path_bytes`` is newer than some chunks)."""
    names = pq.read_schema(chunk).names
    return pq.read_table(chunk, columns=[name for name in columns if name in names])


def real_paths(table: pa.Table) -> list[str]:
    """The real path of every row of ``table`` (``path``, or ``path_bytes`` where set)."""
    paths = table["path"].to_pylist()
    if "path_bytes" not in table.column_names:  # a chunk written before the column existed
        return paths
    raw = table["path_bytes"].to_pylist()
    return [real_path(path, data) for path, data in zip(paths, raw, strict=True)]


def _number(chunk: Path) -> int:
    """``chunk-000012.parquet`` -> 12."""
    return int(chunk.stem.rsplit("-", 1)[1])


def metadata_json(values: dict) -> dict[str, str]:
    """File-level key/value metadata: every value as JSON text."""
    return {key: json.dumps(value) for key, value in values.items()}
