//! Giving plugins the application's own API: WIT interfaces the embedder
//! defines (e.g. `example:kv/store@1.0.0`), implements with wasmtime's
//! `bindgen!` and registers on the engine with an [`AppApi`], each granted
//! per plugin ([`Capabilities::allow_app_interface`]).
//!
//! # The design
//!
//! * **One linker.** The engine has one `Linker<PluginState>`: the
//!   application's interfaces are linked into it beside `callop:plugin`
//!   and WASI when the engine is built ([`EngineOptions::app_api`]). A
//!   component importing an interface nobody provides is refused at load
//!   by the linker (the message names the import), as before.
//! * **Granted per plugin, checked at instantiation.** Which application
//!   interfaces a component imports is computed once when it is checked
//!   (its [`PluginComponent`]); when an instance is created under a name,
//!   every one of them must be granted to that name, else the load fails
//!   with [`LoadError::NotGranted`] naming the interface. So a plugin can
//!   only ever call the application interfaces it was granted: the
//!   functions of the others are in the linker, but an instance never
//!   exists that imports them (a linker per grant set would give the same
//!   guarantee at the cost of one linker and one pre-instantiation per
//!   set). Grants are deny-by-default, like `--allow-net`.
//! * **Typed per-plugin state, no `Any` in the embedder's code.** Each
//!   registration names the Rust type `T` of its per-plugin state and a
//!   factory making one for every instance that imports one of its
//!   interfaces (and again for each restart). The embedder's `bindgen!`
//!   host traits are implemented for `T`, and its generated
//!   `add_to_linker::<_, AppData<T>>(linker, app_data::<T>)` reaches it:
//!   [`AppData<T>`] is the wasmtime `HasData` type whose data is `&mut T`,
//!   [`app_data`] the accessor (the downcast is in here, once).
//! * **Faults.** Application host functions run on the loop thread inside
//!   the plugin's callback (`init`, `dispatch`, `shutdown`): their time
//!   counts against the callback deadline (checked when they return to
//!   wasm), an error they return (`trappable` imports) traps the guest, and
//!   a panic in them is caught at the guest call: all three are that
//!   plugin's [`Fault`](crate::Fault) ([`FaultKind::Host`](crate::FaultKind::Host)
//!   for errors and panics), its restart policy applies, and the host and
//!   the other plugins keep running. A panic in a state factory fails that
//!   instance's load ([`LoadError::Instantiate`]).
//!
//! [`Capabilities::allow_app_interface`]: crate::Capabilities::allow_app_interface
//! [`EngineOptions::app_api`]: crate::EngineOptions::app_api
//! [`PluginComponent`]: crate::PluginComponent
//! [`LoadError::NotGranted`]: crate::LoadError::NotGranted
//! [`LoadError::Instantiate`]: crate::LoadError::Instantiate

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use crate::capabilities::Capabilities;
use crate::error::{LoadError, chain};
use crate::state::PluginState;

/// The application interfaces an engine provides to the plugins granted
/// them; see the [module documentation](self) for the design. Cheap to
/// clone; hand it to [`EngineOptions::app_api`](crate::EngineOptions::app_api)
/// (or [`HostConfig::with_app_api`](crate::HostConfig::with_app_api)).
#[derive(Clone, Default)]
pub struct AppApi {
    entries: Vec<Arc<Entry>>,
}

type LinkFn = dyn Fn(&mut Linker<PluginState>) -> wasmtime::Result<()> + Send + Sync;
type MakeFn = dyn Fn(&AppContext<'_>) -> Box<dyn Any + Send> + Send + Sync;

/// One registration: interfaces, how to link them, their state.
struct Entry {
    /// The interfaces, as registered (`ns:pkg/iface@version`).
    interfaces: Vec<String>,
    link: Box<LinkFn>,
    make: Box<MakeFn>,
    state: TypeId,
    state_name: &'static str,
}

impl fmt::Debug for AppApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| (&e.interfaces, e.state_name)))
            .finish()
    }
}

/// What a state factory knows about the instance its state is for.
#[derive(Debug, Clone, Copy)]
pub struct AppContext<'a> {
    name: &'a str,
    restarts: u32,
}

impl AppContext<'_> {
    /// The plugin's instance name.
    pub fn name(&self) -> &str {
        self.name
    }

    /// How often this instance was restarted before (0: its first run).
    pub fn restarts(&self) -> u32 {
        self.restarts
    }
}

/// The wasmtime [`HasData`] type of an application state `T`: its data is
/// `&mut T`. Pass it with [`app_data`] to the `add_to_linker::<_, D>`
/// function `bindgen!` generated for your interfaces.
pub struct AppData<T>(PhantomData<fn() -> T>);

impl<T: 'static> HasData for AppData<T> {
    type Data<'a> = &'a mut T;
}

