"""Exports in AWS's layout, tampered with on purpose: one home for the tests that replace a data
file (tests/replicator/migrate/test_trust.py, test_unseen_inputs.py) or load raw lines
(test_export_records.py, test_export_rejected.py)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from replicator.migrate.export import FULL, load_manifest, write_export


def replace_data_file(root: Path, number: int, data: bytes, item_count: int, *,
                      manifest: bool = True) -> str:
    """Replace data file ``number`` of the export at ``root`` with the bytes ``data``; with
    ``manifest``, its manifest entry follows (itemCount, md5Checksum, etag) as AWS writes it.
    Returns the file's ``dataFileS3Key``."""
    listing = root / "manifest-files.json"
    entries = [json.loads(line) for line in listing.read_text().splitlines()]
    key = str(entries[number]["dataFileS3Key"])
    (root / "data" / key.rsplit("/", 1)[-1]).write_bytes(data)
    if manifest:
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        entries[number].update(itemCount=item_count, etag=digest.hex(),
                               md5Checksum=base64.b64encode(digest).decode())
        listing.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return key


def raw_lines_file(tmp_path: Path, raws: list[bytes], export_type: str = FULL) -> Any:
    """A one-file export of ``export_type`` at ``tmp_path`` whose data file holds the bytes
    ``raws`` as its lines, as they are (odd ones included): its ExportDataFile, the checksums
    left out so the lines are read as given."""
    raws = [raw if raw.endswith(b"\n") else raw + b"\n" for raw in raws]
    root = write_export(tmp_path, [[{"Item": {"pk": {"S": "x"}}}]], export_type=export_type)
    data_file = load_manifest(str(root)).files[0]
    Path(data_file.location).write_bytes(gzip.compress(b"".join(raws)))
    return replace(data_file, item_count=len(raws), md5=None, etag=None)
