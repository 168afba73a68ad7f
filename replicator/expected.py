"""The document the replicator writes for an item, and the way back from a document to its item.

One home for both directions. :func:`planner_for` builds the planner from ``Settings`` (transforms
and ``id_mapping`` loaded, the number mode, the key schema) for the :class:`~replicator.core.Replicator`;
:class:`ExpectedDocuments` uses the same planner for ``replicator verify``, ``recover``'s re-copy
and the harness's convergence check, so each of them expects what the replicator writes.

The way back (:meth:`ExpectedDocuments.key_of`) does not invert ``_id`` blindly: it reads the
key from the document's own key attributes (they stay ordinary fields) and, for the default
mapping, from ``_id``; a candidate is accepted only if mapping it gives the document's ``_id`` back
(by MongoDB's equality). So a custom ``id_mapping``, a composite or binary key and a 35-38-digit
number (stored as its exact decimal text, see replicator/convert.py) all map back to their
item's key, and a document the replicator did not write (an ObjectId ``_id``) maps to None.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from bson.binary import Binary
from bson.decimal128 import Decimal128

from replicator import accelerator
from replicator.convert import Converter
from replicator.diff import id_key
from replicator.errors import ConfigurationError
from replicator.keys import KeyMapper
from replicator.plan import Planner
from replicator.settings import FIELDS_FIELD, Settings

#: A DynamoDB key: attribute name -> typed value (``{"S": "a"}``, ``{"N": "5"}``, ``{"B": b""}``).
Key = dict[str, dict[str, Any]]
#: Where the key attributes' types come from: a mapping name -> "S" | "N" | "B", or a function
#: that returns one (called once, when first needed: DescribeTable's AttributeDefinitions).
KeyTypes = Mapping[str, str] | Callable[[], Mapping[str, str]]


def load_callable(path: str) -> Callable[..., Any]:
    """Import ``pkg.module:function`` or ``pkg.module.function``."""
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attribute:
        raise ConfigurationError(f"not a dotted path to a function: {path!r}")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise ConfigurationError(f"cannot load {path!r}: {error}") from error
    if not callable(target):
        raise ConfigurationError(f"{path!r} is not callable")
    return target  # type: ignore[no-any-return]


def planner_for(settings: Settings, *, accelerate: bool = True) -> Planner:
    """The planner the Replicator plans with: ``settings``' number mode, key schema, ``id_mapping``
    and transforms loaded; the C accelerator (:mod:`replicator.accelerator`) where it runs and,
    for whole batches, where it implements every setting (``declined_by``, the one gate).
    ``accelerate=False``: pure Python (the same plans). Raises ConfigurationError when a
    transform or the ``id_mapping`` cannot be loaded."""
    native = accelerator.native if accelerate else None
    converter = Converter(settings.numbers, native=native)
    id_mapping = load_callable(settings.id_mapping) if settings.id_mapping else None
    return Planner(
        settings,
        converter=converter,
        key_mapper=KeyMapper(converter, settings.key_schema, id_mapping),
        transforms=[load_callable(path) for path in settings.transforms],
        native_batches=native is not None and not accelerator.declined_by(settings),
    )


def key_types_of(attribute_definitions: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """DescribeTable's ``AttributeDefinitions`` -> ``{name: "S" | "N" | "B"}``."""
    return {d["AttributeName"]: d["AttributeType"] for d in attribute_definitions}


