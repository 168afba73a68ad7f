"""Reading an export's data file once (issue 21): the check and the load share one decompression
while the lines fit ``export.KEEP_BYTES``, and decompress twice above it -- the same documents,
the same quarantine, and nothing written from a file that fails its check, on both paths.

``raw_lines`` (zlib's decompressor, memchr line ends) is held to what ``gzip.GzipFile`` read
before it, line for line and error for error, on gzip files of the kinds AWS and other tools
write (several members, NUL padding, no final newline) and broken ones (cut short, a flipped
bit, bytes after the last member). The load writes to mongoeco through the real pymongo client.
"""

from __future__ import annotations

import base64
import functools
import gzip
import io
import json
import logging
import random
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import bson
import pytest

from replicator import Replicator, Settings
from replicator.migrate import export
from replicator.migrate.export import FULL, INCREMENTAL, load_manifest, write_export

KEY = ("pk",)


def _item(n: int) -> dict[str, Any]:
    """Every attribute type, binaries as an export writes them (base64 text)."""
    blob = base64.b64encode(bytes([n % 256, 0, 255])).decode()
    return {"pk": {"S": f"k{n:04d}"}, "n": {"N": "12345678901234567890123456789012345678"},
            "small": {"N": str(n)}, "b": {"B": blob}, "bs": {"BS": [blob]},
            "ns": {"NS": ["1", "2.5"]}, "ss": {"SS": ["x", "y"]}, "ok": {"BOOL": n % 2 == 0},
            "nothing": {"NULL": True},
            "m": {"M": {"inner": {"L": [{"S": "é"}, {"N": "-0.001"}, {"B": blob}]}}}}


def _texts(count: int) -> list[str]:
    """``count`` export lines with a blank line, a whitespace-only line and two bad lines among
    them (one not JSON, one without the key attribute)."""
    texts = [json.dumps({"Item": _item(n)}) for n in range(count)]
    texts[3:3] = ["", "  \t"]
    texts[10:10] = ['{"Item": {"pk": {"S": "broken"']
    texts[20:20] = [json.dumps({"Item": {"other": {"S": "x"}}})]
    return texts


def _file(tmp_path: Path, texts: list[str], export_type: str = FULL) -> export.DataFile:
    root = write_export(tmp_path, [[{"Item": _item(0)}]], export_type=export_type)
    data_file = load_manifest(str(root)).files[0]
    data = gzip.compress("".join(t + "\n" for t in texts).encode())
    Path(data_file.location).write_bytes(data)
    return replace(data_file, item_count=sum(1 for t in texts if t.strip()), md5=None, etag=None)


def _state(collection: Any) -> tuple[list[bytes], list[tuple[Any, ...]]]:
    """The documents as BSON bytes (type for type) and the quarantine's (file, line, text)."""
    documents = [bson.encode(d) for d in collection.find({}, sort=[("_id", 1)])]
    quarantine = collection.database[f"{collection.name}_quarantine"]
    raw = [json.loads(q["raw_record"]) for q in quarantine.find({})]
    kept = sorted((r["export_file"], r["line"], r["text"]) for r in raw)
    return documents, kept


