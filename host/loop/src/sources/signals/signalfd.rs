//! Signals on Linux and Android: a `signalfd`, with the signals blocked in the thread's mask.

use std::{
    io,
    os::fd::{AsFd, BorrowedFd},
};

use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::signalfd::{SfdFlags, SignalFd, siginfo};

use super::Signal;

/// What an [`Event`](super::Event) carries.
pub(super) type Info = siginfo;

pub(super) fn signal_number(info: &Info) -> i32 {
    info.ssi_signo as i32
}

#[derive(Debug)]
pub(super) struct SignalSource {
    sfd: SignalFd,
    /// The signals listened to (the signalfd's mask).
    mask: SigSet,
    /// The signals of `mask` this source blocked itself: the ones to unblock when it lets go.
    /// Signals the thread had already blocked stay blocked.
    blocked_by_us: SigSet,
}

fn set_of(signals: &[Signal]) -> SigSet {
    signals.iter().map(|s| s.as_nix()).collect()
}

impl SignalSource {
    pub(super) fn new(signals: &[Signal]) -> crate::Result<SignalSource> {
        let mut source = SignalSource {
            // Created with an empty mask first, so `block` below is the only path that fills it.
            sfd: SignalFd::with_flags(
                &SigSet::empty(),
                SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
            )
            .map_err(io::Error::from)?,
            mask: SigSet::empty(),
            blocked_by_us: SigSet::empty(),
        };
        source.add(signals)?;
        Ok(source)
    }

    /// Blocks the new signals in the thread's mask, remembering which ones were not blocked yet.
    fn block(&mut self, added: &SigSet) -> io::Result<()> {
        let previous = added.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
        for s in added {
            if !self.mask.contains(s) {
                self.mask.add(s);
                if !previous.contains(s) {
                    self.blocked_by_us.add(s);
                }
            }
        }
        Ok(())
    }

    pub(super) fn add(&mut self, signals: &[Signal]) -> crate::Result<()> {
        self.block(&set_of(signals))?;
        self.sfd.set_mask(&self.mask).map_err(io::Error::from)?;
        Ok(())
    }

    pub(super) fn remove(&mut self, signals: &[Signal]) -> crate::Result<()> {
        let mut unblock = SigSet::empty();
        for s in signals.iter().map(|s| s.as_nix()) {
            self.mask.remove(s);
            if self.blocked_by_us.contains(s) {
                self.blocked_by_us.remove(s);
                unblock.add(s);
            }
        }
        // Stop reporting them first, then give them back to the thread.
        self.sfd.set_mask(&self.mask).map_err(io::Error::from)?;
        unblock.thread_unblock().map_err(io::Error::from)?;
        Ok(())
    }

    pub(super) fn set(&mut self, signals: &[Signal]) -> crate::Result<()> {
        let new = set_of(signals);
        let removed: Vec<Signal> = Signal::ALL
            .iter()
            .copied()
            .filter(|s| self.mask.contains(s.as_nix()) && !new.contains(s.as_nix()))
            .collect();
        self.add(signals)?;
        self.remove(&removed)
    }

    pub(super) fn drain(&mut self, mut f: impl FnMut(Info)) -> io::Result<()> {
        loop {
            match self.sfd.read_signal() {
                Ok(Some(info)) => f(info),
                Ok(None) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The descriptor the loop polls (the signalfd): readable while signals are pending.
impl AsFd for SignalSource {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sfd.as_fd()
    }
}

impl Drop for SignalSource {
    fn drop(&mut self) {
        if let Err(e) = self.blocked_by_us.thread_unblock() {
            tracing::warn!("failed to unblock signals: {e}");
        }
    }
}
