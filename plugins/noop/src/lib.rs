//! Sluice plugin `noop`: task type `noop`, returns `{}`.
//!
//! The benchmark uses it to measure the cost of the sandbox itself:
//! instantiation, the call, and result handling, with no work in between.
//!
//! It is built straight from the **0.1.0** contract (`guest-sdk/wit/plugin.wit`)
//! with `wit-bindgen`, not with the SDK (which targets 0.2.0): the tests use it
//! to prove that 0.1.0 components keep loading and running beside 0.2.0 ones.

#[cfg(target_arch = "wasm32")]
#[allow(missing_docs, unsafe_code, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../guest-sdk/wit",
        world: "plugin",
    });
}

/// The `noop` plugin.
pub struct Noop;

/// The task types it handles.
pub fn task_types() -> Vec<String> {
    vec!["noop".to_string()]
}

/// Its result for any task.
pub fn handle() -> String {
    "{}".to_string()
}

#[cfg(target_arch = "wasm32")]
impl bindings::Guest for Noop {
    fn task_types() -> Vec<String> {
        task_types()
    }

    fn handle(_task: bindings::Task) -> Result<String, bindings::TaskError> {
        Ok(handle())
    }
}

// The export glue wit-bindgen generates is `unsafe` by nature (raw ABI).
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
const _: () = {
    bindings::export!(Noop with_types_in bindings);
};
