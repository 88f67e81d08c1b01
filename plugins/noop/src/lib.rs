//! Sluice plugin `noop`: task type `noop`, returns `{}`.
//!
//! The benchmark uses it to measure the cost of the sandbox itself:
//! instantiation, the call, and result handling, with no work in between.

use serde_json::Value;
use sluice_guest::{Plugin, Task, TaskError};

/// The `noop` plugin.
pub struct Noop;

impl Plugin for Noop {
    fn task_types() -> Vec<String> {
        vec!["noop".to_string()]
    }

    fn handle(_task: Task) -> Result<impl serde::Serialize, TaskError> {
        Ok(Value::Object(serde_json::Map::new()))
    }
}

sluice_guest::export_plugin!(Noop);
