//! What each plugin costs: the figures [`Host::stats`](crate::Host::stats)
//! returns ([`HostStats`], one [`PluginStats`] per plugin instance).
//!
//! # How they are kept
//!
//! Everything is counted on the loop thread, in plain `Cell`s and store
//! fields (no atomics, no locks, no clock read per guest call):
//!
//! * **counters** (calls, events, faults, restarts, reloads) are bumped in
//!   the one funnel every guest call goes through (`host/call.rs`): a few
//!   increments per call and one per event. They are cumulative over the
//!   restarts of an instance (same [`PluginId`]), so they only grow;
//! * **guest CPU time** is *sampled* at the epoch tick the callback deadline
//!   already takes ([`CPU_RESOLUTION`], 5 ms; see `ticker.rs`): reading the
//!   thread's CPU clock costs about 0.5 µs here, a third of a whole guest
//!   event, so it is never read per call. A tick that finds a call of the
//!   plugin running counts one tick for the part of the call before it, and
//!   each further tick of the same call counts the CPU time (same clock as
//!   the deadline) since the previous one. Long calls are thus measured on
//!   the deadline's clock to within one tick, and short calls statistically
//!   (a call of 50 µs is counted 5 ms once in about 100 calls): the figure
//!   is exact in expectation on a thread that is not preempted, and its
//!   error shrinks as it grows (±5 ms per sampled tick, about ±7 % after one
//!   second). A first tick never counts more than the thread's CPU time
//!   since its previous sample, so a thread is never counted more than it
//!   spent; on an oversubscribed machine (a call preempted across a tick)
//!   short calls still tend to be over-counted. It is the CPU time of the
//!   loop thread during the plugin's calls, host functions included; `None`
//!   when the host has no callback timeout (then no ticker runs);
//! * **host-function time** is the wall time spent in the `host-loop` and
//!   `io` imports the plugin called (two monotonic clock reads per import
//!   call, a vDSO call of some 20 ns), and in the bounded blocking WASI
//!   calls (`wasi_blocking`: the time they waited);
//! * **gauges** (memory, tables, sources, queues, I/O objects) are read
//!   when [`Host::stats`](crate::Host::stats) is called, from the live
//!   instance; they are zero once it has ended.
//!
//! The host keeps the figures of ended instances too (for a summary at
//! exit), at most [`KEPT_ENDED`] of them: the oldest ended ones go first.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::bindings::callop::plugin::types::{Event, EventKind};
use crate::fault::FaultKind;
use crate::host::PluginId;

/// The resolution of [`PluginStats::guest_cpu`]: one epoch tick.
pub const CPU_RESOLUTION: Duration = crate::ticker::TICK;

/// How many ended instances [`HostStats`] keeps the figures of.
pub const KEPT_ENDED: usize = 256;

/// The figures of every plugin instance of a host, at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostStats {
    /// One entry per instance, live ones and (at most [`KEPT_ENDED`])
    /// ended ones, in load order.
    pub plugins: Vec<PluginStats>,
    /// Whether guest CPU time is measured (the host has a callback timeout,
    /// hence an epoch ticker).
    pub cpu_measured: bool,
}

impl HostStats {
    /// The figures of the instance named `name` (the live one if several
    /// ended instances had that name too, else the last one).
    pub fn plugin(&self, name: &str) -> Option<&PluginStats> {
        let mut named = self.plugins.iter().filter(|p| p.name == name);
        named
            .clone()
            .find(|p| p.alive)
            .or_else(|| named.next_back())
    }
}

