"""The event source mapping settings of a deployment template, for the driver.

So that a scenario runs with the settings that will be deployed, the driver's :class:`EsmConfig`
can be read from the AWS SAM / CloudFormation template (``deploy/template.yaml``): from a
``AWS::Serverless::Function``'s event of ``Type: DynamoDB`` (SAM) or from an
``AWS::Lambda::EventSourceMapping`` resource (plain CloudFormation). Property names are
CreateEventSourceMapping's (``BatchSize``, ``MaximumBatchingWindowInSeconds``,
``ParallelizationFactor``, ``BisectBatchOnFunctionError``, ``FunctionResponseTypes``,
``MaximumRetryAttempts``, ``MaximumRecordAgeInSeconds``, ``StartingPosition``); a ``!Ref`` to a
template parameter takes the parameter's ``Default``. Properties the emulation has no use for
(``Stream``, ``DestinationConfig``, ``Enabled``...) are read past; the on-failure destination's
presence is reported by :func:`read_mappings`.

CloudFormation YAML uses short-form intrinsic functions (``!Ref``, ``!GetAtt``, ``!Sub``...), tags
a plain YAML loader refuses; :class:`TemplateLoader` reads each as its long form
(``{"Ref": ...}``, ``{"Fn::GetAtt": [...]}``), as CloudFormation does ("Intrinsic function
reference", AWS CloudFormation User Guide).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.esm.config import EsmConfig

#: the ESM properties the driver's EsmConfig takes (see EsmConfig.from_aws)
ESM_PROPERTIES = (
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "ParallelizationFactor",
    "StartingPosition",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "FunctionResponseTypes",
)

_SHORT_FORMS = (
    "Ref", "Condition", "GetAtt", "Base64", "Cidr", "FindInMap", "GetAZs", "ImportValue", "Join",
    "Select", "Split", "Sub", "Transform", "And", "Equals", "If", "Not", "Or", "ToJsonString",
    "Length",
    # the Rules section's own functions ("Rule functions", AWS CloudFormation User Guide)
    "Contains", "EachMemberEquals", "EachMemberIn", "RefAll", "ValueOf", "ValueOfAll",
)


class TemplateError(ValueError):
    """The template has no usable event source mapping, or a value that cannot be resolved."""


class TemplateLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """A safe YAML loader that reads CloudFormation's short-form intrinsic function tags."""


def _intrinsic(name: str) -> Any:
    key = name if name in ("Ref", "Condition") else f"Fn::{name}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "GetAtt" and isinstance(value, str):
                value = value.split(".", 1)  # !GetAtt Resource.Attribute
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return construct


for _name in _SHORT_FORMS:
    TemplateLoader.add_constructor(f"!{_name}", _intrinsic(_name))


def load_template(path: Path) -> dict[str, Any]:
    """A CloudFormation/SAM YAML (or JSON) template as plain data."""
    try:
        data = yaml.load(Path(path).read_text(), Loader=TemplateLoader)  # a SafeLoader subclass
    except FileNotFoundError:
        raise TemplateError(f"{path}: no such file") from None
    except yaml.YAMLError as error:
        raise TemplateError(f"{path}: not YAML ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return data


@dataclass(frozen=True)
class EsmMapping:
    """One event source mapping found in a template."""

    #: "Function.Event" (SAM) or the EventSourceMapping's logical id
    name: str
    #: the ESM properties the driver uses, intrinsic functions resolved
    properties: dict[str, Any]
    #: an on-failure destination is configured (DestinationConfig.OnFailure)
    on_failure_destination: bool


def read_mappings(template: Mapping[str, Any]) -> list[EsmMapping]:
    """Every DynamoDB stream event source mapping of the template, in template order."""
    parameters = template.get("Parameters") or {}
    found: list[EsmMapping] = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, Mapping):
            continue
        kind = resource.get("Type")
        properties = resource.get("Properties") or {}
        if kind == "AWS::Serverless::Function":
            for event_name, event in (properties.get("Events") or {}).items():
                if isinstance(event, Mapping) and event.get("Type") == "DynamoDB":
                    found.append(_mapping(f"{logical_id}.{event_name}",
                                          event.get("Properties") or {}, parameters))
        elif kind == "AWS::Lambda::EventSourceMapping" and _is_dynamodb_stream(properties):
            found.append(_mapping(logical_id, properties, parameters))
    return found


