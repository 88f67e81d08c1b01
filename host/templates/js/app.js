// Sluice plugin `{{NAME}}`: binds handler.js to the `sluice:plugin` world
// (wit/plugin.wit), built into a component by ComponentizeJS (`sluice build`).
//
// The exports follow the WIT world: `taskTypes` and `handle`. For
// `result<string, task-error>`, returning a string is `ok` and throwing a
// `task-error` value ({tag: "fatal" | "retryable", val: message}) is `err`.

import { log } from 'sluice:plugin/host@0.1.0';

import { TASK_TYPES, TaskFailure, handle as handleTask } from './handler.js';

export function taskTypes() {
  return [...TASK_TYPES];
}

export function handle(task) {
  try {
    return handleTask(task.taskType, task.params, task.attempt, log);
  } catch (e) {
    if (e instanceof TaskFailure) {
      throw { tag: e.kind, val: e.message };
    }
    throw { tag: 'fatal', val: `unexpected error: ${e}` };
  }
}
