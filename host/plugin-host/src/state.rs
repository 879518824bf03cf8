//! Per-instance store data ([`PluginState`]) and the host-wide registry of
//! named channels and pings shared by all instances of one host.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use callop::ping::Ping;

use super::bindings::callop::plugin::types::{Error as WitError, ErrorCode};
use super::capabilities::Capabilities;
use super::host_memory::Budget;
use super::io::IoState;
use super::limits::Limits;
use super::log_limit::LogLimiter;
use super::mailbox::Mailbox;
use super::policy::Policy;
use super::sources::SourceTable;

pub(crate) use super::sources::SourceId;

/// Builds a WIT `error` value.
pub(crate) fn wit_err(code: ErrorCode, message: impl Into<String>) -> WitError {
    WitError {
        code,
        message: message.into(),
    }
}

/// State shared by all instances of one host (and by their ticker thread).
pub(crate) struct Shared {
    /// Zero of the plugins' clock (`host-loop.now`).
    pub base: Instant,
    pub policy: Policy,
    pub limits: Limits,
    registry: Mutex<Registry>,
    /// The next plugin id: ids are unique across every loop thread of a
    /// host (see `host/threads.rs`).
    next_plugin_id: AtomicU64,
    /// The host-memory budget of each instance name, while anything holds
    /// it (a live run, or bytes still charged to it).
    budgets: Mutex<HashMap<String, Weak<Budget>>>,
}

impl Shared {
    pub fn new(policy: Policy, limits: Limits) -> Self {
        Shared {
            base: Instant::now(),
            policy,
            limits,
            registry: Mutex::new(Registry::default()),
            next_plugin_id: AtomicU64::new(1),
            budgets: Mutex::new(HashMap::new()),
        }
    }

    /// The host-memory budget of instance `name`: the one it already has if
    /// anything still holds it (a previous run's messages in flight, an
    /// application sender), else a new one. `limit` (a new run's
    /// [`Limits::max_host_memory_bytes`]) replaces its limit; a budget made
    /// without one gets the host's.
    pub fn budget(&self, name: &str, limit: Option<usize>) -> Arc<Budget> {
        let mut map = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let b = match map.get(name).and_then(Weak::upgrade) {
            Some(b) => b,
            None => {
                // Forget the budgets nothing holds any more (amortised: the
                // map at most doubles between two sweeps).
                if map.len() >= 64 && map.len().is_power_of_two() {
                    map.retain(|_, w| w.strong_count() > 0);
                }
                let b = Budget::new(
                    Arc::from(name),
                    limit.unwrap_or(self.limits.max_host_memory_bytes),
                );
                map.insert(name.to_string(), Arc::downgrade(&b));
                b
            }
        };
        if let Some(l) = limit {
            b.set_limit(l);
        }
        b
    }

