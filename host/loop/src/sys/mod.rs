//! The OS layer: one tiny poller type per backend.
//!
//! Everything above this module is OS-agnostic. A backend provides:
//!
//! * `Poller::new()`, `add`, `modify`, `delete` for file descriptors, keyed by a `u64`;
//! * `Poller::wait(out, deadline)`, which blocks until an fd is ready, the notifier fires, or
//!   the (nanosecond-precise) deadline passes, and appends `(key, Readiness)` pairs to `out`;
//! * `Poller::notifier()`, a `Send + Sync` handle that wakes a blocked `wait` from any thread.
//!
//! Linux and Android use epoll (plus an eventfd for wake-ups and a timerfd for sub-millisecond
//! deadlines); macOS, iOS and the BSDs use kqueue (a pipe for wake-ups, `kevent`'s
//! nanosecond timeout for deadlines, `EVFILT_SIGNAL` for signals).

use std::{
    io,
    os::fd::{BorrowedFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use crate::Readiness;

#[cfg(any(target_os = "linux", target_os = "android"))]
#[path = "epoll.rs"]
mod backend;

#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "tvos",
    target_os = "watchos",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
))]
#[path = "kqueue.rs"]
mod backend;

pub(crate) use backend::Poller;

/// Wakes a [`Poller`] from any thread.
#[derive(Debug, Clone)]
pub(crate) struct Notifier(Arc<NotifyInner>);

#[derive(Debug)]
struct NotifyInner {
    /// The backend's wake-up descriptor(s), which the poller watches.
    waker: backend::Waker,
    /// Set while a wake-up is pending, so that a burst of `notify` calls costs one write.
    pending: AtomicBool,
}

impl Notifier {
    fn new(waker: backend::Waker) -> Notifier {
        Notifier(Arc::new(NotifyInner {
            waker,
            pending: AtomicBool::new(false),
        }))
    }

    pub(crate) fn notify(&self) -> io::Result<()> {
        if !self.0.pending.swap(true, Ordering::AcqRel) {
            self.0.waker.wake()?;
        }
        Ok(())
    }

    /// Consumes a wake-up: for the poller, when the waker is reported readable.
    fn consume(&self) {
        // Drain first, then clear the flag: a `notify` racing with us either sees the flag
        // still set (and this wake-up covers it) or writes anew.
        self.0.waker.drain();
        self.0.pending.store(false, Ordering::Release);
    }
}

/// Removes file descriptors from a [`Poller`] after the fact, from anywhere (`Send + Sync`, keeps
/// the poller's epoll or kqueue instance open): what a source dropped while still registered uses.
#[derive(Debug, Clone)]
pub(crate) struct Unregisterer(Arc<OwnedFd>);

impl Unregisterer {
    pub(crate) fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        backend::delete(&self.0, fd)
    }
}

/// One readiness report from the OS, before it is turned into a calloop `Token`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SysEvent {
    pub(crate) key: u64,
    pub(crate) readiness: Readiness,
}

/// Keys at or above this value are reserved for the backends' own descriptors.
pub(crate) const RESERVED_KEYS: u64 = u64::MAX - 16;

/// Refuses the keys reserved for the backends' own descriptors.
fn check_key(key: u64) -> io::Result<()> {
    if key >= RESERVED_KEYS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "token out of range",
        ));
    }
    Ok(())
}
