//! Guest SDK for Sluice plugins.
//!
//! A Sluice plugin is a WebAssembly component (WASI 0.2) that exports the
//! `sluice:plugin/plugin` world. This SDK builds components against
//! `sluice:plugin@0.2.0` (`wit-0.2/plugin.wit` in this crate), which adds the
//! host's [`enqueue`] (follow-up tasks) to 0.1.0 (`wit/plugin.wit`); the host
//! runs components of both versions side by side, and plugin code written for
//! the 0.1.0 SDK compiles unchanged.
//! This crate hides the generated bindings: implement [`Plugin`] on a type,
//! call [`export_plugin!`] once, and build the crate for `wasm32-wasip2`.
//!
//! The host creates a fresh instance for every task, so nothing survives from
//! one call of [`Plugin::handle`] to the next: no caches, no global state —
//! unless the plugin's manifest opts in to `instance_reuse = N`, in which
//! case one instance serves up to N tasks and globals persist between them
//! (never rely on that: any call may be the first in its instance).
//!
//! # Example
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "word-count"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! sluice-guest = { path = "../../guest-sdk" }
//! serde = { version = "1", features = ["derive"] }
//! serde_json = "1"
//! ```
//!
//! `src/lib.rs`:
//!
//! ```rust,ignore
//! use serde::{Deserialize, Serialize};
//! use sluice_guest::{Plugin, Task, TaskError};
//!
//! #[derive(Deserialize)]
//! struct Params {
//!     text: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Counted {
//!     words: usize,
//! }
//!
//! struct WordCount;
//!
//! impl Plugin for WordCount {
//!     fn task_types() -> Vec<String> {
//!         vec!["word_count".to_string()]
//!     }
//!
//!     fn handle(task: Task) -> Result<impl Serialize, TaskError> {
//!         // Bad params become `TaskError::Fatal` naming the task type.
//!         let params: Params = task.params()?;
//!         if params.text.is_empty() {
//!             return Err(TaskError::fatal("`text` is empty"));
//!         }
//!         let words = params.text.split_whitespace().count();
//!         sluice_guest::info!("task {} counted {words} words", task.id);
//!         Ok(Counted { words })
//!     }
//! }
//!
//! sluice_guest::export_plugin!(WordCount);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release`; the component
//! is `target/wasm32-wasip2/release/word_count.wasm`.
//!
//! # Native builds
//!
//! The crate also compiles for the host target so that plugin crates can hold
//! native unit tests and pass `cargo clippy --workspace`: [`export_plugin!`]
//! expands to nothing outside `wasm32`, and the [`log`] functions write to
//! standard error instead of calling the host.

use std::fmt;

use serde::de::DeserializeOwned;

/// One task, as the host passed it to [`Plugin::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Task id: the producer's `id` field, or one the host assigned (UUID v7 text).
    pub id: String,
    /// The producer's `task_type`, e.g. `"parse_log_file"`.
    pub task_type: String,
    /// The producer's `params` object as JSON text (`"{}"` when absent).
    pub params: String,
    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub attempt: u32,
}

impl Task {
    /// Deserializes [`Task::params`] into `T`.
    ///
    /// Malformed params can never succeed on a retry, so the error is
    /// [`TaskError::Fatal`], with a message naming the task type and serde's
    /// description of the problem.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        serde_json::from_str(&self.params).map_err(|e| {
            TaskError::fatal(format_args!(
                "invalid params for task type `{}`: {e}",
                self.task_type
            ))
        })
    }
}

/// Why a task failed. The queue acts on the case; the text is kept for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskError {
    /// A transient failure (a busy dependency, a timeout upstream): the host
    /// schedules another attempt with backoff.
    Retryable(String),
    /// A permanent failure (bad params, a bug): the task goes straight to the
    /// dead-letter queue.
    Fatal(String),
}

impl TaskError {
    /// A [`TaskError::Retryable`] error with `message`.
    pub fn retryable(message: impl fmt::Display) -> Self {
        Self::Retryable(message.to_string())
    }

    /// A [`TaskError::Fatal`] error with `message`.
    pub fn fatal(message: impl fmt::Display) -> Self {
        Self::Fatal(message.to_string())
    }

    /// The human-readable message, whatever the case.
    pub fn message(&self) -> &str {
        match self {
            Self::Retryable(m) | Self::Fatal(m) => m,
        }
    }

    /// Whether the host will try the task again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Retryable(m) => write!(f, "retryable: {m}"),
            Self::Fatal(m) => write!(f, "fatal: {m}"),
        }
    }
}

