//! Sluice plugin `burn-cpu`: a test and benchmark plugin whose tasks cost a
//! chosen amount of CPU.
//!
//! | task type | params                   | result |
//! |-----------|--------------------------|--------|
//! | `burn`    | `{"iterations": N}` (default 1 000) | `{"iterations": N, "hash": h}`: N rounds of a multiply-xorshift hash |
//!
//! The multi-tenant tests give two tenants `burn` tasks of different
//! `iterations` to check that the worker shares CPU time, not task count.

use serde::Deserialize;
use serde_json::json;
use sluice_guest::{Plugin, Task, TaskError};

/// The `burn-cpu` plugin.
pub struct BurnCpu;

#[derive(Deserialize)]
struct Params {
    #[serde(default = "default_iterations")]
    iterations: u64,
}

fn default_iterations() -> u64 {
    1_000
}

/// `iterations` rounds of a cheap hash: CPU work proportional to `iterations`.
pub fn burn(iterations: u64) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..iterations {
        h ^= i;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = std::hint::black_box(h);
    }
    h
}

impl Plugin for BurnCpu {
    fn task_types() -> Vec<String> {
        vec!["burn".to_string()]
    }

    fn handle(task: Task) -> Result<impl serde::Serialize, TaskError> {
        let params: Params = serde_json::from_str(&task.params)
            .map_err(|e| TaskError::Fatal(format!("bad params: {e}")))?;
        let hash = burn(params.iterations);
        Ok(json!({"iterations": params.iterations, "hash": hash}))
    }
}

sluice_guest::export_plugin!(BurnCpu);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_is_deterministic() {
        assert_eq!(burn(10), burn(10));
        assert_ne!(burn(10), burn(11));
    }
}
