//! Timer routing: the loop [`Timer`] behind each guest timer, kept for the
//! timer's whole life and re-armed in place.
//!
//! The guest decides a timer's next deadline in its `dispatch` result, which
//! arrives after the loop callback has returned (the event is delivered in
//! the flush, an idle callback). So the callback queues the event and parks
//! the timer with [`TimeoutAction::ToInstant`] far in the future; when the
//! result arrives, [`rearm_timer`](HostInner::rearm_timer) sets the timer's
//! deadline through its [`Dispatcher`] and re-registers the same
//! registration with [`LoopHandle::update`](callop::LoopHandle::update) (a
//! disabled timer takes the deadline at its next enable). A `drop` result
//! removes it. The loop's timer never fires early, and the event carries the
//! scheduled deadline. A `to-duration` whose deadline overflows the plugins'
//! clock drops the timer, as the WIT says.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{HostInner, PluginRt, plugin_of};
use crate::bindings::callop::plugin::types::EventKind;
use crate::state::{PluginState, Shared, SourceId};
use callop::timer::{TimeoutAction, Timer};
use callop::{Dispatcher, RegistrationToken};

/// How far after its deadline a fired timer is parked until the guest's
/// answer re-arms or drops it (it never waits that long: the answer comes in
/// the same loop iteration, unless the plugin ends first).
const PARKED: Duration = Duration::from_secs(365 * 86400);

/// Where a timer that fired at `deadline` waits for the guest's answer.
fn parked(deadline: Instant) -> Instant {
    let now = Instant::now().max(deadline);
    now.checked_add(PARKED).unwrap_or(now)
}

/// The deadline of a `to-duration(d)` answer: `d` nanoseconds from now on
/// the plugins' clock, or `None` if that overflows the clock (the WIT: an
/// overflowing timer is dropped, so a plugin whose last source it was
/// finishes).
pub(super) fn deadline_after(shared: &Shared, d: u64) -> Option<Instant> {
    shared
        .now_ns()
        .checked_add(d)
        .and_then(|ns| shared.ns_to_instant(ns))
}

impl<'l, Data: 'l> HostInner<'l, Data> {
    /// Inserts the loop timer of guest timer `id`, firing at `at`.
    pub(super) fn insert_timer(
        self: &Rc<Self>,
        p: &Rc<PluginRt>,
        id: SourceId,
        at: Instant,
    ) -> Result<RegistrationToken, String> {
        let w = Rc::downgrade(self);
        let p2 = p.clone();
        let d = Dispatcher::new(Timer::from_deadline(at), move |deadline, _, _| {
            let Some(inner) = w.upgrade() else {
                return TimeoutAction::Drop;
            };
            let ns = inner.shared.instant_to_ns(deadline);
            inner.push_event(&p2, plugin_of(id, EventKind::Timer(ns)));
            TimeoutAction::ToInstant(parked(deadline))
        });
        let t = self
            .handle
            .register_dispatcher(d.clone())
            .map_err(|e| e.to_string())?;
        self.timers.borrow_mut().insert(t, d);
        Ok(t)
    }

    /// Re-arms the fired guest timer `id` in place at `at` (the guest's
    /// answer); on failure it is dropped.
    pub(super) fn rearm_timer(
        &self,
        p: &PluginRt,
        st: &mut PluginState,
        id: SourceId,
        at: Instant,
    ) {
        let Some((t, enabled)) = st.sources.rearm_timer(id, at) else {
            return;
        };
        let d = self.timers.borrow().get(&t).cloned();
        let r = match d {
            Some(d) => {
                d.as_source_mut().set_deadline(at);
                if enabled {
                    self.handle.update(&t).map_err(|e| e.to_string())
                } else {
                    Ok(()) // takes the deadline when enabled again
                }
            }
            None => Err("its loop timer is gone".to_string()),
        };
        if let Err(e) = r {
            tracing::error!(plugin = %p.name, source = id, "cannot re-arm timer: {e}");
            self.forget(st, id);
        }
    }

    /// Removes a plugin source's loop registration (and, for a timer, the
    /// dispatcher kept to re-arm it; for a named ping, the one kept to hand
    /// it over, see `ping_routing`).
    pub(super) fn remove_loop_source(&self, t: RegistrationToken) {
        self.handle.remove(t);
        let timer = self.timers.borrow_mut().remove(&t);
        drop(timer);
        let ping = self.named_pings.borrow_mut().remove(&t);
        drop(ping);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, Policy};

    #[test]
    fn an_overflowing_to_duration_has_no_deadline() {
        let shared = Shared::new(Policy::default(), Limits::default());
        assert_eq!(deadline_after(&shared, u64::MAX), None);
        std::thread::sleep(Duration::from_millis(1));
        // The plugins' clock is past 1 ms: 1 µs short of its end overflows.
        assert_eq!(deadline_after(&shared, u64::MAX - 1_000), None);
        let before = Instant::now();
        let at = deadline_after(&shared, 5_000_000).expect("5 ms from now");
        assert!(at >= before + Duration::from_millis(5), "{at:?} {before:?}");
        assert!(at <= Instant::now() + Duration::from_millis(5));
    }
}
