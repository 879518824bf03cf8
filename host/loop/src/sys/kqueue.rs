//! kqueue backend (macOS, iOS, FreeBSD, NetBSD, OpenBSD, DragonFly).
//!
//! Wake-ups go through a non-blocking pipe (portable across every kqueue platform); deadlines use
//! `kevent`'s nanosecond timeout; signals use `EVFILT_SIGNAL` (see [`Poller::add_signal`]).

use std::{
    cell::RefCell,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
    sync::Arc,
    time::Instant,
};

use rustix::{
    event::kqueue::{self, Event, EventFilter, EventFlags},
    time::Timespec,
};

use super::{Notifier, RESERVED_KEYS, SysEvent, Unregisterer, check_key};
use crate::{Interest, Mode, Readiness};

const NOTIFY_KEY: u64 = RESERVED_KEYS;

/// The non-blocking pipe that wakes a [`Poller`] (see [`Notifier`]).
#[derive(Debug)]
pub(super) struct Waker {
    reader: OwnedFd,
    writer: OwnedFd,
}

impl Waker {
    pub(super) fn wake(&self) -> io::Result<()> {
        match rustix::io::write(&self.writer, &[1u8]) {
            Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn drain(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = rustix::io::read(&self.reader, &mut buf) {
            if n == 0 {
                break;
            }
        }
    }
}

/// Removes `fd` from the kqueue `kq` (for [`Poller::delete`] and [`Unregisterer`]).
pub(super) fn delete(kq: &OwnedFd, fd: BorrowedFd<'_>) -> io::Result<()> {
    apply(
        kq,
        &Poller::changes(fd.as_raw_fd(), 0, Interest::EMPTY, Mode::Level, false),
    )
}

/// A kqueue instance with a wake-up pipe.
pub(crate) struct Poller {
    kqueue: Arc<OwnedFd>,
    notifier: Notifier,
    buffer: RefCell<Vec<Event>>,
}

fn udata(key: u64) -> *mut rustix::ffi::c_void {
    key as usize as *mut _
}

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        let kqueue = Arc::new(kqueue::kqueue()?);
        let (reader, writer) = rustix::pipe::pipe()?;
        // Apple has no `pipe2`: set the flags afterwards, everywhere.
        for fd in [&reader, &writer] {
            rustix::io::fcntl_setfd(
                fd,
                rustix::io::fcntl_getfd(fd)? | rustix::io::FdFlags::CLOEXEC,
            )?;
            let flags = rustix::fs::fcntl_getfl(fd)?;
            rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
        }
        // Watched below, once the poller owns the pipe.
        let fd = reader.as_raw_fd();
        let poller = Poller {
            kqueue,
            notifier: Notifier::new(Waker { reader, writer }),
            buffer: RefCell::new(Vec::with_capacity(1024)),
        };
        poller.apply(&[Event::new(
            EventFilter::Read(fd),
            EventFlags::ADD | EventFlags::RECEIPT,
            udata(NOTIFY_KEY),
        )])?;
        Ok(poller)
    }

    pub(crate) fn notifier(&self) -> Notifier {
        self.notifier.clone()
    }

    pub(crate) fn unregisterer(&self) -> Unregisterer {
        Unregisterer(self.kqueue.clone())
    }

    fn apply(&self, changes: &[Event]) -> io::Result<()> {
        apply(&self.kqueue, changes)
    }

    fn changes(fd: RawFd, key: u64, interest: Interest, mode: Mode, add: bool) -> [Event; 2] {
        let mode_flags = match mode {
            Mode::Level => EventFlags::empty(),
            Mode::Edge => EventFlags::CLEAR,
            Mode::OneShot => EventFlags::ONESHOT,
        };
        let flag = |on: bool| {
            if on {
                EventFlags::ADD | EventFlags::ENABLE | mode_flags | EventFlags::RECEIPT
            } else if add {
                // Nothing to delete on a fresh registration; an ADD+DISABLE keeps it inert.
                EventFlags::ADD | EventFlags::DISABLE | EventFlags::RECEIPT
            } else {
                EventFlags::DELETE | EventFlags::RECEIPT
            }
        };
        [
            Event::new(EventFilter::Read(fd), flag(interest.readable), udata(key)),
            Event::new(EventFilter::Write(fd), flag(interest.writable), udata(key)),
        ]
    }

