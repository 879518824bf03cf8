//! The host's process output (stdout and stderr) without back-pressure:
//! whatever the host writes there — plugin output lines, its own log lines —
//! goes into a bounded queue that one writer thread per stream drains. The
//! thread that writes (the loop thread) never waits for the reader.
//!
//! When the reader of a stream is too slow (or gone: a pipe nobody reads),
//! the queue fills up and new lines are **dropped and counted**, never
//! waited for. The counts are reported on stderr at most once per
//! [`REPORT_INTERVAL`] (and once more by [`flush`]), e.g.
//! `[flood] 12,345 output lines dropped (stdout not read fast enough)`.
//! The lines of one stream keep their order (a dropped line leaves a gap;
//! nothing is reordered), and everything the host writes to stderr (plugin
//! stderr and log lines) shares one queue, so it stays interleaved as
//! written.
//!
//! Memory is bounded: at most [`CAPACITY`] bytes wait per stream (bytes
//! being written count until they are written).
//!
//! A process ending right after its last write loses what is still queued;
//! call [`flush`] (bounded) before exiting. Dropping a
//! [`Host`](crate::Host) flushes for at most 500 ms.
//!
//! ```
//! use std::io::Write;
//! use std::time::Duration;
//!
//! // Host log lines through the same bounded queue as plugin stderr, e.g.
//! // `tracing_subscriber::fmt().with_writer(callop_plugin_host::output::stderr)`.
//! writeln!(callop_plugin_host::output::stderr(), "hello").unwrap();
//! // Before the process ends: write what is queued, waiting at most 1 s.
//! callop_plugin_host::output::flush(Duration::from_secs(1));
//! ```

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Bytes that may wait in one stream's queue.
pub const CAPACITY: usize = 1 << 20;

/// Drop reports of one stream are written at most this often.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Room kept beyond [`CAPACITY`] for drop reports (so a report fits in a
/// full queue; it is retried later if not).
const REPORT_SLACK: usize = 16 * 1024;

/// One of the host's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn fd(self) -> i32 {
        match self {
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// The process-wide queue of this stream (its writer thread starts with
    /// the first write).
    pub(crate) fn sink(self) -> &'static Sink {
        static STDOUT: OnceLock<Sink> = OnceLock::new();
        static STDERR: OnceLock<Sink> = OnceLock::new();
        let cell = match self {
            Stream::Stdout => &STDOUT,
            Stream::Stderr => &STDERR,
        };
        cell.get_or_init(|| Sink::new(self, CAPACITY, Box::new(FdOut(self.fd()))))
    }
}

/// Whose lines were dropped: a plugin instance, or the host's own log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Output of the plugin instance with this name.
    Plugin(std::sync::Arc<str>),
    /// The host's log lines.
    Log,
}

/// Where a sink's writer thread writes (the fd, or a test's buffer).
pub(crate) trait Out: Send {
    /// Writes all of `buf`, waiting as long as it takes.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
}

/// A raw file descriptor of the process (1 or 2), written without any of
/// `std`'s buffers or locks.
struct FdOut(i32);

impl Out for FdOut {
    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            // SAFETY: `buf` is a valid, initialised slice for the whole call;
            // write(2) on a closed or bad descriptor only returns EBADF.
            let n = unsafe { libc::write(self.0, buf.as_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    // A non-blocking descriptor (set so by whoever shares
                    // it): wait until it can be written.
                    io::ErrorKind::WouldBlock => {
                        let mut pfd = libc::pollfd {
                            fd: self.0,
                            events: libc::POLLOUT,
                            revents: 0,
                        };
                        // SAFETY: `pfd` is one valid pollfd for the call.
                        unsafe { libc::poll(&mut pfd, 1, -1) };
                        continue;
                    }
                    _ => return Err(e),
                }
            }
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n.unsigned_abs()..];
        }
        Ok(())
    }
}

/// A bounded queue of complete lines for one stream, and its writer.
pub(crate) struct Sink {
    stream: Stream,
    capacity: usize,
    /// Where drop reports go (`None`: the process's stderr queue).
    reports: Option<&'static Sink>,
    state: Mutex<State>,
    /// Signalled when lines are queued (the writer waits on it).
    queued: Condvar,
    /// Signalled when the queue becomes empty (flushers wait on it).
    drained: Condvar,
}

