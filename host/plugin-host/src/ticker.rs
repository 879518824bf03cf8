//! The epoch ticker behind guest-call deadlines, and the CPU-time budget
//! each store checks at every tick.
//!
//! wasmtime interrupts a guest call when the engine's *epoch* passes the
//! deadline set before the call. One [`Ticker`] per engine (see
//! [`PluginEngine::ticker`](crate::engine::PluginEngine)), shared by every
//! host on that engine and stopped when the last one goes, advances the
//! epoch by one every [`TICK`]. At each tick that passes a call's deadline
//! wasmtime asks the store's [`CpuDeadline`], on the thread running the
//! call (the loop thread of its host): counted from the call's first tick (arming
//! reads no clock, see [`CpuDeadline`]), the call is interrupted once it has
//! spent its budget of **CPU time of that thread**, read from the thread's
//! CPU-time clock; otherwise it goes on to the next tick. A deadline is thus
//! a CPU budget: a guest spinning in a loop is stopped after its budget
//! (within one tick), while a healthy callback on a machine loaded by other
//! processes is not (it does not run, so it does not spend). Hosts on
//! different threads sharing one engine each spend their own thread's time.
//!
//! Where no per-thread CPU clock exists (macOS), wall time is counted.
//!
//! Epochs are checked only while wasm code runs: a guest blocked inside a
//! host call (a WASI sleep, say) is not interrupted by them. The WASI calls
//! that can block are therefore replaced (module `wasi_blocking`): they wait
//! at most what is left of the same budget ([`CpuDeadline::wait_budget`]),
//! in wall time, and the time they waited is spent from it.
//!
//! Each check also looks at the host's [`Alarm`] (a shutdown deadline, a
//! forced exit): once it is due, the call is interrupted whatever its budget,
//! calls without a deadline included.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Engine, Store, UpdateDeadline};

use crate::alarm::Alarm;

/// One epoch tick: how often a running guest's budget is checked.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// Name of the ticker's thread.
pub(crate) const THREAD_NAME: &str = "callop-epoch";

/// A running ticker advancing one engine's epoch; dropping the last handle
/// to it stops and joins its thread.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts a thread that increments `engine`'s epoch once per [`TICK`].
    pub(crate) fn start(engine: Engine) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The CPU-time deadline of one store's current guest call.
///
/// Installed once per store ([`CpuDeadline::install`]) and armed before
/// each call ([`CpuDeadline::arm`]) on the thread that makes the call.
///
/// Arming reads no clock (reading a thread's CPU clock is a system call,
/// about 0.5 µs here, as much as a third of a whole guest event): the budget
/// starts at the call's first epoch tick, which most calls never reach. So a
/// call may spend up to one [`TICK`] of CPU more than its budget before it
/// is interrupted, never less.
pub(crate) struct CpuDeadline {
    /// The budget of the armed call (ns); `u64::MAX`: no deadline.
    budget_ns: AtomicU64,
    /// The calling thread's CPU time (ns) at which the call runs out, or
    /// [`NOT_STARTED`] until its first tick reads the clock.
    end_ns: AtomicU64,
    /// The host's alarm, checked at every tick.
    alarm: Arc<Alarm>,
    /// The calling thread's CPU time (ns) at the armed call's last tick, or
    /// [`NOT_STARTED`] before its first (the CPU-time sample, see
    /// [`CpuDeadline::cpu_ns`]).
    last_tick_ns: AtomicU64,
    /// The sampled CPU time of every call armed so far (ns).
    cpu_ns: AtomicU64,
    /// The wall time its calls waited in blocking host calls (ns).
    blocked_ns: AtomicU64,
}

/// `CpuDeadline::end_ns` before the armed call's first tick.
const NOT_STARTED: u64 = 0;

