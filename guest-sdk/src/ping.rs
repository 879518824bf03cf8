//! Pings (calloop's `calloop::ping`): a wake-up source with coalescing.
//!
//! [`make_ping`] returns a [`Ping`] handle and a [`PingSource`]; insert the
//! source with a callback and call [`Ping::ping`] (from a callback, from
//! `init`, ...) to wake it. Several pings before the source is dispatched
//! produce a single event.
//!
//! [`make_named_ping`] additionally publishes the ping as
//! `<instance-name>/<name>`, so other plugins ([`Ping::connect`]) and the
//! embedding application can trigger it.
//!
//! ```no_run
//! # use callop_guest::{LoopHandle, PostAction};
//! # struct State { woken: u32 }
//! # fn example(handle: &LoopHandle<State>) -> Result<(), Box<dyn std::error::Error>> {
//! let (ping, source) = callop_guest::ping::make_ping()?;
//! handle.insert_source(source, |(), _: &mut (), state: &mut State| {
//!     state.woken += 1;
//!     PostAction::Continue
//! })?;
//! ping.ping();
//! # Ok(())
//! # }
//! ```

use std::rc::Rc;

use crate::bindings::callop::plugin::host_loop;
use crate::bindings::callop::plugin::types::EventKind;
use crate::error::{Error, Result};
use crate::loop_handle::{EventSource, PostAction, Sealed};

/// A handle that wakes a ping source. Cheap to clone (clones share one host
/// handle). Pinging a source that has been removed is a silent no-op.
#[derive(Clone)]
pub struct Ping {
    inner: Rc<host_loop::Ping>,
}

impl std::fmt::Debug for Ping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ping")
    }
}

impl Ping {
    /// Wakes the ping source (coalescing with pending pings).
    pub fn ping(&self) {
        self.inner.trigger();
    }

    /// A handle to another plugin's named ping, `"<instance>/<name>"` (or
    /// `"<name>"` for one of this plugin's own named pings). Fails with
    /// [`ErrorCode::NotFound`](crate::ErrorCode::NotFound) if it does not
    /// exist right now.
    pub fn connect(target: &str) -> Result<Ping> {
        let inner = host_loop::connect_ping(target).map_err(Error::from)?;
        Ok(Ping {
            inner: Rc::new(inner),
        })
    }
}

/// The event source half of a ping: insert it with
/// [`LoopHandle::insert_source`](crate::LoopHandle::insert_source); the
/// callback has the signature `FnMut((), &mut (), &mut State) -> PostAction`.
///
/// The host source already exists when this value is created; dropping it
/// without inserting it removes that source.
#[derive(Debug)]
pub struct PingSource {
    id: Option<u64>,
}

impl Drop for PingSource {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = host_loop::remove(id);
        }
    }
}

/// Creates a ping pair: the [`Ping`] handle and its [`PingSource`].
pub fn make_ping() -> Result<(Ping, PingSource)> {
    make(None)
}

/// Like [`make_ping`], but also publishes the ping as
/// `<instance-name>/<name>` so that other plugins ([`Ping::connect`]) and the
/// application can trigger it.
pub fn make_named_ping(name: &str) -> Result<(Ping, PingSource)> {
    make(Some(name))
}

fn make(name: Option<&str>) -> Result<(Ping, PingSource)> {
    let (id, handle) = host_loop::make_ping(name).map_err(Error::from)?;
    Ok((
        Ping {
            inner: Rc::new(handle),
        },
        PingSource { id: Some(id) },
    ))
}

impl Sealed for PingSource {}
impl EventSource for PingSource {
    type Event = ();
    type Metadata = ();
    type Ret = PostAction;

    fn __register(mut self) -> Result<(u64, ())> {
        let id = self.id.take().expect("PingSource registered twice");
        Ok((id, ()))
    }

    fn __convert(kind: EventKind) -> Option<()> {
        match kind {
            EventKind::Ping => Some(()),
            _ => None,
        }
    }
}
