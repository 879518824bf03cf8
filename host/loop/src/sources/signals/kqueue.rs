//! Signals on macOS, iOS and the BSDs: `EVFILT_SIGNAL` in a kqueue of the source's own.
//!
//! The source keeps its own kqueue (registered, readable when it holds events, in the loop's
//! poller) so that [`add`](SignalSource::add) and [`remove`](SignalSource::remove) work without
//! access to the loop, as calloop's API wants. `EVFILT_SIGNAL` records delivery attempts but
//! does not stop delivery, so while listened to, a signal's process-wide disposition is a
//! handler that does nothing; a reference count per signal restores the previous disposition
//! when the last source lets go.

use std::{
    collections::BTreeMap,
    io,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    sync::{Mutex, PoisonError},
};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet};
use rustix::event::kqueue::{self, Event as KEvent, EventFilter, EventFlags};

use super::Signal;

/// What an [`Event`](super::Event) carries: kqueue reports only the signal number.
pub(super) type Info = Signal;

pub(super) fn signal_number(info: &Info) -> i32 {
    *info as i32
}

/// Per signal: how many sources listen to it, and the disposition it had before the first.
static DISPOSITIONS: Mutex<BTreeMap<i32, (usize, SigAction)>> = Mutex::new(BTreeMap::new());

extern "C" fn ignore_signal(_: nix::libc::c_int) {}

/// Signals whose disposition is never touched: `SIGKILL` and `SIGSTOP` cannot be caught, and
/// returning from a handler of a real hardware fault would re-run the faulting instruction.
fn keeps_disposition(signal: Signal) -> bool {
    matches!(
        signal,
        Signal::SIGKILL
            | Signal::SIGSTOP
            | Signal::SIGSEGV
            | Signal::SIGBUS
            | Signal::SIGILL
            | Signal::SIGFPE
    )
}

fn acquire_disposition(signal: Signal) -> io::Result<()> {
    if keeps_disposition(signal) {
        return Ok(());
    }
    let mut table = DISPOSITIONS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((count, _)) = table.get_mut(&(signal as i32)) {
        *count += 1;
        return Ok(());
    }
    let action = SigAction::new(
        SigHandler::Handler(ignore_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing at all, so it is async-signal-safe.
    let previous = unsafe { nix::sys::signal::sigaction(signal.as_nix(), &action) }?;
    table.insert(signal as i32, (1, previous));
    Ok(())
}

fn release_disposition(signal: Signal) {
    if keeps_disposition(signal) {
        return;
    }
    let mut table = DISPOSITIONS.lock().unwrap_or_else(PoisonError::into_inner);
    let Some((count, previous)) = table.get_mut(&(signal as i32)) else {
        return;
    };
    *count -= 1;
    if *count == 0 {
        // SAFETY: this puts back the disposition the process had before; whoever installed it
        // vouched for it then.
        if let Err(e) = unsafe { nix::sys::signal::sigaction(signal.as_nix(), previous) } {
            tracing::warn!("failed to restore the disposition of {signal:?}: {e}");
        }
        table.remove(&(signal as i32));
    }
}

#[derive(Debug)]
pub(super) struct SignalSource {
    kqueue: OwnedFd,
    /// The signals listened to, each once.
    signals: Vec<Signal>,
}

fn rustix_signal(signal: Signal) -> io::Result<rustix::process::Signal> {
    rustix::process::Signal::from_named_raw(signal as i32).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{signal:?} is not supported here"),
        )
    })
}

impl SignalSource {
    pub(super) fn new(signals: &[Signal]) -> crate::Result<SignalSource> {
        let mut source = SignalSource {
            kqueue: kqueue::kqueue()?,
            signals: Vec::new(),
        };
        source.add(signals)?;
        Ok(source)
    }

    fn change(&self, signal: Signal, flags: EventFlags) -> io::Result<()> {
        let change = [KEvent::new(
            EventFilter::Signal {
                signal: rustix_signal(signal)?,
                times: 0,
            },
            flags | EventFlags::RECEIPT,
            std::ptr::null_mut(),
        )];
        let mut out = Vec::with_capacity(1);
        // SAFETY: the udata is null and never dereferenced.
        unsafe {
            kqueue::kevent_timespec(
                &self.kqueue,
                &change,
                rustix::buffer::spare_capacity(&mut out),
                Some(&rustix::time::Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                }),
            )?;
        }
        match out.first() {
            Some(ev) if ev.flags().contains(EventFlags::ERROR) && ev.data() != 0 => {
                Err(io::Error::from_raw_os_error(ev.data() as i32))
            }
            _ => Ok(()),
        }
    }

    pub(super) fn add(&mut self, signals: &[Signal]) -> crate::Result<()> {
        for &signal in signals {
            if self.signals.contains(&signal) {
                continue;
            }
            self.change(signal, EventFlags::ADD)?;
            if let Err(e) = acquire_disposition(signal) {
                let _ = self.change(signal, EventFlags::DELETE);
                return Err(e.into());
            }
            self.signals.push(signal);
        }
        Ok(())
    }

    pub(super) fn remove(&mut self, signals: &[Signal]) -> crate::Result<()> {
        for &signal in signals {
            let Some(i) = self.signals.iter().position(|s| *s == signal) else {
                continue;
            };
            self.signals.swap_remove(i);
            let deleted = self.change(signal, EventFlags::DELETE);
            release_disposition(signal);
            deleted?;
        }
        Ok(())
    }

    pub(super) fn set(&mut self, signals: &[Signal]) -> crate::Result<()> {
        let removed: Vec<Signal> = self
            .signals
            .iter()
            .copied()
            .filter(|s| !signals.contains(s))
            .collect();
        self.add(signals)?;
        self.remove(&removed)
    }

    pub(super) fn drain(&mut self, mut f: impl FnMut(Info)) -> io::Result<()> {
        let mut events: Vec<KEvent> = Vec::with_capacity(32);
        loop {
            events.clear();
            // SAFETY: our udata values are null and never dereferenced.
            let n = unsafe {
                kqueue::kevent_timespec(
                    &self.kqueue,
                    &[],
                    rustix::buffer::spare_capacity(&mut events),
                    Some(&rustix::time::Timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    }),
                )
            };
            match n {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            for ev in &events {
                let EventFilter::Signal { signal, .. } = ev.filter() else {
                    continue;
                };
                match Signal::from_raw(signal.as_raw()) {
                    Some(s) if self.signals.contains(&s) => f(s),
                    _ => {}
                }
            }
            if events.len() < events.capacity() {
                return Ok(());
            }
        }
    }
}

/// The descriptor the loop polls (the source's kqueue): readable while signals are pending.
impl AsFd for SignalSource {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.kqueue.as_fd()
    }
}

impl Drop for SignalSource {
    fn drop(&mut self) {
        // Closing the kqueue drops its filters; the dispositions are ours to give back.
        for &signal in &self.signals {
            release_disposition(signal);
        }
    }
}