/// The application state `T` of the plugin whose store data is `state`:
/// the accessor to give `bindgen!`'s `add_to_linker` with [`AppData<T>`].
///
/// The state exists for every instance importing an interface of the
/// registration that declared `T` ([`AppApi::add`]). Called for a type no
/// registration declares (a mistake in the embedder's link function), it
/// panics with a message naming the type; the panic happens inside the
/// guest call and fails only that plugin.
pub fn app_data<T: Send + 'static>(state: &mut PluginState) -> &mut T {
    let want = TypeId::of::<T>();
    match state
        .app
        .values
        .iter_mut()
        .find(|(t, _)| *t == want)
        .and_then(|(_, b)| b.downcast_mut::<T>())
    {
        Some(t) => t,
        None => panic!(
            "no application state of type `{}` for plugin `{}`: no AppApi registration \
             imported by this plugin declares it (AppApi::add::<{0}>)",
            type_name::<T>(),
            state.name
        ),
    }
}

/// The application states of one instance, by type (a few at most: a
/// linear scan is cheaper than hashing on every host call).
#[derive(Default)]
pub(crate) struct AppStates {
    values: Vec<(TypeId, Box<dyn Any + Send>)>,
}

/// `ns:pkg/iface` of `ns:pkg/iface@version`.
pub(crate) fn unversioned(interface: &str) -> &str {
    interface.split_once('@').map_or(interface, |(n, _)| n)
}

/// Whether `name` is `ns:pkg/iface` with an optional `@version`.
fn well_formed(name: &str) -> bool {
    let Some((pkg, iface)) = unversioned(name).split_once('/') else {
        return false;
    };
    let Some((ns, p)) = pkg.split_once(':') else {
        return false;
    };
    [ns, p, iface].iter().all(|s| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    })
}

/// The panic message of a caught panic's payload.
pub(crate) fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

impl AppApi {
    /// No application interfaces.
    pub fn new() -> AppApi {
        AppApi::default()
    }

    /// Registers application interfaces: their names (`ns:pkg/iface@version`,
    /// as plugins import them; grants and matching ignore the version),
    /// `link`, which adds their host functions to the engine's linker
    /// (typically `bindgen!`'s `add_to_linker::<_, AppData<T>>(linker,
    /// app_data::<T>)`), and `state`, which makes the per-plugin state `T`
    /// those functions get as `&mut T`, once for every instance importing
    /// one of `interfaces` (registrations sharing a `T` share one state,
    /// made by the first).
    ///
    /// Plugins may import these interfaces only where granted
    /// ([`Capabilities::allow_app_interface`](crate::Capabilities::allow_app_interface)).
    /// The names are checked when the engine is built (a malformed one, or
    /// one of `callop:plugin` or `wasi:`, is a [`LoadError::Link`]).
    ///
    /// # Example
    ///
    /// The key-value example application (`tests/kv-app`), shortened: a
    /// store shared by the plugins, and a log of their `notify` calls. The
    /// plugin is the example's Rust plugin (`plugins/kv-plugin`, built by
    /// `plugins/build.sh`): a timer sets `<name>/tick`, then a channel
    /// callback reads it back and notifies.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use std::sync::{Arc, Mutex};
    /// use callop::EventLoop;
    /// use callop_plugin_host::{AppApi, AppData, Capabilities, Host, HostConfig, app_data};
    ///
    /// // 1. Host bindings of the application's WIT (world `kv-imports`).
    /// wasmtime::component::bindgen!({ world: "kv-imports", path: "../../tests/kv-app/wit" });
    /// use example::kv::{notify, store};
    ///
    /// // 2. The per-plugin state, implementing the generated host traits.
    /// #[derive(Default)]
    /// struct Db { map: BTreeMap<String, String>, notes: Vec<String> }
    /// struct Kv { plugin: String, db: Arc<Mutex<Db>> }
    /// impl store::Host for Kv {
    ///     fn get(&mut self, key: String) -> Option<String> { self.db.lock().unwrap().map.get(&key).cloned() }
    ///     fn set(&mut self, key: String, value: String) { self.db.lock().unwrap().map.insert(key, value); }
    ///     fn keys(&mut self) -> Vec<String> { self.db.lock().unwrap().map.keys().cloned().collect() }
    ///     fn len(&mut self) -> u64 { self.db.lock().unwrap().map.len() as u64 }
    /// }
    /// impl notify::Host for Kv {
    ///     fn notify(&mut self, level: notify::Level, text: String) {
    ///         self.db.lock().unwrap().notes.push(format!("{} {level:?}: {text}", self.plugin));
    ///     }
    /// }
    ///
    /// // 3. Register the interfaces: the linker step and the state factory.
    /// let db = Arc::new(Mutex::new(Db::default()));
    /// let shared = db.clone();
    /// let api = AppApi::new().add(
    ///     &["example:kv/store@1.0.0", "example:kv/notify@1.0.0"],
    ///     |linker| KvImports::add_to_linker::<_, AppData<Kv>>(linker, app_data::<Kv>),
    ///     move |cx| Kv { plugin: cx.name().to_string(), db: shared.clone() },
    /// );
    /// let mut event_loop: EventLoop<()> = EventLoop::try_new().unwrap();
    /// let host = Host::new(event_loop.handle(), HostConfig::default().with_app_api(api)).unwrap();
    ///
    /// // 4. Grant them per plugin: deny by default.
    /// let wasm = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/target/wasm32-wasip2/release/kv_plugin.wasm");
    /// let err = host.load_file(wasm, "stranger", &[]).unwrap_err();
    /// assert!(err.to_string().contains("imports the application interface `example:kv/"), "{err}");
    ///
    /// host.grant("rust", Capabilities::new()
    ///     .allow_app_interface("example:kv/store@1.0.0")
    ///     .allow_app_interface("example:kv/notify@1.0.0"));
    /// host.load_file(wasm, "rust", &["--count".into(), "2".into()]).unwrap();
    /// while !host.is_empty() {
    ///     event_loop.dispatch(None, &mut ()).unwrap();
    /// }
    /// let db = db.lock().unwrap();
    /// assert_eq!(db.map, BTreeMap::from([("rust/tick".to_string(), "2".to_string())]));
    /// assert_eq!(db.notes, ["rust Level::Info: wrote 2 ticks", "rust Level::Info: read rust/tick=2 (1 of my keys)"]);
    /// ```
    pub fn add<T: Send + 'static>(
        mut self,
        interfaces: &[&str],
        link: impl Fn(&mut Linker<PluginState>) -> wasmtime::Result<()> + Send + Sync + 'static,
        state: impl Fn(&AppContext<'_>) -> T + Send + Sync + 'static,
    ) -> AppApi {
        self.entries.push(Arc::new(Entry {
            interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            link: Box::new(link),
            make: Box::new(move |cx| Box::new(state(cx))),
            state: TypeId::of::<T>(),
            state_name: type_name::<T>(),
        }));
        self
    }

