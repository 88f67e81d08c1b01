//! The project templates of `sluice new`, embedded in the binary from
//! `host/templates/<lang>/` (and the WIT contract from
//! `guest-sdk/wit/plugin.wit`, its single source).
//!
//! Template text holds placeholders replaced by [`super::render`]:
//! `{{NAME}}` (the plugin name), `{{CRATE}}` (the name with `-` as `_`, a
//! Rust crate's file name) and `{{TASK_TYPE}}`.

/// One file of a template: its path in the project and its text.
/// `NAME.toml` stands for the manifest, named after the project.
pub struct File {
    /// Path relative to the project folder (`/`-separated).
    pub path: &'static str,
    /// Template text.
    pub text: &'static str,
    /// Whether the file is a script to mark executable.
    pub executable: bool,
}

/// The path under which the manifest is listed; written as `NAME.toml`.
pub const MANIFEST: &str = "NAME.toml";

/// The WIT contract every template targets: `sluice:plugin@0.1.0`.
pub const PLUGIN_WIT: &str = include_str!("../../../guest-sdk/wit/plugin.wit");

macro_rules! file {
    ($path:literal, $src:literal) => {
        File {
            path: $path,
            text: include_str!(concat!("../../templates/", $src)),
            executable: false,
        }
    };
    ($path:literal, $src:literal, executable) => {
        File {
            path: $path,
            text: include_str!(concat!("../../templates/", $src)),
            executable: true,
        }
    };
}

/// The Rust template: handler logic in `src/handler.rs`, bindings in `src/lib.rs`.
pub const RUST: &[File] = &[
    file!("Cargo.toml", "rust/Cargo.toml.in"),
    file!("src/lib.rs", "rust/src/lib.rs"),
    file!("src/handler.rs", "rust/src/handler.rs"),
    file!("NAME.toml", "rust/manifest.toml"),
    file!("README.md", "rust/README.md"),
    file!(".gitignore", "rust/gitignore"),
];

/// The Python template (componentize-py).
pub const PYTHON: &[File] = &[
    file!("handler.py", "python/handler.py"),
    file!("app.py", "python/app.py"),
    file!("test_handler.py", "python/test_handler.py"),
    file!("NAME.toml", "python/manifest.toml"),
    file!("README.md", "python/README.md"),
    file!(".gitignore", "python/gitignore"),
];

/// The JavaScript template (ComponentizeJS).
pub const JS: &[File] = &[
    file!("handler.js", "js/handler.js"),
    file!("app.js", "js/app.js"),
    file!("handler.test.js", "js/handler.test.js"),
    file!("package.json", "js/package.json"),
    file!("NAME.toml", "js/manifest.toml"),
    file!("README.md", "js/README.md"),
    file!(".gitignore", "js/gitignore"),
];

/// The C template (clang for wasm32-wasi, `wit-bindgen c`, `wasm-tools`).
pub const C: &[File] = &[
    file!("handler.h", "c/handler.h"),
    file!("handler.c", "c/handler.c"),
    file!("component.c", "c/component.c"),
    file!("test_handler.c", "c/test_handler.c"),
    file!("test.sh", "c/test.sh", executable),
    file!("build.sh", "c/build.sh", executable),
    file!("NAME.toml", "c/manifest.toml"),
    file!("README.md", "c/README.md"),
    file!(".gitignore", "c/gitignore"),
];