thread_local! {
    /// This thread's CPU time at its last CPU-time sample (see
    /// [`CpuDeadline::sample`]).
    static LAST_SAMPLE_NS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl CpuDeadline {
    /// Makes `store` check the returned deadline at each epoch tick that
    /// passes its epoch deadline (instead of trapping at once).
    pub(crate) fn install<T: 'static>(store: &mut Store<T>, alarm: Arc<Alarm>) -> Arc<CpuDeadline> {
        let d = Arc::new(CpuDeadline::new(alarm));
        let d2 = d.clone();
        store.epoch_deadline_callback(move |_| Ok(d2.at_tick()));
        d
    }

    /// Arms the next guest call of `store` with a budget of `budget` of the
    /// calling thread's CPU time (`None`: no deadline). A zero budget lets
    /// no guest code run (the first epoch check interrupts it). Every call,
    /// one without a deadline too, checks the host's alarm at each tick.
    pub(crate) fn arm<T>(&self, store: &mut Store<T>, budget: Option<Duration>) {
        self.set(budget);
        store.set_epoch_deadline(match budget {
            Some(b) if b.is_zero() => 0,
            _ => 1,
        });
    }

    fn new(alarm: Arc<Alarm>) -> CpuDeadline {
        CpuDeadline {
            budget_ns: AtomicU64::new(u64::MAX),
            end_ns: AtomicU64::new(NOT_STARTED),
            alarm,
            last_tick_ns: AtomicU64::new(NOT_STARTED),
            cpu_ns: AtomicU64::new(0),
            blocked_ns: AtomicU64::new(0),
        }
    }

    /// The host's alarm.
    pub(crate) fn alarm(&self) -> &Arc<Alarm> {
        &self.alarm
    }

    /// How long the armed call may still wait in a blocking host call: what
    /// is left of its budget (`None`: no deadline). Before the call's first
    /// tick no CPU time is counted yet (at most one [`TICK`]).
    pub(crate) fn wait_budget(&self) -> Option<Duration> {
        let budget = self.budget_ns.load(Ordering::Relaxed);
        if budget == u64::MAX {
            return None;
        }
        let end = self.end_ns.load(Ordering::Relaxed);
        let left = if end == NOT_STARTED {
            budget
        } else {
            end.saturating_sub(thread_cpu_ns())
        };
        Some(Duration::from_nanos(left))
    }

    /// Spends `waited` (wall time the armed call spent blocked in a host
    /// call) from its budget, so that CPU time and blocked time share one
    /// budget.
    pub(crate) fn spend_blocked(&self, waited: Duration) {
        let w = waited.as_nanos().min(u128::from(u64::MAX - 1)) as u64;
        self.blocked_ns.fetch_add(w, Ordering::Relaxed);
        let budget = self.budget_ns.load(Ordering::Relaxed);
        if budget == u64::MAX || waited.is_zero() {
            return;
        }
        let end = self.end_ns.load(Ordering::Relaxed);
        if end == NOT_STARTED {
            self.budget_ns
                .store(budget.saturating_sub(w), Ordering::Relaxed);
        } else {
            self.end_ns.store(
                end.saturating_sub(w).max(NOT_STARTED + 1),
                Ordering::Relaxed,
            );
        }
    }

    /// Sets the budget of the next call (see [`CpuDeadline::arm`]).
    fn set(&self, budget: Option<Duration>) {
        let b = budget.map_or(u64::MAX, |b| b.as_nanos().min(u64::MAX as u128) as u64);
        self.budget_ns.store(b, Ordering::Relaxed);
        self.end_ns.store(NOT_STARTED, Ordering::Relaxed);
        self.last_tick_ns.store(NOT_STARTED, Ordering::Relaxed);
    }

    /// The CPU time of the calls armed on this deadline so far, sampled at
    /// the epoch ticks (ns): a tick that finds a call running counts one
    /// [`TICK`] for the part of the call before it, each further tick of the
    /// same call the calling thread's CPU time since the previous one. Exact
    /// in expectation for calls shorter than a tick (a call of a tenth of a
    /// tick is counted a whole tick once in ten calls on average) on a
    /// thread that is not preempted, to within one tick for longer ones;
    /// never more than the thread spent (see [`CpuDeadline::sample`]); never
    /// a clock read outside a tick.
    pub(crate) fn cpu_ns(&self) -> u64 {
        self.cpu_ns.load(Ordering::Relaxed)
    }

    /// The wall time the calls armed on this deadline waited in blocking
    /// host calls so far (ns; see [`CpuDeadline::spend_blocked`]).
    pub(crate) fn blocked_ns(&self) -> u64 {
        self.blocked_ns.load(Ordering::Relaxed)
    }

    /// Counts the CPU-time sample of a tick at `now` (the thread's CPU clock).
    ///
    /// A call's first tick counts one [`TICK`], but never more than the
    /// thread's CPU time since its previous sample (of any call): what is
    /// counted on a thread never exceeds what it spent, even when the
    /// machine is so loaded that a call is preempted across a tick.
    fn sample(&self, now: u64) {
        let last = self
            .last_tick_ns
            .swap(now.max(NOT_STARTED + 1), Ordering::Relaxed);
        let since = now.saturating_sub(LAST_SAMPLE_NS.replace(now));
        let spent = if last == NOT_STARTED {
            (TICK.as_nanos() as u64).min(since)
        } else {
            now.saturating_sub(last)
        };
        self.cpu_ns.fetch_add(spent, Ordering::Relaxed);
    }

    /// Whether the budget is spent (on the calling thread's clock; never
    /// before the call's first tick has started it).
    #[cfg(test)]
    fn expired(&self) -> bool {
        let end = self.end_ns.load(Ordering::Relaxed);
        end != NOT_STARTED && thread_cpu_ns() >= end
    }

    /// What a store does at a tick past its epoch deadline: the first one
    /// starts the budget on the calling thread's clock.
    fn at_tick(&self) -> UpdateDeadline {
        if self.alarm.due() {
            return UpdateDeadline::Interrupt;
        }
        let now = thread_cpu_ns();
        self.sample(now);
        let budget = self.budget_ns.load(Ordering::Relaxed);
        if budget == u64::MAX {
            return UpdateDeadline::Continue(1);
        }
        let mut end = self.end_ns.load(Ordering::Relaxed);
        if end == NOT_STARTED {
            end = now.saturating_add(budget).max(NOT_STARTED + 1);
            self.end_ns.store(end, Ordering::Relaxed);
        }
        if now >= end {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Continue(1)
        }
    }
}

