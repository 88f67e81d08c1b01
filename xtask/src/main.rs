//! Workspace tasks for Sluice, run as `cargo xtask <command>` (the alias is in
//! `.cargo/config.toml`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};

mod plugins;

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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Plugins => plugins::build(&workspace_root()).map(|_| ()),
    }
}

/// The workspace root: the parent of this crate's folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in a folder of the workspace")
        .to_path_buf()
}
