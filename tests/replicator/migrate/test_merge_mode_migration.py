"""write_mode="merge" through migration (issue 23): the copy, ``verify`` and ``recover``'s
re-copy honour the mode -- fields other MongoDB applications added are neither a divergence nor
erased, while a table attribute that is wrong or missing still is one, and is repaired."""

from __future__ import annotations

from typing import Any

import pytest

from harness.backends.base import TableSpec
from harness.migration import make_poller, prefill
from replicator.migrate.gap import recover
from replicator.migrate.sync import sync_scan
from replicator.migrate.verify import Verifier
from replicator.settings import FIELDS_FIELD, Settings

MERGE = Settings(key_schema=("pk",), write_mode="merge")
APP = {"app_owner": "crm", "app_visits": [1, 2]}


def verify(moto: Any, collection: Any, settings: Settings, poller: Any) -> Any:
    return Verifier(moto.dynamodb(), "merged", collection, settings, segments=1, page_size=10,
                    wait_for_replication=lambda: poller.run(once=True)).run()


@pytest.mark.slow
def test_sync_verify_and_recover_keep_the_fields_other_applications_added(
    moto: Any, target: Any
) -> None:
    # given a table copied in merge mode onto a collection where another application had
    # already created one document, and then added fields to others
    table = moto.create_table(TableSpec("merged", ("pk", "S")))
    prefill(moto.dynamodb(), "merged", 30)
    collection = target.collection("m", "merged")
    collection.insert_one({"_id": "item-000000", **APP})
    poller = make_poller(moto, table, collection, settings=MERGE)
    sync_scan(poller, segments=1, page_size=10)
    for n in (1, 2):
        collection.update_one({"_id": f"item-00000{n}"}, {"$set": APP})
    first = collection.find_one({"_id": "item-000000"})
    assert first is not None and first["app_owner"] == "crm" and first["n"] == 0

    # then verify in merge mode finds nothing wrong; in replace mode the application's fields
    # (and every document's list of table fields) differ
    assert verify(moto, collection, MERGE, poller).ok
    replace = verify(moto, collection, Settings(key_schema=("pk",)), poller)
    paths = {d.document_id: {f.path for f in d.fields} for d in replace.divergences}
    assert len(paths) == 30 and all(FIELDS_FIELD in p for p in paths.values())
    assert {i for i, p in paths.items() if "app_owner" in p} == {
        "item-000000", "item-000001", "item-000002"}

    # when a table attribute is wrong in one of them and missing in another, at a sequence
    # number past the stream's (so replaying the stream cannot repair them: the re-copy must)
    past = ("9" * 30).zfill(40)  # padded, as the guard stores sequence numbers
    collection.update_one({"_id": "item-000001"}, {"$set": {"v": 99, "_ddb_seq": past}})
    collection.update_one({"_id": "item-000002"}, {"$unset": {"n": ""},
                                                   "$set": {"_ddb_seq": past}})
    found = verify(moto, collection, MERGE, poller)
    assert {d.document_id for d in found.divergences} == {"item-000001", "item-000002"}

    # then recover's re-copy repairs the table's attributes and keeps the application's fields
    report = recover(poller, segments=1, page_size=10)
    assert report.copy is not None and report.copy.items_written == 2
    for n in (0, 1, 2):
        document = collection.find_one({"_id": f"item-00000{n}"})
        assert document is not None
        assert {k: document[k] for k in APP} == APP
        assert (document["v"], document["n"]) == (0, n)
        assert "n" in document[FIELDS_FIELD]
    assert verify(moto, collection, MERGE, poller).ok
