//! Runtime glue behind [`export_plugin!`](crate::export_plugin): the
//! id → callback registry and the implementations of the WIT `guest`
//! exports. Not part of the public API (only reachable through the macro).

use std::any::Any;
use std::cell::{Cell, RefCell};

use rustc_hash::FxHashMap;

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
    static SOURCES: RefCell<FxHashMap<u64, Slot>> = RefCell::new(FxHashMap::default());
    /// The plugin state, boxed; taken out while callbacks run.
    static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    /// The previous version's snapshot, from `restore` until `init` takes it.
    static RESTORED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    /// Sources removed by [`forget`] and [`take`] so far (see [`removals`]).
    static REMOVALS: Cell<u64> = const { Cell::new(0) };
}

/// How many sources [`forget`] and [`take`] have removed so far. While it
/// is unchanged, a source whose callback is running is still registered: a
/// channel batch then asks the registry nothing per message.
pub(crate) fn removals() -> u64 {
    REMOVALS.with(Cell::get)
}

fn count_removal() {
    REMOVALS.with(|r| r.set(r.get().wrapping_add(1)));
}

/// Registers `cb` under `id` (ids come from the host and are never reused).
pub(crate) fn insert(id: u64, cb: Callback) {
    SOURCES.with(|m| m.borrow_mut().insert(id, Slot { cb: Some(cb) }));
}

/// Forgets the callback of `id`; returns whether it was registered. The
/// removed callback is dropped *outside* the registry borrow, so its
/// captures may touch the loop in their `Drop`.
pub(crate) fn forget(id: u64) -> bool {
    // `take` has released the borrow; the callback is dropped here.
    take(id).is_some()
}

/// Removes the callback of `id` from the registry and hands it to the
/// caller, who drops it when convenient (e.g. after telling the host, so
/// that an I/O object captured by it is closed after its registration was
/// removed).
pub(crate) fn take(id: u64) -> Option<impl Drop> {
    struct Taken(#[allow(dead_code)] Slot);
    impl Drop for Taken {
        fn drop(&mut self) {}
    }
    let slot = SOURCES.with(|m| m.borrow_mut().remove(&id))?;
    count_removal();
    Some(Taken(slot))
}

/// Whether `id` is registered (its callback may be running).
pub(crate) fn contains(id: u64) -> bool {
    SOURCES.with(|m| m.borrow().contains_key(&id))
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
    crate::futures::run();
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

/// Implementation of the `dispatch` export: runs each event's callback in
/// order and collects one result per event.
#[doc(hidden)]
pub fn dispatch(events: Vec<WitEvent>) -> Vec<EventResult> {
    let mut state = STATE.with(|s| s.borrow_mut().take());
    let mut results = Vec::with_capacity(events.len());
    for WitEvent { source, kind } in events {
        let Some(st) = state.as_deref_mut() else {
            // No state: init failed or never ran; nothing can handle events.
            results.push(unhandled(&kind));
            continue;
        };
        let cb = SOURCES.with(|m| m.borrow_mut().get_mut(&source).and_then(|s| s.cb.take()));
        let Some(mut cb) = cb else {
            // Removed earlier in this batch (the removal wins on the host).
            results.push(unhandled(&kind));
            continue;
        };
        let is_idle = matches!(kind, EventKind::Idle);
        let result = cb(kind, st);
        let finished = is_idle
            || matches!(
                result,
                EventResult::Post(WitPost::Remove) | EventResult::Timeout(WitTimeout::Drop)
            );
        // Put the callback back unless the source is finished or was removed
        // by its own callback; drop it outside the registry borrow.
        let leftover = SOURCES.with(|m| {
            let mut m = m.borrow_mut();
            if finished {
                m.remove(&source);
                Some(cb)
            } else if let Some(slot) = m.get_mut(&source) {
                slot.cb = Some(cb);
                None
            } else {
                Some(cb)
            }
        });
        drop(leftover);
        results.push(result);
    }
    STATE.with(|s| *s.borrow_mut() = state);
    // Tasks woken by this batch (readiness, timers) run before returning,
    // so their registrations are queued with the batch's.
    crate::futures::run();
    results
}

/// Implementation of the `shutdown` export for plugin type `P`.
#[doc(hidden)]
pub fn shutdown<P: Plugin>(deadline: u64) {
    let mut state = STATE.with(|s| s.borrow_mut().take());
    if let Some(st) = state
        .as_deref_mut()
        .and_then(|s| s.downcast_mut::<P::State>())
    {
        P::shutdown(&LoopHandle::new(), st, Instant::from_nanos(deadline));
    }
    STATE.with(|s| *s.borrow_mut() = state);
    crate::futures::run();
}

/// Implementation of the `state.snapshot` export for plugin type `P`.
#[doc(hidden)]
pub fn snapshot<P: Plugin>() -> Option<Vec<u8>> {
    let mut state = STATE.with(|s| s.borrow_mut().take());
    let out = state
        .as_deref_mut()
        .and_then(|s| s.downcast_mut::<P::State>())
        .and_then(P::snapshot);
    STATE.with(|s| *s.borrow_mut() = state);
    out
}

/// Implementation of the `state.restore` export for plugin type `P`.
#[doc(hidden)]
pub fn restore<P: Plugin>(snapshot: Vec<u8>) -> Result<(), String> {
    P::restore(&snapshot)?;
    RESTORED.with(|r| *r.borrow_mut() = Some(snapshot));
    Ok(())
}

/// Takes the snapshot `restore` kept (see [`crate::restored`]).
pub(crate) fn take_restored() -> Option<Vec<u8>> {
    RESTORED.with(|r| r.borrow_mut().take())
}
