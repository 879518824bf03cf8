//! I/O routing: the loop source behind each `io.register` registration (a
//! `Generic` over the object, or a ping for objects the OS cannot poll),
//! re-arming it, and queueing its readiness (coalesced per source) for the
//! plugin's next `dispatch`.

use std::rc::Rc;

use super::{HostInner, PluginRt, plugin_of};
use crate::bindings::callop::plugin::types::{Event, EventKind, Readiness as WitReadiness};
use crate::io::IoReg;
use crate::sources::Source;
use crate::state::{PluginState, SourceId};
use callop::RegistrationToken;
use callop::generic::Generic;

impl<'l, Data: 'l> HostInner<'l, Data> {
    /// Inserts the loop source of an I/O registration: a `Generic` over the
    /// object, or a ping for objects the OS cannot poll.
    pub(super) fn insert_io(
        self: &Rc<Self>,
        p: &Rc<PluginRt>,
        id: SourceId,
        reg: &mut IoReg,
    ) -> Result<RegistrationToken, String> {
        let w = Rc::downgrade(self);
        let p2 = p.clone();
        if reg.obj.always_ready() {
            let (ping, source) = callop::ping::make_ping().map_err(|e| e.to_string())?;
            let (interest, level, again) = (
                reg.interest,
                matches!(reg.mode, callop::Mode::Level),
                ping.clone(),
            );
            let t = self
                .handle
                .insert_source(source, move |(), _, _| {
                    if let Some(inner) = w.upgrade() {
                        let r = WitReadiness {
                            readable: interest.readable,
                            writable: interest.writable,
                            error: false,
                        };
                        inner.push_readiness(&p2, id, r);
                    }
                    if level {
                        again.ping();
                    }
                })
                .map_err(|e| e.error.to_string())?;
            ping.ping();
            reg.ping = Some(ping);
            return Ok(t);
        }
        let source = Generic::new(reg.obj.clone(), reg.interest, reg.mode);
        self.handle
            .insert_source(source, move |r, _, _| {
                if let Some(inner) = w.upgrade() {
                    let r = WitReadiness {
                        readable: r.readable,
                        writable: r.writable,
                        error: r.error,
                    };
                    inner.push_readiness(&p2, id, r);
                }
                Ok(callop::PostAction::Continue)
            })
            .map_err(|e| e.error.to_string())
    }

    /// Registers an I/O source in the loop (again, with its new interest
    /// and mode, replacing its old loop source); on failure the source is
    /// dropped and its object may be registered again.
    pub(super) fn register_io(
        self: &Rc<Self>,
        p: &Rc<PluginRt>,
        st: &mut PluginState,
        id: SourceId,
    ) {
        let Some((reg, old)) = st.sources.io_to_register(id) else {
            return;
        };
        if let Some(t) = old {
            self.remove_loop_source(t);
        }
        match self.insert_io(p, id, reg) {
            Ok(t) => self.set_token(p, st, id, Some(t)),
            Err(e) => {
                reg.obj.reg.store(0, std::sync::atomic::Ordering::Relaxed);
                self.drop_failed(st, p, id, &e)
            }
        }
    }

    /// Re-applies an enabled I/O registration (re-arms a oneshot one).
    pub(super) fn rearm_io(&self, p: &PluginRt, st: &PluginState, id: SourceId) {
        let Some((t, Source::Io(reg))) = st.sources.armed(id) else {
            return;
        };
        if let Some(ping) = reg.ping.as_ref() {
            ping.ping();
        } else if let Err(e) = self.handle.update(&t) {
            tracing::warn!(plugin = %p.name, source = id, "re-registering failed: {e}");
        }
    }

    /// Queues a readiness event, OR-ing it into one already pending.
    fn push_readiness(self: &Rc<Self>, p: &Rc<PluginRt>, id: SourceId, r: WitReadiness) {
        {
            let mut pd = p.pending.borrow_mut();
            let pd = &mut *pd;
            if let Some(&i) = pd.readiness.get(&id)
                && let Some(Event {
                    kind: EventKind::Readiness(old),
                    ..
                }) = pd.events.get_mut(i)
            {
                old.readable |= r.readable;
                old.writable |= r.writable;
                old.error |= r.error;
                return;
            }
            pd.readiness.insert(id, pd.events.len());
            pd.events.push(plugin_of(id, EventKind::Readiness(r)));
        }
        self.schedule_flush(p, false);
    }
}
