//! [`TransientSource`]: a child event source that a composite source can remove or replace at
//! any time, with its (un)registration handled for it.
//!
//! A composite source keeps the child in a `TransientSource`, forwards `process_events` and the
//! three registration calls to it, and passes its [`PostAction`](crate::PostAction) up. The
//! wrapper only ever returns `Continue` or `Reregister`: when the child asks to be disabled or
//! removed (or the composite calls [`remove`](TransientSource::remove) or
//! [`replace`](TransientSource::replace)), it returns `Reregister`, and on the resulting
//! re-registration it unregisters the old child and registers the new one.
//!
//! ```
//! use callop::{EventLoop, EventSource, Poll, PostAction, Readiness, Token, TokenFactory};
//! use callop::ping::{make_ping, PingError, PingSource};
//! use callop::transient::TransientSource;
//!
//! /// A composite of one ping that may go away.
//! struct Composite {
//!     ping: TransientSource<PingSource>,
//! }
//!
//! impl EventSource for Composite {
//!     type Event = ();
//!     type Metadata = ();
//!     type Ret = ();
//!     type Error = PingError;
//!
//!     fn process_events<F>(&mut self, readiness: Readiness, token: Token, callback: F)
//!         -> Result<PostAction, PingError>
//!     where
//!         F: FnMut((), &mut ()),
//!     {
//!         self.ping.process_events(readiness, token, callback)
//!     }
//!
//!     fn register(&mut self, poll: &mut Poll, tf: &mut TokenFactory) -> callop::Result<()> {
//!         self.ping.register(poll, tf)
//!     }
//!
//!     fn reregister(&mut self, poll: &mut Poll, tf: &mut TokenFactory) -> callop::Result<()> {
//!         self.ping.reregister(poll, tf)
//!     }
//!
//!     fn unregister(&mut self, poll: &mut Poll) -> callop::Result<()> {
//!         self.ping.unregister(poll)
//!     }
//! }
//!
//! let mut event_loop: EventLoop<u32> = EventLoop::try_new().unwrap();
//! let (ping, source) = make_ping().unwrap();
//! let dispatcher = callop::Dispatcher::new(Composite { ping: source.into() }, |(), _, n| *n += 1);
//! event_loop.handle().register_dispatcher(dispatcher.clone()).unwrap();
//!
//! ping.ping();
//! drop(ping); // the child asks to be removed; the composite stays
//! let mut n = 0;
//! event_loop.dispatch(std::time::Duration::ZERO, &mut n).unwrap();
//! assert_eq!(n, 1);
//! assert!(dispatcher.as_source_ref().ping.is_none());
//! ```
//!
//! Assigning a new value to a field holding a registered `TransientSource` drops the old child
//! without unregistering it; use [`replace`](TransientSource::replace) or
//! [`remove`](TransientSource::remove) instead.

use crate::{EventSource, Poll, PostAction, Readiness, Token, TokenFactory};

/// A child event source that can be removed or replaced at any time; see the
/// [module docs](self).
#[derive(Debug)]
pub struct TransientSource<T> {
    state: State<T>,
}

/// Where the child is in its life, and what the next registration call must do with it.
#[derive(Debug)]
enum State<T> {
    /// Registered and live.
    Keep(T),
    /// Not registered yet: the next (re)registration registers it.
    Register(T),
    /// Asked to be disabled: the next re-registration unregisters it; it is kept.
    Disable(T),
    /// Disabled and unregistered; registering the composite again (e.g. `enable`) registers it.
    Disabled(T),
    /// Asked to be removed: the next (re/un)registration unregisters (if needed) and drops it.
    Remove(T),
    /// Being replaced: the next re-registration unregisters `old` and registers `new`.
    Replace {
        /// The child to register from now on.
        new: T,
        /// The child to unregister and drop.
        old: T,
    },
    /// No child.
    None,
}

impl<T> Default for TransientSource<T> {
    /// An empty wrapper.
    fn default() -> Self {
        TransientSource { state: State::None }
    }
}

