"""Exports in AWS's layout, tampered with on purpose: one home for the tests that replace a data
file (tests/replicator/migrate/test_trust.py, test_unseen_inputs.py)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path


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