struct State {
    queue: VecDeque<Vec<u8>>,
    /// Bytes queued or being written.
    bytes: usize,
    /// Lines dropped since the last report, by origin.
    dropped: Vec<(Origin, u64)>,
    last_report: Option<Instant>,
    /// The writer, until its thread takes it.
    out: Option<Box<dyn Out>>,
    /// The writer thread could not be started or the stream is broken
    /// (EPIPE, EBADF...): lines are discarded silently.
    broken: bool,
}

impl Sink {
    pub(crate) fn new(stream: Stream, capacity: usize, out: Box<dyn Out>) -> Sink {
        Sink {
            stream,
            capacity,
            reports: None,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bytes: 0,
                dropped: Vec::new(),
                last_report: None,
                out: Some(out),
                broken: false,
            }),
            queued: Condvar::new(),
            drained: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `lines` (complete lines, each ending in `\n`) from `origin`.
    /// The lines that do not fit are dropped and counted; never waits.
    pub(crate) fn push(&'static self, origin: &Origin, lines: &[u8]) {
        if lines.is_empty() {
            return;
        }
        let report_due = {
            let mut st = self.lock();
            if st.broken {
                return;
            }
            self.start(&mut st);
            let room = self.capacity.saturating_sub(st.bytes);
            let (fits, dropped) = if lines.len() <= room {
                (lines.len(), 0)
            } else {
                // Whole lines while they fit; the rest is dropped.
                let mut end = 0;
                for line in lines.split_inclusive(|b| *b == b'\n') {
                    if end + line.len() > room {
                        break;
                    }
                    end += line.len();
                }
                let lost = lines[end..].split_inclusive(|b| *b == b'\n').count();
                (end, lost as u64)
            };
            if fits > 0 {
                st.queue.push_back(lines[..fits].to_vec());
                st.bytes += fits;
                self.queued.notify_one();
            }
            if dropped > 0 {
                count_drop(&mut st.dropped, origin, dropped);
            }
            dropped > 0 && report_is_due(&st, Instant::now())
        };
        if report_due {
            self.report();
        }
    }

    /// Starts the writer thread if it does not run yet.
    fn start(&'static self, st: &mut State) {
        let Some(out) = st.out.take() else { return };
        let spawned = std::thread::Builder::new()
            .name(format!("callop-{}", self.stream.name()))
            .spawn(move || self.writer(out));
        if spawned.is_err() {
            st.broken = true;
        }
    }

