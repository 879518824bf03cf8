//! The generic I/O source (calloop's `calloop::generic`): register a host
//! I/O object on the loop and get readiness callbacks.
//!
//! ```no_run
//! # use callop_guest::LoopHandle;
//! # struct State { accepted: Vec<callop_guest::net::TcpStream> }
//! # fn example(handle: &LoopHandle<State>) -> Result<(), Box<dyn std::error::Error>> {
//! use callop_guest::generic::{Generic, Interest, Mode};
//! use callop_guest::net::TcpListener;
//! use callop_guest::PostAction;
//!
//! let listener = TcpListener::bind("127.0.0.1:7000")?;
//! handle.insert_source(
//!     Generic::new(listener, Interest::READ, Mode::Level),
//!     |readiness, listener, state: &mut State| {
//!         // `listener: &mut NoIoDrop<TcpListener>` derefs to the listener.
//!         loop {
//!             match listener.accept() {
//!                 Ok((stream, _peer)) => state.accepted.push(stream),
//!                 Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
//!                 Err(e) => return Err(e), // logged; the source is removed
//!             }
//!         }
//!         Ok(PostAction::Continue)
//!     },
//! )?;
//! # Ok(())
//! # }
//! ```
//!
//! The callback has calloop's signature,
//! `FnMut(Readiness, &mut NoIoDrop<T>, &mut State) -> io::Result<PostAction>`.
//! An `Err` is logged through the host and removes the source (calloop
//! would return it from `dispatch`; a plugin has no caller to return it
//! to).
//!
//! ## Modes
//!
//! * [`Mode::Level`]: the callback runs in every loop iteration while the
//!   object is ready — reading part of the data is fine.
//! * [`Mode::Edge`]: the callback runs when the object *becomes* ready; it
//!   must read/write until `WouldBlock` (see
//!   [`read_available`](crate::io::read_available)), or it is not called
//!   again until new data arrives — exactly as with the host loop.
//! * [`Mode::OneShot`]: the callback runs once; return
//!   [`PostAction::Reregister`] (or call
//!   [`LoopHandle::update`](crate::LoopHandle::update)) to re-arm.
//!
//! Change the interest of a registered source with
//! [`LoopHandle::set_interest`].

use std::fmt;
use std::io;
use std::ops::Deref;

use crate::bindings::callop::plugin::io as wit;
use crate::bindings::callop::plugin::types::{EventKind, EventResult, PostAction as WitPost};
use crate::error::{Error, Result};
use crate::io::Pollable;
use crate::loop_handle::{
    CallbackReturn, EventSource, LoopHandle, PostAction, RegistrationToken, Sealed,
};

/// Which readiness to wait for (calloop's `Interest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Interest {
    /// Wait for readability.
    pub readable: bool,
    /// Wait for writability.
    pub writable: bool,
}

impl Interest {
    /// Nothing (only errors are reported).
    pub const EMPTY: Interest = Interest {
        readable: false,
        writable: false,
    };
    /// Readability.
    pub const READ: Interest = Interest {
        readable: true,
        writable: false,
    };
    /// Writability.
    pub const WRITE: Interest = Interest {
        readable: false,
        writable: true,
    };
    /// Both.
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
    };

    pub(crate) fn to_wit(self) -> wit::Interest {
        let mut i = wit::Interest::empty();
        if self.readable {
            i = i | wit::Interest::READABLE;
        }
        if self.writable {
            i = i | wit::Interest::WRITABLE;
        }
        i
    }
}

/// How readiness is reported (calloop's `Mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Once, then disarmed until re-registered.
    OneShot,
    /// In every iteration while ready.
    Level,
    /// When the object becomes ready (drain it until `WouldBlock`).
    Edge,
}

impl Mode {
    pub(crate) fn to_wit(self) -> wit::Mode {
        match self {
            Mode::OneShot => wit::Mode::Oneshot,
            Mode::Level => wit::Mode::Level,
            Mode::Edge => wit::Mode::Edge,
        }
    }
}

