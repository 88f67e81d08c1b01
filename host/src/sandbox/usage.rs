//! What one task cost: CPU time, peak linear memory, fuel and instantiation
//! time, as written into every result record's `usage`.
//!
//! CPU time is the calling thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`),
//! read before and after **every poll** of the guest call and summed: an
//! async call yields to tokio at each epoch tick and may resume on another
//! worker thread, so one start/stop pair around the whole call would measure
//! the wrong threads. Host work done inside a poll (WASI calls, the guest's
//! logging) counts towards the task, time spent waiting between polls does
//! not. Cost: two `clock_gettime` vDSO calls per poll (see the benchmark's
//! `metering` figures).

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Resources one task used, as stored in its result record:
/// `{"cpu_us": 812, "peak_memory_bytes": 1179648, "fuel": null, "instantiate_us": 9,
/// "outbound_requests": 0, "outbound_bytes": 0}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time the guest call used, µs, summed over every poll of the call
    /// (thread CPU clock); 0 for a task that never reached a plugin.
    pub cpu_us: u64,
    /// Largest total linear memory of the instance during the task, bytes
    /// (from the store's resource limiter).
    pub peak_memory_bytes: u64,
    /// Fuel (roughly: wasm instructions) the call consumed, or `None` when
    /// the engine does not meter fuel (no tenant sets `fuel_per_task`).
    pub fuel: Option<u64>,
    /// Wall-clock time spent instantiating the component, µs (0 when a
    /// parked instance was reused, or for a native plugin).
    pub instantiate_us: u64,
    /// HTTP requests the task sent (`wasi:http`), refused ones included;
    /// 0 in a record written before the field existed.
    #[serde(default)]
    pub outbound_requests: u64,
    /// Response body bytes the task received over all its HTTP requests.
    #[serde(default)]
    pub outbound_bytes: u64,
}

/// The calling thread's CPU time so far.
pub fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Runs `future`, adding the thread CPU time each of its polls takes to
/// `spent` (which stays valid when the future is dropped part-way, e.g. by a
/// timeout).
pub async fn on_cpu<F: Future>(spent: &mut Duration, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        let start = thread_cpu_time();
        let poll = future.as_mut().poll(cx);
        *spent += thread_cpu_time().saturating_sub(start);
        poll
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_shows_on_the_thread_clock() {
        let mut spent = Duration::ZERO;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let sum = runtime.block_on(on_cpu(&mut spent, async {
            let mut x = 0u64;
            for i in 0..5_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            tokio::task::yield_now().await;
            x
        }));
        std::hint::black_box(sum);
        assert!(spent > Duration::ZERO, "{spent:?}");
    }

    #[test]
    fn usage_serializes_with_null_fuel() {
        let json = serde_json::to_string(&Usage::default()).expect("serializes");
        assert_eq!(
            json,
            r#"{"cpu_us":0,"peak_memory_bytes":0,"fuel":null,"instantiate_us":0,"outbound_requests":0,"outbound_bytes":0}"#
        );
    }
}
