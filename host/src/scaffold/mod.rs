//! `sluice new LANG DIR [--task-type T]`: a plugin project from a template
//! embedded in the binary, as `spin new` and `wash new` do.
//!
//! The project holds the handler of task type `T` (default `hello`) with
//! typed params, a fatal and a retryable error path and a log line; the WIT
//! contract it targets (`wit/plugin.wit`, so it builds without the Sluice
//! repository); the manifest `NAME.toml` with a `[build]` table for
//! `sluice build`; a unit test in the language's own runner; and a README.
//! NAME is `DIR`'s file name. Exit status: 0 created, 2 refused (a bad
//! name or task type, a non-empty `DIR`) or not writable.

pub mod templates;

use std::path::{Path, PathBuf};

use templates::File;

/// A template language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with `wit-bindgen` (crates.io), built by cargo for `wasm32-wasip2`.
    Rust,
    /// Python, built by componentize-py (PyPI).
    Python,
    /// JavaScript, built by ComponentizeJS (npm).
    Js,
    /// C11, built by clang for wasm32-wasi, `wit-bindgen c` and `wasm-tools`.
    C,
}

impl Lang {
    /// The template's files.
    pub fn files(self) -> &'static [File] {
        match self {
            Lang::Rust => templates::RUST,
            Lang::Python => templates::PYTHON,
            Lang::Js => templates::JS,
            Lang::C => templates::C,
        }
    }

    /// The name given on the command line: `rust`, `python`, `js` or `c`.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::C => "c",
        }
    }

    /// The command that runs the project's unit tests.
    pub fn test_command(self) -> &'static str {
        match self {
            Lang::Rust => "cargo test",
            Lang::Python => "python3 -m unittest",
            Lang::Js => "node --test",
            Lang::C => "./test.sh",
        }
    }
}

/// The arguments of `sluice new`.
#[derive(Debug, Clone, clap::Args)]
pub struct NewArgs {
    /// Language of the template.
    #[arg(value_enum)]
    pub lang: Lang,
    /// Folder to create (must not exist, or be empty); its file name is the
    /// plugin's name (`NAME.wasm`, `NAME.toml`).
    pub dir: PathBuf,
    /// The task type the handler handles.
    #[arg(long, default_value = "hello")]
    pub task_type: String,
}

/// Why `sluice new` refused or failed (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// DIR's file name is not a usable plugin name.
    #[error(
        "{name:?} is not a usable plugin name (from the folder name of {dir}): use ASCII letters, digits, `-` and `_`, starting with a letter, at most 64 characters"
    )]
    BadName {
        /// The name.
        name: String,
        /// The folder given.
        dir: PathBuf,
    },
    /// The task type cannot be written into the templates' source.
    #[error(
        "{0:?} is not a usable task type for a template: use ASCII letters, digits and `_ - . :`, at most 128 characters"
    )]
    BadTaskType(String),
    /// DIR exists and holds files.
    #[error("{0} exists and is not empty: refusing to write into it (pick a new folder)")]
    NotEmpty(PathBuf),
    /// DIR exists and is not a folder.
    #[error("{0} exists and is not a folder")]
    NotADir(PathBuf),
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Runs `sluice new`: creates the project, prints the next steps on stdout
/// (or the error on stderr), and returns the exit status.
pub fn main(args: &NewArgs) -> u8 {
    match create(args) {
        Ok(name) => {
            let dir = args.dir.display();
            println!("created the {} plugin {name} in {dir}", args.lang.name());
            println!("next:");
            println!("    cd {dir}");
            println!("    {}        # unit tests", args.lang.test_command());
            println!("    sluice build       # -> dist/{name}.wasm");
            println!(
                "    sluice run dist/{name}.wasm --task-type {} --params '{{\"name\": \"Ada\"}}'",
                args.task_type
            );
            0
        }
        Err(e) => {
            eprintln!("sluice new: {e}");
            2
        }
    }
}

