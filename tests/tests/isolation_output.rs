//! Isolation of the host's output: a plugin cannot stall the loop through
//! back-pressure on `callop-host`'s stdout/stderr, nor make the host print
//! without bound (log floods, huge guest strings).
//!
//! Each test runs a healthy `ticker` (`--every 100ms`, ticks printed on the
//! stream that is read) beside the hostile plugin and asserts the ticker's
//! exact ticks, each at most 500 ms late (generous: the machine is shared)
//! against its period, as the test receives the lines.
//!
//! Every wait is bounded; children are killed when a test fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use callop::EventLoop;
use callop_plugin_host::{ExitReason, Host, LoadError, PluginSpec};
use callop_tests::{args, config, host_cmd, plugin, send_signal, wait_exit};

/// Ticks of the healthy ticker.
const TICKS: u32 = 20;
/// Its period.
const EVERY: Duration = Duration::from_millis(100);
/// How late a tick may arrive (relative to tick 1).
const LATE: Duration = Duration::from_millis(500);
/// Generous: covers a cold compile of the plugins in a debug host.
const START: Duration = Duration::from_secs(120);

fn ticker_arg(count: u32, stderr: bool) -> String {
    let mut a = format!(
        "{}=--every,{}ms,--count,{count}",
        plugin("ticker").display(),
        EVERY.as_millis()
    );
    if stderr {
        a.push_str(",--stderr");
    }
    a
}

/// A child `callop-host`, killed on drop.
struct HostChild(Child);

impl Drop for HostChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines read from a child's stream, with the instant each arrived.
struct Lines {
    rx: Receiver<(Instant, String)>,
    /// Every line received so far.
    seen: Vec<(Instant, String)>,
}

impl Lines {
    fn read(r: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Receives lines until one satisfies `pred` (its index in `seen`);
    /// panics after `limit`.
    fn until(&mut self, limit: Duration, what: &str, pred: impl Fn(&str) -> bool) -> usize {
        if let Some(i) = self.seen.iter().position(|(_, l)| pred(l)) {
            return i;
        }
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    let hit = pred(&l.1);
                    self.seen.push(l);
                    if hit {
                        return self.seen.len() - 1;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{what}: not seen within {limit:?}; got:\n{}", self.dump())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{what}: the stream ended; got:\n{}", self.dump())
                }
            }
        }
    }

    /// Receives every line until the stream ends (the child exited).
    fn read_to_end(&mut self, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => panic!("the stream did not end in {limit:?}"),
            }
        }
    }

    fn dump(&self) -> String {
        let mut s = String::new();
        for (_, l) in self.seen.iter().take(200) {
            s.push_str(&l[..l.len().min(300)]);
            s.push('\n');
        }
        s
    }

    /// Asserts the ticker's lines are exactly `[prefix]tick 1` … `tick n`,
    /// each at most [`LATE`] after its time (one period after the other,
    /// from the earliest start the arrivals allow).
    fn assert_ticks(&mut self, n: u32, prefix: &str) {
        let last = format!("{prefix}tick {n}");
        let limit = START + EVERY * n + Duration::from_secs(30);
        self.until(limit, &last, |l| l == last);
        let ticks: Vec<&(Instant, String)> = self
            .seen
            .iter()
            .filter(|(_, l)| l.starts_with(&format!("{prefix}tick ")))
            .collect();
        let names: Vec<&str> = ticks.iter().map(|(_, l)| l.as_str()).collect();
        let want: Vec<String> = (1..=n).map(|i| format!("{prefix}tick {i}")).collect();
        assert_eq!(names, want, "the healthy ticker lost or duplicated ticks");
        // The schedule is drift-free from the first deadline, which the test
        // does not see: take the earliest (arrival - i periods) as its start.
        let t0 = ticks
            .iter()
            .enumerate()
            .map(|(i, (at, _))| *at - EVERY * i as u32)
            .min()
            .expect("ticks");
        let mut worst = Duration::ZERO;
        for (i, (at, _)) in ticks.iter().enumerate() {
            let due = t0 + EVERY * i as u32;
            let late = at.saturating_duration_since(due);
            worst = worst.max(late);
            assert!(
                late <= LATE,
                "tick {} arrived {late:?} late (bound {LATE:?})",
                i + 1
            );
        }
        eprintln!("ticker: {n} ticks, worst lateness {worst:?}");
    }
}

fn spawn(cmd: &mut Command) -> (HostChild, ChildStdout, ChildStderr) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run callop-host");
    let out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    (HostChild(child), out, err)
}

/// SIGTERM, then the exit within `limit`; its code.
fn terminate(child: &mut HostChild, limit: Duration, what: &str) -> Option<i32> {
    send_signal(&child.0, "TERM");
    let start = Instant::now();
    let status = wait_exit(&mut child.0, limit, what);
    eprintln!("{what}: exited {:?} after SIGTERM", start.elapsed());
    status.code()
}

