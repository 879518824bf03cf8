//! An MPSC channel whose receiving end is an event source: [`channel`] and [`sync_channel`].
//!
//! The [`Sender`] (or [`SyncSender`]) can be cloned and sent to other threads (if `T: Send`);
//! the [`Channel`] is inserted in an [`EventLoop`](crate::EventLoop) and calls its callback
//! with [`Event::Msg`] for each message, in order, then once with [`Event::Closed`] when every
//! sender has been dropped and the queue is empty (and the source removes itself).
//!
//! ```
//! use callop::{EventLoop, channel::{channel, Event}};
//!
//! let mut event_loop: EventLoop<Vec<u32>> = EventLoop::try_new().unwrap();
//! let (sender, receiver) = channel();
//! event_loop
//!     .handle()
//!     .insert_source(receiver, |event, &mut (), received| match event {
//!         Event::Msg(n) => received.push(n),
//!         Event::Closed => received.push(u32::MAX),
//!     })
//!     .unwrap();
//!
//! std::thread::spawn(move || {
//!     for n in 0..3 {
//!         sender.send(n).unwrap();
//!     }
//! })
//! .join()
//! .unwrap();
//!
//! let mut received = Vec::new();
//! while received.last() != Some(&u32::MAX) {
//!     event_loop.dispatch(None, &mut received).unwrap();
//! }
//! assert_eq!(received, [0, 1, 2, u32::MAX]);
//! ```
//!
//! # Cost and fairness
//!
//! The queue is [`std::sync::mpsc`]. Senders wake the loop the way [`Ping`](crate::ping::Ping)
//! does: a message costs a syscall only when the receiver is not already notified, so a burst
//! of messages costs one `write` (calloop writes the eventfd on every send). A flood is
//! drained in bounded batches: one `process_events` delivers at most [`MAX_BATCH`] messages
//! (at most `bound + 1` for a [`sync_channel`]), then leaves the wake-up armed so the rest
//! comes on the next dispatch, after the other ready sources have had their turn.

use std::{
    cmp, fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
};

use crate::{
    EventSource, PostAction, Readiness, Token,
    ping::PingError,
    sources::ping::{Notify, NotifyRegistration},
};

/// The most messages one dispatch delivers from one channel (the same as calloop).
pub const MAX_BATCH: usize = 1024;

/// An event from a [`Channel`].
#[derive(Debug)]
pub enum Event<T> {
    /// A message.
    Msg(T),
    /// Every sender has been dropped and every message delivered. Delivered once; then the
    /// source removes itself.
    Closed,
}

/// Wakes the receiver when the last sender (of one kind) is dropped, so it sees the
/// disconnection. It must be dropped *after* the `mpsc` sender it goes with (it is declared
/// after it in the sender structs, so it is).
#[derive(Debug)]
struct NotifyOnDrop(Arc<Notify>);

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        self.0.notify();
    }
}

/// The sending half of a [`channel`]. Cheap to clone; `Send + Sync` if `T: Send`.
#[derive(Debug)]
pub struct Sender<T> {
    sender: mpsc::Sender<T>,
    // Shared by all clones: the receiver is woken once, when the last sender is gone.
    notify: Arc<NotifyOnDrop>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        Sender {
            sender: self.sender.clone(),
            notify: self.notify.clone(),
        }
    }
}

impl<T> Sender<T> {
    /// Sends a message; it is delivered to the callback on a following dispatch.
    ///
    /// Fails (handing the message back) if the [`Channel`] has been dropped.
    pub fn send(&self, t: T) -> Result<(), mpsc::SendError<T>> {
        self.sender.send(t)?;
        self.notify.0.notify();
        Ok(())
    }
}

/// The sending half of a [`sync_channel`]: [`send`](Self::send) blocks while the channel is
/// full. Cheap to clone; `Send + Sync` if `T: Send`.
#[derive(Debug)]
pub struct SyncSender<T> {
    sender: mpsc::SyncSender<T>,
    notify: Arc<NotifyOnDrop>,
    /// How many senders are in (or entering) a blocking `send`; shared with the [`Channel`].
    blocked: Arc<AtomicUsize>,
}

/// Counts one sender in the blocking part of [`SyncSender::send`], for as long as it lives.
struct Blocked<'a>(&'a AtomicUsize);

