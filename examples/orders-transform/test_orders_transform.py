"""Tests of the transform through real replication, using only the plugin's fixtures.

``dynamodb_table`` makes a table with a stream (moto by default), ``replication`` drives the
replicator with our settings over that stream into the MongoDB target chosen by
``--replication-target``, and ``assert_converged`` compares the table with the collection through
the same transform (the diff names the field paths that differ).
"""

from __future__ import annotations

SETTINGS = {"transforms": ["orders_transform:shape_order"]}


def put_order(replication, order_id, email, lines, note="call before delivery"):
    replication.dynamodb.put_item(
        TableName=replication.table_name,
        Item={
            "order_id": {"S": order_id},
            "email": {"S": email},
            "lines": {"L": [{"M": {"sku": {"S": sku}, "qty": {"N": str(qty)}}} for sku, qty in lines]},
            "internal_note": {"S": note},
        },
    )


def test_orders_are_shaped_by_the_transform(dynamodb_table, replication):
    orders = replication(dynamodb_table("orders", partition_key=("order_id", "S")), settings=SETTINGS)
    put_order(orders, "o-1", "Ada@Example.COM", [("tea", 2), ("cup", 1)])
    put_order(orders, "o-2", "grace@example.com", [("pen", 10)])

    orders.assert_converged()

    first = orders.document("o-1")
    assert first["email"] == "ada@example.com"
    assert first["line_count"] == 2
    assert "internal_note" not in first
    assert [line["sku"] for line in first["lines"]] == ["tea", "cup"]


def test_updates_and_deletes_follow_the_table(dynamodb_table, replication):
    orders = replication(dynamodb_table("orders", partition_key=("order_id", "S")), settings=SETTINGS)
    put_order(orders, "o-1", "ada@example.com", [("tea", 2)])
    put_order(orders, "o-2", "grace@example.com", [("pen", 10)])
    orders.sync()
    orders.dynamodb.update_item(
        TableName=orders.table_name,
        Key={"order_id": {"S": "o-1"}},
        UpdateExpression="SET #lines = list_append(#lines, :more)",  # LINES is a reserved word
        ExpressionAttributeNames={"#lines": "lines"},
        ExpressionAttributeValues={":more": {"L": [{"M": {"sku": {"S": "pot"}, "qty": {"N": "1"}}}]}},
    )
    orders.dynamodb.delete_item(TableName=orders.table_name, Key={"order_id": {"S": "o-2"}})

    orders.assert_converged()

    assert orders.document("o-1")["line_count"] == 2
    assert orders.document("o-2") is None
    assert orders.report.discarded_records == 0


def test_the_diff_names_what_a_handler_got_wrong(dynamodb_table, replication):
    # The original design's handler ($set upserts) keeps the internal note and skips the transform:
    # the diff says so field by field.
    orders = replication(
        dynamodb_table("orders", partition_key=("order_id", "S")),
        settings=SETTINGS, handler="baseline",
    )
    put_order(orders, "o-1", "Ada@Example.COM", [("tea", 2)])

    diff = orders.wait_until_converged()

    assert not diff.converged
    paths = {field.path for document in diff.changed for field in document.fields}
    assert {"email", "line_count", "internal_note"} <= paths
