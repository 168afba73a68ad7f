"""harness.replication (one lane on a live table) without pytest's plugin machinery, and the
expected documents its lane builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.lane import esm_config, lane_settings
from replicator.expected import planner_for
from replicator.settings import Settings

SCENARIO = """
name = "transform-check"
description = "a scenario whose replicator settings have a transform"
[table]
partition_key = { name = "id", type = "S" }
[workload]
operations = 30
keys = 5
seed = 1
mix = { put_new = 4, update_set = 2 }
[replicator]
transforms = ["replicator.transforms:example"]
[expect]
result = "converge"
"""


def test_expected_documents_go_through_the_settings_transforms() -> None:
    settings = Settings(key_schema=("id",),
                        transforms=("replicator.transforms:example",))
    document = planner_for(settings).document("a", {"id": {"S": "a"}}, "1")
    assert document["age"] == 0  # the transform's default; Planner(settings) alone leaves it out


@pytest.mark.slow
def test_a_scenario_with_a_transform_converges(tmp_path: Path) -> None:
    # The runner's check used Planner(settings), which loads no transforms: every document
    # "diverged" by the fields the transform adds.
    from harness.runner import run_scenario
    from harness.scenario import load_scenario

    path = tmp_path / "transform.toml"
    path.write_text(SCENARIO)
    result = run_scenario(load_scenario(path), source="moto", target="mongomock")
    assert result.met, result.as_dict()["diff"]


def test_settings_and_esm_from_plain_data() -> None:
    from harness.backends.base import Table, TableSpec

    table = Table(TableSpec("t", ("pk", "S"), ("sk", "N")), "arn:aws:dynamodb:::table/t/stream/x")
    settings = lane_settings(table.spec, {"transforms": ["m:f"], "numbers": "float"})
    assert settings.key_schema == ("pk", "sk") and settings.transforms == ("m:f",)
    assert esm_config(None).report_batch_item_failures is True
    config = esm_config({"BatchSize": 7, "BisectBatchOnFunctionError": True})
    assert (config.batch_size, config.bisect_batch_on_function_error) == (7, True)
    assert config.report_batch_item_failures is False  # AWS's default without the response type
