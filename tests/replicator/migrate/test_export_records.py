"""The C accelerator's ``export_records`` (issue 21) against the pure-Python path it stands in
for: ``record_of(json.loads(raw), ...)`` of each line of a data file.

Held equal record by record, as BSON bytes (type for type), on every line of the fixture corpus
(the dynamodb-local fixtures' images, every attribute type), the shared cases' images, and lines
of the same kind as a data file's odd ones (escapes, surrogates, a BOM, whitespace, extra data,
not an object, not an export line, a missing key attribute, deep nesting, an incremental
export's removal): where Python raises, the C function must leave the line to Python (None).
Then a whole file loads to the same documents and quarantine with and without the accelerator.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bson
import bson.errors
import pytest

from replicator import Replicator, Settings, accelerator
from replicator.migrate import export
from replicator.migrate.export import FULL, INCREMENTAL
from support.exports import raw_lines_file

TESTS = Path(__file__).resolve().parents[2]
FIXTURES = TESTS / "fixtures" / "dynamodb-local"  # the shared fixtures' copy in the repository
CASES = TESTS / "data" / "cases"  # the shared cases' copy
KEY = ("pk",)
CREATED = datetime(2026, 12, 7, 19, 0, tzinfo=timezone.utc)

native = pytest.importorskip("replicator._speedups") if accelerator.native is None \
    else accelerator.native
if accelerator.native is None:
    accelerator.configure(native)


def _images() -> list[dict[str, Any]]:
    """Every NewImage / OldImage / Keys of the fixtures and the shared cases (re-keyed "pk")."""
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for name in ("NewImage", "OldImage", "Item"):
                image = value.get(name)
                if isinstance(image, dict) and image:
                    found.append(image)
            for inner in value.values():
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    for path in sorted([*FIXTURES.glob("*/*.json"), *CASES.glob("*/*.json")]):
        try:
            walk(json.loads(path.read_text()))
        except ValueError:
            continue
    return [{**image, "pk": {"S": f"k{n}"}} for n, image in enumerate(found)]


def _odd_lines() -> list[bytes]:
    """Lines of a data file's odd kinds, each with what a data file ends a line with."""
    good = json.dumps({"Item": {"pk": {"S": "odd"}, "v": {"N": "1"}}})
    deep = '{"M": {"a": ' * 3000 + '{"S": "bottom"}' + "}}" * 3000  # json.dumps recurses
    return [
        b'{"Item": {"pk": {"S": "\\u00e9\\ud83d\\ude00 \\"q\\" \\\\ \\n"}}}\n',  # escapes, a pair
        b'{"Item": {"pk": {"S": "lone \\ud800"}}}\n',  # a lone surrogate, escaped
        b'{"Item": {"pk": {"S": "raw \xed\xa0\x80"}}}\n',  # one in UTF-8 (surrogatepass)
        b'{"Item": {"pk": {"S": "bad \xff utf-8"}}}\n',  # not UTF-8 at all
        "\ufeff".encode() + good.encode() + b"\n",  # a BOM
        b"  " + good.encode() + b"\n",  # leading whitespace
        good.encode() + b" \t\r\n",  # trailing whitespace
        good.encode() + b" {}\n",  # extra data
        good.encode() + b" \x0b\n",  # not JSON whitespace after the value
        b'[{"Item": {}}]\n', b'"Item"\n', b"{}\n", b"{\n",  # not an object, not a whole one
        b'{"Item": []}\n', b'{"Item": null}\n', b'{"Keys": {}}\n',  # not an export line
        b'{"Item": {"other": {"S": "x"}}}\n',  # no key attribute
        b'{"Item": {"pk": {"S": "first"}}, "Item": {"pk": {"S": "last"}}}\n',  # twice: the last
        b'{"Item": {"pk": {"N": "NaN"}, "f": NaN, "i": -Infinity}}\n',  # json's constants
        b'{"Item": {"pk": {"S": "x"}, "big": 1e999, "int": 123456789012345678901234567890}}\n',
        ('{"Item": {"pk": {"S": "deep"}, "d": ' + deep + "}}\n").encode(),  # recursion
        b'{\x00"Item": {}}\n',  # a NUL second byte: json.loads reads UTF-16
        b'{"Item": {"pk": {"S": "no newline"}}}',
        b'{"Item": {"pk": {"S": "cr"}}}\r\n',
        b'{"Item": {"pk": {"S": "\xc3\xa9 \xe6\x9d\x8e"}}, "Extra": 1}\n',  # UTF-8 text, extras
    ]


