//! I/O plumbing shared by [`net`](crate::net), [`fs`](crate::fs),
//! [`generic`](crate::generic) and [`futures`](crate::futures): the mapping
//! of host errors to [`std::io::Error`], the [`Pollable`] trait of objects
//! that can be registered on the loop, and small read/write helpers for
//! non-blocking objects.
//!
//! ## Errors
//!
//! Every I/O call returns `std::io::Result`. A call that cannot complete
//! without blocking fails with [`std::io::ErrorKind::WouldBlock`] (the host
//! reports it distinctly from failures). A failure carries the host's
//! category, available through [`error_kind`]; a capability refusal is
//! [`IoErrorKind::NotPermitted`] (std kind `PermissionDenied`) and its
//! message names the host flag that would grant it:
//!
//! ```no_run
//! # use callop_guest::io::IoErrorKind;
//! # use callop_guest::net::TcpStream;
//! match TcpStream::connect("10.0.0.1:80") {
//!     Err(e) if callop_guest::io::error_kind(&e) == Some(IoErrorKind::NotPermitted) => {
//!         // e.to_string() == "connect to 10.0.0.1:80 denied: grant it with --allow-net 10.0.0.1:80"
//!     }
//!     _ => {}
//! }
//! ```
//!
//! ## Helpers
//!
//! [`read_available`] reads until `WouldBlock` (or end-of-file) into a
//! buffer, [`write_pending`] writes a buffer until `WouldBlock`: the two
//! loops every readiness callback needs, and exactly what `Mode::Edge`
//! requires.

use std::fmt;
use std::io::{self, Read, Write};

use crate::bindings::callop::plugin::io as wit;

/// The host's category of an I/O failure (mirrors the WIT `io-error-kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoErrorKind {
    /// The embedder's policy forbids this; the message names the flag that
    /// would grant it.
    NotPermitted,
    /// The object was closed, or a granted descriptor was already taken.
    Closed,
    /// No such file, directory, socket or granted name.
    NotFound,
    /// Already exists.
    AlreadyExists,
    /// The operating system denied access.
    PermissionDenied,
    /// Address in use.
    AddrInUse,
    /// Address not available.
    AddrNotAvailable,
    /// Connection refused.
    ConnectionRefused,
    /// Connection reset.
    ConnectionReset,
    /// Connection aborted.
    ConnectionAborted,
    /// Not connected.
    NotConnected,
    /// Broken pipe.
    BrokenPipe,
    /// Timed out.
    TimedOut,
    /// Malformed argument.
    InvalidInput,
    /// A directory where a file was expected, or the reverse.
    IsDirectory,
    /// Not supported.
    Unsupported,
    /// Anything else.
    Other,
}

impl IoErrorKind {
    fn from_wit(k: wit::IoErrorKind) -> IoErrorKind {
        use wit::IoErrorKind as W;
        match k {
            W::NotPermitted => IoErrorKind::NotPermitted,
            W::Closed => IoErrorKind::Closed,
            W::NotFound => IoErrorKind::NotFound,
            W::AlreadyExists => IoErrorKind::AlreadyExists,
            W::PermissionDenied => IoErrorKind::PermissionDenied,
            W::AddrInUse => IoErrorKind::AddrInUse,
            W::AddrNotAvailable => IoErrorKind::AddrNotAvailable,
            W::ConnectionRefused => IoErrorKind::ConnectionRefused,
            W::ConnectionReset => IoErrorKind::ConnectionReset,
            W::ConnectionAborted => IoErrorKind::ConnectionAborted,
            W::NotConnected => IoErrorKind::NotConnected,
            W::BrokenPipe => IoErrorKind::BrokenPipe,
            W::TimedOut => IoErrorKind::TimedOut,
            W::InvalidInput => IoErrorKind::InvalidInput,
            W::IsDirectory => IoErrorKind::IsDirectory,
            W::Unsupported => IoErrorKind::Unsupported,
            W::Other => IoErrorKind::Other,
        }
    }

