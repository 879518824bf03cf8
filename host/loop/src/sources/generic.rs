//! A generic event source wrapping any file descriptor: [`Generic`].
//!
//! The callback receives the fd's [`Readiness`] and the fd itself (behind [`NoIoDrop`], so it
//! cannot be replaced or dropped while registered), does the I/O, and returns a
//! [`PostAction`]. It is also the building block for sources of your own: keep a `Generic`
//! inside, and forward the [`EventSource`] calls to it.
//!
//! ```
//! use callop::{EventLoop, Interest, Mode, PostAction, generic::Generic};
//! use std::{io::{Read, Write}, os::unix::net::UnixStream};
//!
//! let mut event_loop: EventLoop<Vec<u8>> = EventLoop::try_new().unwrap();
//! let (mut tx, rx) = UnixStream::pair().unwrap();
//! rx.set_nonblocking(true).unwrap();
//! event_loop
//!     .handle()
//!     .insert_source(Generic::new(rx, Interest::READ, Mode::Level), |readiness, rx, received| {
//!         assert!(readiness.readable);
//!         let mut buf = [0u8; 16];
//!         let n = (&**rx).read(&mut buf)?;
//!         received.extend_from_slice(&buf[..n]);
//!         Ok(PostAction::Continue)
//!     })
//!     .unwrap();
//!
//! tx.write_all(b"hello").unwrap();
//! let mut received = Vec::new();
//! event_loop.dispatch(None, &mut received).unwrap();
//! assert_eq!(received, b"hello");
//! ```
//!
//! Registering an fd that is closed or already registered in the same loop fails, and
//! [`LoopHandle::insert_source`](crate::LoopHandle::insert_source) hands the source back.

use std::{
    borrow, fmt,
    marker::PhantomData,
    ops,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
};

use crate::{
    EventSource, Interest, Mode, Poll, PostAction, Readiness, Token, TokenFactory,
    sys::Unregisterer,
};

/// Gives an `AsFd` implementation to a type that only implements `AsRawFd`, so it can be used
/// with [`Generic`].
#[derive(Debug)]
pub struct FdWrapper<T: AsRawFd>(T);

impl<T: AsRawFd> FdWrapper<T> {
    /// Wraps `inner`.
    ///
    /// # Safety
    /// `inner.as_raw_fd()` must return a valid, open file descriptor for as long as the wrapper
    /// exists (true of any type that owns its fd).
    pub unsafe fn new(inner: T) -> Self {
        FdWrapper(inner)
    }
}

impl<T: AsRawFd> ops::Deref for FdWrapper<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: AsRawFd> ops::DerefMut for FdWrapper<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: AsRawFd> AsFd for FdWrapper<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: `FdWrapper::new`'s contract: the raw fd stays valid while `self` lives, and the
        // borrow cannot outlive `self`.
        unsafe { BorrowedFd::borrow_raw(self.0.as_raw_fd()) }
    }
}

/// Read-only access to the I/O object of a registered [`Generic`].
///
/// It dereferences to the object; it gives no safe `&mut` access, so the object (and its fd)
/// cannot be swapped out or dropped while the poller still watches it. Most I/O works through
/// `&`: `Read` and `Write` are implemented for `&File`, `&UnixStream`, `&TcpStream`, ...
#[derive(Debug)]
pub struct NoIoDrop<T>(T);

impl<T> NoIoDrop<T> {
    /// Mutable access to the object.
    ///
    /// # Safety
    /// The object must not be replaced or dropped (e.g. with `std::mem::swap`/`replace`) through
    /// this reference: the poller would keep watching a closed or different fd.
    pub unsafe fn get_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T> AsRef<T> for NoIoDrop<T> {
    fn as_ref(&self) -> &T {
        &self.0
    }
}

impl<T> borrow::Borrow<T> for NoIoDrop<T> {
    fn borrow(&self) -> &T {
        &self.0
    }
}

impl<T> ops::Deref for NoIoDrop<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: AsFd> AsFd for NoIoDrop<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// An event source wrapping a file descriptor; see the [module docs](self).
///
/// `E` is the error type the callback (hence `process_events`) may return: [`std::io::Error`]
/// by default, anything else with [`new_with_error`](Generic::new_with_error).
///
/// Dropping or [`unwrap`](Self::unwrap)ping a `Generic` that is still registered unregisters its
/// fd first.
pub struct Generic<F: AsFd, E = std::io::Error> {
    /// `None` only transiently, in `unwrap`.
    file: Option<NoIoDrop<F>>,
    /// The readiness to wait for. Changing it takes effect at the next re-registration
    /// ([`LoopHandle::update`](crate::LoopHandle::update) or [`PostAction::Reregister`]).
    pub interest: Interest,
    /// How to wait for it. Changing it takes effect at the next re-registration.
    pub mode: Mode,
    /// Set while registered: the token events arrive with, and how to unregister on drop.
    registration: Option<(Token, Unregisterer)>,
    /// `E` is only ever returned, never stored.
    _error: PhantomData<fn() -> E>,
}

impl<F: AsFd + fmt::Debug, E> fmt::Debug for Generic<F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generic")
            .field("file", &self.file)
            .field("interest", &self.interest)
            .field("mode", &self.mode)
            .field("token", &self.registration.as_ref().map(|(t, _)| t))
            .finish()
    }
}