def _incremental_lines() -> list[bytes]:
    image = {"pk": {"S": "i"}, "v": {"N": "2"}}
    lines = [
        {"Metadata": {"WriteTimestampMicros": {"N": "1"}}, "Keys": {"pk": {"S": "i"}},
         "NewImage": image, "OldImage": {"pk": {"S": "i"}}},
        {"Keys": {"pk": {"S": "gone"}}, "OldImage": {"pk": {"S": "gone"}}},  # a removal
        {"Keys": {"pk": {"S": "gone"}}, "NewImage": None},  # a removal too
        {"NewImage": image},  # no Keys: record_of raises KeyError
        {"Keys": {"pk": {"S": "i"}}, "NewImage": []},  # not a map
        {"Keys": {"pk": {"S": "i"}}, "NewImage": {"other": {"S": "x"}}},  # no key attribute
        {"Keys": {"pk": {"S": "i"}}, "Item": image},  # a full export's line
    ]
    return [json.dumps(line).encode() + b"\n" for line in lines]


def _exact(value: Any) -> Any:
    """``value`` type for type and in order (BSON bytes where bson can encode it; a lone
    surrogate it cannot, and NaN is not equal to itself, hence the walk)."""
    try:
        return bson.encode(value)
    except (UnicodeEncodeError, OverflowError, bson.errors.InvalidDocument, TypeError):
        pass
    if isinstance(value, dict):
        return ("dict", tuple((_exact(k), _exact(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", tuple(_exact(v) for v in value))
    return (type(value).__name__, repr(value))


def _python(raw: bytes, export_type: str, number: int) -> Any:
    try:
        return export.record_of(json.loads(raw), export_type, KEY, "0",
                                f"export-data/f-{number}", CREATED, owned=True)
    except Exception as error:  # any: the line is quarantined on both paths
        return type(error)


def _lines(export_type: str) -> list[tuple[int, bytes]]:
    raws = [json.dumps({"Item": image}).encode() + b"\n" for image in _images()]
    raws += _odd_lines()
    if export_type == INCREMENTAL:
        raws = [json.dumps({"Keys": {"pk": image["pk"]}, "NewImage": image}).encode() + b"\n"
                for image in _images()] + _incremental_lines() + _odd_lines()
    return list(enumerate(raws, start=1))


@pytest.mark.parametrize("export_type", [FULL, INCREMENTAL])
def test_export_records_make_what_record_of_makes(export_type: str) -> None:
    lines = _lines(export_type)
    assert len(lines) > 60 and len(_images()) > 100  # the corpus was found
    made, missing = native.export_records(lines, export._SCAN_ONCE, export_type == FULL, KEY,
                                          "0", "export-data/f-", export.SOURCE, CREATED)
    assert len(made) == len(lines)
    assert missing == [i for i, record in enumerate(made) if record is None]
    handled = 0
    for (number, raw), record in zip(lines, made, strict=True):
        expected = _python(raw, export_type, number)
        if record is None:  # left to Python: fine, but the common lines must not be
            continue
        handled += 1
        assert isinstance(expected, dict), (raw[:80], expected)
        assert _exact(record) == _exact(expected), raw[:80]
        assert list(record["dynamodb"]) == list(expected["dynamodb"])
    images = len(_images())
    assert handled >= images  # every corpus line is made in C
    # every line Python refuses is left to it (so it is quarantined with Python's error)
    for (number, raw), record in zip(lines, made, strict=True):
        if not isinstance(_python(raw, export_type, number), dict):
            assert record is None, raw[:80]


def test_export_records_refuse_wrong_arguments() -> None:
    with pytest.raises(TypeError):
        native.export_records((), export._SCAN_ONCE, True, KEY, "0", "p", "s", CREATED)
    with pytest.raises(TypeError):
        native.export_records([], export._SCAN_ONCE, True, ["pk"], "0", "p", "s", CREATED)
    with pytest.raises(TypeError):
        native.export_records([], export._SCAN_ONCE, True, KEY, "0", "p", "s")
    assert native.export_records([], export._SCAN_ONCE, True, KEY, "0", "p", "s",
                                 CREATED) == ([], [])
    # what is not a (number, bytes) line is left to Python
    made, missing = native.export_records([("1", b"{}"), (1, "{}"), [1, b"{}"]],
                                          export._SCAN_ONCE, True, KEY, "0", "p", "s", CREATED)
    assert made == [None, None, None] and missing == [0, 1, 2]


def _state(collection: Any) -> tuple[list[bytes], list[tuple[Any, ...]]]:
    documents = [bson.encode(d) for d in collection.find({}, sort=[("_id", 1)])]
    quarantine = collection.database[f"{collection.name}_quarantine"]
    # the raw record as kept, but the batch's clock read (each path reads its own)
    kept = sorted((re.sub(r'"ApproximateCreationDateTime": "[^"]*"', "", q["raw_record"]),
                   q["error"]) for q in quarantine.find({}, {"_id": 0}))
    return documents, kept


@pytest.mark.parametrize("export_type", [FULL, INCREMENTAL])
def test_a_file_loads_the_same_with_and_without_the_accelerator(
    wire_target: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, export_type: str
) -> None:
    monkeypatch.setattr(export, "BATCH", 40)  # batches with and without a bad line
    raws = [raw for _, raw in _lines(export_type)]
    data_file = raw_lines_file(tmp_path, raws, export_type)
    states, results = [], []
    for path in ("c", "python"):
        collection = wire_target.collection("export_records", f"{export_type.lower()}_{path}")
        replicator = Replicator(collection, Settings(key_schema=KEY))
        if path == "python":
            replicator.native = None
        result = export.load_file(data_file, export_type, replicator, KEY)
        results.append((result.lines, result.written, result.skipped_newer, result.quarantined,
                        result.deletes))
        states.append(_state(collection))
    assert results[0] == results[1]
    assert states[0] == states[1]
    assert results[0][3] > 5 and len(states[0][0]) > 100  # both kinds of line, many of each


@pytest.mark.parametrize("prefix", ["export-data/f-", "export-dé/f-", "export-李/f-", "e-😀-"])
@pytest.mark.parametrize("number", [0, 7, 10, 99, 1234567890123, 2**63 - 1, 2**70])
def test_event_ids_are_what_the_f_string_makes(prefix: str, number: int) -> None:
    line = b'{"Item": {"pk": {"S": "x"}}}\n'
    made, missing = native.export_records([(number, line)], export._SCAN_ONCE, True, KEY, "0",
                                          prefix, export.SOURCE, CREATED)
    assert missing == []
    assert made[0]["eventID"] == f"{prefix}{number}"
    assert type(made[0]["eventID"]) is str


@pytest.mark.parametrize("key_schema", [("pk", "sk"), ("sk", "pk"), ()])
def test_export_records_take_the_key_schema_in_its_order(key_schema: tuple[str, ...]) -> None:
    lines = [(1, b'{"Item": {"sk": {"N": "2"}, "v": {"S": "x"}, "pk": {"S": "a"}}}\n'),
             (2, b'{"Item": {"pk": {"S": "b"}}}\n'),  # no sk: Python refuses it (or not, for ())
             (3, b'{"Item": "sk pk"}\n')]  # not a map: item_record's own TypeError
    made, missing = native.export_records(lines, export._SCAN_ONCE, True, key_schema, "0",
                                          "e-", export.SOURCE, CREATED)
    for (number, raw), record in zip(lines, made, strict=True):
        try:
            expected = export.record_of(json.loads(raw), FULL, key_schema, "0", f"e-{number}",
                                        CREATED, owned=True)
        except Exception:  # any: quarantined on both paths
            assert record is None
            continue
        if record is not None:
            assert _exact(record) == _exact(expected)
            assert list(record["dynamodb"]["Keys"]) == list(key_schema)
    assert made[0] is not None and missing == [i for i, r in enumerate(made) if r is None]
