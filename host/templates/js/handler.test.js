// Unit tests of handler.js, run natively: `node --test`.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TaskFailure, handle } from './handler.js';

const lines = [];
const log = (level, message) => lines.push([level, message]);

test('greets by name', () => {
  const out = handle('{{TASK_TYPE}}', '{"name": "Ada"}', 1, log);
  assert.deepEqual(JSON.parse(out), { greeting: 'Hello, Ada!' });
  assert.deepEqual(lines.at(-1), ['info', 'greeted Ada']);
});

test('bad params are fatal', () => {
  for (const params of ['{}', '{"name": 5}', '{"name": " "}', '{"name": "a", "x": 1}', '[]', 'nope']) {
    assert.throws(
      () => handle('{{TASK_TYPE}}', params, 1, log),
      (e) => e instanceof TaskFailure && e.kind === 'fatal',
      params,
    );
  }
});

test('a transient failure is retryable', () => {
  assert.throws(
    () => handle('{{TASK_TYPE}}', '{"name": "Ada", "fail": "retryable"}', 2, log),
    (e) => e instanceof TaskFailure && e.kind === 'retryable' && e.message.includes('attempt 2'),
  );
});

test('other task types are refused', () => {
  assert.throws(
    () => handle('other', '{"name": "Ada"}', 1, log),
    (e) => e instanceof TaskFailure && e.kind === 'fatal',
  );
});
