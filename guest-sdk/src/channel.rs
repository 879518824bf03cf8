//! Named channels between plugins and the embedding application (the
//! counterpart of calloop's `calloop::channel`, with byte messages).
//!
//! * Receiving: [`Channel::open`]`("in")` is an event source; insert it and
//!   its callback receives [`Event::Msg`] for each message and a final
//!   [`Event::Closed`] once every sender targeting it is gone.
//! * Sending: [`Sender::to`]`("pong/in")` connects to a channel by name.
//! * Receiving without a copy per message: [`Channel::open_shared`]`("in")`
//!   is the same channel, but its callback receives [`Event`]`<`[`Message`]`>`:
//!   each message is a view into the batch it arrived in (no allocation per
//!   message; a kept message keeps its whole batch alive).
//!
//! ## Naming
//!
//! * A plugin's channel `in` is addressed as `<instance-name>/in` by
//!   others, where the instance name is chosen by the embedder
//!   ([`instance_name`](crate::instance_name)). A target without `/` means
//!   one of this plugin's own channels.
//! * The embedding application's endpoints are `@app/<name>`, e.g.
//!   `@app/out`; plugins can send to them but not open them.
//! * Messages sent to an existing plugin whose channel is not open yet are
//!   buffered by the host (up to a limit) until it opens.
//! * The host packs messages as they are sent and delivers up to 1,024 (or
//!   1 MiB) of them in one event; the callback still runs once per message,
//!   in order. Returning [`PostAction::Remove`] (or removing the source from
//!   the callback) drops the rest of that batch with the channel;
//!   [`PostAction::Disable`] takes effect after the batch, as it would if
//!   each message were its own event.
//!
//! ```no_run
//! # use callop_guest::PostAction;
//! # fn run(handle: &callop_guest::LoopHandle<()>) -> Result<(), Box<dyn std::error::Error>> {
//! use callop_guest::channel::{Channel, Event, Sender};
//!
//! let reply = Sender::to("@app/out")?;
//! handle.insert_source(Channel::open("in"), move |event, _: &mut (), _state: &mut ()| {
//!     match event {
//!         Event::Msg(bytes) => { let _ = reply.send(&bytes); PostAction::Continue }
//!         Event::Closed => PostAction::Remove,
//!     }
//! })?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::ops::Deref;
use std::rc::Rc;

use crate::bindings::callop::plugin::host_loop;
use crate::bindings::callop::plugin::types::{EventKind, EventResult, MessageBatch};
use crate::error::{Error, Result};
use crate::loop_handle::{CallbackReturn, EventSource, PostAction, Sealed};

/// An event of a [`Channel`] (calloop's `channel::Event<T>`): `T` is
/// `Vec<u8>` for [`Channel`], [`Message`] for [`SharedChannel`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<T = Vec<u8>> {
    /// A message.
    Msg(T),
    /// No more messages will arrive: every sender targeting the channel was
    /// dropped (after at least one existed), or the application closed it.
    /// Returning [`PostAction::Remove`] is the natural answer.
    Closed,
}

/// A named receiving channel of this plugin: an event source whose callback
/// has the signature `FnMut(Event, &mut (), &mut State) -> PostAction`.
///
/// The channel is opened on the host when it is inserted with
/// [`LoopHandle::insert_source`](crate::LoopHandle::insert_source) (which
/// reports name errors such as
/// [`AlreadyExists`](crate::ErrorCode::AlreadyExists)); removing the source
/// closes it and releases the name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    name: String,
}

impl Channel {
    /// A channel of this plugin with the local name `name` (no `/`), reachable
    /// by others as `<instance-name>/<name>`.
    pub fn open(name: impl Into<String>) -> Channel {
        Channel { name: name.into() }
    }

    /// The local name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same channel as a [`SharedChannel`], whose callback receives
    /// [`Message`]s that share their batch's buffer instead of a `Vec<u8>`
    /// copied out of it for each message.
    pub fn open_shared(name: impl Into<String>) -> SharedChannel {
        SharedChannel { name: name.into() }
    }
}

/// A channel whose messages arrive as [`Message`]s: made by
/// [`Channel::open_shared`], an event source whose callback has the signature
/// `FnMut(Event<Message>, &mut (), &mut State) -> PostAction`. Everything
/// else (naming, batches, `Closed`, removal) is as for [`Channel`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedChannel {
    name: String,
}

impl SharedChannel {
    /// The local name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// One message of a [`SharedChannel`]: a view into the buffer of the batch
/// it arrived in, so receiving it allocates and copies nothing. It derefs to
/// `&[u8]`; [`into_vec`](Message::into_vec) gives an owned copy. Keeping a
/// message (or a clone) keeps its whole batch (up to 1 MiB) in memory.
#[derive(Clone)]
pub struct Message {
    batch: Rc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl Message {
    /// The message's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.batch[self.start..self.end]
    }

    /// The bytes as a `Vec`: the batch's buffer itself if this message is
    /// all of it and nothing else shares it, otherwise a copy.
    pub fn into_vec(self) -> Vec<u8> {
        let whole = self.start == 0 && self.end == self.batch.len();
        match Rc::try_unwrap(self.batch) {
            Ok(v) if whole => v,
            Ok(v) => v[self.start..self.end].to_vec(),
            Err(rc) => rc[self.start..self.end].to_vec(),
        }
    }
}

impl Deref for Message {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Message").field(&self.as_bytes()).finish()
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Message) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for Message {}

impl PartialEq<[u8]> for Message {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_bytes() == other
    }
}

