// Task type `{{TASK_TYPE}}`:
// - params {"name": "Ada"} -> result {"greeting": "Hello, Ada!"};
// - a missing, empty or non-string "name", an unknown field or params that
//   are not a JSON object -> a fatal error (the task is dead-lettered at
//   once: retrying cannot fix its params);
// - {"name": "Ada", "fail": "retryable"} -> a retryable error (the worker
//   retries the task with backoff), standing for a transient failure such
//   as a busy upstream service.

#include "handler.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const HANDLER_TASK_TYPES[] = {"{{TASK_TYPE}}"};
const size_t HANDLER_TASK_TYPE_COUNT = sizeof HANDLER_TASK_TYPES / sizeof HANDLER_TASK_TYPES[0];

// A malloc'd string formatted like printf.
static char *format(const char *fmt, ...) {
  va_list ap, again;
  va_start(ap, fmt);
  va_copy(again, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *buf = malloc((size_t)n + 1);
  if (buf) vsnprintf(buf, (size_t)n + 1, fmt, again);
  va_end(again);
  return buf;
}

// ---------------------------------------------------------------- JSON
// A small reader for what this handler needs: an object whose members are
// all strings, with escapes (\uXXXX and surrogate pairs too) decoded to
// UTF-8. Grow it (or vendor a JSON library such as cJSON) as params grow.

typedef struct {
  const char *p, *end;
} reader;

static void skip_ws(reader *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static int hex4(const char *p, const char *end) {
  if (end - p < 4) return -1;
  int v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return -1;
  }
  return v;
}

static size_t put_utf8(char *out, uint32_t cp) {
  if (cp < 0x80) { out[0] = (char)cp; return 1; }
  if (cp < 0x800) { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | cp >> 12); out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F)); return 3;
  }
  out[0] = (char)(0xF0 | cp >> 18); out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F)); return 4;
}

// Reads the string at r->p (which is '"'); with `out`, stores the decoded,
// malloc'd, NUL-terminated text and its length. False when malformed.
static bool read_string(reader *r, char **out, size_t *len) {
  r->p++;
  char *buf = out ? malloc((size_t)(r->end - r->p) + 1) : NULL;
  if (out && !buf) return false;
  size_t n = 0;
  while (r->p < r->end && *r->p != '"') {
    char c = *r->p++;
    if ((unsigned char)c < 0x20) goto bad;
    if (c != '\\') {
      if (buf) buf[n++] = c;
      continue;
    }
    if (r->p >= r->end) goto bad;
    char e = *r->p++;
    uint32_t cp;
    switch (e) {
      case '"': case '\\': case '/': cp = (uint32_t)e; break;
      case 'b': cp = '\b'; break;
      case 'f': cp = '\f'; break;
      case 'n': cp = '\n'; break;
      case 'r': cp = '\r'; break;
      case 't': cp = '\t'; break;
      case 'u': {
        int u = hex4(r->p, r->end);
        if (u < 0) goto bad;
        r->p += 4;
        cp = (uint32_t)u;
        if (cp >= 0xD800 && cp < 0xDC00 && r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u') {
          int lo = hex4(r->p + 2, r->end);
          if (lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            r->p += 6;
          }
        }
        if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD; // a lone surrogate
        break;
      }
      default: goto bad;
    }
    if (buf) n += put_utf8(buf + n, cp);
  }
  if (r->p >= r->end) goto bad;
  r->p++;
  if (out) {
    buf[n] = '\0';
    *out = buf;
    *len = n;
  }
  return true;
bad:
  free(buf);
  return false;
}

// A JSON string literal of `s` (`len` bytes), malloc'd.
static char *json_quote(const char *s, size_t len) {
  char *out = malloc(len * 6 + 3), *o = out;
  if (!out) return NULL;
  *o++ = '"';
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') { *o++ = '\\'; *o++ = (char)c; }
    else if (c < 0x20) o += sprintf(o, "\\u%04x", c);
    else *o++ = (char)c;
  }
  *o++ = '"';
  *o = '\0';
  return out;
}

// ---------------------------------------------------------------- handler

