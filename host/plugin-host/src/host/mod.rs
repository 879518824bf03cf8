//! The embedding API: [`Host`] bridges plugin instances to a real event loop.
//!
//! # How guest sources map to loop sources
//!
//! Every guest registration becomes a real source in the application's loop:
//! `add-timer` a [`Timer`], `make-ping` a [`ping`](callop::ping) source,
//! `open-channel` a mailbox source (a channel whose messages are packed as
//! they are sent, see `mailbox.rs`), `add-idle` an idle callback, `io.register`
//! a [`Generic`](callop::generic::Generic) source.
//! Their callbacks never call into wasm: they only append an event to the
//! plugin's *pending batch* and, once per loop iteration, schedule a *flush*
//! as an idle callback. Idle callbacks run after all event sources of the
//! iteration were dispatched, so the flush calls the guest's `dispatch` once
//! with every event of the iteration (split at [`Limits::max_batch`]), guest
//! idles last. Timers are therefore never early (the loop's timer decides),
//! and a guest is never re-entered: the only places that call into wasm are
//! `init` (in [`Host::load`] and on a restart), the flush, and `shutdown`
//! (in [`Host::shutdown`]), each guarded by a `RefCell` borrow and all going
//! through one funnel (module `call`) that arms the call's deadline and
//! classifies its outcome the same way for all of them. A WASI `exit(code)`
//! counts as `stop(code)` in every export, `init` included.
//!
//! Calls the guest makes to `host-loop` during an export are validated at
//! once and queued (as `state::Op`s); after the export returns the
//! host applies the `dispatch` results (re-arming timers, disabling or
//! removing sources) and then the queued operations, in call order.
//!
//! A guest timer is one [`Timer`] registration for
//! its whole life: when it fires, its callback queues the event and parks it
//! (far in the future) until the guest's answer, which re-arms the same
//! registration at the deadline asked for (`to-duration`/`to-instant`) or
//! removes it (`drop`); see `timer_routing`.
//!
//! Idles added while the loop is inside its idle phase (or outside the loop)
//! would only run after the next wake-up, so the host owns a ping source it
//! triggers to make the next `dispatch` return at once.
//!
//! # Layout
//!
//! `host/mod.rs` holds the embedding API and the runtime's state; the
//! runtime's work is split into private modules per concept, following the
//! data flow (loop → source → bridge → guest export, registrations back
//! through imports):
//! * `lifecycle` — loading and instantiating plugins, ending them and
//!   restarting failed ones;
//! * `reload` — replacing a running plugin's code ([`Host::reload`]): the
//!   host holds its channels while the new version starts, then retires the
//!   old instance (or, if the new one fails, gives them back to it);
//! * `call` — the one funnel through which every guest export call goes
//!   (`init`, `dispatch`, `shutdown`, `snapshot`, `restore`) and its typed
//!   outcome;
//! * `faults` — the deadline of each guest call and what a failed call means;
//! * `bridge` — pending events, the flush into `dispatch`, its results and
//!   the queued operations (timers, idles, pings, channels);
//! * `io_routing` — the loop sources of I/O registrations and their readiness;
//! * `signal_routing` — signal sources and delivering signals to plugins;
//! * `timer_routing` — the loop timers of guest timers, re-armed in place;
//! * `ping_routing` — the loop sources of guest pings, named ones handed over at a reload;
//! * `shutdown` — graceful shutdown;
//! * `signal_shutdown` — [`SignalShutdown`]: graceful shutdown on SIGINT/SIGTERM.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::Store;

use callop::channel::{self, Channel, Sender};
use callop::ping::{Ping, PingSource};
use callop::timer::Timer;
use callop::{Dispatcher, LoopHandle, RegistrationToken};
use rustc_hash::FxHashMap;

use super::alarm::Alarm;
use super::app_channel::AppChannel;
use super::app_sender::AppSender;
use super::bindings::callop::plugin::types::{Event, EventKind};
use super::capabilities::Capabilities;
use super::engine::{EngineOptions, PluginComponent, PluginEngine};
use super::error::LoadError;
use super::fault::Fault;
use super::host_memory::Charges;
use super::limits::Limits;
use super::mailbox::Mailbox;
use super::policy::{self, Owner, Policy};
use super::restart::{RestartPolicy, Tracker};
use super::state::{PluginState, Shared, SourceId};
use super::stats::{Counters, HostStats};
use super::stdio::Tail;
use super::ticker::{CpuDeadline, Ticker};
use super::versions::GuestFuncs;
use callop::signals::Signal;

mod bridge;
mod call;
mod faults;
mod io_routing;
mod lifecycle;
mod ping_routing;
mod reload;
mod shutdown;
mod signal_routing;
mod signal_shutdown;
mod stats_table;
mod threads;
mod timer_routing;

pub use reload::{RELOAD_GRACE, ReloadError};
use stats_table::StatsTable;
pub use threads::MAX_THREADS;

pub use signal_shutdown::{
    RunEnd, ShutdownPhase, SignalShutdown, SignalShutdownError, exit_status,
};

