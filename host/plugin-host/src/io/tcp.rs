//! The `tcp-listener` and `tcp-stream` resources.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};

use wasmtime::component::Resource;

use super::{Pollable, address, nb, nonblocking, os, wit};
use crate::state::PluginState;

/// Host side of a guest `tcp-listener`.
pub type TcpListenerRes = Pollable<TcpListener>;

/// Host side of a guest `tcp-stream`.
pub type TcpStreamRes = Pollable<TcpStream>;

const LISTENER: &str = "tcp-listener";
const STREAM: &str = "tcp-stream";

/// A non-blocking connect (EINPROGRESS is success: writability tells).
pub(super) fn connect_nonblocking(addr: SocketAddr) -> io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(TcpStream::from(fd))
}

impl wit::HostTcpListener for PluginState {
    fn accept(
        &mut self,
        self_: Resource<TcpListenerRes>,
    ) -> Result<(Resource<TcpStreamRes>, String), wit::IoError> {
        let _t = crate::stats::HostCall::start();
        let (s, peer) = self
            .pollable(&self_, LISTENER)?
            .accept()
            .map_err(|e| nb("accept", e))?;
        nonblocking(s.set_nonblocking(true)).map_err(wit::IoError::Failed)?;
        let r = self
            .push_io(Pollable::new(s))
            .map_err(wit::IoError::Failed)?;
        Ok((r, peer.to_string()))
    }

    fn local_address(&mut self, self_: Resource<TcpListenerRes>) -> Result<String, wit::IoError> {
        let _t = crate::stats::HostCall::start();
        address(
            self.pollable(&self_, LISTENER)?.local_addr(),
            "local address",
        )
    }

    fn drop(&mut self, rep: Resource<TcpListenerRes>) -> wasmtime::Result<()> {
        let _t = crate::stats::HostCall::start();
        self.drop_pollable(rep);
        Ok(())
    }
}

impl wit::HostTcpStream for PluginState {
    fn read(&mut self, self_: Resource<TcpStreamRes>, max: u32) -> Result<Vec<u8>, wit::IoError> {
        let _t = crate::stats::HostCall::start();
        self.stream_read(&self_, max, STREAM)
    }

    fn write(&mut self, self_: Resource<TcpStreamRes>, data: Vec<u8>) -> Result<u32, wit::IoError> {
        let _t = crate::stats::HostCall::start();
        self.stream_write(&self_, &data, STREAM)
    }

    fn shutdown(
        &mut self,
        self_: Resource<TcpStreamRes>,
        h: wit::ShutdownHow,
    ) -> Result<(), wit::IoError> {
        let _t = crate::stats::HostCall::start();
        self.stream_shutdown(&self_, h, STREAM)
    }

    fn take_error(&mut self, self_: Resource<TcpStreamRes>) -> Option<wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        let s = self.pollable(&self_, STREAM).ok()?;
        match s.take_error() {
            Ok(None) => None,
            Ok(Some(e)) | Err(e) => Some(os("connect", e)),
        }
    }

    fn local_address(&mut self, self_: Resource<TcpStreamRes>) -> Result<String, wit::IoError> {
        let _t = crate::stats::HostCall::start();
        address(self.pollable(&self_, STREAM)?.local_addr(), "local address")
    }

    fn peer_address(&mut self, self_: Resource<TcpStreamRes>) -> Result<String, wit::IoError> {
        let _t = crate::stats::HostCall::start();
        address(self.pollable(&self_, STREAM)?.peer_addr(), "peer address")
    }

    fn set_nodelay(
        &mut self,
        self_: Resource<TcpStreamRes>,
        enabled: bool,
    ) -> Result<(), wit::IoError> {
        let _t = crate::stats::HostCall::start();
        self.pollable(&self_, STREAM)?
            .set_nodelay(enabled)
            .map_err(|e| nb("set nodelay", e))
    }

    fn drop(&mut self, rep: Resource<TcpStreamRes>) -> wasmtime::Result<()> {
        let _t = crate::stats::HostCall::start();
        self.drop_pollable(rep);
        Ok(())
    }
}
