"""write_mode="merge" (issue 23, part 2): the table's attributes are set, those DynamoDB removed
are removed, fields other MongoDB applications added are kept -- without an old image, under the
guard, tombstones and quarantine, for every key kind and ``$`` / ``.`` names.

The planned writes are checked as values; the writes themselves on mongoeco through the real
pymongo client (``mongoeco_db``), and the same change sequences on the mongomock adapter, which
evaluates the merge pipeline itself (harness/backends/mongomock_target.py): both must agree.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from bson import Binary

from harness.backends.mongomock_target import mongomock_client
from replicator import accelerator
from replicator.core import Replicator
from replicator.diff import document_differences, id_key
from replicator.errors import ConfigurationError, ConversionError, TransformError
from replicator.events import parse_records
from replicator.expected import ExpectedDocuments, planner_for
from replicator.plan import Planner
from replicator.settings import FIELDS_FIELD, SEQUENCE_FIELD, Settings
from replicator.writes import merge_pipeline, mongodb_only
from support.fixtures import lambda_stream_record as record

MERGE = Settings(write_mode="merge")
APP = {"app_score": 7, "app_tags": ["vip"], "app_nested": {"seen": True}}


def pad(seq: str) -> str:
    return seq.zfill(40)


def keys(id_: str) -> dict[str, Any]:
    return {"id": {"S": id_}}


def item(id_: str, **attributes: Any) -> dict[str, Any]:
    return {**keys(id_), **attributes}


def plan(records: list[dict[str, Any]], settings: Settings = MERGE) -> Any:
    changes, bad = parse_records(records)
    return Planner(settings).plan(changes, bad)


# -- settings ------------------------------------------------------------------------------------
def test_replace_is_the_default_and_other_modes_are_refused() -> None:
    assert Settings().write_mode == "replace"
    with pytest.raises(ConfigurationError, match="write_mode must be one of replace, merge"):
        Settings(write_mode="upsert")  # type: ignore[arg-type]
    assert Settings.from_env({"REPLICATOR_WRITE_MODE": "merge"}).write_mode == "merge"


def test_the_c_planner_declines_merge_mode() -> None:
    assert accelerator.declined_by(MERGE) == ["write_mode"]
    assert accelerator.declined_by(Settings()) == []
    assert planner_for(MERGE).plan_records([record("1", new=item("u1"))]) is None


# -- the planned writes --------------------------------------------------------------------------
def test_a_change_is_one_guarded_upserting_pipeline_that_lists_the_table_fields() -> None:
    (write,) = plan([record("100", "MODIFY", keys("u1"),
                            new=item("u1", a={"N": "1"}, b={"S": "x"}))]).writes
    document = {"_id": "u1", "id": "u1", "a": 1, "b": "x", FIELDS_FIELD: ["a", "b", "id"],
                SEQUENCE_FIELD: pad("100")}
    assert (write.kind, write.upsert) == ("update", True)
    assert write.document == merge_pipeline(document, FIELDS_FIELD)
    assert write.filter == {"_id": "u1", SEQUENCE_FIELD: {"$not": {"$gte": pad("100")}}}


def test_a_remove_deletes_the_document_as_in_replace_mode() -> None:
    records = [record("100", "REMOVE", keys("u1"), old=item("u1"))]
    assert plan(records).writes == plan(records, Settings()).writes


def test_removed_and_created_again_in_one_batch_starts_from_nothing_if_older() -> None:
    # the delete is coalesced away: the write keeps nothing of a document older than the REMOVE
    (write,) = plan([
        record("100", "REMOVE", keys("u1"), old=item("u1")),
        record("101", "INSERT", keys("u1"), new=item("u1", a={"N": "2"})),
    ]).writes
    document = {"_id": "u1", "id": "u1", "a": 2, FIELDS_FIELD: ["a", "id"],
                SEQUENCE_FIELD: pad("101")}
    assert write.kind == "update"
    # (and nothing of one a change older than the INSERT wrote: "An INSERT starts a new item")
    assert write.document == merge_pipeline(document, FIELDS_FIELD,
                                            removed=(SEQUENCE_FIELD, pad("100")),
                                            inserted=(SEQUENCE_FIELD, pad("0"), pad("101")))
    # without the guard there is no stored sequence to compare with: last delivery wins, whole
    (unguarded,) = plan([
        record("100", "REMOVE", keys("u1"), old=item("u1")),
        record("101", "INSERT", keys("u1"), new=item("u1", a={"N": "2"})),
    ], Settings(write_mode="merge", guard=False)).writes
    assert unguarded.kind == "replace"


def test_an_attribute_named_like_the_fields_list_is_quarantined() -> None:
    result = plan([record("100", "INSERT", keys("u1"),
                          new=item("u1", **{FIELDS_FIELD: {"L": []}})),
                   record("101", "INSERT", keys("u2"), new=item("u2"))])
    (bad,) = result.bad_records
    assert isinstance(bad.error, ConversionError)
    assert bad.error.field_path == f"dynamodb.NewImage.{FIELDS_FIELD}"
    assert [w.document_id for w in result.writes] == ["u2"]
    # replace mode has no such field: the attribute is an ordinary one there
    assert plan([record("100", "INSERT", keys("u1"), new=item("u1", **{FIELDS_FIELD: {"L": []}}))],
                Settings()).bad_records == []


def adds_fields_list(document: dict[str, Any]) -> dict[str, Any]:
    return {**document, FIELDS_FIELD: ["mine"]}


def test_a_transform_that_adds_the_fields_list_is_quarantined() -> None:
    changes, _ = parse_records([record("100", "INSERT", keys("u1"), new=item("u1"))])
    result = Planner(MERGE, transforms=[adds_fields_list]).plan(changes)
    (bad,) = result.bad_records
    assert isinstance(bad.error, TransformError)
    assert bad.error.field_path == f"transformed.{FIELDS_FIELD}"


def test_the_stored_fields_the_table_never_wrote() -> None:
    stored = {"_id": 1, "a": 1, "app": 2, FIELDS_FIELD: ["a"], SEQUENCE_FIELD: "9"}
    assert mongodb_only(stored, FIELDS_FIELD, (SEQUENCE_FIELD,)) == {"app": 2}


# -- the expected document and the comparison ----------------------------------------------------
def test_expected_documents_list_the_fields_and_ignore_mongodb_only_ones() -> None:
    expected = ExpectedDocuments(Settings(key_schema=("id",), write_mode="merge"))
    wanted = expected.document(item("u1", a={"N": "1"}))
    assert wanted == {"_id": "u1", "id": "u1", "a": 1, FIELDS_FIELD: ["a", "id"]}
    stored = {**wanted, **APP}
    assert document_differences(wanted, stored, fields_field=expected.fields_field) == []
    # a table field that is wrong or missing is still a difference
    wrong = {**stored, "a": 2}
    assert [d.path for d in document_differences(
        wanted, wrong, fields_field=expected.fields_field)] == ["a"]
    missing = {k: v for k, v in stored.items() if k != "a"}
    assert [d.path for d in document_differences(
        wanted, missing, fields_field=expected.fields_field)] == ["a"]
    # replace mode compares whole documents
    assert ExpectedDocuments(Settings(key_schema=("id",))).fields_field is None
    assert document_differences(wanted, stored) != []


# -- the writes, on mongoeco and on the mongomock adapter ----------------------------------------
@pytest.fixture(params=["mongoeco", "mongomock"])
def collection(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "mongoeco":
        yield request.getfixturevalue("mongoeco_db")["items"]
    else:
        yield mongomock_client()["db"]["items"]


def app_writes(collection: Any, document_id: Any, fields: dict[str, Any] = APP) -> None:
    """Another MongoDB application adds fields of its own."""
    assert collection.update_one({"_id": document_id}, {"$set": fields}).matched_count == 1


def without_sequence(document: dict[str, Any] | None) -> dict[str, Any] | None:
    if document is None:
        return None
    return {k: v for k, v in document.items() if k != SEQUENCE_FIELD}


@pytest.mark.parametrize("view", ["NEW_AND_OLD_IMAGES", "NEW_IMAGE"])
def test_mongodb_only_fields_survive_every_change_but_a_remove(collection: Any, view: str) -> None:
    replicator = Replicator(collection, MERGE)

    def send(seq: str, name: str, new: dict[str, Any] | None = None,
             old: dict[str, Any] | None = None) -> None:
        result = replicator.process([record(seq, name, keys("u1"), new=new,
                                            old=old if view == "NEW_AND_OLD_IMAGES" else None,
                                            view=view)])
        assert result.failures == [] and result.quarantined == [] and result.applied == 1

    first = item("u1", a={"N": "1"}, b={"S": "x"}, gone={"BOOL": True})
    send("100", "INSERT", new=first)
    app_writes(collection, "u1")
    # an attribute added, one removed, one changed
    second = item("u1", a={"N": "2"}, b={"S": "x"}, c={"M": {"d": {"N": "3"}}})
    send("101", "MODIFY", new=second, old=first)
    assert without_sequence(collection.find_one({"_id": "u1"})) == {
        "_id": "u1", "id": "u1", "a": 2, "b": "x", "c": {"d": 3},
        FIELDS_FIELD: ["a", "b", "c", "id"], **APP}
    # the application changes one of its fields; the next change keeps that too
    app_writes(collection, "u1", {"app_score": 8})
    third = item("u1", b={"S": "y"})
    send("102", "MODIFY", new=third, old=second)
    assert without_sequence(collection.find_one({"_id": "u1"})) == {
        "_id": "u1", "id": "u1", "b": "y", FIELDS_FIELD: ["b", "id"], **APP, "app_score": 8}
    # a REMOVE deletes the document, the application's fields with it; a new item starts bare
    send("103", "REMOVE", old=third)
    assert collection.find_one({"_id": "u1"}) is None
    send("104", "INSERT", new=item("u1", z={"N": "1"}))
    assert without_sequence(collection.find_one({"_id": "u1"})) == {
        "_id": "u1", "id": "u1", "z": 1, FIELDS_FIELD: ["id", "z"]}


def test_a_keys_only_stream_merges_the_item_read_back(collection: Any) -> None:
    class Reader:
        def __init__(self) -> None:
            self.items = {"u1": item("u1", a={"N": "1"}, b={"N": "2"})}

        def read(self, asked: Any) -> list[Any]:
            return [self.items.get(k["id"]["S"]) for k in asked]

    reader = Reader()
    replicator = Replicator(collection, MERGE, item_reader=reader)
    replicator.process([record("100", "INSERT", keys("u1"), view="KEYS_ONLY")])
    app_writes(collection, "u1")
    reader.items["u1"] = item("u1", b={"N": "3"})
    result = replicator.process([record("101", "MODIFY", keys("u1"), view="KEYS_ONLY")])
    assert result.applied == 1
    assert without_sequence(collection.find_one({"_id": "u1"})) == {
        "_id": "u1", "id": "u1", "b": 3, FIELDS_FIELD: ["b", "id"], **APP}


KEY_KINDS = {
    "string": ({"id": {"S": "k"}}, Settings(write_mode="merge"), "k"),
    "number": ({"id": {"N": "12.50"}}, Settings(write_mode="merge"), None),
    "binary": ({"id": {"B": base64.b64encode(b"\x00\xffk").decode()}},
               Settings(write_mode="merge"), Binary(b"\x00\xffk")),
    "composite": ({"pk": {"S": "p"}, "sk": {"N": "2"}},
                  Settings(write_mode="merge", key_schema=("pk", "sk")), {"pk": "p", "sk": 2}),
    "id_mapping": ({"pk": {"S": "p"}, "sk": {"N": "2"}},
                   Settings(write_mode="merge", key_schema=("pk", "sk"),
                            id_mapping=f"{__name__}:joined_id"), "p#2"),
}


def joined_id(key: dict[str, Any]) -> str:
    return f"{key['pk']}#{key['sk']}"


@pytest.mark.parametrize("kind", list(KEY_KINDS))
def test_every_key_kind(collection: Any, kind: str) -> None:
    key, settings, made = KEY_KINDS[kind]
    if kind == "number" and "mongomock" in repr(collection):
        pytest.skip("mongomock cannot store a Decimal128 _id (its adapter quarantines the record)")
    replicator = Replicator(collection, settings)
    replicator.process([record("100", "INSERT", key, new={**key, "a": {"N": "1"},
                                                             "b": {"S": "x"}})])
    (stored,) = list(collection.find())
    document_id = stored["_id"]
    assert made is None or id_key(document_id) == id_key(made)
    app_writes(collection, document_id)
    result = replicator.process([record("101", "MODIFY", key, new={**key, "b": {"S": "y"}})])
    assert result.applied == 1 and result.failures == []
    (stored,) = list(collection.find())
    assert stored["b"] == "y" and "a" not in stored
    assert {k: stored[k] for k in APP} == APP
    # and the expected document (verify, recover, the harness) agrees with what is stored
    expected = ExpectedDocuments(Settings(**{**settings.__dict__,
                                             "key_schema": settings.key_schema or ("id",)}))
    wanted = expected.document({**key, "b": {"S": "y"}})
    stored.pop(SEQUENCE_FIELD)
    assert document_differences(wanted, stored, fields_field=expected.fields_field) == []
    found = expected.key_of(stored)  # the way back, for verify's and recover's extra documents
    assert found is not None and id_key(expected.key_mapper.document_id(found)) == id_key(
        document_id)


def test_dollar_and_dotted_names_are_set_and_removed(collection: Any) -> None:
    replicator = Replicator(collection, MERGE)
    names = {"$price": {"N": "1"}, "a.b": {"S": "dotted"}, "nested": {"M": {"$x": {"N": "2"}}},
             "plain": {"S": "p"}}
    replicator.process([record("100", "INSERT", keys("u1"), new=item("u1", **names))])
    app_writes(collection, "u1")
    stored = without_sequence(collection.find_one({"_id": "u1"}))
    assert stored == {"_id": "u1", "id": "u1", "$price": 1, "a.b": "dotted",
                      "nested": {"$x": 2}, "plain": "p",
                      FIELDS_FIELD: ["$price", "a.b", "id", "nested", "plain"], **APP}
    # the $- and dotted names go when DynamoDB removes them
    replicator.process([record("101", "MODIFY", keys("u1"), new=item("u1", plain={"S": "q"}))])
    assert without_sequence(collection.find_one({"_id": "u1"})) == {
        "_id": "u1", "id": "u1", "plain": "q", FIELDS_FIELD: ["id", "plain"], **APP}


def test_reordered_and_duplicated_delivery_never_goes_back(collection: Any) -> None:
    replicator = Replicator(collection, MERGE)
    newer = record("200", "MODIFY", keys("u1"), new=item("u1", v={"N": "2"}))
    older = record("100", "INSERT", keys("u1"), new=item("u1", v={"N": "1"}, old={"S": "o"}))
    replicator.process([newer])
    app_writes(collection, "u1")
    late = replicator.process([older])
    again = replicator.process([newer])
    assert (late.applied, late.stale) == (0, 1)
    assert (again.applied, again.stale, again.already) == (0, 1, 1)
    assert without_sequence(collection.find_one({"_id": "u1"})) == {
        "_id": "u1", "id": "u1", "v": 2, FIELDS_FIELD: ["id", "v"], **APP}


def test_a_late_change_after_a_remove_does_not_bring_the_document_back(collection: Any) -> None:
    tombstones = collection.database["items_tombstones"]
    replicator = Replicator(collection, MERGE, tombstones=tombstones)
    replicator.process([record("100", "INSERT", keys("u1"), new=item("u1"))])
    replicator.process([record("300", "REMOVE", keys("u1"), old=item("u1"))])
    late = replicator.process([record("200", "MODIFY", keys("u1"), new=item("u1", v={"N": "2"}))])
    assert late.applied == 0 and late.failures == []
    assert collection.find_one({"_id": "u1"}) is None


def test_a_bad_record_is_quarantined_and_the_rest_merged(collection: Any) -> None:
    replicator = Replicator(collection, MERGE)
    replicator.process([record("100", "INSERT", keys("u2"), new=item("u2", a={"N": "1"}))])
    app_writes(collection, "u2")
    result = replicator.process([
        record("101", "INSERT", keys("u1"), new=item("u1", **{FIELDS_FIELD: {"S": "mine"}})),
        record("102", "MODIFY", keys("u2"), new=item("u2", b={"N": "2"})),
    ])
    assert len(result.quarantined) == 1 and result.applied == 1
    assert without_sequence(collection.find_one({"_id": "u2"})) == {
        "_id": "u2", "id": "u2", "b": 2, FIELDS_FIELD: ["b", "id"], **APP}
    quarantined = collection.database["items_quarantine"].find_one()
    assert quarantined is not None and FIELDS_FIELD in str(quarantined)


def test_ttl_archive_keeps_the_old_image_and_deletes_the_document(collection: Any) -> None:
    archive = collection.database["items_ttl_archive"]
    replicator = Replicator(collection, Settings(write_mode="merge", ttl_deletes="archive"),
                            archive=archive)
    old = item("u1", a={"N": "1"})
    replicator.process([record("100", "INSERT", keys("u1"), new=old)])
    app_writes(collection, "u1")
    result = replicator.process([record("101", "REMOVE", keys("u1"), old=old, ttl=True)])
    assert result.failures == []
    assert collection.find_one({"_id": "u1"}) is None
    archived = archive.find_one({"_id": "u1"})
    assert archived is not None and archived["a"] == 1


def renamed(document: dict[str, Any]) -> dict[str, Any]:
    return {("renamed_" + k if k == "a" else k): v for k, v in document.items()}


def test_transforms_list_the_transformed_names(collection: Any) -> None:
    settings = Settings(write_mode="merge",
                        transforms=(f"{__name__}:renamed",))
    replicator = Replicator(collection, settings)
    replicator.process([record("100", "INSERT", keys("u1"), new=item("u1", a={"N": "1"}))])
    app_writes(collection, "u1")
    replicator.process([record("101", "MODIFY", keys("u1"), new=item("u1", b={"N": "2"}))])
    assert without_sequence(collection.find_one({"_id": "u1"})) == {
        "_id": "u1", "id": "u1", "b": 2, FIELDS_FIELD: ["b", "id"], **APP}


def test_switching_from_replace_mode_removes_nothing_on_the_first_merge(collection: Any) -> None:
    # a document written in replace mode lists no fields: its first merge keeps every field
    Replicator(collection).process([record("100", "INSERT", keys("u1"),
                                           new=item("u1", a={"N": "1"}))])
    app_writes(collection, "u1")
    Replicator(collection, MERGE).process([record("101", "MODIFY", keys("u1"),
                                                  new=item("u1", b={"N": "2"}))])
    assert without_sequence(collection.find_one({"_id": "u1"})) == {
        "_id": "u1", "id": "u1", "a": 1, "b": 2, FIELDS_FIELD: ["b", "id"], **APP}
    # from then on the listed fields are the table's
    Replicator(collection, MERGE).process([record("102", "MODIFY", keys("u1"),
                                                  new=item("u1"))])
    assert without_sequence(collection.find_one({"_id": "u1"})) == {
        "_id": "u1", "id": "u1", "a": 1, FIELDS_FIELD: ["id"], **APP}


def test_a_document_another_application_created_first_is_merged_into(collection: Any) -> None:
    collection.insert_one({"_id": "u1", **APP})
    result = Replicator(collection, MERGE).process(
        [record("100", "INSERT", keys("u1"), new=item("u1", a={"N": "1"}))])
    assert result.applied == 1
    assert without_sequence(collection.find_one({"_id": "u1"})) == {
        "_id": "u1", **APP, "id": "u1", "a": 1, FIELDS_FIELD: ["a", "id"]}


def test_remove_and_insert_in_one_batch_drop_the_fields_as_two_batches_would(
    collection: Any
) -> None:
    replicator = Replicator(collection, MERGE)
    replicator.process([record("100", "INSERT", keys("u1"), new=item("u1", a={"N": "1"}))])
    app_writes(collection, "u1")
    result = replicator.process([
        record("101", "REMOVE", keys("u1"), old=item("u1", a={"N": "1"})),
        record("102", "INSERT", keys("u1"), new=item("u1", b={"N": "2"})),
    ])
    assert result.applied == 1
    assert without_sequence(collection.find_one({"_id": "u1"})) == {
        "_id": "u1", "id": "u1", "b": 2, FIELDS_FIELD: ["b", "id"]}


def test_an_old_remove_redelivered_with_a_newer_change_keeps_the_fields(collection: Any) -> None:
    # given an item removed, created again, and enriched by another application
    replicator = Replicator(collection, MERGE)
    remove = record("101", "REMOVE", keys("u1"), old=item("u1"))
    replicator.process([record("100", "INSERT", keys("u1"), new=item("u1")), remove])
    replicator.process([record("102", "INSERT", keys("u1"), new=item("u1", a={"N": "1"}))])
    app_writes(collection, "u1")
    # when the old REMOVE comes again in a batch with a newer change
    result = replicator.process([remove, record("103", "MODIFY", keys("u1"),
                                                new=item("u1", a={"N": "2"}))])
    # then the REMOVE is stale (the stored document is newer): the change merges
    assert result.applied == 1
    assert without_sequence(collection.find_one({"_id": "u1"})) == {
        "_id": "u1", "id": "u1", "a": 2, FIELDS_FIELD: ["a", "id"], **APP}