/// Identifies one loaded plugin instance within a [`Host`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PluginId(pub u64);

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a plugin instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// It owned no source any more (exit code 0).
    Finished,
    /// It called `host-loop.stop(code)`.
    Stopped(i32),
    /// It failed: a trap, a guest panic, the callback timeout, a wait in a
    /// blocking WASI call past its budget, out of memory or stack overflow
    /// (see [`FaultKind`](crate::FaultKind)); the cause is included (one line; the full
    /// [`Fault`], with the wasm backtrace, is in [`PluginExit::fault`]).
    Trapped(String),
    /// It failed again after being restarted as often as its
    /// [`RestartPolicy`] allows within the period; it is not restarted any
    /// more. Reported after the `Trapped` exit of that last failure.
    Quarantined(String),
    /// The embedder unloaded it.
    Unloaded,
    /// It was still alive when the shutdown deadline passed (a guest call
    /// still running then, spinning or blocked, is interrupted).
    ShutdownTimeout,
}

impl ExitReason {
    /// Process-style exit code: 0 for `Finished`, `Unloaded` and
    /// `ShutdownTimeout`, the code for `Stopped`, 1 for `Trapped`.
    pub fn code(&self) -> i32 {
        match self {
            ExitReason::Stopped(c) => *c,
            ExitReason::Trapped(_) | ExitReason::Quarantined(_) => 1,
            _ => 0,
        }
    }

    /// Whether this is a failure (a fault, or the quarantine after faults).
    pub fn is_failure(&self) -> bool {
        matches!(self, ExitReason::Trapped(_) | ExitReason::Quarantined(_))
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Finished => f.write_str("finished (no sources left)"),
            ExitReason::Stopped(c) => write!(f, "stopped with code {c}"),
            ExitReason::Trapped(c) => write!(f, "failed: {c}"),
            ExitReason::Quarantined(c) => write!(f, "quarantined: {c}"),
            ExitReason::Unloaded => f.write_str("unloaded"),
            ExitReason::ShutdownTimeout => f.write_str("killed at the shutdown deadline"),
        }
    }
}

/// A plugin instance ended; delivered on [`Host::exit_events`] and kept in
/// [`Host::exits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginExit {
    /// The instance.
    pub id: PluginId,
    /// Its instance name.
    pub name: String,
    /// Why it ended.
    pub reason: ExitReason,
    /// For a failure: its kind, cause and wasm backtrace.
    pub fault: Option<Fault>,
    /// How many times this instance had been restarted before this exit
    /// (0 for the first run).
    pub restarts: u32,
    /// How many times this plugin's code had been replaced by
    /// [`Host::reload`] before this exit.
    pub reloads: u32,
}

/// One plugin to start with [`Host::load_many`].
#[derive(Debug, Clone, Copy)]
pub struct PluginSpec<'a> {
    /// The checked component.
    pub component: &'a PluginComponent,
    /// Instance name (`[A-Za-z0-9_.-]+`, at most 64 bytes, unique in the host).
    pub name: &'a str,
    /// Arguments passed to the plugin's `init`.
    pub args: &'a [String],
}

/// Errors of [`Host`] operations other than loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// A malformed name or target.
    InvalidName(String),
    /// The named plugin, channel, ping or endpoint does not exist.
    NotFound(String),
    /// The name is already taken.
    AlreadyExists(String),
    /// The channel is closed.
    Closed(String),
    /// The plugin is currently running (a host call from inside the plugin's
    /// own dispatch); retry from another callback.
    Busy(String),
    /// The event loop refused a registration.
    Loop(String),
    /// A limit was reached (the receiving plugin's host-memory budget, see
    /// [`Limits::max_host_memory_bytes`]).
    LimitExceeded(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::InvalidName(m) => write!(f, "invalid name: {m}"),
            HostError::NotFound(m) => write!(f, "not found: {m}"),
            HostError::AlreadyExists(m) => write!(f, "already exists: {m}"),
            HostError::Closed(m) => write!(f, "closed: {m}"),
            HostError::Busy(m) => write!(f, "busy: {m}"),
            HostError::Loop(m) => write!(f, "event loop: {m}"),
            HostError::LimitExceeded(m) => write!(f, "limit exceeded: {m}"),
        }
    }
}

impl std::error::Error for HostError {}

/// Configuration of a [`Host`].
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// Naming rules and permissions.
    pub policy: Policy,
    /// Resource limits per plugin.
    pub limits: Limits,
    /// Engine options (compile cache, pooling allocator). Ignored by
    /// [`Host::with_engine`].
    pub engine: EngineOptions,
    /// What to do when a plugin fails (default: never restart); override it
    /// per instance name with [`Host::set_restart_policy`].
    pub restart: RestartPolicy,
    /// Loop threads to spread the plugins over (0 or 1: only the loop the
    /// host is created on; see [`Host::start_threads`]).
    pub threads: usize,
}

impl HostConfig {
    /// Gives the plugins granted them the application's own interfaces
    /// (sets [`EngineOptions::app_api`]; see [`AppApi::add`](crate::AppApi::add)).
    pub fn with_app_api(mut self, api: crate::AppApi) -> HostConfig {
        self.engine.app_api = api;
        self
    }
}

