//! [`Mailbox`]: the host side of one named channel, and [`MailboxSource`],
//! the loop source that delivers a plugin's channel to it.
//!
//! Messages for a plugin are *packed* as they are sent: each send appends
//! its bytes to the newest [`MessageBatch`] of the mailbox (a new batch is
//! started at [`BATCH_MESSAGES`] messages or [`BATCH_BYTES`] bytes). The
//! owner's loop source takes one whole batch per loop iteration and hands
//! it to the guest as a single `messages` event, so a flood costs two list
//! copies per batch across the component boundary instead of one guest
//! allocation per message, and the loop stays fair to other sources.
//!
//! An application endpoint (`@app/name`) has a mailbox too, so plugins
//! address both kinds the same way; its messages go one by one into the
//! application's [`Channel`](callop::channel::Channel).
//!
//! Every byte a batch allocates is charged to the [`Budget`] of the message's
//! sender (the growth of the batch's buffers each send causes, plus a fixed
//! [`BATCH_OVERHEAD`] per batch; a new batch adopts the buffer of its first
//! message, which is charged at its capacity); the [`Charges`] travel with the batch when
//! the owner takes it and are released when it is dropped (see
//! `host_memory`). Over budget, the send fails and nothing is queued.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use callop::channel::Sender;
use callop::ping::{Ping, PingSource};
use callop::{EventSource, Poll, PostAction, Readiness, Token, TokenFactory};

use super::app_channel::Charged;
use super::bindings::callop::plugin::types::MessageBatch;
use super::host_memory::{Budget, Charge, Charges, OverBudget};

/// A batch is closed to new messages once it holds this many messages...
pub(crate) const BATCH_MESSAGES: usize = 1024;
/// ...or this many bytes (a larger single message gets a batch of its own).
pub(crate) const BATCH_BYTES: usize = 1 << 20;
/// Bytes charged for a message to the application beyond its buffer (its
/// slot in the application's channel).
pub(crate) const APP_MESSAGE_OVERHEAD: usize = 64;
/// Bytes charged for a batch beyond its two buffers (its queue slot and its
/// list of charges, amortised).
pub(crate) const BATCH_OVERHEAD: usize = 128;

/// The capacity a buffer of capacity `cap` grows to so that it holds `need`
/// elements: at least doubled (never past `max` by doubling alone), at least
/// `floor`.
fn grown(cap: usize, need: usize, max: usize, floor: usize) -> usize {
    if need <= cap {
        cap
    } else {
        need.max(cap.saturating_mul(2).min(max)).max(floor)
    }
}

/// One queued batch and what its bytes are charged to.
struct Queued {
    batch: MessageBatch,
    charges: Charges,
}

/// The host side of one named channel: where senders put messages.
///
/// A mailbox exists from the first `connect` (messages are buffered until
/// the owner opens the channel) or from `open-channel`, until the channel
/// is removed or its owner ends.
pub(crate) struct Mailbox {
    /// Full name, e.g. `pong/in`.
    pub full_name: String,
    state: Mutex<State>,
    /// What the mailbox itself costs, charged to the plugin whose `connect`
    /// or `open-channel` made it, until the registry forgets it (so that
    /// `connect` to ever new names is bounded too).
    _charge: Charge,
}

/// Bytes charged for a mailbox beyond its name: the struct, its `Arc`
/// and registry entry (the name is stored twice: key and `full_name`).
pub(crate) const MAILBOX_OVERHEAD: usize = size_of::<Mailbox>() + 64;

struct State {
    /// Packed messages not yet taken by the owner, oldest first.
    batches: VecDeque<Queued>,
    /// Number of messages in `batches`.
    queued: usize,
    sink: Sink,
    /// Every sender was dropped after the owner opened the channel: the
    /// owner sees `closed` after the queued messages; new senders are
    /// refused.
    closing: bool,
    /// Closed for good: removed, its owner ended, or `closed` was taken.
    closed: bool,
    /// Live sender handles (guest `sender`s and application senders).
    senders: usize,
    /// Whether a sender ever existed (closing needs one).
    ever: bool,
}

