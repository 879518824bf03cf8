//! Event source for Unix signals.
//!
//! [`Signals`] delivers the signals it listens to as events of the loop instead of running
//! signal handlers, so the callback may do anything (allocate, lock, touch the loop's data).
//!
//! ```
//! use callop::{EventLoop, signals::{Signal, Signals}};
//! use std::time::Duration;
//!
//! let mut event_loop: EventLoop<Option<Signal>> = EventLoop::try_new().unwrap();
//! let signals = Signals::new(&[Signal::SIGUSR1]).unwrap();
//! event_loop
//!     .handle()
//!     .insert_source(signals, |event, _, received| *received = Some(event.signal()))
//!     .unwrap();
//!
//! // Send ourselves a SIGUSR1: it becomes an event instead of killing the process.
//! rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::USR1).unwrap();
//!
//! let mut received = None;
//! while received.is_none() {
//!     event_loop.dispatch(Duration::from_secs(1), &mut received).unwrap();
//! }
//! assert_eq!(received, Some(Signal::SIGUSR1));
//! ```
//!
//! # Platforms
//!
//! * **Linux, Android** (as calloop): a `signalfd`. The source blocks its signals in the signal
//!   mask of the thread that creates it (or adds them), so that they stay pending for the
//!   `signalfd` instead of being delivered. You are responsible for blocking them in other
//!   threads too; the simplest way is to create the source before spawning any thread, as
//!   threads inherit their parent's mask. Removing a signal or dropping the source unblocks it
//!   again, except for signals that were already blocked before the source blocked them: the
//!   thread's previous mask is restored. (calloop unblocks them all.) [`Event`] carries the
//!   full `signalfd_siginfo`.
//! * **macOS, iOS and the BSDs** (calloop has no signal source there): kqueue's
//!   `EVFILT_SIGNAL`, which records every attempt to deliver a signal to the process, from any
//!   thread, so no masking is involved. While a source listens to a signal, its process-wide
//!   disposition is a handler that does nothing (installed with `SA_RESTART`), so the signal's
//!   default action (often: terminate) does not happen; the previous disposition comes back when
//!   the last source listening to it lets go. The synchronous fault signals (`SIGSEGV`,
//!   `SIGBUS`, `SIGILL`, `SIGFPE`) keep their disposition, since returning from a real fault
//!   would fault again forever. [`Event`] carries only the signal number.

use std::fmt;

use crate::{EventSource, Interest, Mode, Poll, PostAction, Readiness, Token, TokenFactory};

#[cfg(any(target_os = "linux", target_os = "android"))]
#[path = "signals/signalfd.rs"]
mod os;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[path = "signals/kqueue.rs"]
mod os;

use nix::libc;

