//! [`AppChannel`]: the receiving end of an application endpoint
//! (`@app/name`, [`Host::app_channel`](crate::Host::app_channel)).
//!
//! A plugin's message to the application waits in this channel until the
//! application's loop delivers it. Until then its bytes are charged to the
//! sending plugin's host-memory budget (see `host_memory`): a plugin cannot
//! make the host hold more for the application than for other plugins. The
//! charge travels with the message and is released when the source hands
//! the message to the application's callback.

use callop::channel::{Channel, ChannelError, Event};
use callop::{EventSource, Poll, PostAction, Readiness, Token, TokenFactory};

use crate::host_memory::Charge;

/// One message to the application, with what it costs its sender.
pub(crate) type Charged = (Charge, Vec<u8>);

/// The receiving end of an application endpoint: an event source
/// delivering each plugin message as [`Event::Msg`], then
/// [`Event::Closed`], like a [`Channel`]`<Vec<u8>>` (insert it into the
/// loop the same way).
pub struct AppChannel {
    inner: Channel<Charged>,
}

impl std::fmt::Debug for AppChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppChannel").finish_non_exhaustive()
    }
}

impl AppChannel {
    pub(crate) fn new(inner: Channel<Charged>) -> AppChannel {
        AppChannel { inner }
    }
}

impl EventSource for AppChannel {
    type Event = Event<Vec<u8>>;
    type Metadata = ();
    type Ret = ();
    type Error = ChannelError;

    fn process_events<C>(
        &mut self,
        readiness: Readiness,
        token: Token,
        mut callback: C,
    ) -> Result<PostAction, ChannelError>
    where
        C: FnMut(Event<Vec<u8>>, &mut ()),
    {
        self.inner
            .process_events(readiness, token, |event, meta| match event {
                // The charge is released as the message is handed over.
                Event::Msg((_charge, data)) => callback(Event::Msg(data), meta),
                Event::Closed => callback(Event::Closed, meta),
            })
    }

    fn register(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> callop::Result<()> {
        self.inner.register(poll, factory)
    }

    fn reregister(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> callop::Result<()> {
        self.inner.reregister(poll, factory)
    }

    fn unregister(&mut self, poll: &mut Poll) -> callop::Result<()> {
        self.inner.unregister(poll)
    }
}
