//! Retry policy: how many attempts a task gets and how long it waits
//! between them (exponential backoff with jitter).

use crate::manifest::Manifest;
use crate::message::Task;

/// The worker's defaults; a plugin manifest and then the task itself may
/// override each value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries allowed after the first attempt (default 5).
    pub max_retries: u32,
    /// Delay before the first retry, ms (default 1000); doubles per attempt.
    pub base_ms: u64,
    /// Largest delay, ms (default 1 h).
    pub cap_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_ms: 1000,
            cap_ms: 3_600_000,
        }
    }
}

impl RetryPolicy {
    /// The policy for `task`: task fields win over the manifest, the manifest
    /// over the worker's defaults.
    pub fn for_task(&self, manifest: Option<&Manifest>, task: &Task) -> RetryPolicy {
        RetryPolicy {
            max_retries: task
                .max_retries
                .or(manifest.and_then(|m| m.max_retries))
                .unwrap_or(self.max_retries),
            base_ms: task
                .backoff_base_ms
                .or(manifest.and_then(|m| m.backoff_base_ms))
                .unwrap_or(self.base_ms),
            cap_ms: task
                .backoff_cap_ms
                .or(manifest.and_then(|m| m.backoff_cap_ms))
                .unwrap_or(self.cap_ms),
        }
    }

    /// Delay before retry number `retry` (1 for the first retry), ms:
    /// `min(cap, base · 2^(retry-1))`, of which the upper half is random
    /// ("equal jitter", so retries of many tasks that failed together spread out).
    pub fn delay_ms(&self, retry: u32) -> u64 {
        let exp = self
            .base_ms
            .saturating_mul(1u64 << (retry.saturating_sub(1)).min(40))
            .min(self.cap_ms);
        let half = exp / 2;
        half + fastrand::u64(0..=exp - half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let p = RetryPolicy {
            max_retries: 5,
            base_ms: 100,
            cap_ms: 1000,
        };
        for _ in 0..100 {
            assert!((50..=100).contains(&p.delay_ms(1)));
            assert!((200..=400).contains(&p.delay_ms(3)));
            assert!((500..=1000).contains(&p.delay_ms(30)));
        }
    }

    #[test]
    fn task_overrides_manifest_overrides_default() {
        let task = Task::parse(br#"{"task_type":"x","max_retries":1}"#, 0).unwrap();
        let manifest = Manifest {
            max_retries: Some(9),
            backoff_base_ms: Some(7),
            ..Manifest::default()
        };
        let p = RetryPolicy::default().for_task(Some(&manifest), &task);
        assert_eq!((p.max_retries, p.base_ms, p.cap_ms), (1, 7, 3_600_000));
    }
}
