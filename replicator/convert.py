"""DynamoDB JSON -> BSON-ready Python values, lossless by default (pure functions).

Written by hand rather than with a library deserializer, because none of them is lossless here:
boto3's ``TypeDeserializer`` builds Decimals in a 38-digit context that traps ``Rounded``, so it
raises on valid numbers such as ``1E+125`` written out in full, and returns ``Decimal`` and ``set``
values that BSON cannot encode; it also expects bytes for ``B`` while Lambda events carry base64
text. The ``dynamodb-json`` package turns decimals into floats (19.99 stops being 19.99) and leaves
binary as text. Neither handles the ``{}`` that DynamoDB Local emits for an empty map in a list.

Numbers (``N``):
- integral and within int64 -> ``int``;
- otherwise, at most 34 significant digits -> ``bson.Decimal128`` (exact; DynamoDB's exponent range
  1E-130 .. 9.99E+125 fits Decimal128's);
- otherwise (35 to 38 significant digits) -> the exact canonical decimal text as a ``str``
  (``Decimal(text)`` gives the number back digit for digit). This is the documented fallback.
- ``Settings(numbers="float")`` asks for floats instead (lossy, for users who want them).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Literal

from bson.decimal128 import Decimal128

from replicator.errors import ConversionError

NumberMode = Literal["lossless", "float"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
DECIMAL128_DIGITS = 34
_SMALL_INT = re.compile(r"-?[0-9]{1,18}")
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


class _Bad(Exception):
    """Raised deep inside a value; the path is prepended on the way out (free when all is well)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.path: list[str] = []


def convert_number(text: Any, mode: NumberMode = "lossless") -> Any:
    """Convert the text of an ``N`` value (see the module docstring for the rules)."""
    if type(text) is not str:
        raise _Bad(f"a number must be a string, got {type(text).__name__}")
    if _SMALL_INT.fullmatch(text):  # the common case: no Decimal needed
        return int(text)
    if not _NUMBER.fullmatch(text):
        raise _Bad(f"not a number: {text!r}")
    if mode == "float":
        return float(text)
    sign, digits, exponent = Decimal(text).as_tuple()
    assert isinstance(exponent, int)
    # Normalize exactly (Decimal.normalize() would round to the context's 28 digits).
    end = len(digits)
    while end > 1 and digits[end - 1] == 0:
        end -= 1
    exponent += len(digits) - end
    digits = digits[:end]
    if digits == (0,):
        return 0  # DynamoDB has no negative zero
    if exponent >= 0 and len(digits) + exponent <= 19:
        value = int("".join(map(str, digits))) * 10**exponent * (-1 if sign else 1)
        if INT64_MIN <= value <= INT64_MAX:
            return value
    exact = Decimal((sign, digits, exponent))
    if len(digits) <= DECIMAL128_DIGITS:
        return Decimal128(exact)
    return str(exact)


def _number_sort_key(text: Any) -> Decimal:
    try:
        return Decimal(text)
    except Exception:
        raise _Bad(f"not a number: {text!r}") from None


def _binary(value: Any) -> bytes:
    if isinstance(value, str):  # Lambda events carry B as base64 text
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _Bad("B value is not valid base64") from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    inner = getattr(value, "value", None)  # boto3.dynamodb.types.Binary
    if isinstance(inner, bytes):
        return inner
    raise _Bad(f"B value must be base64 text or bytes, got {type(value).__name__}")


def _list_of(value: Any, tag: str) -> list[Any]:
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise _Bad(f"{tag} value must be a list, got {type(value).__name__}")
    return list(value)


