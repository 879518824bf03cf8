//! Timer event source.
//!
//! A [`Timer`] fires once at its deadline; its callback returns a [`TimeoutAction`] to drop it or
//! re-arm it. Timers never fire early, and the callback receives the *scheduled* deadline (not
//! the time it actually ran), so a periodic timer that re-arms with
//! `TimeoutAction::ToInstant(deadline + period)` does not drift.
//!
//! ```
//! use callop::{EventLoop, timer::{Timer, TimeoutAction}};
//! use std::time::Duration;
//!
//! let mut event_loop: EventLoop<u32> = EventLoop::try_new().unwrap();
//! event_loop
//!     .handle()
//!     .insert_source(Timer::from_duration(Duration::from_millis(1)), |deadline, _, ticks| {
//!         *ticks += 1;
//!         if *ticks < 3 {
//!             TimeoutAction::ToInstant(deadline + Duration::from_millis(1))
//!         } else {
//!             TimeoutAction::Drop
//!         }
//!     })
//!     .unwrap();
//! let mut ticks = 0;
//! while ticks < 3 {
//!     event_loop.dispatch(None, &mut ticks).unwrap();
//! }
//! assert_eq!(ticks, 3);
//! ```
//!
//! Unlike calloop's, the timer structure here is an indexed binary heap: inserting, cancelling
//! and re-arming are all O(log n), and slots are reused, so churn never grows it.

use std::{
    cell::RefCell,
    rc::Rc,
    task::Waker,
    time::{Duration, Instant},
};

use crate::{EventSource, LoopHandle, Poll, PostAction, Readiness, Token, TokenFactory};

/// A timer event source; see the [module docs](self).
#[derive(Debug)]
pub struct Timer {
    deadline: Option<Instant>,
    registration: Option<Registration>,
}

#[derive(Debug)]
struct Registration {
    token: Token,
    wheel: Rc<RefCell<TimerWheel>>,
    id: TimerId,
}

impl Timer {
    /// A timer that fires on the next dispatch.
    pub fn immediate() -> Timer {
        Self::from_deadline(Instant::now())
    }

    /// A timer that fires after `duration` (a duration too large to represent never fires).
    pub fn from_duration(duration: Duration) -> Timer {
        Self::from_deadline_inner(Instant::now().checked_add(duration))
    }

    /// A timer that fires at `deadline` (immediately, on the next dispatch, if it has passed).
    pub fn from_deadline(deadline: Instant) -> Timer {
        Self::from_deadline_inner(Some(deadline))
    }

    fn from_deadline_inner(deadline: Option<Instant>) -> Timer {
        Timer {
            deadline,
            registration: None,
        }
    }

    /// Changes the deadline. Takes effect at the next (re-)registration, e.g. after
    /// [`LoopHandle::update`](crate::LoopHandle::update).
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }

    /// Changes the deadline to `duration` from now. Takes effect at the next (re-)registration.
    pub fn set_duration(&mut self, duration: Duration) {
        self.deadline = Instant::now().checked_add(duration);
    }

    /// The deadline this timer will fire at, if any.
    pub fn current_deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

impl EventSource for Timer {
    type Event = Instant;
    type Metadata = ();
    type Ret = TimeoutAction;
    type Error = std::io::Error;

    fn process_events<F>(
        &mut self,
        _: Readiness,
        token: Token,
        mut callback: F,
    ) -> Result<PostAction, Self::Error>
    where
        F: FnMut(Self::Event, &mut Self::Metadata) -> Self::Ret,
    {
        let (Some(registration), Some(deadline)) = (&mut self.registration, self.deadline) else {
            return Ok(PostAction::Continue);
        };
        if registration.token != token {
            return Ok(PostAction::Continue);
        }
        // The heap entry was consumed when it expired; cancel is a no-op for a stale id but
        // guards against a duplicate entry from a re-registration within this dispatch.
        registration.wheel.borrow_mut().cancel(registration.id);
        let next = match callback(deadline, &mut ()) {
            TimeoutAction::Drop => return Ok(PostAction::Remove),
            TimeoutAction::ToInstant(instant) => instant,
            TimeoutAction::ToDuration(duration) => match Instant::now().checked_add(duration) {
                Some(instant) => instant,
                None => {
                    self.deadline = None;
                    return Ok(PostAction::Remove);
                }
            },
        };
        registration.id = registration.wheel.borrow_mut().insert(next, token);
        self.deadline = Some(next);
        Ok(PostAction::Continue)
    }

    fn register(&mut self, poll: &mut Poll, token_factory: &mut TokenFactory) -> crate::Result<()> {
        if let Some(old) = self.registration.take() {
            old.wheel.borrow_mut().cancel(old.id);
        }
        let token = token_factory.token();
        let wheel = poll.timers.clone();
        // A timer with no representable deadline is registered but never fires.
        let id = match self.deadline {
            Some(deadline) => wheel.borrow_mut().insert(deadline, token),
            None => TimerId::NONE,
        };
        self.registration = Some(Registration { token, wheel, id });
        Ok(())
    }

    fn reregister(
        &mut self,
        poll: &mut Poll,
        token_factory: &mut TokenFactory,
    ) -> crate::Result<()> {
        self.register(poll, token_factory)
    }

    fn unregister(&mut self, _poll: &mut Poll) -> crate::Result<()> {
        if let Some(old) = self.registration.take() {
            old.wheel.borrow_mut().cancel(old.id);
        }
        Ok(())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(old) = self.registration.take() {
            if let Ok(mut wheel) = old.wheel.try_borrow_mut() {
                wheel.cancel(old.id);
            }
        }
    }
}