impl<T> From<T> for TransientSource<T>
where
    T: EventSource,
{
    /// Wraps a source that is not registered yet.
    fn from(source: T) -> Self {
        TransientSource {
            state: State::Register(source),
        }
    }
}

impl<T> TransientSource<T> {
    /// Moves to a new state built from the live child (the new child, when being replaced; the
    /// old one is dropped). Does nothing when there is no child.
    fn transition(&mut self, next: impl FnOnce(T) -> State<T>) {
        self.state = match std::mem::replace(&mut self.state, State::None) {
            State::Keep(s)
            | State::Register(s)
            | State::Disable(s)
            | State::Disabled(s)
            | State::Remove(s) => next(s),
            State::Replace { new, .. } => next(new),
            State::None => State::None,
        };
    }

    /// Applies `f` to the child, unless there is none or it is about to be removed.
    pub fn map<F, U>(&mut self, f: F) -> Option<U>
    where
        F: FnOnce(&mut T) -> U,
    {
        match &mut self.state {
            State::Keep(s)
            | State::Register(s)
            | State::Disable(s)
            | State::Disabled(s)
            | State::Replace { new: s, .. } => Some(f(s)),
            State::Remove(_) | State::None => None,
        }
    }

    /// Whether there is no child at all (it was removed, or the wrapper started empty).
    pub fn is_none(&self) -> bool {
        matches!(self.state, State::None)
    }

    /// Removes the child: it is unregistered and dropped at the next re-registration (return
    /// [`PostAction::Reregister`] from the composite's `process_events`, or call
    /// [`LoopHandle::update`](crate::LoopHandle::update)).
    pub fn remove(&mut self) {
        self.transition(State::Remove);
    }

    /// Replaces the child with `new`: the old one produces no more events, and at the next
    /// re-registration it is unregistered and dropped and `new` is registered.
    pub fn replace(&mut self, new: T) {
        match std::mem::replace(&mut self.state, State::None) {
            State::Keep(old) | State::Disable(old) | State::Remove(old) => {
                self.state = State::Replace { new, old }
            }
            // Not registered: nothing to unregister.
            State::Register(_) | State::Disabled(_) | State::None => {
                self.state = State::Register(new)
            }
            // The pending child was never registered: drop it, keep the registered one.
            State::Replace { old, .. } => self.state = State::Replace { new, old },
        }
    }
}

impl<T: EventSource> EventSource for TransientSource<T> {
    type Event = T::Event;
    type Metadata = T::Metadata;
    type Ret = T::Ret;
    type Error = T::Error;

    fn process_events<F>(
        &mut self,
        readiness: Readiness,
        token: Token,
        callback: F,
    ) -> Result<PostAction, T::Error>
    where
        F: FnMut(Self::Event, &mut Self::Metadata) -> Self::Ret,
    {
        // Only a registered, live child gets events.
        let State::Keep(source) = &mut self.state else {
            return Ok(PostAction::Continue);
        };
        Ok(match source.process_events(readiness, token, callback)? {
            PostAction::Continue => PostAction::Continue,
            PostAction::Reregister => PostAction::Reregister,
            PostAction::Disable => {
                self.transition(State::Disable);
                PostAction::Reregister
            }
            PostAction::Remove => {
                self.transition(State::Remove);
                PostAction::Reregister
            }
        })
    }

    fn register(&mut self, poll: &mut Poll, token_factory: &mut TokenFactory) -> crate::Result<()> {
        match &mut self.state {
            State::Keep(s)
            | State::Register(s)
            | State::Disable(s)
            | State::Disabled(s)
            | State::Replace { new: s, .. } => {
                s.register(poll, token_factory)?;
                // A replaced child was unregistered with the whole composite; drop it.
                self.transition(State::Keep);
            }
            // Not registered (the composite was unregistered before): just drop it.
            State::Remove(_) => self.state = State::None,
            State::None => {}
        }
        Ok(())
    }

