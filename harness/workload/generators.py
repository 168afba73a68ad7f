"""Seeded attribute values: the "simple" and "type_zoo" profiles' attributes and the small values
and set members that updates add. Every generator takes the planner's ``random.Random``, so the
same seed gives the same values."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from harness.dynamodb_values import AttributeValue, element_key

# Numbers DynamoDB accepts that often break conversions: decimals that floats round, int64 edges,
# 38 significant digits, the ends of the exponent range, trailing zeros.
EDGE_NUMBERS: tuple[str, ...] = (
    "19.99",
    "5.00",
    "0",
    "-1",
    "0.1",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "12345678901234567890123456789012345678",
    "99999999999999999999999999999999999999",
    "-99999999999999999999999999999999999999",
    "3.1415926535897932384626433832795028841",
    "1E+125",
    "-1E+125",
    "9.9999999999999999999999999999999999999E+125",
    "1E-130",
    "-1E-130",
    "1.0E+2",
)

DEEP_NESTING = 30  # containers in type_zoo's "deep" attribute

Generator = Callable[[random.Random], AttributeValue]

_WORDS = (
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
    "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi",
)  # fmt: skip
_UNICODE = (
    "héllo wörld",
    "日本語のテキスト",
    "emoji 🎉🚀",
    "Ελληνικά",
    "עברית",
    "Привет",
    "zero\u200bwidth",
    "tab\tand\nnewline",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "ﬁ ligature, e\u0301 combining",
)


def _s(rng: random.Random) -> AttributeValue:
    return {"S": f"{rng.choice(_WORDS)}-{rng.randrange(10**6)}"}


def _s_unicode(rng: random.Random) -> AttributeValue:
    return {"S": f"{rng.choice(_UNICODE)} {rng.randrange(1000)}"}


def _n_int(rng: random.Random) -> AttributeValue:
    return {"N": str(rng.randrange(-(10**6), 10**6))}


def _n_price(rng: random.Random) -> AttributeValue:
    return {"N": f"{rng.randrange(10000)}.{rng.randrange(100):02d}"}


def _n_edge(rng: random.Random) -> AttributeValue:
    return {"N": rng.choice(EDGE_NUMBERS)}


def random_bytes(rng: random.Random, low: int = 1, high: int = 16) -> bytes:
    return bytes([0, 255])[: rng.randrange(3)] + rng.randbytes(rng.randint(low, high))


def _b(rng: random.Random) -> AttributeValue:
    return {"B": random_bytes(rng)}


def _bool(rng: random.Random) -> AttributeValue:
    return {"BOOL": rng.random() < 0.5}


def _distinct(rng: random.Random, tag: str, make: Callable[[], Any], low: int, high: int) -> list[Any]:
    wanted = rng.randint(low, high)
    out: list[Any] = []
    marks: list[Any] = []
    for _ in range(wanted * 4):
        element = make()
        mark = element_key(tag, element)
        if mark not in marks:
            out.append(element)
            marks.append(mark)
        if len(out) >= wanted:
            break
    return out


def ss_element(rng: random.Random, zoo: bool) -> str:
    if zoo and rng.random() < 0.3:
        return f"{rng.choice(_UNICODE)}{rng.randrange(100)}"
    return f"{rng.choice(_WORDS)}{rng.randrange(100)}" if rng.random() < 0.5 else rng.choice(_WORDS)


def ns_element(rng: random.Random) -> str:
    return rng.choice(EDGE_NUMBERS) if rng.random() < 0.4 else str(rng.randrange(-1000, 1000))


def _ss(rng: random.Random) -> AttributeValue:
    return {"SS": _distinct(rng, "SS", lambda: ss_element(rng, False), 1, 4)}


def _ss_zoo(rng: random.Random) -> AttributeValue:
    return {"SS": _distinct(rng, "SS", lambda: ss_element(rng, True), 1, 5)}


def _ns(rng: random.Random) -> AttributeValue:
    return {"NS": _distinct(rng, "NS", lambda: ns_element(rng), 1, 5)}


def _bs(rng: random.Random) -> AttributeValue:
    return {"BS": _distinct(rng, "BS", lambda: random_bytes(rng, 1, 8), 1, 4)}


def _profile(rng: random.Random) -> AttributeValue:
    doc: dict[str, AttributeValue] = {
        "city": {"S": rng.choice(("Lyon", "Oslo", "Kyoto", "Lima", "Perth"))},
        "zip": {"S": f"{rng.randrange(100000):05d}"},
        "score": {"N": str(rng.randrange(100))},
    }
    if rng.random() < 0.6:
        doc["prefs"] = {"M": {"theme": {"S": rng.choice(("dark", "light"))}, "lang": {"S": "en"}}}
    return {"M": doc}


def _history(rng: random.Random) -> AttributeValue:
    return {"L": [_n_int(rng) if rng.random() < 0.5 else _s(rng) for _ in range(rng.randint(1, 4))]}


def _m_doc(rng: random.Random) -> AttributeValue:
    return {
        "M": {
            "a.b": _s_unicode(rng),
            "$ref": _s(rng),
            "inner": {
                "M": {
                    "x": _n_edge(rng),
                    "empty_m": {"M": {}},
                    "empty_l": {"L": []},
                    "bin": _b(rng),
                    "empty_s": {"S": ""},
                    "nul": {"NULL": True},
                }
            },
            "arr": {"L": [_n_edge(rng), _s(rng), {"M": {"k": _s(rng)}}]},
            "t": _bool(rng),
            "tags": _ss_zoo(rng),
        }
    }


def _l_mixed(rng: random.Random) -> AttributeValue:
    elements = [
        _s_unicode(rng),
        _n_edge(rng),
        _b(rng),
        _bool(rng),
        {"NULL": True},
        {"M": {}},
        {"L": []},
        {"M": {"k": {"L": [_n_edge(rng)]}, "$x": {"S": ""}}},
        {"L": [{"L": [_s(rng)]}]},
        _ns(rng),
        {"B": b""},
    ]
    return {"L": elements[: rng.randint(4, len(elements))]}


def _meta(rng: random.Random) -> AttributeValue:
    return {
        "M": {
            "$inner": _s(rng),
            "x.y": _n_edge(rng),
            "$$": {"M": {"deeper": _s_unicode(rng)}},
        }
    }


def _deep(rng: random.Random) -> AttributeValue:
    value: AttributeValue = _n_edge(rng)
    for level in range(DEEP_NESTING):
        value = {"M": {f"d{level}": value}} if level % 2 else {"L": [value]}
    return value


def _var(rng: random.Random) -> AttributeValue:
    makers: list[Generator] = [
        _s,
        _n_edge,
        _b,
        _bool,
        lambda r: {"NULL": True},
        lambda r: {"M": {"v": _s(r)}},
        lambda r: {"L": [_n_int(r)]},
        _ss,
    ]
    return rng.choice(makers)(rng)


# name -> (kind, generator); kinds: plain, counter (ADD number), set (ADD/DELETE), map, list
SIMPLE: dict[str, tuple[str, Generator]] = {
    "name": ("plain", _s),
    "price": ("plain", _n_price),
    "qty": ("counter", lambda r: {"N": str(r.randrange(1000))}),
    "active": ("plain", _bool),
    "tags": ("set", _ss),
    "profile": ("map", _profile),
    "checksum": ("plain", lambda r: {"B": r.randbytes(4)}),
    "history": ("list", _history),
    "note": ("plain", _s),
}
ZOO: dict[str, tuple[str, Generator]] = {
    "s_ascii": ("plain", _s),
    "s_unicode": ("plain", _s_unicode),
    "s_empty": ("plain", lambda r: {"S": ""}),
    "n_int": ("plain", _n_int),
    "n_decimal": ("plain", _n_price),
    "n_edge": ("plain", _n_edge),
    "b_bytes": ("plain", _b),
    "b_empty": ("plain", lambda r: {"B": b""}),
    "null": ("plain", lambda r: {"NULL": True}),
    "flag": ("plain", _bool),
    "a.b": ("plain", _s_unicode),
    "$meta": ("map", _meta),
    "m_doc": ("map", _m_doc),
    "l_mixed": ("list", _l_mixed),
    "deep": ("plain", _deep),
    "var": ("plain", _var),
    "counter": ("counter", lambda r: {"N": str(r.randrange(-50, 1000))}),
    "ss": ("set", _ss_zoo),
    "ns": ("set", _ns),
    "bs": ("set", _bs),
}
SET_ATTRIBUTES = {"tags": "SS", "ss": "SS", "ns": "NS", "bs": "BS"}
CHILD_NAMES = {
    "simple": ("x", "y", "k1", "k2"),
    "type_zoo": ("x", "y", "new.key", "$dollar", "ü", "k1"),
}


def small_value(rng: random.Random, zoo: bool) -> AttributeValue:
    makers: list[Generator] = [_s, _n_int, _bool]
    if zoo:
        makers += [_n_edge, _b, _s_unicode, lambda r: {"NULL": True}, lambda r: {"M": {"z": _s(r)}}]
    return rng.choice(makers)(rng)
