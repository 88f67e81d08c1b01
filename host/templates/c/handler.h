// The task logic of the Sluice plugin `{{NAME}}`, in plain C11: no
// WebAssembly bindings, so test_handler.c runs it natively with the host's
// `cc` (./test.sh); component.c binds it to the `sluice:plugin` world.
#ifndef HANDLER_H
#define HANDLER_H

#include <stddef.h>

// How a task ended.
typedef enum {
  HANDLER_OK,        // the result is JSON text
  HANDLER_FATAL,     // a permanent failure: the task is dead-lettered
  HANDLER_RETRYABLE, // a transient failure: the worker retries the task
} handler_status;

// Severity of a log line.
typedef enum { HANDLER_LOG_INFO, HANDLER_LOG_WARN } handler_log_level;

// Writes `message` (NUL-terminated) to the host's log.
typedef void (*handler_log_fn)(handler_log_level level, const char *message);

// The task types this plugin handles.
extern const char *const HANDLER_TASK_TYPES[];
extern const size_t HANDLER_TASK_TYPE_COUNT;

// Handles one task: `params` is the producer's params object as JSON text
// (not NUL-terminated), `attempt` is 1 for the first attempt. Sets `*out` to
// a malloc'd, NUL-terminated string the caller frees: the result (JSON text)
// when it returns HANDLER_OK, else the error message.
handler_status handler_handle(const char *task_type, size_t task_type_len, const char *params,
                              size_t params_len, unsigned attempt, handler_log_fn log, char **out);

#endif
