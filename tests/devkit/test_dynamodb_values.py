"""harness.dynamodb_values: the item size formula against AWS's "DynamoDB item sizes and formats"
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html),
one case per documented rule, and the value rules both the workload and the model table use."""

from __future__ import annotations

import base64

import pytest

from harness.dynamodb_values import attribute_size, check_item, check_number, item_size, number_size
from harness.model import ModelTable


@pytest.mark.parametrize(
    ("item", "size"),
    [
        # strings: name bytes + UTF-8 bytes of the value
        ({"name": {"S": "abc"}}, 4 + 3),
        ({"ü": {"S": "日本"}}, 2 + 6),
        # numbers: name + 1 byte per two significant digits + 1; leading/trailing zeros trimmed
        ({"n": {"N": "7"}}, 1 + 2),
        ({"n": {"N": "12"}}, 1 + 2),
        ({"n": {"N": "123"}}, 1 + 3),
        ({"n": {"N": "1200000"}}, 1 + 2),
        ({"n": {"N": "0.00012"}}, 1 + 2),
        ({"n": {"N": "12345678901234567890123456789012345678"}}, 1 + 20),
        # binary: the raw bytes, not the base64 text
        ({"b": {"B": b"\x00\x01\x02\x03"}}, 1 + 4),
        ({"b": {"B": base64.b64encode(b"\x00\x01\x02\x03").decode()}}, 1 + 4),
        # null and boolean: name + 1
        ({"z": {"NULL": True}}, 1 + 1),
        ({"ok": {"BOOL": False}}, 2 + 1),
        # list / map: name + 3, plus each element and 1 byte per element (a map's keys are names)
        ({"l": {"L": []}}, 1 + 3),
        ({"m": {"M": {}}}, 1 + 3),
        ({"l": {"L": [{"S": "ab"}, {"N": "1"}]}}, 1 + 3 + (2 + 1) + (2 + 1)),
        ({"m": {"M": {"k": {"S": "ab"}}}}, 1 + 3 + (1 + 2 + 1)),
        # sets: their members (AWS documents no overhead)
        ({"s": {"SS": ["a", "bc"]}}, 1 + 3),
        ({"s": {"NS": ["1", "123"]}}, 1 + 2 + 3),
        ({"s": {"BS": [b"\x01", b"\x02\x03"]}}, 1 + 3),
    ],
)
def test_item_size_follows_the_documented_rules(item: dict[str, dict[str, object]], size: int) -> None:
    assert item_size(item) == size


def test_a_two_digit_group_costs_one_byte() -> None:
    assert [number_size(n) for n in ("1", "12", "123", "1234", "-12345")] == [2, 2, 3, 3, 4]
    assert attribute_size({"N": "0"}) == 2


def test_the_model_table_reports_sizes_by_the_same_formula() -> None:
    table = ModelTable()
    record = table.put({"pk": {"S": "k1"}, "b": {"B": b"\x00" * 30}, "n": {"N": "19.99"}})
    assert record is not None
    keys, image = {"pk": {"S": "k1"}}, {"pk": {"S": "k1"}, "b": {"B": b"\x00" * 30}, "n": {"N": "19.99"}}
    assert record["dynamodb"]["SizeBytes"] == item_size(keys) + item_size(image) == 4 + 4 + 31 + 4


@pytest.mark.parametrize("bad", ["+1", " 1", "1 ", "NaN", "Infinity", "0x10", "1,5", "1" * 39, "1E+126"])
def test_numbers_dynamodb_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="n:"):
        check_number(bad, "n")
    with pytest.raises(ValueError):
        ModelTable().put({"pk": {"S": "k"}, "n": {"N": bad}})


def test_one_set_rule_for_both_binary_forms() -> None:
    raw = b"\x01\x02"
    with pytest.raises(ValueError, match="duplicate"):
        check_item({"s": {"BS": [raw, base64.b64encode(raw).decode()]}})
    with pytest.raises(ValueError, match="duplicate"):
        ModelTable().put({"pk": {"S": "k"}, "s": {"BS": [raw, base64.b64encode(raw).decode()]}})
