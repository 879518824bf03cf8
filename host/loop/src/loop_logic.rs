//! [`EventLoop`], [`LoopHandle`], [`LoopSignal`]: the loop itself and the dispatch algorithm.
//!
//! One dispatch: ask sources that want it for synthetic events (`before_sleep`), wait for the
//! poller (no longer than the caller's timeout or the next timer), give lifecycle sources a look
//! at the batch (`before_handle_events`), then route each event to its source's callback and
//! apply the [`PostAction`] it returns; finally run the idle callbacks queued so far.

use std::{
    cell::{Cell, RefCell},
    fmt::Debug,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    rc::{Rc, Weak},
    slice,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    Dispatcher, EventSource, Idle, InsertError, Poll, PostAction, Readiness, Token, TokenFactory,
    list::SourceList,
    poll::PollEvent,
    sources::{ExtraLifecycleSet, IdleDispatcher},
    sys::Notifier,
    token::TokenInner,
};

type IdleCallback<'i, Data> = Rc<RefCell<dyn IdleDispatcher<Data> + 'i>>;

/// Identifies a source inserted in a loop, to [`enable`](LoopHandle::enable),
/// [`disable`](LoopHandle::disable), [`update`](LoopHandle::update) or
/// [`remove`](LoopHandle::remove) it. A token of a removed source is inert: every call with it
/// fails with [`Error::InvalidToken`](crate::Error::InvalidToken) or does nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegistrationToken {
    pub(crate) inner: TokenInner,
}

impl RegistrationToken {
    pub(crate) fn new(inner: TokenInner) -> Self {
        Self { inner }
    }
}

pub(crate) struct LoopInner<'l, Data> {
    pub(crate) poll: RefCell<Poll>,
    pub(crate) sources: RefCell<SourceList<'l, Data>>,
    pub(crate) lifecycle: RefCell<ExtraLifecycleSet>,
    idles: RefCell<Vec<IdleCallback<'l, Data>>>,
    /// What `update`/`disable` asked for while the source was busy in its own callback.
    pending_action: Cell<PostAction>,
}

/// A handle to an event loop, to insert and control sources from anywhere on the loop's
/// thread, including from inside callbacks. Cheap to clone.
pub struct LoopHandle<'l, Data> {
    pub(crate) inner: Rc<LoopInner<'l, Data>>,
}

/// A weak [`LoopHandle`] that does not keep the loop alive.
pub struct WeakLoopHandle<'l, Data> {
    inner: Weak<LoopInner<'l, Data>>,
}

impl<Data> Debug for LoopHandle<'_, Data> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoopHandle { ... }")
    }
}

impl<Data> Clone for LoopHandle<'_, Data> {
    fn clone(&self) -> Self {
        LoopHandle {
            inner: self.inner.clone(),
        }
    }
}

impl<'l, Data> LoopHandle<'l, Data> {
    /// Inserts a new event source with its callback.
    ///
    /// The source is registered at once, so it can fire on the next dispatch (never on the one
    /// that is running, when called from a callback). On failure the source is handed back in
    /// the [`InsertError`].
    pub fn insert_source<S, F>(
        &self,
        source: S,
        callback: F,
    ) -> Result<RegistrationToken, InsertError<S>>
    where
        S: EventSource + 'l,
        F: FnMut(S::Event, &mut S::Metadata, &mut Data) -> S::Ret + 'l,
    {
        let dispatcher = Dispatcher::new(source, callback);
        self.register_dispatcher(dispatcher.clone())
            .map_err(|error| InsertError {
                error,
                inserted: dispatcher.into_source_inner(),
            })
    }

    /// Registers a [`Dispatcher`] (whose source the application keeps access to).
    pub fn register_dispatcher<S>(
        &self,
        dispatcher: Dispatcher<'l, S, Data>,
    ) -> crate::Result<RegistrationToken>
    where
        S: EventSource + 'l,
    {
        let disp = dispatcher.clone_as_event_dispatcher();
        let token = self.inner.sources.borrow_mut().insert(disp.clone())?;
        tracing::trace!(source = token.id(), "inserting a new source");
        let result = disp.register(
            &mut self.inner.poll.borrow_mut(),
            &mut self.inner.lifecycle.borrow_mut(),
            &mut TokenFactory::new(token),
        );
        if let Err(error) = result {
            self.inner.sources.borrow_mut().remove(token);
            return Err(error);
        }
        Ok(RegistrationToken::new(token))
    }

