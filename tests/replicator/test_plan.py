"""Changes -> write plan, compared with == against pymongo operation values (no I/O)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from pymongo.operations import DeleteOne, ReplaceOne, UpdateOne

from replicator.convert import Converter
from replicator.core import load_callable
from replicator.errors import (
    ConfigurationError,
    ConversionError,
    MalformedRecordError,
    TransformError,
    UnsupportedRecordError,
)
from replicator.events import parse_records
from replicator.keys import KeyMapper
from replicator.plan import Planner
from replicator.settings import Settings
from replicator.writes import WritePlan
from support.planned_writes import from_operation, operations

CREATED = datetime.fromtimestamp(1795712760, tz=timezone.utc)


def plan(records: list[dict[str, Any]], settings: Settings | None = None, **planner: Any
         ) -> WritePlan:
    changes, bad = parse_records({"Records": records})
    return Planner(settings or Settings(), **planner).plan(changes, bad)


def pad(seq: str) -> str:
    return seq.zfill(40)


def guarded(document_id: Any, seq: str, field: str = "_ddb_seq") -> dict[str, Any]:
    return {"_id": document_id, field: {"$not": {"$gte": pad(seq)}}}


def item(id_: str = "u1", v: int | str = 1, **extra: Any) -> dict[str, Any]:
    return {"id": {"S": id_}, "v": {"N": str(v)}, **extra}


def keys(id_: str = "u1") -> dict[str, Any]:
    return {"id": {"S": id_}}


# -- single key, guard ---------------------------------------------------------------------------
def test_insert_is_a_guarded_upsert_replacement(stream_record: Any) -> None:
    # given one INSERT
    result = plan([stream_record("100", "INSERT", keys(), new=item(v=1))])

    # then one replacement: _id from the key, the image, the padded sequence number
    assert result.writes == [
        from_operation(
            ReplaceOne(guarded("u1", "100"),
                       {"_id": "u1", "id": "u1", "v": 1, "_ddb_seq": pad("100")}, upsert=True),
            ("100",),
        )
    ]
    document = result.writes[0].document
    names = list(document)
    assert (names[0], names[-1]) == ("_id", "_ddb_seq")
    assert result.bad_records == [] and result.deferred == []


def test_guard_filter_shape_uses_a_40_digit_zero_padded_sequence(stream_record: Any) -> None:
    result = plan([stream_record("000000000000000000311", "MODIFY", keys(), new=item(v=2),
                                 old=item(v=1))])
    condition = result.writes[0].filter
    assert condition == {
        "_id": "u1",
        "_ddb_seq": {"$not": {"$gte": "0000000000000000000000000000000000000311"}},
    }
    assert len(condition["_ddb_seq"]["$not"]["$gte"]) == 40


def test_remove_is_a_guarded_delete(stream_record: Any) -> None:
    result = plan([stream_record("100", "REMOVE", keys(), old=item())])
    assert result.writes == [from_operation(DeleteOne(guarded("u1", "100")), ("100",))]


def test_custom_sequence_field(stream_record: Any) -> None:
    result = plan([stream_record("7", "INSERT", keys(), new=item())],
                  Settings(sequence_field="_version"))
    assert operations(result) == [
        ReplaceOne(guarded("u1", "7", "_version"),
                   {"_id": "u1", "id": "u1", "v": 1, "_version": pad("7")}, upsert=True)
    ]


def test_guard_off_writes_plain_filters_and_no_sequence_field(stream_record: Any) -> None:
    result = plan(
        [stream_record("100", "INSERT", keys("a"), new=item("a")),
         stream_record("101", "REMOVE", keys("b"), old=item("b"))],
        Settings(guard=False),
    )
    assert operations(result) == [
        ReplaceOne({"_id": "a"}, {"_id": "a", "id": "a", "v": 1}, upsert=True),
        DeleteOne({"_id": "b"}),
    ]


# -- composite keys ------------------------------------------------------------------------------
def test_composite_key_id_follows_the_key_schema_order(stream_record: Any) -> None:
    # given Keys that arrive sort key first (DynamoDB does not order them)
    composite = {"sk": {"N": "2"}, "pk": {"S": "user#1"}}
    image = {"sk": {"N": "2"}, "pk": {"S": "user#1"}, "v": {"N": "5"}}

    result = plan([stream_record("100", "INSERT", composite, new=image)],
                  Settings(key_schema=("pk", "sk")))

    # then _id is {pk, sk} in that order, in the filter and in the document
    (operation,) = operations(result)
    assert operation == ReplaceOne(
        guarded({"pk": "user#1", "sk": 2}, "100"),
        {"_id": {"pk": "user#1", "sk": 2}, "sk": 2, "pk": "user#1", "v": 5, "_ddb_seq": pad("100")},
        upsert=True,
    )
    # == on dicts ignores order, and so does mongomock: check the order itself
    (write,) = result.writes
    assert list(write.filter["_id"]) == ["pk", "sk"]
    assert isinstance(write.document, dict) and list(write.document["_id"]) == ["pk", "sk"]


def test_composite_key_without_key_schema_is_quarantined_with_the_fix(stream_record: Any) -> None:
    # Issue #10: judged per record, so one odd record cannot stop the batch.
    composite = {"pk": {"S": "user#1"}, "sk": {"N": "2"}}
    single = {"pk": {"S": "a"}}
    result = plan([stream_record("100", "INSERT", composite, new=composite),
                   stream_record("101", "INSERT", single, new=single)])
    assert [w.sequence_numbers for w in result.writes] == [("101",)]
    (bad,) = result.bad_records
    assert isinstance(bad.error, UnsupportedRecordError)
    assert "key_schema" in str(bad.error) and bad.error.field_path == "dynamodb.Keys"


def test_key_schema_names_a_missing_attribute(stream_record: Any) -> None:
    result = plan([stream_record("100", "INSERT", {"pk": {"S": "a"}}, new={"pk": {"S": "a"}})],
                  Settings(key_schema=("pk", "sk")))
    assert result.writes == []
    (bad,) = result.bad_records
    assert isinstance(bad.error, MalformedRecordError)
    assert bad.error.field_path == "dynamodb.Keys.sk"


def test_unconvertible_key_is_a_bad_record_with_its_path(stream_record: Any) -> None:
    result = plan([stream_record("100", "INSERT", {"id": {"N": "x"}}, new={"id": {"N": "x"}}),
                   stream_record("101", "INSERT", keys("ok"), new=item("ok"))])
    assert [w.sequence_numbers for w in result.writes] == [("101",)]
    (bad,) = result.bad_records
    assert isinstance(bad.error, ConversionError)
    assert (bad.index, bad.error.field_path) == (0, "dynamodb.Keys.id")


def test_id_mapping_replaces_the_default_id(stream_record: Any) -> None:
    converter = Converter()
    mapper = KeyMapper(converter, ("pk", "sk"), lambda key: f"{key['pk']}|{key['sk']}")
    composite = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    result = plan([stream_record("100", "REMOVE", composite)], key_mapper=mapper)
    assert operations(result) == [DeleteOne(guarded("a|1", "100"))]


def test_image_id_attribute_must_agree_with_the_key(stream_record: Any) -> None:
    result = plan([stream_record("100", "INSERT", keys("u1"), new=item("u1", _id={"S": "other"}))])
    assert result.writes == []
    assert result.bad_records[0].error.field_path == "dynamodb.NewImage._id"  # type: ignore[union-attr]


# -- coalescing ----------------------------------------------------------------------------------
def test_only_the_newest_change_per_id_is_written_and_covers_all(stream_record: Any) -> None:
    # given three changes of u1 and one of u2
    result = plan([
        stream_record("100", "INSERT", keys("u1"), new=item("u1", 1)),
        stream_record("101", "INSERT", keys("u2"), new=item("u2", 1)),
        stream_record("102", "MODIFY", keys("u1"), new=item("u1", 2), old=item("u1", 1)),
        stream_record("103", "MODIFY", keys("u1"), new=item("u1", 3), old=item("u1", 2)),
    ])

    # then one write per _id: u1's newest state, standing for every u1 record
    assert result.writes == [
        from_operation(
            ReplaceOne(guarded("u1", "103"),
                       {"_id": "u1", "id": "u1", "v": 3, "_ddb_seq": pad("103")}, upsert=True),
            ("100", "102", "103"),
        ),
        from_operation(
            ReplaceOne(guarded("u2", "101"),
                       {"_id": "u2", "id": "u2", "v": 1, "_ddb_seq": pad("101")}, upsert=True),
            ("101",),
        ),
    ]


def test_newest_is_chosen_by_sequence_number_not_position(stream_record: Any) -> None:
    result = plan([
        stream_record("100", "MODIFY", keys(), new=item(v=2)),
        stream_record("99", "MODIFY", keys(), new=item(v=1)),
    ])
    (write,) = result.writes
    assert write.document["v"] == 2
    assert write.sequence_numbers == ("99", "100")


def test_insert_then_remove_coalesces_to_one_delete(stream_record: Any) -> None:
    result = plan([
        stream_record("100", "INSERT", keys(), new=item()),
        stream_record("101", "REMOVE", keys(), old=item()),
    ])
    assert result.writes == [from_operation(DeleteOne(guarded("u1", "101")), ("100", "101"))]


# -- $-prefixed names ----------------------------------------------------------------------------
def test_top_level_dollar_name_is_a_literal_pipeline_replacement(stream_record: Any) -> None:
    result = plan([stream_record("100", "INSERT", keys(), new=item(**{"$price": {"N": "1"}}))])
    document = {"_id": "u1", "id": "u1", "v": 1, "$price": 1, "_ddb_seq": pad("100")}
    assert operations(result) == [
        UpdateOne(guarded("u1", "100"), [{"$replaceWith": {"$literal": document}}], upsert=True)
    ]


def test_nested_dollar_and_dotted_names_stay_a_replacement(stream_record: Any) -> None:
    image = item(**{"a.b": {"S": "dot"}, "m": {"M": {"$x": {"S": "nested"}}}})
    result = plan([stream_record("100", "INSERT", keys(), new=image)])
    assert operations(result) == [
        ReplaceOne(guarded("u1", "100"),
                   {"_id": "u1", "id": "u1", "v": 1, "a.b": "dot", "m": {"$x": "nested"},
                    "_ddb_seq": pad("100")}, upsert=True)
    ]


# -- TTL deletes ---------------------------------------------------------------------------------
def test_ttl_delete_mode_delete(stream_record: Any) -> None:
    result = plan([stream_record("100", "REMOVE", keys(), old=item(), ttl=True)],
                  Settings(ttl_deletes="delete"))
    assert result.writes == [from_operation(DeleteOne(guarded("u1", "100")), ("100",))]


def test_ttl_delete_mode_ignore_writes_nothing(stream_record: Any) -> None:
    result = plan([stream_record("100", "REMOVE", keys(), old=item(), ttl=True)],
                  Settings(ttl_deletes="ignore"))
    assert result.writes == []


def test_ttl_ignore_keeps_the_change_before_it_in_the_same_batch(stream_record: Any) -> None:
    # given a MODIFY and then a TTL expiry of the same item, in one batch
    result = plan([
        stream_record("100", "MODIFY", keys(), new=item(v=2), old=item(v=1)),
        stream_record("101", "REMOVE", keys(), old=item(v=2), ttl=True),
    ], Settings(ttl_deletes="ignore"))

    # then the MODIFY still lands (the ignored expiry must not swallow it)
    assert operations(result) == [
        ReplaceOne(guarded("u1", "100"),
                   {"_id": "u1", "id": "u1", "v": 2, "_ddb_seq": pad("100")}, upsert=True)
    ]


def test_ttl_ignore_does_not_ignore_user_deletes(stream_record: Any) -> None:
    result = plan([stream_record("100", "REMOVE", keys(), old=item())],
                  Settings(ttl_deletes="ignore"))
    assert operations(result) == [DeleteOne(guarded("u1", "100"))]


def test_ttl_delete_mode_archive(stream_record: Any) -> None:
    # given a TTL expiry with its old image, in archive mode
    result = plan([stream_record("100", "REMOVE", keys(), old=item(v=7), ttl=True)],
                  Settings(ttl_deletes="archive"))

    # then the old image goes to the archive collection, then the document is deleted
    archived = {"_id": "u1", "id": "u1", "v": 7, "_ddb_expired_at": CREATED,
                "_ddb_seq": pad("100")}
    assert result.writes == [
        from_operation(ReplaceOne(guarded("u1", "100"), archived, upsert=True), ("100",),
                     collection="archive"),
        from_operation(DeleteOne(guarded("u1", "100")), ("100",)),
    ]
    assert operations(result, "archive") == [ReplaceOne(guarded("u1", "100"), archived, upsert=True)]
    assert operations(result) == [DeleteOne(guarded("u1", "100"))]


def test_archive_mode_without_old_image_keeps_the_record_and_the_document(stream_record: Any) -> None:
    # Archiving the keys alone and deleting the document would lose the item's attributes: the
    # record is quarantined with the fix, and neither the archive nor the delete is written.
    result = plan([stream_record("100", "REMOVE", keys(), view="KEYS_ONLY", ttl=True)],
                  Settings(ttl_deletes="archive"))
    assert operations(result, "archive") == [] and operations(result) == []
    (bad,) = result.bad_records
    assert isinstance(bad.error, UnsupportedRecordError)
    assert bad.error.field_path == "dynamodb.OldImage"
    assert "NEW_AND_OLD_IMAGES" in str(bad.error) and "left in place" in str(bad.error)


# -- transforms ----------------------------------------------------------------------------------
def test_transforms_are_applied_before_id_and_sequence(stream_record: Any) -> None:
    # given the example transform (default age, created_at epoch -> datetime)
    example = load_callable("replicator.transforms.example")
    image = item(created_at={"N": "1590000001"})

    result = plan([stream_record("100", "INSERT", keys(), new=image)], transforms=[example])

    assert operations(result) == [
        ReplaceOne(guarded("u1", "100"), {
            "_id": "u1", "id": "u1", "v": 1,
            "created_at": datetime(2020, 5, 20, 18, 40, 1, tzinfo=timezone.utc),
            "age": 0, "_ddb_seq": pad("100"),
        }, upsert=True)
    ]


def test_transform_loaded_by_dotted_path_with_colon() -> None:
    assert load_callable("replicator.transforms:example") is load_callable(
        "replicator.transforms.example")
    with pytest.raises(ConfigurationError, match="cannot load"):
        load_callable("replicator.transforms.nothing_here")


def _raising(document: dict[str, Any]) -> dict[str, Any]:
    if document["id"] == "boom":
        raise KeyError("missing")
    return document


def test_transform_that_raises_makes_a_bad_record(stream_record: Any) -> None:
    result = plan([
        stream_record("100", "INSERT", keys("boom"), new=item("boom")),
        stream_record("101", "INSERT", keys("fine"), new=item("fine")),
    ], transforms=[_raising])
    assert [w.document["_id"] for w in result.writes] == ["fine"]
    (bad,) = result.bad_records
    assert isinstance(bad.error, TransformError)
    assert bad.index == 0 and bad.sequence_number == "100"
    assert "_raising raised KeyError('missing')" in str(bad.error)


def test_transform_that_returns_no_document_makes_a_bad_record(stream_record: Any) -> None:
    result = plan([stream_record("100", "INSERT", keys(), new=item())],
                  transforms=[lambda document: None])
    assert result.writes == []
    assert "returned NoneType" in str(result.bad_records[0].error)


# -- bad records ---------------------------------------------------------------------------------
def test_unconvertible_newest_change_falls_back_to_the_older_one(stream_record: Any) -> None:
    # given u1 changed twice, the newer image unconvertible
    result = plan([
        stream_record("100", "INSERT", keys(), new=item(v=1)),
        stream_record("101", "MODIFY", keys(), new=item(v="not-a-number"), old=item(v=1)),
    ])

    # then the older state is written, and the newer record is set aside with its path
    assert result.writes == [
        from_operation(ReplaceOne(guarded("u1", "100"),
                                {"_id": "u1", "id": "u1", "v": 1, "_ddb_seq": pad("100")},
                                upsert=True), ("100",))
    ]
    (bad,) = result.bad_records
    assert isinstance(bad.error, ConversionError)
    assert (bad.index, bad.sequence_number) == (1, "101")
    assert bad.error.field_path == "dynamodb.NewImage.v"
    assert str(bad.error).startswith("record index 1, eventID e101, SequenceNumber 101 at ")


def test_fail_mode_cuts_at_the_first_bad_record(stream_record: Any) -> None:
    # given a malformed record in the middle and a later change of a key seen before it
    malformed = stream_record("102", "INSERT", keys("a"), new=item("a", 9))
    del malformed["dynamodb"]["Keys"]
    records = [
        stream_record("100", "INSERT", keys("a"), new=item("a", 1)),
        stream_record("101", "INSERT", keys("b"), new=item("b", 1)),
        malformed,
        stream_record("103", "MODIFY", keys("a"), new=item("a", 3), old=item("a", 1)),
        stream_record("104", "INSERT", keys("c"), new=item("c", 1)),
    ]

    result = plan(records, Settings(bad_records="fail"))

    # then only what came before it is written; the rest is deferred, not applied
    assert result.writes == [
        from_operation(ReplaceOne(guarded("a", "100"),
                                {"_id": "a", "id": "a", "v": 1, "_ddb_seq": pad("100")},
                                upsert=True), ("100",)),
        from_operation(ReplaceOne(guarded("b", "101"),
                                {"_id": "b", "id": "b", "v": 1, "_ddb_seq": pad("101")},
                                upsert=True), ("101",)),
    ]
    assert [c.sequence_number for c in result.deferred] == ["103", "104"]
    assert [b.index for b in result.bad_records] == [2]

    # while quarantine mode writes a's newest state and c
    quarantine = plan(records)
    assert [w.document["v"] for w in quarantine.writes] == [3, 1, 1]
    assert quarantine.deferred == []


def test_fail_mode_cut_moves_earlier_for_a_conversion_error(stream_record: Any) -> None:
    # given b's newest change unconvertible (found only while planning)
    records = [
        stream_record("100", "INSERT", keys("a"), new=item("a", 1)),
        stream_record("101", "INSERT", keys("b"), new=item("b", 1)),
        stream_record("102", "MODIFY", keys("b"), new=item("b", "x"), old=item("b", 1)),
        stream_record("103", "INSERT", keys("c"), new=item("c", 1)),
    ]

    result = plan(records, Settings(bad_records="fail"))

    assert [(w.document["_id"], w.sequence_numbers) for w in result.writes] == [
        ("a", ("100",)), ("b", ("101",))]
    assert [b.sequence_number for b in result.bad_records] == ["102"]
    assert [c.sequence_number for c in result.deferred] == ["103"]


# -- issue #10: what a transform builds must be storable too ---------------------------------------
def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"x": value}
    return value


@pytest.mark.parametrize(("added", "path"), [
    ({"a\x00b": 1}, "transformed['a\\x00b']"),
    ({"s": "\ud800"}, "transformed.s"),
    ({"n": 2**63}, "transformed.n"),
    ({"l": [1, -(2**63) - 1]}, "transformed.l[1]"),
    ({"d": _deep(100)}, "transformed.d" + ".x" * 99),  # the 101st level
])
def test_a_transform_output_mongodb_cannot_store_is_quarantined(
    stream_record: Any, added: dict[str, Any], path: str
) -> None:
    image = {"id": {"S": "a"}}
    planner = Planner(Settings(), transforms=[lambda document: {**document, **added}])
    result = planner.plan(*parse_records([stream_record("1", "INSERT", {"id": {"S": "a"}},
                                                        new=image)]))
    assert result.writes == []
    (bad,) = result.bad_records
    assert isinstance(bad.error, TransformError) and bad.error.field_path == path


def test_a_transform_output_at_the_limits_is_written(stream_record: Any) -> None:
    added = {"d": _deep(99), "n": 2**63 - 1, "s": "é\U0001f600"}  # 100 levels, int64's max
    planner = Planner(Settings(), transforms=[lambda document: {**document, **added}])
    result = planner.plan(*parse_records([stream_record("1", "INSERT", {"id": {"S": "a"}},
                                                        new={"id": {"S": "a"}})]))
    assert result.bad_records == [] and len(result.writes) == 1


@pytest.mark.parametrize(("made", "path"), [
    (2**64, "_id"), ([1, 2], "_id"), ({"a\x00": 1}, "_id['a\\x00']"), ("\udc00", "_id"),
])
def test_an_id_mapping_result_mongodb_cannot_store_is_quarantined(
    stream_record: Any, made: Any, path: str
) -> None:
    converter = Converter()
    planner = Planner(Settings(), key_mapper=KeyMapper(converter, None, lambda keys: made))
    result = planner.plan(*parse_records([stream_record("1", "INSERT", {"id": {"S": "a"}},
                                                        new={"id": {"S": "a"}})]))
    assert result.writes == []
    (bad,) = result.bad_records
    assert isinstance(bad.error, ConversionError) and bad.error.field_path == path
