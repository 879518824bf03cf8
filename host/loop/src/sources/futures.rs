//! A futures executor as an event source.
//!
//! [`executor`] creates a pair: an [`Executor<T>`], to insert in the loop, and a
//! [`Scheduler<T>`], to hand it futures whose output is `T`. Futures are polled on the loop's
//! thread, during dispatch; each finished future's output goes to the executor's callback.
//! Futures need not be `Send`, but their wakers are: a future may be woken from any thread (by a
//! channel fed by a worker thread, say), which wakes the loop. Use `T = ()` and let the futures
//! deliver their results by their own means for a general-purpose executor.
//!
//! The executor is not I/O aware by itself: futures wait on I/O with
//! [`LoopHandle::adapt_io`](crate::LoopHandle::adapt_io), on time with
//! [`TimeoutFuture`](crate::timer::TimeoutFuture), or on anything else with a waker.
//!
//! ```
//! use callop::{EventLoop, futures::executor};
//!
//! let mut event_loop: EventLoop<Vec<u32>> = EventLoop::try_new().unwrap();
//! let (exec, sched) = executor::<u32>().unwrap();
//! event_loop
//!     .handle()
//!     .insert_source(exec, |answer, &mut (), answers| answers.push(answer))
//!     .unwrap();
//!
//! let (tx, rx) = std::sync::mpsc::channel::<u32>();
//! let (wake_tx, wake_rx) = futures::channel::oneshot::channel::<()>();
//! sched
//!     .schedule(async move {
//!         wake_rx.await.unwrap(); // woken from another thread
//!         rx.recv().unwrap() * 2
//!     })
//!     .unwrap();
//! std::thread::spawn(move || {
//!     tx.send(21).unwrap();
//!     wake_tx.send(()).unwrap();
//! });
//!
//! let mut answers = Vec::new();
//! while answers.is_empty() {
//!     event_loop.dispatch(None, &mut answers).unwrap();
//! }
//! assert_eq!(answers, vec![42]);
//! ```

use std::{
    cell::RefCell,
    collections::VecDeque,
    fmt,
    future::Future,
    rc::{Rc, Weak},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::Waker,
};

use async_task::{Builder, Runnable};

use crate::{
    EventSource, PostAction, Readiness, Token,
    channel::ChannelError,
    ping::{Ping, PingError, PingSource, make_ping},
};

/// How many tasks one dispatch runs at most before letting the other sources have their turn.
const BATCH: usize = 1024;

/// A futures executor as an event source; see the [module docs](self).
///
/// Its events are the outputs of the futures, in the order they finish. Dropping it drops the
/// futures that have not finished yet (on the loop's thread).
pub struct Executor<T> {
    state: Rc<State<T>>,
    /// Readable when some task was woken.
    source: PingSource,
    /// Our own end of the ping, to come back when one batch did not empty the queue.
    ping: Ping,
}

/// Sends futures to an [`Executor`]; cheap to clone. It lives on the loop's thread.
pub struct Scheduler<T> {
    state: Rc<State<T>>,
}

impl<T> Clone for Scheduler<T> {
    fn clone(&self) -> Self {
        Scheduler {
            state: self.state.clone(),
        }
    }
}

impl<T> fmt::Debug for Executor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("tasks", &self.state.live_tasks())
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Scheduler<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("tasks", &self.state.live_tasks())
            .finish_non_exhaustive()
    }
}

/// What the executor and its schedulers share (on the loop's thread).
struct State<T> {
    queue: Arc<RunQueue>,
    /// `None` once the executor is gone.
    tasks: RefCell<Option<Tasks<T>>>,
}

impl<T> State<T> {
    fn live_tasks(&self) -> Option<usize> {
        self.tasks.try_borrow().ok()?.as_ref().map(|t| t.live)
    }
}

/// The woken tasks, pushed by wakers from any thread.
struct RunQueue {
    runnables: Mutex<VecDeque<Runnable<usize>>>,
    /// Set from the first push after the executor started a batch, to ping only once per batch.
    notified: AtomicBool,
    wake_up: Ping,
}

