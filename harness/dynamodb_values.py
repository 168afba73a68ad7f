"""DynamoDB's attribute values in the dev kit: the rules DynamoDB enforces and an item's size.

One model for the workload planner (:mod:`harness.workload`) and the reference table
(:mod:`harness.model`). Values are DynamoDB JSON (``{"S": ..}``, ``{"N": "19.99"}``, ...); ``B``
and ``BS`` members may be raw bytes (what boto3 sends) or base64 text (what a Lambda event carries).

Sizes follow AWS's "DynamoDB item sizes and formats"
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html):
an item is the sum of its attribute names (UTF-8 bytes) and values; a string is its UTF-8 bytes, a
number about one byte per two significant digits plus one (leading and trailing zeros trimmed), a
binary its raw bytes (not the base64 text), null and boolean one byte, a list or map 3 bytes plus
one byte per element plus its elements (a map's keys count as attribute names). AWS does not
document a set's overhead: a set counts as the sum of its members.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar, cast

_T = TypeVar("_T")
AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]

TAGS = ("S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS")
KEY_TAGS = ("S", "N", "B")
SET_TAGS = ("SS", "NS", "BS")
ITEM_SIZE_LIMIT = 400 * 1024  # DynamoDB's maximum item size
MAX_NESTING = 32  # DynamoDB's nesting limit for lists and maps
MAX_DIGITS = 38  # significant digits of a number

# What DynamoDB parses as a number: no sign but "-", no spaces, no NaN/Infinity, no hex.
_NUMBER_SYNTAX = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def clone(value: _T) -> _T:
    """A deep copy of JSON-shaped data (dicts and lists; everything else is shared)."""
    return cast(_T, _clone(value))


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


# -- numbers ---------------------------------------------------------------------------------------
def significant_digits(text: str) -> str:
    """The digits that count: leading and trailing zeros trimmed (``"0"`` for zero)."""
    digits = "".join(map(str, Decimal(text).as_tuple().digits)).strip("0")
    return digits or "0"


def canonical_number(text: str) -> str:
    """Exact identity of a number's value, ``sign:digits:exponent`` (``Decimal.normalize`` would
    round to its context's 28 digits, and DynamoDB keeps 38)."""
    sign, digits, exponent = Decimal(text).as_tuple()
    assert isinstance(exponent, int)
    end = len(digits)
    while end > 1 and digits[end - 1] == 0:
        end -= 1
    if digits[:end] == (0,):
        return "0:0:0"
    return f"{sign}:{''.join(map(str, digits[:end]))}:{exponent + len(digits) - end}"


def check_number(text: Any, path: str = "") -> None:
    """ValueError unless DynamoDB accepts ``text`` as a number: its syntax, at most 38 significant
    digits, and 0 or 1E-130 <= |n| < 1E+126."""
    where = f"{path}: " if path else ""
    if not isinstance(text, str) or not _NUMBER_SYNTAX.fullmatch(text):
        raise ValueError(f"{where}not a DynamoDB number: {text!r}")
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the syntax above is Decimal's
        raise ValueError(f"{where}not a DynamoDB number: {text!r}") from None
    if value.is_zero():
        return
    digits = significant_digits(text)
    if len(digits) > MAX_DIGITS:
        raise ValueError(f"{where}number {text!r} has {len(digits)} significant digits (at most 38)")
    if not -130 <= value.adjusted() <= 125:
        raise ValueError(f"{where}number {text!r} is out of DynamoDB's range (1E-130 to 9.99..E+125)")


