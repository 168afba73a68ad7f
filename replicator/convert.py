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
from decimal import Decimal, DecimalException
from typing import Any, Literal

from bson.decimal128 import Decimal128

from replicator.errors import ConversionError

NumberMode = Literal["lossless", "float"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: MongoDB stores documents of at most 100 levels; the document itself is level 1 and each
#: embedded document or array adds one (MongoDB docs: "Limits and Thresholds"; SERVER-26703
#: refuses makeNestObj(101); DOCS-15222: arrays and objects count alike). Converting checks it, so
#: a deeper image is quarantined with its path instead of failing the write (or recursing until
#: RecursionError).
MAX_NESTING = 100
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
    # The common cases first, without Decimal or a regex: a plain integer that fits int64 (in float
    # mode only up to 18 digits, as _SMALL_INT: 19 digits become a float there).
    if (
        len(text) < 20 and text.isdigit() and text.isascii()
        and (len(text) < 19 or mode != "float")
    ):
        value = int(text)
        if value <= INT64_MAX:
            return value
    elif text[:1] == "-" and len(text) < 20 and text[1:].isdigit() and text.isascii():
        return int(text)  # matches _SMALL_INT: "-" and 1 to 18 digits
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise _Bad(f"not a number: {text!r}")
    if mode == "float":
        return _float(text, match.group(1))
    mantissa, exponent_text = match.groups()
    if exponent_text is not None and len(exponent_text) > 8:
        return _exact_number(text)  # an exponent far outside DynamoDB's range: the general path
    # Normalize exactly on the text (Decimal.normalize() would round to the context's 28 digits).
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    significant = digits.rstrip("0")
    if not significant:
        return 0  # DynamoDB has no negative zero
    exponent = len(digits) - len(significant) - len(fraction)
    if exponent_text is not None:
        exponent += int(exponent_text[1:])
    negative = text[0] == "-"
    if exponent >= 0 and len(significant) + exponent <= 19:
        value = int(significant) * 10**exponent * (-1 if negative else 1)
        if INT64_MIN <= value <= INT64_MAX:
            return value
    if len(significant) <= DECIMAL128_DIGITS:
        return _decimal128(negative, int(significant), exponent)
    # Decimal((sign, digits, exponent)) built from text: the same digits and exponent, faster.
    return str(Decimal(f"{'-' if negative else ''}{significant}E{exponent}"))


def _float(text: str, mantissa: str) -> float:
    """``float(text)``, refusing what a double cannot hold: storing inf or 0.0 for a finite,
    nonzero number would be a silent change of value, not the documented rounding."""
    value = float(text)
    if value in (_INFINITY, -_INFINITY):
        raise _Bad(f"{text} is beyond a double's range (numbers='float' would store inf); "
                   "use numbers='lossless'")
    if value == 0.0 and mantissa.strip("0.") != "":
        raise _Bad(f"{text} is below a double's range (numbers='float' would store 0.0); "
                   "use numbers='lossless'")
    return value


_INFINITY = float("inf")


def _exact_number(text: str) -> Any:
    """The general path of :func:`convert_number`, through ``Decimal``, for any exponent."""
    sign, digits, exponent = Decimal(text).as_tuple()
    assert isinstance(exponent, int)
    end = len(digits)
    while end > 1 and digits[end - 1] == 0:
        end -= 1
    exponent += len(digits) - end
    digits = digits[:end]
    if digits == (0,):
        return 0
    if exponent >= 0 and len(digits) + exponent <= 19:
        value = int("".join(map(str, digits))) * 10**exponent * (-1 if sign else 1)
        if INT64_MIN <= value <= INT64_MAX:
            return value
    exact = Decimal((sign, digits, exponent))
    if len(digits) <= DECIMAL128_DIGITS:
        return _checked_decimal128(exact)
    return str(exact)


def _checked_decimal128(value: Decimal) -> Decimal128:
    """``Decimal128(value)``, or a conversion error when the exponent is beyond Decimal128's range
    (pymongo raises decimal.Overflow/Inexact there; DynamoDB never sends such a number)."""
    try:
        return Decimal128(value)
    except DecimalException:
        raise _Bad(f"number out of Decimal128's range: {value}") from None


# Decimal128's exponent range for a coefficient of at most 34 digits (IEEE 754-2008 BID).
_BID_EXPONENT_MIN, _BID_EXPONENT_MAX, _BID_EXPONENT_BIAS = -6176, 6111, 6176
_LOW_64 = (1 << 64) - 1
_BID_SIGN = 1 << 63


def _decimal128(negative: bool, significand: int, exponent: int) -> Decimal128:
    """``Decimal128`` of ``(-1)**negative * significand * 10**exponent``, exact.

    Builds the BID bits directly: pymongo's ``Decimal128(Decimal)`` does the same through a
    decimal context and a bit-by-bit loop, about ten times slower. ``significand`` has at most
    34 digits, so it is below 2**113 and always fits the plain (not the "11" prefixed) form.
    """
    if not _BID_EXPONENT_MIN <= exponent <= _BID_EXPONENT_MAX:
        return _checked_decimal128(
            Decimal((int(negative), tuple(map(int, str(significand))), exponent))
        )
    high = ((exponent + _BID_EXPONENT_BIAS) << 49) | (significand >> 64)
    if negative:
        high |= _BID_SIGN
    # Decimal128 documents a (high, low) BID tuple as a value; its type hints omit it.
    return Decimal128((high, significand & _LOW_64))  # type: ignore[arg-type]


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


def _encodable(text: str) -> bool:
    """UTF-8 (hence BSON) can encode it: no lone surrogate (json.loads accepts "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_name(name: Any) -> None:
    """A field name MongoDB can store: a str without NUL (BSON names are NUL-terminated C
    strings; pymongo raises InvalidDocument) that UTF-8 can encode."""
    if type(name) is not str:
        raise _Bad(f"a field name must be a string, got {type(name).__name__}")
    if "\x00" in name:
        raise _Bad("a field name cannot contain NUL (BSON names are NUL-terminated)")
    if not name.isascii() and not _encodable(name):
        raise _Bad("a field name with a lone surrogate cannot be encoded as UTF-8")


_SURROGATE = "an S value with a lone surrogate cannot be encoded as UTF-8"


def _list_of(value: Any, tag: str) -> list[Any]:
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise _Bad(f"{tag} value must be a list, got {type(value).__name__}")
    return list(value)


class Converter:
    """Converts attribute values and images; one instance per number mode. It counts nesting as
    it converts (see MAX_NESTING), so an instance is for one thread at a time (the replicator
    makes one per Replicator)."""

    def __init__(self, numbers: NumberMode = "lossless", *, native: Any = None) -> None:
        """``native``: the C accelerator (:data:`replicator.accelerator.native`, which the
        Replicator's planner hands in) or None, the default: pure Python. The C module converts
        well-formed images to exactly what this module gives; for anything unusual it answers
        None and this module, the reference, decides."""
        self.numbers = numbers
        self._depth = 0  # nesting level of the map or list being converted (see MAX_NESTING)
        self._offered = native  # kept for lossless(): the C module does lossless numbers only
        #: the C accelerator this converter uses, or None: pure Python (not handed one, or float
        #: numbers, which it does not do)
        self.native: Any = native if numbers == "lossless" else None
        fast = self.native is not None
        self._fast_image: Callable[[Any], Any] | None = native.image if fast else None
        #: ``vouch(image)`` is True when the C accelerator confirms that :meth:`image` accepts the
        #: image (a plain dict), checking without building anything; None without the accelerator.
        #: False means "not known": ask :meth:`image`.
        self.vouch: Callable[[Any], bool] | None = native.valid if fast else None
        self._fast_document: Callable[[Any, Any], Any] | None = native.document if fast else None
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
    def lossless(self) -> Converter:
        """This converter if its numbers are lossless, else a lossless one with the same C
        accelerator (key attributes are always converted losslessly, see KeyMapper)."""
        if self.numbers == "lossless":
            return self
        return Converter("lossless", native=self._offered)

    def image(self, image: Mapping[str, Any], root: str = "") -> dict[str, Any]:
        """Convert a whole image (attribute name -> typed value); errors name the field path."""
        if self._fast_image is not None and type(image) is dict:
            converted = self._fast_image(image)
            if converted is not None:
                return converted  # type: ignore[no-any-return]
        try:
            return self._map(image)
        except _Bad as bad:
            raise ConversionError(bad.reason, field_path=_join(root, bad.path)) from None

    def keyed_image(self, image: Mapping[str, Any], document_id: Any) -> dict[str, Any] | None:
        """``{"_id": document_id, **self.image(image)}`` built in one go by the C accelerator, or
        None (no accelerator, an image with its own ``_id``, anything the reference must decide):
        then the caller takes the long way."""
        if self._fast_document is None:
            return None
        return self._fast_document(image, document_id)  # type: ignore[no-any-return]

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
        (tag,) = attribute
        payload = attribute[tag]
        convert = self._by_tag.get(tag)
        if convert is None:
            raise _Bad(f"unknown DynamoDB type tag {tag!r}")
        return convert(payload)

    @staticmethod
    def _string(value: Any) -> str:
        if type(value) is not str:
            raise _Bad(f"S value must be a string, got {type(value).__name__}")
        if not value.isascii() and not _encodable(value):
            raise _Bad(_SURROGATE)
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

    # _map and _list inline the commonest values (S, a small non-negative N, any known tag) and
    # hand everything else to _value, which gives the same result the long way; this is the hot
    # loop of the replicator.
    def _map(self, value: Any) -> dict[str, Any]:
        if type(value) is not dict and not isinstance(value, Mapping):
            raise _Bad(f"M value must be an object, got {type(value).__name__}")
        depth = self._depth + 1
        if depth > MAX_NESTING:
            raise _Bad(f"nested deeper than MongoDB's {MAX_NESTING} levels")
        self._depth = depth
        try:
            return self._map_items(value)
        finally:
            self._depth = depth - 1

    def _map_items(self, value: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        convert = self._value
        by_tag = self._by_tag
        for name, attribute in value.items():
            try:
                if type(name) is not str or "\x00" in name or not (
                    name.isascii() or _encodable(name)
                ):
                    _check_name(name)
                if type(attribute) is dict and len(attribute) == 1:
                    (tag,) = attribute
                    payload = attribute[tag]
                    if tag == "S":
                        if type(payload) is str and (payload.isascii() or _encodable(payload)):
                            out[name] = payload
                            continue
                    elif (
                        tag == "N" and type(payload) is str and len(payload) < 19
                        and payload.isdigit() and payload.isascii()
                    ):
                        out[name] = int(payload)
                        continue
                    handler = by_tag.get(tag)
                    if handler is not None:
                        out[name] = handler(payload)
                        continue
                out[name] = convert(attribute)
            except _Bad as bad:
                bad.path.insert(0, _name_step(name))
                raise
        return out

    def _list(self, value: Any) -> list[Any]:
        items = _list_of(value, "L")
        depth = self._depth + 1
        if depth > MAX_NESTING:
            raise _Bad(f"nested deeper than MongoDB's {MAX_NESTING} levels")
        self._depth = depth
        try:
            return self._list_items(items)
        finally:
            self._depth = depth - 1

    def _list_items(self, items: list[Any]) -> list[Any]:
        out: list[Any] = []
        convert = self._value
        by_tag = self._by_tag
        for position, attribute in enumerate(items):
            try:
                if type(attribute) is dict and len(attribute) == 1:
                    (tag,) = attribute
                    payload = attribute[tag]
                    if tag == "S":
                        if type(payload) is str and (payload.isascii() or _encodable(payload)):
                            out.append(payload)
                            continue
                    elif (
                        tag == "N" and type(payload) is str and len(payload) < 19
                        and payload.isdigit() and payload.isascii()
                    ):
                        out.append(int(payload))
                        continue
                    handler = by_tag.get(tag)
                    if handler is not None:
                        out.append(handler(payload))
                        continue
                out.append(convert(attribute))
            except _Bad as bad:
                bad.path.insert(0, f"[{position}]")
                raise
        return out

    # Sets have no order in DynamoDB; sorting makes the stored array deterministic.
    def _string_set(self, value: Any) -> list[str]:
        items = _list_of(value, "SS")
        for position, item in enumerate(items):
            if type(item) is not str or not (item.isascii() or _encodable(item)):
                bad = _Bad(f"SS member must be a string, got {type(item).__name__}"
                           if type(item) is not str else _SURROGATE)
                bad.path.append(f"[{position}]")
                raise bad
        return sorted(items)

    def _number_set(self, value: Any) -> list[Any]:
        items = _list_of(value, "NS")
        if all(type(i) is str and len(i) < 19 and i.isdigit() and i.isascii() for i in items):
            return sorted(map(int, items))  # small non-negative integers: their order is numeric
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


def _name_step(name: Any) -> str:
    if type(name) is str and name.isidentifier():
        return f".{name}"
    return f"[{name!r}]"


def _join(root: str, steps: list[str]) -> str:
    path = root + "".join(steps)
    return path[1:] if path.startswith(".") else path


def storage_problem(document: Any) -> tuple[str, str] | None:
    """``(path, reason)`` of the first value in a document MongoDB cannot store (what the
    converter refuses in an image: nesting beyond MAX_NESTING, NUL or a lone surrogate in a name,
    a lone surrogate in a string) or pymongo cannot encode (an int beyond int64: OverflowError);
    None when there is none. Iterative: any depth. For documents built by user code
    (transforms), which the converter has not seen."""
    stack: list[tuple[Any, str, int]] = [(document, "", 1)]
    while stack:
        value, path, level = stack.pop()
        kind = type(value)
        if kind is dict or kind is list or kind is tuple:
            if level > MAX_NESTING:
                return path, f"nested deeper than MongoDB's {MAX_NESTING} levels"
            if kind is dict:
                for name, item in value.items():
                    try:
                        _check_name(name)
                    except _Bad as bad:
                        return path + _name_step(name), bad.reason
                    stack.append((item, path + _name_step(name), level + 1))
            else:
                stack.extend((item, f"{path}[{i}]", level + 1) for i, item in enumerate(value))
        elif kind is str:
            if not value.isascii() and not _encodable(value):
                return path, "a string with a lone surrogate cannot be encoded as UTF-8"
        elif kind is int and not INT64_MIN <= value <= INT64_MAX:
            return path, "an integer beyond int64 cannot be encoded as BSON"
    return None

