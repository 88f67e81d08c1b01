//! The task logic of `{{NAME}}`, independent of the WebAssembly bindings so
//! that `cargo test` runs it natively.
//!
//! Task type `{{TASK_TYPE}}`:
//! - params `{"name": "Ada"}` -> result `{"greeting": "Hello, Ada!"}`;
//! - a missing, empty or non-string `name`, an unknown field or params that
//!   are not a JSON object -> a **fatal** error (the task is dead-lettered
//!   at once: retrying cannot fix its params);
//! - `{"name": "Ada", "fail": "retryable"}` -> a **retryable** error (the
//!   worker retries the task with backoff), standing for a transient failure
//!   such as a busy upstream service.

use serde::{Deserialize, Serialize};

/// The task types this plugin handles.
pub const TASK_TYPES: &[&str] = &["{{TASK_TYPE}}"];

/// The params of a `{{TASK_TYPE}}` task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Who to greet.
    pub name: String,
    /// `"retryable"` makes the task fail with a retryable error.
    #[serde(default)]
    pub fail: Option<String>,
}

/// The result of a `{{TASK_TYPE}}` task.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Greeting {
    /// The greeting.
    pub greeting: String,
}

/// Why a task failed: the worker acts on the case, the text is for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A transient failure: the worker tries the task again later.
    Retryable(String),
    /// A permanent failure: the task goes to the dead-letter queue.
    Fatal(String),
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Normal operation.
    Info,
    /// Something unexpected but handled.
    Warn,
}

/// Handles one task: `params` is the producer's params object as JSON text,
/// `attempt` is 1 for the first attempt. Returns the result as JSON text.
pub fn handle(task_type: &str, params: &str, attempt: u32) -> Result<String, Error> {
    if !TASK_TYPES.contains(&task_type) {
        return Err(Error::Fatal(format!("unknown task type {task_type:?}")));
    }
    let params: Params = serde_json::from_str(params)
        .map_err(|e| Error::Fatal(format!("invalid params for task type `{task_type}`: {e}")))?;
    if params.fail.as_deref() == Some("retryable") {
        crate::log(Level::Warn, &format!("asked to fail (attempt {attempt})"));
        return Err(Error::Retryable(format!(
            "asked to fail (attempt {attempt})"
        )));
    }
    let name = params.name.trim();
    if name.is_empty() {
        return Err(Error::Fatal("`name` must not be empty".into()));
    }
    let result = Greeting {
        greeting: format!("Hello, {name}!"),
    };
    crate::log(Level::Info, &format!("greeted {name}"));
    serde_json::to_string(&result)
        .map_err(|e| Error::Fatal(format!("cannot write the result: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_by_name() {
        let out = handle("{{TASK_TYPE}}", r#"{"name": "Ada"}"#, 1).unwrap();
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value, serde_json::json!({"greeting": "Hello, Ada!"}));
    }

    #[test]
    fn bad_params_are_fatal() {
        for params in [
            r#"{}"#,
            r#"{"name": 5}"#,
            r#"{"name": " "}"#,
            r#"{"name": "a", "x": 1}"#,
            "[]",
        ] {
            match handle("{{TASK_TYPE}}", params, 1) {
                Err(Error::Fatal(_)) => {}
                other => panic!("{params}: expected a fatal error, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_transient_failure_is_retryable() {
        let err = handle("{{TASK_TYPE}}", r#"{"name": "Ada", "fail": "retryable"}"#, 2).unwrap_err();
        assert_eq!(err, Error::Retryable("asked to fail (attempt 2)".into()));
    }

    #[test]
    fn other_task_types_are_refused() {
        assert!(matches!(handle("other", "{}", 1), Err(Error::Fatal(_))));
    }
}