class ExpectedDocuments:
    """What the replicator writes for an item, and which item a stored document stands for.

    ``source``: the Settings (the planner is built as the Replicator builds it) or that planner.
    ``key_types``: the key attributes' types; needed only to tell a 35-38-digit number key from a
    string key (both are text in MongoDB); without them text is read as a string.
    Raises ConfigurationError when the key schema is unknown.
    """

    def __init__(self, source: Settings | Planner, *, key_types: KeyTypes | None = None) -> None:
        self.planner = source if isinstance(source, Planner) else planner_for(source)
        self.settings = self.planner.settings
        self.key_mapper = self.planner.key_mapper
        schema = self.key_mapper.key_schema
        if not schema:
            raise ConfigurationError("expected documents need the table's key schema "
                                     "(Settings(key_schema=...))")
        self.key_schema: tuple[str, ...] = tuple(schema)
        self._key_types = key_types
        #: write_mode="merge": the field listing a document's table fields, which is all a
        #: comparison looks at (``replicator.diff.document_differences(fields_field=)``); None in
        #: replace mode (the whole document is the item's)
        self.fields_field: str | None = (
            FIELDS_FIELD if self.settings.write_mode == "merge" else None)

    # -- item -> document ------------------------------------------------------------------------
    def key(self, item: Mapping[str, Any]) -> Key:
        """The item's DynamoDB key."""
        return {name: item[name] for name in self.key_schema}

    def document_id(self, item: Mapping[str, Any]) -> Any:
        """The ``_id`` the replicator gives the item. Raises RecordError as the planner does (an
        ``id_mapping`` that raises: TransformError)."""
        return self.key_mapper.document_id(self.key(item))

    def document(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The document the replicator writes for a record whose new image is ``item``, without
        the sequence field (merge mode: with its list of table fields, and none of the fields
        other applications add; compare with :attr:`fields_field`). Raises RecordError where the
        replicator would quarantine the record (a transform that raises, a value MongoDB cannot
        store)."""
        document = self.planner.document(self.document_id(item), item, "0")
        document.pop(self.settings.sequence_field, None)
        return document

    # -- document -> key -------------------------------------------------------------------------
    def key_of(self, document: Mapping[str, Any]) -> Key | None:
        """The DynamoDB key of the item ``document`` stands for: one whose ``_id`` (through the
        planner's key mapping) is the document's. None when there is none (a document the
        replicator did not write, or one whose key attributes a transform removed under an
        ``id_mapping``)."""
        wanted = id_key(document.get("_id"))
        for candidate in self._candidates(document):
            try:
                made = self.key_mapper.document_id(candidate)
            except Exception:  # user code (id_mapping) on a guessed key: not this key
                continue
            if id_key(made) == wanted:
                return candidate
        return None

    def projection(self) -> dict[str, int]:
        """The fields :meth:`key_of` reads (for a ``find`` projection)."""
        return {"_id": 1, **{name: 1 for name in self.key_schema}}

    def _types(self) -> Mapping[str, str]:
        if callable(self._key_types):
            self._key_types = dict(self._key_types())
        return self._key_types or {}

    def _candidates(self, document: Mapping[str, Any]) -> Iterator[Key]:
        types = self._types()
        fields = [document.get(name) for name in self.key_schema]
        seen: list[Key] = []
        sources = [fields]
        if self.key_mapper.id_mapping is None:
            document_id = document.get("_id")
            if len(self.key_schema) == 1:
                sources.append([document_id])
            elif isinstance(document_id, Mapping) and list(document_id) == list(self.key_schema):
                sources.append([document_id[name] for name in self.key_schema])
        for values in sources:
            typed = [attribute(v, types.get(n)) for n, v in zip(self.key_schema, values, strict=True)]
            if any(t is None for t in typed):
                continue
            candidate: Key = {n: t for n, t in zip(self.key_schema, typed, strict=True) if t}
            if candidate not in seen:
                seen.append(candidate)
                yield candidate


def attribute(value: Any, tag: str | None = None) -> dict[str, Any] | None:
    """The DynamoDB key attribute a stored key value came from, or None when it cannot be one
    (``tag``: the attribute's type from the table, when known)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        if tag == "N":
            return {"N": value} if _is_number(value) else None
        return {"S": value} if tag in (None, "S") else None
    if isinstance(value, (bytes, Binary)):
        if isinstance(value, Binary) and value.subtype != 0:
            return None
        return {"B": bytes(value)} if tag in (None, "B") else None
    if tag not in (None, "N"):
        return None
    if isinstance(value, int):
        return {"N": str(int(value))}
    if isinstance(value, Decimal128):
        number = value.to_decimal()
        return {"N": str(number)} if number.is_finite() else None
    if isinstance(value, float):
        return {"N": repr(value)} if value == value and abs(value) != float("inf") else None
    return None


def _is_number(text: str) -> bool:
    try:
        return Decimal(text).is_finite()
    except InvalidOperation:
        return False