impl<'a> Blocked<'a> {
    fn enter(count: &'a AtomicUsize) -> Blocked<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Blocked(count)
    }
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<T> Clone for SyncSender<T> {
    fn clone(&self) -> SyncSender<T> {
        SyncSender {
            sender: self.sender.clone(),
            notify: self.notify.clone(),
            blocked: self.blocked.clone(),
        }
    }
}

impl<T> SyncSender<T> {
    /// Sends a message, waiting for room if the channel is full.
    ///
    /// Fails (handing the message back) if the [`Channel`] has been dropped. Do not call it
    /// from the thread running the loop while the channel may be full: it would wait forever.
    pub fn send(&self, t: T) -> Result<(), mpsc::SendError<T>> {
        match self.try_send(t) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Full(t)) => {
                // Wait for the receiver to make room (or, with `bound == 0`, to take the message
                // from our hands). It can only do so once we are waiting, which it cannot
                // observe: so while we are here it keeps its wake-up armed (see
                // `Channel::process_events`), instead of going to sleep on a queue that looked
                // empty just before we started waiting.
                let blocked = Blocked::enter(&self.blocked);
                self.notify.0.notify();
                let result = self.sender.send(t);
                drop(blocked);
                result?;
                self.notify.0.notify();
                Ok(())
            }
            Err(mpsc::TrySendError::Disconnected(t)) => Err(mpsc::SendError(t)),
        }
    }

    /// Sends a message if there is room, without blocking.
    ///
    /// On [`Full`](mpsc::TrySendError::Full) the receiver is woken anyway, to make room.
    pub fn try_send(&self, t: T) -> Result<(), mpsc::TrySendError<T>> {
        let result = self.sender.try_send(t);
        if let Ok(()) | Err(mpsc::TrySendError::Full(_)) = result {
            self.notify.0.notify();
        }
        result
    }
}

/// The receiving half of a [`channel`] or [`sync_channel`]: an event source.
///
/// Outside a loop it can also be read directly with [`recv`](Self::recv) and
/// [`try_recv`](Self::try_recv). It is `Send` if `T: Send`.
#[derive(Debug)]
pub struct Channel<T> {
    receiver: mpsc::Receiver<T>,
    notify: Arc<Notify>,
    registration: NotifyRegistration,
    /// Messages per `process_events`.
    batch: usize,
    /// The blocked-sender count of a [`sync_channel`] (always 0 for a [`channel`]).
    blocked: Arc<AtomicUsize>,
    /// `Closed` was delivered.
    closed: bool,
}

impl<T> Channel<T> {
    /// Waits for a message (blocking the thread, not dispatching anything).
    pub fn recv(&self) -> Result<T, mpsc::RecvError> {
        self.receiver.recv()
    }

    /// Takes a message if one is waiting.
    pub fn try_recv(&self) -> Result<T, mpsc::TryRecvError> {
        self.receiver.try_recv()
    }
}

fn new_notify() -> Arc<Notify> {
    // Creating an eventfd or pipe only fails when the process is out of file descriptors;
    // calloop panics there too.
    Arc::new(Notify::new().expect("failed to create the wake-up fd of a channel"))
}

/// Creates an unbounded channel.
///
/// # Panics
/// When the process is out of file descriptors (as calloop).
pub fn channel<T>() -> (Sender<T>, Channel<T>) {
    let (sender, receiver) = mpsc::channel();
    let notify = new_notify();
    (
        Sender {
            sender,
            notify: Arc::new(NotifyOnDrop(notify.clone())),
        },
        Channel {
            receiver,
            notify,
            registration: NotifyRegistration::default(),
            batch: MAX_BATCH,
            blocked: Arc::new(AtomicUsize::new(0)),
            closed: false,
        },
    )
}

/// Creates a channel holding at most `bound` messages; [`SyncSender::send`] blocks while it is
/// full (with `bound == 0`, until the loop receives the message).
///
/// # Panics
/// When the process is out of file descriptors (as calloop).
pub fn sync_channel<T>(bound: usize) -> (SyncSender<T>, Channel<T>) {
    let (sender, receiver) = mpsc::sync_channel(bound);
    let notify = new_notify();
    let blocked = Arc::new(AtomicUsize::new(0));
    (
        SyncSender {
            sender,
            notify: Arc::new(NotifyOnDrop(notify.clone())),
            blocked: blocked.clone(),
        },
        Channel {
            receiver,
            notify,
            registration: NotifyRegistration::default(),
            batch: cmp::min(bound.saturating_add(1), MAX_BATCH),
            blocked,
            closed: false,
        },
    )
}

impl<T> EventSource for Channel<T> {
    type Event = Event<T>;
    type Metadata = ();
    type Ret = ();
    type Error = ChannelError;