/// Where the messages of a mailbox go.
enum Sink {
    /// Not opened yet: messages wait in `batches`.
    Unopened,
    /// Opened by a plugin: its [`MailboxSource`] takes `batches`, woken by
    /// this ping.
    Plugin(Ping),
    /// An application endpoint: messages go straight into the application's
    /// loop channel (`None` once every sender was dropped, which closes it).
    App(Option<Sender<Charged>>),
}

/// Why a send was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The channel was closed or removed.
    Closed,
    /// The queue limit was reached.
    Full,
    /// The sender's host memory budget has no room for the message.
    OverBudget(OverBudget),
}

/// What the owner's source takes from its mailbox.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// The oldest batch of messages, and the charges of its bytes (to be
    /// dropped once the batch is delivered).
    Messages(MessageBatch, Charges),
    /// Every sender is gone and every message was delivered.
    Closed,
}

impl Mailbox {
    /// A mailbox for a plugin channel, not opened yet (made by the
    /// application, or in tests: charged to no one).
    pub fn new(full_name: String) -> Arc<Mailbox> {
        Self::with_sink(full_name, Sink::Unopened, Charge::default())
    }

    /// A mailbox for a plugin channel, not opened yet, whose own cost is
    /// charged to `payer` (the plugin making it).
    pub fn new_charged(full_name: String, payer: &Arc<Budget>) -> Result<Arc<Mailbox>, OverBudget> {
        let charge = payer.try_charge(MAILBOX_OVERHEAD + 2 * full_name.len())?;
        Ok(Self::with_sink(full_name, Sink::Unopened, charge))
    }

    /// An application endpoint delivering into `tx`.
    pub fn new_app(full_name: String, tx: Sender<Charged>) -> Arc<Mailbox> {
        Self::with_sink(full_name, Sink::App(Some(tx)), Charge::default())
    }

    fn with_sink(full_name: String, sink: Sink, charge: Charge) -> Arc<Mailbox> {
        Arc::new(Mailbox {
            _charge: charge,
            full_name,
            state: Mutex::new(State {
                batches: VecDeque::new(),
                queued: 0,
                sink,
                closing: false,
                closed: false,
                senders: 0,
                ever: false,
            }),
        })
    }

    /// Locks the state (poisoning is ignored: no invariant spans a panic).
    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether new senders are refused (closed, or closing).
    pub fn is_closed(&self) -> bool {
        let st = self.st();
        st.closed || st.closing
    }

    /// Whether the channel has an owner (a plugin opened it, or it is an
    /// application endpoint).
    pub fn is_open(&self) -> bool {
        !matches!(self.st().sink, Sink::Unopened)
    }

    /// Messages sent but not yet taken by the owner, and their bytes.
    pub fn queued_totals(&self) -> (u64, u64) {
        let st = self.st();
        let bytes: usize = st.batches.iter().map(|q| q.batch.data.len()).sum();
        (st.queued as u64, bytes as u64)
    }

