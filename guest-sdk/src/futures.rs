//! Guest-side async: a tiny single-threaded executor driven entirely by host
//! events (calloop's `futures` executor and `io::Async`, inside the
//! sandbox).
//!
//! ```no_run
//! # use std::time::Duration;
//! # fn run(handle: &callop_guest::LoopHandle<()>) {
//! use callop_guest::futures::{Async, TimeoutFuture};
//! use callop_guest::net::TcpListener;
//!
//! handle.spawn(async move {
//!     let listener = Async::new(TcpListener::bind("127.0.0.1:7000").unwrap()).unwrap();
//!     loop {
//!         let (stream, _peer) = listener.accept().await.unwrap();
//!         callop_guest::futures::spawn(async move {
//!             let mut buf = vec![0; 4096];
//!             loop {
//!                 let n = stream.read(&mut buf).await.unwrap_or(0);
//!                 if n == 0 { break }
//!                 if stream.write_all(&buf[..n]).await.is_err() { break }
//!             }
//!         });
//!     }
//! });
//! # }
//! # async fn task() {
//! # use callop_guest::futures::TimeoutFuture;
//! TimeoutFuture::new(Duration::from_secs(1)).await; // inside some task
//! # }
//! ```
//!
//! ## How it runs
//!
//! Tasks are polled at the end of `init`, of every callback batch and of
//! `shutdown`, whenever they have been woken: by an [`Async`] object's
//! readiness event, by a [`TimeoutFuture`]'s timer, or by any waker. There
//! is no thread and nothing blocks: a task waiting for I/O holds a
//! `oneshot` registration of its object, re-armed each time it waits. A
//! task that keeps waking itself is polled at most [`POLL_BUDGET`] times
//! per batch; the executor then schedules an idle callback to continue.
//!
//! A plugin ends when it owns no source: tasks waiting on an [`Async`]
//! object or a [`TimeoutFuture`] hold one, but a task waiting only on
//! another task (e.g. through a shared cell) does not keep the plugin
//! alive.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crate::bindings::callop::plugin::host_loop;
use crate::bindings::callop::plugin::io as wit;
use crate::bindings::callop::plugin::types::{
    EventKind, EventResult, PostAction as WitPost, TimeoutAction as WitTimeout,
};
use crate::generic::{Interest, Mode, Readiness};
use crate::io::Pollable;
use crate::loop_handle::LoopHandle;
use crate::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use crate::rt;
use crate::time::Instant;

/// Maximum number of task polls per callback batch before the executor
/// yields back to the host (and continues from an idle callback).
pub const POLL_BUDGET: usize = 10_000;

type Task = Pin<Box<dyn Future<Output = ()>>>;

thread_local! {
    /// Task slots; `None` while the task is being polled or after it ended.
    static TASKS: RefCell<Vec<Option<Task>>> = const { RefCell::new(Vec::new()) };
    /// Free slot indices.
    static FREE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    /// Woken tasks, in wake order (a task may appear more than once).
    static READY: RefCell<VecDeque<(usize, u64)>> = const { RefCell::new(VecDeque::new()) };
    /// Generation of each slot, so a stale waker cannot poll a new task.
    static GENERATION: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// Whether an idle continuation is already scheduled.
    static IDLE_PENDING: Cell<bool> = const { Cell::new(false) };
}

struct TaskWaker {
    slot: usize,
    generation: u64,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }
    fn wake_by_ref(self: &Arc<Self>) {
        // wasm32-wasip2 has no threads: the waker is always used on the
        // executor's thread.
        READY.with(|r| r.borrow_mut().push_back((self.slot, self.generation)));
    }
}

/// Spawns a task on the plugin's executor. It is first polled when the
/// current `init`/callback batch ends.
pub fn spawn<F: Future<Output = ()> + 'static>(future: F) {
    let task: Task = Box::pin(future);
    let slot = match FREE.with(|f| f.borrow_mut().pop()) {
        Some(slot) => {
            TASKS.with(|t| t.borrow_mut()[slot] = Some(task));
            slot
        }
        None => {
            GENERATION.with(|g| g.borrow_mut().push(0));
            TASKS.with(|t| {
                let mut t = t.borrow_mut();
                t.push(Some(task));
                t.len() - 1
            })
        }
    };
    let generation = GENERATION.with(|g| g.borrow()[slot]);
    READY.with(|r| r.borrow_mut().push_back((slot, generation)));
}

