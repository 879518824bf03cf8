//! Adapters for async I/O objects driven by an event loop.
//!
//! [`Async`] wraps an I/O object (anything [`AsFd`]) and offers futures that resolve when it
//! becomes readable or writable, using the loop's poller to watch it. With the `futures-io`
//! feature it also implements [`AsyncRead`](futures_io::AsyncRead) and
//! [`AsyncWrite`](futures_io::AsyncWrite) when the object implements [`Read`](std::io::Read) or
//! [`Write`](std::io::Write). Create one with [`LoopHandle::adapt_io`](crate::LoopHandle::adapt_io),
//! then drive the futures with [`EventLoop::block_on`](crate::EventLoop::block_on) or an
//! [executor](crate::futures) inserted in the same loop.
//!
//! ```
//! use callop::EventLoop;
//! use std::io::{Read, Write};
//! use std::os::unix::net::UnixStream;
//!
//! let mut event_loop: EventLoop<()> = EventLoop::try_new().unwrap();
//! let (mut tx, rx) = UnixStream::pair().unwrap();
//! let mut rx = event_loop.handle().adapt_io(rx).unwrap();
//!
//! tx.write_all(b"ping").unwrap();
//! let received = event_loop
//!     .block_on(
//!         async {
//!             rx.readable().await;
//!             let mut buf = [0u8; 4];
//!             rx.get_mut().read_exact(&mut buf).unwrap();
//!             buf
//!         },
//!         &mut (),
//!         |_| {},
//!     )
//!     .unwrap();
//! assert_eq!(received, Some(*b"ping"));
//! ```
//!
//! Unlike calloop's adapter, a reader and a writer may wait on the same [`Async`] at once (for
//! example after [`futures::io::split`](https://docs.rs/futures/0.3/futures/io/fn.split.html)):
//! each direction keeps its own waker.

use std::{
    cell::RefCell,
    fmt,
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    pin::Pin,
    rc::Rc,
    task::{Context, Poll as TaskPoll, Waker},
};

use crate::{
    Interest, Mode, Poll, PostAction, Readiness, RegistrationToken, Token, TokenFactory,
    loop_logic::{EventIterator, LoopInner},
    sources::{EventDispatcher, ExtraLifecycleSet},
};

/// An I/O object adapted to async use on an event loop; see the [module docs](self).
///
/// Created by [`LoopHandle::adapt_io`](crate::LoopHandle::adapt_io), which puts the file
/// descriptor in non-blocking mode; dropping the adapter (or [`into_inner`](Self::into_inner))
/// unregisters it and restores its previous blocking mode.
///
/// The adapter and its futures are not thread-safe: they belong to the loop's thread.
pub struct Async<'l, F: AsFd> {
    fd: Option<F>,
    state: Rc<RefCell<IoState>>,
    owner: Rc<dyn IoLoop + 'l>,
    was_nonblocking: bool,
}

impl<F: AsFd + fmt::Debug> fmt::Debug for Async<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Async").field("fd", &self.fd).finish()
    }
}

/// What the loop and the adapter share: the registration and the waiting wakers.
///
/// It is also the loop's dispatcher for the adapter's token: events land in
/// [`EventDispatcher::process_events`], which records the readiness and wakes the waiters.
struct IoState {
    /// The adapted descriptor; valid while the [`Async`] (which owns it) exists, and the
    /// state leaves the loop's source list when the `Async` is dropped.
    fd: RawFd,
    token: Token,
    registered: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    /// Readiness reported by the poller and not yet consumed by a future.
    readable: bool,
    writable: bool,
}

