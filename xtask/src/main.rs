//! Workspace tasks for Sluice, run as `cargo xtask <command>` (the alias is in
//! `.cargo/config.toml`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod demo;
mod plugins;
mod polyglot;
mod setup;
mod test;

/// Workspace tasks for Sluice.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build every Rust plugin under `plugins/` for wasm32-wasip2 (profile
    /// `plugin`), then the Python, JavaScript and C plugins with their own
    /// toolchains (`.ci/install-polyglot`): the examples into
    /// `target/plugins/`, the test plugins into `target/test-plugins/`.
    /// Installs the wasm target first when it is missing.
    Plugins,
    /// Run the main job: build the example plugins and the worker, enqueue
    /// generate_log_file then parse_log_file in the seed's format, run a burst
    /// worker, print results. Uses REDIS_URL, else localhost:6379, else a
    /// private redis-server. Installs the wasm target (and redis-server, when
    /// it starts one) first when missing.
    Demo,
    /// Run the side-by-side benchmark (release build): Sluice with the wasm
    /// parse_log_file plugin, a no-op plugin and a native parser, and the
    /// seed's Python worker; prints a table and one JSON line.
    Bench {
        /// Arguments for the benchmark: --tasks N, --concurrency N, --rate N, --latency-secs N.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install what the tests need (wasm target, redis-server, the polyglot
    /// toolchains and redis-py), build the plugins and run the whole test
    /// suite (`cargo test --workspace`), then a smoke run of the benchmark.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Plugins => {
            let root = workspace_root();
            setup::ensure(
                &root,
                setup::Needs {
                    wasm_target: true,
                    ..setup::Needs::default()
                },
            )?;
            plugins::build(&root, plugins::Selection::All).map(|_| ())
        }
        Command::Demo => demo::run(&workspace_root()),
        Command::Bench { args } => bench::run(&workspace_root(), &args),
        Command::Test { args } => test::run(&workspace_root(), &args),
    }
}

/// The workspace root: the parent of this crate's folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in a folder of the workspace")
        .to_path_buf()
}