/// A wasm plugin host living in an application's event loop.
///
/// Create it on a [`LoopHandle`], load plugins, and keep running the loop:
/// the plugins' sources are ordinary sources of that loop. Dropping the host
/// unloads every plugin and removes all their sources, and waits (at most
/// 500 ms) for their queued output to be written (see [`output`](crate::output)).
///
/// ```no_run
/// use callop::EventLoop;
/// use callop_plugin_host::{Host, HostConfig};
///
/// let mut event_loop: EventLoop<()> = EventLoop::try_new().unwrap();
/// let host = Host::new(event_loop.handle(), HostConfig::default()).unwrap();
/// // ticker.wasm: plugins/build.sh builds it (plugins/target/wasm32-wasip2/release).
/// let args = ["--every".to_string(), "10ms".into(), "--count".into(), "3".into()];
/// host.load_file("ticker.wasm", "ticker", &args).unwrap();
/// while !host.is_empty() {
///     event_loop.dispatch(None, &mut ()).unwrap();
/// }
/// ```
pub struct Host<'l, Data: 'l> {
    inner: Rc<HostInner<'l, Data>>,
}

impl<Data> std::fmt::Debug for Host<'_, Data> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("plugins", &self.plugins())
            .finish_non_exhaustive()
    }
}

struct HostInner<'l, Data> {
    handle: LoopHandle<'l, Data>,
    engine: PluginEngine,
    shared: Arc<Shared>,
    plugins: RefCell<BTreeMap<PluginId, Rc<PluginRt>>>,
    /// Every exit so far, of every loop thread of the host (shared with the
    /// hosts of its worker threads, see `threads`).
    exits: Arc<Mutex<Vec<PluginExit>>>,
    exit_tx: Sender<PluginExit>,
    exit_rx: RefCell<Option<Channel<PluginExit>>>,
    waker: Ping,
    waker_token: Cell<Option<RegistrationToken>>,
    /// Application-side registrations to remove on drop (timers).
    aux_tokens: RefCell<Vec<RegistrationToken>>,
    /// The loop timer of every live guest timer, by its registration (to
    /// re-arm it in place; see `timer_routing`).
    timers: RefCell<FxHashMap<RegistrationToken, Dispatcher<'l, Timer, Data>>>,
    /// The loop source of every named guest ping (see `ping_routing`).
    named_pings: RefCell<FxHashMap<RegistrationToken, Dispatcher<'l, PingSource, Data>>>,
    /// The engine's epoch ticker, held while this host lives (only with a
    /// callback timeout: without one no guest call has a deadline).
    ticker: Option<Arc<Ticker>>,
    /// Capabilities granted to instance names not loaded yet.
    grants: RefCell<HashMap<String, Capabilities>>,
    /// The grants of each live instance, kept for its restarts.
    restart_grants: RefCell<HashMap<String, Capabilities>>,
    /// Signals some source of the loop watches and routes to
    /// [`Host::deliver_signal`] (the embedder's or the host's own).
    watched_signals: RefCell<Vec<Signal>>,
    /// Restart policy for instances without an override.
    restart_default: Cell<RestartPolicy>,
    /// Restart policies by instance name.
    restart_overrides: RefCell<HashMap<String, RestartPolicy>>,
    /// Failure history by instance name.
    trackers: RefCell<HashMap<String, Tracker>>,
    /// Restarts scheduled but not yet done (the host is not empty meanwhile).
    pending_restarts: Cell<usize>,
    /// Set by `shutdown`: no more restarts.
    shutting_down: Cell<bool>,
    /// Interrupts the running guest call at a shutdown deadline or a forced
    /// exit, from any thread (see [`crate::alarm`]).
    alarm: Arc<Alarm>,
    /// Limits by instance name (overriding the host's).
    limit_overrides: RefCell<HashMap<String, Arc<Limits>>>,
    /// The counters of every instance, live or ended (see [`crate::stats`]).
    stats: RefCell<StatsTable>,
    /// The worker threads this host started ([`Host::start_threads`]).
    workers: RefCell<Option<threads::Workers>>,
    /// For the host of a worker thread: what it shares with the first one.
    link: Option<threads::Link>,
}

/// One plugin instance as seen from the loop.
struct PluginRt {
    id: PluginId,
    name: Arc<str>,
    /// What is needed to start it again.
    spec: Rc<StartSpec>,
    /// Restarts before this run.
    restarts: u32,
    /// Reloads ([`Host::reload`]) of this plugin so far.
    reloads: Cell<u32>,
    /// The fault that ends it, set when a guest call fails.
    fault: RefCell<Option<Fault>>,
    live: RefCell<Option<Live>>,
    pending: RefCell<Pending>,
    flush_scheduled: Cell<bool>,
    idle_queue: RefCell<Vec<SourceId>>,
    idle_runner_scheduled: Cell<bool>,
    shutdown_called: Cell<bool>,
}

impl PluginRt {
    /// A run of plugin `id` (`restarts` restarts before it), live or not yet.
    fn new(
        id: PluginId,
        name: Arc<str>,
        spec: Rc<StartSpec>,
        restarts: u32,
        live: Option<Live>,
    ) -> Rc<PluginRt> {
        Rc::new(PluginRt {
            id,
            name,
            spec,
            restarts,
            reloads: Cell::new(0),
            fault: RefCell::new(None),
            live: RefCell::new(live),
            pending: RefCell::new(Pending::default()),
            flush_scheduled: Cell::new(false),
            idle_queue: RefCell::new(Vec::new()),
            idle_runner_scheduled: Cell::new(false),
            shutdown_called: Cell::new(false),
        })
    }
}

