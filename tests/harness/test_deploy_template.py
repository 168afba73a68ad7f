"""deploy/template.yaml: valid for cfn-lint, the settings we mean, and read by the driver."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.esm.config import EsmConfig
from harness.esm.template import (
    TemplateError,
    esm_config_from_template,
    load_esm_config,
    load_template,
    read_mappings,
    with_template_esm,
)
from support.cfn_lint import cfn_lint as _cfn_lint

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "template.yaml"

if importlib.util.find_spec("replicator.metrics") is not None:
    # the handler's metrics (one home): the alarms must name what it emits
    from replicator.metrics import DEFAULT_NAMESPACE as METRICS_NAMESPACE
    from replicator.metrics import DIMENSIONS as METRIC_DIMENSIONS
else:  # before the handler emits metrics (issue 19, item 2), the names the alarms expect
    METRICS_NAMESPACE, METRIC_DIMENSIONS = "DdbMongoReplicator", ("Table", "Collection")


@pytest.mark.slow
def test_the_template_passes_cfn_lint() -> None:
    code, output = _cfn_lint(TEMPLATE)
    assert code == 0, output


@pytest.mark.slow
def test_cfn_lint_catches_a_broken_copy(tmp_path: Path) -> None:
    broken = tmp_path / "template.yaml"
    broken.write_text(TEMPLATE.read_text().replace(
        "MessageRetentionPeriod: 1209600", "MessageRetentionPeriod: 99999999"))
    code, output = _cfn_lint(broken)
    assert code != 0
    assert "E3034" in output


def test_the_mapping_has_the_settings_the_replicator_needs() -> None:
    (mapping,) = read_mappings(load_template(TEMPLATE))
    assert mapping.name == "TableStreamMapping"
    assert mapping.properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping.properties["BisectBatchOnFunctionError"] is True
    assert mapping.on_failure_destination
    # Only outages reach the mapping's retries (bad records are quarantined): no retry count
    # discards a batch; the record age does, an hour before the stream's 24 h retention trims it,
    # so the on-failure message's range can still be read back (deploy/README.md).
    assert mapping.properties["MaximumRetryAttempts"] == -1
    assert 20 * 3600 <= mapping.properties["MaximumRecordAgeInSeconds"] <= 23 * 3600


def test_a_parameter_chooses_the_source_and_its_mapping() -> None:
    template = load_template(TEMPLATE)
    resources = template["Resources"]
    assert resources["TableStreamMapping"]["Condition"] == "UsesDynamoDBStream"
    kinesis = resources["KinesisStreamMapping"]
    assert kinesis["Condition"] == "UsesKinesis"
    properties = kinesis["Properties"]
    assert properties["EventSourceArn"] == {"Ref": "KinesisStreamArn"}
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["BisectBatchOnFunctionError"] is True
    assert properties["MaximumRetryAttempts"] == -1
    assert properties["DestinationConfig"]["OnFailure"]["Destination"]
    age = template["Parameters"]["KinesisMaximumRecordAgeSeconds"]
    assert properties["MaximumRecordAgeInSeconds"] == {"Ref": "KinesisMaximumRecordAgeSeconds"}
    assert age["MaxValue"] == 604800 and age["Default"] < 24 * 3600  # below the 24 h minimum
    retention = template["Parameters"]["KinesisRetentionSeconds"]
    assert (retention["MinValue"], retention["MaxValue"]) == (86400, 365 * 86400)
    variables = resources["ReplicatorFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["REPLICATOR_SOURCE"] == {"Fn::If": ["UsesKinesis", "kinesis", "dynamodb"]}
    assert variables["REPLICATOR_STREAM_RETENTION_S"]["Fn::If"][1] == {
        "Ref": "KinesisRetentionSeconds"}
    pattern = re.compile(template["Parameters"]["TableStreamArn"]["AllowedPattern"])
    assert pattern.fullmatch("arn:aws:dynamodb:eu-west-1:123456789012:table/users")
    assert pattern.fullmatch("arn:aws:dynamodb:eu-west-1:123456789012:table/users/stream/2026-01")
    assert not pattern.fullmatch("arn:aws:kinesis:eu-west-1:123456789012:stream/users")
    # the driver reads the DynamoDB stream's mapping only
    assert [m.name for m in read_mappings(template)] == ["TableStreamMapping"]


def test_the_uri_is_not_in_the_functions_environment() -> None:
    template = load_template(TEMPLATE)
    function = template["Resources"]["ReplicatorFunction"]["Properties"]
    variables = function["Environment"]["Variables"]
    assert "MONGODB_URI" not in variables
    assert variables["MONGODB_URI_SECRET_ARN"] == {"Ref": "MongoDbUriSecretArn"}
    policy = function["Policies"][0]["AWSSecretsManagerGetSecretValuePolicy"]
    assert policy == {"SecretArn": {"Ref": "MongoDbUriSecretArn"}}
    assert function["Handler"] == "replicator.handler.lambda_handler"


def _alarms() -> dict[tuple[Any, str], dict[str, Any]]:
    """The template's alarms by (namespace, metric name) of the metric they watch."""
    found = {}
    for resource in load_template(TEMPLATE)["Resources"].values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        alarm = resource["Properties"]
        stats = [m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m]
        for metric in stats or [alarm]:
            found[(json.dumps(metric["Namespace"]), metric["MetricName"])] = {**alarm, **metric}
    return found


