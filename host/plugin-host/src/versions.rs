//! The versions of `callop:plugin` this host runs, side by side.
//!
//! A component targets one version of the package: it imports that
//! version's `host-loop` and `io` (and `types`), and exports its `guest`
//! (and maybe `state`). The host keeps loading components built for an
//! older version when the WIT moves on, as Zed does with its extension API:
//!
//! * **Imports.** The host has one implementation of the interfaces,
//!   generated from the newest WIT (`wit/`, [`NEWEST`]). Every older version
//!   in [`SUPPORTED`] is linked under its own names (`host-loop@0.2.0`, ...)
//!   with that same implementation. This is sound because the component
//!   model checks imports structurally: records, variants, enums and flags
//!   by their shape, functions by their signature, and resources by the
//!   host type the linker registered (the same Rust type for every version).
//!   Each older interface is a subset of the newest one (see the
//!   "Versions" section of the WIT: 0.3.0 only added
//!   `host-loop.generation`), and wasmtime type-checks every import when a
//!   component is pre-instantiated, so a mismatch is a load error, never a
//!   wrong call. A test links the whole frozen world of each older version
//!   (`wit/versions/`), function by function.
//! * **Exports.** A component's `guest` (and `state`) export is found under
//!   the name of the version it was built for and type-checked, once per
//!   instance, against the newest Rust types ([`GuestExports`]); every call
//!   into the guest then goes through the same typed functions, whatever
//!   the version.
//!
//! A future version that changes the shape of an interface incompatibly
//! (a new event kind, say) gets its own bindings here, generated from its
//! frozen WIT, with conversions to the newest types; the structural check
//! above is what tells that the time has come (the frozen-world test
//! fails).
//!
//! A component exporting a version of `guest` the host does not support is
//! refused at load with a message naming the versions it supports.

use wasmtime::AsContextMut;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{
    Component, ComponentExportIndex, Func, HasSelf, Instance, Linker, TypedFunc,
};
use wasmtime::{Engine, StoreContextMut};

use super::PACKAGE;
use super::bindings::callop::plugin::types::{Event, EventResult, Instant};
use super::bindings::callop::plugin::{host_loop, io};
use super::state::PluginState;

/// The newest version of [`PACKAGE`]: the one `wit/` describes and the
/// guest SDK builds for.
pub const NEWEST: &str = super::PACKAGE_VERSION;

/// Every version of [`PACKAGE`] this host loads, newest first.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.2.0"];

/// The interfaces of [`PACKAGE`] a plugin may import.
const IMPORTS: &[&str] = &["types", "host-loop", "io"];

/// `callop:plugin/{iface}@{version}`.
pub(crate) fn iface_name(iface: &str, version: &str) -> String {
    format!("{PACKAGE}/{iface}@{version}")
}

/// The supported versions as a list for messages: "0.3.0, 0.2.0".
pub(crate) fn supported_list() -> String {
    SUPPORTED.join(", ")
}

/// Whether `version` is one this host loads; gives it as a `'static` str.
pub(crate) fn supported(version: &str) -> Option<&'static str> {
    SUPPORTED.iter().copied().find(|v| *v == version)
}

/// Whether `name` is an interface of [`PACKAGE`] a plugin of some
/// supported version may import.
pub(crate) fn is_supported_import(name: &str) -> bool {
    SUPPORTED
        .iter()
        .any(|v| IMPORTS.iter().any(|i| iface_name(i, v) == name))
}

/// Links the older versions' interfaces (the newest are linked by the
/// generated `add_to_linker`): the same host implementation under each
/// older version's names.
pub(crate) fn link_older(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    for v in &SUPPORTED[1..] {
        // `types` holds only types: its instance has nothing to define.
        linker.instance(&iface_name("types", v))?;
        host_loop::add_to_linker_instance::<PluginState, HasSelf<PluginState>>(
            &mut linker.instance(&iface_name("host-loop", v))?,
            |s| s,
        )?;
        io::add_to_linker_instance::<PluginState, HasSelf<PluginState>>(
            &mut linker.instance(&iface_name("io", v))?,
            |s| s,
        )?;
    }
    Ok(())
}

