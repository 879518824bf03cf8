//! Ping routing: the loop sources of guest pings, and the hand-over of a
//! plugin's named pings to its new version at a reload.
//!
//! An anonymous ping's source is inserted in the loop once and for all. A
//! named ping's source is registered through a [`Dispatcher`] kept for the
//! source's whole life (like a timer's, see `timer_routing`), so that a
//! reload's commit can take it out of the loop and give it to the new
//! version's ping of the same name ([`hand_over_pings`](HostInner::hand_over_pings)).
//! The source goes on as it was: the [`Ping`](callop::ping::Ping)s others
//! got for it (other plugins' `connect-ping`, [`Host::ping`](super::Host::ping))
//! keep waking the plugin, and a ping triggered before the hand-over and not
//! yet dispatched stays pending in it (its wake-up fd is level-triggered):
//! the new version gets it on the next loop iteration.

use std::rc::Rc;

use super::{HostInner, PluginRt, plugin_of};
use crate::bindings::callop::plugin::types::EventKind;
use crate::sources::SourceTable;
use crate::state::SourceId;
use callop::ping::PingSource;
use callop::{Dispatcher, RegistrationToken};

impl<'l, Data: 'l> HostInner<'l, Data> {
    /// Inserts the loop source of guest ping `id`, named or not. A named
    /// ping adopted at a reload has its source only once the commit handed
    /// it over: without one it is refused.
    pub(super) fn insert_ping(
        self: &Rc<Self>,
        p: &Rc<PluginRt>,
        id: SourceId,
        source: Option<PingSource>,
        named: bool,
    ) -> Result<RegistrationToken, String> {
        let source = source.ok_or_else(|| {
            "the reload did not hand the old version's loop source over".to_string()
        })?;
        let w = Rc::downgrade(self);
        let p2 = p.clone();
        let callback = move |(), _: &mut (), _: &mut Data| {
            if let Some(inner) = w.upgrade() {
                inner.push_event(&p2, plugin_of(id, EventKind::Ping));
            }
        };
        if !named {
            return self
                .handle
                .insert_source(source, callback)
                .map_err(|e| e.error.to_string());
        }
        let d = Dispatcher::new(source, callback);
        let t = self
            .handle
            .register_dispatcher(d.clone())
            .map_err(|e| e.to_string())?;
        self.named_pings.borrow_mut().insert(t, d);
        Ok(t)
    }

    /// Takes the source of the named ping registered as `t` out of the loop
    /// (a ping pending in it stays pending).
    fn take_named_ping(&self, t: RegistrationToken) -> Result<PingSource, String> {
        let d = self
            .named_pings
            .borrow_mut()
            .remove(&t)
            .ok_or("its loop source is gone")?;
        self.handle.remove(t);
        d.try_into_source_inner()
            .map_err(|_| "its loop source is still in use".to_string())
    }

    /// A reload of plugin `plugin` commits: each named ping of the old
    /// instance (`old`) among `names` that the new instance (`new`)
    /// created again gets the old one's loop source. The others stay with
    /// the old instance and go with it.
    pub(super) fn hand_over_pings<'n>(
        &self,
        plugin: &str,
        names: impl Iterator<Item = &'n str>,
        old: &mut SourceTable,
        new: &mut SourceTable,
    ) {
        for name in names {
            let Some(id) = new.awaiting_ping_source(name) else {
                continue; // not created again (or removed at once)
            };
            let source = old
                .give_up_ping(name)
                .ok_or_else(|| "the old version has no loop source for it".to_string())
                .and_then(|t| self.take_named_ping(t));
            match source {
                Ok(source) => {
                    if new.adopt_ping_source(id, source).is_err() {
                        tracing::warn!(
                            plugin,
                            ping = name,
                            "ping not handed over: its new source is gone"
                        );
                    }
                }
                // Its registration then fails, and says so.
                Err(e) => tracing::warn!(plugin, ping = name, "ping not handed over: {e}"),
            }
        }
    }
}