impl IoState {
    fn interest(&self) -> Interest {
        Interest {
            readable: self.read_waker.is_some(),
            writable: self.write_waker.is_some(),
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: `fd` belongs to the `Async` owning this state; the state is unregistered and
        // taken out of the loop before the `Async` gives up its descriptor (drop or
        // `into_inner`), so every use here happens while the descriptor is open.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }
}

/// The part of a [`LoopInner`] an adapter needs, without the loop's `Data` type.
trait IoLoop {
    /// (Re-)arms the one-shot registration with the interest of the waiting wakers.
    fn rearm(&self, state: &RefCell<IoState>) -> crate::Result<()>;
    /// Unregisters the descriptor and removes the state from the source list.
    fn release(&self, state: &RefCell<IoState>);
}

impl<Data> IoLoop for LoopInner<'_, Data> {
    fn rearm(&self, state: &RefCell<IoState>) -> crate::Result<()> {
        let mut state = state.borrow_mut();
        let poll = self.poll.try_borrow().map_err(|_| busy_loop())?;
        poll.reregister(state.fd(), state.interest(), Mode::OneShot, state.token)?;
        state.registered = true;
        Ok(())
    }

    fn release(&self, state: &RefCell<IoState>) {
        let mut state = state.borrow_mut();
        if state.registered {
            match self.poll.try_borrow() {
                Ok(poll) => {
                    if let Err(e) = poll.unregister(state.fd()) {
                        tracing::warn!("failed to unregister an async I/O adapter: {e}");
                    }
                }
                Err(_) => {
                    tracing::warn!("cannot unregister an async I/O adapter: the poller is busy")
                }
            }
            state.registered = false;
        }
        match self.sources.try_borrow_mut() {
            Ok(mut sources) => drop(sources.remove(state.token.inner)),
            Err(_) => {
                tracing::warn!("cannot release an async I/O adapter: the source list is busy")
            }
        }
    }
}

fn busy_loop() -> crate::Error {
    std::io::Error::new(std::io::ErrorKind::ResourceBusy, "the event loop is busy").into()
}

impl<'l, F: AsFd> Async<'l, F> {
    pub(crate) fn new<Data>(inner: Rc<LoopInner<'l, Data>>, fd: F) -> crate::Result<Async<'l, F>> {
        let was_nonblocking = set_nonblocking(fd.as_fd(), true)?;
        let state = Rc::new(RefCell::new(IoState {
            fd: fd.as_fd().as_raw_fd(),
            // Replaced below, once the source list has given us a slot.
            token: Token {
                inner: crate::token::TokenInner::new(0, 0),
            },
            registered: false,
            read_waker: None,
            write_waker: None,
            readable: false,
            writable: false,
        }));

        let slot = inner.sources.borrow_mut().insert(state.clone());
        let token = match slot {
            Ok(token) => token,
            Err(e) => {
                let _ = set_nonblocking(fd.as_fd(), was_nonblocking);
                return Err(e);
            }
        };
        state.borrow_mut().token = Token { inner: token };

        // SAFETY: the descriptor is owned by the returned `Async` (through `F`) and unregistered
        // in `release` before the `Async` lets go of it.
        let registered = unsafe {
            inner.poll.borrow().register(
                fd.as_fd(),
                Interest::EMPTY,
                Mode::OneShot,
                Token { inner: token },
            )
        };
        if let Err(e) = registered {
            inner.sources.borrow_mut().remove(token);
            let _ = set_nonblocking(fd.as_fd(), was_nonblocking);
            return Err(e);
        }
        state.borrow_mut().registered = true;

        let owner: Rc<dyn IoLoop + '_> = inner;
        // SAFETY: this only widens the trait object's lifetime bound from the one the compiler
        // picked (bounded by both `'l` and `Data`) to `'l`; the layout is identical. Nothing
        // reachable from a `LoopInner` holds a value of type `Data`: sources, callbacks and idles
        // are all `'l` values that merely take `&mut Data` as an argument. So using or dropping
        // the loop through this handle after `Data`'s lifetime ended touches no data of that
        // lifetime. The adapter itself only uses the poller and removes its own entry.
        let owner =
            unsafe { std::mem::transmute::<Rc<dyn IoLoop + '_>, Rc<dyn IoLoop + 'l>>(owner) };

        Ok(Async {
            fd: Some(fd),
            state,
            owner,
            was_nonblocking,
        })
    }

    /// Borrows the underlying I/O object.
    pub fn get_ref(&self) -> &F {
        self.fd
            .as_ref()
            .expect("the I/O object is present until the adapter is consumed")
    }

    /// Mutably borrows the underlying I/O object.
    pub fn get_mut(&mut self) -> &mut F {
        self.fd
            .as_mut()
            .expect("the I/O object is present until the adapter is consumed")
    }

    /// A future that resolves once the object is ready for reading (or in an error state).
    pub fn readable<'s>(&'s mut self) -> Readable<'s, 'l, F> {
        Readable { io: self }
    }

    /// A future that resolves once the object is ready for writing (or in an error state).
    pub fn writable<'s>(&'s mut self) -> Writable<'s, 'l, F> {
        Writable { io: self }
    }

