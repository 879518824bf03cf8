//! Graceful shutdown: calling each plugin's `shutdown(deadline)` export once,
//! and unloading those still alive at the deadline.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::call::Export;
use super::{After, ExitReason, HostInner, PluginRt};
use crate::alarm::AlarmCause;
use callop::timer::{TimeoutAction, Timer};

impl<'l, Data: 'l> HostInner<'l, Data> {
    pub(super) fn shutdown(self: &Rc<Self>, grace: Duration) {
        self.shutting_down.set(true);
        self.pending_restarts.set(0);
        let deadline = Instant::now() + grace;
        // Any guest call still running at the deadline (a `shutdown` that
        // sleeps or spins) is interrupted there.
        self.alarm.raise(deadline, AlarmCause::ShutdownDeadline);
        let deadline_ns = self.shared.instant_to_ns(deadline);
        let all: Vec<Rc<PluginRt>> = self.plugins.borrow().values().cloned().collect();
        for p in all {
            if p.shutdown_called.replace(true) {
                continue;
            }
            let after = {
                let Ok(mut guard) = p.live.try_borrow_mut() else {
                    continue;
                };
                let Some(live) = guard.as_mut() else { continue };
                let outcome = self.call_guest(live, Export::Shutdown { deadline_ns });
                self.settle(&p, live, outcome)
            };
            if let After::End(reason) = after {
                self.end(&p, reason);
            }
        }
        if self.plugins.borrow().is_empty() {
            return;
        }
        let w = Rc::downgrade(self);
        let r = self
            .handle
            .insert_source(Timer::from_deadline(deadline), move |_, _, _| {
                if let Some(inner) = w.upgrade() {
                    let rest: Vec<Rc<PluginRt>> = inner
                        .plugins
                        .borrow()
                        .values()
                        .filter(|p| p.shutdown_called.get())
                        .cloned()
                        .collect();
                    for p in rest {
                        inner.end(&p, ExitReason::ShutdownTimeout);
                    }
                }
                TimeoutAction::Drop
            });
        match r {
            Ok(t) => self.aux_tokens.borrow_mut().push(t),
            Err(e) => tracing::error!("cannot arm the shutdown deadline: {}", e.error),
        }
    }
}