def test_the_alarms_watch_lag_errors_quarantines_and_discarded_batches() -> None:
    template = load_template(TEMPLATE)
    alarms = _alarms()
    function = {"Name": "FunctionName", "Value": {"Ref": "ReplicatorFunction"}}
    assert alarms[('"AWS/Lambda"', "IteratorAge")]["Dimensions"] == [function]
    assert alarms[('"AWS/Lambda"', "Errors")]["Dimensions"] == [function]
    queue = alarms[('"AWS/SQS"', "ApproximateNumberOfMessagesVisible")]
    assert queue["Dimensions"] == [{"Name": "QueueName", "Value": {
        "Fn::GetAtt": ["DiscardedBatchesQueue", "QueueName"]}}]
    # The handler's per-batch EMF metric: the function's namespace, exactly its dimensions.
    quarantined = alarms[('{"Ref": "MetricsNamespace"}', "Quarantined")]
    assert [d["Name"] for d in quarantined["Dimensions"]] == list(METRIC_DIMENSIONS)
    table = quarantined["Dimensions"][0]["Value"]
    # the table's name out of the stream's ARN, as CloudFormation evaluates Select(Split(...))
    index, split = table["Fn::Select"]
    assert split["Fn::Split"][1] == {"Ref": "TableStreamArn"}
    stream_arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/users/stream/2026-01-01T00:00:00.000"
    assert stream_arn.split(split["Fn::Split"][0])[index] == "users"
    # with a Kinesis source the parameter is the table's ARN: the same name
    table_arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/users"
    assert table_arn.split(split["Fn::Split"][0])[index] == "users"
    assert quarantined["Dimensions"][1]["Value"] == {"Ref": "MongoDbCollection"}
    assert template["Parameters"]["MetricsNamespace"]["Default"] == METRICS_NAMESPACE
    variables = template["Resources"]["ReplicatorFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == {"Ref": "MetricsNamespace"}
    assert variables["POWERTOOLS_SERVICE_NAME"]
    # Every alarm notifies the topic only when one is given (an e-mail or an existing topic).
    topic = {"Fn::If": ["HasAlarmTopicArn", {"Ref": "AlarmTopicArn"}, {"Ref": "AlarmTopic"}]}
    for alarm in alarms.values():
        assert alarm["TreatMissingData"] == "notBreaching"
        for actions in ("AlarmActions", "OKActions"):
            assert alarm[actions] == {"Fn::If": ["Notifies", [topic], {"Ref": "AWS::NoValue"}]}
    assert template["Resources"]["AlarmTopic"]["Condition"] == "CreateAlarmTopic"


def test_the_architecture_and_vpc_are_parameters() -> None:
    template = load_template(TEMPLATE)
    function = template["Resources"]["ReplicatorFunction"]["Properties"]
    assert template["Parameters"]["Architecture"]["AllowedValues"] == ["x86_64", "arm64"]
    assert function["Architectures"] == [{"Ref": "Architecture"}]
    # both empty (the defaults): no VpcConfig at all; a rule refuses one without the other
    assert function["VpcConfig"] == {"Fn::If": ["HasVpc", {
        "SubnetIds": {"Ref": "SubnetIds"}, "SecurityGroupIds": {"Ref": "SecurityGroupIds"}},
        {"Ref": "AWS::NoValue"}]}
    assert template["Parameters"]["SubnetIds"]["Default"] == ""
    assert template["Parameters"]["SecurityGroupIds"]["Default"] == ""
    assert "VpcNeedsSubnetsAndSecurityGroups" in template["Rules"]


def test_the_driver_reads_the_templates_mapping() -> None:
    assert load_esm_config(TEMPLATE) == EsmConfig(
        batch_size=100, maximum_batching_window_s=1, parallelization_factor=1,
        starting_position="TRIM_HORIZON", maximum_retry_attempts=-1, maximum_record_age_s=82800,
        bisect_batch_on_function_error=True, report_batch_item_failures=True,
    )


PLAIN_CFN = """
Parameters:
  Batch: {Type: Number, Default: "25"}
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  Queue:
    Type: AWS::SQS::Queue
  Mapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      EventSourceArn: !GetAtt Table.StreamArn
      FunctionName: !Sub "${AWS::StackName}-fn"
      StartingPosition: LATEST
      BatchSize: !Ref Batch
      ParallelizationFactor: 4
      DestinationConfig: {OnFailure: {Destination: !GetAtt [Queue, Arn]}}
  SqsMapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties: {EventSourceArn: !GetAtt Queue.Arn, FunctionName: fn}
"""


def test_plain_cloudformation_with_short_form_tags(tmp_path: Path) -> None:
    path = tmp_path / "cfn.yaml"
    path.write_text(PLAIN_CFN)
    template = load_template(path)
    properties = template["Resources"]["Mapping"]["Properties"]
    assert properties["EventSourceArn"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert properties["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["Queue", "Arn"]}
    (mapping,) = read_mappings(template)  # the SQS mapping is not a stream's
    assert mapping.on_failure_destination
    config = load_esm_config(path)
    assert (config.batch_size, config.parallelization_factor, config.starting_position) == (
        25, 4, "LATEST")
    # AWS's default when FunctionResponseTypes is absent: the response is not read.
    assert config.report_batch_item_failures is False


@pytest.mark.parametrize("change, message", [
    ({"BatchSize": {"Fn::Sub": "1"}}, "cannot evaluate Fn::Sub"),
    ({"BatchSize": {"Ref": "Missing"}}, "!Ref Missing is not a template parameter"),
    ({"ParallelizationFactor": 11}, "parallelization_factor must be an integer 1..10"),
])
def test_a_value_the_driver_cannot_use_is_named(change: dict[str, object], message: str) -> None:
    template = {"Resources": {"Fn": {"Type": "AWS::Serverless::Function", "Properties": {
        "Events": {"S": {"Type": "DynamoDB", "Properties": {"StartingPosition": "LATEST",
                                                            **change}}}}}}}
    with pytest.raises(TemplateError, match=message):
        esm_config_from_template(template)


def test_several_mappings_must_be_named() -> None:
    event = {"Type": "DynamoDB", "Properties": {"BatchSize": 7}}
    template = {"Resources": {"Fn": {"Type": "AWS::Serverless::Function", "Properties": {
        "Events": {"A": event, "B": {**event, "Properties": {"BatchSize": 9}}}}}}}
    with pytest.raises(TemplateError, match="several"):
        esm_config_from_template(template)
    assert esm_config_from_template(template, mapping="B").batch_size == 9
    assert esm_config_from_template(template, mapping="Fn.A").batch_size == 7


@pytest.mark.slow
def test_a_scenario_runs_with_the_templates_settings() -> None:
    from harness.runner import driver_config, run_scenario
    from harness.scenario import load_scenario

    smoke = load_scenario("smoke")
    deployed = with_template_esm(smoke, TEMPLATE)
    assert driver_config(deployed) == load_esm_config(TEMPLATE)
    assert driver_config(smoke) != driver_config(deployed)
    result = run_scenario(deployed, source="moto", target="mongomock")
    assert result.met, result.as_dict()["diff"]
    primary = result.outcomes[0]
    assert primary.driver["records_completed"] == result.stream_records
    # BatchSize 100 from the template, not the scenario's 25.
    assert primary.driver["mean_batch_size"] > 25 or result.stream_records <= 25


@pytest.mark.slow
def test_harness_run_takes_the_templates_settings(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from harness.cli import app

    runner = CliRunner()
    report = tmp_path / "r.json"
    result = runner.invoke(app, ["run", "smoke", "--esm-template", str(TEMPLATE),
                                 "--report-json", str(report)])
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["converged"] is True
    missing = runner.invoke(app, ["run", "smoke", "--esm-template", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    assert "nope.yaml:" in missing.output and "no such file" in missing.output  # rich wraps lines
    assert "Traceback" not in missing.output
