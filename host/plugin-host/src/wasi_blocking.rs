//! The WASI p2 calls that can block, replaced so that they never hold the
//! loop beyond the calling plugin's budget.
//!
//! A plugin runs on the loop thread, so a guest waiting in `wasi:io/poll`
//! (`std::thread::sleep`, say) would stop every plugin and the host. Epoch
//! interruption cannot help: it is checked only while wasm code runs. The
//! host therefore links its own versions of the functions that wait —
//! `wasi:io/poll.poll`, `pollable.block`, and the `blocking-*` calls of
//! `wasi:io/streams` (`blocking-read`, `blocking-skip`,
//! `blocking-write-and-flush`, `blocking-write-zeroes-and-flush`,
//! `blocking-flush`, `blocking-splice`); stdin reads and clock waits
//! (`monotonic-clock.subscribe-*` then `block`) go through them. Each does
//! what wasmtime-wasi's own does, with a bound on the wait:
//!
//! * what is left of the guest call's budget
//!   ([`CpuDeadline::wait_budget`]: the callback timeout, `init` and
//!   `shutdown` have their own), in wall time. The time waited is spent
//!   from that budget. If the wait outlasts it, the call fails with
//!   [`BlockedCall`]: the plugin fails with
//!   [`FaultKind::Blocked`](crate::fault::FaultKind::Blocked);
//! * the host's [`Alarm`](crate::alarm::Alarm): a shutdown deadline or a
//!   forced exit ends the wait at once ([`Interrupted`]).
//!
//! A call that needs no waiting (a ready pollable, a stream with room)
//! returns at once as before; `blocking-write-and-flush` to a stream with
//! room whose flush completes at once (stdout, stderr: every line a plugin
//! prints) does not even enter the async runtime. Without a deadline
//! (`--callback-timeout 0`) a wait is bounded only by the alarm.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamError, StreamResult};
use wasmtime_wasi::runtime::in_tokio;

use crate::state::PluginState;
use crate::ticker::CpuDeadline;

/// A guest waited in a blocking WASI call longer than its call's budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedCall {
    /// The WASI function (e.g. `wasi:io/poll.poll`).
    pub call: &'static str,
    /// How long it had waited when it was stopped.
    pub waited: Duration,
}

impl std::fmt::Display for BlockedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "blocked in a host call ({}) for {:?}, the rest of the call's budget: \
             plugins must not sleep or wait, use a Timer or register the object with the loop",
            self.call, self.waited
        )
    }
}

impl std::error::Error for BlockedCall {}

/// A blocking WASI call was ended by the host's alarm (shutdown deadline or
/// forced exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted by the host's shutdown")
    }
}

impl std::error::Error for Interrupted {}

/// Links the bounded versions over wasmtime-wasi's (call after
/// `wasmtime_wasi::p2::add_to_linker_sync`).
pub(crate) fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let r = poll::add_to_linker::<PluginState, Bounded>(linker, guarded)
        .and_then(|()| streams::add_to_linker::<PluginState, Bounded>(linker, guarded));
    linker.allow_shadowing(false);
    r
}

/// The store data the bounded calls see.
struct Bounded;

impl HasData for Bounded {
    type Data<'a> = Guarded<'a>;
}

/// The resource table, with the deadline of the running call.
struct Guarded<'a> {
    table: &'a mut ResourceTable,
    deadline: Option<&'a CpuDeadline>,
}

/// The [`Guarded`] view of a plugin's store data.
fn guarded(s: &mut PluginState) -> Guarded<'_> {
    Guarded {
        deadline: s.deadline.as_deref(),
        table: &mut s.table,
    }
}

/// Runs `fut` (one of wasmtime-wasi's own blocking calls) to completion,
/// waiting at most the rest of the call's budget and not past the alarm.
fn bounded<F: Future>(
    deadline: Option<&CpuDeadline>,
    call: &'static str,
    fut: F,
) -> wasmtime::Result<F::Output> {
    let Some(deadline) = deadline else {
        return Ok(in_tokio(fut));
    };
    let alarm = deadline.alarm();
    let budget = deadline.wait_budget();
    let start = Instant::now();
    let r = in_tokio(async {
        let mut fut = pin!(fut);
        loop {
            let changed = alarm.changed.notified();
            let mut changed = pin!(changed);
            changed.as_mut().enable();
            if alarm.due() {
                return Err(wasmtime::Error::new(Interrupted));
            }
            let left = budget.map(|b| b.saturating_sub(start.elapsed()));
            let limit = match (left, alarm.until()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut sleep = pin!(tokio::time::sleep(limit.unwrap_or(Duration::MAX)));
            let woke = std::future::poll_fn(|cx| {
                if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                    return Poll::Ready(Some(v));
                }
                if changed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                if limit.is_some() && sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            if let Some(v) = woke {
                return Ok(v);
            }
            if alarm.due() {
                return Err(wasmtime::Error::new(Interrupted));
            }
            if budget.is_some_and(|b| start.elapsed() >= b) {
                return Err(wasmtime::Error::new(BlockedCall {
                    call,
                    waited: start.elapsed(),
                }));
            }
            // The alarm changed (raised for later, or cleared): wait again.
        }
    });
    deadline.spend_blocked(start.elapsed());
    r
}

/// [`bounded`] for a stream call: a trap on a stopped wait.
fn bounded_stream<T, F: Future<Output = StreamResult<T>>>(
    deadline: Option<&CpuDeadline>,
    call: &'static str,
    fut: F,
) -> StreamResult<T> {
    bounded(deadline, call, fut).unwrap_or_else(|e| Err(StreamError::Trap(e)))
}

use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;
use wasmtime_wasi_io::bindings::wasi::io::streams as async_streams;

impl poll::Host for Guarded<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        bounded(
            self.deadline,
            "wasi:io/poll.poll",
            async_poll::Host::poll(self.table, pollables),
        )?
    }
}

