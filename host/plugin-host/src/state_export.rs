//! The optional guest export `callop:plugin/state` ([`STATE_EXPORT`]):
//! finding it on a component at load time, and its two typed functions on
//! an instance (`snapshot`, `restore`), called by a reload (see
//! `host/reload.rs`) through the host's one call funnel (`host/call.rs`).
//!
//! The export name is looked up here only: a later version of the package
//! with the same interface changes [`STATE_EXPORT`] and nothing else.

use wasmtime::AsContextMut;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, Instance, TypedFunc};

use crate::STATE_EXPORT;

/// `snapshot: func() -> option<list<u8>>`.
pub(crate) type SnapshotFunc = TypedFunc<(), (Option<Vec<u8>>,)>;
/// `restore: func(snapshot: list<u8>) -> result<_, string>`.
pub(crate) type RestoreFunc = TypedFunc<(Vec<u8>,), (Result<(), String>,)>;

/// Where a component's `state` functions are (found once, at load).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StateExport {
    snapshot: ComponentExportIndex,
    restore: ComponentExportIndex,
}

/// The `state` functions of one instance.
#[derive(Clone, Copy)]
pub(crate) struct StateFuncs {
    /// `snapshot`.
    pub snapshot: SnapshotFunc,
    /// `restore`.
    pub restore: RestoreFunc,
}

impl StateExport {
    /// The component's `state` export: `Ok(None)` without one, an error
    /// (a load-time problem) if it is there but lacks a function.
    pub fn find(component: &Component) -> Result<Option<StateExport>, String> {
        let Some((item, iface)) = component.get_export(None, STATE_EXPORT) else {
            return Ok(None);
        };
        if !matches!(item, ComponentItem::ComponentInstance(_)) {
            return Err(format!(
                "export `{STATE_EXPORT}` is not an interface instance"
            ));
        }
        let func = |name: &str| match component.get_export(Some(&iface), name) {
            Some((ComponentItem::ComponentFunc(_), i)) => Ok(i),
            Some(_) => Err(format!(
                "export `{STATE_EXPORT}` has `{name}` but it is not a function"
            )),
            None => Err(format!("export `{STATE_EXPORT}` lacks function `{name}`")),
        };
        Ok(Some(StateExport {
            snapshot: func("snapshot")?,
            restore: func("restore")?,
        }))
    }

    /// The typed functions on `instance` (their types are checked here).
    pub fn funcs(
        &self,
        mut store: impl AsContextMut,
        instance: &Instance,
    ) -> wasmtime::Result<StateFuncs> {
        let snapshot = instance.get_typed_func(&mut store, self.snapshot)?;
        let restore = instance.get_typed_func(&mut store, self.restore)?;
        Ok(StateFuncs { snapshot, restore })
    }
}
