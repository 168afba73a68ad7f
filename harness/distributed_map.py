"""AWS Step Functions, emulated for the export copy's state machine (deploy/export-copy.yaml):
the definition is read from the template and run here, its Distributed Map fanning out to the
functions the template names, concurrently in threads.

What is emulated is what that state machine uses, and nothing else is accepted (a state or field
outside it raises :class:`UnsupportedDefinition`, so the template cannot drift from what the
tests run):

* states ``Task`` (a ``!GetAtt <Function>.Arn`` resource: the function's ``Handler`` imported
  from the template and called with the payload and a Lambda context of its ``Timeout``),
  ``Pass``, ``Choice`` (``Variable`` + ``BooleanEquals``), ``Map`` in ``DISTRIBUTED`` mode,
  ``Succeed``; ``Parameters``, ``ResultSelector``, ``ResultPath``, ``ItemSelector``, ``Retry``;
* JSONPath of the Amazon States Language's reference paths (``$.a.b``, ``$$.Map.Item.Value``,
  ``$$.Map.Item.Index``) and the intrinsic ``States.StringToJson``. A hand-written subset: the
  JSONPath libraries do not know the ``$$`` context object nor the intrinsics, and only plain
  member paths occur in the definition;
* the Distributed Map's ``ItemReader`` ``arn:aws:states:::s3:getObject`` with ``ReaderConfig``
  ``InputType: JSONL`` (one item per line of the object, read from the S3 client given -- moto's
  in the tests), ``MaxConcurrency`` / ``MaxConcurrencyPath`` (the bound on the threads running
  children at once), ``ToleratedFailureCount``: once more children failed than tolerated, the
  map run stops starting children (the rest are *aborted*) and the execution fails with
  ``States.ExceedToleratedFailureThreshold``, as AWS does;
* ``Retry``: an error matching ``ErrorEquals`` (the exception's ``error_name`` attribute, else
  its class name, as Lambda names a Python function error) is retried up to ``MaxAttempts``
  times without waiting (``IntervalSeconds`` changes when, not whether, a retry succeeds);
* :meth:`StateMachine.redrive`: AWS's RedriveExecution -- the failed execution restarts at the
  state that failed with the input it had; a Distributed Map re-runs only its children that did
  not succeed (failed or aborted).

Template intrinsics in the definition are resolved once: ``!Ref`` / ``!Sub`` of a parameter take
the value given in ``parameters`` or the parameter's ``Default`` (as strings, as CloudFormation
substitutes them), ``!GetAtt <Function>.Arn`` names the function.
"""

from __future__ import annotations

import importlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.esm.lambda_context import LambdaContext
from harness.esm.template import load_template

STATE_MACHINE = "ExportCopyStateMachine"
S3_GET_OBJECT = "arn:aws:states:::s3:getObject"
EXCEEDED = "States.ExceedToleratedFailureThreshold"
SUCCEEDED, FAILED, ABORTED = "SUCCEEDED", "FAILED", "ABORTED"

Function = Callable[[dict[str, Any], Any], Any]

_STATE_FIELDS: dict[str, set[str]] = {
    "Task": {"Type", "Resource", "Parameters", "ResultSelector", "ResultPath", "OutputPath",
             "Retry", "Next", "End", "Comment"},
    "Pass": {"Type", "Parameters", "ResultPath", "Next", "End", "Comment"},
    "Choice": {"Type", "Choices", "Default", "Comment"},
    "Map": {"Type", "Label", "ItemReader", "ItemSelector", "MaxConcurrency", "MaxConcurrencyPath",
            "ToleratedFailureCount", "ItemProcessor", "ResultPath", "Next", "End", "Comment"},
    "Succeed": {"Type", "Comment"},
}


class UnsupportedDefinition(ValueError):
    """The definition uses a state, field or expression this emulation does not run."""