    /// Messages sent but not yet taken by the owner.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.st().queued
    }

    /// Registers a new sender handle.
    pub fn add_sender(&self) {
        let mut st = self.st();
        st.senders += 1;
        st.ever = true;
    }

    /// Unregisters a sender handle; the last one closes an open channel.
    pub fn drop_sender(&self) {
        let mut st = self.st();
        st.senders = st.senders.saturating_sub(1);
        if st.senders == 0 {
            st.close_if_open();
        }
    }

    /// Queues one message. `max_queued` bounds the messages waiting for the
    /// owner (the application passes `usize::MAX`); the bytes the queue
    /// grows by are charged to `payer` (`None`: not charged, for tests).
    /// Messages to an application endpoint go into the application's channel
    /// at once, charged to `payer` until the application's loop delivers
    /// them ([`AppChannel`](crate::AppChannel)).
    pub fn send(
        &self,
        data: Vec<u8>,
        max_queued: usize,
        payer: Option<&Arc<Budget>>,
    ) -> Result<(), SendError> {
        let mut guard = self.st();
        let st = &mut *guard;
        if st.closed || st.closing {
            return Err(SendError::Closed);
        }
        if let Sink::App(tx) = &st.sink {
            // Charged until the application's loop delivers it.
            let charge = match payer {
                Some(b) => b
                    .try_charge(data.capacity() + APP_MESSAGE_OVERHEAD)
                    .map_err(SendError::OverBudget)?,
                None => Charge::default(),
            };
            let sent = tx
                .as_ref()
                .is_some_and(|tx| tx.send((charge, data)).is_ok());
            if !sent {
                st.closed = true;
                st.sink = Sink::App(None);
                return Err(SendError::Closed);
            }
            return Ok(());
        }
        if st.queued >= max_queued {
            return Err(SendError::Full);
        }
        let msg_len = data.len();
        // Lossless: a message longer than u32::MAX cannot pass the host's
        // message size limit, and the application's are clamped here.
        let len32 = u32::try_from(msg_len).unwrap_or(u32::MAX);
        let charge = |bytes: usize| match payer {
            Some(b) => b.try_charge(bytes).map_err(SendError::OverBudget),
            None => Ok(Charge::default()),
        };
        // The newest batch takes the message if it has room: the flood's
        // path, kept short (one lock, no shared counter touched unless a
        // buffer grows).
        if let Some(q) = st.batches.back_mut().filter(|q| {
            q.batch.lengths.len() < BATCH_MESSAGES && q.batch.data.len() + msg_len <= BATCH_BYTES
        }) {
            // What its buffers grow to, charged before anything is allocated.
            let batch = &mut q.batch;
            let (len, cap) = (batch.data.len(), batch.data.capacity());
            let (n, ncap) = (batch.lengths.len(), batch.lengths.capacity());
            let new_cap = grown(cap, len + msg_len, BATCH_BYTES, 64);
            let new_ncap = grown(ncap, n + 1, BATCH_MESSAGES, 4);
            let bytes = (new_cap - cap) + (new_ncap - ncap) * size_of::<u32>();
            let paid = charge(bytes)?;
            if bytes > 0 {
                q.charges.push(paid);
                batch.data.reserve_exact(new_cap - len);
                batch.lengths.reserve_exact(new_ncap - n);
            }
            batch.data.extend_from_slice(&data);
            batch.lengths.push(len32);
            st.queued += 1;
            return Ok(());
        }
        // A new batch adopts the message's own buffer (no copy), charged at
        // its capacity.
        let wake = st.batches.is_empty();
        let ncap = grown(0, 1, BATCH_MESSAGES, 4);
        let mut charges = Charges::default();
        charges.push(charge(
            BATCH_OVERHEAD + data.capacity() + ncap * size_of::<u32>(),
        )?);
        let mut lengths = Vec::with_capacity(ncap);
        lengths.push(len32);
        st.batches.push_back(Queued {
            batch: MessageBatch { data, lengths },
            charges,
        });
        st.queued += 1;
        if wake && let Sink::Plugin(ping) = &st.sink {
            ping.ping();
        }
        Ok(())
    }

    /// A plugin opened the channel: `ping` wakes its [`MailboxSource`].
    /// Buffered messages are delivered on the next loop iteration. If every
    /// sender was already dropped, the owner sees `closed` after them.
    pub fn open(&self, ping: Ping) {
        let mut st = self.st();
        if !st.batches.is_empty() {
            ping.ping();
        }
        st.sink = Sink::Plugin(ping);
        if st.ever && st.senders == 0 {
            st.close_if_open();
        }
    }

    /// The owner is being replaced (a reload): the channel goes back to
    /// *unopened*, its queued messages and senders stay, and new messages
    /// wait in it until the new owner [`open`](Self::open)s it (or the old
    /// one does again, with the returned ping, if the reload is rolled
    /// back). A channel that was closing (every sender gone) closes again
    /// when it is reopened. `None` (nothing changed) if no plugin had it
    /// open or it is closed for good.
    pub fn detach(&self) -> Option<Ping> {
        let mut st = self.st();
        if st.closed {
            return None;
        }
        match std::mem::replace(&mut st.sink, Sink::Unopened) {
            Sink::Plugin(ping) => {
                st.closing = false;
                Some(ping)
            }
            other => {
                st.sink = other;
                None
            }
        }
    }

    /// Takes the oldest batch, or `closed` once the mailbox is closing and
    /// drained. The second value tells whether more is pending.
    pub fn take(&self) -> (Option<Delivery>, bool) {
        let mut st = self.st();
        if st.closed {
            return (None, false);
        }
        if let Some(q) = st.batches.pop_front() {
            st.queued -= q.batch.lengths.len();
            let more = !st.batches.is_empty() || st.closing;
            return (Some(Delivery::Messages(q.batch, q.charges)), more);
        }
        if st.closing {
            st.closed = true;
            return (Some(Delivery::Closed), false);
        }
        (None, false)
    }

    /// The channel was removed or its owner ended: queued messages are
    /// dropped (their charges released) and senders get `closed`.
    pub fn mark_closed(&self) {
        let mut st = self.st();
        st.closed = true;
        st.batches.clear();
        st.queued = 0;
        if let Sink::App(tx) = &mut st.sink {
            *tx = None;
        }
    }
}

