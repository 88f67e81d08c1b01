// Unit tests of handler.c, compiled and run natively with the host's `cc`:
// ./test.sh (or: cc -std=c11 -Wall -Wextra -o test_handler test_handler.c handler.c && ./test_handler).

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"

static int failures = 0;
static char last_log[256];

static void log_line(handler_log_level level, const char *message) {
  snprintf(last_log, sizeof last_log, "%s %s", level == HANDLER_LOG_WARN ? "warn" : "info", message);
}

static void expect(const char *params, unsigned attempt, handler_status want, const char *want_text) {
  char *out = NULL;
  handler_status got = handler_handle("{{TASK_TYPE}}", strlen("{{TASK_TYPE}}"), params, strlen(params), attempt,
                                      log_line, &out);
  if (got != want || (want_text && strstr(out, want_text) == NULL)) {
    fprintf(stderr, "FAIL %s: status %d, want %d; output %s\n", params, got, want, out);
    failures++;
  } else {
    printf("ok   %s -> %s\n", params, out);
  }
  free(out);
}

int main(void) {
  expect("{\"name\": \"Ada\"}", 1, HANDLER_OK, "{\"greeting\":\"Hello, Ada!\"}");
  if (strcmp(last_log, "info greeted Ada") != 0) {
    fprintf(stderr, "FAIL log line: %s\n", last_log);
    failures++;
  }
  expect("{\"name\": \"\\\"A\\u00e9\\\"\"}", 1, HANDLER_OK, "Hello, \\\"A\xc3\xa9\\\"!");
  expect("{\"name\": \"Ada\", \"fail\": \"retryable\"}", 2, HANDLER_RETRYABLE, "attempt 2");
  expect("{}", 1, HANDLER_FATAL, "\"name\"");
  expect("{\"name\": 5}", 1, HANDLER_FATAL, "must be a string");
  expect("{\"name\": \" \"}", 1, HANDLER_FATAL, "must not be empty");
  expect("{\"name\": \"a\", \"x\": 1}", 1, HANDLER_FATAL, "unknown params field");
  expect("[]", 1, HANDLER_FATAL, "JSON object");
  char *out = NULL;
  if (handler_handle("other", 5, "{}", 2, 1, log_line, &out) != HANDLER_FATAL) {
    fprintf(stderr, "FAIL: task type \"other\" accepted\n");
    failures++;
  }
  free(out);
  if (failures) {
    fprintf(stderr, "%d test(s) failed\n", failures);
    return 1;
  }
  printf("all tests passed\n");
  return 0;
}