    /// A fresh plugin id (1, 2, ... in the order ids are taken).
    pub fn next_plugin_id(&self) -> u64 {
        self.next_plugin_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Locks the registry (poisoning is ignored: the registry stays usable).
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Host clock in nanoseconds since `base`.
    pub fn now_ns(&self) -> u64 {
        self.instant_to_ns(Instant::now())
    }

    /// Converts an [`Instant`] to the plugins' clock.
    pub fn instant_to_ns(&self, i: Instant) -> u64 {
        u64::try_from(i.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Converts the plugins' clock to an [`Instant`]; `None` on overflow.
    pub fn ns_to_instant(&self, ns: u64) -> Option<Instant> {
        self.base.checked_add(Duration::from_nanos(ns))
    }
}

/// Names known to the host: live instances, channel slots, named pings.
#[derive(Default)]
pub(crate) struct Registry {
    pub instances: HashSet<String>,
    /// Channel slots by full name (`inst/name` or `@app/name`).
    pub channels: HashMap<String, Arc<Mailbox>>,
    /// Named pings by full name (`inst/name`).
    pub pings: HashMap<String, Ping>,
    /// Named pings of an instance being reloaded, by full name: taken out
    /// of [`pings`](Self::pings) while its new version starts, for the new
    /// version's `make-named-ping` of the same name to adopt (the same
    /// [`Ping`], so that the handles others hold keep working; see
    /// `host::reload`).
    pub held_pings: HashMap<String, Ping>,
}

impl Registry {
    /// Forgets everything owned by instance `name` and closes its channels.
    pub fn remove_instance(&mut self, name: &str) {
        self.instances.remove(name);
        let prefix = format!("{name}/");
        self.channels.retain(|k, slot| {
            if k.starts_with(&prefix) {
                slot.mark_closed();
                false
            } else {
                true
            }
        });
        self.pings.retain(|k, _| !k.starts_with(&prefix));
        self.remove_held_pings(name);
    }

    /// Forgets the held named pings of instance `name` (its reload is
    /// over: the new version adopted those it created again).
    pub fn remove_held_pings(&mut self, name: &str) {
        let prefix = format!("{name}/");
        self.held_pings.retain(|k, _| !k.starts_with(&prefix));
    }
}

/// A queued source operation, applied after the current export returns
/// (what it concerns is in the source's [`SourceTable`] entry).
pub(crate) enum Op {
    /// Register a pending source in the loop (or, for an idle, queue it to
    /// run; for a signal subscription, watch its signals).
    Add(SourceId),
    /// Enable a source again.
    Enable(SourceId),
    /// Disable a source.
    Disable(SourceId),
    /// Re-apply a source's registration (re-arms a oneshot I/O one).
    Update(SourceId),
    /// Remove a source the guest removed (its entry is already marked).
    Remove(SourceId),
    /// Re-register an I/O object with its new interest and mode.
    SetInterest(SourceId),
}

/// A guest-held `ping` handle.
pub struct PingHandle {
    pub(crate) ping: Ping,
}

impl std::fmt::Debug for PingHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PingHandle").finish_non_exhaustive()
    }
}

/// A guest-held `sender` handle. Dropping it (guest drop, or the instance
/// ending) releases its claim on the target channel.
pub struct SenderHandle {
    pub(crate) slot: Arc<Mailbox>,
    /// Whether the target is an `@app/...` endpoint.
    pub(crate) app: bool,
}

impl std::fmt::Debug for SenderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderHandle")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

impl Drop for SenderHandle {
    fn drop(&mut self) {
        self.slot.drop_sender();
    }
}

/// The data of one plugin instance's wasmtime `Store`: the `T` of the
/// engine's `Linker<PluginState>`. Opaque to embedders; an application's
/// own per-plugin state is reached from it with
/// [`app_data`](crate::app_data) (see [`AppApi`](crate::AppApi)).
pub struct PluginState {
    pub(crate) name: Arc<str>,
    pub(crate) shared: Arc<Shared>,
    /// This instance's limits (the host's, or a per-instance override).
    pub(crate) limits: Arc<Limits>,
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) store_limits: super::limits::PluginLimiter,
    /// The plugin's sources.
    pub(crate) sources: SourceTable,
    pub(crate) ops: Vec<Op>,
    pub(crate) stop: Option<i32>,
    /// Live guest-held resource handles.
    pub(crate) handles: usize,
    /// Capabilities and state of the `io` interface.
    pub(crate) io: IoState,
    /// The deadline of the current guest call (and the host's alarm), for
    /// the WASI calls that can block (module `wasi_blocking`); set once the
    /// store exists.
    pub(crate) deadline: Option<Arc<crate::ticker::CpuDeadline>>,
    /// What the host holds for this instance (its name's budget).
    pub(crate) budget: Arc<Budget>,
    /// The rate limit of this instance's guest-caused log lines.
    pub(crate) log_limit: LogLimiter,
    /// Which run of the instance this is (`host-loop.generation`): 0 for
    /// the first start, one more for each restart and reload.
    pub(crate) generation: u32,
    /// The application's per-plugin states (see [`crate::app_api`]).
    pub(crate) app: crate::app_api::AppStates,
    /// This run's figures kept in the store (host-import time, I/O objects;
    /// see [`crate::stats`]).
    pub(crate) run_stats: crate::stats::RunStats,
}