    /// Every registered interface name, as registered.
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .flat_map(|e| e.interfaces.iter().map(String::as_str))
    }

    /// Whether no interface is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks the names and links every registration into `linker`.
    pub(crate) fn link(&self, linker: &mut Linker<PluginState>) -> Result<(), LoadError> {
        let mut seen = HashMap::new();
        for e in &self.entries {
            if e.interfaces.is_empty() {
                return Err(LoadError::Link(format!(
                    "application API: a registration (state `{}`) names no interface",
                    e.state_name
                )));
            }
            for i in &e.interfaces {
                if !well_formed(i) {
                    return Err(LoadError::Link(format!(
                        "application API: `{i}` is not an interface name (`ns:pkg/iface@version`)"
                    )));
                }
                let pkg = unversioned(i).split('/').next().unwrap_or_default();
                if pkg == crate::PACKAGE || pkg.starts_with("wasi:") {
                    return Err(LoadError::Link(format!(
                        "application API: `{i}` belongs to `{pkg}`, which the host provides itself"
                    )));
                }
                if seen.insert(unversioned(i).to_string(), ()).is_some() {
                    return Err(LoadError::Link(format!(
                        "application API: `{i}` is registered twice"
                    )));
                }
            }
            (e.link)(linker).map_err(|err| {
                LoadError::Link(format!(
                    "application API {}: {}",
                    e.interfaces.join(", "),
                    chain(&err)
                ))
            })?;
        }
        Ok(())
    }

    /// The registration providing `interface` (versions ignored).
    fn entry_for(&self, interface: &str) -> Option<&Arc<Entry>> {
        let want = unversioned(interface);
        self.entries
            .iter()
            .find(|e| e.interfaces.iter().any(|i| unversioned(i) == want))
    }

    /// Of a component's import names, the application interfaces.
    pub(crate) fn imported<'a>(&self, imports: impl Iterator<Item = &'a str>) -> Vec<String> {
        imports
            .filter(|i| self.entry_for(i).is_some())
            .map(str::to_string)
            .collect()
    }

    /// Checks that instance `name` is granted every application interface
    /// in `imports`, and makes the states they need.
    pub(crate) fn instance_states(
        &self,
        imports: &[String],
        caps: &Capabilities,
        name: &str,
        restarts: u32,
    ) -> Result<AppStates, LoadError> {
        if let Some(i) = imports.iter().find(|i| !caps.grants_app_interface(i)) {
            return Err(LoadError::NotGranted {
                interface: i.clone(),
                plugin: name.to_string(),
            });
        }
        let mut states = AppStates::default();
        let cx = AppContext { name, restarts };
        for i in imports {
            let Some(e) = self.entry_for(i) else { continue };
            if states.values.iter().any(|(t, _)| *t == e.state) {
                continue;
            }
            let value = catch_unwind(AssertUnwindSafe(|| (e.make)(&cx))).map_err(|p| {
                LoadError::Instantiate(format!(
                    "the application's state `{}` for `{i}` panicked: {}",
                    e.state_name,
                    panic_text(&*p)
                ))
            })?;
            states.values.push((e.state, value));
        }
        Ok(states)
    }
}

#[cfg(test)]
mod tests;