/// The figures of one plugin instance, cumulative over its restarts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginStats {
    /// The instance (the same across restarts).
    pub id: PluginId,
    /// Its instance name.
    pub name: String,
    /// Whether it is running now (gauges are zero otherwise).
    pub alive: bool,
    /// Calls of its exports: `init`, `dispatch` and `shutdown`.
    pub guest_calls: u64,
    /// Calls of its `dispatch` export (one per batch of events).
    pub dispatch_calls: u64,
    /// Events delivered to it, by kind.
    pub events: EventCounts,
    /// CPU time of the loop thread during its calls, sampled at each epoch
    /// tick ([`CPU_RESOLUTION`]; see the module documentation); `None`
    /// when not measured (no callback timeout).
    pub guest_cpu: Option<Duration>,
    /// Calls it made to the host's `host-loop` and `io` imports.
    pub host_calls: u64,
    /// Wall time spent in those imports and in blocking WASI calls.
    pub host_time: Duration,
    /// Its linear memories, in bytes.
    pub memory_bytes: u64,
    /// Elements of its tables.
    pub table_elements: u64,
    /// Its live sources, by kind.
    pub sources: SourceCounts,
    /// Messages waiting in its channels, not taken by the loop yet.
    pub queued_messages: u64,
    /// The bytes of those messages.
    pub queued_bytes: u64,
    /// I/O objects (sockets, files, directories, descriptors) it holds.
    pub io_objects: u64,
    /// Its failures, by kind.
    pub faults: FaultCounts,
    /// How many times it was restarted after a failure.
    pub restarts: u64,
    /// How many times it was reloaded (a new component, same instance).
    pub reloads: u64,
}

/// Events delivered to a plugin, by kind (`types.event-kind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// `timer` events.
    pub timer: u64,
    /// `idle` events.
    pub idle: u64,
    /// `ping` events.
    pub ping: u64,
    /// `messages` events (one per batch of messages).
    pub messages: u64,
    /// `closed` events.
    pub closed: u64,
    /// `readiness` events (I/O).
    pub readiness: u64,
    /// `signal` events.
    pub signal: u64,
    /// Messages in the `messages` batches.
    pub messages_received: u64,
    /// The bytes of those messages.
    pub message_bytes: u64,
}

impl EventCounts {
    /// Every event, all kinds together (a batch of messages is one event).
    pub fn total(&self) -> u64 {
        self.by_kind().iter().map(|(_, n)| n).sum()
    }

    /// `(kind, count)` for each event kind, named as in WIT.
    pub fn by_kind(&self) -> [(&'static str, u64); 7] {
        [
            ("timer", self.timer),
            ("idle", self.idle),
            ("ping", self.ping),
            ("messages", self.messages),
            ("closed", self.closed),
            ("readiness", self.readiness),
            ("signal", self.signal),
        ]
    }
}

/// Live sources of a plugin, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// Timers.
    pub timer: u64,
    /// Idles not run yet.
    pub idle: u64,
    /// Pings.
    pub ping: u64,
    /// Channels it opened.
    pub channel: u64,
    /// I/O registrations.
    pub io: u64,
    /// Signal subscriptions.
    pub signals: u64,
}

impl SourceCounts {
    /// Every live source.
    pub fn total(&self) -> u64 {
        self.by_kind().iter().map(|(_, n)| n).sum()
    }

    /// `(kind, count)` for each source kind.
    pub fn by_kind(&self) -> [(&'static str, u64); 6] {
        [
            ("timer", self.timer),
            ("idle", self.idle),
            ("ping", self.ping),
            ("channel", self.channel),
            ("io", self.io),
            ("signals", self.signals),
        ]
    }
}

/// Failures of a plugin, by kind ([`FaultKind`], and `init` returning an
/// error).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// [`FaultKind::Trap`].
    pub trap: u64,
    /// [`FaultKind::Panic`].
    pub panic: u64,
    /// [`FaultKind::Timeout`].
    pub timeout: u64,
    /// [`FaultKind::OutOfMemory`].
    pub out_of_memory: u64,
    /// [`FaultKind::StackOverflow`].
    pub stack_overflow: u64,
    /// [`FaultKind::Blocked`].
    pub blocked: u64,
    /// [`FaultKind::Host`].
    pub host: u64,
    /// `init` returned an error.
    pub init_error: u64,
}