/// Readiness of an object (calloop's `Readiness`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Readiness {
    /// Readable (or end-of-file / pending connection).
    pub readable: bool,
    /// Writable.
    pub writable: bool,
    /// An error condition or hang-up.
    pub error: bool,
}

impl Readiness {
    pub(crate) fn from_wit(r: crate::bindings::callop::plugin::types::Readiness) -> Readiness {
        Readiness {
            readable: r.readable,
            writable: r.writable,
            error: r.error,
        }
    }
}

/// An I/O object wrapped for [`LoopHandle::insert_source`] (calloop's
/// `Generic`). `T` is one of the pollable objects: the sockets of
/// [`net`](crate::net) or a [`Fd`](crate::fs::Fd).
pub struct Generic<T: Pollable> {
    /// The object.
    pub file: T,
    /// The interest it is registered with.
    pub interest: Interest,
    /// The mode it is registered with.
    pub mode: Mode,
}

impl<T: Pollable> Generic<T> {
    /// Wraps `file` with an interest and a mode.
    pub fn new(file: T, interest: Interest, mode: Mode) -> Generic<T> {
        Generic {
            file,
            interest,
            mode,
        }
    }

    /// Unwraps the object.
    pub fn unwrap(self) -> T {
        self.file
    }
}

impl<T: Pollable + fmt::Debug> fmt::Debug for Generic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generic")
            .field("file", &self.file)
            .field("interest", &self.interest)
            .field("mode", &self.mode)
            .finish()
    }
}

/// The registered object as the callback sees it (calloop's `NoIoDrop`):
/// it derefs to the object, but cannot be replaced or dropped while it is
/// registered (dropping it would close it and silently end the
/// registration).
pub struct NoIoDrop<T>(T);

impl<T> NoIoDrop<T> {
    /// A shared reference to the object.
    pub fn get_ref(&self) -> &T {
        &self.0
    }
}

impl<T> Deref for NoIoDrop<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> AsRef<T> for NoIoDrop<T> {
    fn as_ref(&self) -> &T {
        &self.0
    }
}

impl<T> io::Read for NoIoDrop<T>
where
    for<'a> &'a T: io::Read,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.0).read(buf)
    }
}

impl<T> io::Write for NoIoDrop<T>
where
    for<'a> &'a T: io::Write,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        (&self.0).flush()
    }
}

impl<T: fmt::Debug> fmt::Debug for NoIoDrop<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Sealed for io::Result<PostAction> {}
impl CallbackReturn for io::Result<PostAction> {
    fn __into_wit(self) -> EventResult {
        match self {
            Ok(action) => EventResult::Post(action.to_wit()),
            Err(e) => {
                crate::log::log(
                    crate::log::Level::Error,
                    &format!("I/O source callback failed, removing the source: {e}"),
                );
                EventResult::Post(WitPost::Remove)
            }
        }
    }
}

impl<T: Pollable> Sealed for Generic<T> {}
impl<T: Pollable + 'static> EventSource for Generic<T> {
    type Event = Readiness;
    type Metadata = NoIoDrop<T>;
    type Ret = io::Result<PostAction>;

    fn __register(self) -> Result<(u64, NoIoDrop<T>)> {
        let id = wit::register(
            &self.file.__pollable(),
            self.interest.to_wit(),
            self.mode.to_wit(),
        )
        .map_err(Error::from)?;
        Ok((id, NoIoDrop(self.file)))
    }

    fn __convert(kind: EventKind) -> Option<Readiness> {
        match kind {
            EventKind::Readiness(r) => Some(Readiness::from_wit(r)),
            _ => None,
        }
    }
}

impl<State: 'static> LoopHandle<State> {
    /// Changes the interest and mode of a registered I/O source and
    /// re-applies its registration (queued like every registration change;
    /// effective after the current callback batch). Fails with
    /// [`WrongKind`](crate::ErrorCode::WrongKind) for other sources.
    pub fn set_interest(
        &self,
        token: &RegistrationToken,
        interest: Interest,
        mode: Mode,
    ) -> Result<()> {
        wit::set_interest(token.id(), interest.to_wit(), mode.to_wit()).map_err(Error::from)
    }
}
