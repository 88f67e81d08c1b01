"""Sluice plugin `{{NAME}}`: binds ``handler.py`` to the ``sluice:plugin`` world.

``componentize-py`` generates the ``wit_world`` bindings package from
``wit/plugin.wit`` when it builds the component (``sluice build``).
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import Task, TaskError_Fatal, TaskError_Retryable

import handler

LEVELS = {"info": host.Level.INFO, "warn": host.Level.WARN}


def log(level: str, message: str) -> None:
    host.log(LEVELS.get(level, host.Level.INFO), message)


class WitWorld(wit_world.WitWorld):
    def task_types(self):
        return list(handler.TASK_TYPES)

    def handle(self, task: Task) -> str:
        try:
            return handler.handle(task.task_type, task.params, task.attempt, log)
        except handler.Fatal as e:
            raise Err(TaskError_Fatal(str(e)))
        except handler.Retryable as e:
            raise Err(TaskError_Retryable(str(e)))
