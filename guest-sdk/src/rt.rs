//! Runtime glue behind [`export_plugin!`](crate::export_plugin): the
//! id → callback registry and the implementations of the WIT `guest`
//! exports. Not part of the public API (only reachable through the macro).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::bindings::callop::plugin::types::{
    Event as WitEvent, EventKind, EventResult, PostAction as WitPost, TimeoutAction as WitTimeout,
};
use crate::{Instant, LoopHandle, Plugin};

/// A type-erased callback: receives the raw event and the plugin state (as
/// `dyn Any`, downcast inside to the concrete `State`).
pub(crate) type Callback = Box<dyn FnMut(EventKind, &mut dyn Any) -> EventResult>;

/// One registered source. `cb` is `None` while its callback is running.
struct Slot {
    cb: Option<Callback>,
}

thread_local! {
    /// source id → callback. The guest is single-threaded and never
    /// re-entered, so a thread-local is the whole registry.
    static SOURCES: RefCell<HashMap<u64, Slot>> = RefCell::new(HashMap::new());
    /// The plugin state, boxed; taken out while callbacks run.
    static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    /// Bumped by every insertion and removal: while it is unchanged, a
    /// callback taken out of [`SOURCES`] is still registered, so `dispatch`
    /// can keep it for the next event of the same source without two hash
    /// map look-ups per event.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

fn generation() -> u64 {
    GENERATION.with(Cell::get)
}

fn bump() {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
}

/// Registers `cb` under `id` (ids come from the host and are never reused).
pub(crate) fn insert(id: u64, cb: Callback) {
    SOURCES.with(|m| m.borrow_mut().insert(id, Slot { cb: Some(cb) }));
    bump();
}

/// Forgets the callback of `id`; returns whether it was registered. The
/// removed callback is dropped *outside* the registry borrow, so its
/// captures may touch the loop in their `Drop`.
pub(crate) fn forget(id: u64) -> bool {
    let slot = SOURCES.with(|m| m.borrow_mut().remove(&id));
    bump();
    let was = slot.is_some();
    drop(slot);
    was
}

/// All registered ids (in unspecified order).
pub(crate) fn ids() -> Vec<u64> {
    SOURCES.with(|m| m.borrow().keys().copied().collect())
}

/// Implementation of the `init` export for plugin type `P`.
#[doc(hidden)]
pub fn init<P: Plugin>(args: Vec<String>) -> Result<(), String> {
    let handle = LoopHandle::<P::State>::new();
    let state = P::init(&handle, args)?;
    STATE.with(|s| *s.borrow_mut() = Some(Box::new(state)));
    Ok(())
}

/// The result used for events the guest cannot (or no longer wants to)
/// handle: the host removes the source.
pub(crate) fn unhandled(kind: &EventKind) -> EventResult {
    match kind {
        EventKind::Timer(_) => EventResult::Timeout(WitTimeout::Drop),
        _ => EventResult::Post(WitPost::Remove),
    }
}

/// Takes the callback of `id` out of the registry (`None` if the source is
/// gone or its callback is running).
fn take(id: u64) -> Option<Callback> {
    SOURCES.with(|m| m.borrow_mut().get_mut(&id).and_then(|s| s.cb.take()))
}

/// Puts a callback back unless its source was removed meanwhile; a leftover
/// is dropped outside the registry borrow.
fn put_back(id: u64, cb: Callback) {
    let leftover = SOURCES.with(|m| match m.borrow_mut().get_mut(&id) {
        Some(slot) => {
            slot.cb = Some(cb);
            None
        }
        None => Some(cb),
    });
    drop(leftover);
}

/// Implementation of the `dispatch` export: runs each event's callback in
/// order and collects one result per event.
///
/// A run of events of the same source (a channel flood) keeps that source's
/// callback in hand between events as long as its callback inserted or
/// removed no source (see [`GENERATION`]); otherwise the callback goes back
/// to the registry and the next event looks it up afresh, so removals made
/// by a callback win over later events of the batch exactly as before.
#[doc(hidden)]
pub fn dispatch(events: Vec<WitEvent>) -> Vec<EventResult> {
    let mut state = STATE.with(|s| s.borrow_mut().take());
    let mut results = Vec::with_capacity(events.len());
    // The callback of the previous event, still registered.
    let mut held: Option<(u64, Callback)> = None;
    for WitEvent { source, kind } in events {
        let Some(st) = state.as_deref_mut() else {
            // No state: init failed or never ran; nothing can handle events.
            results.push(unhandled(&kind));
            continue;
        };
        let cb = match held.take() {
            Some((id, cb)) if id == source => Some(cb),
            Some((id, cb)) => {
                put_back(id, cb);
                take(source)
            }
            None => take(source),
        };
        let Some(mut cb) = cb else {
            // Removed earlier in this batch (the removal wins on the host).
            results.push(unhandled(&kind));
            continue;
        };
        let is_idle = matches!(kind, EventKind::Idle);
        let before = generation();
        let result = cb(kind, st);
        let finished = is_idle
            || matches!(
                result,
                EventResult::Post(WitPost::Remove) | EventResult::Timeout(WitTimeout::Drop)
            );
        if finished {
            // Drop it outside the registry borrow.
            let slot = SOURCES.with(|m| m.borrow_mut().remove(&source));
            bump();
            drop(slot);
            drop(cb);
        } else if generation() == before {
            // Nothing was inserted or removed: the source is still registered.
            held = Some((source, cb));
        } else {
            // It may have removed itself: look again.
            put_back(source, cb);
        }
        results.push(result);
    }
    if let Some((id, cb)) = held {
        put_back(id, cb);
    }
    STATE.with(|s| *s.borrow_mut() = state);
    results
}

/// Implementation of the `shutdown` export for plugin type `P`.
#[doc(hidden)]
pub fn shutdown<P: Plugin>(deadline: u64) {
    let mut state = STATE.with(|s| s.borrow_mut().take());
    if let Some(st) = state.as_deref_mut().and_then(|s| s.downcast_mut::<P::State>()) {
        P::shutdown(&LoopHandle::new(), st, Instant::from_nanos(deadline));
    }
    STATE.with(|s| *s.borrow_mut() = state);
}