impl<F: AsFd> Generic<F, std::io::Error> {
    /// Wraps `file`, to be watched for `interest` in `mode`; the callback returns
    /// `std::io::Result<PostAction>`.
    pub fn new(file: F, interest: Interest, mode: Mode) -> Generic<F, std::io::Error> {
        Generic::new_with_error(file, interest, mode)
    }

    /// Wraps `file`, with a callback returning `Result<PostAction, E>`.
    pub fn new_with_error<E>(file: F, interest: Interest, mode: Mode) -> Generic<F, E> {
        Generic {
            file: Some(NoIoDrop(file)),
            interest,
            mode,
            registration: None,
            _error: PhantomData,
        }
    }
}

impl<F: AsFd, E> Generic<F, E> {
    fn file(&self) -> &F {
        match &self.file {
            Some(file) => &file.0,
            // Only `unwrap` and `drop` take the file, and nothing runs after them.
            None => unreachable!("Generic used after unwrap"),
        }
    }

    /// Unregisters the fd if it is still registered (the loop normally did it already).
    fn forget_registration(&mut self) {
        if let (Some((_, unregisterer)), Some(file)) = (self.registration.take(), &self.file) {
            if let Err(e) = unregisterer.delete(file.0.as_fd()) {
                tracing::debug!("failed to unregister a dropped Generic: {e}");
            }
        }
    }

    /// Unwraps the I/O object, unregistering it first if it is still registered.
    pub fn unwrap(mut self) -> F {
        self.forget_registration();
        match self.file.take() {
            Some(NoIoDrop(file)) => file,
            None => unreachable!("Generic used after unwrap"),
        }
    }

    /// The wrapped I/O object.
    pub fn get_ref(&self) -> &F {
        self.file()
    }

    /// Mutable access to the wrapped I/O object.
    ///
    /// # Safety
    /// The object must not be replaced or dropped through this reference while the source is
    /// registered (see [`NoIoDrop::get_mut`]).
    pub unsafe fn get_mut(&mut self) -> &mut F {
        match &mut self.file {
            Some(file) => &mut file.0,
            None => unreachable!("Generic used after unwrap"),
        }
    }
}

impl<F: AsFd, E> Drop for Generic<F, E> {
    fn drop(&mut self) {
        self.forget_registration();
    }
}