    /// The closest [`std::io::ErrorKind`].
    pub fn std_kind(self) -> io::ErrorKind {
        use io::ErrorKind as S;
        match self {
            IoErrorKind::NotPermitted | IoErrorKind::PermissionDenied => S::PermissionDenied,
            IoErrorKind::Closed => S::NotConnected,
            IoErrorKind::NotFound => S::NotFound,
            IoErrorKind::AlreadyExists => S::AlreadyExists,
            IoErrorKind::AddrInUse => S::AddrInUse,
            IoErrorKind::AddrNotAvailable => S::AddrNotAvailable,
            IoErrorKind::ConnectionRefused => S::ConnectionRefused,
            IoErrorKind::ConnectionReset => S::ConnectionReset,
            IoErrorKind::ConnectionAborted => S::ConnectionAborted,
            IoErrorKind::NotConnected => S::NotConnected,
            IoErrorKind::BrokenPipe => S::BrokenPipe,
            IoErrorKind::TimedOut => S::TimedOut,
            IoErrorKind::InvalidInput => S::InvalidInput,
            IoErrorKind::IsDirectory | IoErrorKind::Unsupported => S::Unsupported,
            IoErrorKind::Other => S::Other,
        }
    }
}

/// The payload of an [`io::Error`] built from a host failure.
#[derive(Debug)]
struct HostIoError {
    kind: IoErrorKind,
    message: String,
}

impl fmt::Display for HostIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HostIoError {}

/// The host's category of `err`, if it came from the host (`None` for
/// `WouldBlock` and for errors made by the guest itself).
pub fn error_kind(err: &io::Error) -> Option<IoErrorKind> {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<HostIoError>())
        .map(|e| e.kind)
}

/// Whether `err` is a capability refusal by the host's policy.
pub fn is_denied(err: &io::Error) -> bool {
    error_kind(err) == Some(IoErrorKind::NotPermitted)
}

pub(crate) fn from_failure(f: wit::IoFailure) -> io::Error {
    let kind = IoErrorKind::from_wit(f.kind);
    io::Error::new(
        kind.std_kind(),
        HostIoError {
            kind,
            message: f.message,
        },
    )
}

pub(crate) fn from_wit(e: wit::IoError) -> io::Error {
    match e {
        wit::IoError::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
        wit::IoError::Failed(f) => from_failure(f),
    }
}

pub(crate) fn invalid_input(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.into())
}

/// Largest read requested from the host in one call.
pub(crate) const MAX_READ: usize = 64 * 1024;

/// Copies a host read into `buf`; `data.len() <= buf.len()` by construction.
pub(crate) fn copy_read(data: Vec<u8>, buf: &mut [u8]) -> usize {
    let n = data.len().min(buf.len());
    buf[..n].copy_from_slice(&data[..n]);
    n
}

pub(crate) fn read_len(buf: &[u8]) -> u32 {
    buf.len().min(MAX_READ) as u32
}

mod sealed {
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// An I/O object the host can poll: it can be registered on the loop
/// through [`Generic`](crate::generic::Generic) or
/// [`Async`](crate::futures::Async). Implemented by the sockets of
/// [`net`](crate::net) and by [`Fd`](crate::fs::Fd) (granted descriptors and
/// stdin); sealed, since the set is the WIT's.
pub trait Pollable: sealed::Sealed {
    #[doc(hidden)]
    fn __pollable(&self) -> wit::Pollable<'_>;
}

/// Implements [`Pollable`] for `$t`, a wrapper of the WIT resource in its
/// `inner` field, as the `wit::Pollable` variant of the same name.
macro_rules! pollable {
    ($t:ident) => {
        impl $crate::io::Sealed for $t {}
        impl $crate::io::Pollable for $t {
            fn __pollable(&self) -> $crate::bindings::callop::plugin::io::Pollable<'_> {
                $crate::bindings::callop::plugin::io::Pollable::$t(&self.inner)
            }
        }
    };
}
pub(crate) use pollable;

