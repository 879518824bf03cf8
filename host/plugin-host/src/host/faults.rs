//! Deadlines and faults of guest calls: the CPU-time budget armed before
//! each call into the guest (init or callback timeout), classifying a
//! failed call into a `Fault`, and whether a plugin ends after a call.

use std::time::Duration;

use super::{After, ExitReason, HostInner, Live};
use crate::fault::{self, Fault};

impl<'l, Data: 'l> HostInner<'l, Data> {
    /// The CPU budget of a guest call with `timeout`: none without the
    /// engine's ticker (held only by a host with a callback timeout), since
    /// then no epoch tick ever checks it.
    pub(super) fn budget(&self, timeout: Option<Duration>) -> Option<Duration> {
        timeout.filter(|_| self.ticker.is_some())
    }

    /// Sets the deadline of the next guest call (`init`: the init timeout,
    /// otherwise the callback timeout) and remembers it for fault reports.
    pub(super) fn arm(&self, live: &mut Live, init: bool) {
        let l = &live.store.data().limits;
        let (timeout, what) = if init {
            (l.init_timeout, "init timeout (limits.init_timeout)")
        } else {
            (
                l.callback_timeout,
                "callback timeout (--callback-timeout / limits.callback_timeout)",
            )
        };
        live.armed = timeout.map(|t| (t, what));
        let budget = self.budget(timeout);
        live.deadline.arm(&mut live.store, budget);
    }

    /// Classifies a failed guest call of `live`.
    pub(super) fn classify(&self, live: &Live, e: &wasmtime::Error) -> Fault {
        let tail = live
            .stderr_tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        fault::classify(
            e,
            &fault::Context {
                timeout: live.armed,
                max_memory: live.store.data().limits.max_memory_bytes,
                memory_denied: live.store.data().store_limits.memory_denied,
                stderr_tail: &tail,
            },
        )
    }

    /// Decides whether a plugin ends after a guest call that returned.
    pub(super) fn check_after(&self, live: &Live) -> After {
        let st = live.store.data();
        if let Some(code) = st.stop {
            After::End(ExitReason::Stopped(code))
        } else if st.live_sources() == 0 {
            After::End(ExitReason::Finished)
        } else {
            After::Continue
        }
    }
}