/// The sum of `N` in every `… N output lines dropped` line of `lines`
/// from plugin `name`.
fn dropped_of(lines: &[(Instant, String)], name: &str) -> u64 {
    lines
        .iter()
        .filter_map(|(_, l)| {
            let rest = l.strip_prefix(&format!("[{name}] "))?;
            let n = rest
                .strip_suffix(" output lines dropped (stdout not read fast enough)")
                .or_else(|| {
                    rest.strip_suffix(" output line dropped (stdout not read fast enough)")
                })?;
            n.replace(',', "").parse::<u64>().ok()
        })
        .sum()
}

#[test]
fn a_stdout_flood_into_a_pipe_nobody_reads_does_not_stall_the_loop() {
    let (mut child, stdout, stderr) = spawn(
        host_cmd()
            .arg(ticker_arg(TICKS, true))
            .arg(format!("{}=--mode,flood", plugin("faulty").display())),
    );
    // stdout is never read (but kept open): the pipe fills at once.
    let _unread = stdout;
    let mut err = Lines::read(stderr);
    err.assert_ticks(TICKS, "[ticker] ");
    err.until(Duration::from_secs(10), "the drop report", |l| {
        l.starts_with("[faulty] ") && l.ends_with(" dropped (stdout not read fast enough)")
    });
    err.until(Duration::from_secs(10), "the ticker's end", |l| {
        l.contains("plugin finished") && l.contains("ticker")
    });
    // The flood goes on; SIGTERM is handled at once and the host ends
    // (after the 2 s grace at most, plus at most 1 s of output flush).
    let sent = Instant::now();
    let code = terminate(&mut child, Duration::from_secs(6), "callop-host");
    err.read_to_end(Duration::from_secs(10));
    let all = err.dump();
    let (noticed, _) = err
        .seen
        .iter()
        .find(|(_, l)| l.contains("received SIGTERM"))
        .unwrap_or_else(|| panic!("SIGTERM not handled:\n{all}"));
    let noticed = noticed.saturating_duration_since(sent);
    eprintln!("SIGTERM noticed after {noticed:?}");
    assert!(noticed <= LATE, "SIGTERM noticed after {noticed:?}");
    assert!(
        err.seen
            .iter()
            .any(|(_, l)| l.contains("plugin finished") && l.contains("faulty")),
        "{all}"
    );
    assert_eq!(code, Some(0), "{all}");
    // Several hundred thousand lines were dropped, and said so (a line per
    // report interval, the last at the end).
    let dropped = dropped_of(&err.seen, "faulty");
    eprintln!("{dropped} flood lines dropped");
    assert!(dropped > 10_000, "{dropped} lines dropped\n{all}");
    let reports = err
        .seen
        .iter()
        .filter(|(_, l)| l.contains(" dropped (stdout not read fast enough)"))
        .count();
    assert!(reports <= 40, "{reports} drop reports\n{all}");
}

#[test]
fn a_stderr_flood_into_a_pipe_nobody_reads_does_not_stall_the_loop() {
    let (mut child, stdout, stderr) = spawn(host_cmd().arg(ticker_arg(TICKS, false)).arg(format!(
        "{}=--mode,flood-stderr",
        plugin("faulty").display()
    )));
    // stderr (plugin stderr and the host's log) is never read.
    let _unread = stderr;
    let mut out = Lines::read(stdout);
    out.assert_ticks(TICKS, "[ticker] ");
    let code = terminate(&mut child, Duration::from_secs(6), "callop-host");
    assert_eq!(code, Some(0));
}