    /// The writer thread: writes queued lines in order, waiting for the
    /// reader as long as it takes (only this thread ever waits).
    fn writer(&'static self, mut out: Box<dyn Out>) {
        block_signals();
        loop {
            let batch: Vec<Vec<u8>> = {
                let mut st = self.lock();
                while st.queue.is_empty() {
                    st = self.queued.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                st.queue.drain(..).collect()
            };
            let mut written = 0;
            let mut failed = false;
            for chunk in &batch {
                if !failed && out.write_all(chunk).is_err() {
                    failed = true;
                }
                written += chunk.len();
            }
            let report_due = {
                let mut st = self.lock();
                st.bytes = st.bytes.saturating_sub(written);
                if failed {
                    // Output errors (a closed pipe...) are nobody's problem
                    // but the reader's: stop writing, drop what comes.
                    st.broken = true;
                    st.bytes -= st.queue.drain(..).map(|c| c.len()).sum::<usize>();
                }
                if st.queue.is_empty() {
                    self.drained.notify_all();
                }
                if failed {
                    return;
                }
                !st.dropped.is_empty() && report_is_due(&st, Instant::now())
            };
            if report_due {
                self.report();
            }
        }
    }

    /// Writes the drop counts of this stream as lines on stderr (if stderr
    /// has room; otherwise they stay counted for a later report).
    fn report(&'static self) {
        let (lines, counts) = {
            let mut st = self.lock();
            if st.dropped.is_empty() {
                return;
            }
            st.last_report = Some(Instant::now());
            let counts = std::mem::take(&mut st.dropped);
            (report_lines(self.stream, &counts), counts)
        };
        let err = self.reports.unwrap_or_else(|| Stream::Stderr.sink());
        let mut st = err.lock();
        if !st.broken && st.bytes + lines.len() <= err.capacity + REPORT_SLACK {
            err.start(&mut st);
            st.bytes += lines.len();
            st.queue.push_back(lines);
            err.queued.notify_one();
        } else if !st.broken {
            drop(st);
            // Keep the counts for the next report.
            let mut mine = self.lock();
            for (o, n) in counts {
                count_drop(&mut mine.dropped, &o, n);
            }
        }
    }

    /// Reports pending drop counts, then waits until the queue is written
    /// or `until` passes; whether it was written.
    fn flush(&'static self, until: Instant) -> bool {
        self.report();
        let mut st = self.lock();
        while st.bytes > 0 && !st.broken {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .drained
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

fn report_is_due(st: &State, now: Instant) -> bool {
    st.last_report
        .is_none_or(|t| now.saturating_duration_since(t) >= REPORT_INTERVAL)
}

fn count_drop(dropped: &mut Vec<(Origin, u64)>, origin: &Origin, n: u64) {
    match dropped.iter_mut().find(|(o, _)| o == origin) {
        Some((_, c)) => *c = c.saturating_add(n),
        None => dropped.push((origin.clone(), n)),
    }
}

/// The report lines for `counts` of lines dropped from `stream`.
fn report_lines(stream: Stream, counts: &[(Origin, u64)]) -> Vec<u8> {
    let mut s = String::new();
    let what = stream.name();
    for (origin, n) in counts {
        let _ = match origin {
            Origin::Plugin(name) => writeln!(
                s,
                "[{name}] {} output {} dropped ({what} not read fast enough)",
                group(*n),
                plural(*n)
            ),
            Origin::Log => writeln!(
                s,
                "callop-host: {} log {} dropped ({what} not read fast enough)",
                group(*n),
                plural(*n)
            ),
        };
    }
    s.into_bytes()
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "line" } else { "lines" }
}

/// `12345` as `12,345`.
pub(crate) fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Blocks every signal in the calling (writer) thread, so that
/// process-directed signals (SIGINT, SIGTERM) always go to a thread that
/// handles them, whenever the writer thread was started.
fn block_signals() {
    // SAFETY: `set` is a local sigset_t initialised by sigfillset before
    // use; pthread_sigmask only changes the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Writes what is queued for stdout and stderr (and the pending drop
/// reports), waiting at most `timeout` in all; whether everything was
/// written. Call it before the process exits: queued lines are lost
/// otherwise.
pub fn flush(timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    let out = Stream::Stdout.sink().flush(until);
    // stdout's drop report went to stderr: flush stderr second.
    let err = Stream::Stderr.sink().flush(until);
    out && err
}

/// A writer of the host's log lines to stderr through the bounded queue
/// (what it is given is queued when it is dropped, or as soon as it holds
/// complete lines); for `tracing_subscriber::fmt().with_writer(stderr)`.
/// Lines that do not fit are dropped and counted ("log lines dropped").
pub fn stderr() -> LogWriter {
    LogWriter { buf: Vec::new() }
}

/// See [`stderr`].
#[derive(Debug)]
pub struct LogWriter {
    buf: Vec<u8>,
}

/// Longest partial line a [`LogWriter`] holds before queueing it anyway.
const MAX_LOG_LINE: usize = 64 * 1024;

impl LogWriter {
    fn push_complete(&mut self) {
        let end = match self.buf.iter().rposition(|b| *b == b'\n') {
            Some(pos) => pos + 1,
            None if self.buf.len() > MAX_LOG_LINE => {
                self.buf.push(b'\n');
                self.buf.len()
            }
            None => return,
        };
        Stream::Stderr.sink().push(&Origin::Log, &self.buf[..end]);
        self.buf.drain(..end);
    }
}

impl io::Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.push_complete();
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            if !self.buf.ends_with(b"\n") {
                self.buf.push(b'\n');
            }
            Stream::Stderr.sink().push(&Origin::Log, &self.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// An output that blocks until the test opens its gate, then records.
    #[derive(Clone, Default)]
    struct Gated {
        open: Arc<(Mutex<bool>, Condvar)>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Gated {
        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }
    }

    impl Out for Gated {
        fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
            let (m, cv) = &*self.open;
            let mut g = m.lock().unwrap();
            while !*g {
                g = cv.wait(g).unwrap();
            }
            self.got.lock().unwrap().extend_from_slice(buf);
            Ok(())
        }
    }

    fn leak(sink: Sink) -> &'static Sink {
        Box::leak(Box::new(sink))
    }

    fn name(n: &str) -> Origin {
        Origin::Plugin(Arc::from(n))
    }

    #[test]
    fn a_reader_that_never_reads_costs_drops_not_waits() {
        let out = Gated::default();
        let sink = leak(Sink::new(Stream::Stdout, 1000, Box::new(out.clone())));
        let start = Instant::now();
        for i in 0..10_000 {
            sink.push(&name("flood"), format!("line {i:05}\n").as_bytes());
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "pushing waited for the reader: {:?}",
            start.elapsed()
        );
        {
            let st = sink.lock();
            assert!(st.bytes <= 1000, "{} bytes held", st.bytes);
            let dropped: u64 = st.dropped.iter().map(|(_, n)| n).sum();
            // One line may be in the writer's hands; the queue holds at most
            // 1000 bytes of 11-byte lines.
            assert!(dropped >= 10_000 - 1 - 1000 / 11, "{dropped} dropped");
        }
        out.open();
        assert!(sink.flush(Instant::now() + Duration::from_secs(10)));
        let got = String::from_utf8(out.got.lock().unwrap().clone()).unwrap();
        let nums: Vec<u32> = got
            .lines()
            .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
            .collect();
        assert!(!nums.is_empty());
        assert!(nums.windows(2).all(|w| w[0] < w[1]), "order lost: {nums:?}");
        assert_eq!(nums[0], 0, "the first line was written");
    }

    #[test]
    fn a_chunk_keeps_the_lines_that_fit_and_counts_the_rest() {
        let (out, reports) = (Gated::default(), Gated::default());
        reports.open();
        let mut sink = Sink::new(Stream::Stdout, 10, Box::new(out.clone()));
        let report_sink = leak(Sink::new(Stream::Stderr, 1000, Box::new(reports.clone())));
        sink.reports = Some(report_sink);
        let sink = leak(sink);
        sink.push(&name("a"), b"abcd\nefgh\nijkl\n");
        assert_eq!(sink.lock().bytes, 10);
        // The first drop is reported at once; the next ones within the
        // interval are only counted.
        sink.push(&name("a"), b"more\n");
        sink.push(&name("b"), b"more\nmore\n");
        assert_eq!(sink.lock().dropped, vec![(name("a"), 1), (name("b"), 2)]);
        out.open();
        assert!(sink.flush(Instant::now() + Duration::from_secs(10)));
        assert!(report_sink.flush(Instant::now() + Duration::from_secs(10)));
        assert_eq!(&*out.got.lock().unwrap(), b"abcd\nefgh\n");
        assert_eq!(
            String::from_utf8(reports.got.lock().unwrap().clone()).unwrap(),
            "[a] 1 output line dropped (stdout not read fast enough)\n\
             [a] 1 output line dropped (stdout not read fast enough)\n\
             [b] 2 output lines dropped (stdout not read fast enough)\n"
        );
    }

    #[test]
    fn flush_gives_up_at_its_deadline() {
        let out = Gated::default();
        let sink = leak(Sink::new(Stream::Stdout, 100, Box::new(out.clone())));
        sink.push(&name("a"), b"stuck\n");
        let start = Instant::now();
        assert!(!sink.flush(Instant::now() + Duration::from_millis(100)));
        assert!(start.elapsed() < Duration::from_secs(2));
        out.open();
        assert!(sink.flush(Instant::now() + Duration::from_secs(10)));
    }

    #[test]
    fn reports_name_the_origin_and_group_digits() {
        let r = report_lines(Stream::Stdout, &[(name("flood"), 12_345), (Origin::Log, 1)]);
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "[flood] 12,345 output lines dropped (stdout not read fast enough)\n\
             callop-host: 1 log line dropped (stdout not read fast enough)\n"
        );
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    #[test]
    fn a_broken_output_discards_quietly() {
        struct Broken;
        impl Out for Broken {
            fn write_all(&mut self, _: &[u8]) -> io::Result<()> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
        }
        let sink = leak(Sink::new(Stream::Stdout, 100, Box::new(Broken)));
        sink.push(&name("a"), b"one\n");
        assert!(sink.flush(Instant::now() + Duration::from_secs(10)));
        sink.push(&name("a"), b"two\n");
        assert!(sink.flush(Instant::now() + Duration::from_secs(1)));
        assert_eq!(sink.lock().bytes, 0);
    }
}
