"""UpdateItem as the planner models it: a list of actions (SET, list_append, REMOVE, ADD, DELETE on
document paths), applied to an item (:func:`apply_actions`) and written as an UpdateExpression with
placeholders (:class:`UpdateExpression`)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Context, Decimal
from typing import Any

from harness.dynamodb_values import AttributeValue, clone, element_key
from harness.workload.spec import Action, Item, Path

# ADD on numbers: DynamoDB keeps 38 significant digits; 60 leaves no rounding to the model.
_CONTEXT = Context(prec=60)


def _container(item: Item, path: Path) -> Any:
    """The dict (map / top level) or list holding the last segment of ``path``."""
    holder: Any = item
    for segment in path[:-1]:
        value = holder[segment]
        ((_, holder),) = value.items()
    return holder


def apply_actions(item: Item, actions: Sequence[Action]) -> Item:
    """A copy of ``item`` after an UpdateItem made of ``actions`` (one per top-level attribute)."""
    new: Item = clone(item)
    for kind, path, value in actions:
        holder = _container(new, path)
        last = path[-1]
        if kind == "SET":
            holder[last] = clone(value)
        elif kind == "APPEND":
            holder[last] = {"L": holder[last]["L"] + clone(value["L"])}
        elif kind == "REMOVE":
            if isinstance(last, int):
                if last < len(holder):
                    del holder[last]
            else:
                holder.pop(last, None)
        elif kind == "ADD":
            current = holder.get(last)
            if "N" in value:
                base = Decimal(current["N"]) if current else Decimal(0)
                total = _CONTEXT.add(base, Decimal(value["N"]))
                holder[last] = {"N": str(total)}
            else:
                ((tag, elements),) = value.items()
                existing = list(current[tag]) if current else []
                marks = [element_key(tag, e) for e in existing]
                for element in elements:
                    if element_key(tag, element) not in marks:
                        existing.append(element)
                        marks.append(element_key(tag, element))
                holder[last] = {tag: existing}
        elif kind == "DELETE":
            current = holder.get(last)
            if current:
                ((tag, elements),) = value.items()
                gone = [element_key(tag, e) for e in elements]
                kept = [e for e in current[tag] if element_key(tag, e) not in gone]
                if kept:
                    holder[last] = {tag: kept}
                else:
                    del holder[last]
        else:  # pragma: no cover - planner bug
            raise ValueError(f"unknown action {kind!r}")
    return new


class UpdateExpression:
    """Placeholders for names and values of one request."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, AttributeValue] = {}
        self._ids: dict[str, str] = {}

    def name(self, name: str) -> str:
        if name not in self._ids:
            placeholder = f"#n{len(self._ids)}"
            self._ids[name] = placeholder
            self.names[placeholder] = name
        return self._ids[name]

    def value(self, value: AttributeValue) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def path(self, path: Path) -> str:
        parts: list[str] = []
        for segment in path:
            if isinstance(segment, int):
                parts[-1] += f"[{segment}]"
            else:
                parts.append(self.name(segment))
        return ".".join(parts)

    def update(self, actions: Sequence[Action]) -> str:
        clauses: dict[str, list[str]] = {"SET": [], "REMOVE": [], "ADD": [], "DELETE": []}
        for kind, path, value in actions:
            target = self.path(path)
            if kind == "SET":
                clauses["SET"].append(f"{target} = {self.value(value)}")
            elif kind == "APPEND":
                clauses["SET"].append(f"{target} = list_append({target}, {self.value(value)})")
            elif kind == "REMOVE":
                clauses["REMOVE"].append(target)
            else:
                clauses[kind].append(f"{target} {self.value(value)}")
        return " ".join(f"{k} {', '.join(v)}" for k, v in clauses.items() if v)

    def attach(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.names:
            request["ExpressionAttributeNames"] = dict(self.names)
        if self.values:
            request["ExpressionAttributeValues"] = dict(self.values)
        return request