impl<State: 'static> LoopHandle<State> {
    /// Spawns a future on the plugin's executor (see [`futures`](crate::futures)).
    pub fn spawn<F: Future<Output = ()> + 'static>(&self, future: F) {
        spawn(future)
    }

    /// Wraps a pollable object for async use (calloop's `adapt_io`).
    pub fn adapt_io<T: Pollable>(&self, io: T) -> io::Result<Async<T>> {
        Async::new(io)
    }
}

/// Polls woken tasks; called by the runtime at the end of every export.
pub(crate) fn run() {
    let mut polls = 0;
    loop {
        let Some((slot, generation)) = READY.with(|r| r.borrow_mut().pop_front()) else {
            return;
        };
        if GENERATION.with(|g| g.borrow().get(slot).copied()) != Some(generation) {
            continue; // stale waker of a finished task
        }
        let Some(mut task) = TASKS.with(|t| t.borrow_mut().get_mut(slot).and_then(Option::take))
        else {
            continue; // already polled in this run, or being polled
        };
        let waker = Waker::from(Arc::new(TaskWaker { slot, generation }));
        let done = task
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready();
        if done {
            GENERATION.with(|g| g.borrow_mut()[slot] += 1);
            FREE.with(|f| f.borrow_mut().push(slot));
            drop(task); // may touch the loop (e.g. drop an Async)
        } else {
            TASKS.with(|t| t.borrow_mut()[slot] = Some(task));
        }
        polls += 1;
        if polls >= POLL_BUDGET {
            schedule_continuation();
            return;
        }
    }
}

/// Schedules an idle source so that the executor runs again soon (the
/// runtime runs it after every batch).
fn schedule_continuation() {
    if IDLE_PENDING.with(|p| p.replace(true)) {
        return;
    }
    match host_loop::add_idle() {
        Ok(id) => rt::insert(
            id,
            Box::new(|_, _| {
                IDLE_PENDING.with(|p| p.set(false));
                EventResult::Post(WitPost::Continue)
            }),
        ),
        Err(e) => {
            IDLE_PENDING.with(|p| p.set(false));
            crate::log::log(
                crate::log::Level::Error,
                &format!("executor: cannot schedule idle: {}", e.message),
            );
        }
    }
}

// ------------------------------------------------------------------ timers

/// A future that completes at a deadline on the host clock (calloop's
/// `TimeoutFuture`). It registers a timer when first polled; dropping it
/// early removes the timer.
pub struct TimeoutFuture {
    deadline: Option<Instant>,
    timer: Option<(u64, Rc<TimerShared>)>,
}

#[derive(Default)]
struct TimerShared {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl TimeoutFuture {
    /// Completes `duration` from now.
    pub fn new(duration: Duration) -> TimeoutFuture {
        TimeoutFuture {
            deadline: Instant::now().checked_add(duration),
            timer: None,
        }
    }

