//! Host bindings for the `sluice:plugin/plugin` world, generated from the
//! published WIT in `guest-sdk/wit/` (the same files the guest SDK uses).
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../guest-sdk/wit",
    world: "plugin",
    exports: { default: async },
    ownership: Borrowing { duplicate_if_necessary: true },
});

pub use self::sluice::plugin::host::Level;
pub use self::sluice::plugin::types::{Task as WitTask, TaskError as WitTaskError};
