"""Table key -> a deterministic MongoDB ``_id``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import bson
import bson.errors

from replicator.convert import Converter, storage_problem
from replicator.errors import (
    ConversionError,
    MalformedRecordError,
    TransformError,
    UnsupportedRecordError,
)

IdMapping = Callable[[dict[str, Any]], Any]
#: The only types a DynamoDB key attribute can have.
KEY_TYPES = frozenset(("S", "N", "B"))


class KeyMapper:
    """Builds ``_id`` from a record's ``Keys``.

    A single key gives its converted value; a composite key gives ``{partition: v, sort: v}`` in
    that order (MongoDB compares embedded documents field by field, in order, so the order is part
    of the identity). ``id_mapping`` replaces the rule with a user function.

    Key attributes are always converted losslessly, whatever the converter's number mode: the key
    is the item's identity, and numbers="float" would make distinct keys (0.3 and
    0.29999999999999999) one ``_id``.
    """

    def __init__(
        self,
        converter: Converter,
        key_schema: tuple[str, ...] | None = None,
        id_mapping: IdMapping | None = None,
    ) -> None:
        self.converter = converter.lossless()
        self.key_schema = key_schema
        self.id_mapping = id_mapping
        # The commonest table key, one S attribute, takes a short cut in document_id.
        self._single_name = key_schema[0] if key_schema and len(key_schema) == 1 else None

    def key_document(self, keys: Mapping[str, Any]) -> dict[str, Any]:
        """The converted key attributes, partition key first."""
        names = self.key_schema or self._infer(keys)
        document = {}
        for name in names:
            if name not in keys:
                raise MalformedRecordError(
                    f"key attribute {name!r} of the key schema is missing",
                    field_path=f"dynamodb.Keys.{name}",
                )
            value = keys[name]
            if isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) not in KEY_TYPES:
                # A list, map, set, BOOL or NULL _id would be refused by MongoDB (arrays) or merge
                # unrelated records (every NULL key is one _id): never a DynamoDB key.
                raise MalformedRecordError(
                    f"a key attribute must be S, N or B, got {next(iter(value))!r}",
                    field_path=f"dynamodb.Keys.{name}",
                )
            document[name] = self.converter.value(value, root=f"dynamodb.Keys.{name}")
        return document

    def document_id(self, keys: Mapping[str, Any]) -> Any:
        if self.id_mapping is None and type(keys) is dict and len(keys) == 1:
            # key_document's result for one S key, without its loop (hot: once per record)
            ((name, value),) = keys.items()
            if (self.key_schema is None or name == self._single_name) and type(value) is dict:
                text = value.get("S")
                if type(text) is str and len(value) == 1 and text.isascii():
                    return text
        key_document = self.key_document(keys)
        if self.id_mapping is not None:
            return self._checked(self._mapped(key_document))
        if len(key_document) == 1:
            return next(iter(key_document.values()))
        return key_document

    def _mapped(self, key_document: dict[str, Any]) -> Any:
        """The user's id_mapping of one key. User code, like a transform: whatever it raises is
        this record's error (quarantined with the raw record), never the batch's."""
        assert self.id_mapping is not None
        try:
            return self.id_mapping(key_document)
        except Exception as error:
            name = getattr(self.id_mapping, "__qualname__", repr(self.id_mapping))
            raise TransformError(f"id_mapping {name} raised {error!r}",
                                 field_path="dynamodb.Keys") from error

    @staticmethod
    def _checked(document_id: Any) -> Any:
        """A user id_mapping's ``_id``, refused with its path where MongoDB could not store it
        (an array ``_id`` is refused by MongoDB: docs "The _id Field")."""
        if isinstance(document_id, (list, tuple)):
            raise ConversionError("id_mapping returned an array; MongoDB refuses an array _id",
                                  field_path="_id")
        if document_id is None:
            # Every key mapped to None would be one document: the items would overwrite each
            # other silently.
            raise ConversionError("id_mapping returned None; every such key would share one _id",
                                  field_path="_id")
        problem = storage_problem({"_id": document_id})
        if problem is not None:
            path, reason = problem
            raise ConversionError(f"id_mapping returned an _id MongoDB cannot store: {reason}",
                                  field_path=path.lstrip("."))
        try:
            bson.encode({"_id": document_id})
        except (bson.errors.InvalidDocument, TypeError, OverflowError, ValueError) as error:
            # e.g. a decimal.Decimal, a set, a datetime.date: BSON has no such type.
            raise ConversionError(f"id_mapping returned an _id BSON cannot encode: {error}",
                                  field_path="_id") from None
        return document_id

    def _infer(self, keys: Mapping[str, Any]) -> tuple[str, ...]:
        if len(keys) == 1:
            return tuple(keys)
        # Judged per record (one odd record must not stop the batch): quarantined with the fix.
        raise UnsupportedRecordError(
            f"the table has a composite key {sorted(keys)}: a record's Keys do not say which is "
            "the partition key, so set Settings(key_schema=(partition, sort)) "
            "(REPLICATOR_KEY_SCHEMA=partition,sort in Lambda)",
            problem="composite key without key_schema",
            field_path="dynamodb.Keys",
        )


def identity(document_id: Any) -> Any:
    """A hashable stand-in for an ``_id``, exact and order-sensitive like MongoDB's comparison."""
    if type(document_id) in (str, int):
        return (type(document_id), document_id)
    return bson.encode({"": document_id})
