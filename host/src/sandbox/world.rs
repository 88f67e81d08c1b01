//! Checking a component against the `sluice:plugin/plugin` world before
//! linking it, so a mismatch is explained in plain words ("imports
//! wasi:http/outgoing-handler, which the host does not provide") rather
//! than as a linker error.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

/// Interface prefixes the host links: WASI 0.2 (sockets denied at run
/// time), `wasi:http`'s client side (gated by `allowed_outbound_hosts`) and
/// the Sluice host interface.
pub const PROVIDED_IMPORTS: &[&str] = &[
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:http/outgoing-handler",
    "wasi:http/types",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
    "sluice:plugin/",
];

/// Functions a plugin must export.
pub const REQUIRED_EXPORTS: &[&str] = &["task-types", "handle"];

/// Every way `component` does not fit the world, one plain sentence each
/// (empty when it fits as far as names go; exact types are checked when the
/// component is linked).
pub fn mismatches(engine: &Engine, component: &Component) -> Vec<String> {
    let ty = component.component_type();
    let mut problems = Vec::new();
    for (name, _) in ty.imports(engine) {
        if !PROVIDED_IMPORTS.iter().any(|p| name.starts_with(p)) {
            problems.push(format!(
                "imports {name}, which the host does not provide (it provides WASI 0.2 cli, clocks, filesystem, io, random, sockets, http/outgoing-handler, http/types and sluice:plugin/host)"
            ));
        }
    }
    for required in REQUIRED_EXPORTS {
        match ty.exports(engine).find(|(name, _)| name == required).map(|(_, e)| e.ty) {
            Some(ComponentItem::ComponentFunc(_)) => {}
            Some(_) => problems.push(format!("exports {required}, but not as a function")),
            None => problems.push(format!(
                "does not export the function {required} (the sluice:plugin world requires task-types and handle)"
            )),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_imports_and_missing_exports_are_explained() {
        let engine = Engine::default();
        let component = Component::new(
            &engine,
            r#"(component
                (import "wasi:http/incoming-handler@0.2.0" (instance))
                (import "wasi:cli/environment@0.2.0" (instance))
            )"#,
        )
        .unwrap();
        let problems = mismatches(&engine, &component);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with(
            "imports wasi:http/incoming-handler@0.2.0, which the host does not provide"
        ));
        assert!(problems[1].contains("does not export the function task-types"));
        assert!(problems[2].contains("does not export the function handle"));
    }
}
