"""What DescribeTable says about a table the poller reads: stream ARN, key schema, view type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replicator.errors import ConfigurationError, ResourceUnavailable
from replicator.poller.streams import error_code


@dataclass(frozen=True)
class TableInfo:
    name: str
    stream_arn: str
    key_schema: tuple[str, ...]
    stream_view_type: str | None


def describe_table(dynamodb: Any, table: str) -> TableInfo:
    """Stream ARN, key schema (partition first) and stream view type from DescribeTable."""
    try:
        description = dynamodb.describe_table(TableName=table)["Table"]
    except Exception as error:
        if error_code(error) == "ResourceNotFoundException":
            raise ResourceUnavailable(
                f"table {table!r} not found (check --table, --region and --endpoint-url)"
            ) from None
        raise
    stream_arn = description.get("LatestStreamArn")
    spec = description.get("StreamSpecification") or {}
    if not stream_arn or spec.get("StreamEnabled") is False:
        raise ConfigurationError(
            f"table {table!r} has no stream enabled: turn on DynamoDB Streams "
            "(NEW_AND_OLD_IMAGES recommended) before replicating"
        )
    kinds = {k["KeyType"]: k["AttributeName"] for k in description["KeySchema"]}
    key_schema = (kinds["HASH"],) + ((kinds["RANGE"],) if "RANGE" in kinds else ())
    return TableInfo(table, stream_arn, key_schema, spec.get("StreamViewType"))
