//! Signals on Linux and Android: a `signalfd`, with the signals blocked in the thread's mask.

use std::io;

use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::signalfd::{SfdFlags, SignalFd, siginfo};

use super::Signal;
use crate::{Interest, Mode, Poll, Token};

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
    token: Option<Token>,
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
            token: None,
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

    pub(super) fn owns(&self, token: Token) -> bool {
        self.token == Some(token)
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

    pub(super) fn register(&mut self, poll: &mut Poll, token: Token) -> crate::Result<()> {
        // SAFETY: the signalfd is owned by this source, which unregisters it before dropping it
        // (the loop unregisters a source before dropping it).
        unsafe { poll.register(&self.sfd, Interest::READ, Mode::Level, token)? };
        self.token = Some(token);
        Ok(())
    }

    pub(super) fn reregister(&mut self, poll: &mut Poll, token: Token) -> crate::Result<()> {
        poll.reregister(&self.sfd, Interest::READ, Mode::Level, token)?;
        self.token = Some(token);
        Ok(())
    }

    pub(super) fn unregister(&mut self, poll: &mut Poll) -> crate::Result<()> {
        poll.unregister(&self.sfd)?;
        self.token = None;
        Ok(())
    }
}

impl Drop for SignalSource {
    fn drop(&mut self) {
        if let Err(e) = self.blocked_by_us.thread_unblock() {
            tracing::warn!("failed to unblock signals: {e}");
        }
    }
}