impl State {
    /// Every sender is gone: an opened channel starts closing.
    fn close_if_open(&mut self) {
        match &mut self.sink {
            Sink::Unopened => {}
            Sink::Plugin(ping) => {
                if !self.closing {
                    self.closing = true;
                    ping.ping();
                }
            }
            Sink::App(tx) => {
                *tx = None;
                self.closing = true;
            }
        }
    }
}

/// The loop source of a plugin's open channel: on each wake-up it takes one
/// [`Delivery`] from the mailbox (and wakes itself again if more is
/// pending). After `Closed` it removes itself.
pub(crate) struct MailboxSource {
    mailbox: Arc<Mailbox>,
    ping: Ping,
    source: PingSource,
}

impl MailboxSource {
    /// Opens `mailbox` for a plugin and returns the source to insert.
    pub fn open(mailbox: Arc<Mailbox>) -> callop::Result<MailboxSource> {
        let (ping, source) = callop::ping::make_ping()?;
        mailbox.open(ping.clone());
        Ok(MailboxSource {
            mailbox,
            ping,
            source,
        })
    }
}

impl EventSource for MailboxSource {
    type Event = Delivery;
    type Metadata = ();
    type Ret = ();
    type Error = <PingSource as EventSource>::Error;

    fn process_events<F>(
        &mut self,
        readiness: Readiness,
        token: Token,
        mut callback: F,
    ) -> Result<PostAction, Self::Error>
    where
        F: FnMut(Self::Event, &mut Self::Metadata) -> Self::Ret,
    {
        let mut woken = false;
        self.source
            .process_events(readiness, token, |(), _| woken = true)?;
        if !woken {
            return Ok(PostAction::Continue);
        }
        let (delivery, more) = self.mailbox.take();
        if more {
            self.ping.ping();
        }
        match delivery {
            Some(Delivery::Closed) => {
                callback(Delivery::Closed, &mut ());
                Ok(PostAction::Remove)
            }
            Some(d) => {
                callback(d, &mut ());
                Ok(PostAction::Continue)
            }
            None => Ok(PostAction::Continue),
        }
    }

