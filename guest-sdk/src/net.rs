//! Host-owned sockets: [`TcpListener`], [`TcpStream`], [`UdpSocket`],
//! [`UnixListener`], [`UnixStream`].
//!
//! They look like their `std::net` / `std::os::unix::net` namesakes, but
//! they are **always non-blocking** (a call that would block fails with
//! `ErrorKind::WouldBlock`) and every bind and connect is checked by the
//! host against the capabilities the embedder granted (`--allow-net` for IP
//! sockets, `--dir` for Unix socket paths). Register them on the loop with
//! [`Generic`](crate::generic::Generic) or use them from async code with
//! [`Async`](crate::futures::Async).
//!
//! ```no_run
//! # use callop_guest::{LoopHandle, PostAction};
//! # struct State;
//! # fn example(handle: &LoopHandle<State>) -> Result<(), Box<dyn std::error::Error>> {
//! use callop_guest::generic::{Generic, Interest, Mode};
//! use callop_guest::net::TcpListener;
//!
//! let listener = TcpListener::bind("127.0.0.1:7000")?; // needs --allow-net 127.0.0.1:7000
//! handle.insert_source(Generic::new(listener, Interest::READ, Mode::Level),
//!     |_readiness, listener, state: &mut State| {
//!         while let Ok((stream, peer)) = listener.accept() { /* ... */ }
//!         Ok(PostAction::Continue)
//!     })?;
//! # Ok(())
//! # }
//! ```
//!
//! Addresses are `ip:port` text or [`SocketAddr`]s (there is no name
//! resolution in the sandbox). Dropping a socket closes it on the host.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};

use crate::bindings::callop::plugin::io as wit;
use crate::io::{
    byte_stream, copy_read, from_failure, from_wit, invalid_input, pollable, read_len,
};

fn parse_addr(s: &str) -> io::Result<SocketAddr> {
    s.parse()
        .map_err(|_| invalid_input(format!("host returned a malformed address {s:?}")))
}

pub(crate) fn how(h: Shutdown) -> wit::ShutdownHow {
    match h {
        Shutdown::Read => wit::ShutdownHow::Read,
        Shutdown::Write => wit::ShutdownHow::Write,
        Shutdown::Both => wit::ShutdownHow::Both,
    }
}

/// A TCP listener (`std::net::TcpListener`, non-blocking).
pub struct TcpListener {
    inner: wit::TcpListener,
}

impl TcpListener {
    /// Binds to `addr` (e.g. `"127.0.0.1:0"`; port 0 picks a free port).
    /// Needs `--allow-net` for that address and port.
    pub fn bind(addr: impl ToString) -> io::Result<TcpListener> {
        let inner = wit::bind_tcp(&addr.to_string()).map_err(from_failure)?;
        Ok(TcpListener { inner })
    }

    /// Accepts a pending connection; `WouldBlock` if there is none.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (inner, peer) = self.inner.accept().map_err(from_wit)?;
        Ok((TcpStream { inner }, parse_addr(&peer)?))
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        parse_addr(&self.inner.local_address().map_err(from_wit)?)
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.local_addr().ok())
            .finish()
    }
}

pollable!(TcpListener);

/// A TCP stream (`std::net::TcpStream`, non-blocking).
pub struct TcpStream {
    inner: wit::TcpStream,
}

impl TcpStream {
    /// Starts connecting to `addr` and returns at once (non-blocking
    /// connect). Wait for writability (e.g. `Interest::WRITE`), then check
    /// [`take_error`](Self::take_error): `Ok(None)` means connected. Needs
    /// `--allow-net` for that address and port.
    pub fn connect(addr: impl ToString) -> io::Result<TcpStream> {
        let inner = wit::connect_tcp(&addr.to_string()).map_err(from_failure)?;
        Ok(TcpStream { inner })
    }

    /// The pending socket error (after a non-blocking connect: `Ok(None)`
    /// means the connection succeeded).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(self.inner.take_error().map(from_failure))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        parse_addr(&self.inner.local_address().map_err(from_wit)?)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        parse_addr(&self.inner.peer_address().map_err(from_wit)?)
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, enabled: bool) -> io::Result<()> {
        self.inner.set_nodelay(enabled).map_err(from_wit)
    }
}

byte_stream!(
    /// Reads into `buf`; `Ok(0)` is end-of-file, `WouldBlock` means no data
    /// yet.
    TcpStream,
    shutdown
);

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

/// A UDP socket (`std::net::UdpSocket`, non-blocking).
pub struct UdpSocket {
    inner: wit::UdpSocket,
}

impl UdpSocket {
    /// Binds to `addr`. Needs `--allow-net` for that address and port.
    pub fn bind(addr: impl ToString) -> io::Result<UdpSocket> {
        let inner = wit::bind_udp(&addr.to_string()).map_err(from_failure)?;
        Ok(UdpSocket { inner })
    }

    /// Sends one datagram to `addr` (checked against `--allow-net`).
    pub fn send_to(&self, buf: &[u8], addr: impl ToString) -> io::Result<usize> {
        Ok(self
            .inner
            .send_to(buf, &addr.to_string())
            .map_err(from_wit)? as usize)
    }

    /// Receives one datagram into `buf` (truncated if longer) and its
    /// sender; `WouldBlock` if none is queued.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (data, from) = self.inner.recv_from(read_len(buf)).map_err(from_wit)?;
        Ok((copy_read(data, buf), parse_addr(&from)?))
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        parse_addr(&self.inner.local_address().map_err(from_wit)?)
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local", &self.local_addr().ok())
            .finish()
    }
}

pollable!(UdpSocket);

/// A Unix-domain listener bound at a path inside a granted directory.
pub struct UnixListener {
    inner: wit::UnixListener,
}

impl UnixListener {
    /// Binds at the guest path `path`, inside a read-write `--dir`.
    pub fn bind(path: &str) -> io::Result<UnixListener> {
        let inner = wit::bind_unix(path).map_err(from_failure)?;
        Ok(UnixListener { inner })
    }

    /// Accepts a pending connection; `WouldBlock` if there is none.
    pub fn accept(&self) -> io::Result<UnixStream> {
        Ok(UnixStream {
            inner: self.inner.accept().map_err(from_wit)?,
        })
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnixListener")
    }
}

pollable!(UnixListener);

/// A connected Unix-domain stream.
pub struct UnixStream {
    inner: wit::UnixStream,
}

impl UnixStream {
    /// Connects to the socket at guest path `path` (inside a `--dir`).
    pub fn connect(path: &str) -> io::Result<UnixStream> {
        Ok(UnixStream {
            inner: wit::connect_unix(path).map_err(from_failure)?,
        })
    }
}

byte_stream!(
    /// Reads into `buf`; `Ok(0)` is end-of-file.
    UnixStream,
    shutdown
);

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnixStream")
    }
}