impl RunQueue {
    fn push(&self, runnable: Runnable<usize>) {
        // Only `push_back`/`pop_front` happen under the lock: a poisoned lock holds a consistent
        // queue.
        self.runnables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(runnable);
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.wake_up.ping();
        }
    }

    fn pop(&self) -> Option<Runnable<usize>> {
        self.runnables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }

    fn is_empty(&self) -> bool {
        self.runnables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

/// The tasks of an executor, indexed by the metadata of their runnables.
struct Tasks<T> {
    slots: Vec<Slot<T>>,
    free: Vec<usize>,
    live: usize,
}

enum Slot<T> {
    Vacant,
    /// Not finished; waking this waker (re)schedules the task.
    Pending(Waker),
    /// Finished, output not yet handed to the callback.
    Finished(T),
}

impl<T> Tasks<T> {
    fn new() -> Self {
        Tasks {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    fn next_index(&self) -> usize {
        self.free.last().copied().unwrap_or(self.slots.len())
    }

    /// Fills the slot [`next_index`](Self::next_index) named.
    fn insert(&mut self, waker: Waker) -> usize {
        self.live += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Slot::Pending(waker);
                i
            }
            None => {
                self.slots.push(Slot::Pending(waker));
                self.slots.len() - 1
            }
        }
    }

    fn finish(&mut self, index: usize, output: T) {
        if let Some(slot @ Slot::Pending(_)) = self.slots.get_mut(index) {
            *slot = Slot::Finished(output);
        }
    }

    fn remove(&mut self, index: usize) -> Option<T> {
        let slot = std::mem::replace(self.slots.get_mut(index)?, Slot::Vacant);
        if matches!(slot, Slot::Vacant) {
            return None;
        }
        self.live -= 1;
        self.free.push(index);
        match slot {
            Slot::Finished(output) => Some(output),
            _ => None,
        }
    }

    fn take_finished(&mut self, index: usize) -> Option<T> {
        match self.slots.get(index) {
            Some(Slot::Finished(_)) => self.remove(index),
            _ => None,
        }
    }
}

/// Travels inside each task's future: stores the output in the task's slot when the future
/// completes, or frees the slot when the future is dropped unfinished.
struct Completion<T> {
    index: usize,
    state: Weak<State<T>>,
    output: Option<T>,
}

impl<T> Drop for Completion<T> {
    fn drop(&mut self) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        // Never busy in practice: the executor holds no borrow while it runs or drops a task.
        let Ok(mut tasks) = state.tasks.try_borrow_mut() else {
            return;
        };
        if let Some(tasks) = tasks.as_mut() {
            match self.output.take() {
                Some(output) => tasks.finish(self.index, output),
                None => drop(tasks.remove(self.index)),
            }
        }
    }
}

impl<T> Scheduler<T> {
    /// Sends `future` to the executor, which polls it on its next dispatch.
    ///
    /// Fails once the executor has been dropped.
    pub fn schedule<Fut>(&self, future: Fut) -> Result<(), ExecutorDestroyed>
    where
        Fut: Future<Output = T> + 'static,
        T: 'static,
    {
        let mut guard = self.state.tasks.borrow_mut();
        let tasks = guard.as_mut().ok_or(ExecutorDestroyed)?;
        let index = tasks.next_index();

        let completion = Completion {
            index,
            state: Rc::downgrade(&self.state),
            output: None,
        };
        let task_future = async move {
            // Moved into the body so that it drops as soon as the future completes.
            let mut completion = completion;
            completion.output = Some(future.await);
        };
        let queue = self.state.queue.clone();
        // `spawn_local` lets the future be `!Send`: async-task checks that it is only polled and
        // dropped on this thread, while the runnables (and wakers) travel through the
        // thread-safe run queue. The executor runs and drops them all on this thread.
        let (runnable, task) = Builder::new()
            .metadata(index)
            .spawn_local(move |_| task_future, move |runnable| queue.push(runnable));
        let inserted = tasks.insert(runnable.waker());
        debug_assert_eq!(inserted, index);
        drop(guard);

        // Detached: the task runs to completion (or until the executor is dropped) on its own.
        task.detach();
        runnable.schedule();
        Ok(())
    }
}