    fn process_events<C>(
        &mut self,
        _readiness: Readiness,
        token: Token,
        mut callback: C,
    ) -> Result<PostAction, ChannelError>
    where
        C: FnMut(Event<T>, &mut ()),
    {
        if !self.registration.is(token) {
            return Ok(PostAction::Continue);
        }
        if self.closed {
            // Only reachable if a composite ignored our `Remove`: keep the fd quiet.
            drain(&self.notify)?;
            return Ok(PostAction::Remove);
        }
        // While the queue has messages, the senders' wake-up stays pending (fd readable, flag
        // set) and costs them nothing. Only when we find the queue empty do we drain the fd and
        // clear the flag, and then look once more: a message sent before the clear found the
        // flag set and did not write, so we must pick it up now (see `Notify`).
        let mut cleared = false;
        let mut delivered = 0;
        while delivered < self.batch {
            match self.receiver.try_recv() {
                Ok(msg) => {
                    delivered += 1;
                    callback(Event::Msg(msg), &mut ());
                }
                Err(mpsc::TryRecvError::Empty) if !cleared => {
                    drain(&self.notify)?;
                    self.notify.clear();
                    cleared = true;
                }
                Err(mpsc::TryRecvError::Empty) => {
                    // A sender entering a blocking `send` may not be waiting yet: its message
                    // can only be taken once it is. Come back on the next dispatch rather than
                    // sleep (the window is short: it ends when the sender waits).
                    if self.blocked.load(Ordering::SeqCst) > 0 {
                        self.notify.notify();
                    }
                    return Ok(PostAction::Continue);
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    if !cleared {
                        drain(&self.notify)?;
                    }
                    self.closed = true;
                    callback(Event::Closed, &mut ());
                    return Ok(PostAction::Remove);
                }
            }
        }
        // Batch full, more may be waiting: make sure the next dispatch comes back. If we never
        // cleared the flag, the fd is still readable and this costs nothing.
        if cleared {
            self.notify.notify();
        }
        Ok(PostAction::Continue)
    }

    crate::macros::forward_registration!(registration, notify);
}

fn drain(notify: &Notify) -> Result<(), ChannelError> {
    notify
        .drain()
        .map(|_| ())
        .map_err(|e| ChannelError(PingError(e.into())))
}