/// What a timer callback asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutAction {
    /// Remove the timer.
    Drop,
    /// Fire again at this instant (on the next dispatch if it has already passed).
    ToInstant(Instant),
    /// Fire again after this duration, counted from now.
    ToDuration(Duration),
}

/// A future that resolves once its deadline has passed, driven by a timer in the loop.
pub struct TimeoutFuture {
    deadline: Option<Instant>,
    waker: Rc<RefCell<Option<Waker>>>,
}

impl std::fmt::Debug for TimeoutFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeoutFuture")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl TimeoutFuture {
    /// A future that resolves after `duration`.
    pub fn from_duration<Data>(handle: &LoopHandle<'_, Data>, duration: Duration) -> TimeoutFuture {
        Self::from_deadline_inner(handle, Instant::now().checked_add(duration))
    }

    /// A future that resolves at `deadline`.
    pub fn from_deadline<Data>(handle: &LoopHandle<'_, Data>, deadline: Instant) -> TimeoutFuture {
        Self::from_deadline_inner(handle, Some(deadline))
    }

    fn from_deadline_inner<Data>(
        handle: &LoopHandle<'_, Data>,
        deadline: Option<Instant>,
    ) -> TimeoutFuture {
        let waker = Rc::new(RefCell::new(None::<Waker>));
        let timer = Timer::from_deadline_inner(deadline);
        let shared = waker.clone();
        // Inserting a timer cannot fail: it registers no file descriptor.
        let _ = handle.insert_source(timer, move |_, _, _| {
            if let Some(waker) = shared.borrow_mut().take() {
                waker.wake();
            }
            TimeoutAction::Drop
        });
        TimeoutFuture { deadline, waker }
    }
}

impl std::future::Future for TimeoutFuture {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => std::task::Poll::Ready(()),
            _ => {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}

/// Identifies one entry of a [`TimerWheel`]; stale ids are harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerId {
    slot: u32,
    generation: u32,
}

impl TimerId {
    const NONE: TimerId = TimerId {
        slot: u32::MAX,
        generation: 0,
    };
}

#[derive(Debug, Clone, Copy)]
struct HeapEntry {
    deadline: Instant,
    /// Insertion order, so timers with equal deadlines fire first-in first-out.
    seq: u64,
    slot: u32,
}

impl HeapEntry {
    fn before(&self, other: &HeapEntry) -> bool {
        (self.deadline, self.seq) < (other.deadline, other.seq)
    }
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    /// Index in the heap, or `FREE`.
    pos: u32,
    token: Option<Token>,
}

const FREE: u32 = u32::MAX;

/// The loop's timers: an indexed binary min-heap on (deadline, insertion order).
///
/// Insert, cancel and pop are O(log n); cancelled and fired slots are reused, so the structure
/// is bounded by the number of live timers, however much they churn.
#[derive(Debug, Default)]
pub(crate) struct TimerWheel {
    heap: Vec<HeapEntry>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    seq: u64,
}

impl TimerWheel {
    pub(crate) fn new() -> TimerWheel {
        TimerWheel::default()
    }

    pub(crate) fn insert(&mut self, deadline: Instant, token: Token) -> TimerId {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    pos: FREE,
                    token: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let pos = self.heap.len();
        self.seq += 1;
        self.heap.push(HeapEntry {
            deadline,
            seq: self.seq,
            slot,
        });
        let s = &mut self.slots[slot as usize];
        s.pos = pos as u32;
        s.token = Some(token);
        let generation = s.generation;
        self.sift_up(pos);
        TimerId { slot, generation }
    }

    pub(crate) fn cancel(&mut self, id: TimerId) {
        let Some(s) = self.slots.get(id.slot as usize) else {
            return;
        };
        if s.generation != id.generation || s.pos == FREE {
            return;
        }
        let pos = s.pos as usize;
        self.remove_at(pos);
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.first().map(|e| e.deadline)
    }

    /// Pops the earliest timer if its deadline is at or before `now`.
    pub(crate) fn next_expired(&mut self, now: Instant) -> Option<Token> {
        let top = self.heap.first()?;
        if top.deadline > now {
            return None;
        }
        let slot = top.slot as usize;
        let token = self.slots[slot].token;
        self.remove_at(0);
        token
    }

    /// Number of live timers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    fn remove_at(&mut self, pos: usize) {
        let removed = self.heap.swap_remove(pos);
        let s = &mut self.slots[removed.slot as usize];
        s.pos = FREE;
        s.token = None;
        s.generation = s.generation.wrapping_add(1);
        self.free.push(removed.slot);
        if pos < self.heap.len() {
            let moved = self.heap[pos].slot;
            self.slots[moved as usize].pos = pos as u32;
            // The moved entry may belong above or below its new place.
            let pos = self.sift_up(pos);
            self.sift_down(pos);
        }
    }

    fn sift_up(&mut self, mut pos: usize) -> usize {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.heap[pos].before(&self.heap[parent]) {
                self.swap(pos, parent);
                pos = parent;
            } else {
                break;
            }
        }
        pos
    }

    fn sift_down(&mut self, mut pos: usize) {
        let len = self.heap.len();
        loop {
            let left = 2 * pos + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.heap[right].before(&self.heap[left]) {
                right
            } else {
                left
            };
            if self.heap[child].before(&self.heap[pos]) {
                self.swap(pos, child);
                pos = child;
            } else {
                break;
            }
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.slots[self.heap[a].slot as usize].pos = a as u32;
        self.slots[self.heap[b].slot as usize].pos = b as u32;
    }
}