    /// Inserts an idle callback: it runs once, after the events of the next dispatch (of this
    /// one, when inserted from an event callback). While an idle is pending, dispatch does not
    /// block.
    pub fn insert_idle<'i, F: FnOnce(&mut Data) + 'l + 'i>(&self, callback: F) -> Idle<'i> {
        let callback = Rc::new(RefCell::new(Some(callback)));
        self.inner.idles.borrow_mut().push(callback.clone());
        Idle { callback }
    }

    /// Registers a disabled source again.
    pub fn enable(&self, token: &RegistrationToken) -> crate::Result<()> {
        let source = self.inner.sources.borrow().get(token.inner)?.clone();
        tracing::trace!(source = token.inner.id(), "registering a source");
        source.register(
            &mut self.inner.poll.borrow_mut(),
            &mut self.inner.lifecycle.borrow_mut(),
            &mut TokenFactory::new(token.inner),
        )
    }

    /// Re-registers a source (applies its new settings; re-arms a one-shot fd). From inside the
    /// source's own callback it takes effect when the callback returns.
    pub fn update(&self, token: &RegistrationToken) -> crate::Result<()> {
        let source = self.inner.sources.borrow().get(token.inner)?.clone();
        tracing::trace!(
            source = token.inner.id(),
            "updating the registration of a source"
        );
        if !source.reregister(
            &mut self.inner.poll.borrow_mut(),
            &mut self.inner.lifecycle.borrow_mut(),
            &mut TokenFactory::new(token.inner),
        )? {
            tracing::trace!(
                source = token.inner.id(),
                "cannot update a registration within its callback: deferred"
            );
            self.inner.pending_action.set(PostAction::Reregister);
        }
        Ok(())
    }

    /// Unregisters a source from the poller, keeping it in the loop for a later
    /// [`enable`](Self::enable). A pending level-triggered condition is reported again on enable.
    pub fn disable(&self, token: &RegistrationToken) -> crate::Result<()> {
        let source = self.inner.sources.borrow().get(token.inner)?.clone();
        tracing::trace!(source = token.inner.id(), "unregistering a source");
        if !source.unregister(
            &mut self.inner.poll.borrow_mut(),
            &mut self.inner.lifecycle.borrow_mut(),
            *token,
        )? {
            tracing::trace!(
                source = token.inner.id(),
                "cannot unregister a source within its callback: deferred"
            );
            self.inner.pending_action.set(PostAction::Disable);
        }
        Ok(())
    }

    /// Removes a source and drops it (with its callback). Its callback is never called again,
    /// even for events already collected in the running dispatch. A stale token does nothing.
    pub fn remove(&self, token: RegistrationToken) {
        let removed = self.inner.sources.borrow_mut().remove(token.inner);
        if let Some(source) = removed {
            tracing::trace!(source = token.inner.id(), "removing a source");
            // When the source is busy (we are in its callback), the dispatch loop unregisters it
            // after the callback returns.
            if let Err(e) = source.unregister(
                &mut self.inner.poll.borrow_mut(),
                &mut self.inner.lifecycle.borrow_mut(),
                token,
            ) {
                tracing::warn!("failed to unregister a removed source: {e}");
            }
        }
    }

    /// Wraps an I/O object into an [`Async`](crate::io::Async) adapter driven by this loop.
    pub fn adapt_io<F: AsFd>(&self, fd: F) -> crate::Result<crate::io::Async<'l, F>> {
        crate::io::Async::new(self.inner.clone(), fd)
    }

    /// A weak handle that does not keep the loop alive.
    pub fn downgrade(&self) -> WeakLoopHandle<'l, Data> {
        WeakLoopHandle {
            inner: Rc::downgrade(&self.inner),
        }
    }
}