impl std::fmt::Debug for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginState")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PluginState {
    #[cfg(test)]
    pub(crate) fn new(name: Arc<str>, shared: Arc<Shared>, wasi: WasiCtx) -> Self {
        let limits = Arc::new(shared.limits.clone());
        Self::with_limits(name, shared, limits, wasi, Capabilities::default())
    }

    /// A plugin's store state, with this instance's own limits and capabilities.
    pub(crate) fn with_limits(
        name: Arc<str>,
        shared: Arc<Shared>,
        limits: Arc<Limits>,
        wasi: WasiCtx,
        caps: Capabilities,
    ) -> Self {
        let store_limits = limits.limiter();
        let sources = SourceTable::new(shared.clone(), limits.max_sources);
        let budget = shared.budget(&name, Some(limits.max_host_memory_bytes));
        PluginState {
            budget,
            log_limit: LogLimiter::new(name.clone()),
            generation: 0,
            name,
            shared,
            limits,
            table: ResourceTable::new(),
            wasi,
            store_limits,
            sources,
            ops: Vec::new(),
            stop: None,
            handles: 0,
            io: IoState::new(caps),
            deadline: None,
            app: Default::default(),
            run_stats: crate::stats::RunStats::default(),
        }
    }

    /// Number of sources that are not (being) removed.
    pub(crate) fn live_sources(&self) -> usize {
        self.sources.live_count()
    }

    /// Checks the handle limit before creating a resource.
    pub(crate) fn check_handles(&self) -> Result<(), WitError> {
        if self.handles >= self.limits.max_handles {
            Err(wit_err(
                ErrorCode::LimitExceeded,
                format!(
                    "at most {} handles (pings, senders, I/O objects) per plugin (limits.max_handles)",
                    self.limits.max_handles
                ),
            ))
        } else {
            Ok(())
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_remove_instance() {
        let mut r = Registry::default();
        r.instances.insert("a".into());
        r.instances.insert("ab".into());
        let s1 = Mailbox::new("a/in".into());
        let s2 = Mailbox::new("ab/in".into());
        r.channels.insert("a/in".into(), s1.clone());
        r.channels.insert("ab/in".into(), s2.clone());
        r.remove_instance("a");
        assert!(s1.is_closed());
        assert!(!s2.is_closed());
        assert!(r.channels.contains_key("ab/in"));
        assert!(!r.instances.contains("a"));
    }

    #[test]
    fn a_name_keeps_its_budget_while_anything_is_charged_to_it() {
        let shared = Shared::new(Policy::default(), Limits::default());
        let b = shared.budget("p", Some(1000));
        let m = Mailbox::new("q/in".into());
        m.send(vec![0; 100], usize::MAX, Some(&b)).unwrap();
        let charged = b.used();
        assert!(charged > 100);
        drop(b);
        // The run ended; its message to `q` is still in flight: a new run
        // (here with a new limit) inherits the charge.
        let again = shared.budget("p", Some(2000));
        assert_eq!((again.used(), again.limit()), (charged, 2000));
        m.mark_closed();
        assert_eq!(again.used(), 0);
        drop(again);
        let fresh = shared.budget("p", None);
        assert_eq!(fresh.limit(), Limits::default().max_host_memory_bytes);
        assert_eq!(fresh.used(), 0);
    }

    #[test]
    fn removing_an_instance_releases_what_its_queues_held() {
        let shared = Shared::new(Policy::default(), Limits::default());
        let sender = shared.budget("s", None);
        let mut r = Registry::default();
        for name in ["a/x", "a/y", "b/x"] {
            let m = Mailbox::new(name.into());
            m.send(vec![0; 1000], usize::MAX, Some(&sender)).unwrap();
            r.channels.insert(name.into(), m);
        }
        let per = sender.used() / 3;
        r.remove_instance("a");
        assert_eq!(sender.used(), per, "only `b/x` is still queued");
        r.remove_instance("b");
        assert_eq!(sender.used(), 0);
    }
}
