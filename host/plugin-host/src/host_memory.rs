//! [`Budget`]: the host memory one plugin may make the host hold
//! ([`Limits::max_host_memory_bytes`](crate::Limits::max_host_memory_bytes)),
//! and [`Charge`], the bytes of one holding, released when it is dropped.
//!
//! Every buffer the host keeps for a plugin beyond one host call is paid
//! for by a [`Charge`] that lives exactly as long as the buffer: a queued
//! channel message (in an open or a not yet opened channel) is charged to
//! its *sender* when it is sent and travels with its batch into the
//! receiver's pending events, until the receiver's `dispatch` call that
//! delivers it has returned (or the queue is dropped: the channel removed,
//! its owner ended, unloaded or restarted). Dropping the buffer drops the
//! charge, so release is exact by construction: no path frees a buffer
//! without releasing its bytes, and none releases twice.
//!
//! ```text
//! send ─ try_charge(sender) ─► mailbox batch ─ take ─► pending event ─ dispatch returns ─► released
//!                                  └──────────── channel removed / owner ended ──────────► released
//! ```
//!
//! A budget belongs to an instance *name*, not to one run: a restarted
//! instance gets the budget of its previous run, still charged with the
//! messages that run sent to other plugins and that are not delivered yet
//! (so a crash loop cannot leave a budget's worth behind at each restart).
//! Its own queues were dropped when the run ended, so everything it held
//! for itself is released.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The host-memory budget of one plugin instance name: bytes charged now
/// and the most that may be.
#[derive(Debug)]
pub(crate) struct Budget {
    /// Instance name, for messages.
    name: Arc<str>,
    limit: AtomicUsize,
    used: AtomicUsize,
}

/// A charge was refused: it would have taken the budget over its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OverBudget {
    /// The budget's instance name.
    pub name: Arc<str>,
    /// Bytes asked for.
    pub asked: usize,
    /// Bytes charged when it was asked.
    pub used: usize,
    /// The budget's limit.
    pub limit: usize,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "host memory budget of `{}` exhausted: {} bytes held for it, {} more asked, \
             limit {} bytes (--max-host-memory / limits.max_host_memory_bytes)",
            self.name, self.used, self.asked, self.limit
        )
    }
}

impl Budget {
    /// A budget of `limit` bytes for instance `name`, nothing charged.
    pub fn new(name: Arc<str>, limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            name,
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Acquire)
    }

    /// Sets the limit (a new run of the instance, with its own limits).
    /// Charges already made stay; new ones are checked against it.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Release);
    }

    /// Charges `bytes` if the budget has room for them.
    ///
    /// Zero bytes (a send that fits the capacity its batch already paid for,
    /// the common case of a flood) are checked against the limit but touch
    /// no shared counter: the empty charge holds nothing to release.
    #[inline]
    pub fn try_charge(self: &Arc<Self>, bytes: usize) -> Result<Charge, OverBudget> {
        let limit = self.limit();
        let mut used = self.used();
        if bytes == 0 && used <= limit {
            return Ok(Charge::default());
        }
        loop {
            let new = match used.checked_add(bytes) {
                Some(n) if n <= limit => n,
                _ => {
                    return Err(OverBudget {
                        name: self.name.clone(),
                        asked: bytes,
                        used,
                        limit,
                    });
                }
            };
            match self
                .used
                .compare_exchange_weak(used, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Ok(Charge {
                        budget: Some(self.clone()),
                        bytes,
                    });
                }
                Err(now) => used = now,
            }
        }
    }

    fn release(&self, bytes: usize) {
        let prev = self.used.fetch_sub(bytes, Ordering::AcqRel);
        debug_assert!(prev >= bytes, "released more than charged");
    }
}

/// Bytes charged to a [`Budget`]; dropping it releases them.
#[derive(Debug, Default)]
pub(crate) struct Charge {
    budget: Option<Arc<Budget>>,
    bytes: usize,
}