    /// Completes at `deadline`.
    pub fn at(deadline: Instant) -> TimeoutFuture {
        TimeoutFuture {
            deadline: Some(deadline),
            timer: None,
        }
    }
}

/// Completes `duration` from now (a [`TimeoutFuture`]).
pub fn sleep(duration: Duration) -> TimeoutFuture {
    TimeoutFuture::new(duration)
}

impl Future for TimeoutFuture {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.deadline else {
            return Poll::Pending; // overflowing deadline: never
        };
        if let Some((_, shared)) = &self.timer {
            if shared.fired.get() {
                return Poll::Ready(());
            }
            *shared.waker.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        let shared = Rc::new(TimerShared::default());
        *shared.waker.borrow_mut() = Some(cx.waker().clone());
        match host_loop::add_timer(deadline.as_nanos()) {
            Ok(id) => {
                let s2 = shared.clone();
                rt::insert(
                    id,
                    Box::new(move |_, _| {
                        s2.fired.set(true);
                        if let Some(w) = s2.waker.borrow_mut().take() {
                            w.wake();
                        }
                        EventResult::Timeout(WitTimeout::Drop)
                    }),
                );
                self.timer = Some((id, shared));
                Poll::Pending
            }
            Err(e) => {
                crate::log::log(
                    crate::log::Level::Error,
                    &format!("TimeoutFuture: add-timer failed: {}", e.message),
                );
                Poll::Ready(())
            }
        }
    }
}

impl Drop for TimeoutFuture {
    fn drop(&mut self) {
        if let Some((id, shared)) = self.timer.take() {
            if !shared.fired.get() && rt::forget(id) {
                let _ = host_loop::remove(id);
            }
        }
    }
}

/// Delays for `duration` unless `future` completes first; `Err(())` on
/// timeout.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, ()> {
    let mut future = std::pin::pin!(future);
    let mut timer = std::pin::pin!(TimeoutFuture::new(duration));
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(v) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(()));
        }
        Poll::Pending
    })
    .await
}

// --------------------------------------------------------------------- Async

/// Registration state shared between an [`Async`] and its source callback.
#[derive(Default)]
struct AsyncShared {
    /// Readiness seen since the last wait, per direction.
    readable: Cell<bool>,
    writable: Cell<bool>,
    read_waker: RefCell<Option<Waker>>,
    write_waker: RefCell<Option<Waker>>,
    /// What the (oneshot) registration is currently armed for.
    armed: Cell<Interest>,
}

/// A pollable object adapted for async use (calloop's `io::Async`):
/// `readable().await`, `writable().await`, and async `read`, `write`,
/// `write_all`, `accept`.
///
/// The object is registered in `oneshot` mode the first time a task has to
/// wait for it and re-armed at each later wait; dropping the `Async`
/// removes the registration and closes the object.
pub struct Async<T: Pollable> {
    io: Option<T>,
    id: Cell<Option<u64>>,
    shared: Rc<AsyncShared>,
}

impl<T: Pollable> Async<T> {
    /// Wraps `io` (nothing is registered until a task waits).
    pub fn new(io: T) -> io::Result<Async<T>> {
        Ok(Async {
            io: Some(io),
            id: Cell::new(None),
            shared: Rc::new(AsyncShared::default()),
        })
    }

    /// The object.
    pub fn get_ref(&self) -> &T {
        self.io.as_ref().expect("Async used after into_inner")
    }

    /// Unregisters and returns the object.
    pub fn into_inner(mut self) -> T {
        self.unregister();
        self.io.take().expect("Async used after into_inner")
    }

    fn unregister(&self) {
        if let Some(id) = self.id.take() {
            if rt::forget(id) {
                let _ = host_loop::remove(id);
            }
        }
    }

    /// Arms the registration for `want` (adding to what is armed).
    fn arm(&self, want: Interest) -> io::Result<()> {
        let armed = self.shared.armed.get();
        let new = Interest {
            readable: armed.readable || want.readable,
            writable: armed.writable || want.writable,
        };
        if new == armed && self.id.get().is_some() {
            return Ok(());
        }
        let to_io = |e: crate::bindings::callop::plugin::types::Error| {
            io::Error::other(format!("cannot register I/O object: {}", e.message))
        };
        match self.id.get() {
            Some(id) => {
                wit::set_interest(id, new.to_wit(), Mode::OneShot.to_wit()).map_err(to_io)?
            }
            None => {
                let id = wit::register(
                    &self.get_ref().__pollable(),
                    new.to_wit(),
                    Mode::OneShot.to_wit(),
                )
                .map_err(to_io)?;
                let shared = self.shared.clone();
                rt::insert(
                    id,
                    Box::new(move |kind, _| {
                        if let EventKind::Readiness(r) = kind {
                            let r = Readiness::from_wit(r);
                            // oneshot: the registration is disarmed now.
                            shared.armed.set(Interest::EMPTY);
                            if r.readable || r.error {
                                shared.readable.set(true);
                                if let Some(w) = shared.read_waker.borrow_mut().take() {
                                    w.wake();
                                }
                            }
                            if r.writable || r.error {
                                shared.writable.set(true);
                                if let Some(w) = shared.write_waker.borrow_mut().take() {
                                    w.wake();
                                }
                            }
                        }
                        EventResult::Post(WitPost::Continue)
                    }),
                );
                self.id.set(Some(id));
            }
        }
        self.shared.armed.set(new);
        Ok(())
    }