impl<Data> Debug for WeakLoopHandle<'_, Data> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WeakLoopHandle { ... }")
    }
}

impl<Data> Clone for WeakLoopHandle<'_, Data> {
    fn clone(&self) -> Self {
        WeakLoopHandle {
            inner: self.inner.clone(),
        }
    }
}

impl<Data> Default for WeakLoopHandle<'_, Data> {
    fn default() -> Self {
        WeakLoopHandle { inner: Weak::new() }
    }
}

impl<'l, Data> WeakLoopHandle<'l, Data> {
    /// The strong handle, if the loop still exists.
    pub fn upgrade(&self) -> Option<LoopHandle<'l, Data>> {
        self.inner.upgrade().map(|inner| LoopHandle { inner })
    }

    /// Whether the loop has been dropped.
    pub fn expired(&self) -> bool {
        self.inner.strong_count() == 0
    }
}

struct Signals {
    stop: AtomicBool,
    #[cfg(feature = "block_on")]
    future_ready: AtomicBool,
}

/// An event loop: it owns the sources and dispatches their events to their callbacks, which
/// all receive a `&mut Data` shared state.
///
/// `'l` bounds what the callbacks may borrow.
pub struct EventLoop<'l, Data> {
    handle: LoopHandle<'l, Data>,
    signals: Arc<Signals>,
    notifier: Notifier,
    poll_fd: RawFd,
    events: Vec<PollEvent>,
    synthetic_events: Vec<PollEvent>,
    lifecycle_scratch: Vec<RegistrationToken>,
}

impl<Data> Debug for EventLoop<'_, Data> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventLoop { ... }")
    }
}

impl<'l, Data> EventLoop<'l, Data> {
    /// Creates a new event loop (one epoll or kqueue instance).
    pub fn try_new() -> crate::Result<Self> {
        let poll = Poll::new()?;
        let notifier = poll.notifier();
        let poll_fd = poll.as_fd().as_raw_fd();
        Ok(EventLoop {
            handle: LoopHandle {
                inner: Rc::new(LoopInner {
                    poll: RefCell::new(poll),
                    sources: RefCell::new(SourceList::new()),
                    lifecycle: RefCell::new(ExtraLifecycleSet::default()),
                    idles: RefCell::new(Vec::new()),
                    pending_action: Cell::new(PostAction::Continue),
                }),
            },
            signals: Arc::new(Signals {
                stop: AtomicBool::new(false),
                #[cfg(feature = "block_on")]
                future_ready: AtomicBool::new(false),
            }),
            notifier,
            poll_fd,
            events: Vec::with_capacity(256),
            synthetic_events: Vec::new(),
            lifecycle_scratch: Vec::new(),
        })
    }