impl Charge {
    /// Bytes of this charge.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds `other` to this charge if both are charged to the same budget
    /// (one charge then releases both); otherwise hands it back.
    pub fn merge(&mut self, mut other: Charge) -> Result<(), Charge> {
        match (&self.budget, &other.budget) {
            (_, None) => Ok(()),
            (None, Some(_)) => {
                *self = other;
                Ok(())
            }
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {
                self.bytes += std::mem::take(&mut other.bytes);
                other.budget = None;
                Ok(())
            }
            _ => Err(other),
        }
    }
}

impl Drop for Charge {
    #[inline]
    fn drop(&mut self) {
        if let Some(b) = self.budget.take() {
            b.release(self.bytes);
        }
    }
}

/// The charges of one buffer holding data of several senders (a batch of
/// messages): consecutive charges to the same budget are merged, so it
/// holds about one charge per sender.
#[derive(Debug, Default)]
pub(crate) struct Charges(Vec<Charge>);

impl Charges {
    /// Adds a charge.
    pub fn push(&mut self, c: Charge) {
        if let Some(last) = self.0.last_mut() {
            match last.merge(c) {
                Ok(()) => {}
                Err(c) => self.0.push(c),
            }
        } else {
            self.0.push(c);
        }
    }

    /// Moves every charge of `other` into this one.
    pub fn append(&mut self, other: Charges) {
        for c in other.0 {
            self.push(c);
        }
    }

    /// Total bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.0.iter().map(|c| c.bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: usize) -> Arc<Budget> {
        Budget::new("p".into(), limit)
    }

    #[test]
    fn charges_up_to_the_limit_and_refuses_beyond() {
        let b = budget(100);
        let a = b.try_charge(60).unwrap();
        let c = b.try_charge(40).unwrap();
        assert_eq!(b.used(), 100);
        let e = b.try_charge(1).unwrap_err();
        assert_eq!((e.asked, e.used, e.limit), (1, 100, 100));
        assert!(e.to_string().contains("--max-host-memory"), "{e}");
        assert_eq!(b.used(), 100, "a refused charge takes nothing");
        drop(a);
        assert_eq!(b.used(), 40);
        drop(c);
        assert_eq!(b.used(), 0);
        assert!(b.try_charge(usize::MAX).is_err(), "no overflow");
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn merged_charges_release_exactly_once() {
        let b = budget(1000);
        let other = budget(1000);
        let mut cs = Charges::default();
        for _ in 0..10 {
            cs.push(b.try_charge(7).unwrap());
        }
        cs.push(other.try_charge(5).unwrap());
        cs.push(b.try_charge(3).unwrap());
        cs.push(Charge::default());
        assert_eq!(cs.0.len(), 3, "consecutive charges of one budget merge");
        assert_eq!(cs.bytes(), 78);
        assert_eq!((b.used(), other.used()), (73, 5));
        let mut more = Charges::default();
        more.push(b.try_charge(2).unwrap());
        cs.append(more);
        assert_eq!(b.used(), 75);
        drop(cs);
        assert_eq!((b.used(), other.used()), (0, 0));
    }

    #[test]
    fn a_lower_limit_keeps_existing_charges_and_refuses_new_ones() {
        let b = budget(100);
        let c = b.try_charge(80).unwrap();
        b.set_limit(50);
        assert!(b.try_charge(1).is_err());
        drop(c);
        assert_eq!(b.try_charge(50).unwrap().bytes(), 50);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn concurrent_charges_never_exceed_the_limit() {
        let b = budget(1000);
        let held: Vec<Charge> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let b = &b;
                    s.spawn(move || {
                        (0..1000)
                            .filter_map(|_| b.try_charge(1).ok())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(held.len(), 1000);
        assert_eq!(b.used(), 1000);
        drop(held);
        assert_eq!(b.used(), 0);
    }
}