    pub(crate) fn add(
        &self,
        fd: BorrowedFd<'_>,
        key: u64,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        check_key(key)?;
        // Unlike epoll, kqueue merges a second `EV_ADD` of the same fd into the first one
        // (it cannot tell us the fd was already there); the newest registration wins.
        self.apply(&Self::changes(fd.as_raw_fd(), key, interest, mode, true))
    }

    pub(crate) fn modify(
        &self,
        fd: BorrowedFd<'_>,
        key: u64,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        check_key(key)?;
        self.apply(&Self::changes(fd.as_raw_fd(), key, interest, mode, false))
    }

    pub(crate) fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        delete(&self.kqueue, fd)
    }

    /// Watches `signal` with `EVFILT_SIGNAL`, reporting it under `key`.
    #[allow(dead_code)]
    pub(crate) fn add_signal(&self, signal: rustix::process::Signal, key: u64) -> io::Result<()> {
        check_key(key)?;
        self.apply(&[Event::new(
            EventFilter::Signal { signal, times: 0 },
            EventFlags::ADD | EventFlags::RECEIPT,
            udata(key),
        )])
    }

    /// Stops watching `signal`.
    #[allow(dead_code)]
    pub(crate) fn delete_signal(&self, signal: rustix::process::Signal) -> io::Result<()> {
        self.apply(&[Event::new(
            EventFilter::Signal { signal, times: 0 },
            EventFlags::DELETE | EventFlags::RECEIPT,
            udata(0),
        )])
    }

    /// Waits for events until `deadline` (`None`: forever) and appends them to `out`.
    pub(crate) fn wait(
        &self,
        out: &mut Vec<SysEvent>,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        let timeout = deadline.map(|d| {
            // Round up to the next nanosecond boundary kevent understands: never early.
            let rest = d.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: rest.as_secs() as _,
                tv_nsec: rest.subsec_nanos() as _,
            }
        });
        let mut buffer = self.buffer.borrow_mut();
        buffer.clear();
        let cap = buffer.capacity();
        // SAFETY: our udata values are plain integers, never dereferenced.
        unsafe {
            kqueue::kevent_timespec(
                &self.kqueue,
                &[],
                rustix::buffer::spare_capacity(&mut *buffer),
                timeout.as_ref(),
            )?;
        }
        for ev in buffer.iter() {
            let key = ev.udata() as usize as u64;
            if key == NOTIFY_KEY {
                self.notifier.consume();
                continue;
            }
            let flags = ev.flags();
            let error = flags.intersects(EventFlags::ERROR | EventFlags::EOF);
            let readiness = match ev.filter() {
                EventFilter::Read(_) => Readiness {
                    readable: true,
                    writable: false,
                    error,
                },
                EventFilter::Write(_) => Readiness {
                    readable: false,
                    writable: true,
                    error,
                },
                _ => Readiness {
                    readable: true,
                    writable: false,
                    error: false,
                },
            };
            // Merge the read and write halves of one fd into one event, like epoll does.
            if let Some(prev) = out.last_mut().filter(|p| p.key == key) {
                prev.readiness.readable |= readiness.readable;
                prev.readiness.writable |= readiness.writable;
                prev.readiness.error |= readiness.error;
            } else {
                out.push(SysEvent { key, readiness });
            }
        }
        if buffer.len() == cap {
            buffer.reserve(cap);
        }
        Ok(())
    }
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("kqueue", &self.kqueue)
            .finish_non_exhaustive()
    }
}

impl AsFd for Poller {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.kqueue.as_fd()
    }
}

/// Applies a change list with `EV_RECEIPT`, reporting the first real error.
fn apply(kq: &OwnedFd, changes: &[Event]) -> io::Result<()> {
    let mut out: Vec<Event> = Vec::with_capacity(changes.len());
    // SAFETY: our udata values are plain integers, never dereferenced by us or the kernel.
    unsafe {
        kqueue::kevent_timespec(
            kq,
            changes,
            rustix::buffer::spare_capacity(&mut out),
            Some(&Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }),
        )?;
    }
    for ev in &out {
        if ev.flags().contains(EventFlags::ERROR) {
            let errno = ev.data();
            // Deleting a filter that was never added is not an error for us.
            if errno != 0 && errno != i64::from(rustix::io::Errno::NOENT.raw_os_error()) {
                return Err(io::Error::from_raw_os_error(errno as i32));
            }
        }
    }
    Ok(())
}