    fn reregister(
        &mut self,
        poll: &mut Poll,
        token_factory: &mut TokenFactory,
    ) -> crate::Result<()> {
        match &mut self.state {
            State::Keep(s) => s.reregister(poll, token_factory)?,
            State::Register(s) => {
                s.register(poll, token_factory)?;
                self.transition(State::Keep);
            }
            State::Disable(s) => {
                s.unregister(poll)?;
                self.transition(State::Disabled);
            }
            State::Disabled(_) => {}
            State::Remove(s) => {
                s.unregister(poll)?;
                self.state = State::None;
            }
            State::Replace { new, old } => {
                old.unregister(poll)?;
                new.register(poll, token_factory)?;
                self.transition(State::Keep);
            }
            State::None => {}
        }
        Ok(())
    }

    fn unregister(&mut self, poll: &mut Poll) -> crate::Result<()> {
        match &mut self.state {
            State::Keep(s) => s.unregister(poll)?,
            State::Disable(s) => {
                s.unregister(poll)?;
                self.transition(State::Disabled);
            }
            // Not registered.
            State::Register(_) | State::Disabled(_) => {}
            State::Remove(s) => {
                s.unregister(poll)?;
                self.state = State::None;
            }
            State::Replace { old, .. } => {
                old.unregister(poll)?;
                // The new child will be registered with the composite.
                self.transition(State::Register);
            }
            State::None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, rc::Rc};

    use super::*;
    use crate::loop_tests::tick;
    use crate::{
        Dispatcher, EventLoop,
        channel::{Event, channel},
        ping::{PingError, PingSource, make_ping},
    };

    /// A child that counts its registrations and checks it is never dropped while registered.
    struct Child {
        ping: PingSource,
        id: u32,
        registered: Rc<Cell<bool>>,
        then: PostAction,
    }

    impl Drop for Child {
        fn drop(&mut self) {
            assert!(
                !self.registered.get(),
                "child {} dropped while registered",
                self.id
            );
        }
    }

    impl EventSource for Child {
        type Event = u32;
        type Metadata = ();
        type Ret = ();
        type Error = PingError;

        fn process_events<F>(
            &mut self,
            r: Readiness,
            t: Token,
            mut cb: F,
        ) -> Result<PostAction, PingError>
        where
            F: FnMut(u32, &mut ()),
        {
            let id = self.id;
            let mut fired = false;
            self.ping.process_events(r, t, |_, m| {
                fired = true;
                cb(id, m)
            })?;
            Ok(if fired {
                self.then
            } else {
                PostAction::Continue
            })
        }

        fn register(&mut self, poll: &mut Poll, tf: &mut TokenFactory) -> crate::Result<()> {
            assert!(
                !self.registered.replace(true),
                "child {} registered twice",
                self.id
            );
            self.ping.register(poll, tf)
        }

        fn reregister(&mut self, poll: &mut Poll, tf: &mut TokenFactory) -> crate::Result<()> {
            assert!(self.registered.get());
            self.ping.reregister(poll, tf)
        }

        fn unregister(&mut self, poll: &mut Poll) -> crate::Result<()> {
            assert!(
                self.registered.replace(false),
                "child {} unregistered twice",
                self.id
            );
            self.ping.unregister(poll)
        }
    }

    fn child(id: u32, then: PostAction) -> (crate::ping::Ping, Child, Rc<Cell<bool>>) {
        let (ping, source) = make_ping().unwrap();
        let registered = Rc::new(Cell::new(false));
        let child = Child {
            ping: source,
            id,
            registered: registered.clone(),
            then,
        };
        (ping, child, registered)
    }

    /// Inserts `source` in `event_loop`, pushing the id of every child that fires.
    fn insert_collecting<'l>(
        event_loop: &EventLoop<'l, Vec<u32>>,
        source: impl EventSource<Event = u32, Metadata = (), Ret = ()> + 'l,
    ) -> crate::RegistrationToken {
        event_loop
            .handle()
            .insert_source(source, |id, _, got| got.push(id))
            .unwrap()
    }