struct Live {
    store: Store<PluginState>,
    /// The guest's exports, of the version the component was built for.
    guest: GuestFuncs,
    /// The end of the guest's stderr (for panic messages).
    stderr_tail: Tail,
    /// The deadline of the current guest call, and what it is called.
    armed: Option<(Duration, &'static str)>,
    /// The CPU-time budget its store checks at each epoch tick.
    deadline: Arc<CpuDeadline>,
    /// The instance's counters (shared by its runs, see [`crate::stats`]).
    counters: Rc<Counters>,
}

/// The component and arguments of an instance, kept for restarts.
struct StartSpec {
    component: PluginComponent,
    args: Vec<String>,
}

#[derive(Default)]
struct Pending {
    events: Vec<Event>,
    idles: Vec<Event>,
    /// Index in `events` of each I/O source's readiness (they coalesce).
    readiness: HashMap<SourceId, usize>,
    /// The host-memory charges of the message batches in `events`, released
    /// when the `dispatch` call delivering them has returned (or the plugin
    /// ends: the pending batch is dropped).
    held: Charges,
}

/// Outcome of a guest call.
enum After {
    Continue,
    End(ExitReason),
}

impl<'l, Data: 'l> Host<'l, Data> {
    /// Creates a host (and a new engine) on `handle`.
    pub fn new(handle: LoopHandle<'l, Data>, config: HostConfig) -> Result<Self, LoadError> {
        let engine = PluginEngine::new(&config.engine)?;
        let host = Self::with_engine(handle, engine, config.policy, config.limits)?;
        host.inner.restart_default.set(config.restart);
        if config.threads > 1 {
            host.start_threads(config.threads)
                .map_err(|e| LoadError::Link(format!("cannot start the loop threads: {e}")))?;
        }
        Ok(host)
    }

    /// Spreads this host's plugins over `n` loop threads: the thread of the
    /// loop it was created on (thread 0) and `n - 1` worker threads it
    /// starts now, each running a callop [`EventLoop`](callop::EventLoop)
    /// of its own. Call it before loading any plugin; `n = 1` changes
    /// nothing. At most [`MAX_THREADS`] threads.
    ///
    /// Everything else works as with one thread: loading (placement:
    /// [`pin_thread`](Self::pin_thread), else the thread with the fewest
    /// plugins), named channels and pings between plugins of different
    /// threads (FIFO per channel, batches, `closed` once, nothing lost),
    /// [`sender`](Self::sender), [`app_channel`](Self::app_channel),
    /// [`ping`](Self::ping), reloads, exits, stats, signals and
    /// [`shutdown`](Self::shutdown) (every thread's plugins get the same
    /// deadline). One engine and one compile cache serve every thread. A
    /// plugin lives on one thread for its whole life, restarts included.
    /// Keep running this host's loop: it is the one that receives signals
    /// and tells when [`is_empty`](Self::is_empty) becomes true. Dropping
    /// the host stops the worker threads (their plugins are unloaded).
    ///
    /// ```no_run
    /// use callop::EventLoop;
    /// use callop_plugin_host::{Host, HostConfig};
    ///
    /// let mut event_loop: EventLoop<()> = EventLoop::try_new().unwrap();
    /// let host = Host::new(event_loop.handle(), HostConfig::default()).unwrap();
    /// host.start_threads(2).unwrap();
    /// host.pin_thread("busy", 1).unwrap();
    /// let args = ["--every".to_string(), "10ms".into(), "--count".into(), "3".into()];
    /// let ticker = host.compile_file("ticker.wasm").unwrap();
    /// let busy = host.load(&ticker, "busy", &args).unwrap();
    /// assert_eq!(host.thread_of(busy), Some(1));
    /// while !host.is_empty() {
    ///     event_loop.dispatch(None, &mut ()).unwrap();
    /// }
    /// ```
    pub fn start_threads(&self, n: usize) -> Result<(), HostError> {
        self.inner.start_threads(n)
    }

    /// Number of loop threads the plugins are spread over (1 unless
    /// [`start_threads`](Self::start_threads) started more).
    pub fn threads(&self) -> usize {
        self.inner.thread_count()
    }

    /// Places the instance that will be loaded under `name` on loop thread
    /// `thread` (0: the host's own loop); fails if the host has no such
    /// thread. Kept for every later load of that name.
    pub fn pin_thread(&self, name: &str, thread: usize) -> Result<(), HostError> {
        self.inner.pin_thread(name, thread)
    }

    /// The loop thread plugin `id` runs (or ran) on; `None` for an id this
    /// host never loaded.
    pub fn thread_of(&self, id: PluginId) -> Option<usize> {
        self.inner.thread_of(id)
    }

    /// Sets the limits of instances named `name` started from now on
    /// (overriding the host's [`HostConfig::limits`]). A callback timeout
    /// override is honoured only if the host itself has a callback timeout
    /// (which makes the host hold its engine's epoch ticker); it is then
    /// checked at each tick of the ticker, every 5 ms.
    pub fn set_limits(&self, name: &str, limits: Limits) {
        self.inner
            .limit_overrides
            .borrow_mut()
            .insert(name.to_string(), Arc::new(limits.clone()));
        let name = name.to_string();
        self.inner
            .tell_all(move |h| h.set_limits(&name, limits.clone()));
    }

