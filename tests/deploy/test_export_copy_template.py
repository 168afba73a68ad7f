"""deploy/export-copy.yaml (issue 22): cfn-lint on the template, and on its state machine's
definition as Step Functions reads it.

``sam validate --lint`` and cfn-lint read a SAM template's inline ``Definition`` only after the
transform has turned it into a ``DefinitionString`` (a Fn::Join of JSON text) they do not parse, so
the Amazon States Language schema (cfn-lint's E3601) is checked here on the definition lifted into
a plain ``AWS::StepFunctions::StateMachine``, template intrinsics resolved as CloudFormation would.
``sam validate --lint`` runs in tests/deploy/test_sam_build.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.distributed_map import read_definition
from harness.esm.template import load_template
from support.cfn_lint import cfn_lint

ROOT = Path(__file__).resolve().parents[2]
EXPORT_COPY = ROOT / "deploy" / "export-copy.yaml"
PARAMETERS = {"TableName": "orders", "ExportBucket": "exports", "ExportPrefix": "p",
              "MongoDbUriSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:u",
              "KeySchema": "pk"}


def _lifted(definition: Any, into: Path) -> Path:
    """The definition in a plain CloudFormation template, each ``function:<Name>`` a Lambda ARN."""
    text = json.dumps(definition).replace(
        '"function:', '"arn:aws:lambda:us-east-1:123456789012:function:')
    template = {"AWSTemplateFormatVersion": "2010-09-09", "Resources": {"Machine": {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {"RoleArn": "arn:aws:iam::123456789012:role/machine",
                       "Definition": json.loads(text)}}}}
    into.write_text(json.dumps(template, indent=1))
    return into


@pytest.mark.slow
def test_the_export_copy_template_passes_cfn_lint() -> None:
    code, output = cfn_lint(EXPORT_COPY)
    assert code == 0, output


@pytest.mark.slow
def test_the_state_machine_definition_passes_the_states_language_schema(tmp_path: Path) -> None:
    definition = read_definition(load_template(EXPORT_COPY), parameters=PARAMETERS)
    assert "States.StringToJson('8')" in json.dumps(definition)  # MaxConcurrency's default
    code, output = cfn_lint(_lifted(definition, tmp_path / "machine.json"))
    assert code == 0, output
    # the check is real: a field the language does not have is caught
    broken = json.loads(json.dumps(definition))
    broken["States"]["LoadDataFiles"]["MaxConcurrencyPathX"] = "$.MaxConcurrency"
    code, output = cfn_lint(_lifted(broken, tmp_path / "broken.json"))
    assert code != 0 and "E3601" in output


def test_the_functions_may_read_only_the_export_and_the_table_s_stream() -> None:
    resources = load_template(EXPORT_COPY)["Resources"]
    child = json.dumps(resources["ExportFileFunction"]["Properties"]["Policies"])
    assert "dynamodb:" not in child and "s3:GetObject" in child and "s3:*" not in child
    stream = json.dumps(resources["ExportStreamFunction"]["Properties"]["Policies"])
    assert "dynamodb:GetRecords" in stream and "dynamodb:PutItem" not in stream
    assert '"Resource": "*"' not in child + stream
