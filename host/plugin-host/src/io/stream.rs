//! Read, write and shutdown shared by the byte-stream resources
//! (`tcp-stream`, `unix-stream`, `fd`): one non-blocking call each,
//! `would-block` kept distinct, reads capped at [`MAX_READ`].

use std::io::{self, Read, Write};
use std::net::Shutdown;

use wasmtime::component::Resource;

use super::{MAX_READ, Pollable, nb, wit};
use crate::state::PluginState;

impl PluginState {
    /// `read(max)` of a byte-stream resource named `what`.
    pub(super) fn stream_read<T>(
        &self,
        r: &Resource<Pollable<T>>,
        max: u32,
        what: &str,
    ) -> Result<Vec<u8>, wit::IoError>
    where
        T: Send + Sync + 'static,
        for<'a> &'a T: Read,
    {
        let mut s = self.pollable(r, what)?;
        let mut buf = vec![0u8; max.min(MAX_READ) as usize];
        loop {
            match s.read(&mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(nb("read", e)),
            }
        }
    }

    /// `write(data)` of a byte-stream resource named `what`: how much of
    /// `data` was written.
    pub(super) fn stream_write<T>(
        &self,
        r: &Resource<Pollable<T>>,
        data: &[u8],
        what: &str,
    ) -> Result<u32, wit::IoError>
    where
        T: Send + Sync + 'static,
        for<'a> &'a T: Write,
    {
        let mut s = self.pollable(r, what)?;
        loop {
            match s.write(data) {
                Ok(n) => return Ok(n as u32),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(nb("write", e)),
            }
        }
    }

    /// `shutdown(how)` of a socket stream resource named `what`.
    pub(super) fn stream_shutdown<T: Socket>(
        &self,
        r: &Resource<Pollable<T>>,
        h: wit::ShutdownHow,
        what: &str,
    ) -> Result<(), wit::IoError> {
        let how = match h {
            wit::ShutdownHow::Read => Shutdown::Read,
            wit::ShutdownHow::Write => Shutdown::Write,
            wit::ShutdownHow::Both => Shutdown::Both,
        };
        self.pollable(r, what)?
            .shutdown(how)
            .map_err(|e| nb("shutdown", e))
    }
}

/// A connected socket stream: it can be shut down.
pub(super) trait Socket: Send + Sync + 'static {
    /// Shuts down the read half, the write half or both.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
}

impl Socket for std::net::TcpStream {
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        std::net::TcpStream::shutdown(self, how)
    }
}

impl Socket for std::os::unix::net::UnixStream {
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        std::os::unix::net::UnixStream::shutdown(self, how)
    }
}