impl<T> Drop for Executor<T> {
    fn drop(&mut self) {
        // From now on `schedule` fails, and finishing or dropped futures find no slot.
        let tasks = self.state.tasks.borrow_mut().take();
        // Wake every unfinished task: its runnable lands in the queue, where dropping it cancels
        // the task and drops its future, here, on the loop's thread.
        for slot in tasks.into_iter().flat_map(|t| t.slots) {
            if let Slot::Pending(waker) = slot {
                waker.wake();
            }
        }
        // Dropping a future may wake other tasks; they were all queued above already, so this
        // ends with the queue empty for good.
        while let Some(runnable) = self.state.queue.pop() {
            drop(runnable);
        }
    }
}

/// The error of [`Scheduler::schedule`] once the executor has been dropped.
#[derive(Debug)]
pub struct ExecutorDestroyed;

impl fmt::Display for ExecutorDestroyed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the executor was destroyed")
    }
}

impl std::error::Error for ExecutorDestroyed {}

/// Creates an executor and its scheduler.
///
/// Fails only if the OS refuses the executor's wake-up descriptor (too many open files).
pub fn executor<T>() -> crate::Result<(Executor<T>, Scheduler<T>)> {
    let (ping, source) = make_ping()?;
    let state = Rc::new(State {
        queue: Arc::new(RunQueue {
            runnables: Mutex::new(VecDeque::new()),
            notified: AtomicBool::new(false),
            wake_up: ping.clone(),
        }),
        tasks: RefCell::new(Some(Tasks::new())),
    });
    Ok((
        Executor {
            state: state.clone(),
            source,
            ping,
        },
        Scheduler { state },
    ))
}

impl<T> EventSource for Executor<T> {
    type Event = T;
    type Metadata = ();
    type Ret = ();
    type Error = ExecutorError;

    fn process_events<F>(
        &mut self,
        readiness: Readiness,
        token: Token,
        mut callback: F,
    ) -> Result<PostAction, ExecutorError>
    where
        F: FnMut(T, &mut ()),
    {
        let state = &self.state;
        let action = self
            .source
            .process_events(readiness, token, |(), &mut ()| {
                // Wakes from now on ping again.
                state.queue.notified.store(false, Ordering::Release);
                for _ in 0..BATCH {
                    let Some(runnable) = state.queue.pop() else {
                        break;
                    };
                    let index = *runnable.metadata();
                    // No borrow of `tasks` is held while the task runs: it may schedule more.
                    runnable.run();
                    let finished = state
                        .tasks
                        .borrow_mut()
                        .as_mut()
                        .and_then(|t| t.take_finished(index));
                    if let Some(output) = finished {
                        // Nor while the callback runs.
                        callback(output, &mut ());
                    }
                }
            })
            .map_err(ExecutorError::WakeError)?;

        if !self.state.queue.is_empty() {
            // The batch did not empty the queue: come back on the next dispatch.
            self.ping.ping();
        }
        Ok(action)
    }

    crate::macros::forward_registration!(source);
}

/// An error of the executor's event processing.
#[derive(Debug)]
pub enum ExecutorError {
    /// Error while reading new futures added via [`Scheduler::schedule`]. (Kept for calloop
    /// compatibility; this executor never reports it.)
    NewFutureError(ChannelError),
    /// Error while processing the wake-ups of the futures.
    WakeError(PingError),
}

impl fmt::Display for ExecutorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NewFutureError(err) => write!(f, "error adding new futures: {err}"),
            Self::WakeError(err) => write!(f, "error processing wake events: {err}"),
        }
    }
}

impl std::error::Error for ExecutorError {}

#[cfg(test)]
mod tests {
    use std::{
        cell::{Cell, RefCell},
        rc::Rc,
        time::{Duration, Instant},
    };

    use super::*;
    use crate::{EventLoop, RegistrationToken, timer::TimeoutFuture};

    /// An executor inserted in `event_loop` that pushes every finished output.
    fn collecting_executor(event_loop: &EventLoop<'_, Vec<u32>>) -> Scheduler<u32> {
        let (exec, sched) = executor::<u32>().unwrap();
        event_loop
            .handle()
            .insert_source(exec, |ret, &mut (), got| got.push(ret))
            .unwrap();
        sched
    }

    /// An executor of `()` futures inserted in `event_loop`, ignoring their outputs.
    fn unit_executor(event_loop: &EventLoop<'_, ()>) -> (Scheduler<()>, RegistrationToken) {
        let (exec, sched) = executor::<()>().unwrap();
        let token = event_loop
            .handle()
            .insert_source(exec, |_, _, _| ())
            .unwrap();
        (sched, token)
    }

