"""The pipeline's CSV format: every string value byte for byte, and "" distinct from missing.

Format (written and read by pyarrow's CSV module, whatever the Python patch version):
- UTF-8, a header line of the bare column names, rows ending in "\\n";
- every text value is quoted (RFC 4180: a quote inside is doubled), so CR, LF, CRLF, tab,
  U+2028, `\\N`, backslashes, leading or trailing spaces are data, never syntax;
- `""` (quoted, empty) is the empty string; an unquoted empty field is missing (null);
- numbers are unquoted; a missing number is an unquoted empty field.

Why not the csv module or pandas: Python's csv writer before 3.11.9 leaves a bare CR unquoted,
and pandas' C reader truncates a value at U+0000; neither keeps "" apart from missing.
The round trip is proven by property-based tests (user_pipeline_tests/users/test_csv_format.py).
Spark reads the same files with the options in spark_jobs/ingest_users.py.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

_ARROW_TYPES = {"string": pa.string(), "Int64": pa.int64(), "float64": pa.float64()}
_PANDAS_TYPES = {pa.string(): pd.StringDtype(), pa.int64(): pd.Int64Dtype()}

_WRITE_OPTIONS = pa_csv.WriteOptions(include_header=False, quoting_style="needed", delimiter=",")
_PARSE_OPTIONS = pa_csv.ParseOptions(
    delimiter=",", quote_char='"', double_quote=True, escape_char=False, newlines_in_values=True
)
# pyarrow reads a file in blocks of this many bytes (the default is 1 MiB): a 100,000-user day's
# CSV (~30 MB) in a few batches; 16 MiB blocks cost ~35 MB more peak memory for nothing. A row
# longer than a block whose values hold newlines cannot be streamed ("straddling object"): such
# a file is read again in one block (`read_csv`, `iter_csv`).
_BLOCK_SIZE = 4 << 20


def arrow_schema(columns: Mapping[str, str]) -> pa.Schema:
    """The Arrow schema of pandas dtypes `columns` ("string", "Int64" or "float64")."""
    return pa.schema([pa.field(name, _ARROW_TYPES[dtype]) for name, dtype in columns.items()])


class CsvWriter:
    """Writes frames with `columns` to a binary handle: the header once, then each frame's rows."""

    def __init__(self, handle: IO[bytes], columns: Mapping[str, str]):
        self._columns = dict(columns)
        self._schema = arrow_schema(columns)
        handle.write((",".join(self._columns) + "\n").encode("utf-8"))
        self._writer = pa_csv.CSVWriter(handle, self._schema, write_options=_WRITE_OPTIONS)

    def write(self, frame: pd.DataFrame) -> None:
        """Raises ValueError naming the column (and the user_id, if any) of a value that cannot be
        written: not of the column's type, or text that is not Unicode (a lone surrogate)."""
        try:
            # What Table.from_pandas does per column (pa.array(column, type, from_pandas=True)),
            # without its thread pool and pandas metadata: a third faster for a chunk of users.
            table = pa.Table.from_arrays(
                [pa.array(frame[field.name], type=field.type, from_pandas=True) for field in self._schema],
                schema=self._schema,
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError) as error:
            raise ValueError(f"cannot write CSV: {_first_bad_value(frame, self._schema) or error}") from error
        self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()


def _first_bad_value(frame: pd.DataFrame, schema: pa.Schema) -> str | None:
    for field in schema:
        for position, value in enumerate(frame[field.name].tolist()):
            try:
                pa.array([None if value is pd.NA else value], type=field.type, from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError) as error:
                user = f"user {frame['user_id'].iloc[position]}: " if "user_id" in frame else ""
                return f"{user}{field.name} holds {value!r:.80}, which is not {field.type} ({error})"
    return None


def write_csv(handle: IO[bytes], frame: pd.DataFrame, columns: Mapping[str, str]) -> None:
    writer = CsvWriter(handle, columns)
    writer.write(frame)
    writer.close()


def _convert_options(columns: Mapping[str, str], include: list[str] | None) -> pa_csv.ConvertOptions:
    return pa_csv.ConvertOptions(
        column_types={name: _ARROW_TYPES[dtype] for name, dtype in columns.items()},
        null_values=[""],
        true_values=[],
        false_values=[],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        include_columns=include,
    )


def _to_pandas(batch: pa.RecordBatch | pa.Table, columns: Mapping[str, str]) -> pd.DataFrame:
    frame = batch.to_pandas(types_mapper=_PANDAS_TYPES.get)
    # Columns already of their dtype are left alone: astype would copy and check every string again.
    retyped = {name: dtype for name, dtype in columns.items() if name in frame.columns and frame[name].dtype != dtype}
    return frame.astype(retyped) if retyped else frame


def read_header(path: Path) -> list[str]:
    """The column names of a CSV file (its first line)."""
    with path.open(encoding="utf-8", newline="") as handle:
        return next(csv.reader([handle.readline()]), [])


def _reader_options(columns: Mapping[str, str], usecols: list[str] | None, block_size: int = _BLOCK_SIZE) -> dict:
    """The read, parse and convert options of this format, for pyarrow's read_csv and open_csv."""
    return {
        "read_options": pa_csv.ReadOptions(block_size=block_size),
        "parse_options": _PARSE_OPTIONS,
        "convert_options": _convert_options(columns, usecols),
    }


def read_csv(path: Path, columns: Mapping[str, str], usecols: list[str] | None = None) -> pd.DataFrame:
    """The whole file as pandas with `columns` dtypes (only `usecols` if given).

    Raises ValueError naming the file when it is not in this format or a value not of its type."""
    try:
        try:
            table = pa_csv.read_csv(path, **_reader_options(columns, usecols))
        except pa.ArrowInvalid as error:
            if not _straddles(error):
                raise
            table = pa_csv.read_csv(path, **_reader_options(columns, usecols, _whole_file(path)))
    except (pa.ArrowInvalid, pa.ArrowKeyError) as error:
        raise ValueError(f"cannot read CSV {path}: {error}") from error
    return _to_pandas(table, columns)


def _straddles(error: pa.ArrowInvalid) -> bool:
    """Whether pyarrow refused a row longer than its block (it names it a straddling object)."""
    return "straddling object" in str(error)


def _whole_file(path: Path) -> int:
    """A block size that holds the whole file."""
    return path.stat().st_size + 1


def iter_csv(path: Path, columns: Mapping[str, str], chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file as pandas frames of at most `chunk_rows` rows, streamed (memory stays flat but for
    a file with a row longer than a block, read again in one block from the row it stopped at)."""
    done = 0
    try:
        try:
            for frame in _frames(path, columns, chunk_rows, _BLOCK_SIZE, skip=0):
                yield frame
                done += len(frame)
        except pa.ArrowInvalid as error:
            if not _straddles(error):
                raise
            yield from _frames(path, columns, chunk_rows, _whole_file(path), skip=done)
    except pa.ArrowInvalid as error:
        raise ValueError(f"cannot read CSV {path}: {error}") from error


def _frames(
    path: Path, columns: Mapping[str, str], chunk_rows: int, block_size: int, *, skip: int
) -> Iterator[pd.DataFrame]:
    """The file's frames of at most `chunk_rows` rows after its first `skip` rows."""
    reader = pa_csv.open_csv(path, **_reader_options(columns, None, block_size))
    for batch in reader:
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        batch, skip = batch.slice(skip), 0
        for start in range(0, batch.num_rows, chunk_rows):
            yield _to_pandas(batch.slice(start, chunk_rows), columns)
