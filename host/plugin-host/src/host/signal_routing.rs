//! Signal routing: a loop source watching each signal a plugin subscribes to
//! (unless the embedder watches it), and delivering a signal to every
//! plugin source subscribed to it.

use std::rc::Rc;

use super::{HostInner, PluginRt, plugin_of};
use crate::bindings::callop::plugin::types::EventKind;
use crate::io::from_signal;
use crate::state::SourceId;
use callop::signals::{Signal, Signals};

impl<'l, Data: 'l> HostInner<'l, Data> {
    pub(super) fn deliver_signal(self: &Rc<Self>, signal: Signal) -> bool {
        let Some(wit_sig) = from_signal(signal) else {
            return false;
        };
        let all: Vec<Rc<PluginRt>> = self.plugins.borrow().values().cloned().collect();
        let mut any = false;
        for p in all {
            let ids: Vec<SourceId> = {
                let Ok(guard) = p.live.try_borrow() else {
                    continue;
                };
                let Some(live) = guard.as_ref() else { continue };
                live.store.data().sources.subscribers(signal).collect()
            };
            for id in ids {
                any = true;
                self.push_event(&p, plugin_of(id, EventKind::Signal(wit_sig)));
            }
            if any {
                self.waker.ping();
            }
        }
        // The plugins of the other loop threads (see `threads`).
        let remote = self.ask_all(move |h| h.deliver_signal(signal));
        any || remote.contains(&true)
    }

    /// Makes sure some loop source watches `signal` (creating one if the
    /// embedder does not).
    pub(super) fn watch_signal(self: &Rc<Self>, signal: Signal) -> Result<(), String> {
        if self.watched_signals.borrow().contains(&signal) {
            return Ok(());
        }
        // A worker thread blocks signals: the first thread watches them.
        if let Some(r) = self.forward_watch(signal) {
            r?;
            self.watched_signals.borrow_mut().push(signal);
            return Ok(());
        }
        let source =
            Signals::new(&[signal]).map_err(|e| format!("cannot watch {signal:?}: {e}"))?;
        let w = Rc::downgrade(self);
        let t = self
            .handle
            .insert_source(source, move |ev, _, _| {
                if let Some(inner) = w.upgrade() {
                    inner.deliver_signal(ev.signal());
                }
            })
            .map_err(|e| format!("cannot watch {signal:?}: {}", e.error))?;
        self.aux_tokens.borrow_mut().push(t);
        self.watched_signals.borrow_mut().push(signal);
        Ok(())
    }
}
