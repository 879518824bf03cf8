//! Timers (calloop's `calloop::timer`).
//!
//! A [`Timer`] fires once at its deadline; its callback receives the deadline
//! that fired and returns a [`TimeoutAction`] that either drops the timer or
//! re-arms it:
//!
//! ```no_run
//! # use callop_guest::LoopHandle;
//! # type State = u32;
//! # fn example(handle: &LoopHandle<State>) -> Result<(), Box<dyn std::error::Error>> {
//! use callop_guest::timer::{TimeoutAction, Timer};
//! use std::time::Duration;
//!
//! handle.insert_source(
//!     Timer::from_duration(Duration::from_millis(10)),
//!     |deadline, _: &mut (), state: &mut u32| {
//!         *state += 1;
//!         if *state < 5 {
//!             // drift-free period: relative to the deadline that fired
//!             TimeoutAction::ToInstant(deadline + Duration::from_millis(10))
//!         } else {
//!             TimeoutAction::Drop
//!         }
//!     },
//! )?;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use crate::bindings::callop::plugin::host_loop;
use crate::bindings::callop::plugin::types::{EventKind, EventResult, TimeoutAction as WitTimeout};
use crate::error::{Error, ErrorCode, Result};
use crate::loop_handle::{CallbackReturn, EventSource, Sealed};
use crate::time::{duration_to_nanos, Instant};

/// What to do with a timer after it fired (calloop's `TimeoutAction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeoutAction {
    /// Remove the timer.
    Drop,
    /// Fire again `Duration` from now (calloop semantics: relative to the
    /// time the result is processed, so a periodic timer built this way
    /// drifts slightly; use `ToInstant(deadline + period)` to avoid that).
    ToDuration(Duration),
    /// Fire again at the given instant.
    ToInstant(Instant),
}

impl Sealed for TimeoutAction {}
impl CallbackReturn for TimeoutAction {
    fn __into_wit(self) -> EventResult {
        EventResult::Timeout(match self {
            TimeoutAction::Drop => WitTimeout::Drop,
            TimeoutAction::ToDuration(d) => WitTimeout::ToDuration(duration_to_nanos(d)),
            TimeoutAction::ToInstant(i) => WitTimeout::ToInstant(i.as_nanos()),
        })
    }
}

/// A one-shot timer event source (calloop's `Timer`). Insert it with
/// [`LoopHandle::insert_source`](crate::LoopHandle::insert_source); the
/// callback has the signature
/// `FnMut(Instant, &mut (), &mut State) -> TimeoutAction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    deadline: Option<Instant>,
}

impl Timer {
    /// A timer that fires as soon as possible (on the next loop iteration).
    pub fn immediate() -> Timer {
        Timer {
            deadline: Some(Instant::now()),
        }
    }

    /// A timer that fires `duration` from now. If the deadline overflows the
    /// clock, the timer has no deadline and inserting it fails.
    pub fn from_duration(duration: Duration) -> Timer {
        Timer {
            deadline: Instant::now().checked_add(duration),
        }
    }

    /// A timer that fires at `deadline` (immediately if it is in the past).
    pub fn from_deadline(deadline: Instant) -> Timer {
        Timer {
            deadline: Some(deadline),
        }
    }

    /// Changes the deadline to `deadline`.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }

    /// Changes the deadline to `duration` from now.
    pub fn set_duration(&mut self, duration: Duration) {
        self.deadline = Instant::now().checked_add(duration);
    }

    /// The deadline this timer will fire at, if any.
    pub fn current_deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

impl Sealed for Timer {}
impl EventSource for Timer {
    /// The deadline that fired.
    type Event = Instant;
    type Metadata = ();
    type Ret = TimeoutAction;

    fn __register(self) -> Result<(u64, ())> {
        let deadline = self.deadline.ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidArgument,
                "timer deadline overflows the clock",
            )
        })?;
        let id = host_loop::add_timer(deadline.as_nanos()).map_err(Error::from)?;
        Ok((id, ()))
    }

    fn __convert(kind: EventKind) -> Option<Instant> {
        match kind {
            EventKind::Timer(deadline) => Some(Instant::from_nanos(deadline)),
            _ => None,
        }
    }
}
