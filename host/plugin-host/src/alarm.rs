//! [`Alarm`]: interrupting whatever guest call of a host is running, from
//! any thread — how a shutdown deadline and a forced exit reach a plugin
//! that spins or is blocked in a host call.
//!
//! Each host has one alarm, shared by its plugins' stores (through
//! [`Shared`](crate::state::Shared)) and by whoever may raise it: the host
//! itself when a graceful shutdown starts (at the shutdown deadline) and the
//! signal watcher of [`SignalShutdown`](crate::SignalShutdown) (at the
//! deadline on the first SIGINT/SIGTERM, at once on the second), which runs
//! on a thread of its own and so acts even while the loop thread is stuck in
//! a guest.
//!
//! A raised alarm is seen in two places:
//! * by a running guest at its next epoch check
//!   ([`CpuDeadline`](crate::ticker::CpuDeadline)): raising makes sure the
//!   engine's epoch moves at the alarm's time, so this works without a
//!   callback timeout (and without the ticker) too;
//! * by a guest blocked in a WASI call (module `wasi_blocking`), which waits
//!   on the alarm's [`Notify`] beside its own budget.
//!
//! Once due, an alarm stays due (a shutdown is final): every later guest
//! call of the host is interrupted at once.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use wasmtime::Engine;

/// Why an alarm was raised (the strongest cause wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum AlarmCause {
    /// The graceful shutdown's deadline.
    ShutdownDeadline = 1,
    /// A forced exit (a second SIGINT/SIGTERM).
    Forced = 2,
}

/// A host's alarm (see the module docs).
pub(crate) struct Alarm {
    /// When it is due (ns on [`now_ns`]'s clock); [`NEVER`]: not raised.
    at_ns: AtomicU64,
    /// The [`AlarmCause`] as a number; 0 while not raised.
    cause: AtomicU8,
    /// Wakes guests blocked in a host call when the alarm changes.
    pub(crate) changed: Notify,
    /// The engine whose epoch is moved when the alarm is due.
    engine: Engine,
}

/// `Alarm::at_ns` of an alarm not raised.
const NEVER: u64 = u64::MAX;

impl std::fmt::Debug for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alarm")
            .field("at_ns", &self.at_ns.load(Ordering::Relaxed))
            .field("cause", &self.cause())
            .finish_non_exhaustive()
    }
}

impl Alarm {
    /// An alarm not raised, for the stores of `engine`.
    pub(crate) fn new(engine: Engine) -> Arc<Alarm> {
        Arc::new(Alarm {
            at_ns: AtomicU64::new(NEVER),
            cause: AtomicU8::new(0),
            changed: Notify::new(),
            engine,
        })
    }

    /// Raises the alarm for `at` (kept if an earlier time is already set)
    /// with `cause` (kept if a stronger one is). Any thread may call it.
    pub(crate) fn raise(self: &Arc<Self>, at: Instant, cause: AlarmCause) {
        let at_ns = ns_of(at);
        self.at_ns.fetch_min(at_ns, Ordering::SeqCst);
        self.cause.fetch_max(cause as u8, Ordering::SeqCst);
        self.changed.notify_waiters();
        // A running guest sees the alarm at its next epoch check: make sure
        // the epoch moves once the alarm is due, ticker or not.
        let wait = self.until().unwrap_or_default();
        if wait.is_zero() {
            self.engine.increment_epoch();
            return;
        }
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("callop-alarm".into())
            .spawn(move || {
                std::thread::sleep(wait);
                me.engine.increment_epoch();
                me.changed.notify_waiters();
            });
        if let Err(e) = spawned {
            // Without the thread the ticker (if any) still moves the epoch.
            tracing::warn!("cannot start the alarm thread: {e}");
        }
    }

    /// Whether the alarm is due: the running guest call must stop.
    pub(crate) fn due(&self) -> bool {
        let at = self.at_ns.load(Ordering::Relaxed);
        at != NEVER && now_ns() >= at
    }

    /// How long until the alarm is due (zero if it is); `None` if it is not
    /// raised.
    pub(crate) fn until(&self) -> Option<Duration> {
        let at = self.at_ns.load(Ordering::Relaxed);
        (at != NEVER).then(|| Duration::from_nanos(at.saturating_sub(now_ns())))
    }

    /// Why it was raised (`None` if it is not).
    pub(crate) fn cause(&self) -> Option<AlarmCause> {
        match self.cause.load(Ordering::Relaxed) {
            1 => Some(AlarmCause::ShutdownDeadline),
            2 => Some(AlarmCause::Forced),
            _ => None,
        }
    }
}

/// The process's monotonic clock base for alarm times.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// `at` in ns on the alarm clock (times before its base count as its start).
fn ns_of(at: Instant) -> u64 {
    at.saturating_duration_since(base())
        .as_nanos()
        .min(u128::from(NEVER - 1)) as u64
}

/// Now, in ns on the alarm clock.
fn now_ns() -> u64 {
    ns_of(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        Engine::new(wasmtime::Config::new().epoch_interruption(true)).unwrap()
    }

    #[test]
    fn an_alarm_is_due_from_its_time_on_and_the_earliest_time_wins() {
        let a = Alarm::new(engine());
        assert!(!a.due());
        assert_eq!(a.until(), None);
        assert_eq!(a.cause(), None);
        a.raise(
            Instant::now() + Duration::from_secs(60),
            AlarmCause::ShutdownDeadline,
        );
        assert!(!a.due());
        assert!(a.until().unwrap() > Duration::from_secs(50));
        // A later time does not postpone it; an earlier one brings it forward.
        a.raise(
            Instant::now() + Duration::from_secs(3600),
            AlarmCause::ShutdownDeadline,
        );
        assert!(a.until().unwrap() <= Duration::from_secs(60));
        a.raise(Instant::now(), AlarmCause::Forced);
        assert!(a.due());
        assert_eq!(a.until(), Some(Duration::ZERO));
        assert_eq!(a.cause(), Some(AlarmCause::Forced));
        // A weaker cause does not replace a stronger one.
        a.raise(Instant::now(), AlarmCause::ShutdownDeadline);
        assert_eq!(a.cause(), Some(AlarmCause::Forced));
    }

    #[test]
    fn a_future_alarm_moves_the_epoch_when_due() {
        let e = engine();
        let a = Alarm::new(e.clone());
        // A store whose deadline is the next epoch: it traps once the
        // alarm thread moves the epoch.
        let wasm = wat::parse_str(r#"(module (func (export "spin") (loop br 0)))"#).unwrap();
        let module = wasmtime::Module::new(&e, wasm).unwrap();
        let mut store = wasmtime::Store::new(&e, ());
        store.set_epoch_deadline(1);
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let spin = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .unwrap();
        let start = Instant::now();
        a.raise(
            start + Duration::from_millis(50),
            AlarmCause::ShutdownDeadline,
        );
        let err = spin.call(&mut store, ()).unwrap_err();
        assert_eq!(
            err.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt)
        );
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert!(a.due());
    }
}
