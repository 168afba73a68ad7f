"""Reading a DynamoDB export to S3 (AWS's documented layout) into the collection.

Layout (DynamoDB Developer Guide, "DynamoDB table export output format")::

    <prefix>/AWSDynamoDB/<ExportId>/manifest-summary.json   exportType, exportTime, itemCount,
                                                            manifestFilesS3Key, outputFormat
    <prefix>/AWSDynamoDB/<ExportId>/manifest-files.json     one JSON object a line:
                                                            {"itemCount", "md5Checksum", "etag",
                                                             "dataFileS3Key"}
    <prefix>/AWSDynamoDB/<ExportId>/data/<name>.json.gz     gzipped DynamoDB-JSON lines

A full export's line is ``{"Item": {...}}``; an incremental export's line is
``{"Metadata": {"WriteTimestampMicros": {"N": ...}}, "Keys": {...}, "NewImage": {...},
"OldImage": {...}}`` -- the item's state at the end of the period, no ``NewImage`` when it was
deleted (only the final state of each item changed in the period is exported).

Each data file is an independent unit of work: it is read and written through the core on its
own, by a process pool (``workers``), and a machine can take a share of the files (``worker``
i of N: files whose position in the sorted manifest is i modulo N). A file's completion is kept
in the ``<collection>_sync`` collection, so a rerun skips loaded files.

Trust in the files: AWS lists each data file's ``itemCount``, ``md5Checksum`` (base64 MD5 of the
object) and ``etag`` in ``manifest-files.json`` precisely so a reader can tell it has the whole
file. A file whose bytes do not match (MD5, or the ETag when it is a plain MD5) or whose line count
differs from ``itemCount`` is not loaded and not marked loaded; :func:`load_export` loads the other
files and then raises :class:`ExportFileMismatch` naming every such file (nothing is reported
consistent). One bad line (not JSON, not an export line, an item the core cannot take) does not
stop its file: it is kept in the core's quarantine (``<collection>_quarantine``) with its raw
text, the file and the line number, and counted (``quarantined``).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import itertools
import json
import logging
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from replicator.core import Replicator
from replicator.errors import ConfigurationError, MalformedRecordError, ReplicationError
from replicator.events import BadRecord
from replicator.item_records import (
    COPY_SEQUENCE,
    Record,
    item_record,
    removal_record,
    tally,
)
from replicator.migrate import collector
from replicator.retry import Backoff

log = logging.getLogger("replicator.migrate")
FULL = "FULL_EXPORT"
INCREMENTAL = "INCREMENTAL_EXPORT"
KIND = "export-file"
BATCH = 500
#: The records' eventSource (replicator/item_records.py's records name where they come from).
SOURCE = "replicator:export"
#: json.loads' scanner (a default JSONDecoder's, as json.loads uses): the C accelerator's
#: export_records parses lines with it, as json.loads does, without json.loads' Python frames.
_SCAN_ONCE = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set by __init__


class ExportFileMismatch(ReplicationError):
    """Data files of an export do not match their ``manifest-files.json`` entries (``problems``:
    one line per file); they were not loaded nor marked loaded."""

    def __init__(self, export: str, problems: Sequence[str]) -> None:
        self.export = export
        self.problems = list(problems)
        super().__init__(
            f"export {export}: {len(self.problems)} data file(s) do not match the manifest and "
            "were not loaded: " + "; ".join(self.problems) + ". Copy the files again from S3 (or "
            "take a new export), then run the same command: the files already loaded are skipped")


@dataclass(frozen=True)
class DataFile:
    key: str  # dataFileS3Key as the manifest names it
    item_count: int | None  # None: the manifest gives no itemCount (not checked)
    location: str  # a local path or s3://bucket/key
    md5: str | None = None  # md5Checksum: base64 of the object's MD5 (AWS's manifest)
    etag: str | None = None  # the S3 ETag: a hex MD5 unless multipart ("...-<parts>")


@dataclass(frozen=True)
class ExportManifest:
    location: str
    export_type: str
    export_arn: str | None
    export_time: datetime | None
    export_from_time: datetime | None
    export_to_time: datetime | None
    item_count: int | None
    files: tuple[DataFile, ...]

    def share(self, worker: int, workers: int) -> list[DataFile]:
        """Worker ``worker`` of ``workers``: every data file whose position is ``worker`` mod N."""
        if not 0 <= worker < workers:
            raise ConfigurationError(f"--worker {worker}/{workers}: i must be 0..N-1")
        ordered = sorted(self.files, key=lambda f: f.key)
        return [f for n, f in enumerate(ordered) if n % workers == worker]


# -- where the files are -------------------------------------------------------------------------
def read_bytes(location: str, s3: Any = None) -> bytes:
    """The object's bytes; FileNotFoundError naming ``location`` when S3 has no such key (as for
    a local path), so a missing manifest or data file is named, not just "NoSuchKey"."""
    if location.startswith("s3://"):
        bucket, _, key = location[5:].partition("/")
        client = s3 if s3 is not None else _s3_client()
        try:
            return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except Exception as error:
            code = str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"{location}: no such object in S3") from None
            raise
    return Path(location).read_bytes()


def _s3_client() -> Any:
    import boto3

    return boto3.client("s3")


def load_manifest(location: str, s3: Any = None) -> ExportManifest:
    """The export at ``location``: a local directory or ``s3://bucket/<prefix>/AWSDynamoDB/<id>``
    holding manifest-summary.json."""
    base = location.rstrip("/")
    summary = read_summary(base, s3)
    lines = read_bytes(manifest_files_location(base, summary), s3).decode("utf-8").splitlines()
    files = tuple(data_file_of(base, json.loads(line)) for line in lines if line.strip())
    return manifest_of(base, summary, files)


def read_summary(location: str, s3: Any = None) -> dict[str, Any]:
    """The export's ``manifest-summary.json`` (``location``: the export directory). Raises
    ConfigurationError when it is missing (locally) or names another format than DYNAMODB_JSON."""
    base = location.rstrip("/")
    try:
        summary: dict[str, Any] = json.loads(read_bytes(f"{base}/manifest-summary.json", s3))
    except FileNotFoundError:
        raise ConfigurationError(f"no manifest-summary.json in {location}: not an export "
                                 "directory (give .../AWSDynamoDB/<ExportId>)") from None
    if summary.get("outputFormat", "DYNAMODB_JSON") != "DYNAMODB_JSON":
        raise ConfigurationError(f"export format {summary.get('outputFormat')}: only "
                                 "DYNAMODB_JSON is read")
    return summary


def manifest_files_location(base: str, summary: Mapping[str, Any]) -> str:
    """Where the export's ``manifest-files.json`` is (its summary's ``manifestFilesS3Key``)."""
    return _sibling(base, str(summary.get("manifestFilesS3Key") or "manifest-files.json"))


def manifest_of(base: str, summary: Mapping[str, Any],
                files: tuple[DataFile, ...]) -> ExportManifest:
    """The export at ``base`` from its ``manifest-summary.json`` (parsed) and the data files
    given: all of them (:func:`load_manifest`), or the one a distributed child loads."""
    return ExportManifest(
        location=base.rstrip("/"),
        export_type=str(summary.get("exportType", FULL)),
        export_arn=summary.get("exportArn"),
        export_time=_time(summary.get("exportTime")),
        export_from_time=_time(summary.get("exportFromTime")),
        export_to_time=_time(summary.get("exportToTime")),
        item_count=summary.get("itemCount"),
        files=files,
    )


def data_file_of(base: str, entry: Mapping[str, Any]) -> DataFile:
    """One line of ``manifest-files.json`` (``{"itemCount", "md5Checksum", "etag",
    "dataFileS3Key"}``, AWS's shape) as the data file it names under the export at ``base``.
    Raises ConfigurationError for a line without ``dataFileS3Key``."""
    if not isinstance(entry, Mapping) or not entry.get("dataFileS3Key"):
        raise ConfigurationError(f"not a manifest-files.json line (no dataFileS3Key): {entry!r:.200}")
    key = str(entry["dataFileS3Key"])
    count = entry.get("itemCount")
    return DataFile(key, None if count is None else int(count), _sibling(base.rstrip("/"), key),
                    md5=str(entry.get("md5Checksum") or "") or None,
                    etag=str(entry.get("etag") or "").strip('"') or None)


def _sibling(base: str, key: str) -> str:
    """A manifest names files by their full S3 key; keep the part from ``data/`` (or the name)
    and find it under the export directory, so a copied-down export reads the same."""
    tail = key.split("/data/", 1)[1] if "/data/" in key else None
    if key.startswith("data/"):
        tail = key[5:]
    if tail is not None:
        return f"{base}/data/{tail}"
    return f"{base}/{key.rsplit('/', 1)[-1]}"


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(timezone.utc)


# -- lines to records ----------------------------------------------------------------------------
#: Decompressed text of a data file kept from its check (:func:`checked_lines`) to its load, so
#: the file is gunzipped once. A file whose lines come to more is decompressed a second time for
#: the load instead, so memory stays bounded whatever the file's size (AWS does not document a
#: largest data file; a Lambda child may have 512 MB for the compressed file, this and a batch).
KEEP_BYTES = 64 * 1024 * 1024
#: What a kept line costs beyond its text (its bytes object, tuple and list slot), in bytes.
_LINE_OVERHEAD = 100
_INPUT = 256 * 1024  # compressed bytes handed to zlib at a time
_OUTPUT = 1024 * 1024  # at most this much decompressed text at a time


def inflate(data: bytes) -> Iterator[bytes]:
    """The decompressed text of the gzip file ``data``, in pieces of at most 1 MiB: every member,
    NUL padding after a member skipped, empty ``data`` empty (as ``gzip.GzipFile`` reads it).

    zlib (``wbits=31``: a gzip header and trailer) checks each member's header, CRC-32 and length.
    Raises EOFError for a file cut short, ``zlib.error`` for corrupt data, ``gzip.BadGzipFile``
    for bytes after a member that start no other. Hand-written rather than ``gzip.GzipFile``
    because its line iterator (``_GzipReader.read``, Python, under a BufferedReader) costs more:
    one pass over 1.4 KB lines with the MD5, kept as :func:`checked_lines` keeps them, measured
    31,700 instructions a line with ``GzipFile`` and 27,000 with this (issue 21, BENCHMARKS.md).
    tests/replicator/migrate/test_export_read.py holds it to ``GzipFile``, lines and errors."""
    view = memoryview(data)
    end = len(data)
    position = 0
    while position < end:
        if position:  # after a member: NUL padding (gzip.GzipFile skips it too)
            position = end - len(data[position:].lstrip(b"\0")) if data[position] == 0 else position
            if position == end:
                return
        if data[position:position + 2] != b"\x1f\x8b":
            raise gzip.BadGzipFile(f"not a gzipped file ({data[position:position + 2]!r} at byte "
                                   f"{position})")
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        pending: bytes | memoryview = b""
        while not decompressor.eof:
            if not pending:
                if position >= end:  # all input given: what zlib holds back, then the verdict
                    if rest := decompressor.flush():
                        yield rest
                    if not decompressor.eof:
                        raise EOFError("compressed file ended before the end-of-stream marker "
                                       "was reached")
                    break
                pending = view[position:position + _INPUT]
                position += len(pending)
            if piece := decompressor.decompress(pending, _OUTPUT):
                yield piece
            pending = decompressor.unconsumed_tail
        position -= len(decompressor.unused_data)


def text_lines(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """The lines of the text in ``pieces``, each with its b"\\n" (as a binary file's lines are)
    but a last one without. ``BytesIO.readlines`` finds the ends with ``memchr``: 4x faster than
    ``bytes.split`` (a byte-by-byte loop in CPython), ~7,000 instructions per 1.4 KB line."""
    tail = b""
    for piece in pieces:
        lines = io.BytesIO(tail + piece if tail else piece).readlines()
        tail = lines.pop() if not lines[-1].endswith(b"\n") else b""
        yield from lines
    if tail:
        yield tail


def raw_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of a gzipped data file (with their b"\\n"), with their line numbers
    (from 1). Raises what :func:`inflate` raises."""
    for number, raw in enumerate(text_lines(inflate(data)), start=1):
        if not raw.isspace():  # blank: ASCII whitespace only, as bytes.strip() strips
            yield number, raw


def lines_of(data: bytes) -> Iterator[dict[str, Any]]:
    for _number, raw in raw_lines(data):
        yield json.loads(raw)


def mismatch(data_file: DataFile, data: bytes) -> str | None:
    """Why ``data`` (the file's bytes) is not the file the manifest lists, or None. The MD5 is
    checked against ``md5Checksum`` (base64, or hex) and a single-part ``etag``; ``itemCount``
    against the number of lines; the gzip stream must be whole."""
    return checked_lines(data_file, data, keep=0)[0]


def checked_lines(data_file: DataFile, data: bytes,
                  keep: int = KEEP_BYTES) -> tuple[str | None, list[tuple[int, bytes]] | None]:
    """:func:`mismatch` and, when there is none, the file's lines as :func:`raw_lines` gives
    them, from the same (only) decompression: ``(why, None)`` or ``(None, lines)``. ``(None,
    None)`` when the lines come to more than ``keep`` bytes (text plus ~100 a line): the caller
    reads them again with :func:`raw_lines` (memory stays bounded, the file is gunzipped twice).
    The MD5 is of the compressed bytes (as AWS computes it), so it needs no decompression."""
    digest = hashlib.md5(data, usedforsecurity=False).digest()
    if data_file.md5 and data_file.md5 not in (base64.b64encode(digest).decode(), digest.hex()):
        return (f"{data_file.key}: MD5 {base64.b64encode(digest).decode()} differs from the "
                f"manifest's md5Checksum {data_file.md5}"), None
    if data_file.etag and "-" not in data_file.etag and data_file.etag.lower() != digest.hex():
        return (f"{data_file.key}: MD5 {digest.hex()} differs from the manifest's etag "
                f"{data_file.etag}"), None
    kept: list[tuple[int, bytes]] | None = []
    size = 0
    count = 0
    try:
        for line in raw_lines(data):
            count += 1
            if kept is not None:
                size += len(line[1]) + _LINE_OVERHEAD
                if size <= keep:
                    kept.append(line)
                else:
                    kept = None  # too much to hold: the load decompresses the file again
    except (OSError, EOFError, zlib.error) as error:
        return f"{data_file.key}: not a complete gzip file ({error})", None
    if data_file.item_count is not None and count != data_file.item_count:
        return (f"{data_file.key}: {count} lines, the manifest's itemCount is "
                f"{data_file.item_count}"), None
    return None, kept


def record_of(line: Mapping[str, Any], export_type: str, key_schema: Sequence[str],
              sequence: str, event_id: str, created: datetime | None = None, *,
              owned: bool = False) -> Record:
    """An export line as a stream-shaped record. The line's DynamoDB JSON goes to the core as
    it is (``B`` as base64 text, as a Lambda event carries it): the core decodes it while it
    converts, so no walk of the line turns it into boto3's shapes first (issue 21: that walk
    was 31 % of the load's CPU and changed no document). ``owned``: the caller hands ``line``
    over (just parsed), so its image becomes the record's without a copy (item_record)."""
    if export_type == FULL:
        return item_record(line["Item"], key_schema, sequence, event_id,
                           source=SOURCE, created=created, owned=owned)
    keys = line["Keys"]
    new_image = line.get("NewImage")
    if new_image is not None:
        return item_record(new_image, key_schema, sequence, event_id,
                           source=SOURCE, created=created, owned=owned)
    old = line.get("OldImage")
    return removal_record(keys, sequence, event_id, old if old else None,
                          source=SOURCE)


# -- loading -------------------------------------------------------------------------------------
@dataclass
class FileResult:
    key: str
    #: why the file does not match its manifest entry (then nothing of it was loaded)
    mismatch: str | None = None
    lines: int = 0
    written: int = 0
    skipped_newer: int = 0
    quarantined: int = 0
    deletes: int = 0
    #: the progress collection said the file was loaded before: nothing was read or written
    already_loaded: bool = False


@dataclass
class ExportStats:
    files: int = 0
    files_already_loaded: int = 0
    lines: int = 0
    written: int = 0
    skipped_newer: int = 0
    quarantined: int = 0
    deletes: int = 0
    #: data files that did not match their manifest entry (not loaded, not marked loaded)
    files_mismatched: int = 0
    elapsed_s: float = 0.0
    per_file: list[FileResult] = field(default_factory=list)

    @property
    def items_per_s(self) -> float:
        return self.lines / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def add(self, result: FileResult) -> None:
        self.per_file.append(result)
        self.files_mismatched += int(result.mismatch is not None)
        self.lines += result.lines
        self.written += result.written
        self.skipped_newer += result.skipped_newer
        self.quarantined += result.quarantined
        self.deletes += result.deletes


def load_file(data_file: DataFile, export_type: str, replicator: Replicator,
              key_schema: Sequence[str], sequence: str = COPY_SEQUENCE, s3: Any = None,
              backoff: Backoff | None = None, *, keep: int = KEEP_BYTES) -> FileResult:
    """Read one data file and write its lines through ``replicator`` in batches; a batch with
    failed records is written again after ``backoff`` (default: 10 attempts).

    A file that does not match its manifest entry (:func:`mismatch`) is not read: the result
    carries ``mismatch`` and nothing is written. The check decompresses the file and keeps its
    lines for the load when they come to at most ``keep`` bytes (:func:`checked_lines`); a
    bigger file is decompressed again to load. A line that cannot be read as an export line is
    quarantined (raw text, file, line number) and the rest of the file loads."""
    retry = backoff or Backoff(max_attempts=10)
    result = FileResult(data_file.key)
    data = read_bytes(data_file.location, s3)
    result.mismatch, kept = checked_lines(data_file, data, keep)
    if result.mismatch is not None:
        log.error("export data file does not match the manifest, not loaded: %s",
                  result.mismatch)
        return result
    if kept is None:
        log.info("export data file %s: more than %d bytes of lines, decompressed again to load "
                 "(memory bound: export.KEEP_BYTES)", data_file.key, keep)
    batch: list[Record] = []
    bad: list[BadRecord] = []

    def flush() -> None:
        attempt = 0
        while batch or bad:
            outcome = replicator.process(batch) if batch else None
            kept = replicator.quarantine_records(bad) if bad else None
            failures = [*(outcome.failures if outcome else []), *(kept.failures if kept else [])]
            if outcome is not None and not outcome.failures:
                counts = tally(outcome)
                result.written += counts.written
                result.skipped_newer += counts.newer
                result.quarantined += counts.quarantined
                batch.clear()
            if kept is not None and not kept.failures:
                result.quarantined += len(kept.quarantined)
                bad.clear()
            if not failures:
                return
            attempt += 1
            retry.give_up(attempt, f"{data_file.key}: writing a batch", failures[0][1])
            log.warning("%s: %d of %d lines not written (first: %s); retry %d", data_file.key,
                        len(failures), len(batch) + len(bad), failures[0][1], attempt)
            retry.wait(attempt)

    key = data_file.key
    native = getattr(replicator, "native", None)
    native = native if hasattr(native, "export_records") else None
    schema = tuple(key_schema)
    with collector.fewer_collections():  # fewer cyclic GC passes: collector.py says why
        for lines in _batches(kept if kept is not None else raw_lines(data)):
            created = datetime.now(timezone.utc)  # one clock read per batch, not per line
            result.lines += len(lines)
            if native is not None:  # the C accelerator: record_of's records, same objects
                made, missing = native.export_records(
                    lines, _SCAN_ONCE, export_type == FULL, schema, sequence, f"export-{key}-",
                    SOURCE, created)
                for index in missing:  # not its common case: Python makes it or keeps it bad
                    number, raw = lines[index]
                    made[index] = _record_or_bad(number, raw, export_type, key_schema, sequence,
                                                 key, created, bad)
                batch.extend([r for r in made if r is not None] if missing else made)
            else:
                _records_of(lines, export_type, key_schema, sequence, key, created, batch, bad)
            if export_type != FULL:
                result.deletes += sum(1 for r in batch if r["eventName"] == "REMOVE")
            flush()
    if result.quarantined:
        log.warning("export data file %s: %d line(s) quarantined (see the quarantine collection)",
                    data_file.key, result.quarantined)
    return result


def _records_of(lines: list[tuple[int, bytes]], export_type: str, key_schema: Sequence[str],
                sequence: str, key: str, created: datetime, batch: list[Record],
                bad: list[BadRecord]) -> None:
    """The records of a batch's ``lines`` (appended to ``batch``), each bad line to ``bad``:
    the pure-Python path of :func:`load_file` (the reference of ``export_records``)."""
    loads = json.loads
    try:  # the whole batch in one comprehension: no per-line bookkeeping (issue 21)
        batch.extend([record_of(loads(raw), export_type, key_schema, sequence,
                                f"export-{key}-{number}", created, owned=True)
                      for number, raw in lines])
    except Exception:  # a bad line in this batch: line by line, each bad one kept
        for number, raw in lines:
            record = _record_or_bad(number, raw, export_type, key_schema, sequence, key, created,
                                    bad)
            if record is not None:
                batch.append(record)


def _record_or_bad(number: int, raw: bytes, export_type: str, key_schema: Sequence[str],
                   sequence: str, key: str, created: datetime,
                   bad: list[BadRecord]) -> Record | None:
    """Line ``number`` of data file ``key`` as a record, or None with the line kept in ``bad``
    (its text, file and number: any error, never stopping the file)."""
    try:
        return record_of(json.loads(raw), export_type, key_schema, sequence,
                         f"export-{key}-{number}", created, owned=True)
    except Exception as error:  # any bad line: kept with its text
        bad.append(bad_line(key, number, raw, error, export_type))
        return None


def _batches(lines: Iterable[tuple[int, bytes]]) -> Iterator[list[tuple[int, bytes]]]:
    """``lines`` in lists of :data:`BATCH` (the last shorter): a batch of the load."""
    if isinstance(lines, list):
        for start in range(0, len(lines), BATCH):
            yield lines[start:start + BATCH]
        return
    iterator = iter(lines)
    while batch := list(itertools.islice(iterator, BATCH)):
        yield batch


def bad_line(key: str, number: int, raw: bytes, error: BaseException,
             export_type: str = FULL) -> BadRecord:
    """A line of data file ``key`` that is not an export line, as the core's quarantine keeps it:
    the raw text, the file and the line number, and the error naming both (and the field:
    the missing one, or the image lacking a key attribute)."""
    text = raw.decode("utf-8", "backslashreplace").rstrip("\r\n")
    reason = f"line {number} of export data file {key}: {type(error).__name__}: {error}"
    where = ""
    if isinstance(error, KeyError) and error.args:
        where = str(error.args[0])
    elif isinstance(error, ConfigurationError):
        where = "Item" if export_type == FULL else "NewImage"
    return BadRecord(number, {"export_file": key, "line": number, "text": text},
                     MalformedRecordError(reason, field_path=where, index=number,
                                          event_id=f"export-{key}-{number}"))


def progress_id(manifest: ExportManifest, data_file: DataFile) -> str:
    """The ``_id`` of a data file's progress document: the export (its ARN, else its location)
    and the file's ``dataFileS3Key``. The same for ``sync --export``, a Distributed Map child
    and a Batch array job, so whichever loaded a file, the others skip it."""
    return f"{manifest.export_arn or manifest.location}#{data_file.key}"


def _mark_done(progress: Any, manifest: ExportManifest, data_file: DataFile,
               result: FileResult) -> None:
    if progress is None:
        return
    progress.update_one(
        {"_id": progress_id(manifest, data_file)},
        {"$set": {"kind": KIND, "export": manifest.export_arn or manifest.location,
                  "key": data_file.key, "lines": result.lines, "done": True,
                  "updated_at": datetime.now(timezone.utc)}},
        upsert=True)


def _loaded(progress: Any, manifest: ExportManifest) -> set[str]:
    if progress is None:
        return set()
    return {d["key"] for d in progress.find(
        {"kind": KIND, "export": manifest.export_arn or manifest.location, "done": True})}


def load_export_file(manifest: ExportManifest, data_file: DataFile, replicator: Replicator, *,
                     key_schema: Sequence[str], progress: Any, sequence: str = COPY_SEQUENCE,
                     s3: Any = None, backoff: Backoff | None = None) -> FileResult:
    """One data file of ``manifest``, loaded once however often this runs: the unit of a
    Distributed Map child, a Batch array job and ``replicator load-export-file``.

    Skipped (``already_loaded``) when ``progress`` (the ``<collection>_sync`` collection
    ``sync --export`` uses) holds the file as done; otherwise read and written through
    :func:`load_file` -- integrity checks, bad lines quarantined with file and line -- and
    marked done only once every line is acknowledged. A run killed mid-file leaves no mark: the
    next run writes the whole file again, and the guard (copied items carry sequence number
    "0") makes the second write of a line a no-op, never an overwrite of a newer change.
    Raises ExportFileMismatch (nothing written, nothing marked) when the file does not match
    its manifest line; RetriesExhausted when MongoDB keeps refusing a batch."""
    retry = backoff or Backoff(max_attempts=10)
    if progress is not None and _transient_retried(
            lambda: progress.find_one({"_id": progress_id(manifest, data_file), "done": True},
                                      {"_id": 1}),
            f"{data_file.key}: reading its progress", retry) is not None:
        log.info("export data file %s: loaded before, skipped", data_file.key)
        return FileResult(data_file.key, already_loaded=True)
    result = load_file(data_file, manifest.export_type, replicator, key_schema, sequence, s3,
                       retry)
    if result.mismatch is not None:
        raise ExportFileMismatch(manifest.export_arn or manifest.location, [result.mismatch])
    _transient_retried(lambda: _mark_done(progress, manifest, data_file, result),
                       f"{data_file.key}: marking it loaded", retry)
    log.info("export data file %s: %d lines, %d written, %d newer kept, %d quarantined",
             data_file.key, result.lines, result.written, result.skipped_newer,
             result.quarantined)
    return result


def _transient_retried(call: Callable[[], Any], what: str, backoff: Backoff) -> Any:
    """``call()``, again after ``backoff`` while MongoDB answers with a transient error (a
    connection lost or reset, a timeout: pymongo's ConnectionFailure, ExecutionTimeout,
    WTimeoutError); RetriesExhausted past its attempts. Measured: eight children loading at once
    into a slow server saw pymongo cancel a pooled connection's waiters (``_OperationCancelled``,
    an AutoReconnect) on the progress read; the loader's own batches already retried theirs."""
    from pymongo.errors import ConnectionFailure, ExecutionTimeout, WTimeoutError

    attempt = 0
    while True:
        try:
            return call()
        except (ConnectionFailure, ExecutionTimeout, WTimeoutError) as error:
            attempt += 1
            backoff.give_up(attempt, what, error)
            log.warning("%s: %s (%s); retry %d", what, type(error).__name__, error, attempt)
            backoff.wait(attempt)


@dataclass(frozen=True)
class WorkerTarget:
    """What a pool process needs to open its own connection (a client cannot be pickled)."""

    mongodb_uri: str
    database: str
    collection: str
    settings: Any
    key_schema: tuple[str, ...]


_WORKER_REPLICATOR: dict[WorkerTarget, Replicator] = {}


def _pool_load(target: WorkerTarget, data_file: DataFile, export_type: str,
               sequence: str) -> FileResult:
    replicator = _WORKER_REPLICATOR.get(target)
    if replicator is None:
        from replicator.mongo import APPNAME, connect

        client = connect(target.mongodb_uri, appname=f"{APPNAME}-export")
        replicator = Replicator(client[target.database][target.collection], target.settings)
        _WORKER_REPLICATOR[target] = replicator
    return load_file(data_file, export_type, replicator, target.key_schema, sequence)


def load_export(
    manifest: ExportManifest,
    *,
    key_schema: Sequence[str],
    make_replicator: Callable[[], Replicator] | None = None,
    worker_target: WorkerTarget | None = None,
    processes: int = 0,
    worker: tuple[int, int] = (0, 1),
    sequence: str = COPY_SEQUENCE,
    progress: Any = None,
    on_file: Callable[[FileResult], None] | None = None,
    s3: Any = None,
) -> ExportStats:
    """Load this worker's share of the export's data files.

    ``processes`` > 0: a process pool, each process writing through its own connection
    (``worker_target``); 0: in this process through ``make_replicator()`` (tests, small exports).
    ``progress``: the collection keeping each loaded file (a rerun skips them).
    """
    files = manifest.share(*worker)
    stats = ExportStats(files=len(files))
    loaded = _loaded(progress, manifest)
    todo = [f for f in files if f.key not in loaded]
    stats.files_already_loaded = len(files) - len(todo)
    started = time.monotonic()
    schema = tuple(key_schema)

    def finished(data_file: DataFile, result: FileResult) -> None:
        stats.add(result)
        if result.mismatch is None:
            _mark_done(progress, manifest, data_file, result)
        if on_file is not None:
            on_file(result)

    if processes > 0:
        if worker_target is None:
            raise ConfigurationError("a process pool needs a MongoDB URI (worker_target)")
        with ProcessPoolExecutor(max_workers=processes) as pool:
            futures = {pool.submit(_pool_load, worker_target, f, manifest.export_type, sequence): f
                       for f in todo}
            for future, data_file in futures.items():
                finished(data_file, future.result())
    else:
        if make_replicator is None:
            raise ConfigurationError("give make_replicator (or processes and worker_target)")
        replicator = make_replicator()
        for data_file in todo:
            finished(data_file, load_file(data_file, manifest.export_type, replicator, schema,
                                          sequence, s3))
    stats.elapsed_s = time.monotonic() - started
    log.info("export %s: %d files (%d loaded before), %d lines, %d written, %d newer kept, "
             "%d quarantined", manifest.export_arn or manifest.location, stats.files,
             stats.files_already_loaded, stats.lines, stats.written, stats.skipped_newer,
             stats.quarantined)
    problems = [r.mismatch for r in stats.per_file if r.mismatch is not None]
    if problems:
        raise ExportFileMismatch(manifest.export_arn or manifest.location, problems)
    return stats


# -- writing an export in AWS's layout (tests, benchmarks, local trials) -------------------------
def write_export(directory: str | Path, lines_per_file: Sequence[Sequence[Mapping[str, Any]]], *,
                 export_type: str = FULL, export_id: str = "01700000000000-abcdef12",
                 table_arn: str = "arn:aws:dynamodb:us-east-1:123456789012:table/t",
                 export_time: datetime | None = None, prefix: str = "exports",
                 export_from_time: datetime | None = None,
                 export_to_time: datetime | None = None) -> Path:
    """Write ``lines_per_file`` (export lines, DynamoDB JSON with base64 binaries) as an export in
    AWS's layout under ``directory``; returns the export directory (.../AWSDynamoDB/<id>)."""
    root = Path(directory) / prefix / "AWSDynamoDB" / export_id
    (root / "data").mkdir(parents=True, exist_ok=True)
    entries = []
    total = 0
    for number, lines in enumerate(lines_per_file):
        name = f"{number:05d}-{export_id[-8:]}.json.gz"
        body = "".join(json.dumps(line) + "\n" for line in lines).encode()
        data = gzip.compress(body)
        (root / "data" / name).write_bytes(data)
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        entries.append({"itemCount": len(lines), "md5Checksum": base64.b64encode(digest).decode(),
                        "etag": digest.hex(),
                        "dataFileS3Key": f"{prefix}/AWSDynamoDB/{export_id}/data/{name}"})
        total += len(lines)
    (root / "manifest-files.json").write_text("".join(json.dumps(e) + "\n" for e in entries))
    moment = (export_time or datetime.now(timezone.utc)).isoformat().replace("+00:00", "Z")
    summary: dict[str, Any] = {
        "version": "2023-08-01" if export_type == INCREMENTAL else "2020-06-30",
        "exportArn": f"{table_arn}/export/{export_id}", "startTime": moment, "endTime": moment,
        "tableArn": table_arn, "exportTime": moment, "s3Bucket": "bucket", "s3Prefix": prefix,
        "s3SseAlgorithm": "AES256", "manifestFilesS3Key":
            f"{prefix}/AWSDynamoDB/{export_id}/manifest-files.json",
        "billedSizeBytes": 0, "itemCount": total, "outputFormat": "DYNAMODB_JSON",
        "exportType": export_type,
    }
    if export_from_time is not None:
        summary["exportFromTime"] = export_from_time.isoformat().replace("+00:00", "Z")
    if export_to_time is not None:
        summary["exportToTime"] = export_to_time.isoformat().replace("+00:00", "Z")
    (root / "manifest-summary.json").write_text(json.dumps(summary))
    (root / "_started").write_bytes(b"")
    return root


def export_json(value: Any) -> Any:
    """A boto3 attribute value -> export DynamoDB JSON (bytes as base64 text)."""
    import base64

    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {k: export_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [export_json(v) for v in value]
    return value


# -- asking DynamoDB for an export ---------------------------------------------------------------
def request_export(dynamodb: Any, table_arn: str, bucket: str, prefix: str, *,
                   incremental: tuple[datetime, datetime] | None = None,
                   poll_s: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> str:
    """ExportTableToPointInTime (full, or INCREMENTAL_EXPORT over ``(from, to)``), wait for it,
    return the s3:// location of its manifest directory. Needs point-in-time recovery."""
    request: dict[str, Any] = {"TableArn": table_arn, "S3Bucket": bucket, "S3Prefix": prefix,
                               "ExportFormat": "DYNAMODB_JSON"}
    if incremental is not None:
        request["ExportType"] = INCREMENTAL
        request["IncrementalExportSpecification"] = {
            "ExportFromTime": incremental[0], "ExportToTime": incremental[1],
            "ExportViewType": "NEW_AND_OLD_IMAGES"}
    description = dynamodb.export_table_to_point_in_time(**request)["ExportDescription"]
    arn = description["ExportArn"]
    while description.get("ExportStatus") == "IN_PROGRESS":
        sleep(poll_s)
        description = dynamodb.describe_export(ExportArn=arn)["ExportDescription"]
    if description.get("ExportStatus") != "COMPLETED":
        raise ReplicationError(f"export {arn} ended {description.get('ExportStatus')}: "
                               f"{description.get('FailureMessage', '')}")
    manifest = str(description["ExportManifest"])  # .../AWSDynamoDB/<id>/manifest-summary.json
    return f"s3://{bucket}/{manifest.rsplit('/', 1)[0]}"