    /// A handle to this loop.
    pub fn handle(&self) -> LoopHandle<'l, Data> {
        self.handle.clone()
    }

    fn dispatch_events(
        &mut self,
        mut timeout: Option<Duration>,
        data: &mut Data,
    ) -> crate::Result<()> {
        let inner = &*self.handle.inner;
        let start = Instant::now();
        if !inner.idles.borrow().is_empty() {
            timeout = Some(Duration::ZERO);
        }

        self.lifecycle_scratch.clear();
        self.lifecycle_scratch
            .extend_from_slice(&inner.lifecycle.borrow().values);
        for reg in &self.lifecycle_scratch {
            let disp = inner.sources.borrow().get(reg.inner).ok().cloned();
            let Some(disp) = disp else { continue };
            if let Some((readiness, token)) = disp.before_sleep()? {
                timeout = Some(Duration::ZERO);
                self.synthetic_events.push(PollEvent { readiness, token });
            }
        }

        let mut events = std::mem::take(&mut self.events);
        events.clear();
        loop {
            match inner.poll.borrow().poll(timeout, &mut events) {
                Ok(()) => break,
                Err(crate::Error::IoError(err)) if err.kind() == io::ErrorKind::Interrupted => {
                    if let Some(to) = timeout {
                        let elapsed = start.elapsed();
                        if elapsed >= to {
                            break;
                        }
                        timeout = Some(to - elapsed);
                    }
                }
                Err(err) => {
                    self.events = events;
                    return Err(err);
                }
            }
        }

        for reg in &self.lifecycle_scratch {
            let disp = inner.sources.borrow().get(reg.inner).ok().cloned();
            if let Some(disp) = disp {
                disp.before_handle_events(EventIterator {
                    inner: events.iter(),
                    registration_token: *reg,
                });
            }
        }

        let mut synthetic = std::mem::take(&mut self.synthetic_events);
        let result = synthetic
            .drain(..)
            .chain(events.iter().copied())
            .try_for_each(|event| self.handle.process_one(event, data));
        self.synthetic_events = synthetic;
        self.events = events;
        result
    }

    fn dispatch_idles(&mut self, data: &mut Data) {
        let idles = std::mem::take(&mut *self.handle.inner.idles.borrow_mut());
        for idle in idles {
            idle.borrow_mut().dispatch(data);
        }
    }

    /// Waits for events (up to `timeout`; `None` waits until something happens), dispatches
    /// them to their callbacks, then runs the pending idle callbacks.
    ///
    /// A timeout of zero dispatches what is ready without blocking.
    pub fn dispatch<D: Into<Option<Duration>>>(
        &mut self,
        timeout: D,
        data: &mut Data,
    ) -> crate::Result<()> {
        self.dispatch_events(timeout.into(), data)?;
        self.dispatch_idles(data);
        Ok(())
    }

    /// A signal to stop or wake this loop from any thread.
    pub fn get_signal(&self) -> LoopSignal {
        LoopSignal {
            signal: self.signals.clone(),
            notifier: self.notifier.clone(),
        }
    }

    /// Dispatches in a loop, calling `cb` after each dispatch, until [`LoopSignal::stop`].
    pub fn run<F, D: Into<Option<Duration>>>(
        &mut self,
        timeout: D,
        data: &mut Data,
        mut cb: F,
    ) -> crate::Result<()>
    where
        F: FnMut(&mut Data),
    {
        let timeout = timeout.into();
        self.signals.stop.store(false, Ordering::Release);
        while !self.signals.stop.load(Ordering::Acquire) {
            self.dispatch(timeout, data)?;
            cb(data);
        }
        Ok(())
    }

    /// Drives `future` to completion on this loop, dispatching events while it is pending.
    ///
    /// Returns `Ok(None)` if the loop was stopped (with [`LoopSignal::stop`]) first.
    #[cfg(feature = "block_on")]
    pub fn block_on<R>(
        &mut self,
        future: impl std::future::Future<Output = R>,
        data: &mut Data,
        mut cb: impl FnMut(&mut Data),
    ) -> crate::Result<Option<R>> {
        use std::task::{Context, Poll, Wake, Waker};

        struct LoopWaker(LoopSignal);

        impl Wake for LoopWaker {
            fn wake(self: Arc<Self>) {
                self.wake_by_ref()
            }

            fn wake_by_ref(self: &Arc<Self>) {
                self.0.signal.future_ready.store(true, Ordering::Release);
                let _ = self.0.notifier.notify();
            }
        }

        let mut future = std::pin::pin!(future);
        let waker = Waker::from(Arc::new(LoopWaker(self.get_signal())));
        let mut context = Context::from_waker(&waker);

        self.signals.stop.store(false, Ordering::Release);
        self.signals.future_ready.store(true, Ordering::Release);
        while !self.signals.stop.load(Ordering::Acquire) {
            if self.signals.future_ready.swap(false, Ordering::AcqRel) {
                if let Poll::Ready(result) = future.as_mut().poll(&mut context) {
                    return Ok(Some(result));
                }
            }
            self.dispatch_events(None, data)?;
            self.dispatch_idles(data);
            cb(data);
        }
        Ok(None)
    }
}

