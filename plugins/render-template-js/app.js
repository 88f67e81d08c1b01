// Sluice plugin `render-template-js`, written in plain JavaScript and built
// with ComponentizeJS (SpiderMonkey compiled to WebAssembly).
//
// Task type `render_template`:
//   params {"template": "Hello {{name}}", "values": {"name": "x"}} -> {"text": "Hello x"}
//   - `{{ name }}` placeholders (spaces inside the braces allowed) are
//     replaced by values[name]: strings as they are, numbers and booleans as
//     text, anything else as JSON. A placeholder without a value is a fatal
//     error naming it.
//   - {"fail": "retryable"} returns a retryable error (to exercise retries).
//   - {"read": "/some/file"} instead reads that file through WASI
//     filesystem (wasi:filesystem/preopens + types) and returns
//     {"path", "bytes"}: the plugin sees only the directories its manifest
//     grants, so without a grant every read fails (fatal).
//
// Exports follow the WIT world (guest-sdk/wit/plugin.wit): `taskTypes` and
// `handle`. For `result<string, task-error>`, returning a string is `ok` and
// throwing a `task-error` value ({tag: "fatal" | "retryable", val: message})
// is `err`.

import { log } from 'sluice:plugin/host@0.1.0';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

const fatal = (message) => ({ tag: 'fatal', val: message });
const retryable = (message) => ({ tag: 'retryable', val: message });

const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}/g;

export function taskTypes() {
  return ['render_template'];
}

export function handle(task) {
  let params;
  try {
    params = JSON.parse(task.params);
  } catch (e) {
    throw fatal(`params are not valid JSON: ${e.message}`);
  }
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    throw fatal('params must be a JSON object');
  }
  if (params.fail === 'retryable') {
    log('warn', `render-template-js: asked to fail (attempt ${task.attempt})`);
    throw retryable(`asked to fail (attempt ${task.attempt})`);
  }
  if (params.read !== undefined) {
    return JSON.stringify(readFile(params.read));
  }
  const text = render(params.template, params.values ?? {});
  log('info', `render-template-js: rendered ${text.length} characters for task ${task.id}`);
  return JSON.stringify({ text });
}

function render(template, values) {
  if (typeof template !== 'string') {
    throw fatal('params must have "template": a string');
  }
  if (values === null || typeof values !== 'object' || Array.isArray(values)) {
    throw fatal('"values" must be an object');
  }
  return template.replace(PLACEHOLDER, (_, name) => {
    if (!Object.prototype.hasOwnProperty.call(values, name)) {
      throw fatal(`missing value for {{${name}}}`);
    }
    const v = values[name];
    if (typeof v === 'string') return v;
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    return JSON.stringify(v);
  });
}

// Reads `path` (absolute) through the WASI 0.2 filesystem API: finds the
// preopened directory that contains it and opens the rest relative to it.
function readFile(path) {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw fatal('"read" must be an absolute path');
  }
  const dirs = getDirectories();
  let found = null;
  for (const [descriptor, guest] of dirs) {
    const prefix = guest.endsWith('/') ? guest : `${guest}/`;
    if (path.startsWith(prefix) && (!found || prefix.length > found.prefix.length)) {
      found = { descriptor, prefix };
    }
  }
  if (!found) {
    const granted = dirs.map(([, guest]) => guest);
    throw fatal(
      `cannot read ${path}: no granted directory contains it (granted: ${granted.length ? granted.join(', ') : 'none'})`,
    );
  }
  const relative = path.slice(found.prefix.length);
  let file;
  try {
    file = found.descriptor.openAt({}, relative, {}, { read: true });
  } catch (e) {
    throw fatal(`cannot read ${path}: ${errorCode(e)}`);
  }
  let bytes = 0;
  for (;;) {
    let chunk, end;
    try {
      [chunk, end] = file.read(65536n, BigInt(bytes));
    } catch (e) {
      throw fatal(`cannot read ${path}: ${errorCode(e)}`);
    }
    bytes += chunk.length;
    if (end || chunk.length === 0) break;
  }
  log('info', `render-template-js: read ${bytes} bytes from ${path}`);
  return { path, bytes };
}

// A WASI filesystem error code (e.g. "not-permitted") from a thrown error.
function errorCode(e) {
  return e?.payload ?? e?.message ?? String(e);
}