impl<F, E> EventSource for Generic<F, E>
where
    F: AsFd,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Event = Readiness;
    type Metadata = NoIoDrop<F>;
    type Ret = Result<PostAction, E>;
    type Error = E;

    fn process_events<C>(
        &mut self,
        readiness: Readiness,
        token: Token,
        mut callback: C,
    ) -> Result<PostAction, E>
    where
        C: FnMut(Readiness, &mut NoIoDrop<F>) -> Result<PostAction, E>,
    {
        match (&self.registration, &mut self.file) {
            (Some((ours, _)), Some(file)) if *ours == token => callback(readiness, file),
            _ => Ok(PostAction::Continue),
        }
    }

    fn register(&mut self, poll: &mut Poll, token_factory: &mut TokenFactory) -> crate::Result<()> {
        let token = token_factory.token();
        // SAFETY: the fd is owned by `self.file`, which cannot be swapped out or dropped while
        // registered without `unsafe` (`NoIoDrop`); dropping or unwrapping `self` unregisters
        // it first.
        unsafe { poll.register(self.file(), self.interest, self.mode, token)? };
        // Only now: a failed registration (closed fd, fd already registered) must not make our
        // drop unregister an fd that someone else registered.
        self.registration = Some((token, poll.poller.unregisterer()));
        Ok(())
    }

    fn reregister(
        &mut self,
        poll: &mut Poll,
        token_factory: &mut TokenFactory,
    ) -> crate::Result<()> {
        let token = token_factory.token();
        poll.reregister(self.file(), self.interest, self.mode, token)?;
        self.registration = Some((token, poll.poller.unregisterer()));
        Ok(())
    }

    fn unregister(&mut self, poll: &mut Poll) -> crate::Result<()> {
        poll.unregister(self.file())?;
        self.registration = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        os::unix::net::UnixStream,
        time::Duration,
    };

    use super::*;
    use crate::{Dispatcher, EventLoop};

    fn pair() -> (UnixStream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    #[test]
    fn dispatch_readable_fd() {
        let mut event_loop = EventLoop::<bool>::try_new().unwrap();
        let (mut tx, rx) = pair();
        event_loop
            .handle()
            .insert_source(
                Generic::new(rx, Interest::READ, Mode::Level),
                |readiness, rx, d| {
                    assert!(readiness.readable && !readiness.writable && !readiness.error);
                    let mut buf = [0u8; 10];
                    assert_eq!((&**rx).read(&mut buf)?, 6);
                    assert_eq!(&buf[..6], &[1, 2, 3, 4, 5, 6]);
                    *d = true;
                    Ok(PostAction::Continue)
                },
            )
            .unwrap();
        let mut dispatched = false;
        event_loop
            .dispatch(Duration::ZERO, &mut dispatched)
            .unwrap();
        assert!(!dispatched);
        tx.write_all(&[1, 2, 3, 4, 5, 6]).unwrap();
        event_loop
            .dispatch(Duration::ZERO, &mut dispatched)
            .unwrap();
        assert!(dispatched);
    }

    #[test]
    fn removed_generic_is_not_dispatched() {
        let mut event_loop = EventLoop::<bool>::try_new().unwrap();
        let (mut tx, rx) = pair();
        let dispatcher = Dispatcher::new(
            Generic::new(rx, Interest::READ, Mode::Level),
            |_, _, d: &mut bool| {
                *d = true;
                Ok(PostAction::Continue)
            },
        );
        let token = event_loop
            .handle()
            .register_dispatcher(dispatcher.clone())
            .unwrap();
        let mut dispatched = false;
        event_loop
            .dispatch(Duration::ZERO, &mut dispatched)
            .unwrap();
        assert!(!dispatched);
        event_loop.handle().remove(token);
        tx.write_all(&[1, 2, 3]).unwrap();
        event_loop
            .dispatch(Duration::ZERO, &mut dispatched)
            .unwrap();
        assert!(!dispatched);
        // The source can be taken back out and registered again.
        let generic = dispatcher.into_source_inner();
        event_loop
            .handle()
            .insert_source(generic, |_, _, d| {
                *d = true;
                Ok(PostAction::Continue)
            })
            .unwrap();
        event_loop
            .dispatch(Duration::ZERO, &mut dispatched)
            .unwrap();
        assert!(dispatched);
    }

    #[test]
    fn registering_a_closed_fd_hands_the_source_back() {
        let event_loop = EventLoop::<()>::try_new().unwrap();
        let (a, _b) = pair();
        let raw = a.as_raw_fd();
        drop(a);
        // SAFETY (of the test): the fd number is closed; registering it must fail, and the
        // wrapper is never used for I/O.
        let wrapper = unsafe { FdWrapper::new(raw) };
        let err = event_loop
            .handle()
            .insert_source(
                Generic::new(wrapper, Interest::READ, Mode::Level),
                |_, _, _| Ok(PostAction::Continue),
            )
            .unwrap_err();
        assert!(matches!(err.error, crate::Error::IoError(_)));
        assert_eq!(err.inserted.get_ref().as_raw_fd(), raw);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn registering_the_same_fd_twice_fails_cleanly() {
        let (mut tx, rx) = pair();
        let mut event_loop = EventLoop::<u32>::try_new().unwrap();
        event_loop
            .handle()
            .insert_source(
                Generic::new(&rx, Interest::READ, Mode::Level),
                |_, rx, n| {
                    let mut buf = [0u8; 8];
                    let _ = (&***rx).read(&mut buf);
                    *n += 1;
                    Ok(PostAction::Continue)
                },
            )
            .unwrap();
        let err = event_loop
            .handle()
            .insert_source(Generic::new(&rx, Interest::READ, Mode::Level), |_, _, n| {
                *n += 100;
                Ok(PostAction::Continue)
            })
            .unwrap_err();
        match &err.error {
            crate::Error::IoError(e) => assert_eq!(
                e.raw_os_error(),
                Some(rustix::io::Errno::EXIST.raw_os_error())
            ),
            other => panic!("unexpected error {other:?}"),
        }
        // Dropping the rejected source must not unregister the first registration.
        drop(err);
        tx.write_all(b"x").unwrap();
        let mut n = 0;
        event_loop.dispatch(Duration::ZERO, &mut n).unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn writable_interest() {
        let mut event_loop = EventLoop::<bool>::try_new().unwrap();
        let (tx, _rx) = pair();
        event_loop
            .handle()
            .insert_source(
                Generic::new(tx, Interest::WRITE, Mode::OneShot),
                |readiness, _, w| {
                    *w = readiness.writable;
                    Ok(PostAction::Continue)
                },
            )
            .unwrap();
        let mut writable = false;
        event_loop.dispatch(Duration::ZERO, &mut writable).unwrap();
        assert!(writable);
    }

    #[test]
    fn error_type_of_new_with_error() {
        #[derive(Debug)]
        struct MyError;
        impl fmt::Display for MyError {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("my error")
            }
        }
        impl std::error::Error for MyError {}

        let mut event_loop = EventLoop::<()>::try_new().unwrap();
        let (mut tx, rx) = pair();
        let source: Generic<_, MyError> = Generic::new_with_error(rx, Interest::READ, Mode::Level);
        event_loop
            .handle()
            .insert_source(source, |_, _, _| Err(MyError))
            .unwrap();
        tx.write_all(b"x").unwrap();
        let err = event_loop.dispatch(Duration::ZERO, &mut ()).unwrap_err();
        match err {
            crate::Error::OtherError(e) => assert_eq!(e.to_string(), "my error"),
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn unwrap_returns_the_file() {
        let (a, _b) = pair();
        let raw = a.as_raw_fd();
        let generic = Generic::new(a, Interest::READ, Mode::Level);
        assert_eq!(generic.get_ref().as_raw_fd(), raw);
        assert_eq!(generic.unwrap().as_raw_fd(), raw);
    }

    /// A composite that holds a `Generic` and drops it without unregistering (as code that
    /// replaces a field does). The poller must forget the fd, even though a duplicate of it
    /// stays open, or a level-triggered fd would wake the loop forever.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn dropping_a_registered_generic_unregisters_its_fd() {
        struct Holder(Option<Generic<UnixStream>>, u32);

        impl EventSource for Holder {
            type Event = ();
            type Metadata = ();
            type Ret = ();
            type Error = std::io::Error;

            fn process_events<C>(
                &mut self,
                readiness: Readiness,
                token: Token,
                _: C,
            ) -> std::io::Result<PostAction>
            where
                C: FnMut((), &mut ()),
            {
                self.1 += 1;
                if let Some(generic) = &mut self.0 {
                    generic.process_events(readiness, token, |_, _| Ok(PostAction::Continue))?;
                }
                // Drop the child without unregistering it.
                self.0 = None;
                Ok(PostAction::Continue)
            }

            fn register(&mut self, poll: &mut Poll, tf: &mut TokenFactory) -> crate::Result<()> {
                self.0.as_mut().map_or(Ok(()), |g| g.register(poll, tf))
            }

            fn reregister(&mut self, poll: &mut Poll, tf: &mut TokenFactory) -> crate::Result<()> {
                self.0.as_mut().map_or(Ok(()), |g| g.reregister(poll, tf))
            }

            fn unregister(&mut self, poll: &mut Poll) -> crate::Result<()> {
                self.0.as_mut().map_or(Ok(()), |g| g.unregister(poll))
            }
        }

        let mut event_loop = EventLoop::<()>::try_new().unwrap();
        let (mut tx, rx) = pair();
        let duplicate = rx.try_clone().unwrap();
        let dispatcher = Dispatcher::new(
            Holder(Some(Generic::new(rx, Interest::READ, Mode::Level)), 0),
            |_, _, _| {},
        );
        event_loop
            .handle()
            .register_dispatcher(dispatcher.clone())
            .unwrap();
        tx.write_all(b"never read").unwrap();
        for _ in 0..5 {
            event_loop
                .dispatch(Duration::from_millis(2), &mut ())
                .unwrap();
        }
        assert_eq!(dispatcher.as_source_ref().1, 1);
        drop(duplicate);
    }
}
