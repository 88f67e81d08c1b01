"""The task logic of the Sluice plugin `{{NAME}}`, in plain Python.

It does not import the WebAssembly bindings, so ``python -m unittest`` runs
it natively; ``app.py`` binds it to the ``sluice:plugin`` world.

Task type ``{{TASK_TYPE}}``:

- params ``{"name": "Ada"}`` -> result ``{"greeting": "Hello, Ada!"}``;
- a missing, empty or non-string ``name``, an unknown field or params that
  are not a JSON object -> a **fatal** error (the task is dead-lettered at
  once: retrying cannot fix its params);
- ``{"name": "Ada", "fail": "retryable"}`` -> a **retryable** error (the
  worker retries the task with backoff), standing for a transient failure
  such as a busy upstream service.
"""

import json
from dataclasses import dataclass, fields
from typing import Callable, Optional

TASK_TYPES = ["{{TASK_TYPE}}"]


class Fatal(Exception):
    """A permanent failure: the task goes to the dead-letter queue."""


class Retryable(Exception):
    """A transient failure: the worker tries the task again later."""


@dataclass(frozen=True)
class Params:
    """The params of a ``{{TASK_TYPE}}`` task."""

    name: str
    fail: Optional[str] = None

    @staticmethod
    def parse(text: str) -> "Params":
        """Params from their JSON text; raises Fatal when they do not fit."""
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise Fatal(f"params are not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise Fatal("params must be a JSON object")
        known = {f.name for f in fields(Params)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise Fatal(f"unknown params field(s): {', '.join(unknown)}")
        name = raw.get("name")
        if not isinstance(name, str):
            raise Fatal('params must have "name": a string')
        fail = raw.get("fail")
        if fail is not None and not isinstance(fail, str):
            raise Fatal('"fail" must be a string')
        return Params(name=name, fail=fail)


def handle(task_type: str, params_json: str, attempt: int,
           log: Callable[[str, str], None]) -> str:
    """Handles one task and returns its result as JSON text.

    ``log(level, message)`` writes to the host's log (``level`` is "info"
    or "warn"). Raises Fatal or Retryable when the task fails.
    """
    if task_type not in TASK_TYPES:
        raise Fatal(f"unknown task type {task_type!r}")
    params = Params.parse(params_json)
    if params.fail == "retryable":
        log("warn", f"asked to fail (attempt {attempt})")
        raise Retryable(f"asked to fail (attempt {attempt})")
    name = params.name.strip()
    if not name:
        raise Fatal("`name` must not be empty")
    log("info", f"greeted {name}")
    return json.dumps({"greeting": f"Hello, {name}!"})