    fn register(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> callop::Result<()> {
        self.source.register(poll, factory)
    }

    fn reregister(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> callop::Result<()> {
        self.source.reregister(poll, factory)
    }

    fn unregister(&mut self, poll: &mut Poll) -> callop::Result<()> {
        self.source.unregister(poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callop::EventLoop;

    /// A delivery as comparable values: `Some((data, lengths))` or `None` for `Closed`.
    type Shown = Option<(Vec<u8>, Vec<u32>)>;

    fn batch(msgs: &[&[u8]]) -> Shown {
        Some((msgs.concat(), msgs.iter().map(|m| m.len() as u32).collect()))
    }

    fn show(d: Delivery) -> Shown {
        match d {
            Delivery::Messages(b, _) => Some((b.data, b.lengths)),
            Delivery::Closed => None,
        }
    }

    fn take_all(m: &Mailbox) -> Vec<Shown> {
        let mut out = Vec::new();
        loop {
            let (d, more) = m.take();
            out.extend(d.map(show));
            if !more {
                return out;
            }
        }
    }

    #[test]
    fn buffers_until_open_then_closes_after_the_messages() {
        let m = Mailbox::new("p/in".into());
        m.add_sender();
        m.send(b"a".to_vec(), 10, None).unwrap();
        m.send(b"bc".to_vec(), 10, None).unwrap();
        assert_eq!(m.queued(), 2);
        let (ping, _src) = callop::ping::make_ping().unwrap();
        m.open(ping);
        m.send(b"".to_vec(), 10, None).unwrap();
        m.drop_sender();
        assert!(m.is_closed());
        assert_eq!(m.send(b"x".to_vec(), 10, None), Err(SendError::Closed));
        assert_eq!(take_all(&m), vec![batch(&[b"a", b"bc", b""]), None]);
        assert_eq!(m.queued(), 0);
        assert!(matches!(m.take(), (None, false)));
    }

    #[test]
    fn a_detached_mailbox_keeps_its_messages_for_the_next_owner() {
        let m = Mailbox::new("p/in".into());
        m.add_sender();
        let (old, _old_src) = callop::ping::make_ping().unwrap();
        m.open(old);
        m.send(b"a".to_vec(), 10, None).unwrap();
        assert!(m.detach().is_some());
        assert!(!m.is_open() && !m.is_closed());
        assert!(m.detach().is_none(), "already detached");
        m.send(b"b".to_vec(), 10, None).unwrap();
        let (new, _new_src) = callop::ping::make_ping().unwrap();
        m.open(new);
        m.send(b"c".to_vec(), 10, None).unwrap();
        assert_eq!(take_all(&m), vec![batch(&[b"a", b"b", b"c"])]);
        // Closing (no sender left) before the swap: closed again at reopen,
        // after the messages.
        m.send(b"d".to_vec(), 10, None).unwrap();
        m.drop_sender();
        assert!(m.is_closed());
        let (p2, _s2) = callop::ping::make_ping().unwrap();
        assert!(m.detach().is_some());
        assert!(!m.is_closed(), "a detached mailbox can be reopened");
        m.open(p2);
        assert!(m.is_closed());
        assert_eq!(take_all(&m), vec![batch(&[b"d"]), None]);
        assert!(m.detach().is_none(), "closed for good");
    }

    #[test]
    fn queued_totals_count_untaken_messages_and_bytes() {
        let m = Mailbox::new("a/in".into());
        assert_eq!(m.queued_totals(), (0, 0));
        m.send(vec![1; 10], usize::MAX, None).unwrap();
        m.send(vec![2; 5], usize::MAX, None).unwrap();
        assert_eq!(m.queued_totals(), (2, 15));
        let _ = m.take();
        assert_eq!(m.queued_totals(), (0, 0));
    }

    #[test]
    fn queue_limit_counts_untaken_messages() {
        let m = Mailbox::new("p/in".into());
        m.add_sender();
        m.send(vec![1], 1, None).unwrap();
        assert_eq!(m.send(vec![2], 1, None), Err(SendError::Full));
        let _ = m.take();
        m.send(vec![3], 1, None).unwrap();
        m.mark_closed();
        assert_eq!(m.send(vec![4], 10, None), Err(SendError::Closed));
        assert_eq!(m.queued(), 0);
    }

    #[test]
    fn senders_gone_before_open_close_at_open() {
        let m = Mailbox::new("p/in".into());
        m.add_sender();
        m.send(b"x".to_vec(), 10, None).unwrap();
        m.drop_sender();
        assert!(!m.is_closed(), "not closing before the owner opens it");
        let (ping, _src) = callop::ping::make_ping().unwrap();
        m.open(ping);
        assert!(m.is_closed());
        assert_eq!(take_all(&m), vec![batch(&[b"x"]), None]);
    }

    #[test]
    fn batches_are_bounded_by_count_and_bytes() {
        let m = Mailbox::new("p/in".into());
        for i in 0..BATCH_MESSAGES + 1 {
            m.send((i as u32).to_le_bytes().to_vec(), usize::MAX, None)
                .unwrap();
        }
        m.send(vec![7; BATCH_BYTES], usize::MAX, None).unwrap();
        m.send(vec![8; 3], usize::MAX, None).unwrap();
        let sizes: Vec<(usize, usize)> = take_all(&m)
            .into_iter()
            .map(|d| d.map_or((0, 0), |(data, lengths)| (lengths.len(), data.len())))
            .collect();
        assert_eq!(
            sizes,
            vec![
                (BATCH_MESSAGES, 4 * BATCH_MESSAGES),
                (1, 4),
                (1, BATCH_BYTES),
                (1, 3)
            ]
        );
    }

    /// Bytes a batch has allocated, as the charges count them.
    fn allocated(b: &MessageBatch) -> usize {
        BATCH_OVERHEAD + b.data.capacity() + b.lengths.capacity() * size_of::<u32>()
    }

    #[test]
    fn every_byte_of_a_batch_is_charged_to_its_senders_until_it_is_dropped() {
        let a = Budget::new("a".into(), usize::MAX);
        let b = Budget::new("b".into(), usize::MAX);
        let m = Mailbox::new("p/in".into());
        for i in 0..3000usize {
            let payer = if i % 3 == 0 { &b } else { &a };
            m.send(vec![1; i % 700], usize::MAX, Some(payer)).unwrap();
        }
        m.send(vec![2; BATCH_BYTES], usize::MAX, Some(&a)).unwrap();
        let mut total = 0;
        let mut held = Vec::new();
        loop {
            let (d, more) = m.take();
            if let Some(Delivery::Messages(batch, charges)) = d {
                assert_eq!(charges.bytes(), allocated(&batch), "exact per batch");
                total += charges.bytes();
                held.push((batch, charges));
            }
            if !more {
                break;
            }
        }
        assert!(held.len() > 3, "several batches");
        assert_eq!(a.used() + b.used(), total);
        assert!(b.used() > 0 && a.used() > BATCH_BYTES);
        // Delivered batches stay charged until they are dropped.
        let last = held.pop().unwrap();
        drop(held);
        assert_eq!(a.used() + b.used(), last.1.bytes());
        drop(last);
        assert_eq!((a.used(), b.used()), (0, 0));
    }

    #[test]
    fn a_send_over_budget_queues_nothing_and_takes_nothing() {
        let one = BATCH_OVERHEAD + BATCH_BYTES + 4 * size_of::<u32>();
        let a = Budget::new("a".into(), 2 * one - 1);
        let m = Mailbox::new("p/in".into());
        m.send(vec![0; BATCH_BYTES], usize::MAX, Some(&a)).unwrap();
        assert_eq!(a.used(), one);
        let e = m
            .send(vec![0; BATCH_BYTES], usize::MAX, Some(&a))
            .unwrap_err();
        assert!(
            matches!(&e, SendError::OverBudget(o) if o.asked == one && o.used == one),
            "{e:?}"
        );
        assert_eq!((m.queued(), a.used()), (1, one));
        // A small message still fits in the room left.
        m.send(vec![0; 100], usize::MAX, Some(&a)).unwrap();
        assert_eq!(m.queued(), 2);
        let (d, _) = m.take();
        drop(d);
        assert!(a.used() > 0 && a.used() < 1024, "{}", a.used());
        m.send(vec![0; BATCH_BYTES], usize::MAX, Some(&a)).unwrap();
    }

    #[test]
    fn closing_a_mailbox_releases_its_queued_charges() {
        let a = Budget::new("a".into(), usize::MAX);
        let m = Mailbox::new("p/never-opened".into());
        m.add_sender();
        for _ in 0..10 {
            m.send(vec![0; 100_000], usize::MAX, Some(&a)).unwrap();
        }
        assert!(a.used() >= 1_000_000);
        m.mark_closed();
        assert_eq!(a.used(), 0);
        assert_eq!(
            m.send(vec![0; 10], usize::MAX, Some(&a)),
            Err(SendError::Closed)
        );
        assert_eq!(a.used(), 0, "a refused send takes nothing");
    }

    #[test]
    fn a_mailbox_costs_its_maker_until_it_is_dropped() {
        let a = Budget::new("a".into(), MAILBOX_OVERHEAD + 2 * "p/x".len());
        let m = Mailbox::new_charged("p/x".into(), &a).unwrap();
        assert_eq!(a.used(), a.limit());
        assert!(Mailbox::new_charged("p/y".into(), &a).is_err());
        drop(m);
        assert_eq!(a.used(), 0);
    }

    #[test]
    fn messages_to_the_application_are_charged_until_delivered() {
        let a = Budget::new("a".into(), 2 * (1000 + APP_MESSAGE_OVERHEAD));
        let (tx, rx) = callop::channel::channel();
        let m = Mailbox::new_app("@app/out".into(), tx);
        m.send(vec![0; 1000], usize::MAX, Some(&a)).unwrap();
        m.send(vec![0; 1000], usize::MAX, Some(&a)).unwrap();
        assert_eq!(a.used(), a.limit());
        // Over budget: refused, nothing queued.
        assert!(matches!(
            m.send(vec![0; 1000], usize::MAX, Some(&a)),
            Err(SendError::OverBudget(_))
        ));
        let mut ev: EventLoop<usize> = EventLoop::try_new().unwrap();
        ev.handle()
            .insert_source(crate::AppChannel::new(rx), |e, _, n: &mut usize| {
                if let callop::channel::Event::Msg(_) = e {
                    *n += 1;
                }
            })
            .unwrap();
        let mut n = 0;
        ev.dispatch(Some(std::time::Duration::ZERO), &mut n)
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(a.used(), 0, "delivery releases the charge");
    }

    #[test]
    fn app_endpoint_forwards_each_message() {
        let (tx, rx) = callop::channel::channel();
        let m = Mailbox::new_app("@app/out".into(), tx);
        assert!(m.is_open());
        m.add_sender();
        m.send(b"hi".to_vec(), 0, None).unwrap();
        m.drop_sender();
        assert!(m.is_closed());
        let mut ev: EventLoop<Vec<Option<Vec<u8>>>> = EventLoop::try_new().unwrap();
        ev.handle()
            .insert_source(crate::AppChannel::new(rx), |e, _, got| {
                got.push(match e {
                    callop::channel::Event::Msg(m) => Some(m),
                    callop::channel::Event::Closed => None,
                })
            })
            .unwrap();
        let mut got = Vec::new();
        ev.dispatch(Some(std::time::Duration::ZERO), &mut got)
            .unwrap();
        assert_eq!(got, vec![Some(b"hi".to_vec()), None]);
    }

    #[test]
    fn source_delivers_one_batch_per_iteration_then_closed() {
        let m = Mailbox::new("p/in".into());
        m.add_sender();
        for i in 0..BATCH_MESSAGES * 2 + 5 {
            m.send(vec![i as u8], usize::MAX, None).unwrap();
        }
        let src = MailboxSource::open(m.clone()).unwrap();
        let mut ev: EventLoop<Vec<usize>> = EventLoop::try_new().unwrap();
        ev.handle()
            .insert_source(src, |d, _, got: &mut Vec<usize>| {
                got.push(match d {
                    Delivery::Messages(b, _) => b.lengths.len(),
                    Delivery::Closed => 0,
                })
            })
            .unwrap();
        let mut got = Vec::new();
        ev.dispatch(Some(std::time::Duration::ZERO), &mut got)
            .unwrap();
        assert_eq!(got, vec![BATCH_MESSAGES]);
        m.drop_sender();
        for _ in 0..4 {
            ev.dispatch(Some(std::time::Duration::ZERO), &mut got)
                .unwrap();
        }
        assert_eq!(got, vec![BATCH_MESSAGES, BATCH_MESSAGES, 5, 0]);
    }
}
