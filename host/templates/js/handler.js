// The task logic of the Sluice plugin `{{NAME}}`, in plain JavaScript.
//
// It does not import the host's interfaces, so `node --test` runs it
// natively; app.js binds it to the `sluice:plugin` world.
//
// Task type `{{TASK_TYPE}}`:
// - params {"name": "Ada"} -> result {"greeting": "Hello, Ada!"};
// - a missing, empty or non-string `name`, an unknown field or params that
//   are not a JSON object -> a *fatal* error (the task is dead-lettered at
//   once: retrying cannot fix its params);
// - {"name": "Ada", "fail": "retryable"} -> a *retryable* error (the worker
//   retries the task with backoff), standing for a transient failure such as
//   a busy upstream service.

export const TASK_TYPES = ['{{TASK_TYPE}}'];

/** A failed task: `kind` is "fatal" or "retryable". */
export class TaskFailure extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

const fatal = (message) => new TaskFailure('fatal', message);
const retryable = (message) => new TaskFailure('retryable', message);

const FIELDS = ['name', 'fail'];

/** The params of a `{{TASK_TYPE}}` task, checked: {name: string, fail?: string}. */
export function parseParams(text) {
  let raw;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw fatal(`params are not valid JSON: ${e.message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw fatal('params must be a JSON object');
  }
  const unknown = Object.keys(raw).filter((k) => !FIELDS.includes(k));
  if (unknown.length > 0) {
    throw fatal(`unknown params field(s): ${unknown.sort().join(', ')}`);
  }
  if (typeof raw.name !== 'string') {
    throw fatal('params must have "name": a string');
  }
  if (raw.fail !== undefined && typeof raw.fail !== 'string') {
    throw fatal('"fail" must be a string');
  }
  return { name: raw.name, fail: raw.fail };
}

/**
 * Handles one task and returns its result as JSON text; throws a
 * TaskFailure when it fails. `log(level, message)` writes to the host's log
 * (`level` is "info" or "warn").
 */
export function handle(taskType, paramsJson, attempt, log) {
  if (!TASK_TYPES.includes(taskType)) {
    throw fatal(`unknown task type ${JSON.stringify(taskType)}`);
  }
  const params = parseParams(paramsJson);
  if (params.fail === 'retryable') {
    log('warn', `asked to fail (attempt ${attempt})`);
    throw retryable(`asked to fail (attempt ${attempt})`);
  }
  const name = params.name.trim();
  if (name === '') {
    throw fatal('`name` must not be empty');
  }
  log('info', `greeted ${name}`);
  return JSON.stringify({ greeting: `Hello, ${name}!` });
}
