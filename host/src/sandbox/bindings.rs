//! Host bindings for the `sluice:plugin/plugin` world, generated from the
//! published WIT (the same files the guest SDK uses), one module per
//! contract version the host runs: [`v0_1`] (`guest-sdk/wit/`) and [`v0_2`]
//! (`guest-sdk/wit-0.2/`, which adds `host.enqueue`). Both are linked into
//! one linker (their interfaces have distinct versioned names); a component
//! is instantiated with the bindings of the version it imports (see
//! [`Version::of`]).
#![allow(missing_docs)]

use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre};
use wasmtime::{AsContextMut, Result};

use super::TaskInput;
use super::state::TaskState;

pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit",
        world: "plugin",
        exports: { default: async },
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit-0.2",
        world: "plugin",
        exports: { default: async },
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

/// The contract version a component was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `sluice:plugin@0.1.0`.
    V0_1,
    /// `sluice:plugin@0.2.0`.
    V0_2,
}

impl Version {
    /// The version whose interfaces `component` imports: 0.2.0 when it
    /// imports any `sluice:plugin/…@0.2.0` interface, else 0.1.0.
    pub fn of(engine: &Engine, component: &Component) -> Version {
        let v2 = component
            .component_type()
            .imports(engine)
            .any(|(name, _)| name.starts_with("sluice:plugin/") && name.ends_with("@0.2.0"));
        if v2 { Version::V0_2 } else { Version::V0_1 }
    }
}

/// Why a plugin's `handle` failed, whatever its version.
pub enum WitTaskError {
    Retryable(String),
    Fatal(String),
}

/// A pre-instantiated component of either version.
pub enum PluginPre {
    V0_1(v0_1::PluginPre<TaskState>),
    V0_2(v0_2::PluginPre<TaskState>),
}

/// An instance of either version.
pub enum Plugin {
    V0_1(v0_1::Plugin),
    V0_2(v0_2::Plugin),
}

impl PluginPre {
    /// Wraps `pre` with the bindings of `version`.
    pub fn new(version: Version, pre: InstancePre<TaskState>) -> Result<PluginPre> {
        Ok(match version {
            Version::V0_1 => PluginPre::V0_1(v0_1::PluginPre::new(pre)?),
            Version::V0_2 => PluginPre::V0_2(v0_2::PluginPre::new(pre)?),
        })
    }

    /// Instantiates in `store`.
    pub async fn instantiate_async(
        &self,
        store: impl AsContextMut<Data = TaskState>,
    ) -> Result<Plugin> {
        Ok(match self {
            PluginPre::V0_1(pre) => Plugin::V0_1(pre.instantiate_async(store).await?),
            PluginPre::V0_2(pre) => Plugin::V0_2(pre.instantiate_async(store).await?),
        })
    }
}

impl Plugin {
    /// Calls the `task-types` export.
    pub async fn call_task_types(
        &self,
        store: impl AsContextMut<Data = TaskState>,
    ) -> Result<Vec<String>> {
        match self {
            Plugin::V0_1(p) => p.call_task_types(store).await,
            Plugin::V0_2(p) => p.call_task_types(store).await,
        }
    }

    /// Calls the `handle` export with `task`.
    pub async fn call_handle(
        &self,
        store: impl AsContextMut<Data = TaskState>,
        task: &TaskInput<'_>,
    ) -> Result<Result<String, WitTaskError>> {
        Ok(match self {
            Plugin::V0_1(p) => {
                let task = v0_1::sluice::plugin::types::Task {
                    id: task.id,
                    task_type: task.task_type,
                    params: task.params,
                    attempt: task.attempt,
                };
                p.call_handle(store, task).await?.map_err(|e| match e {
                    v0_1::sluice::plugin::types::TaskError::Retryable(m) => {
                        WitTaskError::Retryable(m)
                    }
                    v0_1::sluice::plugin::types::TaskError::Fatal(m) => WitTaskError::Fatal(m),
                })
            }
            Plugin::V0_2(p) => {
                let task = v0_2::sluice::plugin::types::Task {
                    id: task.id,
                    task_type: task.task_type,
                    params: task.params,
                    attempt: task.attempt,
                };
                p.call_handle(store, task).await?.map_err(|e| match e {
                    v0_2::sluice::plugin::types::TaskError::Retryable(m) => {
                        WitTaskError::Retryable(m)
                    }
                    v0_2::sluice::plugin::types::TaskError::Fatal(m) => WitTaskError::Fatal(m),
                })
            }
        })
    }
}
