"""AWS Lambda's event source mapping for DynamoDB Streams, emulated.

:mod:`~harness.esm.mapping` (``EventSourceMapping``: batching, ParallelizationFactor, retries,
bisection, partial batch responses), its settings (:mod:`~harness.esm.config`, also from a SAM
template: :mod:`~harness.esm.template`), its report (:mod:`~harness.esm.report`), the response
contract (:mod:`~harness.esm.response`), the shards' bookkeeping (:mod:`~harness.esm.shards`),
the on-failure destination message (:mod:`~harness.esm.destination`), the Lambda event records
(:mod:`~harness.esm.lambda_events`) and context (:mod:`~harness.esm.lambda_context`).
Nothing is re-exported here: import from the module that holds a name.
"""