impl FaultCounts {
    /// Every failure.
    pub fn total(&self) -> u64 {
        self.by_kind().iter().map(|(_, n)| n).sum()
    }

    /// `(kind, count)` for each kind, as `snake_case` labels.
    pub fn by_kind(&self) -> [(&'static str, u64); 8] {
        [
            ("trap", self.trap),
            ("panic", self.panic),
            ("timeout", self.timeout),
            ("out_of_memory", self.out_of_memory),
            ("stack_overflow", self.stack_overflow),
            ("blocked", self.blocked),
            ("host", self.host),
            ("init_error", self.init_error),
        ]
    }

    fn slot(&mut self, kind: FaultKind) -> &mut u64 {
        match kind {
            FaultKind::Trap => &mut self.trap,
            FaultKind::Panic => &mut self.panic,
            FaultKind::Timeout => &mut self.timeout,
            FaultKind::OutOfMemory => &mut self.out_of_memory,
            FaultKind::StackOverflow => &mut self.stack_overflow,
            FaultKind::Blocked => &mut self.blocked,
            FaultKind::Host => &mut self.host,
        }
    }
}

// ------------------------------------------------------------- counting

/// The cumulative counters of one plugin instance (across its runs), on
/// the loop thread; shared by its runs' `Live` and the host's table.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    guest_calls: Cell<u64>,
    dispatch_calls: Cell<u64>,
    events: Cell<EventCounts>,
    faults: Cell<FaultCounts>,
    restarts: Cell<u64>,
    reloads: Cell<u64>,
    /// Host-import calls and their time (ns).
    host: Cell<(u64, u64)>,
    /// What the ended runs measured (the live run's is read from it).
    done: Cell<RunTotals>,
}

/// What one run measured in its deadline (see `ticker.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RunTotals {
    /// Sampled guest CPU time (ns).
    pub cpu_ns: u64,
    /// Wall time waited in blocking WASI calls (ns).
    pub blocked_ns: u64,
}

impl RunTotals {
    fn plus(self, o: RunTotals) -> RunTotals {
        RunTotals {
            cpu_ns: self.cpu_ns.saturating_add(o.cpu_ns),
            blocked_ns: self.blocked_ns.saturating_add(o.blocked_ns),
        }
    }
}

/// The per-run figures a plugin's store keeps (plain fields: the store is
/// only touched by the loop thread).
#[derive(Debug, Default)]
pub(crate) struct RunStats {
    /// I/O objects held.
    pub io_objects: u64,
}

