//! Host monotonic time: [`Instant`] and [`now`].

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::time::Duration;

use crate::bindings::callop::plugin::host_loop;

/// A point on the **host's** monotonic clock, with nanosecond resolution.
///
/// This is the clock the host uses for timers, so deadlines computed from it
/// ([`Timer::from_deadline`](crate::timer::Timer::from_deadline),
/// [`TimeoutAction::ToInstant`](crate::timer::TimeoutAction::ToInstant)) are
/// exact. It mirrors the parts of [`std::time::Instant`] that make sense
/// here. Do not mix it with `std::time::Instant` (whose epoch may differ).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The current time of the host's monotonic clock (one host call).
    pub fn now() -> Instant {
        Instant(host_loop::now())
    }

    /// Builds an instant from raw nanoseconds on the host clock.
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    /// Raw nanoseconds on the host clock (the value exchanged over WIT).
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`; zero if `earlier` is later.
    pub fn duration_since(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }

    /// Time elapsed from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.0.checked_sub(earlier.0).map(Duration::from_nanos)
    }

    /// Time elapsed from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Time elapsed since `self` (calls [`Instant::now`]).
    pub fn elapsed(self) -> Duration {
        Instant::now().saturating_duration_since(self)
    }

    /// `self + d`, or `None` on overflow of the u64 nanosecond range.
    pub fn checked_add(self, d: Duration) -> Option<Instant> {
        let d: u64 = d.as_nanos().try_into().ok()?;
        self.0.checked_add(d).map(Instant)
    }

    /// `self - d`, or `None` if it would precede the clock's epoch.
    pub fn checked_sub(self, d: Duration) -> Option<Instant> {
        let d: u64 = d.as_nanos().try_into().ok()?;
        self.0.checked_sub(d).map(Instant)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instant({}ns)", self.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Panics on overflow, like `std::time::Instant`.
    fn add(self, d: Duration) -> Instant {
        self.checked_add(d)
            .expect("overflow when adding duration to instant")
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    /// Panics on underflow, like `std::time::Instant`.
    fn sub(self, d: Duration) -> Instant {
        self.checked_sub(d)
            .expect("overflow when subtracting duration from instant")
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturates to zero, like `std::time::Instant` since Rust 1.60.
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// The current time of the host's monotonic clock. Same as [`Instant::now`].
pub fn now() -> Instant {
    Instant::now()
}

/// Converts a duration to WIT nanoseconds, saturating at `u64::MAX`.
pub(crate) fn duration_to_nanos(d: Duration) -> u64 {
    d.as_nanos().try_into().unwrap_or(u64::MAX)
}