impl std::error::Error for TaskError {}

/// A Sluice plugin: the task types it handles and the handler itself.
///
/// Implement it on a unit struct and export it with [`export_plugin!`].
pub trait Plugin {
    /// The task types this plugin handles, e.g. `vec!["parse_log_file".into()]`.
    ///
    /// Called once when the host loads the component; two plugins claiming
    /// one task type is a load error.
    fn task_types() -> Vec<String>;

    /// Handles one task. `Ok` carries the result: any [`serde::Serialize`]
    /// value (a struct of the plugin's own, or a `serde_json::Value`), which
    /// the SDK serializes straight to the JSON text the host stores, with no
    /// intermediate `Value` tree. `Err` tells the queue whether to retry.
    ///
    /// A result that cannot be written as JSON (a map whose keys are not
    /// strings) fails the task with [`TaskError::Fatal`]. A panic traps the
    /// instance; the host treats it as a failed attempt.
    fn handle(task: Task) -> Result<impl serde::Serialize, TaskError>;
}

/// Runs `P::handle` on `task` and writes its result as JSON text, exactly as
/// the exported component does for the host; for native unit tests of
/// plugin crates.
///
/// # Errors
/// The handler's [`TaskError`], or [`TaskError::Fatal`] when the result
/// cannot be written as JSON (a map whose keys are not strings).
pub fn handle_to_json<P: Plugin>(task: Task) -> Result<String, TaskError> {
    let result = P::handle(task)?;
    serde_json::to_string(&result)
        .map_err(|e| TaskError::fatal(format_args!("the result cannot be written as JSON: {e}")))
}

/// Exports a [`Plugin`] implementation as the component's `plugin` world.
///
/// Invoke it exactly once per plugin crate, at module level, with a type
/// implementing [`Plugin`]. Outside `wasm32` it expands to nothing, so the
/// crate still builds (and tests) natively.
///
/// ```rust,ignore
/// struct MyPlugin;
/// impl sluice_guest::Plugin for MyPlugin { /* ... */ }
/// sluice_guest::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __SluiceExport;

            impl $crate::__private::bindings::Guest for __SluiceExport {
                fn task_types() -> ::std::vec::Vec<::std::string::String> {
                    <$plugin as $crate::Plugin>::task_types()
                }

                fn handle(
                    task: $crate::__private::bindings::Task,
                ) -> ::std::result::Result<
                    ::std::string::String,
                    $crate::__private::bindings::TaskError,
                > {
                    $crate::__private::handle::<$plugin>(task)
                }
            }

            $crate::__private::bindings::__export_world!(
                __SluiceExport with_types_in $crate::__private::bindings
            );
        };
    };
}

/// Logging through the host: lines land in the host's `tracing` output,
/// tagged with the running task's id, task type and plugin name.
///
/// The [`trace!`], [`debug!`], [`info!`], [`warn!`] and [`error!`] macros
/// take `format!` arguments and call these functions.
///
/// Outside `wasm32` (native unit tests) the functions write
/// `[LEVEL] message` to standard error instead.
pub mod log {
    /// Severity of a log line.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum Level {
        /// Very detailed tracing.
        Trace,
        /// Debugging detail.
        Debug,
        /// Normal operation.
        Info,
        /// Something unexpected but handled.
        Warn,
        /// A failure.
        Error,
    }

    impl Level {
        /// The upper-case name, e.g. `"INFO"`.
        pub fn as_str(self) -> &'static str {
            match self {
                Self::Trace => "TRACE",
                Self::Debug => "DEBUG",
                Self::Info => "INFO",
                Self::Warn => "WARN",
                Self::Error => "ERROR",
            }
        }
    }

    /// Writes `message` to the host's log at `level`.
    pub fn log(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        {
            use crate::__private::bindings::sluice::plugin::host;
            let level = match level {
                Level::Trace => host::Level::Trace,
                Level::Debug => host::Level::Debug,
                Level::Info => host::Level::Info,
                Level::Warn => host::Level::Warn,
                Level::Error => host::Level::Error,
            };
            host::log(level, message);
        }
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!("[{}] {message}", level.as_str());
    }

    /// Logs `message` at trace level.
    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }

    /// Logs `message` at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }

    /// Logs `message` at info level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }

    /// Logs `message` at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }

    /// Logs `message` at error level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// Starts a follow-up task of type `task_type` with `params` (any