impl From<Message> for Vec<u8> {
    fn from(m: Message) -> Vec<u8> {
        m.into_vec()
    }
}

/// Runs `callback` for each message of a channel event (see
/// [`Channel`]'s `__deliver`); `split(data)` makes the function that cuts
/// message `start..end` out of the batch's buffer, `one` wraps a batch of
/// a single message (its buffer is that message).
fn deliver<T, S: FnMut(usize, usize) -> T>(
    kind: EventKind,
    callback: &mut dyn FnMut(Event<T>) -> PostAction,
    registered: &dyn Fn() -> bool,
    one: impl FnOnce(Vec<u8>) -> T,
    split: impl FnOnce(Vec<u8>) -> S,
) -> Option<EventResult> {
    let EventKind::Messages(MessageBatch { data, lengths }) = kind else {
        return match kind {
            EventKind::Closed => Some(callback(Event::Closed).__into_wit()),
            _ => None,
        };
    };
    if let [_] = lengths[..] {
        // One message: hand over the buffer itself.
        return Some(callback(Event::Msg(one(data))).__into_wit());
    }
    let total = data.len();
    let mut cut = split(data);
    let mut result = PostAction::Continue;
    let mut start = 0usize;
    for len in lengths {
        let end = (start + len as usize).min(total);
        let msg = cut(start, end);
        start = end;
        match callback(Event::Msg(msg)) {
            PostAction::Remove => return Some(PostAction::Remove.__into_wit()),
            _ if !registered() => return Some(PostAction::Remove.__into_wit()),
            PostAction::Disable => result = PostAction::Disable,
            PostAction::Continue | PostAction::Reregister => {}
        }
    }
    Some(result.__into_wit())
}

impl Sealed for Channel {}
impl EventSource for Channel {
    type Event = Event;
    type Metadata = ();
    type Ret = PostAction;

    fn __register(self) -> Result<(u64, ())> {
        let id = host_loop::open_channel(&self.name).map_err(Error::from)?;
        Ok((id, ()))
    }

    fn __convert(kind: EventKind) -> Option<Event> {
        match kind {
            EventKind::Closed => Some(Event::Closed),
            _ => None,
        }
    }

    /// A packed batch runs the callback once per message, in order. A
    /// `Remove` (returned, or the callback removing its own source) ends the
    /// batch: the rest of it is dropped with the channel. A `Disable` takes
    /// effect after the batch: the messages already here are still
    /// delivered.
    fn __deliver(
        kind: EventKind,
        callback: &mut dyn FnMut(Event) -> PostAction,
        registered: &dyn Fn() -> bool,
    ) -> Option<EventResult> {
        deliver(
            kind,
            callback,
            registered,
            |data| data,
            |data| move |start, end| data[start..end].to_vec(),
        )
    }
}

impl Sealed for SharedChannel {}
impl EventSource for SharedChannel {
    type Event = Event<Message>;
    type Metadata = ();
    type Ret = PostAction;

    fn __register(self) -> Result<(u64, ())> {
        Channel { name: self.name }.__register()
    }

    fn __convert(kind: EventKind) -> Option<Event<Message>> {
        match kind {
            EventKind::Closed => Some(Event::Closed),
            _ => None,
        }
    }

    /// As [`Channel`]'s, with each message a [`Message`] into the batch.
    fn __deliver(
        kind: EventKind,
        callback: &mut dyn FnMut(Event<Message>) -> PostAction,
        registered: &dyn Fn() -> bool,
    ) -> Option<EventResult> {
        let whole = |data: Vec<u8>| Message {
            start: 0,
            end: data.len(),
            batch: Rc::new(data),
        };
        deliver(kind, callback, registered, whole, |data| {
            let batch = Rc::new(data);
            move |start, end| Message {
                batch: batch.clone(),
                start,
                end,
            }
        })
    }
}

/// The sending end of a named channel. Cheap to clone (clones share one host
/// handle); the target sees [`Event::Closed`] once the last sender
/// targeting it (across all clones and all parties) is dropped.
#[derive(Clone)]
pub struct Sender {
    inner: Rc<host_loop::Sender>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Sender").field(&self.target()).finish()
    }
}

impl Sender {
    /// Connects to the channel `target`: `"<instance>/<name>"`, `"<name>"`
    /// (own channel) or `"@app/<name>"` (the application). The channel need
    /// not be open yet, but the plugin instance or `@app` endpoint must
    /// exist ([`ErrorCode::NotFound`](crate::ErrorCode::NotFound)).
    pub fn to(target: &str) -> Result<Sender> {
        let inner = host_loop::connect(target).map_err(Error::from)?;
        Ok(Sender {
            inner: Rc::new(inner),
        })
    }

    /// Sends one message. Fails with
    /// [`Closed`](crate::ErrorCode::Closed) if the channel was closed or
    /// removed, or [`LimitExceeded`](crate::ErrorCode::LimitExceeded) if a
    /// queue or size limit is hit, or if this plugin's host-memory budget
    /// (`--max-host-memory`) has no room: the messages it sent that are not
    /// delivered yet count against it. Nothing is queued then; try again
    /// once the receiver has read.
    pub fn send(&self, data: impl AsRef<[u8]>) -> Result<()> {
        self.inner.send(data.as_ref()).map_err(Error::from)
    }

    /// The fully qualified target, e.g. `"pong/in"` or `"@app/out"`.
    pub fn target(&self) -> String {
        self.inner.target()
    }
}
