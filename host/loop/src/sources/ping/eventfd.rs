//! The wake-up fd of a ping on Linux and Android: an eventfd.
//!
//! An eventfd is a 64-bit counter: writes add, a read returns the sum and resets it. A ping adds
//! [`PING`] and the close marker adds [`CLOSE`]; since the close marker is written exactly once,
//! its bit (the lowest) says whether the source was closed, and the rest whether it was pinged.

use std::{
    io,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
};

use rustix::{
    event::{EventfdFlags, eventfd},
    io::Errno,
};

use super::Drained;

const PING: u64 = 2;
const CLOSE: u64 = 1;

#[derive(Debug)]
pub(super) struct WakeFd(OwnedFd);

impl WakeFd {
    pub(super) fn new() -> io::Result<WakeFd> {
        Ok(WakeFd(eventfd(
            0,
            EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
        )?))
    }

    fn add(&self, value: u64) -> io::Result<()> {
        match rustix::io::write(&self.0, &value.to_ne_bytes()) {
            // `AGAIN`: the counter is saturated, so the fd is readable anyway. (The pending flag
            // makes that unreachable in practice.)
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn ping(&self) -> io::Result<()> {
        self.add(PING)
    }

    pub(super) fn close(&self) -> io::Result<()> {
        self.add(CLOSE)
    }

    pub(super) fn drain(&self) -> io::Result<Drained> {
        let mut buf = [0u8; 8];
        match rustix::io::read(&self.0, &mut buf) {
            Ok(_) => {
                let counter = u64::from_ne_bytes(buf);
                Ok(Drained {
                    pinged: counter & !CLOSE != 0,
                    closed: counter & CLOSE != 0,
                })
            }
            // Nothing pending (a spurious wake-up).
            Err(Errno::AGAIN) => Ok(Drained::default()),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsFd for WakeFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