/// The CPU time (ns) of the calling thread; wall time since the first call
/// where no per-thread CPU clock exists.
fn thread_cpu_ns() -> u64 {
    #[cfg(not(target_vendor = "apple"))]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer for the duration of the call.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return (ts.tv_sec as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(ts.tv_nsec as u64);
        }
    }
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An alarm never raised.
    fn alarm() -> Arc<Alarm> {
        Alarm::new(Engine::default())
    }

    /// Burns `d` of this thread's CPU time.
    fn spin(d: Duration) {
        let start = thread_cpu_ns();
        while thread_cpu_ns() - start < d.as_nanos() as u64 {
            std::hint::black_box(0u64);
        }
    }

    #[cfg(not(target_vendor = "apple"))]
    #[test]
    fn sleeping_does_not_spend_the_budget_spending_cpu_does() {
        let d = CpuDeadline::new(alarm());
        d.set(Some(Duration::from_millis(50)));
        assert!(matches!(d.at_tick(), UpdateDeadline::Continue(1)));
        // 150 ms asleep: (almost) no CPU spent by this thread.
        std::thread::sleep(Duration::from_millis(150));
        assert!(!d.expired(), "sleeping spent the budget");
        assert!(matches!(d.at_tick(), UpdateDeadline::Continue(1)));
        spin(Duration::from_millis(60));
        assert!(d.expired(), "60 ms of CPU did not spend a 50 ms budget");
        assert!(matches!(d.at_tick(), UpdateDeadline::Interrupt));
        d.set(None);
        assert!(!d.expired());
    }

    #[cfg(not(target_vendor = "apple"))]
    #[test]
    fn another_threads_cpu_does_not_spend_the_budget() {
        let d = Arc::new(CpuDeadline::new(alarm()));
        d.set(Some(Duration::from_millis(30)));
        assert!(matches!(d.at_tick(), UpdateDeadline::Continue(1)));
        let d2 = d.clone();
        // The other thread spends 60 ms; this one's budget is untouched.
        std::thread::spawn(move || {
            spin(Duration::from_millis(60));
            d2.expired()
        })
        .join()
        .unwrap();
        assert!(!d.expired());
    }

    /// A store of a fresh engine with epoch interruption, and the `spin`
    /// export of a core module looping forever.
    fn spinner() -> (Engine, Store<()>, wasmtime::TypedFunc<(), ()>) {
        let engine = Engine::new(wasmtime::Config::new().epoch_interruption(true)).unwrap();
        let wasm = wat::parse_str(r#"(module (func (export "spin") (loop br 0)))"#).unwrap();
        let module = wasmtime::Module::new(&engine, wasm).unwrap();
        let mut store = Store::new(&engine, ());
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let spin = instance.get_typed_func(&mut store, "spin").unwrap();
        (engine, store, spin)
    }

    fn is_interrupt(e: &wasmtime::Error) -> bool {
        e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt)
    }

    #[test]
    fn a_spinning_call_is_interrupted_after_its_budget() {
        let (engine, mut store, spin) = spinner();
        let d = CpuDeadline::install(&mut store, Alarm::new(engine.clone()));
        let _ticker = Ticker::start(engine).unwrap();
        d.arm(&mut store, Some(Duration::from_millis(30)));
        let cpu = thread_cpu_ns();
        let e = spin.call(&mut store, ()).unwrap_err();
        assert!(is_interrupt(&e), "{e:?}");
        let spent = Duration::from_nanos(thread_cpu_ns() - cpu);
        assert!(
            spent >= Duration::from_millis(30),
            "interrupted after {spent:?}"
        );
    }

    #[cfg(not(target_vendor = "apple"))]
    #[test]
    fn the_budget_starts_at_the_first_tick_not_at_arming() {
        let d = CpuDeadline::new(alarm());
        d.set(Some(Duration::from_millis(20)));
        // CPU spent before the call's first tick is not counted (arming reads no clock).
        spin(Duration::from_millis(30));
        assert!(!d.expired());
        assert!(matches!(d.at_tick(), UpdateDeadline::Continue(1)));
        spin(Duration::from_millis(30));
        assert!(matches!(d.at_tick(), UpdateDeadline::Interrupt));
    }

    #[cfg(not(target_vendor = "apple"))]
    #[test]
    fn ticks_sample_the_cpu_time_of_a_call() {
        let d = CpuDeadline::new(alarm());
        d.set(None);
        assert_eq!(d.cpu_ns(), 0, "no tick, nothing counted");
        // The first tick of a call counts one tick (the thread spent more
        // than that since its last sample).
        spin(Duration::from_millis(10));
        assert!(matches!(d.at_tick(), UpdateDeadline::Continue(1)));
        assert_eq!(d.cpu_ns(), TICK.as_nanos() as u64);
        // The next ones count the CPU time since the previous tick.
        spin(Duration::from_millis(20));
        assert!(matches!(d.at_tick(), UpdateDeadline::Continue(1)));
        let after = d.cpu_ns() - TICK.as_nanos() as u64;
        assert!(after >= 20_000_000, "{after} ns");
        // Sleeping spends no CPU time.
        let before = d.cpu_ns();
        std::thread::sleep(Duration::from_millis(50));
        d.at_tick();
        assert!(d.cpu_ns() - before < 10_000_000);
        // A new call starts a new sample; the total goes on.
        d.set(Some(Duration::from_secs(1)));
        spin(Duration::from_millis(10));
        let before = d.cpu_ns();
        d.at_tick();
        assert_eq!(d.cpu_ns() - before, TICK.as_nanos() as u64);
        // Its first tick never counts more than the thread spent since the
        // last sample: here next to nothing.
        d.set(None);
        let before = d.cpu_ns();
        d.at_tick();
        assert!(d.cpu_ns() - before < TICK.as_nanos() as u64 / 2);
    }

    #[test]
    fn a_spinning_call_is_sampled_about_its_length() {
        let (engine, mut store, spin) = spinner();
        let d = CpuDeadline::install(&mut store, Alarm::new(engine.clone()));
        let _ticker = Ticker::start(engine).unwrap();
        d.arm(&mut store, Some(Duration::from_millis(60)));
        let cpu = thread_cpu_ns();
        spin.call(&mut store, ()).unwrap_err();
        let spent = thread_cpu_ns() - cpu;
        let sampled = d.cpu_ns();
        // About what the thread spent: within a tick above, and (generous
        // bounds: a starved ticker ticks late) at least half of it.
        assert!(
            (spent / 2..=spent + 2 * TICK.as_nanos() as u64).contains(&sampled),
            "sampled {sampled} ns, spent {spent} ns"
        );
    }

    #[test]
    fn a_zero_budget_runs_no_guest_code() {
        // No ticker: the first epoch check interrupts.
        let (engine, mut store, spin) = spinner();
        let d = CpuDeadline::install(&mut store, Alarm::new(engine.clone()));
        d.arm(&mut store, Some(Duration::ZERO));
        let e = spin.call(&mut store, ()).unwrap_err();
        assert!(is_interrupt(&e), "{e:?}");
    }

    #[test]
    fn blocked_time_is_spent_from_the_same_budget() {
        let d = CpuDeadline::new(alarm());
        assert_eq!(d.wait_budget(), None);
        d.spend_blocked(Duration::from_secs(1));
        assert_eq!(d.wait_budget(), None);
        assert_eq!(
            d.blocked_ns(),
            1_000_000_000,
            "counted without a deadline too"
        );
        d.set(Some(Duration::from_millis(100)));
        assert_eq!(d.wait_budget(), Some(Duration::from_millis(100)));
        // Before the first tick: taken from the budget itself.
        d.spend_blocked(Duration::from_millis(30));
        assert_eq!(d.wait_budget(), Some(Duration::from_millis(70)));
        // After it: taken from the CPU-time end.
        assert!(matches!(d.at_tick(), UpdateDeadline::Continue(1)));
        d.spend_blocked(Duration::from_millis(60));
        let left = d.wait_budget().unwrap();
        assert!(left <= Duration::from_millis(10), "{left:?}");
        d.spend_blocked(Duration::from_millis(60));
        assert_eq!(d.wait_budget(), Some(Duration::ZERO));
        assert!(matches!(d.at_tick(), UpdateDeadline::Interrupt));
    }

    #[test]
    fn a_due_alarm_interrupts_a_call_without_a_deadline() {
        let (engine, mut store, spin) = spinner();
        let alarm = Alarm::new(engine.clone());
        let d = CpuDeadline::install(&mut store, alarm.clone());
        d.arm(&mut store, None);
        alarm.raise(
            std::time::Instant::now() + Duration::from_millis(30),
            crate::alarm::AlarmCause::Forced,
        );
        let e = spin.call(&mut store, ()).unwrap_err();
        assert!(is_interrupt(&e), "{e:?}");
        assert!(alarm.due());
    }
}