    /// A `Parent` of `child` (to be replaced by `next`), registered in `event_loop` through a
    /// dispatcher that pushes the id of every child that fires.
    fn collecting_parent<'l>(
        event_loop: &EventLoop<'l, Vec<u32>>,
        child: Child,
        next: Option<Child>,
    ) -> (Dispatcher<'l, Parent, Vec<u32>>, crate::RegistrationToken) {
        let parent = Dispatcher::new(
            Parent {
                child: child.into(),
                next,
            },
            |id, _, got: &mut Vec<u32>| got.push(id),
        );
        let token = event_loop
            .handle()
            .register_dispatcher(parent.clone())
            .unwrap();
        (parent, token)
    }

    /// A composite of one transient child, which it may replace with `next` once it fired.
    struct Parent {
        child: TransientSource<Child>,
        next: Option<Child>,
    }

    impl EventSource for Parent {
        type Event = u32;
        type Metadata = ();
        type Ret = ();
        type Error = PingError;

        fn process_events<F>(
            &mut self,
            r: Readiness,
            t: Token,
            cb: F,
        ) -> Result<PostAction, PingError>
        where
            F: FnMut(u32, &mut ()),
        {
            let mut action = self.child.process_events(r, t, cb)?;
            if action != PostAction::Continue {
                if let Some(next) = self.next.take() {
                    self.child.replace(next);
                    action |= PostAction::Reregister;
                }
            }
            Ok(action)
        }

        fn register(&mut self, poll: &mut Poll, tf: &mut TokenFactory) -> crate::Result<()> {
            self.child.register(poll, tf)
        }

        fn reregister(&mut self, poll: &mut Poll, tf: &mut TokenFactory) -> crate::Result<()> {
            self.child.reregister(poll, tf)
        }

        fn unregister(&mut self, poll: &mut Poll) -> crate::Result<()> {
            self.child.unregister(poll)
        }
    }

    #[test]
    fn transient_passes_events_through() {
        let mut event_loop = EventLoop::<Vec<u32>>::try_new().unwrap();
        let (ping, c, _) = child(7, PostAction::Continue);
        let token = insert_collecting(&event_loop, TransientSource::from(c));
        ping.ping();
        let mut got = Vec::new();
        tick(&mut event_loop, &mut got);
        assert_eq!(got, [7]);
        event_loop.handle().remove(token);
    }

    #[test]
    fn child_asking_for_removal_is_unregistered_and_dropped() {
        let mut event_loop = EventLoop::<Vec<u32>>::try_new().unwrap();
        let (ping, c, registered) = child(1, PostAction::Remove);
        let (parent, _) = collecting_parent(&event_loop, c, None);
        ping.ping();
        let mut got = Vec::new();
        tick(&mut event_loop, &mut got);
        assert_eq!(got, [1]);
        assert!(!registered.get());
        assert!(parent.as_source_ref().child.is_none());
        assert!(parent.as_source_mut().child.map(|_| ()).is_none());
        ping.ping();
        tick(&mut event_loop, &mut got);
        assert_eq!(got, [1]);
    }

    #[test]
    fn replaced_child_is_unregistered_and_new_one_fires() {
        let mut event_loop = EventLoop::<Vec<u32>>::try_new().unwrap();
        let (ping0, c0, registered0) = child(0, PostAction::Remove);
        let (ping1, c1, registered1) = child(1, PostAction::Continue);
        let (parent, token) = collecting_parent(&event_loop, c0, Some(c1));
        ping0.ping();
        ping1.ping();
        let mut got = Vec::new();
        tick(&mut event_loop, &mut got);
        assert_eq!(got, [0]);
        assert!(!registered0.get());
        assert!(registered1.get());
        tick(&mut event_loop, &mut got);
        assert_eq!(got, [0, 1]);
        assert_eq!(parent.as_source_mut().child.map(|c| c.id), Some(1));
        event_loop.handle().remove(token);
        assert!(!registered1.get());
    }

    #[test]
    fn disabled_child_stays_quiet_until_enabled() {
        let mut event_loop = EventLoop::<Vec<u32>>::try_new().unwrap();
        let (ping, c, registered) = child(3, PostAction::Disable);
        let token = insert_collecting(&event_loop, TransientSource::from(c));
        ping.ping();
        let mut got = Vec::new();
        tick(&mut event_loop, &mut got);
        assert_eq!(got, [3]);
        assert!(!registered.get());
        ping.ping();
        tick(&mut event_loop, &mut got);
        // Re-registering the composite for another reason does not wake a disabled child.
        event_loop.handle().update(&token).unwrap();
        tick(&mut event_loop, &mut got);
        assert_eq!(got, [3]);
        event_loop.handle().disable(&token).unwrap();
        event_loop.handle().enable(&token).unwrap();
        tick(&mut event_loop, &mut got);
        assert_eq!(got, [3, 3]);
    }

    #[test]
    fn remove_requested_by_the_parent() {
        struct Wrapper(TransientSource<crate::channel::Channel<u32>>);

        impl EventSource for Wrapper {
            type Event = u32;
            type Metadata = ();
            type Ret = ();
            type Error = crate::channel::ChannelError;

            fn process_events<F>(
                &mut self,
                r: Readiness,
                t: Token,
                mut cb: F,
            ) -> Result<PostAction, Self::Error>
            where
                F: FnMut(u32, &mut ()),
            {
                let mut stop = false;
                let mut action = self.0.process_events(r, t, |event, m| {
                    if let Event::Msg(n) = event {
                        stop |= n >= 2;
                        cb(n, m);
                    }
                })?;
                if stop {
                    self.0.remove();
                    action |= PostAction::Reregister;
                }
                Ok(action)
            }

            fn register(&mut self, poll: &mut Poll, tf: &mut TokenFactory) -> crate::Result<()> {
                self.0.register(poll, tf)
            }

            fn reregister(&mut self, poll: &mut Poll, tf: &mut TokenFactory) -> crate::Result<()> {
                self.0.reregister(poll, tf)
            }

            fn unregister(&mut self, poll: &mut Poll) -> crate::Result<()> {
                self.0.unregister(poll)
            }
        }

        let mut event_loop = EventLoop::<Option<u32>>::try_new().unwrap();
        let (tx, rx) = channel();
        event_loop
            .handle()
            .insert_source(Wrapper(rx.into()), |n, _, out| *out = Some(n))
            .unwrap();
        let mut out = None;
        for n in 0..=2 {
            tx.send(n).unwrap();
            tick(&mut event_loop, &mut out);
            assert_eq!(out.take(), Some(n));
        }
        // The channel was dropped with the child.
        assert!(tx.send(3).is_err());
    }

    #[test]
    fn replace_before_registration_never_unregisters() {
        let mut event_loop = EventLoop::<Vec<u32>>::try_new().unwrap();
        let (_ping0, c0, _) = child(0, PostAction::Continue);
        let (ping1, c1, registered1) = child(1, PostAction::Continue);
        let mut transient = TransientSource::from(c0);
        // c0 was never registered: its drop asserts it is not.
        transient.replace(c1);
        let token = insert_collecting(&event_loop, transient);
        assert!(registered1.get());
        ping1.ping();
        let mut got = Vec::new();
        tick(&mut event_loop, &mut got);
        assert_eq!(got, [1]);
        event_loop.handle().remove(token);
    }

    #[test]
    fn empty_transient_is_inert() {
        let mut event_loop = EventLoop::<()>::try_new().unwrap();
        let empty: TransientSource<PingSource> = TransientSource::default();
        assert!(empty.is_none());
        let token = event_loop
            .handle()
            .insert_source(empty, |_, _, _| {})
            .unwrap();
        tick(&mut event_loop, &mut ());
        event_loop.handle().update(&token).unwrap();
        event_loop.handle().remove(token);
    }
}