// The params of a `{{TASK_TYPE}}` task.
typedef struct {
  char *name;   // who to greet (required)
  size_t name_len;
  char *fail;   // "retryable" makes the task fail with a retryable error
  size_t fail_len;
} params;

// Parses the params object; NULL on success, else the (malloc'd) reason.
static char *parse_params(const char *text, size_t len, params *out) {
  reader r = {text, text + len};
  memset(out, 0, sizeof *out);
  skip_ws(&r);
  if (r.p >= r.end || *r.p++ != '{') return format("params must be a JSON object");
  skip_ws(&r);
  if (r.p < r.end && *r.p == '}') r.p++;
  else for (;;) {
    skip_ws(&r);
    char *key;
    size_t key_len;
    if (r.p >= r.end || *r.p != '"' || !read_string(&r, &key, &key_len)) return format("params are not valid JSON");
    skip_ws(&r);
    if (r.p >= r.end || *r.p++ != ':') { free(key); return format("params are not valid JSON"); }
    skip_ws(&r);
    char **slot = strcmp(key, "name") == 0 ? &out->name : strcmp(key, "fail") == 0 ? &out->fail : NULL;
    size_t *slot_len = slot == &out->name ? &out->name_len : &out->fail_len;
    if (!slot) {
      char *why = format("unknown params field: %s", key);
      free(key);
      return why;
    }
    if (r.p >= r.end || *r.p != '"') {
      char *why = format("\"%s\" must be a string", key);
      free(key);
      return why;
    }
    free(key);
    free(*slot); // a key given twice: the last one wins, as in most JSON parsers
    if (!read_string(&r, slot, slot_len)) { *slot = NULL; return format("params are not valid JSON"); }
    skip_ws(&r);
    if (r.p >= r.end) return format("params are not valid JSON");
    if (*r.p == '}') { r.p++; break; }
    if (*r.p++ != ',') return format("params are not valid JSON");
  }
  skip_ws(&r);
  if (r.p != r.end) return format("params are not valid JSON");
  if (!out->name) return format("params must have \"name\": a string");
  return NULL;
}

handler_status handler_handle(const char *task_type, size_t task_type_len, const char *params_text,
                              size_t params_len, unsigned attempt, handler_log_fn log, char **out) {
  bool known = false;
  for (size_t i = 0; i < HANDLER_TASK_TYPE_COUNT; i++) {
    known |= strlen(HANDLER_TASK_TYPES[i]) == task_type_len &&
             memcmp(HANDLER_TASK_TYPES[i], task_type, task_type_len) == 0;
  }
  if (!known) {
    *out = format("unknown task type \"%.*s\"", (int)task_type_len, task_type);
    return HANDLER_FATAL;
  }
  params p;
  handler_status status = HANDLER_FATAL;
  char *why = parse_params(params_text, params_len, &p);
  if (why) {
    *out = format("invalid params for task type `%.*s`: %s", (int)task_type_len, task_type, why);
    free(why);
    goto done;
  }
  if (p.fail && strcmp(p.fail, "retryable") == 0) {
    *out = format("asked to fail (attempt %u)", attempt);
    log(HANDLER_LOG_WARN, *out);
    status = HANDLER_RETRYABLE;
    goto done;
  }
  const char *name = p.name, *end = p.name + p.name_len;
  while (name < end && strchr(" \t\r\n", *name) && *name) name++;
  while (end > name && strchr(" \t\r\n", end[-1]) && end[-1]) end--;
  if (name == end) {
    *out = format("`name` must not be empty");
    goto done;
  }
  size_t n = (size_t)(end - name);
  char *greeting = malloc(n + 9);
  memcpy(greeting, "Hello, ", 7);
  memcpy(greeting + 7, name, n);
  greeting[n + 7] = '!';
  greeting[n + 8] = '\0';
  char *quoted = json_quote(greeting, n + 8);
  *out = format("{\"greeting\":%s}", quoted);
  free(greeting);
  free(quoted);
  char *line = format("greeted %.*s", (int)n, name);
  log(HANDLER_LOG_INFO, line);
  free(line);
  status = HANDLER_OK;
done:
  free(p.name);
  free(p.fail);
  return status;
}