/// [`serde::Serialize`] value that serializes to a JSON object) **once this
/// task succeeds**, and returns its id.
///
/// The follow-up is pushed onto the queue by the same atomic step that
/// records this task as succeeded: if this attempt fails, is retried, times
/// out or the worker dies, it is never pushed (a retry enqueues afresh); if
/// this task succeeds, it is never lost. The follow-up's message and result
/// record carry `parent_id` (this task's id), and this task's result record
/// lists `children`.
///
/// # Errors
/// [`TaskError::Fatal`] with the host's reason when it refuses: `task_type`
/// is not in the manifest's `may_enqueue`, `params` is not a JSON object,
/// the task already enqueued `max_enqueue` follow-ups, or the chain is
/// deeper than `chain_depth`. Natively (unit tests) it returns a fresh
/// placeholder id `native-N` without enqueuing anything.
///
/// ```rust,ignore
/// let id = sluice_guest::enqueue("parse_log_file", &serde_json::json!({"file": "app.log"}))?;
/// ```
pub fn enqueue(task_type: &str, params: &impl serde::Serialize) -> Result<String, TaskError> {
    let params = serde_json::to_string(params)
        .map_err(|e| TaskError::fatal(format_args!("follow-up params are not JSON: {e}")))?;
    #[cfg(target_arch = "wasm32")]
    {
        __private::bindings::sluice::plugin::host::enqueue(task_type, &params).map_err(|why| {
            TaskError::fatal(format_args!("cannot enqueue a {task_type} task: {why}"))
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        if !params.starts_with('{') {
            return Err(TaskError::fatal(format_args!(
                "cannot enqueue a {task_type} task: params must be a JSON object"
            )));
        }
        Ok(format!("native-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
    }
}

/// Logs a `format!`-style message at trace level through the host.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Trace, &::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style message at debug level through the host.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Debug, &::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style message at info level through the host.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Info, &::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style message at warn level through the host.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Warn, &::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style message at error level through the host.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Error, &::std::format!($($arg)+))
    };
}

/// Implementation details used by [`export_plugin!`]; not a public API.
#[doc(hidden)]
pub mod __private {
    /// Bindings generated from `wit-0.2/plugin.wit` (`sluice:plugin@0.2.0`).
    #[allow(missing_docs, unsafe_code, clippy::all)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "wit-0.2",
            world: "plugin",
            pub_export_macro: true,
            default_bindings_module: "::sluice_guest::__private::bindings",
            export_macro_name: "__export_world",
        });
    }

    use crate::{Plugin, Task, TaskError};

    /// Runs [`Plugin::handle`] on a task from the bindings and converts the
    /// outcome back.
    pub fn handle<P: Plugin>(task: bindings::Task) -> Result<String, bindings::TaskError> {
        let task = Task {
            id: task.id,
            task_type: task.task_type,
            params: task.params,
            attempt: task.attempt,
        };
        crate::handle_to_json::<P>(task).map_err(|e| match e {
            TaskError::Retryable(m) => bindings::TaskError::Retryable(m),
            TaskError::Fatal(m) => bindings::TaskError::Fatal(m),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    struct Echo;

    impl Plugin for Echo {
        fn task_types() -> Vec<String> {
            vec!["echo".into()]
        }

        fn handle(task: Task) -> Result<impl serde::Serialize, TaskError> {
            #[derive(serde::Deserialize)]
            struct Params {
                keys: bool,
            }
            let params: Params = task.params()?;
            // Tuple keys cannot be JSON object keys.
            let mut map = BTreeMap::new();
            if params.keys {
                map.insert((1, 2), task.attempt);
            }
            Ok(map)
        }
    }

    fn task(params: &str) -> Task {
        Task {
            id: "t1".into(),
            task_type: "echo".into(),
            params: params.into(),
            attempt: 1,
        }
    }

    #[test]
    fn results_are_written_as_json_text_and_failures_are_named() {
        assert_eq!(
            handle_to_json::<Echo>(task(r#"{"keys": false}"#)).unwrap(),
            "{}"
        );
        let err = handle_to_json::<Echo>(task(r#"{"keys": true}"#)).unwrap_err();
        assert!(
            matches!(&err, TaskError::Fatal(m) if m.contains("cannot be written as JSON")),
            "{err}"
        );
        let err = handle_to_json::<Echo>(task("[]")).unwrap_err();
        assert!(
            matches!(&err, TaskError::Fatal(m) if m.contains("invalid params for task type `echo`")),
            "{err}"
        );
    }
}