impl<'l, Data> LoopHandle<'l, Data> {
    /// Routes one event to its source and applies the resulting [`PostAction`].
    fn process_one(&self, event: PollEvent, data: &mut Data) -> crate::Result<()> {
        let inner = &*self.inner;
        let reg_token = event.token.inner.forget_sub_id();
        let Some(disp) = inner.sources.borrow().get(reg_token).ok().cloned() else {
            // A stale event for a source removed earlier in this dispatch: never delivered.
            tracing::trace!(
                source = reg_token.id(),
                "an event for a removed source: dropped"
            );
            return Ok(());
        };
        tracing::trace!(source = reg_token.id(), "dispatching events for a source");
        let mut action = disp.process_events(event.readiness, event.token, data)?;
        let pending = inner.pending_action.replace(PostAction::Continue);
        if action == PostAction::Continue {
            action = pending;
        }
        match action {
            PostAction::Continue => {}
            PostAction::Reregister => {
                tracing::trace!(source = reg_token.id(), "post-action reregister");
                disp.reregister(
                    &mut inner.poll.borrow_mut(),
                    &mut inner.lifecycle.borrow_mut(),
                    &mut TokenFactory::new(reg_token),
                )?;
            }
            PostAction::Disable => {
                tracing::trace!(source = reg_token.id(), "post-action disable");
                disp.unregister(
                    &mut inner.poll.borrow_mut(),
                    &mut inner.lifecycle.borrow_mut(),
                    RegistrationToken::new(reg_token),
                )?;
            }
            PostAction::Remove => {
                tracing::trace!(source = reg_token.id(), "post-action remove");
                inner.sources.borrow_mut().remove(reg_token);
            }
        }
        // Removed (by its action, or by `remove` from inside its own callback, which could not
        // unregister it then): unregister now. The last `Rc` drops here, with the source.
        let removed = inner.sources.borrow().get(reg_token).is_err();
        if removed {
            tracing::trace!(source = reg_token.id(), "unregistering a removed source");
            if let Err(e) = disp.unregister(
                &mut inner.poll.borrow_mut(),
                &mut inner.lifecycle.borrow_mut(),
                RegistrationToken::new(reg_token),
            ) {
                tracing::warn!("failed to unregister a removed source: {e}");
            }
        }
        Ok(())
    }
}

impl<Data> AsRawFd for EventLoop<'_, Data> {
    /// The epoll/kqueue fd: readable when the loop has events, so loops can nest.
    fn as_raw_fd(&self) -> RawFd {
        self.poll_fd
    }
}

impl<Data> AsFd for EventLoop<'_, Data> {
    /// The epoll/kqueue fd: readable when the loop has events, so loops can nest.
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd is owned by the `Poll` inside `self.handle.inner`, which this loop keeps
        // alive for at least as long as the returned borrow of `self`.
        unsafe { BorrowedFd::borrow_raw(self.poll_fd) }
    }
}

/// The events of one dispatch that belong to one source, given to
/// [`EventSource::before_handle_events`].
#[derive(Clone, Debug)]
pub struct EventIterator<'a> {
    inner: slice::Iter<'a, PollEvent>,
    registration_token: RegistrationToken,
}

impl Iterator for EventIterator<'_> {
    type Item = (Readiness, Token);

    fn next(&mut self) -> Option<Self::Item> {
        self.inner
            .by_ref()
            .find(|ev| ev.token.inner.same_source_as(self.registration_token.inner))
            .map(|ev| (ev.readiness, ev.token))
    }
}

/// Stops or wakes an [`EventLoop`] from any thread.
#[derive(Clone)]
pub struct LoopSignal {
    signal: Arc<Signals>,
    notifier: Notifier,
}

impl Debug for LoopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoopSignal { ... }")
    }
}

impl LoopSignal {
    /// Makes [`EventLoop::run`] (or `block_on`) return after the current dispatch. Call
    /// [`wakeup`](Self::wakeup) too if the loop may be blocked waiting.
    pub fn stop(&self) {
        self.signal.stop.store(true, Ordering::Release);
    }

    /// Wakes the loop if it is blocked in a dispatch, or makes its next dispatch return at once
    /// (the wake-up is sticky).
    pub fn wakeup(&self) {
        let _ = self.notifier.notify();
    }
}
