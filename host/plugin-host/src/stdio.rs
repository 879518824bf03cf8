//! A plugin's WASI stdout/stderr: complete lines are forwarded to the host's
//! own stdout/stderr, prefixed with `[instance-name] `, so the output of
//! several plugins stays readable. Nothing else of the host's stdio is
//! reachable by a plugin, except stdin under a `--stdin` grant
//! ([`wasi_grants`](crate::wasi_grants)).
//!
//! The lines go through the bounded queues of [`output`](crate::output):
//! writing never waits for the host's reader; when it is too slow, lines
//! are dropped and counted there.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::output::{Origin, Stream};

/// Which host stream a plugin stream goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    Stdout,
    Stderr,
    /// Not forwarded (only kept in the tail, if any).
    Discard,
}

/// The last bytes a plugin wrote to a stream (for fault reports: a Rust
/// guest prints its panic message to stderr just before it aborts).
pub(crate) type Tail = Arc<Mutex<Vec<u8>>>;

/// How many bytes a [`Tail`] keeps.
const TAIL_BYTES: usize = 4096;

/// Longest partial line kept before it is forwarded anyway.
const MAX_LINE: usize = 64 * 1024;

/// A line-buffered, name-prefixed forwarder (one per plugin stream).
#[derive(Clone)]
pub(crate) struct Tagged {
    inner: Arc<Inner>,
}

struct Inner {
    prefix: String,
    origin: Origin,
    which: Which,
    buf: Mutex<Vec<u8>>,
    tail: Option<Tail>,
}

impl Tagged {
    pub fn new(name: &str, which: Which) -> Self {
        Self::with_tail(name, which, None)
    }

    /// Like [`Tagged::new`], also keeping the last bytes written in `tail`.
    pub fn with_tail(name: &str, which: Which, tail: Option<Tail>) -> Self {
        Tagged {
            inner: Arc::new(Inner {
                prefix: format!("[{name}] "),
                origin: Origin::Plugin(Arc::from(name)),
                which,
                buf: Mutex::new(Vec::new()),
                tail,
            }),
        }
    }

    fn emit(&self, lines: &[u8]) {
        emit(
            &self.inner.prefix,
            &self.inner.origin,
            self.inner.which,
            lines,
        )
    }

    fn write_bytes(&self, data: &[u8]) {
        if let Some(tail) = &self.inner.tail {
            let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
            t.extend_from_slice(&data[data.len().saturating_sub(TAIL_BYTES)..]);
            let excess = t.len().saturating_sub(TAIL_BYTES);
            t.drain(..excess);
        }
        if self.inner.which == Which::Discard {
            return;
        }
        let ready = {
            let mut buf = self.inner.buf.lock().unwrap_or_else(|e| e.into_inner());
            buf.extend_from_slice(data);
            match buf.iter().rposition(|b| *b == b'\n') {
                Some(pos) => buf.drain(..=pos).collect::<Vec<u8>>(),
                None if buf.len() > MAX_LINE => std::mem::take(&mut *buf),
                None => return,
            }
        };
        self.emit(&ready);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let rest = std::mem::take(self.buf.get_mut().unwrap_or_else(|e| e.into_inner()));
        if !rest.is_empty() {
            emit(&self.prefix, &self.origin, self.which, &rest);
        }
    }
}

fn emit(prefix: &str, origin: &Origin, which: Which, lines: &[u8]) {
    let mut out = Vec::with_capacity(lines.len() + 32);
    for line in lines.split_inclusive(|b| *b == b'\n') {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    // Queued, never waited for (see `output`).
    match which {
        Which::Stdout => Stream::Stdout.sink().push(origin, &out),
        Which::Stderr => Stream::Stderr.sink().push(origin, &out),
        Which::Discard => {}
    }
}

impl IsTerminal for Tagged {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Tagged {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for Tagged {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1 << 20)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Tagged {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Tagged {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
