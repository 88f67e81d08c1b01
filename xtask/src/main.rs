//! Workspace tasks for Sluice, run as `cargo xtask <command>` (the alias is in
//! `.cargo/config.toml`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};

mod demo;
mod plugins;
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
    /// `plugin`) and copy the components and manifests to `target/plugins/`.
    Plugins,
    /// Run the main job: build everything, enqueue generate_log_file then
    /// parse_log_file in the seed's format, run a burst worker, print results.
    /// Uses REDIS_URL, else localhost:6379, else a private redis-server.
    Demo,
    /// Build the plugins and run the whole test suite (`cargo test --workspace`).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Plugins => plugins::build(&workspace_root()).map(|_| ()),
        Command::Demo => demo::run(&workspace_root()),
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
