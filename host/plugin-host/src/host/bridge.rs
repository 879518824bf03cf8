//! The event bridge between the loop and a guest: source callbacks append
//! events to the plugin's pending batch, an idle callback flushes it into
//! the guest's `dispatch`, and afterwards the `dispatch` results and the
//! operations the guest queued (`state::Op`) are applied to the loop (timers,
//! idles, pings, channels; I/O and signals through `io_routing` and
//! `signal_routing`).

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::call::{Export, Outcome};
use super::{After, HostInner, Live, PluginRt, plugin_of};
use crate::bindings::callop::plugin::types::{
    Event, EventKind, EventResult, PostAction, TimeoutAction as WitTimeout,
};
use crate::mailbox::Delivery;
use crate::state::{Op, PluginState, SourceId};
use crate::types::kind_name;
use callop::RegistrationToken;
use callop::timer::{TimeoutAction, Timer};

impl<'l, Data: 'l> HostInner<'l, Data> {
    pub(super) fn push_event(self: &Rc<Self>, p: &Rc<PluginRt>, ev: Event) {
        p.pending.borrow_mut().events.push(ev);
        self.schedule_flush(p, false);
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
    fn flush(self: &Rc<Self>, p: &Rc<PluginRt>) {
        let mut events = {
            let mut pd = p.pending.borrow_mut();
            pd.readiness.clear();
            let mut ev = std::mem::take(&mut pd.events);
            ev.append(&mut pd.idles);
            ev
        };
        if events.is_empty() {
            return;
        }
        let after = {
            let Ok(mut guard) = p.live.try_borrow_mut() else {
                // Never expected (the guest is not re-entered); retry later.
                p.pending.borrow_mut().events.splice(0..0, events);
                self.schedule_flush(p, true);
                return;
            };
            let Some(live) = guard.as_mut() else { return };
            {
                let st = live.store.data_mut();
                events.retain(|e| st.sources.get(&e.source).is_some_and(|r| !r.removed));
                for e in &events {
                    if matches!(e.kind, EventKind::Timer(_) | EventKind::Closed) {
                        // The loop already dropped this registration.
                        if let Some(r) = st.sources.get_mut(&e.source) {
                            r.token = None;
                            r.loop_disabled = false;
                        }
                    }
                }
            }
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
            tracing::warn!(plugin = %p.name, "dispatch returned {} results for {} events", results.len(), chunk.len());
        }
        for (i, ev) in chunk.iter().enumerate() {
            let res = results.get(i);
            let id = ev.source;
            let st = live.store.data_mut();
            let Some(rec) = st.sources.get_mut(&id) else {
                continue;
            };
            if rec.removed {
                continue; // a queued removal wins over the result
            }
            match ev.kind {
                EventKind::Timer(_) => {
                    let action = match res {
                        Some(EventResult::Timeout(a)) => *a,
                        Some(EventResult::Post(_)) => {
                            tracing::warn!(plugin = %p.name, source = id, "post(..) result for a timer; dropping it");
                            WitTimeout::Drop
                        }
                        None => WitTimeout::Drop,
                    };
                    let at = match action {
                        WitTimeout::Drop => None,
                        WitTimeout::ToDuration(d) => {
                            Instant::now().checked_add(Duration::from_nanos(d))
                        }
                        WitTimeout::ToInstant(ns) => self.shared.ns_to_instant(ns),
                    };
                    match at {
                        Some(at) => {
                            let enabled = rec.enabled;
                            match self.insert_timer(p, id, at) {
                                Ok(t) => {
                                    let rec = st.sources.get_mut(&id).expect("checked above");
                                    rec.token = Some(t);
                                    if !enabled && self.handle.disable(&t).is_ok() {
                                        rec.loop_disabled = true;
                                    }
                                }
                                Err(e) => {
                                    tracing::error!(plugin = %p.name, "cannot re-arm timer: {e}");
                                    st.forget(id);
                                }
                            }
                        }
                        None => {
                            st.forget(id);
                        }
                    }
                }
                EventKind::Idle => {
                    st.forget(id);
                }
                _ => {
                    let action = match res {
                        Some(EventResult::Post(a)) => *a,
                        Some(EventResult::Timeout(_)) => {
                            tracing::warn!(plugin = %p.name, source = id, kind = kind_name(&ev.kind), "timeout(..) result for a non-timer event; continuing");
                            PostAction::Continue
                        }
                        None => PostAction::Continue,
                    };
                    match action {
                        PostAction::Continue => {}
                        PostAction::Reregister => {
                            if rec.io.is_some() {
                                self.rearm_io(p, st, id);
                            }
                        }
                        PostAction::Disable => {
                            rec.enabled = false;
                            if let Some(t) = rec.token
                                && !rec.loop_disabled
                                && self.handle.disable(&t).is_ok()
                            {
                                rec.loop_disabled = true;
                            }
                        }
                        PostAction::Remove => {
                            st.release(id);
                            if let Some(rec) = st.forget(id)
                                && let Some(t) = rec.token
                            {
                                self.handle.remove(t);
                            }
                        }
                    }
                }
            }
        }
    }

    fn insert_timer(
        self: &Rc<Self>,
        p: &Rc<PluginRt>,
        id: SourceId,
        at: Instant,
    ) -> Result<RegistrationToken, String> {
        let w = Rc::downgrade(self);
        let p2 = p.clone();
        self.handle
            .insert_source(Timer::from_deadline(at), move |deadline, _, _| {
                if let Some(inner) = w.upgrade() {
                    let ns = inner.shared.instant_to_ns(deadline);
                    inner.push_event(&p2, plugin_of(id, EventKind::Timer(ns)));
                }
                TimeoutAction::Drop
            })
            .map_err(|e| e.error.to_string())
    }

    /// Applies the queued operations of the last guest call.
    pub(super) fn apply_ops(self: &Rc<Self>, p: &Rc<PluginRt>, live: &mut Live) {
        let st = live.store.data_mut();
        let ops = std::mem::take(&mut st.ops);
        for op in ops {
            match op {
                Op::AddTimer { id, deadline } => {
                    if st.sources.get(&id).is_none_or(|r| r.removed) {
                        continue;
                    }
                    match self.insert_timer(p, id, deadline) {
                        Ok(t) => self.set_token(st, id, t),
                        Err(e) => self.drop_failed(st, p, id, &e),
                    }
                }
                Op::AddIdle { id } => {
                    if st.sources.get(&id).is_some_and(|r| !r.removed) {
                        p.idle_queue.borrow_mut().push(id);
                        self.schedule_idle_runner(p);
                    }
                }
                Op::AddPing { id, source } => {
                    if st.sources.get(&id).is_none_or(|r| r.removed) {
                        continue;
                    }
                    let w = Rc::downgrade(self);
                    let p2 = p.clone();
                    let r = self.handle.insert_source(source, move |(), _, _| {
                        if let Some(inner) = w.upgrade() {
                            inner.push_event(&p2, plugin_of(id, EventKind::Ping));
                        }
                    });
                    match r {
                        Ok(t) => self.set_token(st, id, t),
                        Err(e) => self.drop_failed(st, p, id, &e.error.to_string()),
                    }
                }
                Op::OpenChannel { id, source } => {
                    if st.sources.get(&id).is_none_or(|r| r.removed) {
                        continue;
                    }
                    let w = Rc::downgrade(self);
                    let p2 = p.clone();
                    let r = self.handle.insert_source(source, move |d, _, _| {
                        let kind = match d {
                            Delivery::Messages(batch) => EventKind::Messages(batch),
                            Delivery::Closed => EventKind::Closed,
                        };
                        if let Some(inner) = w.upgrade() {
                            inner.push_event(&p2, plugin_of(id, kind));
                        }
                    });
                    match r {
                        Ok(t) => self.set_token(st, id, t),
                        Err(e) => self.drop_failed(st, p, id, &e.error.to_string()),
                    }
                }
                Op::Enable(id) => {
                    if let Some(rec) = st.sources.get_mut(&id)
                        && let (Some(t), true) = (rec.token, rec.loop_disabled)
                    {
                        match self.handle.enable(&t) {
                            Ok(()) => rec.loop_disabled = false,
                            Err(e) => {
                                tracing::warn!(plugin = %p.name, source = id, "enable failed: {e}")
                            }
                        }
                    }
                }
                Op::Disable(id) => {
                    if let Some(rec) = st.sources.get_mut(&id)
                        && let (Some(t), false) = (rec.token, rec.loop_disabled)
                    {
                        match self.handle.disable(&t) {
                            Ok(()) => rec.loop_disabled = true,
                            Err(e) => {
                                tracing::warn!(plugin = %p.name, source = id, "disable failed: {e}")
                            }
                        }
                    }
                }
                Op::Update(id) if st.sources.get(&id).is_some_and(|r| r.io.is_some()) => {
                    self.rearm_io(p, st, id);
                }
                Op::AddIo(id) | Op::SetInterest(id) => {
                    let Some(rec) = st.sources.get_mut(&id).filter(|r| !r.removed) else {
                        continue;
                    };
                    if let Some(t) = rec.token.take() {
                        self.handle.remove(t);
                        rec.loop_disabled = false;
                    }
                    let Some(mut reg) = rec.io.take() else {
                        continue;
                    };
                    let r = self.insert_io(p, id, &mut reg);
                    st.sources.get_mut(&id).expect("checked above").io = Some(reg);
                    match r {
                        Ok(t) => self.set_token(st, id, t),
                        Err(e) => {
                            if let Some(reg) = st.sources.get(&id).and_then(|r| r.io.as_ref()) {
                                reg.obj.reg.store(0, std::sync::atomic::Ordering::Relaxed);
                            }
                            self.drop_failed(st, p, id, &e)
                        }
                    }
                }
                Op::AddSignals(id) => {
                    let Some(rec) = st.sources.get_mut(&id).filter(|r| !r.removed) else {
                        continue;
                    };
                    let mut failed = None;
                    for s in rec.signals.clone() {
                        if let Err(e) = self.watch_signal(s) {
                            failed = Some(e);
                        }
                    }
                    match failed {
                        None => st.sources.get_mut(&id).expect("checked above").active = true,
                        Some(e) => self.drop_failed(st, p, id, &e),
                    }
                }
                Op::Update(id) => {
                    if let Some(rec) = st.sources.get(&id)
                        && let (Some(t), false) = (rec.token, rec.loop_disabled)
                        && let Err(e) = self.handle.update(&t)
                    {
                        tracing::warn!(plugin = %p.name, source = id, "update failed: {e}");
                    }
                }
                Op::Remove(id) => {
                    if let Some(rec) = st.forget(id)
                        && let Some(t) = rec.token
                    {
                        self.handle.remove(t);
                    }
                }
            }
        }
    }

    fn set_token(&self, st: &mut PluginState, id: SourceId, t: RegistrationToken) {
        let rec = st.sources.get_mut(&id).expect("checked by caller");
        rec.token = Some(t);
        if !rec.enabled && self.handle.disable(&t).is_ok() {
            rec.loop_disabled = true;
        }
    }

    fn drop_failed(&self, st: &mut PluginState, p: &PluginRt, id: SourceId, e: &str) {
        let kind = st.sources.get(&id).map_or("source", |r| r.kind.as_str());
        tracing::error!(plugin = %p.name, source = id, "cannot register {kind}: {e}");
        st.release(id);
        st.forget(id);
    }
}
