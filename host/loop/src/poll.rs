//! [`Poll`], the registration interface handed to event sources, and its small value types.

use std::{
    cell::RefCell,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    rc::Rc,
    time::{Duration, Instant},
};

use crate::{
    RegistrationToken,
    sources::timer::TimerWheel,
    sys::{Notifier, Poller, SysEvent},
    token::TokenInner,
};

/// How a file descriptor is watched.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Report readiness once, then disarm until the source is re-registered
    /// ([`LoopHandle::update`](crate::LoopHandle::update) or [`PostAction::Reregister`](crate::PostAction::Reregister)).
    OneShot,
    /// Report readiness for as long as the condition holds.
    Level,
    /// Report readiness only when it changes: the callback must drain the fd until it would block.
    Edge,
}

/// The readiness a file descriptor is watched for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Interest {
    /// Wait for the fd to be readable.
    pub readable: bool,
    /// Wait for the fd to be writable.
    pub writable: bool,
}

impl Interest {
    /// Wait for nothing.
    pub const EMPTY: Interest = Interest {
        readable: false,
        writable: false,
    };
    /// Wait for readability.
    pub const READ: Interest = Interest {
        readable: true,
        writable: false,
    };
    /// Wait for writability.
    pub const WRITE: Interest = Interest {
        readable: false,
        writable: true,
    };
    /// Wait for both.
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
    };
}

/// The readiness reported for a file descriptor.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// The fd is readable (this includes end of stream and hang-up: a read will not block).
    pub readable: bool,
    /// The fd is writable.
    pub writable: bool,
    /// The fd is in an error or hang-up state (`EPOLLERR`/`EPOLLHUP`, kqueue `EV_ERROR`/`EV_EOF`).
    pub error: bool,
}

impl Readiness {
    /// No readiness.
    pub const EMPTY: Readiness = Readiness {
        readable: false,
        writable: false,
        error: false,
    };
}

/// One event of a dispatch: which token, with which readiness.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PollEvent {
    pub(crate) readiness: Readiness,
    pub(crate) token: Token,
}

/// Hands out the [`Token`]s a source registers its file descriptors (or timers) with.
///
/// Each call to [`token`](Self::token) gives a new token of the same source, so a composite
/// source can tell its children apart in [`EventSource::process_events`](crate::EventSource::process_events).
#[derive(Debug)]
pub struct TokenFactory {
    next_token: TokenInner,
}

impl TokenFactory {
    pub(crate) fn new(token: TokenInner) -> TokenFactory {
        TokenFactory {
            next_token: token.forget_sub_id(),
        }
    }

    pub(crate) fn registration_token(&self) -> RegistrationToken {
        RegistrationToken::new(self.next_token.forget_sub_id())
    }

    /// Produces a new unique token for this source.
    ///
    /// # Panics
    /// After 65,535 tokens in one registration.
    pub fn token(&mut self) -> Token {
        let token = self.next_token;
        self.next_token = token.increment_sub_id();
        Token { inner: token }
    }
}

/// Identifies one registration of one source with the poller.
///
/// Tokens are produced by a [`TokenFactory`]; the loop routes each event to the source whose
/// token it carries. A token of a removed source is never routed anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Token {
    pub(crate) inner: TokenInner,
}

/// The polling system: what an [`EventSource`](crate::EventSource) registers with.
///
/// Sources receive a `&mut Poll` in `register`, `reregister` and `unregister`.
pub struct Poll {
    pub(crate) poller: Poller,
    sys_events: RefCell<Vec<SysEvent>>,
    pub(crate) timers: Rc<RefCell<TimerWheel>>,
}

impl std::fmt::Debug for Poll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Poll { ... }")
    }
}

impl Poll {
    pub(crate) fn new() -> crate::Result<Poll> {
        Ok(Poll {
            poller: Poller::new()?,
            sys_events: RefCell::new(Vec::with_capacity(256)),
            timers: Rc::new(RefCell::new(TimerWheel::new())),
        })
    }

    /// Waits up to `timeout` (and no later than the next timer) and appends the events to `out`:
    /// first the ready file descriptors, then every expired timer in deadline order.
    pub(crate) fn poll(
        &self,
        timeout: Option<Duration>,
        out: &mut Vec<PollEvent>,
    ) -> crate::Result<()> {
        let now = Instant::now();
        let user_deadline = timeout.map(|t| {
            now.checked_add(t)
                .unwrap_or(now + Duration::from_secs(86400 * 365))
        });
        let timer_deadline = self.timers.borrow().next_deadline();
        let deadline = match (user_deadline, timer_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };

        let mut sys_events = self.sys_events.borrow_mut();
        sys_events.clear();
        self.poller.wait(&mut sys_events, deadline)?;
        out.extend(sys_events.iter().map(|ev| PollEvent {
            readiness: ev.readiness,
            token: Token {
                inner: TokenInner::from_key(ev.key),
            },
        }));
        drop(sys_events);

        let now = Instant::now();
        let mut timers = self.timers.borrow_mut();
        while let Some(token) = timers.next_expired(now) {
            out.push(PollEvent {
                readiness: Readiness {
                    readable: true,
                    writable: false,
                    error: false,
                },
                token,
            });
        }
        Ok(())
    }

    /// Registers a file descriptor.
    ///
    /// # Safety
    /// The file descriptor must stay open until it is [`unregister`](Self::unregister)ed.
    pub unsafe fn register(
        &self,
        fd: impl AsFd,
        interest: Interest,
        mode: Mode,
        token: Token,
    ) -> crate::Result<()> {
        self.poller
            .add(fd.as_fd(), token.inner.to_key(), interest, mode)
            .map_err(Into::into)
    }

    /// Changes the interest, mode or token of a registered file descriptor (and re-arms a
    /// [`Mode::OneShot`] one).
    pub fn reregister(
        &self,
        fd: impl AsFd,
        interest: Interest,
        mode: Mode,
        token: Token,
    ) -> crate::Result<()> {
        self.poller
            .modify(fd.as_fd(), token.inner.to_key(), interest, mode)
            .map_err(Into::into)
    }

    /// Unregisters a file descriptor.
    pub fn unregister(&self, fd: impl AsFd) -> crate::Result<()> {
        self.poller.delete(fd.as_fd()).map_err(Into::into)
    }

    pub(crate) fn notifier(&self) -> Notifier {
        self.poller.notifier()
    }
}

impl AsFd for Poll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.poller.as_fd()
    }
}

impl AsRawFd for Poll {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.poller.as_fd().as_raw_fd()
    }
}
