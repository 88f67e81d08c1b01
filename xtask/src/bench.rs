//! `cargo xtask bench`: builds the plugins, then runs the side-by-side
//! benchmark (`host/benches/pipeline.rs`) in release mode. Extra arguments
//! go to the benchmark, e.g. `cargo xtask bench --tasks 1000000`.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

pub fn run(root: &Path, extra: &[String]) -> Result<()> {
    crate::setup::ensure(
        root,
        crate::setup::Needs {
            wasm_target: true,
            redis_server: true,
            polyglot: false,
        },
    )?;
    crate::plugins::build(root, crate::plugins::Selection::All)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["bench", "-p", "sluice", "--bench", "pipeline", "--"])
        .args(extra)
        .status()?;
    anyhow::ensure!(status.success(), "the benchmark failed ({status})");
    Ok(())
}
