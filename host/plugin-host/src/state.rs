//! Per-instance store data ([`PluginState`]) and the host-wide registry of
//! named channels and pings shared by all instances of one host.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use callop::RegistrationToken;
use callop::ping::{Ping, PingSource};

use super::bindings::callop::plugin::types::{Error as WitError, ErrorCode};
use super::capabilities::Capabilities;
use super::io::{IoReg, IoState};
use super::limits::Limits;
use super::mailbox::{Mailbox, MailboxSource};
use super::policy::Policy;

/// A source id as seen by the guest.
pub(crate) type SourceId = u64;

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
}

impl Shared {
    pub fn new(policy: Policy, limits: Limits) -> Self {
        Shared {
            base: Instant::now(),
            policy,
            limits,
            registry: Mutex::new(Registry::default()),
        }
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
    }
}

/// Kind of a plugin's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKind {
    Timer,
    Idle,
    Ping,
    Channel,
    /// A registered I/O object.
    Io,
    /// A signal subscription.
    Signals,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Timer => "timer",
            SourceKind::Idle => "idle",
            SourceKind::Ping => "ping",
            SourceKind::Channel => "channel",
            SourceKind::Io => "I/O registration",
            SourceKind::Signals => "signal subscription",
        }
    }
}

/// One source of a plugin, as tracked by the host.
pub(crate) struct SourceRec {
    pub kind: SourceKind,
    pub enabled: bool,
    /// Loop registration, once applied (`None` for idles and fired timers).
    pub token: Option<RegistrationToken>,
    /// Removed by the guest; the removal is queued.
    pub removed: bool,
    /// Whether the loop registration is currently disabled.
    pub loop_disabled: bool,
    /// Full registry name of a named ping or a channel.
    pub full_name: Option<String>,
    /// A channel's slot.
    pub slot: Option<Arc<Mailbox>>,
    /// An I/O registration's object, interest and mode.
    pub io: Option<IoReg>,
    /// A signal subscription's signals.
    pub signals: Vec<callop::signals::Signal>,
    /// A signal subscription is active (its `Op::AddSignals` was applied).
    pub active: bool,
}

/// A queued source operation, applied after the current export returns.
pub(crate) enum Op {
    AddTimer {
        id: SourceId,
        deadline: Instant,
    },
    AddIdle {
        id: SourceId,
    },
    AddPing {
        id: SourceId,
        source: PingSource,
    },
    OpenChannel {
        id: SourceId,
        source: MailboxSource,
    },
    Enable(SourceId),
    Disable(SourceId),
    Update(SourceId),
    Remove(SourceId),
    /// Register an I/O object (its `SourceRec::io`) on the loop.
    AddIo(SourceId),
    /// Re-register an I/O object with its new interest and mode.
    SetInterest(SourceId),
    /// Subscribe to the signals of the source's `SourceRec::signals`.
    AddSignals(SourceId),
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

/// The data of one plugin instance's wasmtime `Store`.
pub struct PluginState {
    pub(crate) name: Arc<str>,
    pub(crate) shared: Arc<Shared>,
    /// This instance's limits (the host's, or a per-instance override).
    pub(crate) limits: Arc<Limits>,
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) store_limits: super::limits::PluginLimiter,
    pub(crate) sources: FxHashMap<SourceId, SourceRec>,
    pub(crate) next_id: SourceId,
    pub(crate) ops: Vec<Op>,
    pub(crate) stop: Option<i32>,
    /// Live guest-held resource handles.
    pub(crate) handles: usize,
    /// Capabilities and state of the `io` interface.
    pub(crate) io: IoState,
    /// Entries of `sources` marked `removed` (so that counting live sources
    /// is O(1): a registration storm must not cost O(n) per call).
    removed_count: usize,
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
        PluginState {
            name,
            shared,
            limits,
            table: ResourceTable::new(),
            wasi,
            store_limits,
            sources: FxHashMap::default(),
            next_id: 1,
            ops: Vec::new(),
            stop: None,
            handles: 0,
            io: IoState::new(caps),
            removed_count: 0,
        }
    }

    /// Number of sources that are not (being) removed.
    pub(crate) fn live_sources(&self) -> usize {
        self.sources.len() - self.removed_count
    }

    /// Removes a source record (whatever its state) and returns it.
    pub(crate) fn forget(&mut self, id: SourceId) -> Option<SourceRec> {
        let rec = self.sources.remove(&id)?;
        if rec.removed {
            self.removed_count -= 1;
        }
        Some(rec)
    }

    /// Allocates a new source id after checking the source limit.
    pub(crate) fn alloc_source(&mut self, kind: SourceKind) -> Result<SourceId, WitError> {
        if self.live_sources() >= self.limits.max_sources {
            return Err(wit_err(
                ErrorCode::LimitExceeded,
                format!(
                    "at most {} sources per plugin (--max-sources / limits.max_sources)",
                    self.limits.max_sources
                ),
            ));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.sources.insert(
            id,
            SourceRec {
                kind,
                enabled: true,
                token: None,
                removed: false,
                loop_disabled: false,
                full_name: None,
                slot: None,
                io: None,
                signals: Vec::new(),
                active: false,
            },
        );
        Ok(id)
    }

    /// Looks up a live source of this instance.
    pub(crate) fn live(&mut self, id: SourceId) -> Result<&mut SourceRec, WitError> {
        match self.sources.get_mut(&id) {
            Some(r) if !r.removed => Ok(r),
            _ => Err(wit_err(
                ErrorCode::InvalidSource,
                format!("no source {id} in this plugin"),
            )),
        }
    }

    /// Marks a source removed and releases its ping/channel name at once (a
    /// new channel or ping of the same name may then be created). The loop
    /// registration is removed when the queued `Op::Remove` is applied.
    pub(crate) fn release(&mut self, id: SourceId) {
        let Some(rec) = self.sources.get_mut(&id) else {
            return;
        };
        if !rec.removed {
            rec.removed = true;
            self.removed_count += 1;
        }
        let full_name = rec.full_name.take();
        let slot = rec.slot.clone();
        let kind = rec.kind;
        if let Some(full) = full_name {
            let mut reg = self.shared.registry();
            match kind {
                SourceKind::Ping => {
                    reg.pings.remove(&full);
                }
                SourceKind::Channel => {
                    if let Some(s) = &slot
                        && reg
                            .channels
                            .get(&full)
                            .is_some_and(|cur| Arc::ptr_eq(cur, s))
                    {
                        reg.channels.remove(&full);
                    }
                }
                _ => {}
            }
        }
        if let Some(s) = slot {
            s.mark_closed();
        }
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
}