/// Where the guest exports of one component are (found once at load).
#[derive(Debug, Clone)]
pub(crate) struct GuestExports {
    /// The version of [`PACKAGE`] the component was built for.
    pub version: &'static str,
    init: ComponentExportIndex,
    dispatch: ComponentExportIndex,
    shutdown: ComponentExportIndex,
    /// `snapshot` and `restore` of the optional `state` export.
    state: Option<(ComponentExportIndex, ComponentExportIndex)>,
}

/// The guest's functions in one instance, type-checked.
pub(crate) struct GuestFuncs {
    init: Func,
    dispatch: Func,
    shutdown: Func,
    state: Option<(Func, Func)>,
}

impl GuestExports {
    /// Finds the `guest` export of a supported version (and its `state`
    /// export, if any) in `component`, or says why it is not there.
    pub fn find(engine: &Engine, component: &Component) -> Result<Self, Vec<String>> {
        let ty = component.component_type();
        let found = ty.exports(engine).find_map(|(n, _)| {
            let (pkg, iface, ver) = split_iface(n)?;
            (pkg == PACKAGE && iface == "guest").then_some(())?;
            Some((n.to_string(), supported(ver?)?))
        });
        let Some((name, version)) = found else {
            return Err(vec![missing_guest(engine, component)]);
        };
        let mut problems = Vec::new();
        let func = |problems: &mut Vec<String>, iface: &str, f: &str| {
            let inst = component.get_export_index(None, iface)?;
            match component.get_export(Some(&inst), f) {
                Some((ComponentItem::ComponentFunc(_), idx)) => Some(idx),
                Some(_) => {
                    problems.push(format!(
                        "export `{iface}` has `{f}` but it is not a function"
                    ));
                    None
                }
                None => {
                    problems.push(format!("export `{iface}` lacks function `{f}`"));
                    None
                }
            }
        };
        match component.get_export(None, &name) {
            Some((ComponentItem::ComponentInstance(_), _)) => {}
            _ => {
                return Err(vec![format!(
                    "export `{name}` is not an interface instance"
                )]);
            }
        }
        let init = func(&mut problems, &name, "init");
        let dispatch = func(&mut problems, &name, "dispatch");
        let shutdown = func(&mut problems, &name, "shutdown");
        let state_name = iface_name("state", version);
        let state = match component.get_export(None, &state_name) {
            None => None,
            Some((ComponentItem::ComponentInstance(_), _)) => {
                let s = func(&mut problems, &state_name, "snapshot");
                let r = func(&mut problems, &state_name, "restore");
                s.zip(r)
            }
            Some(_) => {
                problems.push(format!(
                    "export `{state_name}` is not an interface instance"
                ));
                None
            }
        };
        match (init, dispatch, shutdown) {
            (Some(init), Some(dispatch), Some(shutdown)) if problems.is_empty() => {
                Ok(GuestExports {
                    version,
                    init,
                    dispatch,
                    shutdown,
                    state,
                })
            }
            _ => Err(problems),
        }
    }

    /// Whether the component exports `state` (snapshot/restore).
    pub fn has_state(&self) -> bool {
        self.state.is_some()
    }

    /// The typed functions of `instance` (an instance of the component the
    /// indices were found in); fails if a signature is not the one of the
    /// component's version.
    pub fn load(
        &self,
        mut store: impl AsContextMut<Data = PluginState>,
        instance: &Instance,
    ) -> wasmtime::Result<GuestFuncs> {
        let mut store = store.as_context_mut();
        let get = |store: &mut StoreContextMut<'_, PluginState>, idx: &ComponentExportIndex| {
            instance
                .get_func(&mut *store, idx)
                .ok_or_else(|| wasmtime::format_err!("a guest export is missing"))
        };
        let init = get(&mut store, &self.init)?;
        let dispatch = get(&mut store, &self.dispatch)?;
        let shutdown = get(&mut store, &self.shutdown)?;
        // The type checks the generated bindings make, once per instance.
        init.typed::<(&[String],), (Result<(), String>,)>(&store)?;
        dispatch.typed::<(&[Event],), (Vec<EventResult>,)>(&store)?;
        shutdown.typed::<(Instant,), ()>(&store)?;
        let state = match &self.state {
            None => None,
            Some((s, r)) => {
                let s = get(&mut store, s)?;
                let r = get(&mut store, r)?;
                s.typed::<(), (Option<Vec<u8>>,)>(&store)?;
                r.typed::<(&[u8],), (Result<(), String>,)>(&store)?;
                Some((s, r))
            }
        };
        Ok(GuestFuncs {
            init,
            dispatch,
            shutdown,
            state,
        })
    }
}