def _is_dynamodb_stream(properties: Mapping[str, Any]) -> bool:
    source = properties.get("EventSourceArn")
    text = repr(source)
    if "kinesis" in text.lower():  # a Kinesis data stream's mapping (docs/kinesis.md)
        return False
    # An ARN (or a GetAtt of a table's StreamArn); StartingPosition is required for streams only.
    return "dynamodb" in text.lower() or "StreamArn" in text or "StartingPosition" in properties


def _mapping(name: str, properties: Mapping[str, Any], parameters: Mapping[str, Any]) -> EsmMapping:
    values = {}
    for key in ESM_PROPERTIES:
        if key in properties:
            values[key] = _resolve(properties[key], parameters, f"{name}.{key}")
    destination = (properties.get("DestinationConfig") or {}).get("OnFailure")
    return EsmMapping(name, values, bool(destination))


def _resolve(value: Any, parameters: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, Mapping) and set(value) == {"Ref"}:
        parameter = parameters.get(value["Ref"])
        if not isinstance(parameter, Mapping) or "Default" not in parameter:
            raise TemplateError(
                f"{where}: !Ref {value['Ref']} is not a template parameter with a Default"
            )
        return _typed(parameter["Default"], parameter.get("Type"))
    if isinstance(value, list):
        return [_resolve(v, parameters, where) for v in value]
    if isinstance(value, Mapping):
        raise TemplateError(f"{where}: cannot evaluate {next(iter(value))} here; use a literal")
    return value


def _typed(value: Any, kind: Any) -> Any:
    # Parameter defaults are strings in CloudFormation whatever their Type.
    if kind == "Number" and isinstance(value, str):
        return float(value) if "." in value else int(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def esm_config_from_template(
    template: Mapping[str, Any], *, mapping: str | None = None, **emulator: Any
) -> EsmConfig:
    """The :class:`EsmConfig` of the template's event source mapping (``mapping`` names it --
    "Function.Event" or the resource's logical id -- when there are several)."""
    found = read_mappings(template)
    if mapping is not None:
        found = [m for m in found if m.name == mapping or m.name.split(".")[-1] == mapping]
    if not found:
        raise TemplateError(
            "no DynamoDB event source mapping" + (f" named {mapping!r}" if mapping else "")
        )
    if len(found) > 1:
        names = ", ".join(m.name for m in found)
        raise TemplateError(f"several DynamoDB event source mappings ({names}): name one")
    try:
        return EsmConfig.from_aws(found[0].properties, **emulator)
    except (TypeError, ValueError) as error:
        raise TemplateError(f"{found[0].name}: {error}") from None


def load_esm_config(path: Path, *, mapping: str | None = None, **emulator: Any) -> EsmConfig:
    """:func:`esm_config_from_template` of the template file at ``path``."""
    try:
        return esm_config_from_template(load_template(path), mapping=mapping, **emulator)
    except TemplateError as error:
        if str(error).startswith(str(path)):
            raise
        raise TemplateError(f"{path}: {error}") from None


def driver_settings(config: EsmConfig) -> dict[str, Any]:
    """The config as a scenario's ``[driver]`` table (EsmConfig field names)."""
    return dataclasses.asdict(config)


def with_template_esm(scenario: Any, path: Path, *, mapping: str | None = None) -> Any:
    """A copy of ``scenario`` whose event source mapping is the template's (its emulator-only
    fields, such as ``retry_safety_limit``, kept from the scenario)."""
    emulator = {k: v for k, v in scenario.driver.items()
                if k in ("retry_safety_limit", "max_payload_bytes")}
    config = load_esm_config(path, mapping=mapping, **emulator)
    return dataclasses.replace(scenario, driver=driver_settings(config))
