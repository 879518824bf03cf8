//! The epoch ticker behind callback deadlines.
//!
//! wasmtime interrupts a guest call when the engine's *epoch* passes the
//! deadline set before the call. The ticker thread advances the epoch by one
//! every [`TICK`] of **CPU time spent by the host's thread** (the thread that
//! runs the event loop and therefore every guest call), read from that
//! thread's CPU-time clock. A deadline is thus a CPU budget: a guest spinning
//! in a loop is stopped after its budget, while a healthy callback on a
//! machine loaded by other processes is not (it does not run, so it does not
//! spend).
//!
//! Where no per-thread CPU clock exists (macOS), wall time is counted.
//!
//! Epochs are checked only while wasm code runs: a guest blocked inside a
//! host call (a WASI sleep, say) is interrupted neither by a CPU nor by a
//! wall-time deadline; it fails when the call returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One epoch tick: the granularity of callback deadlines.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// Epoch ticks a call with a budget of `timeout` may take (rounded up; one
/// extra tick because the first may come at once).
pub(crate) fn ticks(timeout: Duration) -> u64 {
    (timeout.as_nanos() / TICK.as_nanos()).max(1) as u64 + 1
}

/// A running ticker; stopping it (drop) joins its thread.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts a ticker that calls `tick` once per [`TICK`] of CPU time of
    /// the calling thread. The caller must drop the ticker before it exits.
    pub fn start(mut tick: impl FnMut() + Send + 'static) -> std::io::Result<Ticker> {
        let clock = ThreadClock::current();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("callop-epoch".into())
            .spawn(move || {
                // CPU time already turned into ticks.
                let mut counted: Option<Duration> = None;
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    let Some(now) = clock.now() else { continue };
                    let base = *counted.get_or_insert(now);
                    let n = (now.saturating_sub(base).as_nanos() / TICK.as_nanos()) as u32;
                    for _ in 0..n {
                        tick();
                    }
                    counted = Some(base + TICK * n);
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

/// The CPU-time clock of one thread, readable from another.
enum ThreadClock {
    /// A POSIX per-thread CPU clock.
    #[cfg(not(target_vendor = "apple"))]
    Cpu(libc::clockid_t),
    /// Wall time since this instant (no per-thread CPU clock available).
    Wall(Instant),
}

impl ThreadClock {
    /// The clock of the calling thread.
    fn current() -> ThreadClock {
        #[cfg(not(target_vendor = "apple"))]
        {
            let mut id: libc::clockid_t = 0;
            // SAFETY: `pthread_self()` is the calling, live thread and `id`
            // is a valid out-pointer for the duration of the call.
            if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) } == 0 {
                return ThreadClock::Cpu(id);
            }
        }
        ThreadClock::Wall(Instant::now())
    }

    /// The time counted so far; `None` if the clock cannot be read (e.g.
    /// the thread is gone).
    fn now(&self) -> Option<Duration> {
        match self {
            #[cfg(not(target_vendor = "apple"))]
            ThreadClock::Cpu(id) => {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: `ts` is a valid out-pointer; an invalid clock id
                // (a thread that exited) makes the call fail, not misbehave.
                if unsafe { libc::clock_gettime(*id, &mut ts) } != 0 {
                    return None;
                }
                Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
            }
            ThreadClock::Wall(base) => Some(base.elapsed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn counting_ticker() -> (Ticker, Arc<AtomicU64>) {
        let n = Arc::new(AtomicU64::new(0));
        let n2 = n.clone();
        let t = Ticker::start(move || {
            n2.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        (t, n)
    }

    /// Burns `d` of this thread's CPU time.
    fn spin(d: Duration) {
        let clock = ThreadClock::current();
        let start = clock.now().unwrap();
        while clock.now().unwrap() - start < d {
            std::hint::black_box(0u64);
        }
    }

    #[test]
    fn ticks_round_up_and_add_one() {
        assert_eq!(ticks(Duration::from_millis(100)), 21);
        assert_eq!(ticks(Duration::from_millis(1)), 2);
    }

    /// Waits (wall time, however loaded the machine is) until `n` reaches
    /// `at_least`; returns its value.
    fn await_ticks(n: &AtomicU64, at_least: u64) -> u64 {
        let start = Instant::now();
        while n.load(Ordering::Relaxed) < at_least && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(TICK);
        }
        n.load(Ordering::Relaxed)
    }

    #[cfg(not(target_vendor = "apple"))]
    #[test]
    fn sleeping_does_not_tick_spending_cpu_does() {
        let (ticker, n) = counting_ticker();
        // 300 ms asleep: (almost) no CPU spent by this thread (wall time
        // would be 60 ticks).
        std::thread::sleep(Duration::from_millis(300));
        let asleep = n.load(Ordering::Relaxed);
        assert!(asleep <= 2, "{asleep} ticks while asleep");
        // 60 ms of CPU: 12 ticks are due.
        spin(Duration::from_millis(60));
        let got = await_ticks(&n, asleep + 11) - asleep;
        assert!((11..=13).contains(&got), "{got} ticks for 60 ms of CPU");
        drop(ticker);
    }
}