    #[test]
    fn finished_future_output_reaches_callback() {
        let mut event_loop = EventLoop::<u32>::try_new().unwrap();
        let (exec, sched) = executor::<u32>().unwrap();
        event_loop
            .handle()
            .insert_source(exec, |ret, &mut (), got| *got = ret)
            .unwrap();

        let mut got = 0;
        event_loop.dispatch(Duration::ZERO, &mut got).unwrap();
        assert_eq!(got, 0);

        sched.schedule(async { 42 }).unwrap();
        event_loop.dispatch(Duration::ZERO, &mut got).unwrap();
        assert_eq!(got, 42);
    }

    #[test]
    fn batch_is_bounded_then_resumes() {
        let mut event_loop = EventLoop::<()>::try_new().unwrap();
        let (sched, _) = unit_executor(&event_loop);

        let counter = Rc::new(Cell::new(0));
        for _ in 0..BATCH + 1 {
            let counter = counter.clone();
            sched
                .schedule(async move { counter.set(counter.get() + 1) })
                .unwrap();
        }
        event_loop.dispatch(Duration::ZERO, &mut ()).unwrap();
        assert_eq!(counter.get(), BATCH);
        event_loop.dispatch(Duration::ZERO, &mut ()).unwrap();
        assert_eq!(counter.get(), BATCH + 1);
    }

    #[test]
    fn future_woken_from_another_thread() {
        let mut event_loop = EventLoop::<Vec<u32>>::try_new().unwrap();
        let sched = collecting_executor(&event_loop);

        let mut senders = Vec::new();
        for i in 0..4 {
            let (tx, rx) = futures::channel::oneshot::channel::<u32>();
            senders.push(tx);
            sched
                .schedule(async move { rx.await.unwrap() + i })
                .unwrap();
        }
        let mut got = Vec::new();
        event_loop.dispatch(Duration::ZERO, &mut got).unwrap();
        assert!(got.is_empty());

        let worker = std::thread::spawn(move || {
            for tx in senders {
                tx.send(10).unwrap();
            }
        });
        while got.len() < 4 {
            event_loop.dispatch(None, &mut got).unwrap();
        }
        worker.join().unwrap();
        got.sort();
        assert_eq!(got, vec![10, 11, 12, 13]);
    }

    #[test]
    fn many_futures_all_complete() {
        const N: u64 = 10_000;
        let mut event_loop = EventLoop::<(u64, u64)>::try_new().unwrap();
        let (exec, sched) = executor::<u64>().unwrap();
        event_loop
            .handle()
            .insert_source(exec, |ret, &mut (), (count, sum)| {
                *count += 1;
                *sum += ret;
            })
            .unwrap();

        // Half of them wait for a channel that the other half feed.
        let (tx, rx) = futures::channel::mpsc::unbounded::<u64>();
        let rx = Rc::new(RefCell::new(rx));
        for i in 0..N / 2 {
            let rx = rx.clone();
            sched
                .schedule(async move {
                    use futures::StreamExt;
                    let next = std::future::poll_fn(|cx| rx.borrow_mut().poll_next_unpin(cx));
                    next.await.unwrap() + i
                })
                .unwrap();
            let tx = tx.clone();
            sched
                .schedule(async move {
                    tx.unbounded_send(i).unwrap();
                    0
                })
                .unwrap();
        }
        let mut totals = (0, 0);
        while totals.0 < N {
            event_loop.dispatch(None, &mut totals).unwrap();
        }
        let half = N / 2;
        assert_eq!(totals, (N, 2 * (half * (half - 1) / 2)));
    }

    #[test]
    fn timeout_future_inside_executor_is_never_early() {
        let mut event_loop = EventLoop::<Option<Instant>>::try_new().unwrap();
        let handle = event_loop.handle();
        let (exec, sched) = executor::<Instant>().unwrap();
        handle
            .insert_source(exec, |at, &mut (), got| *got = Some(at))
            .unwrap();

        let start = Instant::now();
        let delay = Duration::from_millis(20);
        let timeout = TimeoutFuture::from_duration(&handle, delay);
        sched
            .schedule(async move {
                timeout.await;
                Instant::now()
            })
            .unwrap();

        let mut got = None;
        while got.is_none() {
            event_loop.dispatch(None, &mut got).unwrap();
        }
        assert!(got.unwrap() - start >= delay);
    }