class StateFailed(Exception):
    """A state failed: ``error`` (the States error name) and ``cause``."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


# -- the definition --------------------------------------------------------------------------------
def read_definition(template: Mapping[str, Any], resource: str = STATE_MACHINE,
                    parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The state machine's definition from the template, template intrinsics resolved
    (module docstring); ``!GetAtt F.Arn`` becomes ``"function:F"``."""
    found = (template.get("Resources") or {}).get(resource)
    if not isinstance(found, Mapping) or found.get("Type") != "AWS::Serverless::StateMachine":
        raise UnsupportedDefinition(f"no AWS::Serverless::StateMachine {resource} in the template")
    definition = (found.get("Properties") or {}).get("Definition")
    if not isinstance(definition, Mapping):
        raise UnsupportedDefinition(f"{resource}: an inline Definition is what is emulated")
    values = {name: str((parameters or {}).get(name, spec.get("Default", "")))
              for name, spec in (template.get("Parameters") or {}).items()}
    resolved: dict[str, Any] = _intrinsics(definition, values)
    return resolved


def _intrinsics(value: Any, parameters: Mapping[str, str]) -> Any:
    if isinstance(value, Mapping):
        if len(value) == 1:
            (key, argument), = value.items()
            if key == "Ref":
                return parameters[str(argument)]
            if key == "Fn::Sub" and isinstance(argument, str):
                return re.sub(r"\$\{([A-Za-z0-9_:]+)\}", lambda m: parameters[m.group(1)], argument)
            if key == "Fn::GetAtt":
                name, attribute = argument if isinstance(argument, list) else argument.split(".")
                if attribute != "Arn":
                    raise UnsupportedDefinition(f"!GetAtt {name}.{attribute}")
                return f"function:{name}"
            if key.startswith("Fn::"):
                raise UnsupportedDefinition(f"template intrinsic {key} in the definition")
        return {k: _intrinsics(v, parameters) for k, v in value.items()}
    if isinstance(value, list):
        return [_intrinsics(v, parameters) for v in value]
    return value


def handlers_of(template: Mapping[str, Any]) -> dict[str, tuple[Function, float]]:
    """Each ``AWS::Serverless::Function`` of the template: its ``Handler`` imported (``module.
    function``) and its ``Timeout`` in seconds (a parameter's default when a ``!Ref``)."""
    parameters = template.get("Parameters") or {}
    default_timeout = ((template.get("Globals") or {}).get("Function") or {}).get("Timeout", 3)
    found: dict[str, tuple[Function, float]] = {}
    for name, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, Mapping) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource.get("Properties") or {}
        module, _, attribute = str(properties["Handler"]).rpartition(".")
        timeout = properties.get("Timeout", default_timeout)
        if isinstance(timeout, Mapping):
            timeout = parameters[timeout["Ref"]]["Default"]
        found[name] = (getattr(importlib.import_module(module), attribute), float(timeout))
    return found


# -- paths and payloads ----------------------------------------------------------------------------
def _path(expression: str, data: Any, context: Mapping[str, Any]) -> Any:
    if expression.startswith("States.StringToJson(") and expression.endswith(")"):
        argument = expression[len("States.StringToJson("):-1].strip()
        if argument.startswith("'") and argument.endswith("'"):
            return json.loads(argument[1:-1])
        return json.loads(_path(argument, data, context))
    if expression.startswith("$$"):
        root, rest = context, expression[2:]
    elif expression.startswith("$"):
        root, rest = data, expression[1:]
    else:
        raise UnsupportedDefinition(f"expression {expression!r}")
    value: Any = root
    for part in filter(None, rest.split(".")):
        if not re.fullmatch(r"[A-Za-z0-9_]+", part):
            raise UnsupportedDefinition(f"path {expression!r}: only member names are emulated")
        if not isinstance(value, Mapping) or part not in value:
            raise StateFailed("States.Runtime", f"the path {expression!r} matches nothing")
        value = value[part]
    return value


def payload(template: Any, data: Any, context: Mapping[str, Any]) -> Any:
    """``Parameters`` / ``ItemSelector`` / ``ResultSelector`` applied: a ``name.$`` field takes
    the value of its path or intrinsic, other fields are copied (objects recursively)."""
    if isinstance(template, Mapping):
        out: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$"):
                out[key[:-2]] = _path(str(value), data, context)
            else:
                out[key] = payload(value, data, context)
        return out
    if isinstance(template, list):
        return [payload(v, data, context) for v in template]
    return template


