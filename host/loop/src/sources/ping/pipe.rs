//! The wake-up fd of a ping on the platforms without eventfd: a non-blocking pipe.
//!
//! A ping writes a [`PING`] byte and the close marker a [`CLOSE`] byte. Both ends stay open for
//! as long as the source or a sender exists, so the read end never reaches end-of-file (which
//! would keep it readable forever) and a late ping never hits a closed pipe (`EPIPE`/`SIGPIPE`).
//! The pending flag keeps at most one ping byte (plus the close byte) in the pipe, so it cannot
//! fill up.

use std::{
    io,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
};

use rustix::io::Errno;

use super::Drained;

const PING: u8 = 0;
const CLOSE: u8 = 1;

#[derive(Debug)]
pub(super) struct WakeFd {
    read: OwnedFd,
    write: OwnedFd,
}

#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "tvos",
    target_os = "visionos",
    target_os = "watchos"
))]
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::io::{FdFlags, fcntl_getfd, fcntl_setfd};

    // Apple has no `pipe2`: set the flags afterwards.
    let (read, write) = rustix::pipe::pipe()?;
    for fd in [&read, &write] {
        fcntl_setfd(fd, fcntl_getfd(fd)? | FdFlags::CLOEXEC)?;
        let flags = rustix::fs::fcntl_getfl(fd)?;
        rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    }
    Ok((read, write))
}

#[cfg(not(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "tvos",
    target_os = "visionos",
    target_os = "watchos"
)))]
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pipe::{PipeFlags, pipe_with};
    Ok(pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?)
}

impl WakeFd {
    pub(super) fn new() -> io::Result<WakeFd> {
        let (read, write) = pipe()?;
        Ok(WakeFd { read, write })
    }

    fn put(&self, byte: u8) -> io::Result<()> {
        match rustix::io::write(&self.write, &[byte]) {
            // `AGAIN`: the pipe is full, hence readable anyway.
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn ping(&self) -> io::Result<()> {
        self.put(PING)
    }

    pub(super) fn close(&self) -> io::Result<()> {
        self.put(CLOSE)
    }

    pub(super) fn drain(&self) -> io::Result<Drained> {
        let mut drained = Drained::default();
        let mut buf = [0u8; 32];
        loop {
            match rustix::io::read(&self.read, &mut buf) {
                // Unreachable while we hold the write end; stop rather than loop.
                Ok(0) => break,
                Ok(n) => {
                    for &byte in &buf[..n] {
                        match byte {
                            CLOSE => drained.closed = true,
                            _ => drained.pinged = true,
                        }
                    }
                }
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(drained)
    }
}

impl AsFd for WakeFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}
