"""Hypothesis strategies for DynamoDB values, items and table operations (shared by tests/replicator/model and
tests/replicator/fuzz: ``from support.strategies import ...``).

Every value drawn here is one DynamoDB accepts (numbers within range and precision, non-empty sets
without duplicates, nesting kept shallow); the malformed side lives in tests/replicator/fuzz.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from harness.workload import EDGE_NUMBERS

# Attribute names: a small pool so updates and removes hit the same names often, with the names
# that need care in MongoDB ($-prefixed at the top level, dotted, non-ASCII, empty-looking).
ATTRIBUTE_NAMES = ("a", "b", "c", "n", "with space", "$dollar", "dot.ted", "ünï", "_x", "Ω")
# Reserved on the MongoDB side (the _id and the guard's sequence field) and the table key.
RESERVED = ("_id", "_ddb_seq", "pk", "sk")

_name_alphabet = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
nested_names = st.text(_name_alphabet, min_size=1, max_size=4)


def _exponent_number(mantissa: int, exponent: int) -> str:
    return f"{mantissa}E{exponent:+d}"


#: Number text DynamoDB accepts: integers (int64 edges and beyond), decimals with trailing zeros,
#: exponent forms across the whole range, 38 significant digits, and the workload's edge cases.
numbers = st.one_of(
    st.integers(-(2**63) - 2, 2**63 + 2).map(str),
    st.integers(-(10**38) + 1, 10**38 - 1).map(str),
    st.builds(
        lambda whole, fraction, zeros: f"{whole}.{fraction}{'0' * zeros}",
        st.integers(-(10**6), 10**6),
        st.integers(0, 10**6),
        st.integers(0, 3),
    ),
    st.builds(_exponent_number, st.integers(-(10**8), 10**8).filter(bool), st.integers(-120, 110)),
    st.sampled_from(EDGE_NUMBERS),
)

strings = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
binaries = st.binary(max_size=6)


def _distinct_numbers(texts: list[str]) -> list[str]:
    seen: set[Decimal] = set()
    out = []
    for text in texts:
        if Decimal(text) not in seen:
            seen.add(Decimal(text))
            out.append(text)
    return out


scalars = st.one_of(
    strings.map(lambda s: {"S": s}),
    numbers.map(lambda n: {"N": n}),
    binaries.map(lambda b: {"B": b}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.sets(strings, min_size=1, max_size=3).map(lambda s: {"SS": sorted(s)}),
    st.lists(numbers, min_size=1, max_size=3).map(_distinct_numbers).map(lambda n: {"NS": n}),
    st.sets(binaries, min_size=1, max_size=3).map(lambda s: {"BS": sorted(s)}),
)

#: Any DynamoDB attribute value, with shallow L and M nesting.
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda items: {"L": items}),
        st.dictionaries(nested_names, children, max_size=3).map(lambda m: {"M": m}),
    ),
    max_leaves=6,
)

attribute_names = st.sampled_from(ATTRIBUTE_NAMES)
#: The non-key attributes of an item.
attributes = st.dictionaries(attribute_names, values, max_size=4)

#: Partition key values (S) and sort key values (N) of a small key space.
PARTITIONS = ("k0", "k1", "k2")
SORTS = ("1", "2")


def key_strategy(key_schema: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    partition = st.sampled_from(PARTITIONS).map(lambda v: {"S": v})
    if len(key_schema) == 1:
        return partition.map(lambda p: {key_schema[0]: p})
    sort = st.sampled_from(SORTS).map(lambda v: {"N": v})
    return st.tuples(partition, sort).map(lambda ps: {key_schema[0]: ps[0], key_schema[1]: ps[1]})


def operations(key_schema: tuple[str, ...] = ("pk",)) -> st.SearchStrategy[tuple[Any, ...]]:
    """One table write: ("put", key, attributes) | ("update", key, set, remove) | ("delete", key)."""
    keys = key_strategy(key_schema)
    return st.one_of(
        st.tuples(st.just("put"), keys, attributes),
        st.tuples(
            st.just("update"),
            keys,
            attributes,
            st.lists(attribute_names, max_size=2, unique=True),
        ),
        st.tuples(st.just("delete"), keys),
    )


def apply_operation(table: Any, operation: tuple[Any, ...]) -> dict[str, Any] | None:
    """Run one drawn operation on a harness.model.ModelTable; the emitted record or None."""
    kind, key = operation[0], operation[1]
    if kind == "put":
        return table.put({**operation[2], **key})
    if kind == "update":
        set_attributes, remove = operation[2], [n for n in operation[3] if n not in operation[2]]
        return table.update(key, set_attributes, remove)
    return table.delete(key)