    #[test]
    fn future_can_schedule_another() {
        let mut event_loop = EventLoop::<Vec<u32>>::try_new().unwrap();
        let sched = collecting_executor(&event_loop);

        let inner = sched.clone();
        sched
            .schedule(async move {
                inner.schedule(async { 2 }).unwrap();
                1
            })
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            event_loop
                .dispatch(Duration::from_secs(1), &mut got)
                .unwrap();
        }
        assert_eq!(got, vec![1, 2]);
    }

    struct SetOnDrop(Rc<Cell<bool>>);

    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }

    #[test]
    fn dropping_executor_drops_pending_futures() {
        let mut event_loop = EventLoop::<()>::try_new().unwrap();
        let handle = event_loop.handle();
        let (sched, token) = unit_executor(&event_loop);

        let polled_pending = Rc::new(Cell::new(false));
        let dropped_pending = Rc::new(Cell::new(false));
        let dropped_unpolled = Rc::new(Cell::new(false));
        let (_tx, rx) = futures::channel::oneshot::channel::<()>();
        {
            let guard = SetOnDrop(dropped_pending.clone());
            let polled = polled_pending.clone();
            sched
                .schedule(async move {
                    let _guard = guard;
                    polled.set(true);
                    let _ = rx.await;
                })
                .unwrap();
        }
        event_loop.dispatch(Duration::ZERO, &mut ()).unwrap();
        assert!(polled_pending.get());
        assert!(!dropped_pending.get());

        // Scheduled but never polled.
        let guard = SetOnDrop(dropped_unpolled.clone());
        sched.schedule(async move { drop(guard) }).unwrap();

        handle.remove(token);
        assert!(dropped_pending.get());
        assert!(dropped_unpolled.get());
    }

    #[test]
    fn schedule_fails_after_executor_dropped() {
        let (exec, sched) = executor::<()>().unwrap();
        drop(exec);
        assert!(matches!(sched.schedule(async {}), Err(ExecutorDestroyed)));
    }

    #[test]
    fn waking_after_executor_dropped_is_harmless() {
        let mut event_loop = EventLoop::<()>::try_new().unwrap();
        let handle = event_loop.handle();
        let (sched, token) = unit_executor(&event_loop);

        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        sched
            .schedule(async move {
                let _ = rx.await;
            })
            .unwrap();
        event_loop.dispatch(Duration::ZERO, &mut ()).unwrap();
        handle.remove(token);
        drop(sched);
        // The receiving task is gone; waking it from another thread does nothing.
        std::thread::spawn(move || {
            let _ = tx.send(());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn block_on_returns_the_output() {
        let mut event_loop = EventLoop::<u32>::try_new().unwrap();
        let handle = event_loop.handle();
        let mut data = 0;
        let out = event_loop
            .block_on(
                async {
                    TimeoutFuture::from_duration(&handle, Duration::from_millis(1)).await;
                    7
                },
                &mut data,
                |_| {},
            )
            .unwrap();
        assert_eq!(out, Some(7));
    }

    #[test]
    fn block_on_drives_an_executor() {
        let mut event_loop = EventLoop::<Vec<u32>>::try_new().unwrap();
        let sched = collecting_executor(&event_loop);
        let (tx, rx) = futures::channel::oneshot::channel::<u32>();
        sched
            .schedule(async move {
                tx.send(5).unwrap();
                6
            })
            .unwrap();
        let mut got = Vec::new();
        let out = event_loop.block_on(rx, &mut got, |_| {}).unwrap();
        assert_eq!(out, Some(Ok(5)));
        assert_eq!(got, vec![6]);
    }

    #[test]
    fn block_on_returns_none_when_stopped() {
        let mut event_loop = EventLoop::<()>::try_new().unwrap();
        let signal = event_loop.get_signal();
        let handle = event_loop.handle();
        handle
            .insert_source(crate::timer::Timer::immediate(), move |_, _, _| {
                signal.stop();
                crate::timer::TimeoutAction::Drop
            })
            .unwrap();
        let out = event_loop
            .block_on(std::future::pending::<()>(), &mut (), |_| {})
            .unwrap();
        assert_eq!(out, None);
    }
}
