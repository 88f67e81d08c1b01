//! Sluice plugin `{{NAME}}`: handles the task type `{{TASK_TYPE}}`.
//!
//! The task logic is plain Rust in [`handler`], unit-tested natively with
//! `cargo test`. This file binds it to the `sluice:plugin` world
//! (`wit/plugin.wit`) when the crate is built for `wasm32-wasip2`, and
//! provides [`log`], the host's logging (standard error in native tests).

pub mod handler;

/// Writes `message` to the host's log at `level` (its `tracing` output,
/// tagged with the task's id, task type and plugin name). In native builds
/// (`cargo test`) the line goes to standard error instead.
pub fn log(level: handler::Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use bindings::sluice::plugin::host;
        let level = match level {
            handler::Level::Info => host::Level::Info,
            handler::Level::Warn => host::Level::Warn,
        };
        host::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

#[cfg(target_arch = "wasm32")]
mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "plugin" });

    use crate::handler;

    struct Component;

    impl Guest for Component {
        fn task_types() -> Vec<String> {
            handler::TASK_TYPES.iter().map(|t| t.to_string()).collect()
        }

        fn handle(task: Task) -> Result<String, TaskError> {
            handler::handle(&task.task_type, &task.params, task.attempt).map_err(|e| match e {
                handler::Error::Retryable(m) => TaskError::Retryable(m),
                handler::Error::Fatal(m) => TaskError::Fatal(m),
            })
        }
    }

    export!(Component);
}
