//! `cargo xtask test`: the whole test suite. Installs what it needs (see
//! [`crate::setup`]), builds the plugins the end-to-end tests load, then runs every test of the workspace (unit tests,
//! plugin tests natively, and `tests/e2e` against private redis-servers),
//! then a smoke run of the benchmark.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

pub fn run(root: &Path, extra: &[String]) -> Result<()> {
    crate::setup::ensure(
        root,
        crate::setup::Needs {
            wasm_target: true,
            redis_server: true,
            polyglot: true,
        },
    )?;
    crate::plugins::build(root, crate::plugins::Selection::All)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["test", "--workspace"])
        .args(extra)
        .status()?;
    anyhow::ensure!(status.success(), "tests failed ({status})");
    // A small smoke run of the benchmark (debug build) keeps it working.
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(["test", "-p", "sluice", "--bench", "pipeline"])
        .status()?;
    anyhow::ensure!(
        status.success(),
        "the benchmark smoke run failed ({status})"
    );
    Ok(())
}
