//! [`LoopHandle`], [`RegistrationToken`], [`PostAction`], [`EventSource`],
//! [`Idle`] and [`LoopSignal`]: the calloop-shaped core of the SDK.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;

use crate::bindings::callop::plugin::host_loop;
use crate::bindings::callop::plugin::types::{EventKind, EventResult, PostAction as WitPost};
use crate::error::{Error, Result};
use crate::rt;

/// What the loop should do with a source after its callback ran (calloop's
/// `PostAction`). Returned by the callbacks of every source except timers
/// (which return [`TimeoutAction`](crate::timer::TimeoutAction)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PostAction {
    /// Keep the source as it is.
    Continue,
    /// Re-register the source: re-applies an I/O source's interest and mode
    /// (re-arms a [`Mode::OneShot`](crate::generic::Mode::OneShot)
    /// registration); a no-op for the other source kinds.
    Reregister,
    /// Disable the source; re-enable it with [`LoopHandle::enable`].
    Disable,
    /// Remove the source from the loop.
    Remove,
}

impl PostAction {
    pub(crate) fn to_wit(self) -> WitPost {
        match self {
            PostAction::Continue => WitPost::Continue,
            PostAction::Reregister => WitPost::Reregister,
            PostAction::Disable => WitPost::Disable,
            PostAction::Remove => WitPost::Remove,
        }
    }
}

/// Identifies a source inserted in the loop; used to
/// [`remove`](LoopHandle::remove), [`enable`](LoopHandle::enable),
/// [`disable`](LoopHandle::disable) or [`update`](LoopHandle::update) it.
///
/// Tokens are `Copy`; a token of a removed source is simply stale (operations
/// on it fail with [`ErrorCode::InvalidSource`](crate::ErrorCode)).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegistrationToken {
    id: u64,
}

impl RegistrationToken {
    /// The raw WIT `source-id` (useful for logging only).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl fmt::Debug for RegistrationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegistrationToken({})", self.id)
    }
}

mod sealed {
    /// Prevents implementations of [`super::EventSource`] outside the SDK:
    /// the set of source kinds is defined by the WIT world.
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// Converts a callback's return value into the WIT result (implemented for
/// [`PostAction`] and [`TimeoutAction`](crate::timer::TimeoutAction)).
pub trait CallbackReturn: sealed::Sealed + 'static {
    #[doc(hidden)]
    fn __into_wit(self) -> EventResult;
}

impl sealed::Sealed for PostAction {}
impl CallbackReturn for PostAction {
    fn __into_wit(self) -> EventResult {
        EventResult::Post(self.to_wit())
    }
}

/// A kind of event source that can be inserted with
/// [`LoopHandle::insert_source`], as in calloop: a timer
/// ([`Timer`](crate::timer::Timer)), a ping
/// ([`PingSource`](crate::ping::PingSource)), a channel
/// ([`Channel`](crate::channel::Channel)), an I/O object
/// ([`Generic`](crate::generic::Generic)) or a signal subscription
/// ([`Signals`](crate::signals::Signals)).
///
/// The trait is sealed: the source kinds are those of the WIT world.
pub trait EventSource: sealed::Sealed {
    /// The event passed to the callback.
    type Event;
    /// The metadata passed to the callback (always `()` for now, as in
    /// calloop's timer, ping and channel sources).
    type Metadata;
    /// What the callback returns.
    type Ret: CallbackReturn;

    /// Registers the source with the host; returns its id.
    #[doc(hidden)]
    fn __register(self) -> Result<(u64, Self::Metadata)>;

    /// Converts a raw event for this source; `None` if it does not apply
    /// (then the host is told to remove the source).
    #[doc(hidden)]
    fn __convert(kind: EventKind) -> Option<Self::Event>;