impl poll::HostPollable for Guarded<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        in_tokio(async_poll::HostPollable::ready(self.table, pollable))
    }
    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        bounded(
            self.deadline,
            "wasi:io/poll.pollable.block",
            async_poll::HostPollable::block(self.table, pollable),
        )?
    }
    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.table, pollable)
    }
}

impl Guarded<'_> {
    /// The end of a blocking flush: done if `check-write` is not 0 (it is 0
    /// until a flush has completed), else a bounded wait until the stream
    /// is ready, as wasmtime-wasi's `write_ready`. `closed_ok`: a stream
    /// closed meanwhile counts as flushed (`blocking-write-and-flush`).
    fn flushed(
        &mut self,
        stream: &Resource<DynOutputStream>,
        call: &'static str,
        closed_ok: bool,
    ) -> StreamResult<()> {
        let s = self.table.get_mut(stream)?;
        let r = match s.check_write() {
            Ok(0) => bounded_stream(self.deadline, call, s.write_ready()).map(drop),
            r => r.map(drop),
        };
        match r {
            Err(StreamError::Closed) if closed_ok => Ok(()),
            r => r,
        }
    }
}

impl streams::Host for Guarded<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.table, err)
    }
}

impl streams::HostOutputStream for Guarded<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        streams::HostOutputStream::drop(self.table, stream)
    }
    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.table, stream)
    }
    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.table, stream, bytes)
    }
    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        const CALL: &str = "wasi:io/streams.output-stream.blocking-write-and-flush";
        // A stream with room for the bytes (stdout and stderr, pipes to
        // memory, a sink) takes them without a trip through the async
        // runtime: the same steps as wasmtime-wasi's, which waits first.
        if bytes.len() <= 4096 {
            let s = self.table.get_mut(&stream)?;
            if s.check_write().is_ok_and(|n| n > 0 && n >= bytes.len()) {
                s.write(bytes.into())?;
                // As wasmtime-wasi's: a stream closed after the write is no error.
                match s.flush() {
                    Ok(()) | Err(StreamError::Closed) => {}
                    Err(e) => return Err(e),
                }
                return self.flushed(&stream, CALL, true);
            }
        }
        bounded_stream(
            self.deadline,
            CALL,
            async_streams::HostOutputStream::blocking_write_and_flush(self.table, stream, bytes),
        )
    }
    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        bounded_stream(
            self.deadline,
            "wasi:io/streams.output-stream.blocking-write-zeroes-and-flush",
            async_streams::HostOutputStream::blocking_write_zeroes_and_flush(
                self.table, stream, len,
            ),
        )
    }
    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(self.table, stream)
    }
    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.table, stream, len)
    }
    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.table, stream)
    }
    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        // wasmtime-wasi's steps (flush, then wait until the stream is ready),
        // without the async runtime when the flush completed at once.
        self.table.get_mut(&stream)?.flush()?;
        self.flushed(
            &stream,
            "wasi:io/streams.output-stream.blocking-flush",
            false,
        )
    }
    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.table, dst, src, len)
    }
    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        bounded_stream(
            self.deadline,
            "wasi:io/streams.output-stream.blocking-splice",
            async_streams::HostOutputStream::blocking_splice(self.table, dst, src, len),
        )
    }
}

impl streams::HostInputStream for Guarded<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        streams::HostInputStream::drop(self.table, stream)
    }
    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.table, stream, len)
    }
    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        bounded_stream(
            self.deadline,
            "wasi:io/streams.input-stream.blocking-read",
            async_streams::HostInputStream::blocking_read(self.table, stream, len),
        )
    }
    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.table, stream, len)
    }
    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        bounded_stream(
            self.deadline,
            "wasi:io/streams.input-stream.blocking-skip",
            async_streams::HostInputStream::blocking_skip(self.table, stream, len),
        )
    }
    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(self.table, stream)
    }
}
