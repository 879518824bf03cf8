//! The event bridge between the loop and a guest: source callbacks append
//! events to the plugin's pending batch, an idle callback flushes it into
//! the guest's `dispatch`, and afterwards the `dispatch` results and the
//! operations the guest queued (`state::Op`) are applied to the loop (timers,
//! idles, pings, channels; I/O, signals and pings through `io_routing`,
//! `signal_routing` and `ping_routing`).

use std::rc::Rc;

use super::call::{Export, Outcome};
use super::{After, HostInner, Live, PluginRt, plugin_of, timer_routing};
use crate::bindings::callop::plugin::types::{
    Event, EventKind, EventResult, PostAction, TimeoutAction as WitTimeout,
};
use crate::host_memory::Charges;
use crate::mailbox::Delivery;
use crate::sources::Source;
use crate::state::{Op, PluginState, SourceId};
use crate::types::kind_name;
use callop::RegistrationToken;

/// The largest event buffer (in events) a plugin keeps between flushes.
const KEEP_EVENT_BUFFER: usize = 8;

impl<'l, Data: 'l> HostInner<'l, Data> {
    pub(super) fn push_event(self: &Rc<Self>, p: &Rc<PluginRt>, ev: Event) {
        p.pending.borrow_mut().events.push(ev);
        self.schedule_flush(p, false);
    }

    /// Queues a batch of messages, keeping its host-memory charges until it
    /// is delivered.
    fn push_messages(self: &Rc<Self>, p: &Rc<PluginRt>, ev: Event, charges: Charges) {
        p.pending.borrow_mut().held.append(charges);
        self.push_event(p, ev);
    }

    pub(super) fn schedule_flush(self: &Rc<Self>, p: &Rc<PluginRt>, wake: bool) {
        if p.flush_scheduled.replace(true) {
            return;
        }
        let w = Rc::downgrade(self);
        let p2 = p.clone();
        self.handle.insert_idle(move |_| {
            p2.flush_scheduled.set(false);
            if let Some(inner) = w.upgrade() {
                inner.flush(&p2);
            }
        });
        if wake {
            self.waker.ping();
        }
    }

    fn schedule_idle_runner(self: &Rc<Self>, p: &Rc<PluginRt>) {
        if p.idle_runner_scheduled.replace(true) {
            return;
        }
        let w = Rc::downgrade(self);
        let p2 = p.clone();
        self.handle.insert_idle(move |_| {
            p2.idle_runner_scheduled.set(false);
            let Some(inner) = w.upgrade() else { return };
            let ids = std::mem::take(&mut *p2.idle_queue.borrow_mut());
            if ids.is_empty() {
                return;
            }
            p2.pending
                .borrow_mut()
                .idles
                .extend(ids.into_iter().map(|id| plugin_of(id, EventKind::Idle)));
            // If a flush is already scheduled in this idle phase it will
            // deliver these idles after the iteration's events; otherwise
            // deliver now (all events of the iteration are already in).
            if !p2.flush_scheduled.get() {
                inner.flush(&p2);
            }
        });
        // Idles inserted in the idle phase or outside the loop only run after
        // the next wake-up: make the next dispatch return at once.
        self.waker.ping();
    }

    /// Delivers a plugin's pending events.
    pub(super) fn flush(self: &Rc<Self>, p: &Rc<PluginRt>) {
        let (mut events, held) = {
            let mut pd = p.pending.borrow_mut();
            pd.readiness.clear();
            let mut ev = std::mem::take(&mut pd.events);
            ev.append(&mut pd.idles);
            (ev, std::mem::take(&mut pd.held))
        };
        if events.is_empty() {
            return;
        }
        let after = {
            let Ok(mut guard) = p.live.try_borrow_mut() else {
                // Never expected (the guest is not re-entered); retry later.
                let mut pd = p.pending.borrow_mut();
                pd.events.splice(0..0, events);
                pd.held.append(held);
                drop(pd);
                self.schedule_flush(p, true);
                return;
            };
            let Some(live) = guard.as_mut() else { return };
            live.store
                .data_mut()
                .sources
                .retain_deliverable(&mut events);
            let mut after = After::Continue;
            let max = live.store.data().limits.max_batch.max(1);
            for chunk in events.chunks(max) {
                let outcome = self.call_guest(live, Export::Dispatch { events: chunk });
                // The results first, then the queued operations (`settle`).
                if let Outcome::Returned(results) = &outcome {
                    self.apply_results(p, live, chunk, results);
                }
                after = self.settle(p, live, outcome);
                if matches!(after, After::End(_)) {
                    break;
                }
            }
            after
        };
        // Delivered (or never to be): the host holds the batches no more.
        events.clear();
        drop(held);
        // A small buffer goes back for the next batch (a busy plugin flushes
        // every iteration; a big one is freed, idle plugins keep little).
        if events.capacity() <= KEEP_EVENT_BUFFER {
            let mut pd = p.pending.borrow_mut();
            if pd.events.capacity() == 0 {
                pd.events = events;
            }
        }
        if let After::End(reason) = after {
            self.end(p, reason);
        }
    }

    fn apply_results(
        self: &Rc<Self>,
        p: &Rc<PluginRt>,
        live: &mut Live,
        chunk: &[Event],
        results: &[EventResult],
    ) {
        if results.len() != chunk.len() {
            let msg = format!(
                "dispatch returned {} results for {} events",
                results.len(),
                chunk.len()
            );
            guest_caused(live.store.data_mut(), &p.name, &msg);
        }
        for (i, ev) in chunk.iter().enumerate() {
            let res = results.get(i);
            let id = ev.source;
            let st = live.store.data_mut();
            if !st.sources.is_live(id) {
                continue; // a queued removal wins over the result
            }
            match ev.kind {
                EventKind::Timer(_) => {
                    let action = match res {
                        Some(EventResult::Timeout(a)) => *a,
                        Some(EventResult::Post(_)) => {
                            let msg =
                                format!("source {id}: post(..) result for a timer; dropping it");
                            guest_caused(st, &p.name, &msg);
                            WitTimeout::Drop
                        }
                        None => WitTimeout::Drop,
                    };
                    let at = match action {
                        WitTimeout::Drop => None,
                        WitTimeout::ToDuration(d) => timer_routing::deadline_after(&self.shared, d),
                        WitTimeout::ToInstant(ns) => self.shared.ns_to_instant(ns),
                    };
                    match at {
                        Some(at) => self.rearm_timer(p, st, id, at),
                        None => self.forget(st, id),
                    }
                }
                EventKind::Idle => self.forget(st, id),
                _ => {
                    let action = match res {
                        Some(EventResult::Post(a)) => *a,
                        Some(EventResult::Timeout(_)) => {
                            let msg = format!(
                                "source {id}: timeout(..) result for a {} event; continuing",
                                kind_name(&ev.kind)
                            );
                            guest_caused(st, &p.name, &msg);
                            PostAction::Continue
                        }
                        None => PostAction::Continue,
                    };
                    match action {
                        PostAction::Continue => {}
                        PostAction::Reregister => self.rearm_io(p, st, id),
                        PostAction::Disable => self.set_enabled(p, st, id, false),
                        PostAction::Remove => self.forget(st, id),
                    }
                }
            }
        }
    }

    /// Applies the queued operations of the last guest call.
    pub(super) fn apply_ops(self: &Rc<Self>, p: &Rc<PluginRt>, live: &mut Live) {
        let st = live.store.data_mut();
        let ops = std::mem::take(&mut st.ops);
        for op in ops {
            match op {
                Op::Add(id) => self.add_source(p, st, id),
                Op::Enable(id) => self.set_enabled(p, st, id, true),
                Op::Disable(id) => self.set_enabled(p, st, id, false),
                Op::Update(id) => match st.sources.armed(id) {
                    Some((_, Source::Io(_))) => self.rearm_io(p, st, id),
                    Some((t, _)) => {
                        if let Err(e) = self.handle.update(&t) {
                            tracing::warn!(plugin = %p.name, source = id, "update failed: {e}");
                        }
                    }
                    None => {}
                },
                Op::SetInterest(id) => self.register_io(p, st, id),
                Op::Remove(id) => self.forget(st, id),
            }
        }
    }

    /// Registers a pending source: its loop source, or for an idle its run,
    /// or for a signal subscription the watching of its signals.
    fn add_source(self: &Rc<Self>, p: &Rc<PluginRt>, st: &mut PluginState, id: SourceId) {
        let Some(source) = st.sources.pending_mut(id) else {
            return; // removed before it was registered
        };
        let r = match source {
            Source::Timer { deadline } => self.insert_timer(p, id, *deadline).map(Some),
            Source::Idle => {
                p.idle_queue.borrow_mut().push(id);
                self.schedule_idle_runner(p);
                Ok(None)
            }
            Source::Ping { name, source } => self
                .insert_ping(p, id, source.take(), name.is_some())
                .map(Some),
            Source::Channel { source, .. } => {
                let source = source
                    .take()
                    .expect("a pending channel has its loop source");
                let w = Rc::downgrade(self);
                let p2 = p.clone();
                self.handle
                    .insert_source(source, move |d, _, _| {
                        let Some(inner) = w.upgrade() else { return };
                        match d {
                            Delivery::Messages(batch, charges) => inner.push_messages(
                                &p2,
                                plugin_of(id, EventKind::Messages(batch)),
                                charges,
                            ),
                            Delivery::Closed => {
                                inner.push_event(&p2, plugin_of(id, EventKind::Closed))
                            }
                        }
                    })
                    .map(Some)
                    .map_err(|e| e.error.to_string())
            }
            Source::Io(_) => return self.register_io(p, st, id),
            Source::Signals(list) => {
                let mut r = Ok(None);
                for &s in list.iter() {
                    if let Err(e) = self.watch_signal(s) {
                        r = Err(e);
                    }
                }
                r
            }
        };
        match r {
            Ok(t) => self.set_token(p, st, id, t),
            Err(e) => self.drop_failed(st, p, id, &e),
        }
    }

    /// Records a source's (new) loop registration, disabling it if the guest
    /// had disabled the source.
    pub(super) fn set_token(
        &self,
        p: &PluginRt,
        st: &mut PluginState,
        id: SourceId,
        t: Option<RegistrationToken>,
    ) {
        if st.sources.registered(id, t) {
            self.set_enabled(p, st, id, false);
        }
    }

    /// Enables or disables a source (and its loop registration).
    fn set_enabled(&self, p: &PluginRt, st: &mut PluginState, id: SourceId, on: bool) {
        let r = st.sources.set_enabled(id, on, |t| {
            if on {
                self.handle.enable(t)
            } else {
                self.handle.disable(t)
            }
        });
        if let Err(e) = r {
            let what = if on { "enable" } else { "disable" };
            tracing::warn!(plugin = %p.name, source = id, "{what} failed: {e}");
        }
    }

    /// Drops a source and its loop registration.
    pub(super) fn forget(&self, st: &mut PluginState, id: SourceId) {
        if let Some(t) = st.sources.forget(id) {
            self.remove_loop_source(t);
        }
    }

    pub(super) fn drop_failed(&self, st: &mut PluginState, p: &PluginRt, id: SourceId, e: &str) {
        let kind = st.sources.kind_name(id);
        let msg = format!("source {id}: cannot register {kind}: {e}");
        if st.log_limit.admit(tracing::Level::ERROR, &msg) {
            tracing::error!(plugin = %p.name, "{msg}");
        }
        self.forget(st, id);
    }
}

/// A host warning about what a guest did (a bad `dispatch` result): printed
/// under that plugin's rate limit (see `log_limit`).
fn guest_caused(st: &mut PluginState, plugin: &str, msg: &str) {
    if st.log_limit.admit(tracing::Level::WARN, msg) {
        tracing::warn!(plugin, "{msg}");
    }
}
