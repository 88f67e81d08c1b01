// Sluice plugin `{{NAME}}`: binds handler.c to the `sluice:plugin` world
// (wit/plugin.wit). `wit-bindgen c` generates plugin.h/plugin.c into build/
// (build.sh, run by `sluice build`).

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "plugin.h"

static void log_to_host(handler_log_level level, const char *message) {
  plugin_string_t text;
  plugin_string_dup(&text, message);
  sluice_plugin_host_log(level == HANDLER_LOG_WARN ? SLUICE_PLUGIN_HOST_LEVEL_WARN
                                                   : SLUICE_PLUGIN_HOST_LEVEL_INFO,
                         &text);
  free(text.ptr);
}

void exports_plugin_task_types(plugin_list_string_t *ret) {
  ret->len = HANDLER_TASK_TYPE_COUNT;
  ret->ptr = malloc(sizeof(plugin_string_t) * ret->len);
  for (size_t i = 0; i < ret->len; i++) plugin_string_dup(&ret->ptr[i], HANDLER_TASK_TYPES[i]);
}

bool exports_plugin_handle(plugin_task_t *task, plugin_string_t *ret, plugin_task_error_t *err) {
  char *out = NULL;
  handler_status status =
      handler_handle((const char *)task->task_type.ptr, task->task_type.len,
                     (const char *)task->params.ptr, task->params.len, task->attempt, log_to_host, &out);
  plugin_task_free(task);
  // `out` is malloc'd: the export's post-return function frees it.
  plugin_string_t text = {.ptr = (uint8_t *)out, .len = strlen(out)};
  switch (status) {
    case HANDLER_OK:
      *ret = text;
      return true;
    case HANDLER_RETRYABLE:
      err->tag = SLUICE_PLUGIN_TYPES_TASK_ERROR_RETRYABLE;
      err->val.retryable = text;
      return false;
    case HANDLER_FATAL:
    default:
      err->tag = SLUICE_PLUGIN_TYPES_TASK_ERROR_FATAL;
      err->val.fatal = text;
      return false;
  }
}