    /// Removes the adapter and gives back the I/O object, in its previous blocking mode.
    pub fn into_inner(mut self) -> F {
        self.teardown();
        self.fd
            .take()
            .expect("the I/O object is present until the adapter is consumed")
    }

    fn teardown(&mut self) {
        self.owner.release(&self.state);
        if let Some(fd) = &self.fd {
            if let Err(e) = set_nonblocking(fd.as_fd(), self.was_nonblocking) {
                tracing::warn!("failed to restore the blocking mode of an adapted fd: {e}");
            }
        }
    }

    /// Consumes the recorded readiness of one direction, or parks `waker` for it and arms the
    /// poller. `Ready` when the direction was ready, or when arming failed (the caller's next
    /// I/O call then reports the problem instead of waiting forever).
    fn poll_ready(&self, write: bool, waker: &Waker) -> TaskPoll<crate::Result<()>> {
        {
            let mut state = self.state.borrow_mut();
            let (ready, slot) = if write {
                let IoState {
                    writable,
                    write_waker,
                    ..
                } = &mut *state;
                (writable, write_waker)
            } else {
                let IoState {
                    readable,
                    read_waker,
                    ..
                } = &mut *state;
                (readable, read_waker)
            };
            if std::mem::take(ready) {
                return TaskPoll::Ready(Ok(()));
            }
            match slot {
                Some(w) if w.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
        }
        match self.owner.rearm(&self.state) {
            Ok(()) => TaskPoll::Pending,
            Err(e) => {
                let mut state = self.state.borrow_mut();
                if write {
                    state.write_waker = None;
                } else {
                    state.read_waker = None;
                }
                TaskPoll::Ready(Err(e))
            }
        }
    }

    /// Forgets recorded readiness of one direction: the caller is about to ask the OS directly.
    #[cfg(feature = "futures-io")]
    fn clear_ready(&self, write: bool) {
        let mut state = self.state.borrow_mut();
        if write {
            state.writable = false;
        } else {
            state.readable = false;
        }
    }
}

impl<F: AsFd> Drop for Async<'_, F> {
    fn drop(&mut self) {
        if self.fd.is_some() {
            self.teardown();
        }
    }
}

// The adapter never pins the object in place (it only hands out `&mut F`).
impl<F: AsFd> Unpin for Async<'_, F> {}

/// A future that resolves once an [`Async`] object is ready for reading; see
/// [`Async::readable`].
#[derive(Debug)]
pub struct Readable<'s, 'l, F: AsFd> {
    io: &'s mut Async<'l, F>,
}

impl<F: AsFd> std::future::Future for Readable<'_, '_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> TaskPoll<()> {
        match self.io.poll_ready(false, cx.waker()) {
            TaskPoll::Ready(Err(e)) => {
                tracing::warn!("cannot wait for readability: {e}");
                TaskPoll::Ready(())
            }
            other => other.map(|_| ()),
        }
    }
}

/// A future that resolves once an [`Async`] object is ready for writing; see
/// [`Async::writable`].
#[derive(Debug)]
pub struct Writable<'s, 'l, F: AsFd> {
    io: &'s mut Async<'l, F>,
}

impl<F: AsFd> std::future::Future for Writable<'_, '_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> TaskPoll<()> {
        match self.io.poll_ready(true, cx.waker()) {
            TaskPoll::Ready(Err(e)) => {
                tracing::warn!("cannot wait for writability: {e}");
                TaskPoll::Ready(())
            }
            other => other.map(|_| ()),
        }
    }
}

impl<Data> EventDispatcher<Data> for RefCell<IoState> {
    fn process_events(
        &self,
        readiness: Readiness,
        _token: Token,
        _data: &mut Data,
    ) -> crate::Result<PostAction> {
        let (read_waker, write_waker, still_waiting) = {
            let mut state = self.borrow_mut();
            let mut read_waker = None;
            let mut write_waker = None;
            if readiness.readable || readiness.error {
                state.readable = true;
                read_waker = state.read_waker.take();
            }
            if readiness.writable || readiness.error {
                state.writable = true;
                write_waker = state.write_waker.take();
            }
            (read_waker, write_waker, state.interest() != Interest::EMPTY)
        };
        // Woken outside the borrow: a waker may poll its task right away.
        if let Some(w) = read_waker {
            w.wake();
        }
        if let Some(w) = write_waker {
            w.wake();
        }
        // The one-shot registration is now disarmed; re-arm it for the other direction's waiter.
        Ok(if still_waiting {
            PostAction::Reregister
        } else {
            PostAction::Continue
        })
    }

