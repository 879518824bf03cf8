//! Unix signals as events (calloop's `calloop::signals`).
//!
//! ```no_run
//! # use callop_guest::{LoopHandle, PostAction};
//! # struct State;
//! # impl State { fn reload(&mut self) {} }
//! # fn example(handle: &LoopHandle<State>) -> Result<(), Box<dyn std::error::Error>> {
//! use callop_guest::signals::{Signal, Signals};
//!
//! // needs --allow-signal HUP
//! handle.insert_source(Signals::new(&[Signal::SIGHUP])?, |event, _: &mut (), state: &mut State| {
//!     assert_eq!(event.signal(), Signal::SIGHUP);
//!     state.reload();
//!     PostAction::Continue
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! A subscription is a source: it keeps the plugin alive until removed.
//! Every signal must be granted by the embedder (`--allow-signal HUP,USR1`);
//! SIGINT and SIGTERM belong to the host (they trigger
//! [`Plugin::shutdown`](crate::Plugin::shutdown)) unless granted.
//! Signals of one kind may coalesce, as in the kernel.

use crate::bindings::callop::plugin::io as wit;
use crate::bindings::callop::plugin::types::{EventKind, Signal as WitSignal};
use crate::error::{Error, ErrorCode, Result};
use crate::loop_handle::{EventSource, PostAction, Sealed};

/// A unix signal (named like `nix::sys::signal::Signal`, which calloop
/// uses).
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Hang-up (by convention: reload the configuration).
    SIGHUP,
    /// Interrupt (the host's unless granted).
    SIGINT,
    /// Quit.
    SIGQUIT,
    /// User signal 1.
    SIGUSR1,
    /// User signal 2.
    SIGUSR2,
    /// Broken pipe.
    SIGPIPE,
    /// Alarm.
    SIGALRM,
    /// Terminate (the host's unless granted).
    SIGTERM,
    /// Child status changed.
    SIGCHLD,
    /// Continue.
    SIGCONT,
    /// Terminal stop.
    SIGTSTP,
    /// Background read from tty.
    SIGTTIN,
    /// Background write to tty.
    SIGTTOU,
    /// Window size change.
    SIGWINCH,
}

const ALL: [(Signal, WitSignal); 14] = [
    (Signal::SIGHUP, WitSignal::Hup),
    (Signal::SIGINT, WitSignal::Int),
    (Signal::SIGQUIT, WitSignal::Quit),
    (Signal::SIGUSR1, WitSignal::Usr1),
    (Signal::SIGUSR2, WitSignal::Usr2),
    (Signal::SIGPIPE, WitSignal::Pipe),
    (Signal::SIGALRM, WitSignal::Alrm),
    (Signal::SIGTERM, WitSignal::Term),
    (Signal::SIGCHLD, WitSignal::Chld),
    (Signal::SIGCONT, WitSignal::Cont),
    (Signal::SIGTSTP, WitSignal::Tstp),
    (Signal::SIGTTIN, WitSignal::Ttin),
    (Signal::SIGTTOU, WitSignal::Ttou),
    (Signal::SIGWINCH, WitSignal::Winch),
];

impl Signal {
    fn to_wit(self) -> WitSignal {
        ALL.iter()
            .find(|(s, _)| *s == self)
            .map(|(_, w)| *w)
            .expect("every signal is mapped")
    }

    fn from_wit(w: WitSignal) -> Signal {
        ALL.iter()
            .find(|(_, x)| *x == w)
            .map(|(s, _)| *s)
            .expect("every signal is mapped")
    }
}

/// A signal received by a [`Signals`] source (calloop's `signals::Event`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    signal: Signal,
}

impl Event {
    /// The signal.
    pub fn signal(&self) -> Signal {
        self.signal
    }
}

/// A subscription to some unix signals; insert it with
/// [`LoopHandle::insert_source`](crate::LoopHandle::insert_source). The
/// callback has the signature `FnMut(Event, &mut (), &mut State) -> PostAction`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signals {
    signals: Vec<Signal>,
}

impl Signals {
    /// A subscription to `signals` (checked by the host when inserted).
    pub fn new(signals: &[Signal]) -> Result<Signals> {
        if signals.is_empty() {
            return Err(Error::new(ErrorCode::InvalidArgument, "no signal given"));
        }
        Ok(Signals {
            signals: signals.to_vec(),
        })
    }
}

impl Sealed for Signals {}
impl EventSource for Signals {
    type Event = Event;
    type Metadata = ();
    type Ret = PostAction;

    fn __register(self) -> Result<(u64, ())> {
        let list: Vec<WitSignal> = self.signals.iter().map(|s| s.to_wit()).collect();
        let id = wit::add_signals(&list).map_err(Error::from)?;
        Ok((id, ()))
    }

    fn __convert(kind: EventKind) -> Option<Event> {
        match kind {
            EventKind::Signal(s) => Some(Event {
                signal: Signal::from_wit(s),
            }),
            _ => None,
        }
    }
}