    /// Sets the restart policy of instance `name`, or (with `None`) the
    /// default of every instance without its own. Takes effect at the next
    /// failure.
    pub fn set_restart_policy(&self, name: Option<&str>, policy: RestartPolicy) {
        match name {
            Some(n) => {
                self.inner
                    .restart_overrides
                    .borrow_mut()
                    .insert(n.to_string(), policy);
            }
            None => self.inner.restart_default.set(policy),
        }
        let name = name.map(str::to_string);
        self.inner
            .tell_all(move |h| h.set_restart_policy(name.as_deref(), policy));
    }

    /// Creates a host sharing an existing engine (and its compile cache).
    pub fn with_engine(
        handle: LoopHandle<'l, Data>,
        engine: PluginEngine,
        policy: Policy,
        limits: Limits,
    ) -> Result<Self, LoadError> {
        let shared = Arc::new(Shared::new(policy, limits));
        Self::build(handle, engine, shared, None)
    }

    /// A host on `handle`: the first (or only) one of its loop threads, or,
    /// with `link`, the host of a worker thread (see `threads`).
    fn build(
        handle: LoopHandle<'l, Data>,
        engine: PluginEngine,
        shared: Arc<Shared>,
        link: Option<threads::Link>,
    ) -> Result<Self, LoadError> {
        let (waker, waker_source) = callop::ping::make_ping()
            .map_err(|e| LoadError::Link(format!("cannot create waker: {e}")))?;
        let waker_token = handle
            .insert_source(waker_source, |_, _, _| {})
            .map_err(|e| LoadError::Link(format!("cannot register waker: {}", e.error)))?;
        // One ticker per engine, shared with its other hosts; deadlines
        // count the CPU time of the thread making each guest call.
        let ticker = match shared.limits.callback_timeout {
            Some(_) => Some(
                engine
                    .ticker()
                    .map_err(|e| LoadError::Link(format!("cannot start epoch ticker: {e}")))?,
            ),
            None => None,
        };
        let (exits, exit_tx, exit_rx, alarm) = match &link {
            Some(link) => (
                link.exits.clone(),
                link.exit_tx.clone(),
                None,
                link.alarm.clone(),
            ),
            None => {
                let (exit_tx, exit_rx) = channel::channel();
                (
                    Arc::default(),
                    exit_tx,
                    Some(exit_rx),
                    Alarm::new(engine.engine().clone()),
                )
            }
        };
        Ok(Host {
            inner: Rc::new(HostInner {
                handle,
                engine,
                shared,
                plugins: RefCell::new(BTreeMap::new()),
                exits,
                exit_tx,
                exit_rx: RefCell::new(exit_rx),
                waker,
                waker_token: Cell::new(Some(waker_token)),
                aux_tokens: RefCell::new(Vec::new()),
                timers: RefCell::new(FxHashMap::default()),
                named_pings: RefCell::new(FxHashMap::default()),
                ticker,
                grants: RefCell::new(HashMap::new()),
                restart_grants: RefCell::new(HashMap::new()),
                watched_signals: RefCell::new(Vec::new()),
                restart_default: Cell::new(RestartPolicy::Never),
                restart_overrides: RefCell::new(HashMap::new()),
                trackers: RefCell::new(HashMap::new()),
                pending_restarts: Cell::new(0),
                shutting_down: Cell::new(false),
                alarm,
                limit_overrides: RefCell::new(HashMap::new()),
                stats: RefCell::new(StatsTable::default()),
                workers: RefCell::new(None),
                link,
            }),
        })
    }

    /// The engine (share it between hosts to share compiled code and cache).
    pub fn engine(&self) -> &PluginEngine {
        &self.inner.engine
    }