/// Makes a typed function of a `Func` whose type [`GuestExports::load`]
/// checked against exactly this signature.
///
/// # Safety
/// `func`'s type must have been checked against `P`/`R` (as the generated
/// bindings do once at instantiation); the lifetimes in `P` do not matter
/// to the check.
unsafe fn typed<P, R>(func: Func) -> TypedFunc<P, R>
where
    P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower,
    R: wasmtime::component::ComponentNamedList + wasmtime::component::Lift,
{
    // SAFETY: the caller's contract.
    unsafe { TypedFunc::new_unchecked(func) }
}

impl GuestFuncs {
    /// `guest.init(args)`.
    pub fn init(
        &self,
        store: impl AsContextMut<Data = PluginState>,
        args: &[String],
    ) -> wasmtime::Result<Result<(), String>> {
        // SAFETY: checked in `load`.
        let f = unsafe { typed::<(&[String],), (Result<(), String>,)>(self.init) };
        Ok(f.call(store, (args,))?.0)
    }

    /// `guest.dispatch(events)`.
    pub fn dispatch(
        &self,
        store: impl AsContextMut<Data = PluginState>,
        events: &[Event],
    ) -> wasmtime::Result<Vec<EventResult>> {
        // SAFETY: checked in `load`.
        let f = unsafe { typed::<(&[Event],), (Vec<EventResult>,)>(self.dispatch) };
        Ok(f.call(store, (events,))?.0)
    }

    /// `guest.shutdown(deadline)`.
    pub fn shutdown(
        &self,
        store: impl AsContextMut<Data = PluginState>,
        deadline: Instant,
    ) -> wasmtime::Result<()> {
        // SAFETY: checked in `load`.
        let f = unsafe { typed::<(Instant,), ()>(self.shutdown) };
        f.call(store, (deadline,))
    }

    /// Whether the instance exports `state`.
    pub fn has_state(&self) -> bool {
        self.state.is_some()
    }

    /// `state.snapshot()`; `Ok(None)` also when the instance has no `state`.
    pub fn snapshot(
        &self,
        store: impl AsContextMut<Data = PluginState>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        let Some((s, _)) = self.state else {
            return Ok(None);
        };
        // SAFETY: checked in `load`.
        let f = unsafe { typed::<(), (Option<Vec<u8>>,)>(s) };
        Ok(f.call(store, ())?.0)
    }

    /// `state.restore(snapshot)`; `Ok(Ok(()))` when the instance has no `state`.
    pub fn restore(
        &self,
        store: impl AsContextMut<Data = PluginState>,
        snapshot: &[u8],
    ) -> wasmtime::Result<Result<(), String>> {
        let Some((_, r)) = self.state else {
            return Ok(Ok(()));
        };
        // SAFETY: checked in `load`.
        let f = unsafe { typed::<(&[u8],), (Result<(), String>,)>(r) };
        Ok(f.call(store, (snapshot,))?.0)
    }
}

/// Splits `ns:pkg/iface@ver` into (`ns:pkg`, `iface`, `ver`).
pub(crate) fn split_iface(name: &str) -> Option<(&str, &str, Option<&str>)> {
    let (pkg, rest) = name.split_once('/')?;
    let (iface, ver) = match rest.split_once('@') {
        Some((i, v)) => (i, Some(v)),
        None => (rest, None),
    };
    Some((pkg, iface, ver))
}