def _result_path(state: Mapping[str, Any], data: Any, result: Any) -> Any:
    if "ResultPath" not in state or state["ResultPath"] == "$":
        return result
    where = state["ResultPath"]
    if where is None:
        return data
    parts = str(where).split(".")
    if parts[0] != "$" or len(parts) < 2:
        raise UnsupportedDefinition(f"ResultPath {where!r}")
    out = json.loads(json.dumps(data))  # a copy: the state's input stays as it was
    node = out
    for part in parts[1:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = result
    return out


def _output_path(state: Mapping[str, Any], data: Any) -> Any:
    """``OutputPath``: ``null`` makes the state's output ``{}`` (States language: "Paths")."""
    if "OutputPath" not in state or state["OutputPath"] == "$":
        return data
    if state["OutputPath"] is None:
        return {}
    raise UnsupportedDefinition(f"OutputPath {state['OutputPath']!r}")


def error_name(error: BaseException) -> str:
    """The States error name of a function's exception: Lambda reports a Python function error
    by its class name (``errorType``); an emulated platform failure can name itself
    (``error_name``, e.g. ``Sandbox.Timedout``)."""
    return str(getattr(error, "error_name", type(error).__name__))


# -- runs ------------------------------------------------------------------------------------------
@dataclass
class ChildRun:
    """One item of a Distributed Map: its input, and how its child execution ended."""

    index: int
    input: dict[str, Any]
    status: str = "PENDING"
    output: Any = None
    error: str | None = None
    cause: str | None = None
    attempts: int = 0
    #: what the child's (last) Task function returned, as its execution history shows it
    task_result: Any = None
    #: CPU seconds of the child's thread (its function calls: reading, parsing, planning, the
    #: client side of the writes), for the per-child cost of benchmarks/bench_distributed_export.py
    cpu_s: float = 0.0


@dataclass
class MapRun:
    """A Distributed Map state's run: every item's child, the concurrency bound, the peak of
    children running at once."""

    state: str
    max_concurrency: int
    tolerated_failures: int
    children: list[ChildRun] = field(default_factory=list)
    peak_concurrency: int = 0
    started: int = 0  # child executions started, over the run and its redrives
    elapsed_s: float = 0.0  # wall time of the map state, over the run and its redrives

    def count(self, status: str) -> int:
        return sum(1 for c in self.children if c.status == status)

    @property
    def failed(self) -> bool:
        return self.count(FAILED) > self.tolerated_failures or self.count(ABORTED) > 0


@dataclass
class Execution:
    """One execution: ``SUCCEEDED`` with ``output``, or ``FAILED`` at ``failed_state`` (whose
    input is kept for a redrive) with ``error`` and ``cause``."""

    input: dict[str, Any]
    status: str = "RUNNING"
    output: Any = None
    error: str | None = None
    cause: str | None = None
    failed_state: str | None = None
    failed_input: Any = None
    states: list[str] = field(default_factory=list)  # the states entered, in order
    map_runs: dict[str, MapRun] = field(default_factory=dict)
    redrives: int = 0


class StateMachine:
    """The template's state machine, runnable (module docstring).

    ``s3``: the client the ItemReader reads with; ``functions``: the callables of the Task
    resources by logical id (default: each function's Handler, imported from the template)."""

    def __init__(self, definition: Mapping[str, Any], functions: Mapping[str, tuple[Function, float]],
                 s3: Any) -> None:
        self.definition = definition
        self.functions = dict(functions)
        self.s3 = s3
        _check(definition)

    @classmethod
    def from_template(cls, path: str | Path, s3: Any, *, resource: str = STATE_MACHINE,
                      parameters: Mapping[str, str] | None = None,
                      functions: Mapping[str, tuple[Function, float]] | None = None) -> StateMachine:
        template = load_template(Path(path))
        return cls(read_definition(template, resource, parameters),
                   functions if functions is not None else handlers_of(template), s3)

    def map_state(self) -> tuple[str, dict[str, Any]]:
        """The (first) Distributed Map state: its name and definition."""
        for name, state in self.definition["States"].items():
            if state["Type"] == "Map":
                return name, dict(state)
        raise UnsupportedDefinition("no Map state")

    # -- executions ------------------------------------------------------------------------------
    def start(self, execution_input: dict[str, Any]) -> Execution:
        """StartExecution, run to its end (SUCCEEDED or FAILED)."""
        execution = Execution(dict(execution_input))
        self._run(execution, self.definition["StartAt"], execution.input)
        return execution

    def redrive(self, execution: Execution) -> Execution:
        """RedriveExecution: from the failed state, with its input; a Distributed Map re-runs
        the children that did not succeed."""
        if execution.status != FAILED or execution.failed_state is None:
            raise ValueError(f"only a failed execution is redriven (this one is {execution.status})")
        execution.redrives += 1
        execution.status, execution.error, execution.cause = "RUNNING", None, None
        self._run(execution, execution.failed_state, execution.failed_input)
        return execution

    def _run(self, execution: Execution, name: str, data: Any) -> None:
        states = self.definition["States"]
        while True:
            state = states[name]
            execution.states.append(name)
            try:
                kind = state["Type"]
                if kind == "Succeed":
                    execution.status, execution.output = SUCCEEDED, data
                    return
                if kind == "Choice":
                    name = _choose(state, data)
                    continue
                if kind == "Pass":
                    result = payload(state["Parameters"], data, {}) if "Parameters" in state else data
                elif kind == "Task":
                    event = payload(state["Parameters"], data, {}) if "Parameters" in state else data
                    result = self._task(state, event)[0]
                    if "ResultSelector" in state:
                        result = payload(state["ResultSelector"], result, {})
                else:  # Map
                    result = self._map(execution, name, state, data)
                data = _output_path(state, _result_path(state, data, result))
            except StateFailed as failure:
                execution.status, execution.error, execution.cause = FAILED, failure.error, failure.cause
                execution.failed_state, execution.failed_input = name, data
                return
            if state.get("End"):
                execution.status, execution.output = SUCCEEDED, data
                return
            name = state["Next"]

    def _task(self, state: Mapping[str, Any], event: Any) -> tuple[Any, int]:
        """Invoke the Task's function with its Retry policy; (result, attempts)."""
        resource = str(state["Resource"])
        if not resource.startswith("function:"):
            raise UnsupportedDefinition(f"Task resource {resource!r}: a template function is emulated")
        handle, timeout = self.functions[resource[len("function:"):]]
        retries = {id(r): 0 for r in state.get("Retry", [])}
        attempts = 0
        while True:
            attempts += 1
            try:
                return handle(json.loads(json.dumps(event)), LambdaContext(timeout)), attempts
            except Exception as error:
                name = error_name(error)
                policy = next((r for r in state.get("Retry", [])
                               if name in r["ErrorEquals"] or "States.ALL" in r["ErrorEquals"]), None)
                if policy is None or retries[id(policy)] >= int(policy.get("MaxAttempts", 3)):
                    raise StateFailed(name, str(error)) from error
                retries[id(policy)] += 1

    def _map(self, execution: Execution, name: str, state: Mapping[str, Any], data: Any) -> Any:
        run = execution.map_runs.get(name)
        if run is None:
            limit = (state["MaxConcurrency"] if "MaxConcurrency" in state
                     else _path(state["MaxConcurrencyPath"], data, {}))
            run = MapRun(name, int(limit), int(state.get("ToleratedFailureCount", 0)))
            items = self._items(state["ItemReader"], data)
            for index, value in enumerate(items):
                context = {"Map": {"Item": {"Index": index, "Value": value}}}
                selected = payload(state["ItemSelector"], data, context) if "ItemSelector" in state else value
                run.children.append(ChildRun(index, selected))
            execution.map_runs[name] = run
        todo = [c for c in run.children if c.status != SUCCEEDED]
        for child in todo:
            child.status, child.error, child.cause = "PENDING", None, None
        processor = state["ItemProcessor"]
        lock = threading.Lock()
        running = [0]
        failures = [run.count(FAILED)]

        def child_execution(child: ChildRun) -> None:
            with lock:
                if failures[0] > run.tolerated_failures:
                    child.status = ABORTED  # the map run is failing: no new child starts
                    return
                running[0] += 1
                run.started += 1
                run.peak_concurrency = max(run.peak_concurrency, running[0])
            cpu = time.thread_time()
            try:
                child.output, child.attempts, child.task_result = self._processor(
                    processor, child.input)
                child.status = SUCCEEDED
            except StateFailed as failure:
                child.status, child.error, child.cause = FAILED, failure.error, failure.cause
                with lock:
                    failures[0] += 1
            finally:
                child.cpu_s += time.thread_time() - cpu
                with lock:
                    running[0] -= 1

        # AWS's MaxConcurrency 0 means "as many as possible" (up to 10,000 children at once).
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=run.max_concurrency or 10_000,
                                thread_name_prefix=f"map-{name}") as pool:
            list(pool.map(child_execution, todo))
        run.elapsed_s += time.perf_counter() - began
        if run.failed:
            raise StateFailed(EXCEEDED, f"{run.count(FAILED)} child execution(s) failed, "
                              f"{run.count(ABORTED)} aborted; first: "
                              + next((f"item {c.index}: {c.error}: {c.cause}" for c in run.children
                                      if c.status == FAILED), "-"))
        return [c.output for c in run.children]

    def _processor(self, processor: Mapping[str, Any], item: Any) -> tuple[Any, int, Any]:
        """One child execution of the ItemProcessor (Task and Pass states): its output, the
        attempts of its Tasks, the last Task's result."""
        states = processor["States"]
        name = processor["StartAt"]
        data = item
        attempts = 0
        result: Any = None
        while True:
            state = states[name]
            if state["Type"] == "Task":
                event = payload(state["Parameters"], data, {}) if "Parameters" in state else data
                result, tried = self._task(state, event)
                attempts += tried
                data = _output_path(state, _result_path(state, data, result))
            elif state["Type"] == "Pass":
                data = _result_path(state, data, payload(state.get("Parameters", {}), data, {})
                                    if "Parameters" in state else data)
            else:
                raise UnsupportedDefinition(f"{state['Type']} in an ItemProcessor")
            if state.get("End"):
                return data, attempts, result
            name = state["Next"]

    def _items(self, reader: Mapping[str, Any], data: Any) -> list[Any]:
        where = payload(reader["Parameters"], data, {})
        body = self.s3.get_object(Bucket=where["Bucket"], Key=where["Key"])["Body"].read()
        return [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]