    /// Compiles and checks a plugin file (using the compile cache if any).
    pub fn compile_file(
        &self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<PluginComponent, LoadError> {
        self.inner.engine.load_file(path)
    }

    /// Loads a plugin file and starts it as instance `name` with `args`.
    pub fn load_file(
        &self,
        path: impl AsRef<std::path::Path>,
        name: &str,
        args: &[String],
    ) -> Result<PluginId, LoadError> {
        let c = self.inner.engine.load_file(path)?;
        self.load(&c, name, args)
    }

    /// Loads a plugin from bytes and starts it as instance `name`.
    pub fn load_bytes(
        &self,
        bytes: &[u8],
        name: &str,
        args: &[String],
    ) -> Result<PluginId, LoadError> {
        let c = self.inner.engine.load_bytes(bytes)?;
        self.load(&c, name, args)
    }

    /// Instantiates a checked component as instance `name` and runs its
    /// `init(args)`. The returned id stays valid after the plugin ends (it
    /// may even end inside `load`, e.g. if `init` registered no source).
    pub fn load(
        &self,
        component: &PluginComponent,
        name: &str,
        args: &[String],
    ) -> Result<PluginId, LoadError> {
        let spec = PluginSpec {
            component,
            name,
            args,
        };
        match self.inner.load_many(std::slice::from_ref(&spec)) {
            Ok(mut v) => v.pop().expect("one result per spec"),
            Err((_, e)) => Err(e),
        }
    }

    /// Loads several plugins together: all names are registered and all
    /// components instantiated before the first `init`, so they can
    /// `connect` to each other from `init`.
    ///
    /// Fails as a whole (nothing started) on a bad or duplicate name or an
    /// instantiation error (the error names the plugin); otherwise returns
    /// one `init` outcome per spec, in order.
    #[allow(clippy::type_complexity)]
    pub fn load_many(
        &self,
        specs: &[PluginSpec<'_>],
    ) -> Result<Vec<Result<PluginId, LoadError>>, (String, LoadError)> {
        self.inner.load_many(specs)
    }

    /// Loads several plugins together like [`load_many`](Self::load_many),
    /// but a plugin that fails to start is that plugin's failure alone, as
    /// if it had failed in a callback: this is how `callop-host` loads.
    ///
    /// Returns one id per spec, in order (the id stays the same across the
    /// instance's restarts). A failing `init` (an error, a trap, a panic,
    /// the init timeout, ...) ends that plugin at once with an exit
    /// [`ExitReason::Trapped`] whose cause is the first line of the
    /// [`LoadError`] [`load`](Self::load) would have returned (the fault,
    /// with its backtrace, in [`PluginExit::fault`]), delivered on
    /// [`exit_events`](Self::exit_events) and kept in
    /// [`exits`](Self::exits); its [`RestartPolicy`] then applies, with
    /// backoff and quarantine. A failed instantiation also ends only that
    /// plugin (an exit `Trapped("cannot instantiate plugin: …")`), but is
    /// not restarted, exactly as on a restart. The other plugins start and
    /// keep running either way. A WASI `exit(code)` in `init` is a stop
    /// ([`ExitReason::Stopped`]), not a failure, as for [`load`](Self::load).
    ///
    /// Only `init` runs during this call, so the failures it adds to
    /// [`exits`](Self::exits) are exactly the plugins that failed to start
    /// (a plugin quarantined at once, with `on-failure:0`, has two: its
    /// `Trapped` exit and its `Quarantined` one).
    ///
    /// Fails as a whole (nothing started) only on a bad or duplicate name.
    pub fn load_many_supervised(
        &self,
        specs: &[PluginSpec<'_>],
    ) -> Result<Vec<PluginId>, (String, LoadError)> {
        self.inner.load_many_supervised(specs)
    }

    /// Replaces the code of the running plugin `id` by `component`, without
    /// stopping the host or losing a message sent to the plugin's channels;
    /// if both versions export [`STATE_EXPORT`](crate::STATE_EXPORT), the
    /// old instance's snapshot is handed to the new one before its `init`.
    ///
    /// The new instance gets the same instance name, arguments,
    /// capabilities, limits, restart policy and [`PluginId`]. If it cannot
    /// start (instantiation, `restore` or `init` fails), the reload fails
    /// and the old instance keeps running, untouched. See [`ReloadError`]
    /// and the module `host/reload.rs` for the steps and their guarantees.
    /// Refused during a shutdown ([`ReloadError::ShuttingDown`]).
    pub fn reload(&self, id: PluginId, component: &PluginComponent) -> Result<(), ReloadError> {
        match self.inner.remote_owner(id) {
            Some(t) => {
                let c = component.clone();
                self.inner
                    .ask(t, move |h| h.reload(id, &c))
                    .unwrap_or(Err(ReloadError::NotFound(id)))
            }
            None => self.inner.reload(id, component),
        }
    }

    /// Compiles a plugin file (using the compile cache) and
    /// [`reload`](Self::reload)s plugin `id` with it; a file that is not a
    /// loadable plugin fails with [`ReloadError::Load`] and changes nothing.
    pub fn reload_file(
        &self,
        id: PluginId,
        path: impl AsRef<std::path::Path>,
    ) -> Result<(), ReloadError> {
        let c = self.inner.engine.load_file(path)?;
        self.reload(id, &c)
    }

    /// [`reload`](Self::reload)s plugin `id` with a component given as bytes.
    pub fn reload_bytes(&self, id: PluginId, bytes: &[u8]) -> Result<(), ReloadError> {
        let c = self.inner.engine.load_bytes(bytes)?;
        self.reload(id, &c)
    }

    /// How many times plugin `id` was reloaded (`None` if it is not alive).
    pub fn reloads(&self, id: PluginId) -> Option<u32> {
        if let Some(r) = self.inner.ask_owner(id, move |h| h.reloads(id)) {
            return r;
        }
        self.inner
            .plugins
            .borrow()
            .get(&id)
            .map(|p| p.reloads.get())
    }

    /// Unloads a plugin at once (no `shutdown` call); its sources are
    /// removed. Returns `false` if it had already ended.
    pub fn unload(&self, id: PluginId) -> bool {
        if let Some(t) = self.inner.remote_owner(id) {
            return self.inner.ask(t, move |h| h.unload(id)).unwrap_or(false);
        }
        let p = self.inner.plugins.borrow().get(&id).cloned();
        match p {
            Some(p) => {
                self.inner.end(&p, ExitReason::Unloaded);
                true
            }
            None => false,
        }
    }

    /// Asks every plugin to terminate: calls each one's `shutdown(deadline)`
    /// (at most once per plugin), keeps dispatching their events, and
    /// unloads those still alive after `grace` ([`ExitReason::ShutdownTimeout`]).
    pub fn shutdown(&self, grace: Duration) {
        self.inner.shutdown_workers(grace);
        self.inner.shutdown(grace);
    }

    /// Whether no plugin is alive and no restart is pending (on any loop
    /// thread).
    pub fn is_empty(&self) -> bool {
        self.inner.plugins.borrow().is_empty()
            && self.inner.pending_restarts.get() == 0
            && self.inner.workers_empty()
    }

    /// The live plugins (id and instance name), in load order.
    pub fn plugins(&self) -> Vec<(PluginId, String)> {
        let mut all: Vec<(PluginId, String)> = self
            .inner
            .plugins
            .borrow()
            .values()
            .map(|p| (p.id, p.name.to_string()))
            .collect();
        if self.inner.is_threaded() {
            all.extend(self.inner.ask_all(|h| h.plugins()).into_iter().flatten());
            all.sort_by_key(|(id, _)| *id);
        }
        all
    }

    /// The loop registration behind each source of a plugin that has one of
    /// its own, by guest source id (`None` if the plugin is not alive). For
    /// diagnostics and tests: e.g. a guest timer keeps one registration for
    /// its whole life, however often it fires.
    pub fn source_registrations(&self, id: PluginId) -> Option<Vec<(u64, RegistrationToken)>> {
        if let Some(r) = self
            .inner
            .ask_owner(id, move |h| h.source_registrations(id))
        {
            return r;
        }
        let p = self.inner.plugins.borrow().get(&id).cloned()?;
        let live = p.live.try_borrow().ok()?;
        live.as_ref()
            .map(|l| l.store.data().sources.registrations())
    }

    /// Bytes the host holds for a plugin now, charged to its host-memory
    /// budget ([`Limits::max_host_memory_bytes`]): messages it sent that
    /// are not delivered yet, and messages the application queued for it
    /// (`None` if it is not alive). For diagnostics and tests.
    pub fn host_memory_used(&self, id: PluginId) -> Option<usize> {
        if let Some(r) = self.inner.ask_owner(id, move |h| h.host_memory_used(id)) {
            return r;
        }
        let p = self.inner.plugins.borrow().get(&id).cloned()?;
        let live = p.live.try_borrow().ok()?;
        live.as_ref().map(|l| l.store.data().budget.used())
    }

    /// Number of live sources of a plugin (`None` if it is not alive).
    pub fn source_count(&self, id: PluginId) -> Option<usize> {
        if let Some(r) = self.inner.ask_owner(id, move |h| h.source_count(id)) {
            return r;
        }
        let p = self.inner.plugins.borrow().get(&id).cloned()?;
        let live = p.live.try_borrow().ok()?;
        live.as_ref().map(|l| l.store.data().live_sources())
    }

    /// What each plugin instance costs: calls, events, guest CPU time,
    /// host-function time, memory, sources, queues, faults, restarts (see
    /// [`crate::stats`]). Live instances and the last
    /// [`KEPT_ENDED`](crate::stats::KEPT_ENDED) ended ones, in load order.
    /// Reads the counters of the loop thread: cheap enough to call a few
    /// times a second.
    pub fn stats(&self) -> HostStats {
        self.inner.stats()
    }

    /// Calls `publish` with [`Host::stats`] now and then every `period`,
    /// from a timer of the host's loop (removed when the host is dropped):
    /// e.g. to hand a snapshot to another thread that serves it, such as a
    /// [`MetricsServer`](crate::metrics::MetricsServer). `publish` runs on
    /// the loop thread: it must not block.
    pub fn publish_stats(
        &self,
        period: Duration,
        publish: impl FnMut(HostStats) + 'l,
    ) -> Result<(), HostError> {
        self.inner.publish_stats(period, publish)
    }

    /// Every plugin exit so far, in order.
    pub fn exits(&self) -> Vec<PluginExit> {
        self.inner
            .exits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A channel receiving every [`PluginExit`]; insert it into the loop to
    /// react to plugins ending. Can be taken once.
    pub fn exit_events(&self) -> Option<Channel<PluginExit>> {
        self.inner.exit_rx.borrow_mut().take()
    }

    /// A sender delivering to the plugin channel `target` (`instance/name`).
    ///
    /// The channel need not be open yet (messages are buffered) but the
    /// instance must exist. The sender counts like a plugin's: when every
    /// sender of the channel is dropped, its owner gets a `closed` event.
    /// Messages go straight into the plugin's channel: the next loop
    /// iteration delivers them.
    pub fn sender(&self, target: &str) -> Result<AppSender, HostError> {
        self.inner.sender(target)
    }

    /// Creates the application endpoint `@app/<name>` that plugins can
    /// `connect` to, and returns its receiving end: insert it into the loop.
    /// It reports `Closed` once every plugin sender to it was dropped (after
    /// at least one existed) or [`Host::close_app_channel`] was called.
    ///
    /// Until the loop delivers a message, its bytes count against the
    /// sending plugin's host-memory budget
    /// ([`Limits::max_host_memory_bytes`](crate::Limits::max_host_memory_bytes)).
    pub fn app_channel(&self, name: &str) -> Result<AppChannel, HostError> {
        policy::check_name(name).map_err(|e| HostError::InvalidName(e.0))?;
        let full = format!("{}/{name}", policy::APP_PREFIX);
        let mut reg = self.inner.shared.registry();
        if reg.channels.contains_key(&full) {
            return Err(HostError::AlreadyExists(full));
        }
        let (tx, rx) = channel::channel();
        reg.channels
            .insert(full.clone(), Mailbox::new_app(full, tx));
        Ok(AppChannel::new(rx))
    }

    /// Removes the endpoint `@app/<name>`: plugin senders to it then get
    /// `not-found`, and its receiver reports `Closed`.
    pub fn close_app_channel(&self, name: &str) -> bool {
        let full = format!("{}/{name}", policy::APP_PREFIX);
        match self.inner.shared.registry().channels.remove(&full) {
            Some(slot) => {
                slot.mark_closed();
                true
            }
            None => false,
        }
    }

    /// A handle to the named ping `instance/name` of a plugin.
    pub fn ping(&self, target: &str) -> Result<Ping, HostError> {
        let (inst, local) = target
            .split_once('/')
            .ok_or_else(|| HostError::InvalidName(format!("`{target}` is not `instance/name`")))?;
        policy::check_name(inst)
            .and_then(|_| policy::check_name(local))
            .map_err(|e| HostError::InvalidName(e.0))?;
        self.inner
            .shared
            .registry()
            .pings
            .get(target)
            .cloned()
            .ok_or_else(|| HostError::NotFound(format!("no ping named `{target}`")))
    }

    /// The plugins' clock (`host-loop.now`), in nanoseconds.
    pub fn now(&self) -> u64 {
        self.inner.shared.now_ns()
    }

    /// Grants `caps` (network, directories, descriptors, stdin, signals) to
    /// the instance that will be loaded under `name`, through the `io`
    /// interface and WASI alike ([`wasi_grants`](crate::wasi_grants)).
    /// Without a grant a plugin gets no capability at all. Grants are
    /// consumed when the instance is created; granting again replaces a
    /// pending grant.
    pub fn grant(&self, name: &str, caps: Capabilities) {
        self.inner
            .grants
            .borrow_mut()
            .insert(name.to_string(), caps);
    }

    /// Tells the host that the embedder watches these signals itself and
    /// forwards them with [`deliver_signal`](Self::deliver_signal) (the
    /// host then does not create its own signal sources for them).
    /// Signals must be blocked before threads are spawned to be reliably
    /// received by a signal source; an embedder that creates its `Signals`
    /// source first (as `callop-host` does) gets that for free.
    pub fn watch_signals_externally(&self, signals: &[Signal]) {
        self.watch_signals_inner(signals);
    }

    /// The host's alarm (see [`crate::alarm`]), for the signal watcher.
    pub(crate) fn alarm(&self) -> Arc<Alarm> {
        self.inner.alarm.clone()
    }

    fn watch_signals_inner(&self, signals: &[Signal]) {
        let mut w = self.inner.watched_signals.borrow_mut();
        for s in signals {
            if !w.contains(s) {
                w.push(*s);
            }
        }
    }

    /// Delivers `signal` to every plugin subscribed to it (and granted it).
    /// Returns whether at least one plugin received it.
    pub fn deliver_signal(&self, signal: Signal) -> bool {
        self.inner.deliver_signal(signal)
    }

    /// Whether some live plugin is subscribed to `signal`.
    pub fn has_signal_subscriber(&self, signal: Signal) -> bool {
        self.inner.plugins.borrow().values().any(|p| {
            p.live.try_borrow().ok().is_some_and(|l| {
                l.as_ref()
                    .is_some_and(|l| l.store.data().sources.subscribers(signal).next().is_some())
            })
        }) || self
            .inner
            .ask_all(move |h| h.has_signal_subscriber(signal))
            .contains(&true)
    }
}

impl<'l, Data> Drop for Host<'l, Data> {
    fn drop(&mut self) {
        self.inner.stop_threads();
        let all: Vec<Rc<PluginRt>> = self.inner.plugins.borrow().values().cloned().collect();
        for p in all {
            self.inner.end(&p, ExitReason::Unloaded);
        }
        if let Some(t) = self.inner.waker_token.take() {
            self.inner.handle.remove(t);
        }
        for t in self.inner.aux_tokens.borrow_mut().drain(..) {
            self.inner.handle.remove(t);
        }
        // The plugins' last output lines, if the process ends next.
        crate::output::flush(Duration::from_millis(500));
    }
}

fn plugin_of(id: SourceId, kind: EventKind) -> Event {
    Event { source: id, kind }
}

impl<'l, Data: 'l> HostInner<'l, Data> {
    fn sender(self: &Rc<Self>, target: &str) -> Result<AppSender, HostError> {
        let (inst, local) = target
            .split_once('/')
            .ok_or_else(|| HostError::InvalidName(format!("`{target}` is not `instance/name`")))?;
        let t = policy::parse_target(inst, target).map_err(|e| HostError::InvalidName(e.0))?;
        if t.owner == Owner::App {
            return Err(HostError::InvalidName(
                "the application cannot send to its own endpoints".into(),
            ));
        }
        let full = format!("{inst}/{local}");
        let slot = {
            let mut reg = self.shared.registry();
            match reg.channels.get(&full) {
                Some(s) => s.clone(),
                None => {
                    if !reg.instances.contains(inst) {
                        return Err(HostError::NotFound(format!(
                            "no plugin instance named `{inst}`"
                        )));
                    }
                    let s = Mailbox::new(full.clone());
                    reg.channels.insert(full.clone(), s.clone());
                    s
                }
            }
        };
        if slot.is_closed() {
            return Err(HostError::Closed(format!("channel `{full}` is closed")));
        }
        Ok(AppSender::new(slot, self.shared.budget(inst, None)))
    }
}