/// The methods shared by the wrappers of the WIT byte streams ([`Fd`],
/// [`TcpStream`], [`UnixStream`]; the resource is their `inner` field):
/// inherent `read` (documented by the doc attributes given first, which
/// differ between wrappers) and `write` taking `&self`, `Read`/`Write` for
/// `$t` and `&$t` through them, and [`Pollable`]. A trailing `, shutdown`
/// adds the sockets' `shutdown` (only for use in [`net`](crate::net)).
///
/// [`Fd`]: crate::fs::Fd
/// [`TcpStream`]: crate::net::TcpStream
/// [`UnixStream`]: crate::net::UnixStream
macro_rules! byte_stream {
    ($(#[$read_doc:meta])* $t:ident $(, $shutdown:ident)?) => {
        impl $t {
            $(#[$read_doc])*
            pub fn read(&self, buf: &mut [u8]) -> ::std::io::Result<usize> {
                if buf.is_empty() {
                    return Ok(0);
                }
                let data = self.inner.read($crate::io::read_len(buf));
                Ok($crate::io::copy_read(data.map_err($crate::io::from_wit)?, buf))
            }

            /// Writes a prefix of `buf`; returns its length.
            pub fn write(&self, buf: &[u8]) -> ::std::io::Result<usize> {
                Ok(self.inner.write(buf).map_err($crate::io::from_wit)? as usize)
            }
            $(
                /// Shuts down one or both halves.
                pub fn $shutdown(&self, h: ::std::net::Shutdown) -> ::std::io::Result<()> {
                    self.inner.$shutdown($crate::net::how(h)).map_err($crate::io::from_wit)
                }
            )?
        }

        $crate::io::byte_stream!(@std $t, $t);
        $crate::io::byte_stream!(@std $t, &$t);
        $crate::io::pollable!($t);
    };
    (@std $t:ident, $ty:ty) => {
        impl ::std::io::Read for $ty {
            fn read(&mut self, buf: &mut [u8]) -> ::std::io::Result<usize> {
                $t::read(self, buf)
            }
        }
        impl ::std::io::Write for $ty {
            fn write(&mut self, buf: &[u8]) -> ::std::io::Result<usize> {
                $t::write(self, buf)
            }
            fn flush(&mut self) -> ::std::io::Result<()> {
                Ok(())
            }
        }
    };
}
pub(crate) use byte_stream;

/// Outcome of [`read_available`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Bytes appended to the buffer.
    pub bytes: usize,
    /// The object reported end-of-file (the peer closed its writing end).
    pub eof: bool,
}

/// Reads from a non-blocking object until it would block or reaches
/// end-of-file, appending to `buf`. At most `limit` bytes are read (pass
/// `usize::MAX` for no limit; with a limit in `Mode::Edge` the caller must
/// come back for the rest itself).
///
/// `WouldBlock` is not an error here; other errors are returned (bytes read
/// before the error stay in `buf`).
pub fn read_available<R: Read>(
    mut r: R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<ReadOutcome> {
    let mut bytes = 0;
    let mut chunk = vec![0u8; MAX_READ];
    while bytes < limit {
        let want = (limit - bytes).min(MAX_READ);
        match r.read(&mut chunk[..want]) {
            Ok(0) => return Ok(ReadOutcome { bytes, eof: true }),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                bytes += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(ReadOutcome { bytes, eof: false })
}

/// Writes as much of `pending` as the object accepts without blocking and
/// removes the written prefix from it. Returns the number of bytes written;
/// `pending.is_empty()` afterwards means everything went out. `WouldBlock`
/// is not an error here.
pub fn write_pending<W: Write>(mut w: W, pending: &mut Vec<u8>) -> io::Result<usize> {
    let mut written = 0;
    while written < pending.len() {
        match w.write(&pending[written..]) {
            Ok(0) => {
                pending.drain(..written);
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                pending.drain(..written);
                return Err(e);
            }
        }
    }
    pending.drain(..written);
    Ok(written)
}