@pytest.mark.parametrize("export_type", [FULL, INCREMENTAL])
def test_lines_kept_or_read_twice_load_the_same_documents(
    wire_target: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, export_type: str
) -> None:
    monkeypatch.setattr(export, "BATCH", 25)  # several batches from a file mongoeco takes fast
    texts = _texts(60)
    if export_type == INCREMENTAL:
        texts = [t.replace('{"Item":', '{"Keys": {"pk": {"S": "k"}}, "NewImage":', 1)
                 for t in texts]
        texts.append(json.dumps({"Keys": {"pk": {"S": "k9999"}}}))  # a deletion (of no item)
    data_file = _file(tmp_path, texts, export_type)
    size = sum(len(t) + 1 for t in texts)
    states = []
    # every line kept; none (the bound crossed at once); the bound crossed half-way
    for n, keep in enumerate((export.KEEP_BYTES, 0, size // 2)):
        collection = wire_target.collection("export_read", f"{export_type.lower()}_{n}")
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="replicator.migrate"):
            result = export.load_file(data_file, export_type,
                                      Replicator(collection, Settings(key_schema=KEY)), KEY,
                                      keep=keep)
        again = "decompressed again" in caplog.text
        assert again == (keep != export.KEEP_BYTES), caplog.text
        assert result.mismatch is None and result.lines == data_file.item_count
        assert result.quarantined == 2
        assert result.deletes == (1 if export_type == INCREMENTAL else 0)
        states.append(_state(collection))
    documents, quarantined = states[0]
    assert len(documents) == 60
    assert [line for _, line, _ in quarantined] == [11, 21]
    assert states[1] == states[0] and states[2] == states[0]


@pytest.mark.parametrize("keep", [export.KEEP_BYTES, 0])
@pytest.mark.parametrize("broken", ["short", "count", "md5", "etag", "trailing", "flipped"])
def test_a_file_failing_its_check_writes_nothing_on_either_path(
    wire_target: Any, tmp_path: Path, keep: int, broken: str
) -> None:
    texts = [json.dumps({"Item": _item(n)}) for n in range(30)]
    data_file = _file(tmp_path, texts)
    data = Path(data_file.location).read_bytes()
    if broken == "short":
        Path(data_file.location).write_bytes(data[:-9])  # the trailer and a byte cut off
    elif broken == "count":
        data_file = replace(data_file, item_count=31)
    elif broken == "md5":
        data_file = replace(data_file, md5=base64.b64encode(b"\0" * 16).decode())
    elif broken == "etag":
        data_file = replace(data_file, etag="0" * 32)
    elif broken == "trailing":
        Path(data_file.location).write_bytes(data + b"PK")
    else:  # a flipped bit in the compressed stream: zlib's CRC-32 (or the stream) says so
        Path(data_file.location).write_bytes(data[:200] + bytes([data[200] ^ 4]) + data[201:])
    collection = wire_target.collection("export_read", f"broken_{broken}_{keep}")
    result = export.load_file(data_file, FULL, Replicator(collection, Settings(key_schema=KEY)),
                              KEY, keep=keep)
    assert result.mismatch is not None and data_file.key in result.mismatch
    assert result.lines == result.written == 0
    assert collection.count_documents({}) == 0
    assert collection.database[f"{collection.name}_quarantine"].count_documents({}) == 0


# -- raw_lines against gzip.GzipFile: inputs of the same kind, new ones -----------------------------
def _gzipfile_lines(data: bytes) -> list[tuple[int, bytes]]:
    """What load_file read before issue 21's change: GzipFile's lines, blank ones skipped."""
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
        return [(n, raw) for n, raw in enumerate(stream, start=1) if raw.strip()]


def _outcome(read: Any, data: bytes) -> Any:
    try:
        return read(data)
    except (OSError, EOFError, zlib.error):
        return "refused"


@functools.cache  # built once (~0.2 s of CPU: 8 MB compressed) for the 39 tests: none changes it
def _files() -> dict[str, bytes]:
    rng = random.Random(21)
    text = "".join(rng.choice(["", " ", "\t\r", '{"Item": {}}', "é" * rng.randint(1, 900)])
                   + rng.choice(["\n", "\r\n", ""]) for _ in range(3000)).encode()
    long_line = b"x" * (3 * 1024 * 1024) + b"\nlast"  # a line across zlib's 1 MiB pieces
    return {
        "empty": b"",
        "one member": gzip.compress(text),
        "no final newline": gzip.compress(b"a\nb"),
        "only blank lines": gzip.compress(b"\n \n\t\n\x0b\x0c\n"),
        "a NUL line is not blank": gzip.compress(b"\x00\n\n"),
        "two members": gzip.compress(text[:5000]) + gzip.compress(text[5000:]),
        "a member ends mid-line": gzip.compress(b"abc") + gzip.compress(b"def\nghi\n"),
        "an empty member": gzip.compress(b"") + gzip.compress(b"a\n"),
        "NUL padding": gzip.compress(text) + b"\0" * 1000,
        "NUL padding between members": gzip.compress(b"a\n") + b"\0\0" + gzip.compress(b"b\n"),
        "a header with a name": _named(text),
        "level 1": gzip.compress(text, compresslevel=1),
        "long line": gzip.compress(long_line),
        "high ratio": gzip.compress(b"\n" * 5_000_000 + b"}"),
        "stored blocks": gzip.compress(text, compresslevel=0),
    }


def _named(text: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(filename="data.json", mode="wb", fileobj=out, mtime=0) as stream:
        stream.write(text)
    return out.getvalue()


# "high ratio" (5 MB of newlines: ~3 s of CPU, GzipFile line by line) only in the whole suite
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "high ratio" else n
                                  for n in _files()])
def test_raw_lines_read_what_gzipfile_read(name: str) -> None:
    data = _files()[name]
    assert list(export.raw_lines(data)) == _gzipfile_lines(data)


# "long line" (3 MiB: ~2 s of CPU with a flipped bit) only in the whole suite
@pytest.mark.parametrize("name", ["one member", "two members", "NUL padding",
                                  pytest.param("long line", marks=pytest.mark.slow)])
@pytest.mark.parametrize("cut", ["half", "last byte", "trailing garbage", "a lone magic byte",
                                 "flipped bit", "flipped trailer"])
def test_raw_lines_refuse_what_gzipfile_refused(name: str, cut: str) -> None:
    data = _files()[name]
    broken = {
        "half": data[: len(data) // 2],
        "last byte": data[:-1] if name != "NUL padding" else data[:-1001],
        "trailing garbage": data + b"garbage",
        "a lone magic byte": data + b"\x1f",
        "flipped bit": data[:40] + bytes([data[40] ^ 1]) + data[41:],
        "flipped trailer": data[:-1] + bytes([data[-1] ^ 1]) if name != "NUL padding"
        else data[:-1005] + bytes([data[-1005] ^ 1]) + data[-1004:],
    }[cut]
    ours = _outcome(lambda d: list(export.raw_lines(d)), broken)
    assert ours == _outcome(_gzipfile_lines, broken)
    if ours == "refused":  # and the check names it, so nothing of the file is written
        bare = export.DataFile("data/f.json.gz", None, "unused")
        assert "not a complete gzip file" in str(export.mismatch(bare, broken))