    /// Runs `callback` for a raw event and returns the WIT result; `None` if
    /// the event does not apply. One raw event is one callback call, except
    /// for sources whose events arrive packed (a channel's message batch),
    /// which stop calling back once `registered()` turns false (the
    /// callback removed its own source).
    #[doc(hidden)]
    fn __deliver(
        kind: EventKind,
        callback: &mut dyn FnMut(Self::Event) -> Self::Ret,
        registered: &dyn Fn() -> bool,
    ) -> Option<EventResult> {
        let _ = registered;
        Self::__convert(kind).map(|e| callback(e).__into_wit())
    }
}

/// Handle to the plugin's slice of the host event loop (calloop's
/// `LoopHandle<'l, Data>`), parameterised by the plugin's `State`, which
/// every callback receives as `&mut State`.
///
/// It is a zero-sized `Copy` value: get one in
/// [`Plugin::init`](crate::Plugin::init) and keep (or capture) copies
/// freely, including inside callbacks.
///
/// Registrations and changes made through it are queued by the host and
/// take effect when the current `init`/callback batch returns: a source
/// inserted inside a callback fires in a later dispatch at the earliest.
pub struct LoopHandle<State> {
    _state: PhantomData<fn(&mut State)>,
}

impl<State> Clone for LoopHandle<State> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<State> Copy for LoopHandle<State> {}

impl<State> fmt::Debug for LoopHandle<State> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoopHandle")
    }
}

impl<State: 'static> LoopHandle<State> {
    pub(crate) fn new() -> Self {
        LoopHandle {
            _state: PhantomData,
        }
    }

    /// Inserts an event source with its callback, like calloop's
    /// `insert_source`. The callback gets the source's event, its metadata
    /// and the plugin state, and returns [`PostAction`] (or
    /// [`TimeoutAction`](crate::timer::TimeoutAction) for timers).
    ///
    /// ```no_run
    /// # use callop_guest::timer::{TimeoutAction, Timer};
    /// # use std::time::Duration;
    /// # struct State;
    /// # fn run(handle: &callop_guest::LoopHandle<State>) -> Result<(), Box<dyn std::error::Error>> {
    /// handle.insert_source(Timer::from_duration(Duration::from_millis(10)),
    ///     |deadline, _: &mut (), state: &mut State| TimeoutAction::Drop)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn insert_source<S, F>(&self, source: S, mut callback: F) -> Result<RegistrationToken>
    where
        S: EventSource,
        S::Metadata: 'static,
        F: FnMut(S::Event, &mut S::Metadata, &mut State) -> S::Ret + 'static,
    {
        let (id, mut meta) = source.__register()?;
        rt::insert(
            id,
            Box::new(move |kind: EventKind, state: &mut dyn Any| {
                let state = state
                    .downcast_mut::<State>()
                    .expect("callop-guest: LoopHandle used with a foreign State type");
                let fallback = rt::unhandled(&kind);
                let removals = rt::removals();
                // `None`: an event of the wrong kind (host bug): drop the source.
                S::__deliver(
                    kind,
                    &mut |event| callback(event, &mut meta, state),
                    &|| rt::removals() == removals || rt::contains(id),
                )
                .unwrap_or(fallback)
            }),
        );
        Ok(RegistrationToken { id })
    }

    /// Inserts an idle callback: it runs once, after the events of a
    /// dispatch have been processed (calloop's `insert_idle`). Returns an
    /// [`Idle`] that can [`cancel`](Idle::cancel) it before it runs.
    ///
    /// If the host refuses the registration (e.g. a source limit), the error
    /// is logged and an inert `Idle` is returned; use
    /// [`try_insert_idle`](Self::try_insert_idle) to handle the error.
    pub fn insert_idle<F: FnOnce(&mut State) + 'static>(&self, callback: F) -> Idle {
        match self.try_insert_idle(callback) {
            Ok(idle) => idle,
            Err(e) => {
                crate::log::log(
                    crate::log::Level::Error,
                    &format!("insert_idle failed: {e}"),
                );
                Idle { id: None }
            }
        }
    }

    /// Like [`insert_idle`](Self::insert_idle) but reports host errors.
    pub fn try_insert_idle<F: FnOnce(&mut State) + 'static>(&self, callback: F) -> Result<Idle> {
        let id = host_loop::add_idle().map_err(Error::from)?;
        let mut callback = Some(callback);
        rt::insert(
            id,
            Box::new(move |_kind: EventKind, state: &mut dyn Any| {
                let state = state
                    .downcast_mut::<State>()
                    .expect("callop-guest: LoopHandle used with a foreign State type");
                if let Some(cb) = callback.take() {
                    cb(state);
                }
                EventResult::Post(WitPost::Continue)
            }),
        );
        Ok(Idle { id: Some(id) })
    }

    /// Re-enables a disabled source. Events that became due while it was
    /// disabled are delivered afterwards.
    pub fn enable(&self, token: &RegistrationToken) -> Result<()> {
        host_loop::enable(token.id).map_err(Error::from)
    }

    /// Disables a source without removing it.
    pub fn disable(&self, token: &RegistrationToken) -> Result<()> {
        host_loop::disable(token.id).map_err(Error::from)
    }

    /// Re-applies a source's registration (calloop's `update`): re-arms a
    /// oneshot I/O source; a no-op for timers, pings and channels.
    pub fn update(&self, token: &RegistrationToken) -> Result<()> {
        host_loop::update(token.id).map_err(Error::from)
    }

    /// Removes a source and drops its callback (calloop's `remove`). Removing
    /// an already removed source is a no-op.
    pub fn remove(&self, token: RegistrationToken) {
        if let Some(callback) = rt::take(token.id) {
            // Only known ids are sent to the host: a stale token is a no-op.
            if let Err(e) = host_loop::remove(token.id) {
                crate::log::log(
                    crate::log::Level::Debug,
                    &format!("remove({}) failed: {}", token.id, Error::from(e)),
                );
            }
            // Dropped after the host call: an I/O object owned by the
            // callback is closed once its registration is gone.
            drop(callback);
        }
    }

    /// Removes every source registered through the SDK (timers, idles,
    /// pings, channels). The plugin then ends once the current call returns,
    /// unless new sources are inserted afterwards.
    pub fn remove_all(&self) {
        for id in rt::ids() {
            self.remove(RegistrationToken { id });
        }
    }

    /// A [`LoopSignal`] to stop this plugin.
    pub fn get_signal(&self) -> LoopSignal {
        LoopSignal { _private: () }
    }
}