def _choose(state: Mapping[str, Any], data: Any) -> str:
    for rule in state["Choices"]:
        if _path(rule["Variable"], data, {}) is rule["BooleanEquals"]:
            return str(rule["Next"])
    if "Default" not in state:
        raise StateFailed("States.NoChoiceMatched", "no choice matched and no Default")
    return str(state["Default"])


def _check(definition: Mapping[str, Any], where: str = "") -> None:
    """Refuse what this emulation would not run as AWS does (module docstring)."""
    for name, state in definition["States"].items():
        kind = state.get("Type")
        if kind not in _STATE_FIELDS:
            raise UnsupportedDefinition(f"{where}{name}: state type {kind!r}")
        extra = set(state) - _STATE_FIELDS[kind]
        if extra:
            raise UnsupportedDefinition(f"{where}{name}: {sorted(extra)} not emulated")
        if kind == "Choice":
            for rule in state["Choices"]:
                if set(rule) != {"Variable", "BooleanEquals", "Next"}:
                    raise UnsupportedDefinition(f"{where}{name}: choice {rule}")
        if kind == "Map":
            reader = state.get("ItemReader") or {}
            if reader.get("Resource") != S3_GET_OBJECT or \
                    (reader.get("ReaderConfig") or {}).get("InputType") != "JSONL":
                raise UnsupportedDefinition(f"{where}{name}: ItemReader {reader}: the s3:getObject "
                                            "reader of a JSONL object is emulated")
            config = state["ItemProcessor"].get("ProcessorConfig") or {}
            if config.get("Mode") != "DISTRIBUTED":
                raise UnsupportedDefinition(f"{where}{name}: an INLINE Map")
            _check(state["ItemProcessor"], f"{where}{name}/")


# -- an export in S3 -------------------------------------------------------------------------------
def upload_export(s3: Any, bucket: str, root: Path, prefix: str = "exports") -> str:
    """Put the export directory ``root`` (``write_export``'s: .../AWSDynamoDB/<id>) in ``bucket``
    under ``prefix`` as DynamoDB writes it; returns its ``s3://`` location."""
    export_id = root.name
    base = f"{prefix}/AWSDynamoDB/{export_id}"
    for path in sorted(root.rglob("*")):
        if path.is_file():
            s3.put_object(Bucket=bucket, Key=f"{base}/{path.relative_to(root).as_posix()}",
                          Body=path.read_bytes())
    return f"s3://{bucket}/{base}"