macro_rules! signals {
    ($($(#[$attr:meta])* $name:ident,)*) => {
        /// The signals a [`Signals`] source can listen to.
        #[derive(Copy, Clone, Debug, Eq, PartialEq, PartialOrd, Ord, Hash)]
        #[repr(i32)]
        pub enum Signal {
            $(
                $(#[$attr])*
                $name = libc::$name,
            )*
        }

        impl Signal {
            /// All the variants, for mapping numbers back.
            const ALL: &'static [Signal] = &[$(Signal::$name,)*];
        }
    };
}

signals! {
    /// `SIGHUP`
    SIGHUP,
    /// `SIGINT`
    SIGINT,
    /// `SIGQUIT`
    SIGQUIT,
    /// `SIGILL`
    SIGILL,
    /// `SIGTRAP`
    SIGTRAP,
    /// `SIGABRT`, aka `SIGIOT`
    #[doc(alias = "Iot")]
    #[doc(alias = "Abrt")]
    SIGABRT,
    /// `SIGBUS`
    SIGBUS,
    /// `SIGFPE`
    SIGFPE,
    /// `SIGKILL` (cannot be caught: never reported)
    SIGKILL,
    /// `SIGUSR1`
    SIGUSR1,
    /// `SIGSEGV`
    SIGSEGV,
    /// `SIGUSR2`
    SIGUSR2,
    /// `SIGPIPE`
    SIGPIPE,
    /// `SIGALRM`
    #[doc(alias = "Alrm")]
    SIGALRM,
    /// `SIGTERM`
    SIGTERM,
    /// `SIGCHLD`
    #[doc(alias = "Chld")]
    SIGCHLD,
    /// `SIGCONT`
    SIGCONT,
    /// `SIGSTOP` (cannot be caught: never reported)
    SIGSTOP,
    /// `SIGTSTP`
    SIGTSTP,
    /// `SIGTTIN`
    SIGTTIN,
    /// `SIGTTOU`
    SIGTTOU,
    /// `SIGURG`
    SIGURG,
    /// `SIGXCPU`
    SIGXCPU,
    /// `SIGXFSZ`
    SIGXFSZ,
    /// `SIGVTALRM`
    #[doc(alias = "Vtalrm")]
    SIGVTALRM,
    /// `SIGPROF`
    SIGPROF,
    /// `SIGWINCH`
    SIGWINCH,
    /// `SIGIO`, aka `SIGPOLL`
    #[doc(alias = "Poll")]
    SIGIO,
    /// `SIGSYS`, aka `SIGUNUSED`
    #[doc(alias = "Unused")]
    SIGSYS,
}

impl Signal {
    fn from_raw(raw: i32) -> Option<Signal> {
        Signal::ALL.iter().copied().find(|s| *s as i32 == raw)
    }

    fn as_nix(self) -> nix::sys::signal::Signal {
        nix::sys::signal::Signal::try_from(self as i32)
            .expect("every variant is a signal of this platform")
    }
}

/// A signal received by a [`Signals`] source.
#[derive(Copy, Clone, Debug)]
pub struct Event {
    info: os::Info,
}

impl Event {
    /// The signal that was received.
    pub fn signal(&self) -> Signal {
        Signal::from_raw(os::signal_number(&self.info))
            .expect("the OS only reports signals the source listens to")
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
macro_rules! siginfo_accessors {
    ($($name:ident => $field:ident: $ty:ty),* $(,)?) => {
        impl Event {
            $(
                #[doc = concat!("The `", stringify!($field), "` field of the `signalfd_siginfo`.")]
                ///
                /// Linux and Android only.
                #[allow(clippy::unnecessary_cast)]
                pub fn $name(&self) -> $ty {
                    // The kernel's field types, reinterpreted as calloop exposes them.
                    self.info.$field as $ty
                }
            )*
        }
    };
}

#[cfg(any(target_os = "linux", target_os = "android"))]
siginfo_accessors! {
    errno => ssi_errno: i32,
    code => ssi_code: i32,
    pid => ssi_pid: u32,
    uid => ssi_uid: u32,
    fd => ssi_fd: i32,
    tid => ssi_tid: u32,
    bad => ssi_band: u32,
    overrun => ssi_overrun: u32,
    trapno => ssi_trapno: u32,
    status => ssi_status: u32,
}

/// An event source for Unix signals; see the [module docs](self).
#[derive(Debug)]
pub struct Signals {
    os: os::SignalSource,
    token: Option<Token>,
}

impl Signals {
    /// Creates a source listening to `signals`.
    pub fn new(signals: &[Signal]) -> crate::Result<Signals> {
        Ok(Signals {
            os: os::SignalSource::new(signals)?,
            token: None,
        })
    }

    /// Adds signals to the ones the source listens to.
    ///
    /// If this fails, the signal handling of the thread or process may still have changed for
    /// some of the signals.
    pub fn add_signals(&mut self, signals: &[Signal]) -> crate::Result<()> {
        self.os.add(signals)
    }

    /// Stops listening to some signals.
    ///
    /// If this fails, the signal handling of the thread or process may still have changed for
    /// some of the signals.
    pub fn remove_signals(&mut self, signals: &[Signal]) -> crate::Result<()> {
        self.os.remove(signals)
    }

    /// Replaces the set of signals the source listens to.
    ///
    /// Signals in both the old and the new set are listened to without interruption. If this
    /// fails, the signal handling of the thread or process may still have changed for some of
    /// the signals.
    pub fn set_signals(&mut self, signals: &[Signal]) -> crate::Result<()> {
        self.os.set(signals)
    }
}

impl EventSource for Signals {
    type Event = Event;
    type Metadata = ();
    type Ret = ();
    type Error = SignalError;

    fn process_events<C>(
        &mut self,
        _: Readiness,
        token: Token,
        mut callback: C,
    ) -> Result<PostAction, SignalError>
    where
        C: FnMut(Event, &mut ()),
    {
        if self.token != Some(token) {
            return Ok(PostAction::Continue);
        }
        self.os
            .drain(|info| callback(Event { info }, &mut ()))
            .map_err(|e| {
                tracing::warn!("error reading signals: {e}");
                SignalError(e.into())
            })?;
        Ok(PostAction::Continue)
    }

    fn register(&mut self, poll: &mut Poll, token_factory: &mut TokenFactory) -> crate::Result<()> {
        let token = token_factory.token();
        // SAFETY: the descriptor (the signalfd or the source's kqueue) is owned by `self.os`,
        // which lives as long as this source; the loop unregisters a source before dropping it.
        unsafe { poll.register(&self.os, Interest::READ, Mode::Level, token)? };
        self.token = Some(token);
        Ok(())
    }

    fn reregister(
        &mut self,
        poll: &mut Poll,
        token_factory: &mut TokenFactory,
    ) -> crate::Result<()> {
        let token = token_factory.token();
        poll.reregister(&self.os, Interest::READ, Mode::Level, token)?;
        self.token = Some(token);
        Ok(())
    }

    fn unregister(&mut self, poll: &mut Poll) -> crate::Result<()> {
        poll.unregister(&self.os)?;
        self.token = None;
        Ok(())
    }
}

/// An error while reading signals from the OS.
#[derive(Debug)]
pub struct SignalError(Box<dyn std::error::Error + Sync + Send>);

impl fmt::Display for SignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for SignalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_numbers_round_trip() {
        for &s in Signal::ALL {
            assert_eq!(Signal::from_raw(s as i32), Some(s));
            assert_eq!(s.as_nix() as i32, s as i32);
        }
        assert_eq!(Signal::SIGUSR1 as i32, libc::SIGUSR1);
        assert_eq!(Signal::from_raw(0), None);
    }
}