/// An idle callback inserted with [`LoopHandle::insert_idle`].
///
/// Dropping it does not cancel the callback (as in calloop).
#[derive(Debug)]
pub struct Idle {
    id: Option<u64>,
}

impl Idle {
    /// Cancels the idle callback if it has not run yet.
    pub fn cancel(self) {
        if let Some(id) = self.id {
            if rt::forget(id) {
                let _ = host_loop::remove(id);
            }
        }
    }
}

/// Stops this plugin (calloop's `LoopSignal`, scoped to the plugin). Obtain
/// it from [`LoopHandle::get_signal`]; it can be copied into callbacks.
#[derive(Clone, Copy, Debug)]
pub struct LoopSignal {
    _private: (),
}

impl LoopSignal {
    /// Ends the plugin with exit code 0 once the current call returns.
    pub fn stop(&self) {
        stop(0);
    }

    /// Ends the plugin with `exit_code` once the current call returns.
    pub fn stop_with_code(&self, exit_code: i32) {
        stop(exit_code);
    }
}

/// Ends this plugin with `exit_code` once the current call (init or callback
/// batch) returns: no more events are delivered, all sources are removed
/// and [`Plugin::shutdown`](crate::Plugin::shutdown) is not called. Exiting
/// normally is simpler: a plugin ends with code 0 when it has no source
/// left.
pub fn stop(exit_code: i32) {
    host_loop::stop(exit_code);
}