# -- binary ----------------------------------------------------------------------------------------
def raw_bytes(payload: Any) -> bytes:
    """The bytes of a B value given as bytes or base64 text (ValueError for anything else)."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise ValueError(f"not base64: {payload!r:.40}") from None


# -- sets ------------------------------------------------------------------------------------------
def element_key(tag: str, element: Any) -> Any:
    """What makes two set members the same: numbers by value, binaries by their bytes."""
    if tag == "NS":
        return Decimal(element)
    if tag == "BS":
        return raw_bytes(element)
    return element


def check_set(path: str, tag: str, members: list[Any]) -> None:
    """ValueError for an empty set or one with duplicate members (DynamoDB rejects both)."""
    if not members:
        raise ValueError(f"{path}: an empty {tag} (DynamoDB has no empty sets)")
    marks = [element_key(tag, m) for m in members]
    if len(set(marks)) != len(marks):
        raise ValueError(f"{path}: duplicate members in {tag}")


# -- sizes -----------------------------------------------------------------------------------------
def _text_size(text: str) -> int:
    # surrogatepass: a lone surrogate (valid in a Lambda event's JSON) still has a length
    return len(text.encode("utf-8", "surrogatepass"))


def number_size(text: str) -> int:
    """1 byte per two significant digits, plus 1."""
    return (len(significant_digits(text)) + 1) // 2 + 1


def attribute_size(value: Mapping[str, Any]) -> int:
    """Bytes an attribute value counts toward its item's size (see the module's docstring)."""
    ((tag, data),) = value.items()
    if tag == "S":
        return _text_size(data)
    if tag == "B":
        return len(raw_bytes(data))
    if tag == "N":
        return number_size(data)
    if tag in ("BOOL", "NULL"):
        return 1
    if tag == "SS":
        return sum(_text_size(s) for s in data)
    if tag == "BS":
        return sum(len(raw_bytes(b)) for b in data)
    if tag == "NS":
        return sum(number_size(n) for n in data)
    if tag == "M":
        return 3 + sum(_text_size(k) + attribute_size(v) + 1 for k, v in data.items())
    if tag == "L":
        return 3 + sum(attribute_size(v) + 1 for v in data)
    raise ValueError(f"unknown attribute type {tag!r}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """An item's size as DynamoDB counts it: names plus values (see :func:`attribute_size`)."""
    return sum(_text_size(name) + attribute_size(value) for name, value in item.items())


def nesting_depth(value: Mapping[str, Any]) -> int:
    """Containers (M, L) on the deepest path of a value: a scalar is 0, ``{"M": {"a": S}}`` 1."""
    ((tag, data),) = value.items()
    if tag == "M":
        return 1 + max((nesting_depth(v) for v in data.values()), default=0)
    if tag == "L":
        return 1 + max((nesting_depth(v) for v in data), default=0)
    return 0


# -- checks ----------------------------------------------------------------------------------------
def check_item(item: Mapping[str, AttributeValue], max_bytes: int = ITEM_SIZE_LIMIT) -> None:
    """ValueError unless DynamoDB accepts the item (size up to ``max_bytes``, nesting, values)."""
    size = item_size(item)
    if size > max_bytes:
        raise ValueError(f"item is {size} bytes, above {max_bytes}")
    for name, value in item.items():
        if not name:
            raise ValueError("empty attribute name")
        if nesting_depth(value) >= MAX_NESTING:
            raise ValueError(f"attribute {name!r} nests {nesting_depth(value)} levels")
        check_value(name, value)


def check_value(path: str, value: Any) -> None:
    """ValueError (naming ``path``) unless ``value`` is one typed value DynamoDB accepts."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ValueError(f"{path}: expected one typed value like {{'S': ...}}, got {value!r:.60}")
    ((tag, data),) = value.items()
    if tag == "N":
        check_number(data, path)
    elif tag in SET_TAGS:
        if tag == "NS":
            for n in data:
                check_number(n, path)
        elif tag == "SS" and not all(isinstance(s, str) for s in data):
            raise ValueError(f"{path}: SS holds a non-string")
        check_set(path, tag, list(data))
    elif tag == "M":
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: M holds {type(data).__name__}")
        for k, v in data.items():
            check_value(f"{path}.{k}", v)
    elif tag == "L":
        if not isinstance(data, (list, tuple)):
            raise ValueError(f"{path}: L holds {type(data).__name__}")
        for i, v in enumerate(data):
            check_value(f"{path}[{i}]", v)
    elif tag == "S" and not isinstance(data, str):
        raise ValueError(f"{path}: S holds {type(data).__name__}")
    elif tag == "B":
        raw_bytes(data)
    elif tag == "BOOL" and not isinstance(data, bool):
        raise ValueError(f"{path}: BOOL holds {data!r}")
    elif tag == "NULL" and data is not True:
        raise ValueError(f"{path}: NULL holds {data!r}")
    elif tag not in TAGS:
        raise ValueError(f"{path}: unknown type tag {tag!r}")
