//! Deadlines and faults of guest calls: the epoch deadline armed before each
//! call into the guest (init or callback timeout), what a failed call means
//! (a WASI `exit(code)` or a classified `Fault`), and whether a plugin ends
//! after a call.

use std::time::Duration;

use super::{After, ExitReason, HostInner, Live, PluginRt};
use crate::fault::{self, Fault};
use crate::ticker;

impl<'l, Data: 'l> HostInner<'l, Data> {
    /// How a failed guest call ends the plugin: WASI `exit(code)` (e.g.
    /// `std::process::exit`) counts as `stop(code)`, anything else is a
    /// fault (kept in `p.fault` for the exit report).
    pub(super) fn failure(&self, p: &PluginRt, live: &Live, e: &wasmtime::Error) -> ExitReason {
        match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(x) => ExitReason::Stopped(x.0),
            None => {
                let f = self.classify(live, e);
                let reason = ExitReason::Trapped(format!("{}: {}", f.kind, f.message));
                *p.fault.borrow_mut() = Some(f);
                reason
            }
        }
    }

    /// Epoch ticks a guest call with `timeout` may take.
    pub(super) fn ticks(&self, timeout: Option<Duration>) -> u64 {
        match (&self._ticker, timeout) {
            (Some(_), Some(t)) => ticker::ticks(t),
            _ => u64::MAX / 2,
        }
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
        let ticks = self.ticks(timeout);
        live.store.set_epoch_deadline(ticks);
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

    /// Decides whether a plugin ends after a guest call.
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