/// An error arising from processing the events of a [`Channel`] (an I/O error on its wake-up
/// fd).
#[derive(Debug)]
pub struct ChannelError(PingError);

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for ChannelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{EventLoop, ping::make_ping};

    #[derive(Default, Debug, PartialEq)]
    struct Got {
        msgs: Vec<u32>,
        closed: u32,
    }

    fn record(event: Event<u32>, _: &mut (), got: &mut Got) {
        match event {
            Event::Msg(n) => got.msgs.push(n),
            Event::Closed => got.closed += 1,
        }
    }

    #[test]
    fn channel_delivers_then_closes() {
        let mut event_loop = EventLoop::<Got>::try_new().unwrap();
        let (tx, rx) = channel::<u32>();
        event_loop.handle().insert_source(rx, record).unwrap();
        let mut got = Got::default();
        event_loop.dispatch(Duration::ZERO, &mut got).unwrap();
        assert_eq!(got, Got::default());

        tx.send(1).unwrap();
        tx.send(2).unwrap();
        event_loop.dispatch(Duration::ZERO, &mut got).unwrap();
        assert_eq!(got.msgs, [1, 2]);
        assert_eq!(got.closed, 0);

        drop(tx);
        event_loop.dispatch(Duration::ZERO, &mut got).unwrap();
        assert_eq!(got.closed, 1);
        assert_eq!(event_loop.handle().inner.sources.borrow().len(), 0);
    }

    #[test]
    fn closed_comes_after_every_message_and_only_once() {
        let mut event_loop = EventLoop::<Got>::try_new().unwrap();
        let (tx, rx) = channel::<u32>();
        event_loop.handle().insert_source(rx, record).unwrap();
        let tx2 = tx.clone();
        for n in 0..3000 {
            tx.send(n).unwrap();
        }
        drop(tx);
        drop(tx2);
        let mut got = Got::default();
        for _ in 0..5 {
            event_loop.dispatch(Duration::ZERO, &mut got).unwrap();
        }
        assert_eq!(got.msgs, (0..3000).collect::<Vec<_>>());
        assert_eq!(got.closed, 1);
    }

    #[test]
    fn sync_channel_fills_and_drains() {
        let mut event_loop = EventLoop::<Got>::try_new().unwrap();
        let (tx, rx) = sync_channel::<u32>(2);
        event_loop.handle().insert_source(rx, record).unwrap();
        tx.send(0).unwrap();
        tx.send(1).unwrap();
        assert!(matches!(tx.try_send(2), Err(mpsc::TrySendError::Full(2))));
        let mut got = Got::default();
        event_loop.dispatch(Duration::ZERO, &mut got).unwrap();
        assert_eq!(got.msgs, [0, 1]);
        tx.send(3).unwrap();
        drop(tx);
        event_loop.dispatch(Duration::ZERO, &mut got).unwrap();
        assert_eq!(got.msgs, [0, 1, 3]);
        assert_eq!(got.closed, 1);
    }

    #[test]
    fn blocked_sync_sender_is_released_by_dispatch() {
        let mut event_loop = EventLoop::<Got>::try_new().unwrap();
        let (tx, rx) = sync_channel::<u32>(0);
        event_loop.handle().insert_source(rx, record).unwrap();
        let thread = std::thread::spawn(move || {
            for n in 0..500 {
                tx.send(n).unwrap();
            }
        });
        let mut got = Got::default();
        while got.closed == 0 {
            event_loop
                .dispatch(Duration::from_secs(10), &mut got)
                .unwrap();
        }
        thread.join().unwrap();
        assert_eq!(got.msgs, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn flood_is_drained_in_bounded_batches_without_starving_others() {
        let mut event_loop = EventLoop::<(Got, u32)>::try_new().unwrap();
        let (tx, rx) = channel::<u32>();
        event_loop
            .handle()
            .insert_source(rx, |event, meta, (got, _)| record(event, meta, got))
            .unwrap();
        let (ping, ping_source) = make_ping().unwrap();
        event_loop
            .handle()
            .insert_source(ping_source, |(), &mut (), (_, pings)| *pings += 1)
            .unwrap();
        for n in 0..(MAX_BATCH as u32 * 2 + 1) {
            tx.send(n).unwrap();
        }
        ping.ping();
        let mut state = (Got::default(), 0);
        event_loop.dispatch(Duration::ZERO, &mut state).unwrap();
        assert_eq!(state.0.msgs.len(), MAX_BATCH);
        assert_eq!(
            state.1, 1,
            "the ping is served in the same dispatch as the flood"
        );
        event_loop.dispatch(Duration::ZERO, &mut state).unwrap();
        assert_eq!(state.0.msgs.len(), MAX_BATCH * 2);
        event_loop.dispatch(Duration::ZERO, &mut state).unwrap();
        assert_eq!(state.0.msgs.len(), MAX_BATCH * 2 + 1);
        // Drained: no more wake-ups.
        event_loop.dispatch(Duration::ZERO, &mut state).unwrap();
        assert_eq!(
            state.0.msgs,
            (0..(MAX_BATCH as u32 * 2 + 1)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn sync_channel_batch_is_bound_plus_one() {
        let mut event_loop = EventLoop::<Got>::try_new().unwrap();
        let (tx, rx) = sync_channel::<u32>(4);
        event_loop.handle().insert_source(rx, record).unwrap();
        for n in 0..4 {
            tx.send(n).unwrap();
        }
        let mut got = Got::default();
        event_loop.dispatch(Duration::ZERO, &mut got).unwrap();
        assert_eq!(got.msgs, [0, 1, 2, 3]);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_burst_of_sends_writes_the_wakeup_fd_once() {
        let (tx, rx) = channel::<u32>();
        for n in 0..100 {
            tx.send(n).unwrap();
        }
        // The eventfd counter holds the sum of all writes: one ping is 2.
        use std::os::fd::AsFd;
        let mut buf = [0u8; 8];
        rustix::io::read(rx.notify.as_fd(), &mut buf).unwrap();
        assert_eq!(u64::from_ne_bytes(buf), 2);
    }

    #[test]
    fn send_fails_once_the_channel_is_dropped() {
        let (tx, rx) = channel::<u32>();
        drop(rx);
        assert_eq!(tx.send(7).unwrap_err().0, 7);
        let (tx, rx) = sync_channel::<u32>(1);
        drop(rx);
        assert!(matches!(
            tx.try_send(8),
            Err(mpsc::TrySendError::Disconnected(8))
        ));
        assert_eq!(tx.send(9).unwrap_err().0, 9);
    }

    #[test]
    fn channel_can_be_read_directly() {
        let (tx, rx) = channel::<u32>();
        assert!(matches!(rx.try_recv(), Err(mpsc::TryRecvError::Empty)));
        tx.send(5).unwrap();
        assert_eq!(rx.recv().unwrap(), 5);
        drop(tx);
        assert!(rx.recv().is_err());
    }

    #[test]
    fn send_and_sync_bounds() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Sender<u32>>();
        send_sync::<SyncSender<u32>>();
        send::<Channel<u32>>();
    }

    #[test]
    fn messages_sent_from_threads_all_arrive() {
        let mut event_loop = EventLoop::<Got>::try_new().unwrap();
        let (tx, rx) = channel::<u32>();
        event_loop.handle().insert_source(rx, record).unwrap();
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for n in 0..10_000 {
                        tx.send(t * 10_000 + n).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let mut got = Got::default();
        while got.closed == 0 {
            event_loop
                .dispatch(Duration::from_secs(10), &mut got)
                .unwrap();
        }
        for thread in threads {
            thread.join().unwrap();
        }
        got.msgs.sort_unstable();
        assert_eq!(got.msgs, (0..20_000).collect::<Vec<_>>());
    }
}