    fn register(
        &self,
        poll: &mut Poll,
        _: &mut ExtraLifecycleSet,
        _: &mut TokenFactory,
    ) -> crate::Result<()> {
        let mut state = self.borrow_mut();
        // SAFETY: see `IoState::fd`: the descriptor stays open while the state is in the loop.
        unsafe { poll.register(state.fd(), state.interest(), Mode::OneShot, state.token)? };
        state.registered = true;
        Ok(())
    }

    fn reregister(
        &self,
        poll: &mut Poll,
        _: &mut ExtraLifecycleSet,
        _: &mut TokenFactory,
    ) -> crate::Result<bool> {
        let Ok(state) = self.try_borrow_mut() else {
            return Ok(false);
        };
        if state.registered {
            poll.reregister(state.fd(), state.interest(), Mode::OneShot, state.token)?;
        }
        Ok(true)
    }

    fn unregister(
        &self,
        poll: &mut Poll,
        _: &mut ExtraLifecycleSet,
        _: RegistrationToken,
    ) -> crate::Result<bool> {
        let Ok(mut state) = self.try_borrow_mut() else {
            return Ok(false);
        };
        if state.registered {
            poll.unregister(state.fd())?;
            state.registered = false;
        }
        Ok(true)
    }

    fn before_sleep(&self) -> crate::Result<Option<(Readiness, Token)>> {
        Ok(None)
    }

    fn before_handle_events(&self, _: EventIterator<'_>) {}
}

#[cfg(feature = "futures-io")]
mod futures_io_impls {
    use std::{
        io::{self, IoSlice, IoSliceMut, Read, Write},
        os::fd::AsFd,
        pin::Pin,
        task::{Context, Poll},
    };

    use futures_io::{AsyncRead, AsyncWrite};

    use super::Async;

    /// Runs `op` on the object; on `WouldBlock`, parks the waker for the direction and retries
    /// once the loop reports readiness.
    fn poll_io<F: AsFd, R>(
        io: &mut Async<'_, F>,
        write: bool,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&mut F) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            io.clear_ready(write);
            match op(io.get_mut()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                res => return Poll::Ready(res),
            }
            match io.poll_ready(write, cx.waker()) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                // Readiness arrived in between: try again.
                Poll::Ready(Ok(())) => {}
            }
        }
    }

    impl<F: AsFd + Read> AsyncRead for Async<'_, F> {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            poll_io(self.get_mut(), false, cx, |f| f.read(buf))
        }

        fn poll_read_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &mut [IoSliceMut<'_>],
        ) -> Poll<io::Result<usize>> {
            poll_io(self.get_mut(), false, cx, |f| f.read_vectored(bufs))
        }
    }

    impl<F: AsFd + Write> AsyncWrite for Async<'_, F> {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            poll_io(self.get_mut(), true, cx, |f| f.write(buf))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            poll_io(self.get_mut(), true, cx, |f| f.write_vectored(bufs))
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            poll_io(self.get_mut(), true, cx, |f| f.flush())
        }

        fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.poll_flush(cx)
        }
    }
}

/// Sets or clears `O_NONBLOCK` and says whether it was set before.
fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> std::io::Result<bool> {
    let previous = rustix::fs::fcntl_getfl(fd)?;
    let was = previous.contains(rustix::fs::OFlags::NONBLOCK);
    if was != nonblocking {
        let flags = if nonblocking {
            previous | rustix::fs::OFlags::NONBLOCK
        } else {
            previous - rustix::fs::OFlags::NONBLOCK
        };
        rustix::fs::fcntl_setfl(fd, flags)?;
    }
    Ok(was)
}

#[cfg(test)]
mod tests {
    use std::{
        cell::Cell,
        io::{Read, Write},
        os::unix::net::UnixStream,
        rc::Rc,
        time::Duration,
    };

    use super::*;
    use crate::EventLoop;

    fn is_nonblocking(fd: impl AsFd) -> bool {
        rustix::fs::fcntl_getfl(fd)
            .unwrap()
            .contains(rustix::fs::OFlags::NONBLOCK)
    }

    /// Fills the socket's send buffer until a write would block.
    fn fill(socket: &mut UnixStream) {
        socket.set_nonblocking(true).unwrap();
        let chunk = [7u8; 4096];
        while socket.write(&chunk).is_ok() {}
    }