/// Creates the project of `args`; returns the plugin's name.
///
/// # Errors
/// [`NewError`]: a bad name or task type, a non-empty folder, a write error.
pub fn create(args: &NewArgs) -> Result<String, NewError> {
    let name = args
        .dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned();
    check_name(&name).map_err(|()| NewError::BadName {
        name: name.clone(),
        dir: args.dir.clone(),
    })?;
    check_task_type(&args.task_type)?;
    match std::fs::read_dir(&args.dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(NewError::NotEmpty(args.dir.clone()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) if args.dir.exists() => return Err(NewError::NotADir(args.dir.clone())),
        Err(source) => {
            return Err(NewError::Io {
                path: args.dir.clone(),
                source,
            });
        }
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| NewError::Io { path, source }
    };
    let mut files: Vec<(String, String, bool)> = args
        .lang
        .files()
        .iter()
        .map(|f| {
            let path = if f.path == templates::MANIFEST {
                format!("{name}.toml")
            } else {
                f.path.to_owned()
            };
            (path, render(f.text, &name, &args.task_type), f.executable)
        })
        .collect();
    files.push((
        "wit/plugin.wit".into(),
        templates::PLUGIN_WIT.to_owned(),
        false,
    ));
    for (path, text, executable) in files {
        let path = args.dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, text).map_err(io(&path))?;
        if executable {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(io(&path))?;
        }
    }
    Ok(name)
}

/// Replaces the placeholders of a template text.
pub fn render(text: &str, name: &str, task_type: &str) -> String {
    text.replace("{{NAME}}", name)
        .replace("{{CRATE}}", &name.replace('-', "_"))
        .replace("{{TASK_TYPE}}", task_type)
}

/// A plugin name usable as `NAME.wasm`, a Rust package, a Python/JS/C file
/// name and a shell word: an ASCII letter, then letters, digits, `-`, `_`.
/// Rust keywords and the names of Rust's built-in crates are refused too
/// (cargo refuses them as package names).
fn check_name(name: &str) -> Result<(), ()> {
    const RESERVED: &[&str] = &[
        "alloc",
        "core",
        "proc_macro",
        "std",
        "test",
        "self",
        "super",
        "crate",
        "fn",
        "mod",
        "struct",
        "enum",
        "impl",
        "trait",
        "type",
        "use",
        "let",
        "match",
        "loop",
        "while",
        "for",
        "if",
        "else",
        "return",
        "break",
        "continue",
        "const",
        "static",
        "pub",
        "ref",
        "mut",
        "move",
        "as",
        "in",
        "where",
        "unsafe",
        "extern",
        "async",
        "await",
        "dyn",
        "true",
        "false",
    ];
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !RESERVED.contains(&name.replace('-', "_").as_str());
    if ok { Ok(()) } else { Err(()) }
}

/// A task type that can be written verbatim into every template's string
/// literals (Rust, Python, JavaScript, C, TOML, shell).
fn check_task_type(task_type: &str) -> Result<(), NewError> {
    let ok = !task_type.is_empty()
        && task_type.len() <= 128
        && task_type
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(NewError::BadTaskType(task_type.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_fit_every_language() {
        for good in ["hello", "word-count", "a1_b2", "Greeter"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "-x",
            "a b",
            "a.b",
            "é",
            "test",
            "std",
            "x/y",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn task_types_must_fit_a_string_literal() {
        assert!(check_task_type("parse_log_file").is_ok());
        assert!(check_task_type("v2:resize.image-fast").is_ok());
        for bad in ["", "a\"b", "a b", "a\\b", "a'b", "a{b"] {
            assert!(check_task_type(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_template_has_a_manifest_with_a_build_table() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js, Lang::C] {
            let manifest = lang
                .files()
                .iter()
                .find(|f| f.path == templates::MANIFEST)
                .expect("a manifest");
            let text = render(manifest.text, "my-plugin", "hello");
            let m = crate::manifest::Manifest::parse(&text, Path::new("/x/my-plugin.toml"))
                .unwrap_or_else(|e| panic!("{lang:?}: {e}"));
            let build = m.build.expect("a [build] table");
            assert!(!build.command.is_empty() && !build.requires.is_empty());
            for f in lang.files() {
                let rendered = render(f.text, "my-plugin", "hello");
                assert!(
                    !rendered.contains("{{"),
                    "{lang:?} {}: a placeholder is left",
                    f.path
                );
            }
        }
    }

    #[test]
    fn a_non_empty_folder_is_refused_and_an_empty_one_filled() {
        let dir = std::env::temp_dir().join(format!("sluice-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let project = dir.join("greeter");
        std::fs::create_dir_all(&project).unwrap();
        let args = NewArgs {
            lang: Lang::Python,
            dir: project.clone(),
            task_type: "greet".into(),
        };
        assert_eq!(create(&args).unwrap(), "greeter");
        assert!(project.join("greeter.toml").is_file());
        assert_eq!(
            std::fs::read_to_string(project.join("wit/plugin.wit")).unwrap(),
            templates::PLUGIN_WIT
        );
        assert!(
            std::fs::read_to_string(project.join("handler.py"))
                .unwrap()
                .contains("TASK_TYPES = [\"greet\"]")
        );
        assert!(matches!(create(&args), Err(NewError::NotEmpty(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