class Converter:
    """Converts attribute values and images; one instance per number mode."""

    def __init__(self, numbers: NumberMode = "lossless") -> None:
        self.numbers = numbers
        self._by_tag: dict[str, Callable[[Any], Any]] = {
            "S": self._string,
            "N": self._number,
            "BOOL": self._bool,
            "M": self._map,
            "L": self._list,
            "NULL": self._null,
            "B": _binary,
            "SS": self._string_set,
            "NS": self._number_set,
            "BS": self._binary_set,
        }

    # -- public -----------------------------------------------------------------------------
    def image(self, image: Mapping[str, Any], root: str = "") -> dict[str, Any]:
        """Convert a whole image (attribute name -> typed value); errors name the field path."""
        try:
            return self._map(image)
        except _Bad as bad:
            raise ConversionError(bad.reason, field_path=_join(root, bad.path)) from None

    def value(self, attribute: Any, root: str = "") -> Any:
        """Convert one typed attribute value such as ``{"N": "1"}``."""
        try:
            return self._value(attribute)
        except _Bad as bad:
            raise ConversionError(bad.reason, field_path=_join(root, bad.path)) from None

    # -- one per type ----------------------------------------------------------------------
    def _value(self, attribute: Any) -> Any:
        if type(attribute) is not dict:
            if not isinstance(attribute, Mapping):
                raise _Bad(f"expected a typed value like {{\"S\": ...}}, got {attribute!r:.60}")
            attribute = dict(attribute)
        if len(attribute) != 1:
            if not attribute:
                # DynamoDB Local renders an empty map inside a list as a bare {} (measured).
                return {}
            raise _Bad(f"expected exactly one type tag, got {sorted(attribute)}")
        ((tag, payload),) = attribute.items()
        convert = self._by_tag.get(tag)
        if convert is None:
            raise _Bad(f"unknown DynamoDB type tag {tag!r}")
        return convert(payload)

    @staticmethod
    def _string(value: Any) -> str:
        if type(value) is not str:
            raise _Bad(f"S value must be a string, got {type(value).__name__}")
        return value

    def _number(self, value: Any) -> Any:
        return convert_number(value, self.numbers)

    @staticmethod
    def _bool(value: Any) -> bool:
        if type(value) is not bool:
            raise _Bad(f"BOOL value must be true or false, got {value!r:.40}")
        return value

    @staticmethod
    def _null(value: Any) -> None:
        if value is not True:
            raise _Bad(f"NULL value must be true, got {value!r:.40}")
        return None

    def _map(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise _Bad(f"M value must be an object, got {type(value).__name__}")
        out: dict[str, Any] = {}
        convert = self._value
        for name, attribute in value.items():
            try:
                out[name] = convert(attribute)
            except _Bad as bad:
                bad.path.insert(0, _name_step(name))
                raise
        return out

    def _list(self, value: Any) -> list[Any]:
        items = _list_of(value, "L")
        out = []
        convert = self._value
        for position, attribute in enumerate(items):
            try:
                out.append(convert(attribute))
            except _Bad as bad:
                bad.path.insert(0, f"[{position}]")
                raise
        return out

    # Sets have no order in DynamoDB; sorting makes the stored array deterministic.
    def _string_set(self, value: Any) -> list[str]:
        items = _list_of(value, "SS")
        for position, item in enumerate(items):
            if type(item) is not str:
                bad = _Bad(f"SS member must be a string, got {type(item).__name__}")
                bad.path.append(f"[{position}]")
                raise bad
        return sorted(items)

    def _number_set(self, value: Any) -> list[Any]:
        items = _list_of(value, "NS")
        out = []
        for position, item in enumerate(items):
            try:
                out.append((_number_sort_key(item), self._number(item)))
            except _Bad as bad:
                bad.path.append(f"[{position}]")
                raise
        out.sort(key=lambda pair: pair[0])
        return [converted for _, converted in out]

    @staticmethod
    def _binary_set(value: Any) -> list[bytes]:
        items = _list_of(value, "BS")
        out = []
        for position, item in enumerate(items):
            try:
                out.append(_binary(item))
            except _Bad as bad:
                bad.path.append(f"[{position}]")
                raise
        return sorted(out)


def _name_step(name: str) -> str:
    if name.isidentifier():
        return f".{name}"
    return f"[{name!r}]"


def _join(root: str, steps: list[str]) -> str:
    path = root + "".join(steps)
    return path[1:] if path.startswith(".") else path


_DEFAULT = Converter()


def image_to_document(image: Mapping[str, Any], numbers: NumberMode = "lossless") -> dict[str, Any]:
    """Convenience: convert one image with the default (or float) number mode."""
    converter = _DEFAULT if numbers == "lossless" else Converter(numbers)
    return converter.image(image)
