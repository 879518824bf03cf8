//! Ping to the event loop: an event source that produces `()` whenever [`Ping::ping`] is called.
//!
//! Pings coalesce: however many times the source is pinged between two dispatches, its callback
//! runs once. Pinging is cheap: a burst of pings costs one `write` (an atomic "pending" flag
//! tells the later pings that the loop is already being woken). [`Ping`] is `Clone + Send +
//! Sync`; when the last one is dropped the source delivers no more events and asks to be
//! removed from the loop.
//!
//! ```
//! use callop::{EventLoop, ping::make_ping};
//!
//! let mut event_loop: EventLoop<u32> = EventLoop::try_new().unwrap();
//! let (ping, source) = make_ping().unwrap();
//! event_loop
//!     .handle()
//!     .insert_source(source, |(), &mut (), count| *count += 1)
//!     .unwrap();
//!
//! let remote = ping.clone();
//! std::thread::spawn(move || {
//!     remote.ping();
//!     remote.ping();
//! })
//! .join()
//! .unwrap();
//!
//! let mut count = 0;
//! event_loop.dispatch(None, &mut count).unwrap();
//! assert_eq!(count, 1); // both pings, one callback
//! ```
//!
//! Linux and Android use an eventfd; the other platforms a non-blocking pipe.

use std::{
    fmt, io,
    os::fd::{AsFd, BorrowedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use crate::{EventSource, Interest, Mode, Poll, PostAction, Readiness, Token, TokenFactory};

#[cfg(any(target_os = "linux", target_os = "android"))]
mod eventfd;
#[cfg(any(target_os = "linux", target_os = "android"))]
use eventfd::WakeFd;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod pipe;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use pipe::WakeFd;

/// What one drain of the wake-up fd found.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Drained {
    /// At least one ping was written.
    pub(crate) pinged: bool,
    /// The close marker was written (the last [`Ping`] was dropped).
    pub(crate) closed: bool,
}

/// The wake-up machinery shared by a source and its senders: a file descriptor the loop watches
/// (level-triggered, readable while a wake-up is pending) and the "pending" flag that makes a
/// burst of wake-ups cost one write.
///
/// The protocol, for a receiver that wants to miss nothing:
/// 1. senders publish their data, then call [`notify`](Self::notify): `pending.swap(true)`, and
///    write the fd only if the flag was clear;
/// 2. the receiver, woken by the fd, calls [`drain`](Self::drain) (reads the fd) **then**
///    [`clear`](Self::clear) (`pending.swap(false)`), **then** looks at the data.
///
/// Why drain before clear: if the flag were cleared first, a sender could set it again and write
/// the fd in between, and the drain would swallow that write while the flag stays set; every
/// later `notify` would then see the flag set and skip its write, and the receiver would never be
/// woken again. Draining first, a sender racing with us either finds the flag still set (no
/// write; but it published its data before the swap, and the receiver's `clear` is an
/// acquire-release swap that synchronizes with it, so the receiver sees the data when it looks
/// after `clear`), or finds it clear after our `clear` and writes the fd (the next dispatch
/// wakes us). Either way nothing is lost, and the fd is left drained: a closed or idle source
/// never keeps the loop spinning.
#[derive(Debug)]
pub(crate) struct Notify {
    pending: AtomicBool,
    fd: WakeFd,
}

impl Notify {
    pub(crate) fn new() -> io::Result<Notify> {
        Ok(Notify {
            pending: AtomicBool::new(false),
            fd: WakeFd::new()?,
        })
    }

    /// Wakes the receiver; only the first call since the receiver's last [`clear`](Self::clear)
    /// touches the fd.
    pub(crate) fn notify(&self) {
        if self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = self.fd.ping() {
            tracing::warn!("failed to write a ping: {e}");
        }
    }

    /// Writes the close marker (always: it is written once, by the last sender).
    fn close(&self) {
        if let Err(e) = self.fd.close() {
            tracing::warn!("failed to write the close marker of a ping: {e}");
        }
    }

    /// Reads everything pending on the fd.
    pub(crate) fn drain(&self) -> io::Result<Drained> {
        self.fd.drain()
    }

    /// Clears the pending flag; call it after [`drain`](Self::drain), before looking at the data.
    pub(crate) fn clear(&self) {
        self.pending.swap(false, Ordering::AcqRel);
    }
}

impl AsFd for Notify {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The registration of a [`Notify`] fd with a loop: level-triggered readability under one token.
#[derive(Debug, Default)]
pub(crate) struct NotifyRegistration {
    token: Option<Token>,
}

impl NotifyRegistration {
    pub(crate) fn register(
        &mut self,
        notify: &Notify,
        poll: &mut Poll,
        token_factory: &mut TokenFactory,
    ) -> crate::Result<()> {
        let token = token_factory.token();
        // SAFETY: the fd belongs to `notify`, which the source owns (through an `Arc`) and does
        // not drop before it is unregistered: the loop unregisters a source before dropping it,
        // and a source dropped while registered closes the fd, which removes it from the poller.
        unsafe { poll.register(notify, Interest::READ, Mode::Level, token)? };
        self.token = Some(token);
        Ok(())
    }

    pub(crate) fn reregister(
        &mut self,
        notify: &Notify,
        poll: &mut Poll,
        token_factory: &mut TokenFactory,
    ) -> crate::Result<()> {
        let token = token_factory.token();
        poll.reregister(notify, Interest::READ, Mode::Level, token)?;
        self.token = Some(token);
        Ok(())
    }

    pub(crate) fn unregister(&mut self, notify: &Notify, poll: &mut Poll) -> crate::Result<()> {
        if self.token.take().is_some() {
            poll.unregister(notify)?;
        }
        Ok(())
    }

    /// Whether an event with `token` is ours.
    pub(crate) fn is(&self, token: Token) -> bool {
        self.token == Some(token)
    }
}

/// Creates a ping event source: a [`Ping`] handle, clonable and sendable across threads, and
/// the [`PingSource`] to insert in an event loop.
pub fn make_ping() -> io::Result<(Ping, PingSource)> {
    let notify = Arc::new(Notify::new()?);
    let ping = Ping {
        guard: Arc::new(CloseOnDrop(notify.clone())),
    };
    let source = PingSource {
        notify,
        registration: NotifyRegistration::default(),
    };
    Ok((ping, source))
}

/// Writes the close marker when the last [`Ping`] goes away.
#[derive(Debug)]
struct CloseOnDrop(Arc<Notify>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The sending side of a ping: call [`ping`](Self::ping) to wake the [`PingSource`].
///
/// Clone it freely and send it to other threads; once every clone is dropped, the source
/// removes itself from the loop.
#[derive(Debug, Clone)]
pub struct Ping {
    guard: Arc<CloseOnDrop>,
}

impl Ping {
    /// Sends a ping: the source's callback runs (once, however many pings) on the next dispatch.
    ///
    /// Only the first ping since the source last ran makes a syscall.
    pub fn ping(&self) {
        self.guard.0.notify();
    }
}

/// The ping event source; insert it in an event loop to receive the pings of its [`Ping`]s.
///
/// Event, metadata and callback return are all `()`. When every [`Ping`] has been dropped, the
/// source delivers any last ping, then returns [`PostAction::Remove`]; its fd is drained, so
/// even a composite source that ignores the `Remove` is not woken again.
#[derive(Debug)]
pub struct PingSource {
    notify: Arc<Notify>,
    registration: NotifyRegistration,
}

impl EventSource for PingSource {
    type Event = ();
    type Metadata = ();
    type Ret = ();
    type Error = PingError;

    fn process_events<C>(
        &mut self,
        _readiness: Readiness,
        token: Token,
        mut callback: C,
    ) -> Result<PostAction, Self::Error>
    where
        C: FnMut(Self::Event, &mut Self::Metadata) -> Self::Ret,
    {
        if !self.registration.is(token) {
            return Ok(PostAction::Continue);
        }
        // Drain first, then clear: see `Notify` for why this order loses no ping.
        let drained = self.notify.drain().map_err(|e| PingError(e.into()))?;
        self.notify.clear();
        if drained.pinged {
            callback((), &mut ());
        }
        Ok(if drained.closed {
            PostAction::Remove
        } else {
            PostAction::Continue
        })
    }

    crate::macros::forward_registration!(registration, notify);
}

/// An error arising from processing events for a ping (an I/O error on its fd).
#[derive(Debug)]
pub struct PingError(pub(crate) Box<dyn std::error::Error + Sync + Send>);

impl fmt::Display for PingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for PingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::loop_tests::{assert_counts_per_tick, tick};
    use crate::{Dispatcher, EventLoop, RegistrationToken, transient::TransientSource};

    fn assert_send_sync<T: Send + Sync>() {}

    /// A ping whose source, inserted in `event_loop`, counts its callbacks.
    fn counting_ping(event_loop: &EventLoop<'_, u32>) -> (Ping, RegistrationToken) {
        let (ping, source) = make_ping().unwrap();
        let token = event_loop
            .handle()
            .insert_source(source, |(), &mut (), n| *n += 1)
            .unwrap();
        (ping, token)
    }

    /// A ping whose source, in a `TransientSource` registered in `event_loop`, sets the flag
    /// when it fires.
    fn flagging_transient_ping<'l>(
        event_loop: &EventLoop<'l, bool>,
    ) -> (
        Ping,
        Dispatcher<'l, TransientSource<PingSource>, bool>,
        RegistrationToken,
    ) {
        let (ping, source) = make_ping().unwrap();
        let dispatcher = Dispatcher::new(TransientSource::from(source), |(), &mut (), d| *d = true);
        let token = event_loop
            .handle()
            .register_dispatcher(dispatcher.clone())
            .unwrap();
        (ping, dispatcher, token)
    }

    /// Removes the transient ping's dispatcher: the closed ping left the wrapper empty.
    fn assert_removed_and_empty<'l>(
        event_loop: &EventLoop<'l, bool>,
        dispatcher: Dispatcher<'l, TransientSource<PingSource>, bool>,
        token: RegistrationToken,
    ) {
        event_loop.handle().remove(token);
        assert!(dispatcher.into_source_inner().is_none());
    }

    #[test]
    fn ping_is_send_sync_and_source_is_send() {
        assert_send_sync::<Ping>();
        fn assert_send<T: Send>() {}
        assert_send::<PingSource>();
    }

    #[test]
    fn ping_fires_once_then_is_drained() {
        let mut event_loop = EventLoop::<u32>::try_new().unwrap();
        let (ping, _) = counting_ping(&event_loop);
        ping.ping();
        assert_counts_per_tick(&mut event_loop, &[1, 1]);
    }

    #[test]
    fn many_pings_coalesce_into_one_callback() {
        let mut event_loop = EventLoop::<u32>::try_new().unwrap();
        let (ping, _) = counting_ping(&event_loop);
        for _ in 0..1000 {
            ping.ping();
        }
        let mut n = 0;
        tick(&mut event_loop, &mut n);
        tick(&mut event_loop, &mut n);
        assert_eq!(n, 1);
    }

    #[test]
    fn ping_during_callback_fires_on_next_dispatch() {
        let mut event_loop = EventLoop::<u32>::try_new().unwrap();
        let (ping, source) = make_ping().unwrap();
        let again = ping.clone();
        event_loop
            .handle()
            .insert_source(source, move |(), &mut (), n| {
                *n += 1;
                if *n == 1 {
                    again.ping();
                }
            })
            .unwrap();
        ping.ping();
        assert_counts_per_tick(&mut event_loop, &[1, 2, 2]);
    }

    #[test]
    fn ping_from_other_thread_wakes_blocking_dispatch() {
        let mut event_loop = EventLoop::<bool>::try_new().unwrap();
        let (ping, source) = make_ping().unwrap();
        event_loop
            .handle()
            .insert_source(source, |(), &mut (), fired| *fired = true)
            .unwrap();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            ping.ping();
            ping
        });
        let mut fired = false;
        while !fired {
            event_loop.dispatch(None, &mut fired).unwrap();
        }
        drop(thread.join().unwrap());
    }

    #[test]
    fn ping_closed() {
        let mut event_loop = EventLoop::<bool>::try_new().unwrap();
        let (_, source) = make_ping().unwrap();
        event_loop
            .handle()
            .insert_source(source, |(), &mut (), dispatched| *dispatched = true)
            .unwrap();
        let mut dispatched = false;
        // The close wakes the loop once, without calling the callback, and removes the source.
        tick(&mut event_loop, &mut dispatched);
        assert!(!dispatched);
        assert_eq!(event_loop.handle().inner.sources.borrow().len(), 0);
        // Nothing wakes the loop any more: it sleeps the whole timeout (never early).
        let start = std::time::Instant::now();
        event_loop
            .dispatch(Duration::from_millis(50), &mut dispatched)
            .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert!(!dispatched);
    }

    #[test]
    fn last_ping_is_delivered_before_close() {
        let mut event_loop = EventLoop::<u32>::try_new().unwrap();
        let (ping, _) = counting_ping(&event_loop);
        ping.ping();
        drop(ping);
        let mut n = 0;
        tick(&mut event_loop, &mut n);
        assert_eq!(n, 1);
        assert_eq!(event_loop.handle().inner.sources.borrow().len(), 0);
    }

    /// A composite source that ignores its child's `Remove`: the closed ping must not spin it.
    struct Ignoring(PingSource, u32);

    impl EventSource for Ignoring {
        type Event = ();
        type Metadata = ();
        type Ret = ();
        type Error = PingError;

        fn process_events<C>(
            &mut self,
            readiness: Readiness,
            token: Token,
            _: C,
        ) -> Result<PostAction, PingError>
        where
            C: FnMut((), &mut ()),
        {
            self.1 += 1;
            self.0.process_events(readiness, token, |_, _| {})?;
            Ok(PostAction::Continue)
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

    #[test]
    fn closed_ping_never_spins_the_loop() {
        let mut event_loop = EventLoop::<()>::try_new().unwrap();
        let (ping, source) = make_ping().unwrap();
        let dispatcher = Dispatcher::new(Ignoring(source, 0), |_, _, _| {});
        event_loop
            .handle()
            .register_dispatcher(dispatcher.clone())
            .unwrap();
        drop(ping);
        for _ in 0..5 {
            event_loop
                .dispatch(Duration::from_millis(5), &mut ())
                .unwrap();
        }
        assert_eq!(dispatcher.as_source_ref().1, 1);
    }

    #[test]
    fn ping_removed() {
        let mut dispatched = false;
        let mut event_loop = EventLoop::<bool>::try_new().unwrap();
        let (sender, dispatcher, token) = flagging_transient_ping(&event_loop);
        assert!(!dispatcher.as_source_ref().is_none());
        drop(sender);
        tick(&mut event_loop, &mut dispatched);
        assert!(!dispatched);
        assert_removed_and_empty(&event_loop, dispatcher, token);
    }

    #[test]
    fn ping_fired_and_removed() {
        let mut dispatched = false;
        let mut event_loop = EventLoop::<bool>::try_new().unwrap();
        let (sender, dispatcher, token) = flagging_transient_ping(&event_loop);
        sender.ping();
        drop(sender);
        tick(&mut event_loop, &mut dispatched);
        assert!(dispatched);
        assert_removed_and_empty(&event_loop, dispatcher, token);
    }

    #[test]
    fn ping_multiple_senders() {
        let mut dispatched = false;
        let mut event_loop = EventLoop::<bool>::try_new().unwrap();
        let (sender0, dispatcher, token) = flagging_transient_ping(&event_loop);
        let sender1 = sender0.clone();
        let sender2 = sender1.clone();

        sender0.ping();
        drop(sender0);
        tick(&mut event_loop, &mut dispatched);
        assert!(dispatched);

        dispatched = false;
        sender1.ping();
        tick(&mut event_loop, &mut dispatched);
        assert!(dispatched);

        dispatched = false;
        drop(sender1);
        drop(sender2);
        tick(&mut event_loop, &mut dispatched);
        assert!(!dispatched);
        assert_removed_and_empty(&event_loop, dispatcher, token);
    }

    #[test]
    fn ping_after_source_dropped_is_harmless() {
        let (ping, source) = make_ping().unwrap();
        drop(source);
        for _ in 0..10_000 {
            ping.ping();
        }
    }

    #[test]
    fn disabled_ping_fires_when_enabled_again() {
        let mut event_loop = EventLoop::<u32>::try_new().unwrap();
        let (ping, token) = counting_ping(&event_loop);
        event_loop.handle().disable(&token).unwrap();
        ping.ping();
        let mut n = 0;
        tick(&mut event_loop, &mut n);
        assert_eq!(n, 0);
        event_loop.handle().enable(&token).unwrap();
        tick(&mut event_loop, &mut n);
        assert_eq!(n, 1);
    }

    #[test]
    fn concurrent_pings_are_never_lost() {
        // Each round: a thread pings while the loop may be in the middle of draining. After the
        // thread is done, one more dispatch must observe its ping.
        let mut event_loop = EventLoop::<u64>::try_new().unwrap();
        let (ping, source) = make_ping().unwrap();
        let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen_cb = seen.clone();
        let published = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let published_cb = published.clone();
        event_loop
            .handle()
            .insert_source(source, move |(), &mut (), last| {
                *last = published_cb.load(Ordering::Acquire);
                seen_cb.store(*last, Ordering::Release);
            })
            .unwrap();
        let thread = std::thread::spawn(move || {
            for i in 1..=2000u64 {
                published.store(i, Ordering::Release);
                ping.ping();
                while seen.load(Ordering::Acquire) < i {
                    std::thread::yield_now();
                }
            }
        });
        let mut last = 0;
        while last < 2000 {
            let (before, start) = (last, std::time::Instant::now());
            event_loop
                .dispatch(Duration::from_secs(10), &mut last)
                .unwrap();
            // A lost ping would leave the loop asleep for the whole timeout, with no progress.
            assert!(
                last > before || start.elapsed() < Duration::from_secs(10),
                "a ping was lost after {before}"
            );
        }
        thread.join().unwrap();
    }
}