    /// Polls for readability: `Ready` once a readiness event reported it
    /// since the last call (the flag is consumed), else arms and waits.
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shared.readable.replace(false) {
            return Poll::Ready(Ok(()));
        }
        *self.shared.read_waker.borrow_mut() = Some(cx.waker().clone());
        if let Err(e) = self.arm(Interest::READ) {
            return Poll::Ready(Err(e));
        }
        Poll::Pending
    }

    /// Polls for writability, like [`poll_readable`](Self::poll_readable).
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shared.writable.replace(false) {
            return Poll::Ready(Ok(()));
        }
        *self.shared.write_waker.borrow_mut() = Some(cx.waker().clone());
        if let Err(e) = self.arm(Interest::WRITE) {
            return Poll::Ready(Err(e));
        }
        Poll::Pending
    }

    /// Waits until the object is reported readable.
    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_readable(cx)).await
    }

    /// Waits until the object is reported writable.
    pub async fn writable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_writable(cx)).await
    }

    /// Runs `op` until it does not fail with `WouldBlock`, waiting for
    /// readability in between (calloop's `Async::read_with`).
    pub async fn read_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        loop {
            match op(self.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable().await?,
                r => return r,
            }
        }
    }

    /// Runs `op` until it does not fail with `WouldBlock`, waiting for
    /// writability in between.
    pub async fn write_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        loop {
            match op(self.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                r => return r,
            }
        }
    }
}

impl<T: Pollable> Drop for Async<T> {
    fn drop(&mut self) {
        self.unregister();
    }
}

impl<T: Pollable> Async<T>
where
    for<'a> &'a T: io::Read + io::Write,
{
    /// Reads into `buf` (`Ok(0)` = end-of-file).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(|mut io| io::Read::read(&mut io, buf)).await
    }

    /// Writes a prefix of `buf`.
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(|mut io| io::Write::write(&mut io, buf))
            .await
    }

    /// Writes all of `buf`.
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Reads until end-of-file, appending to `out`.
    pub async fn read_to_end(&self, out: &mut Vec<u8>) -> io::Result<usize> {
        let mut buf = vec![0u8; crate::io::MAX_READ];
        let mut total = 0;
        loop {
            let n = self.read(&mut buf).await?;
            if n == 0 {
                return Ok(total);
            }
            out.extend_from_slice(&buf[..n]);
            total += n;
        }
    }
}

impl Async<TcpListener> {
    /// Accepts a connection.
    pub async fn accept(&self) -> io::Result<(Async<TcpStream>, std::net::SocketAddr)> {
        let (s, peer) = self.read_with(|l| l.accept()).await?;
        Ok((Async::new(s)?, peer))
    }
}

impl Async<UnixListener> {
    /// Accepts a connection.
    pub async fn accept(&self) -> io::Result<Async<UnixStream>> {
        Async::new(self.read_with(|l| l.accept()).await?)
    }
}

impl Async<TcpStream> {
    /// Connects to `addr`, waiting for the connection to complete.
    pub async fn connect(addr: impl ToString) -> io::Result<Async<TcpStream>> {
        let s = Async::new(TcpStream::connect(addr)?)?;
        s.writable().await?;
        match s.get_ref().take_error()? {
            Some(e) => Err(e),
            None => Ok(s),
        }
    }
}

impl Async<crate::net::UdpSocket> {
    /// Receives one datagram.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, std::net::SocketAddr)> {
        self.read_with(|s| s.recv_from(buf)).await
    }

    /// Sends one datagram.
    pub async fn send_to(&self, buf: &[u8], addr: std::net::SocketAddr) -> io::Result<usize> {
        self.write_with(|s| s.send_to(buf, addr)).await
    }
}
