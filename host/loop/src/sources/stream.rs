//! Adapt a [`Stream`] into an event source.
//!
//! [`StreamSource`] polls the stream on the loop's thread and hands each item to the callback
//! as `Some(item)`, then `None` once the stream ends (and the source removes itself). The stream
//! may be woken from any thread: its waker wakes the loop.
//!
//! ```
//! use callop::{EventLoop, stream::StreamSource};
//!
//! let mut event_loop: EventLoop<Vec<u32>> = EventLoop::try_new().unwrap();
//! let (tx, rx) = futures::channel::mpsc::unbounded::<u32>();
//! event_loop
//!     .handle()
//!     .insert_source(StreamSource::new(rx).unwrap(), |item, &mut (), got| {
//!         if let Some(n) = item {
//!             got.push(n);
//!         }
//!     })
//!     .unwrap();
//!
//! std::thread::spawn(move || {
//!     for n in 0..3 {
//!         tx.unbounded_send(n).unwrap();
//!     }
//! });
//! let mut got = Vec::new();
//! while got.len() < 3 {
//!     event_loop.dispatch(None, &mut got).unwrap();
//! }
//! assert_eq!(got, vec![0, 1, 2]);
//! ```

use std::{
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll as TaskPoll, Wake, Waker},
};

use futures_core::Stream;

use crate::{
    EventSource, PostAction, Readiness, Token,
    ping::{Ping, PingError, PingSource, make_ping},
};

/// Wakes the source by pinging it.
struct PingWaker(Ping);

impl Wake for PingWaker {
    fn wake(self: Arc<Self>) {
        self.0.ping();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.ping();
    }
}

/// An event source that yields the items of a [`Stream`]; see the [module docs](self).
pub struct StreamSource<S: Stream + Unpin> {
    stream: S,
    source: PingSource,
    waker: Waker,
}

impl<S: Stream + Unpin + fmt::Debug> fmt::Debug for StreamSource<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSource")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl<S: Stream + Unpin> StreamSource<S> {
    /// Wraps `stream`; it is first polled on the first dispatch after insertion.
    pub fn new(stream: S) -> crate::Result<Self> {
        let (ping, source) = make_ping()?;
        // Pending from the start, so that the first dispatch polls the stream (and registers
        // the waker with it).
        ping.ping();
        Ok(StreamSource {
            stream,
            source,
            waker: Waker::from(Arc::new(PingWaker(ping))),
        })
    }
}

impl<S: Stream + Unpin> EventSource for StreamSource<S> {
    type Event = Option<S::Item>;
    type Metadata = ();
    type Ret = ();
    type Error = StreamError;

    fn process_events<F>(
        &mut self,
        readiness: Readiness,
        token: Token,
        mut callback: F,
    ) -> Result<PostAction, StreamError>
    where
        F: FnMut(Option<S::Item>, &mut ()),
    {
        let mut cx = Context::from_waker(&self.waker);
        let stream = &mut self.stream;
        let mut ended = false;
        let action = self
            .source
            .process_events(readiness, token, |(), &mut ()| {
                while let TaskPoll::Ready(item) = Pin::new(&mut *stream).poll_next(&mut cx) {
                    let end = item.is_none();
                    callback(item, &mut ());
                    if end {
                        ended = true;
                        break;
                    }
                }
            })?;
        Ok(if ended { PostAction::Remove } else { action })
    }

    crate::macros::forward_registration!(source);
}

/// An error of a [`StreamSource`]'s wake-up mechanism.
#[derive(Debug)]
pub struct StreamError(PingError);

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for StreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl From<PingError> for StreamError {
    fn from(err: PingError) -> Self {
        StreamError(err)
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, rc::Rc, time::Duration};

    use super::*;
    use crate::EventLoop;

    #[test]
    fn items_then_none_then_removed() {
        let mut event_loop = EventLoop::<Vec<Option<u32>>>::try_new().unwrap();
        let handle = event_loop.handle();
        let dropped = Rc::new(Cell::new(false));
        struct Tracked(
            futures::stream::Iter<std::vec::IntoIter<u32>>,
            Rc<Cell<bool>>,
        );
        impl Stream for Tracked {
            type Item = u32;
            fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> TaskPoll<Option<u32>> {
                Pin::new(&mut self.0).poll_next(cx)
            }
        }
        impl Drop for Tracked {
            fn drop(&mut self) {
                self.1.set(true);
            }
        }
        let stream = Tracked(futures::stream::iter(vec![1, 2]), dropped.clone());
        handle
            .insert_source(StreamSource::new(stream).unwrap(), |item, &mut (), got| {
                got.push(item)
            })
            .unwrap();

        let mut got = Vec::new();
        event_loop.dispatch(Duration::ZERO, &mut got).unwrap();
        assert_eq!(got, vec![Some(1), Some(2), None]);
        assert!(dropped.get(), "the ended source is removed from the loop");
    }

    #[test]
    fn channel_stream_fed_from_another_thread() {
        let mut event_loop = EventLoop::<usize>::try_new().unwrap();
        let (mut tx, rx) = futures::channel::mpsc::channel::<()>(5);
        event_loop
            .handle()
            .insert_source(StreamSource::new(rx).unwrap(), |item, &mut (), count| {
                if item.is_some() {
                    *count += 1;
                }
            })
            .unwrap();

        let mut count = 0;
        event_loop.dispatch(Duration::ZERO, &mut count).unwrap();
        assert_eq!(count, 0);

        let worker = std::thread::spawn(move || {
            tx.try_send(()).unwrap();
            tx.try_send(()).unwrap();
        });
        while count < 2 {
            event_loop.dispatch(None, &mut count).unwrap();
        }
        worker.join().unwrap();
        assert_eq!(count, 2);
    }

    #[test]
    fn pending_stream_is_not_polled_without_wake() {
        let mut event_loop = EventLoop::<()>::try_new().unwrap();
        let polls = Rc::new(Cell::new(0));
        let counted = polls.clone();
        let stream = futures::stream::poll_fn(move |_| {
            counted.set(counted.get() + 1);
            TaskPoll::<Option<()>>::Pending
        });
        event_loop
            .handle()
            .insert_source(StreamSource::new(stream).unwrap(), |_, _, _| ())
            .unwrap();
        for _ in 0..3 {
            event_loop.dispatch(Duration::ZERO, &mut ()).unwrap();
        }
        assert_eq!(polls.get(), 1);
    }
}
