"""Sluice plugin `summarize-py`, written in plain Python (componentize-py).

Task types:

- ``summarize_json``: params ``{"values": [numbers...]}`` ->
  ``{"count", "sum", "min", "max", "mean"}`` (``min``/``max``/``mean`` are
  null for an empty list). A missing ``values`` array or a non-numeric value
  is a fatal error; ``{"fail": "retryable"}`` returns a retryable error, to
  exercise the retry path.
- ``parse_log_file_py``: the ``parse_log_file`` task of the Rust plugin
  ``plugins/parse-log-file`` re-implemented in Python, with the same result
  ``{"lines", "levels", "top_errors"}``. Params: ``{"text": "..."}`` or
  ``{"path": "app.log"}`` (relative, read under ``/data``, which exists only
  when the manifest grants it).

The host interface is imported from ``wit_world``, the bindings package that
``componentize-py`` generates from ``guest-sdk/wit/plugin.wit`` at build time.
"""

import collections
# componentize-py bundles only the standard-library modules imported while it
# snapshots this module at build time: Counter.most_common(n) imports heapq
# lazily, inside the call, so it is imported here explicitly.
import heapq  # noqa: F401
import json
import math
import re

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import Task, TaskError_Fatal, TaskError_Retryable

DATA_DIR = "/data"
TOP_ERRORS = 5
LEVEL = re.compile(r"\b(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL)\b")


class Fatal(Exception):
    """A permanent failure: the task goes to the dead-letter queue."""


class Retryable(Exception):
    """A transient failure: the host retries the task with backoff."""


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def parse_params(text):
    """The params JSON object (NaN and Infinity are rejected, as in strict JSON)."""
    try:
        params = json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        raise Fatal(f"params are not valid JSON: {e}") from None
    if not isinstance(params, dict):
        raise Fatal("params must be a JSON object")
    return params


def is_number(v):
    # bool is a subclass of int in Python, but true/false are not numbers in JSON.
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def summarize(values):
    if not isinstance(values, list):
        raise Fatal('params must have "values": an array of numbers')
    for i, v in enumerate(values):
        if not is_number(v):
            raise Fatal(f"values[{i}] is not a number: {json.dumps(v)}")
    if not values:
        return {"count": 0, "sum": 0, "min": None, "max": None, "mean": None}
    total = sum(values)
    if isinstance(total, float) and not math.isfinite(total):
        raise Fatal("the sum of values overflows")
    return {
        "count": len(values),
        "sum": total,
        "min": min(values),
        "max": max(values),
        "mean": total / len(values),
    }


def parse_log_text(text):
    """Exactly the reference worker's parse_log_text (shared/peers/seed_worker.py)."""
    levels = collections.Counter()
    errors = collections.Counter()
    lines = text.splitlines()
    for line in lines:
        m = LEVEL.search(line)
        if not m:
            continue
        levels[m.group(1)] += 1
        if m.group(1) in ("ERROR", "FATAL"):
            errors[line[m.end():].strip()] += 1
    return {"lines": len(lines), "levels": dict(levels),
            "top_errors": errors.most_common(TOP_ERRORS)}


def resolve_data_path(path):
    """A relative `path` under /data; absolute paths and `..` are refused."""
    if not isinstance(path, str) or not path:
        raise Fatal('"path" must be a non-empty string')
    parts = path.split("/")
    if path.startswith("/"):
        raise Fatal(f"`path` {path!r} must be relative (to {DATA_DIR})")
    if ".." in parts:
        raise Fatal(f"`path` {path!r} must not contain `..`")
    return f"{DATA_DIR}/{path}"


def parse_log_file(params):
    path, text = params.get("path"), params.get("text")
    if path is not None and text is not None:
        raise Fatal("params must have either `path` or `text`, not both")
    if text is not None:
        if not isinstance(text, str):
            raise Fatal('"text" must be a string')
        return parse_log_text(text)
    if path is None:
        raise Fatal("params must have `path` (relative to /data) or `text`")
    full = resolve_data_path(path)
    try:
        # newline="": keep line breaks as they are; splitlines() splits them.
        with open(full, encoding="utf-8", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise Fatal(f"cannot read {full}: {e}") from None
    return parse_log_text(text)


class WitWorld(wit_world.WitWorld):
    def task_types(self):
        return ["summarize_json", "parse_log_file_py"]

    def handle(self, task: Task) -> str:
        try:
            params = parse_params(task.params)
            if params.get("fail") == "retryable":
                raise Retryable(f"asked to fail (attempt {task.attempt})")
            if task.task_type == "summarize_json":
                result = summarize(params.get("values"))
                host.log(host.Level.INFO,
                         f"summarize-py: summarized {result['count']} values for task {task.id}")
            elif task.task_type == "parse_log_file_py":
                result = parse_log_file(params)
                host.log(host.Level.INFO,
                         f"summarize-py: parsed {result['lines']} lines for task {task.id}")
            else:
                raise Fatal(f"unknown task type {task.task_type!r}")
            return json.dumps(result, allow_nan=False)
        except Fatal as e:
            raise Err(TaskError_Fatal(str(e)))
        except Retryable as e:
            host.log(host.Level.WARN, f"summarize-py: {e}")
            raise Err(TaskError_Retryable(str(e)))
