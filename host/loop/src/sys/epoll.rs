//! epoll backend (Linux, Android).

use std::{
    cell::{Cell, RefCell},
    io,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    sync::Arc,
    time::Instant,
};

use rustix::{
    event::{EventfdFlags, epoll, eventfd},
    time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec},
};

use super::{Notifier, RESERVED_KEYS, SysEvent, Unregisterer, check_key};
use crate::{Interest, Mode, Readiness};

const NOTIFY_KEY: u64 = RESERVED_KEYS;
const TIMER_KEY: u64 = RESERVED_KEYS + 1;

/// The eventfd that wakes a [`Poller`] (see [`Notifier`]).
#[derive(Debug)]
pub(super) struct Waker(OwnedFd);

impl Waker {
    pub(super) fn wake(&self) -> io::Result<()> {
        match rustix::io::write(&self.0, &1u64.to_ne_bytes()) {
            // The counter is saturated: a wake-up is pending anyway.
            Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn drain(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.0, &mut buf);
    }
}

/// Removes `fd` from the epoll instance `epoll` (for [`Poller::delete`] and [`Unregisterer`]).
pub(super) fn delete(epoll: &OwnedFd, fd: BorrowedFd<'_>) -> io::Result<()> {
    epoll::delete(epoll, fd)?;
    Ok(())
}

/// An epoll instance with a wake-up eventfd and a timerfd for precise deadlines.
pub(crate) struct Poller {
    epoll: Arc<OwnedFd>,
    notifier: Notifier,
    timerfd: OwnedFd,
    /// The deadline the timerfd is currently armed for, to skip redundant `timerfd_settime`.
    armed: Cell<Option<Instant>>,
    buffer: RefCell<Vec<epoll::Event>>,
}

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let eventfd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        let timerfd = rustix::time::timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
        )?;
        epoll::add(
            &epoll,
            &eventfd,
            epoll::EventData::new_u64(NOTIFY_KEY),
            epoll::EventFlags::IN,
        )?;
        epoll::add(
            &epoll,
            &timerfd,
            epoll::EventData::new_u64(TIMER_KEY),
            epoll::EventFlags::IN,
        )?;
        Ok(Poller {
            epoll: Arc::new(epoll),
            notifier: Notifier::new(Waker(eventfd)),
            timerfd,
            armed: Cell::new(None),
            buffer: RefCell::new(Vec::with_capacity(1024)),
        })
    }

    pub(crate) fn notifier(&self) -> Notifier {
        self.notifier.clone()
    }

    pub(crate) fn unregisterer(&self) -> Unregisterer {
        Unregisterer(self.epoll.clone())
    }

    pub(crate) fn add(
        &self,
        fd: BorrowedFd<'_>,
        key: u64,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        check_key(key)?;
        epoll::add(
            &self.epoll,
            fd,
            epoll::EventData::new_u64(key),
            flags(interest, mode),
        )?;
        Ok(())
    }

    pub(crate) fn modify(
        &self,
        fd: BorrowedFd<'_>,
        key: u64,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        check_key(key)?;
        epoll::modify(
            &self.epoll,
            fd,
            epoll::EventData::new_u64(key),
            flags(interest, mode),
        )?;
        Ok(())
    }

    pub(crate) fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        delete(&self.epoll, fd)
    }

    /// Waits for events until `deadline` (`None`: forever) and appends them to `out`.
    ///
    /// Returns early, with no events, when the notifier fires.
    pub(crate) fn wait(
        &self,
        out: &mut Vec<SysEvent>,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        let timeout = match deadline {
            None => {
                self.disarm()?;
                None
            }
            Some(deadline) => {
                let now = Instant::now();
                if deadline <= now {
                    Some(Timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    })
                } else {
                    self.arm(deadline, now)?;
                    None
                }
            }
        };

        let mut buffer = self.buffer.borrow_mut();
        buffer.clear();
        let cap = buffer.capacity();
        epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut *buffer),
            timeout.as_ref(),
        )?;
        for ev in buffer.iter() {
            let key = ev.data.u64();
            let bits = ev.flags;
            match key {
                NOTIFY_KEY => self.notifier.consume(),
                TIMER_KEY => {
                    let mut buf = [0u8; 8];
                    let _ = rustix::io::read(&self.timerfd, &mut buf);
                    self.armed.set(None);
                }
                key => out.push(SysEvent {
                    key,
                    readiness: readiness(bits),
                }),
            }
        }
        // A full buffer means more events may be waiting: grow for the next round.
        if buffer.len() == cap {
            buffer.reserve(cap);
        }
        Ok(())
    }

    fn arm(&self, deadline: Instant, now: Instant) -> io::Result<()> {
        if self.armed.get() == Some(deadline) {
            return Ok(());
        }
        // A relative timer starts when it is set, which is after `now` was read: it expires at
        // or after `now + rest = deadline`, so it can be late, never early. (No clock read of
        // our own: rustix's vDSO lookup reads the auxiliary vector from /proc, which under
        // valgrind describes valgrind's process, not ours, and crashes.)
        let rest = deadline - now;
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: rest.as_secs().try_into().unwrap_or(i64::MAX),
                // Not both zero (that would disarm): `deadline > now`.
                tv_nsec: rest.subsec_nanos() as _,
            },
        };
        rustix::time::timerfd_settime(&self.timerfd, TimerfdTimerFlags::empty(), &spec)?;
        self.armed.set(Some(deadline));
        Ok(())
    }

    fn disarm(&self) -> io::Result<()> {
        if self.armed.get().is_some() {
            let zero = Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let spec = Itimerspec {
                it_interval: zero,
                it_value: zero,
            };
            rustix::time::timerfd_settime(&self.timerfd, TimerfdTimerFlags::empty(), &spec)?;
            self.armed.set(None);
        }
        Ok(())
    }
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("epoll", &self.epoll)
            .finish_non_exhaustive()
    }
}

impl AsFd for Poller {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

fn flags(interest: Interest, mode: Mode) -> epoll::EventFlags {
    use epoll::EventFlags as F;
    let mut flags = F::empty();
    if interest.readable {
        flags |= F::IN | F::RDHUP;
    }
    if interest.writable {
        flags |= F::OUT;
    }
    match mode {
        Mode::Level => {}
        Mode::Edge => flags |= F::ET,
        Mode::OneShot => flags |= F::ONESHOT,
    }
    flags
}

fn readiness(bits: epoll::EventFlags) -> Readiness {
    use epoll::EventFlags as F;
    Readiness {
        readable: bits.intersects(F::IN | F::PRI | F::HUP | F::RDHUP | F::ERR),
        writable: bits.intersects(F::OUT | F::ERR),
        error: bits.intersects(F::ERR | F::HUP),
    }
}