/// The message for a component without a supported `guest` export.
fn missing_guest(engine: &Engine, component: &Component) -> String {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(n, _)| n.to_string())
        .collect();
    let other = exports
        .iter()
        .find(|n| split_iface(n).is_some_and(|(p, i, _)| p == PACKAGE && i == "guest"));
    match other {
        Some(o) => format!(
            "exports `{o}` but this host supports {PACKAGE} versions {} (plugin built for \
             another version of {PACKAGE})",
            supported_list()
        ),
        None => format!(
            "missing export `{}` (the component exports: {})",
            iface_name("guest", NEWEST),
            if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{EngineOptions, Host, LoadError, PluginEngine};

    /// A component of `world` from the WIT package in `dir` (relative to
    /// this crate) importing everything the world imports; its exports trap.
    fn dummy(dir: &str, world: &str) -> Vec<u8> {
        let mut resolve = wit_parser::Resolve::default();
        let (pkg, _) = resolve
            .push_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
            .unwrap();
        let world = resolve.select_world(&[pkg], Some(world)).unwrap();
        let mut module =
            wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
        )
        .unwrap();
        wit_component::ComponentEncoder::default()
            .module(&module)
            .unwrap()
            .validate(true)
            .encode()
            .unwrap()
    }

    /// Every function, resource and type of each supported version's
    /// worlds (the frozen WIT of each older one) is linked by this host
    /// with the right types: such a component passes the load checks, is
    /// instantiated (its exports type-checked against the newest Rust
    /// types) and only fails when its dummy `init` traps.
    #[test]
    fn every_supported_version_links_its_whole_world() {
        let engine = PluginEngine::new(&EngineOptions::default()).unwrap();
        let versions = [("wit", NEWEST), ("wit/versions/0.2.0", "0.2.0")];
        assert_eq!(
            versions.map(|(_, v)| v),
            SUPPORTED,
            "a test case per supported version"
        );
        let event_loop = callop::EventLoop::<()>::try_new().unwrap();
        let host = Host::with_engine(
            event_loop.handle(),
            engine.clone(),
            crate::Policy::default(),
            crate::Limits::default(),
        )
        .unwrap();
        for (dir, version) in versions {
            for world in ["plugin", "plugin-with-state"] {
                let what = format!("{dir} {world}");
                let c = engine
                    .load_bytes(&dummy(dir, world))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(c.version(), version, "{what}");
                assert_eq!(c.has_state(), world == "plugin-with-state", "{what}");
                match host.load(&c, "dummy", &[]) {
                    Err(LoadError::Trap(m)) => assert!(m.contains("unreachable"), "{what}: {m}"),
                    other => panic!("{what}: expected the dummy init to trap, got {other:?}"),
                }
            }
        }
    }

    #[test]
    fn an_unsupported_version_is_refused_naming_the_supported_ones() {
        let engine = PluginEngine::new(&EngineOptions::default()).unwrap();
        let bytes = wat::parse_str(
            r#"(component
                 (import "callop:plugin/host-loop@0.9.0" (instance))
                 (instance $g)
                 (export "callop:plugin/guest@0.9.0" (instance $g)))"#,
        )
        .unwrap();
        let e = engine.load_bytes(&bytes).unwrap_err().to_string();
        assert!(
            e.contains(
                "exports `callop:plugin/guest@0.9.0` but this host supports callop:plugin \
                 versions 0.3.0, 0.2.0"
            ),
            "{e}"
        );
        assert!(
            e.contains("imports `callop:plugin/host-loop@0.9.0` but this host supports"),
            "{e}"
        );
    }

    #[test]
    fn names_and_lists() {
        assert_eq!(iface_name("io", "0.2.0"), "callop:plugin/io@0.2.0");
        assert_eq!(supported_list(), "0.3.0, 0.2.0");
        assert!(is_supported_import("callop:plugin/host-loop@0.2.0"));
        assert!(is_supported_import("callop:plugin/types@0.3.0"));
        assert!(!is_supported_import("callop:plugin/guest@0.3.0"));
        assert!(!is_supported_import("callop:plugin/io@0.1.0"));
        assert_eq!(supported("0.2.0"), Some("0.2.0"));
        assert_eq!(supported("0.1.0"), None);
    }
}