#[test]
fn a_reset_flood_yields_a_bounded_number_of_log_lines_with_the_count() {
    const CLIENTS: usize = 2_000;
    const THREADS: usize = 4;
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (mut child, stdout, stderr) = spawn(
        host_cmd()
            .arg(ticker_arg(30, true))
            .arg(format!(
                "{}@echo=--listen,{addr}",
                plugin("echo-server").display()
            ))
            .arg("--allow-net")
            .arg(format!("echo={addr}")),
    );
    let mut out = Lines::read(stdout);
    let mut err = Lines::read(stderr);
    out.until(START, "echo-server listening", |l| {
        l.contains("echo-server: listening on")
    });
    let start = Instant::now();
    // Each client writes a byte, waits for the echo and closes without
    // reading it: unread data makes the close a reset (RST).
    let clients: Vec<_> = (0..THREADS)
        .map(|_| {
            let addr = addr.clone();
            thread::spawn(move || {
                for _ in 0..CLIENTS / THREADS {
                    let mut s = TcpStream::connect(&addr).expect("connect");
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    s.write_all(b"x").expect("write");
                    let mut b = [0u8; 1];
                    assert_eq!(s.peek(&mut b).expect("echo"), 1);
                    drop(s);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    let flood = start.elapsed();
    err.assert_ticks(30, "[ticker] ");
    // Give the last resets time to be handled, then end the host: the
    // last summaries are printed when the plugin ends.
    thread::sleep(Duration::from_millis(500));
    let code = terminate(&mut child, Duration::from_secs(6), "callop-host");
    err.read_to_end(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", err.dump());
    let about: Vec<&str> = err
        .seen
        .iter()
        .map(|(_, l)| l.as_str())
        .filter(|l| l.contains("I/O source callback failed"))
        .collect();
    let verbatim = about.iter().filter(|l| !l.contains("… and ")).count() as u64;
    let summarized: u64 = about
        .iter()
        .filter_map(|l| {
            let rest = &l[l.find("… and ")? + "… and ".len()..];
            rest.split_whitespace()
                .next()?
                .replace(',', "")
                .parse::<u64>()
                .ok()
        })
        .sum();
    eprintln!(
        "{CLIENTS} resets in {flood:?}: {} log lines ({verbatim} verbatim, {summarized} summarized)",
        about.len()
    );
    // Every reset is accounted for, in a bounded number of lines: per
    // second at most 5 verbatim and one summary.
    assert_eq!(verbatim + summarized, CLIENTS as u64, "{}", err.dump());
    let secs = (flood.as_secs() + 3) as usize;
    assert!(
        about.len() <= secs * 6 && about.len() < 200,
        "{} lines for {CLIENTS} resets in {flood:?}",
        about.len()
    );
    assert!(summarized > 0);
}

#[test]
fn a_huge_init_error_is_reported_cut_and_bounded() {
    // Through callop-host: stderr stays small; the error appears cut, at most twice.
    let (mut child, stdout, stderr) = spawn(
        host_cmd()
            .arg(ticker_arg(3, true))
            .arg(format!("{}=--mode,huge-error", plugin("faulty").display())),
    );
    drop(stdout);
    let mut raw = Vec::new();
    let reader = thread::spawn(move || {
        let mut stderr = stderr;
        let _ = stderr.read_to_end(&mut raw);
        raw
    });
    // Whether the ticker keeps running after a failed init is the concern
    // of another rule: the host ends either way (bounded).
    let status = wait_exit(&mut child.0, START + Duration::from_secs(30), "callop-host");
    let raw = reader.join().unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(raw.len() < 64 * 1024, "{} bytes of stderr", raw.len());
    // Once when it happens (the log line) and once in the final report,
    // each cut.
    assert!(
        text.matches("huge-error: x").count() <= 2,
        "reported at most twice:\n{}",
        &text[..text.len().min(2000)]
    );
    let cut = (50usize << 20) - 4096;
    assert!(
        text.contains(&format!("… ({cut} bytes cut)")),
        "{}",
        &text[..text.len().min(2000)]
    );
    assert_ne!(status.code(), Some(0));

    // Through the library, beside a ticker that goes on ticking: the error
    // is returned cut, and the ticker's ticks are all there, on time.
    let mut ev: EventLoop<Vec<(Instant, String)>> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    let events = host.app_channel("ticks").unwrap();
    ev.handle()
        .insert_source(events, |e, _, got: &mut Vec<(Instant, String)>| {
            if let callop::channel::Event::Msg(m) = e {
                got.push((Instant::now(), String::from_utf8(m).unwrap()))
            }
        })
        .unwrap();
    let ticker = host.compile_file(plugin("ticker")).unwrap();
    let faulty = host.compile_file(plugin("faulty")).unwrap();
    let ta = args(&[
        "--every",
        "100ms",
        "--count",
        &TICKS.to_string(),
        "--notify",
        "@app/ticks",
    ]);
    let fa = args(&["--mode", "huge-error"]);
    let results = host
        .load_many(&[
            PluginSpec {
                component: &ticker,
                name: "ticker",
                args: &ta,
            },
            PluginSpec {
                component: &faulty,
                name: "faulty",
                args: &fa,
            },
        ])
        .unwrap();
    assert!(results[0].is_ok());
    match &results[1] {
        Err(LoadError::Init(m)) => {
            assert!(m.len() < 4096 + 64, "{} bytes", m.len());
            assert!(m.starts_with("huge-error: xxx"));
            assert!(
                m.ends_with(&format!("… ({cut} bytes cut)")),
                "{}",
                &m[4000..]
            );
        }
        other => panic!("{other:?}"),
    }
    let mut got = Vec::new();
    let start = Instant::now();
    while !host.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "ticker still alive"
        );
        ev.dispatch(Some(Duration::from_millis(50)), &mut got)
            .unwrap();
    }
    for _ in 0..3 {
        ev.dispatch(Some(Duration::ZERO), &mut got).unwrap();
    }
    let mut lines = Lines {
        rx: mpsc::channel().1,
        seen: got,
    };
    lines.assert_ticks(TICKS, "");
    let exits = host.exits();
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(exits[0].reason, ExitReason::Finished);
}
