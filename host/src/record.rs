//! What Sluice writes back: result records and dead letters.

use serde::{Deserialize, Serialize};

pub use crate::sandbox::Usage;

/// Final or intermediate status of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The plugin returned a result.
    Succeeded,
    /// The task failed for good; a dead letter holds its message.
    Failed,
    /// The last attempt failed and another one is scheduled.
    Retrying,
}

/// Why a task failed: a stable `kind` for programs, a `message` for people.
///
/// Kinds: `malformed`, `missing_task_type`, `unknown_task_type` (the message
/// could not be routed); `retryable`, `fatal`, `trap`, `timeout`, `memory`,
/// `interrupted`, `sandbox`, `fuel_exhausted` (the sandbox, see
/// `sandbox::TaskFailure`); `poison` (in flight on too many workers that
/// crashed); `forbidden_reply_to` (multi-tenant: `reply_to` outside the
/// tenant's prefix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Stable name of the case.
    pub kind: String,
    /// Human-readable explanation.
    pub message: String,
}

/// The result record of a task, stored as JSON under `{Q}:result:<id>` (with
/// a TTL, 24 h by default) and pushed onto the task's `reply_to` list.
///
/// ```json
/// {"id":"0193…","task_type":"parse_log_file","status":"succeeded",
///  "result":{"lines":20,…},"error":null,"attempts":1,
///  "started_at":1764000000123,"finished_at":1764000000125,"duration_ms":2,
///  "plugin":"parse-log-file","plugin_version":"0.1.0","plugin_sha256":"…","worker":"host:1234:ab12",
///  "usage":{"cpu_us":812,"peak_memory_bytes":1179648,"fuel":null,"instantiate_us":9}}
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultRecord {
    /// Task id.
    pub id: String,
    /// Task type, when the message had one.
    pub task_type: Option<String>,
    /// Outcome.
    pub status: Status,
    /// The plugin's JSON result, when it succeeded (kept verbatim).
    pub result: Option<Box<serde_json::value::RawValue>>,
    /// Why it failed, when it did.
    pub error: Option<ErrorInfo>,
    /// Attempts made so far, this one included.
    pub attempts: u32,
    /// When this attempt started, Unix ms.
    pub started_at: u64,
    /// When this attempt ended, Unix ms.
    pub finished_at: u64,
    /// `finished_at - started_at`, ms.
    pub duration_ms: u64,
    /// Name of the plugin that ran the task.
    pub plugin: Option<String>,
    /// The plugin's version (from its manifest), when known.
    pub plugin_version: Option<String>,
    /// SHA-256 of the plugin's `.wasm` file.
    pub plugin_sha256: Option<String>,
    /// Id of the worker that ran this attempt.
    pub worker: String,
    /// What the attempt used: CPU, peak memory, fuel, instantiation time
    /// (all zero, fuel `null`, when the task never reached a plugin).
    pub usage: Usage,
    /// The tenant whose queue the task came from (multi-tenant workers only;
    /// absent in single-tenant mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// A message that will not be processed again unless requeued, stored as
/// JSON in the `{Q}:dead` hash under its task id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Task id (assigned when the message had none).
    pub id: String,
    /// Task type, when the message had one.
    pub task_type: Option<String>,
    /// The original message text, exactly as it was popped.
    pub message: String,
    /// The last error.
    pub error: ErrorInfo,
    /// Attempts made.
    pub attempts: u32,
    /// When it was dead-lettered, Unix ms.
    pub dead_at: u64,
    /// Worker that dead-lettered it.
    pub worker: String,
}

/// Current Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