thread_local! {
    /// Host-import calls made on this thread, and the time spent in them
    /// (ns): the guest call funnel reads it before and after each call to
    /// attribute the difference to the calling plugin.
    static HOST_CALLS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Times one host-import call (`host-loop`, `io`): created first thing in
/// the import, it adds the call's wall time to this thread's total when
/// dropped (two reads of the monotonic clock).
pub(crate) struct HostCall(Instant);

impl HostCall {
    /// Starts timing an import call.
    #[inline]
    pub(crate) fn start() -> HostCall {
        HostCall(Instant::now())
    }

    /// This thread's host-import calls and time (ns) so far.
    #[inline]
    pub(crate) fn totals() -> (u64, u64) {
        HOST_CALLS.with(Cell::get)
    }
}

impl Drop for HostCall {
    #[inline]
    fn drop(&mut self) {
        let ns = u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        HOST_CALLS.with(|c| {
            let (n, t) = c.get();
            c.set((n + 1, t.saturating_add(ns)));
        });
    }
}

fn bump(c: &Cell<u64>, n: u64) {
    c.set(c.get().saturating_add(n));
}

impl Counters {
    /// One call of a guest export (`dispatch` if `events` is `Some`).
    #[inline]
    pub(crate) fn count_call(&self, events: Option<&[Event]>) {
        bump(&self.guest_calls, 1);
        let Some(events) = events else { return };
        bump(&self.dispatch_calls, 1);
        let mut e = self.events.get();
        for ev in events {
            let slot = match &ev.kind {
                EventKind::Timer(_) => &mut e.timer,
                EventKind::Idle => &mut e.idle,
                EventKind::Ping => &mut e.ping,
                EventKind::Messages(b) => {
                    e.messages_received += b.lengths.len() as u64;
                    e.message_bytes += b.data.len() as u64;
                    &mut e.messages
                }
                EventKind::Closed => &mut e.closed,
                EventKind::Readiness(_) => &mut e.readiness,
                EventKind::Signal(_) => &mut e.signal,
            };
            *slot += 1;
        }
        self.events.set(e);
    }

    /// Host-import calls made during one guest call: `before` and `after`
    /// are [`HostCall::totals`] around it.
    #[inline]
    pub(crate) fn count_host(&self, before: (u64, u64), after: (u64, u64)) {
        let (n, t) = self.host.get();
        self.host.set((
            n.saturating_add(after.0.wrapping_sub(before.0)),
            t.saturating_add(after.1.wrapping_sub(before.1)),
        ));
    }

    /// A call failed with a fault of `kind`.
    pub(crate) fn count_fault(&self, kind: FaultKind) {
        let mut f = self.faults.get();
        *f.slot(kind) += 1;
        self.faults.set(f);
    }

    /// `init` returned an error.
    pub(crate) fn count_init_error(&self) {
        let mut f = self.faults.get();
        f.init_error += 1;
        self.faults.set(f);
    }

    /// The instance was restarted.
    pub(crate) fn count_restart(&self) {
        bump(&self.restarts, 1);
    }

    /// The instance was reloaded (the hook of `HostInner::note_reload`).
    pub(crate) fn count_reload(&self) {
        bump(&self.reloads, 1);
    }

    /// Adds what an ended run measured.
    pub(crate) fn fold(&self, run: RunTotals) {
        self.done.set(self.done.get().plus(run));
    }

    /// The figures so far, with `live` the measures of the running run (if
    /// any) and `gauges` its gauges; `cpu_measured`: whether CPU time is.
    pub(crate) fn snapshot(
        &self,
        id: PluginId,
        name: &str,
        live: Option<(RunTotals, Gauges)>,
        cpu_measured: bool,
    ) -> PluginStats {
        let alive = live.is_some();
        let (run, g) = live.unwrap_or_default();
        let t = self.done.get().plus(run);
        let (host_calls, host_ns) = self.host.get();
        PluginStats {
            id,
            name: name.to_string(),
            alive,
            guest_calls: self.guest_calls.get(),
            dispatch_calls: self.dispatch_calls.get(),
            events: self.events.get(),
            guest_cpu: cpu_measured.then(|| Duration::from_nanos(t.cpu_ns)),
            host_calls,
            host_time: Duration::from_nanos(host_ns.saturating_add(t.blocked_ns)),
            memory_bytes: g.memory_bytes,
            table_elements: g.table_elements,
            sources: g.sources,
            queued_messages: g.queued_messages,
            queued_bytes: g.queued_bytes,
            io_objects: g.io_objects,
            faults: self.faults.get(),
            restarts: self.restarts.get(),
            reloads: self.reloads.get(),
        }
    }
}

/// The gauges of a live run, read from its store.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gauges {
    pub memory_bytes: u64,
    pub table_elements: u64,
    pub sources: SourceCounts,
    pub queued_messages: u64,
    pub queued_bytes: u64,
    pub io_objects: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::callop::plugin::types::MessageBatch;

    fn ev(kind: EventKind) -> Event {
        Event { source: 1, kind }
    }

    #[test]
    fn a_dispatch_counts_one_call_and_each_event_by_kind() {
        let c = Counters::default();
        c.count_call(None); // init
        let batch = MessageBatch {
            data: vec![0; 10],
            lengths: vec![4, 6],
        };
        c.count_call(Some(&[
            ev(EventKind::Ping),
            ev(EventKind::Messages(batch)),
            ev(EventKind::Timer(5)),
            ev(EventKind::Ping),
        ]));
        c.count_call(Some(&[ev(EventKind::Closed)]));
        let s = c.snapshot(PluginId(1), "p", None, false);
        assert_eq!((s.guest_calls, s.dispatch_calls), (3, 2));
        assert_eq!(s.events.ping, 2);
        assert_eq!(s.events.timer, 1);
        assert_eq!(s.events.closed, 1);
        assert_eq!(
            (
                s.events.messages,
                s.events.messages_received,
                s.events.message_bytes
            ),
            (1, 2, 10)
        );
        assert_eq!(s.events.total(), 5);
        assert!(!s.alive);
        assert_eq!(s.guest_cpu, None, "not measured");
    }

    #[test]
    fn faults_restarts_and_reloads_are_counted_by_kind() {
        let c = Counters::default();
        c.count_fault(FaultKind::Trap);
        c.count_fault(FaultKind::Timeout);
        c.count_fault(FaultKind::Timeout);
        c.count_init_error();
        c.count_restart();
        c.count_reload();
        let s = c.snapshot(PluginId(2), "q", None, true);
        assert_eq!(
            (s.faults.trap, s.faults.timeout, s.faults.init_error),
            (1, 2, 1)
        );
        assert_eq!(s.faults.total(), 4);
        assert_eq!((s.restarts, s.reloads), (1, 1));
        assert_eq!(s.guest_cpu, Some(Duration::ZERO));
    }

    #[test]
    fn ended_runs_fold_into_the_live_runs_figures() {
        let c = Counters::default();
        c.fold(RunTotals {
            cpu_ns: 5_000_000,
            blocked_ns: 1000,
        });
        c.count_host((10, 100), (14, 600));
        let live = RunTotals {
            cpu_ns: 10_000_000,
            blocked_ns: 500,
        };
        let g = Gauges {
            memory_bytes: 65536,
            sources: SourceCounts {
                timer: 2,
                ping: 1,
                ..SourceCounts::default()
            },
            ..Gauges::default()
        };
        let s = c.snapshot(PluginId(3), "r", Some((live, g)), true);
        assert!(s.alive);
        assert_eq!(s.guest_cpu, Some(Duration::from_millis(15)));
        assert_eq!((s.host_calls, s.host_time), (4, Duration::from_nanos(2000)));
        assert_eq!((s.memory_bytes, s.sources.total()), (65536, 3));
        // Ended: the gauges go to zero, the counters stay.
        let s = c.snapshot(PluginId(3), "r", None, true);
        assert_eq!((s.memory_bytes, s.sources.total()), (0, 0));
        assert_eq!(s.guest_cpu, Some(Duration::from_millis(5)));
    }

    #[test]
    fn host_calls_are_timed_on_their_thread() {
        let before = HostCall::totals();
        {
            let _t = HostCall::start();
            std::thread::sleep(Duration::from_millis(2));
        }
        let after = HostCall::totals();
        assert_eq!(after.0 - before.0, 1);
        assert!(after.1 - before.1 >= 2_000_000);
        let c = Counters::default();
        c.count_host(before, after);
        let s = c.snapshot(PluginId(1), "p", None, false);
        assert_eq!(s.host_calls, 1);
        assert!(s.host_time >= Duration::from_millis(2));
    }

    #[test]
    fn the_live_instance_of_a_name_wins() {
        let mk = |id, alive| PluginStats {
            id: PluginId(id),
            name: "x".into(),
            alive,
            ..PluginStats::default()
        };
        let s = HostStats {
            plugins: vec![mk(1, false), mk(2, true), mk(3, false)],
            cpu_measured: true,
        };
        assert_eq!(s.plugin("x").unwrap().id, PluginId(2));
        let s = HostStats {
            plugins: vec![mk(1, false), mk(3, false)],
            cpu_measured: true,
        };
        assert_eq!(s.plugin("x").unwrap().id, PluginId(3));
        assert!(s.plugin("y").is_none());
    }
}
