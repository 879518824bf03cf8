//! Named channels between plugins and the embedding application (the
//! counterpart of calloop's `calloop::channel`, with byte messages).
//!
//! * Receiving: [`Channel::open`]`("in")` is an event source; insert it and
//!   its callback receives [`Event::Msg`] for each message and a final
//!   [`Event::Closed`] once every sender targeting it is gone.
//! * Sending: [`Sender::to`]`("pong/in")` connects to a channel by name.
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
//! # use callop_guest::{LoopHandle, PostAction};
//! # type State = ();
//! # fn example(handle: &LoopHandle<State>) -> Result<(), Box<dyn std::error::Error>> {
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

use std::rc::Rc;

use crate::bindings::callop::plugin::host_loop;
use crate::bindings::callop::plugin::types::{EventKind, EventResult, MessageBatch};
use crate::error::{Error, Result};
use crate::loop_handle::{CallbackReturn, EventSource, PostAction, Sealed};

/// An event of a [`Channel`] (calloop's `channel::Event`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A message.
    Msg(Vec<u8>),
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
        let EventKind::Messages(MessageBatch { data, lengths }) = kind else {
            return Self::__convert(kind).map(|e| callback(e).__into_wit());
        };
        if let [_] = lengths[..] {
            // One message: hand over the buffer itself.
            return Some(callback(Event::Msg(data)).__into_wit());
        }
        let mut result = PostAction::Continue;
        let mut start = 0usize;
        for len in lengths {
            let end = (start + len as usize).min(data.len());
            let msg = data[start..end].to_vec();
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