    fn drain(socket: &mut UnixStream) -> usize {
        socket.set_nonblocking(true).unwrap();
        let mut total = 0;
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    }

    #[test]
    fn readable_resolves_when_data_arrives() {
        let mut event_loop: EventLoop<()> = EventLoop::try_new().unwrap();
        let (mut tx, rx) = UnixStream::pair().unwrap();
        let mut rx = event_loop.handle().adapt_io(rx).unwrap();
        let became_readable = Rc::new(Cell::new(false));

        let flag = became_readable.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.write_all(&[42]).unwrap();
            tx
        });
        let out = event_loop
            .block_on(
                async {
                    rx.readable().await;
                    flag.set(true);
                    let mut byte = [0u8];
                    rx.get_mut().read_exact(&mut byte).unwrap();
                    byte[0]
                },
                &mut (),
                |_| {},
            )
            .unwrap();
        writer.join().unwrap();
        assert!(became_readable.get());
        assert_eq!(out, Some(42));
    }

    #[test]
    fn writable_resolves_when_buffer_drains() {
        let mut event_loop: EventLoop<()> = EventLoop::try_new().unwrap();
        let (mut tx, mut rx) = UnixStream::pair().unwrap();
        fill(&mut tx);
        let mut tx = event_loop.handle().adapt_io(tx).unwrap();

        let (exec, sched) = crate::futures::executor::<()>().unwrap();
        event_loop
            .handle()
            .insert_source(exec, |(), &mut (), _| ())
            .unwrap();
        let writable = Rc::new(Cell::new(false));
        let flag = writable.clone();
        sched
            .schedule(async move {
                tx.writable().await;
                flag.set(true);
            })
            .unwrap();

        event_loop
            .dispatch(Duration::from_millis(20), &mut ())
            .unwrap();
        assert!(!writable.get(), "a full socket is not writable");

        assert!(drain(&mut rx) > 0);
        while !writable.get() {
            event_loop.dispatch(None, &mut ()).unwrap();
        }
    }

    #[cfg(feature = "futures-io")]
    #[test]
    fn async_read_write_through_executor() {
        use futures::io::{AsyncReadExt, AsyncWriteExt};

        let mut event_loop: EventLoop<()> = EventLoop::try_new().unwrap();
        let handle = event_loop.handle();
        let (exec, sched) = crate::futures::executor::<()>().unwrap();
        handle.insert_source(exec, |(), &mut (), _| ()).unwrap();

        let (tx, rx) = UnixStream::pair().unwrap();
        let mut tx = handle.adapt_io(tx).unwrap();
        let mut rx = handle.adapt_io(rx).unwrap();
        // More than a socket buffer, so both sides have to wait for each other.
        let message: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let expected = message.clone();
        let received = Rc::new(Cell::new(false));

        let flag = received.clone();
        sched
            .schedule(async move {
                let mut buf = vec![0u8; expected.len()];
                rx.read_exact(&mut buf).await.unwrap();
                assert!(buf == expected);
                flag.set(true);
            })
            .unwrap();
        event_loop
            .dispatch(Duration::from_millis(10), &mut ())
            .unwrap();
        assert!(!received.get(), "the reader cannot finish alone");

        sched
            .schedule(async move {
                tx.write_all(&message).await.unwrap();
                tx.flush().await.unwrap();
            })
            .unwrap();
        while !received.get() {
            event_loop.dispatch(None, &mut ()).unwrap();
        }
    }

    #[cfg(feature = "futures-io")]
    #[test]
    fn vectored_read_write() {
        use futures::io::{AsyncReadExt, AsyncWriteExt};
        use std::io::{IoSlice, IoSliceMut};

        let mut event_loop: EventLoop<()> = EventLoop::try_new().unwrap();
        let handle = event_loop.handle();
        let (tx, rx) = UnixStream::pair().unwrap();
        let mut tx = handle.adapt_io(tx).unwrap();
        let mut rx = handle.adapt_io(rx).unwrap();

        let out = event_loop
            .block_on(
                async {
                    let reader = async {
                        let mut buf = [0u8; 12];
                        let mut slices: Vec<_> = buf.chunks_mut(2).map(IoSliceMut::new).collect();
                        let n = rx.read_vectored(&mut slices).await.unwrap();
                        (n, buf)
                    };
                    let writer = async {
                        let data = b"Hello World!";
                        let slices: Vec<_> = data.chunks(2).map(IoSlice::new).collect();
                        tx.write_vectored(&slices).await.unwrap()
                    };
                    futures::join!(reader, writer)
                },
                &mut (),
                |_| {},
            )
            .unwrap();
        let ((read, buf), written) = out.unwrap();
        assert_eq!((read, written), (12, 12));
        assert_eq!(&buf, b"Hello World!");
    }

    #[cfg(feature = "futures-io")]
    #[test]
    fn reader_and_writer_wait_on_one_adapter() {
        use futures::io::{AsyncReadExt, AsyncWriteExt};

        let mut event_loop: EventLoop<()> = EventLoop::try_new().unwrap();
        let handle = event_loop.handle();
        let (exec, sched) = crate::futures::executor::<()>().unwrap();
        handle.insert_source(exec, |(), &mut (), _| ()).unwrap();

        let (mut local, mut peer) = UnixStream::pair().unwrap();
        fill(&mut local);
        let (mut read_half, mut write_half) = handle.adapt_io(local).unwrap().split();
        let read_done = Rc::new(Cell::new(false));
        let write_done = Rc::new(Cell::new(false));

        let flag = read_done.clone();
        sched
            .schedule(async move {
                let mut byte = [0u8];
                read_half.read_exact(&mut byte).await.unwrap();
                flag.set(true);
            })
            .unwrap();
        let flag = write_done.clone();
        sched
            .schedule(async move {
                write_half.write_all(&[1u8; 1024]).await.unwrap();
                flag.set(true);
            })
            .unwrap();
        event_loop
            .dispatch(Duration::from_millis(10), &mut ())
            .unwrap();
        assert!(!read_done.get() && !write_done.get(), "both sides wait");

        // Make the adapter writable, then readable: each waiter must be woken.
        assert!(drain(&mut peer) > 0);
        peer.set_nonblocking(false).unwrap();
        peer.write_all(&[9]).unwrap();
        while !(read_done.get() && write_done.get()) {
            event_loop
                .dispatch(Duration::from_millis(100), &mut ())
                .unwrap();
            drain(&mut peer);
        }
    }

    #[test]
    fn blocking_mode_restored() {
        let event_loop: EventLoop<()> = EventLoop::try_new().unwrap();
        let handle = event_loop.handle();
        let (a, b) = UnixStream::pair().unwrap();

        let adapted = handle.adapt_io(a).unwrap();
        assert!(is_nonblocking(adapted.get_ref()));
        let a = adapted.into_inner();
        assert!(!is_nonblocking(&a));

        b.set_nonblocking(true).unwrap();
        let b = Rc::new(b);
        drop(handle.adapt_io(b.clone()).unwrap());
        assert!(is_nonblocking(&*b), "a non-blocking fd stays non-blocking");
    }

    #[test]
    fn fd_can_be_adapted_again_after_drop() {
        let event_loop: EventLoop<()> = EventLoop::try_new().unwrap();
        let handle = event_loop.handle();
        let socket = Rc::new(UnixStream::pair().unwrap().0);
        drop(handle.adapt_io(socket.clone()).unwrap());
        let again = handle.adapt_io(socket.clone()).unwrap();
        drop(again.into_inner());
        let _third = handle.adapt_io(socket).unwrap();
        assert_eq!(handle.inner.sources.borrow().len(), 1);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn adapting_twice_at_once_fails_cleanly() {
        let event_loop: EventLoop<()> = EventLoop::try_new().unwrap();
        let handle = event_loop.handle();
        let socket = Rc::new(UnixStream::pair().unwrap().0);
        let _first = handle.adapt_io(socket.clone()).unwrap();
        let err = handle.adapt_io(socket.clone()).unwrap_err();
        assert!(
            matches!(err, crate::Error::IoError(e) if e.kind() == std::io::ErrorKind::AlreadyExists)
        );
        assert_eq!(
            handle.inner.sources.borrow().len(),
            1,
            "the failed adapter left no source behind"
        );
        assert!(
            is_nonblocking(&*socket),
            "the first adapter's mode is untouched"
        );
    }

    #[test]
    fn adapter_outlives_event_loop() {
        let event_loop: EventLoop<()> = EventLoop::try_new().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let adapted = event_loop.handle().adapt_io(a).unwrap();
        drop(event_loop);
        let a = adapted.into_inner();
        assert!(!is_nonblocking(&a));
    }
}
