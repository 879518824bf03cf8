//! Isolation against plugins that block, spin through a shutdown, or stop
//! with odd codes: a healthy `ticker` beside keeps its exact count and its
//! pace, signals are acted on at once, deadlines hold, exit statuses follow
//! the documented rules.
//!
//! Timing is asserted generously (budget + 500 ms and more); the precise
//! figures are printed by `cargo bench -p callop-plugin-host --bench plugin`.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use callop::EventLoop;
use callop::channel::Event;
use callop_plugin_host::{
    ExitReason, FaultKind, Host, Limits, LoadError, PluginExit, PluginSpec, RestartPolicy,
};
use callop_tests::{args, config_with, host_cmd, plugin, send_signal, wait_exit};

const TICKS: usize = 40;

/// A run of `ticker` (every 5 ms, 40 ticks) beside `faulty`.
struct Run {
    /// Each `tick N` message and when the test received it.
    ticks: Vec<(String, Instant)>,
    exits: Vec<PluginExit>,
}

impl Run {
    fn assert_ticker_exact(&self) {
        let got: Vec<&str> = self.ticks.iter().map(|(t, _)| t.as_str()).collect();
        let want: Vec<String> = (1..=TICKS).map(|i| format!("tick {i}")).collect();
        assert_eq!(got, want, "the healthy ticker lost or duplicated ticks");
        let t: Vec<_> = self.exits.iter().filter(|e| e.name == "ticker").collect();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].reason, ExitReason::Finished);
    }

    /// The longest time between two ticks (the ticker's lateness).
    fn max_gap(&self) -> Duration {
        self.ticks
            .windows(2)
            .map(|w| w[1].1 - w[0].1)
            .max()
            .unwrap_or_default()
    }

    fn faulty(&self) -> &PluginExit {
        let f: Vec<_> = self.exits.iter().filter(|e| e.name == "faulty").collect();
        assert_eq!(f.len(), 1, "{:?}", self.exits);
        f[0]
    }
}

fn run_beside_ticker(faulty_args: &[&str], limits: Limits) -> Run {
    let mut ev: EventLoop<Vec<(String, Instant)>> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config_with(limits, RestartPolicy::Never)).unwrap();
    let events = host.app_channel("events").unwrap();
    ev.handle()
        .insert_source(events, |e, _, got: &mut Vec<(String, Instant)>| {
            if let Event::Msg(m) = e {
                let m = String::from_utf8(m).unwrap();
                if m.starts_with("tick ") {
                    got.push((m, Instant::now()));
                }
            }
        })
        .unwrap();
    let ticker = host.compile_file(plugin("ticker")).unwrap();
    let faulty = host.compile_file(plugin("faulty")).unwrap();
    let ticker_args = args(&[
        "--every",
        "5ms",
        "--count",
        &TICKS.to_string(),
        "--notify",
        "@app/events",
    ]);
    let fa = args(faulty_args);
    for r in host
        .load_many(&[
            PluginSpec {
                component: &ticker,
                name: "ticker",
                args: &ticker_args,
            },
            PluginSpec {
                component: &faulty,
                name: "faulty",
                args: &fa,
            },
        ])
        .unwrap()
    {
        r.unwrap();
    }
    let mut ticks = Vec::new();
    let start = Instant::now();
    while !host.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "plugins still alive: {:?}",
            host.plugins()
        );
        ev.dispatch(Some(Duration::from_millis(20)), &mut ticks)
            .unwrap();
    }
    for _ in 0..3 {
        ev.dispatch(Some(Duration::ZERO), &mut ticks).unwrap();
    }
    Run {
        ticks,
        exits: host.exits(),
    }
}

#[test]
fn a_30_s_sleep_in_a_callback_is_cut_at_the_callback_budget() {
    let start = Instant::now();
    let r = run_beside_ticker(
        &["--mode", "sleep", "--ms", "30000", "--after", "20"],
        Limits::default(),
    );
    r.assert_ticker_exact();
    let f = r.faulty();
    assert!(f.reason.is_failure(), "{:?}", f.reason);
    let fault = f.fault.as_ref().expect("a fault");
    assert_eq!(fault.kind, FaultKind::Blocked, "{fault}");
    assert!(
        fault.message.contains("wasi:io/poll"),
        "names the call: {fault}"
    );
    assert!(fault.message.contains("use a Timer"), "{fault}");
    // The default callback budget is 100 ms: the ticker was held that long
    // at most (plus generous slack), never 30 s.
    let gap = r.max_gap();
    assert!(
        gap < Duration::from_millis(100 + 500),
        "ticker late by {gap:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_sleep_waits_at_most_the_rest_of_a_longer_budget() {
    let limits = Limits {
        callback_timeout: Some(Duration::from_millis(800)),
        ..Limits::default()
    };
    let r = run_beside_ticker(&["--mode", "sleep", "--ms", "30000"], limits);
    r.assert_ticker_exact();
    let fault = r.faulty().fault.clone().expect("a fault");
    assert_eq!(fault.kind, FaultKind::Blocked, "{fault}");
    let gap = r.max_gap();
    // It did wait (the budget, not an error at once), and not much longer.
    assert!(gap >= Duration::from_millis(400), "ticker gap {gap:?}");
    assert!(
        gap < Duration::from_millis(800 + 500),
        "ticker late by {gap:?}"
    );
}

#[test]
fn a_short_sleep_within_the_budget_is_allowed() {
    let limits = Limits {
        callback_timeout: Some(Duration::from_secs(2)),
        ..Limits::default()
    };
    let r = run_beside_ticker(&["--mode", "sleep", "--ms", "30"], limits);
    r.assert_ticker_exact();
    assert_eq!(r.faulty().reason, ExitReason::Finished);
}

#[test]
fn a_sleep_in_init_is_cut_at_the_init_budget() {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), callop_tests::config()).unwrap();
    let start = Instant::now();
    let e = host
        .load_file(plugin("faulty"), "faulty", &args(&["--mode", "init-sleep"]))
        .unwrap_err();
    let waited = start.elapsed();
    assert!(matches!(e, LoadError::Trap(_)), "{e:?}");
    assert!(e.to_string().contains("blocked in a host call"), "{e}");
    // The init budget (1 s by default), not the 30 s sleep.
    assert!(
        waited < Duration::from_secs(1) + Duration::from_secs(3),
        "{waited:?}"
    );
    ev.dispatch(Some(Duration::ZERO), &mut ()).unwrap();
}

/// A `callop-host` child and its stdout lines, read on a thread with the
/// time each came.
struct Child2 {
    child: Child,
    lines: mpsc::Receiver<(String, Instant)>,
}

impl Child2 {
    fn spawn(extra: &[&str], plugins: &[String]) -> Child2 {
        let mut cmd = host_cmd();
        cmd.args(extra).args(plugins);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run callop-host");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send((l, Instant::now())).is_err() {
                    break;
                }
            }
        });
        Child2 { child, lines }
    }

    /// Waits for a stdout line containing `pat`.
    fn wait_line(&self, pat: &str) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((l, t)) if l.contains(pat) => return t,
                Ok(_) => {}
                Err(_) => panic!("no line with {pat:?}"),
            }
        }
    }

    /// Sends `sig` and waits for the exit: the status code, stderr, and how
    /// long after the signal it came.
    fn signal_and_finish(self, sig: &str) -> (Option<i32>, String, Duration) {
        let sent = Instant::now();
        send_signal(&self.child, sig);
        let (code, err) = self.finish(Duration::from_secs(15));
        (code, err, sent.elapsed())
    }

    /// Waits for the exit (at most `limit`) and returns the status code and stderr.
    fn finish(mut self, limit: Duration) -> (Option<i32>, String) {
        let status = wait_exit(&mut self.child, limit, "callop-host");
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.code(), err)
    }
}

fn ticker_arg(every: &str, count: u32) -> String {
    format!(
        "{}@ticker=--every,{every},--count,{count}",
        plugin("ticker").display()
    )
}

fn faulty_arg(args: &str) -> String {
    format!("{}@faulty={args}", plugin("faulty").display())
}

#[test]
fn sigterm_during_a_30_s_sleep_without_budget_ends_at_the_shutdown_deadline() {
    // No callback timeout: only the shutdown deadline can end the sleep.
    let c = Child2::spawn(
        &["--callback-timeout", "0", "--shutdown-timeout", "1000"],
        &[
            ticker_arg("50ms", 100_000),
            faulty_arg("--mode,sleep,--ms,30000,--after,200"),
        ],
    );
    c.wait_line("[ticker] tick 1");
    c.wait_line("[faulty] faulty: sleeping");
    std::thread::sleep(Duration::from_millis(100));
    let (code, err, took) = c.signal_and_finish("TERM");
    // Killed at the deadline: 128 + SIGTERM.
    assert_eq!(code, Some(143), "{err}");
    assert!(err.contains("killed at the shutdown deadline"), "{err}");
    assert!(
        took < Duration::from_secs(1) + Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn sigterm_reaches_a_plugin_spinning_without_budget() {
    let c = Child2::spawn(
        &["--callback-timeout", "0", "--shutdown-timeout", "500"],
        &[
            ticker_arg("50ms", 100_000),
            faulty_arg("--mode,loop,--after,200"),
        ],
    );
    c.wait_line("[ticker] tick 1");
    // The spinner starts 200 ms after init; give it time to hold the loop.
    std::thread::sleep(Duration::from_millis(600));
    let (code, err, took) = c.signal_and_finish("TERM");
    assert_eq!(code, Some(143), "{err}");
    assert!(err.contains("killed at the shutdown deadline"), "{err}");
    assert!(
        took < Duration::from_millis(500) + Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn a_shutdown_that_sleeps_past_its_deadline_is_ended_there() {
    let c = Child2::spawn(
        &["--callback-timeout", "0", "--shutdown-timeout", "1000"],
        &[
            ticker_arg("50ms", 100_000),
            faulty_arg("--mode,shutdown-sleep,--ms,20000"),
        ],
    );
    c.wait_line("[ticker] tick 2");
    let (code, err, took) = c.signal_and_finish("INT");
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("killed at the shutdown deadline"), "{err}");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(
        took < Duration::from_secs(1) + Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn a_blocking_shutdown_with_a_budget_fails_at_the_budget() {
    // With the default 100 ms callback budget, `shutdown` is cut there: a
    // failure (exit 1), long before the 5 s grace.
    let c = Child2::spawn(
        &["--shutdown-timeout", "5000"],
        &[
            ticker_arg("50ms", 100_000),
            faulty_arg("--mode,shutdown-sleep,--ms,20000"),
        ],
    );
    c.wait_line("[ticker] tick 2");
    let (code, err, took) = c.signal_and_finish("TERM");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("blocked in a host call"), "{err}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn a_second_signal_ends_a_shutdown_in_progress_at_once() {
    let c = Child2::spawn(
        &["--callback-timeout", "0", "--shutdown-timeout", "30000"],
        &[
            ticker_arg("50ms", 100_000),
            faulty_arg("--mode,shutdown-sleep,--ms,60000"),
        ],
    );
    c.wait_line("[ticker] tick 2");
    send_signal(&c.child, "TERM");
    c.wait_line("[faulty] faulty: shutdown sleeping");
    std::thread::sleep(Duration::from_millis(200));
    let (code, err, took) = c.signal_and_finish("INT");
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("second signal"), "{err}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn exit_status_follows_the_documented_mapping() {
    // (faulty args, expected status)
    let cases: &[(&str, i32)] = &[
        ("--mode,stop,--code,3,--after,0", 3),
        ("--mode,stop,--code,255,--after,0", 255),
        ("--mode,stop,--code,-1,--after,0", 255),
        ("--mode,stop,--code,256,--after,0", 1),
        ("--mode,stop,--code,-256,--after,0", 1),
        ("--mode,stop,--code,0,--after,0", 0),
        // Rust's std::process::exit on WASI 0.2 reports only success or
        // failure (`wasi:cli/exit.exit(err)`): code 1.
        ("--mode,exit,--code,3,--after,0", 1),
        ("--mode,exit,--code,0,--after,0", 0),
        // WASI 0.2.12's `exit-with-code` keeps the code.
        ("--mode,exit-with-code,--code,3,--after,0", 3),
        ("--mode,exit-with-code,--code,200,--after,0", 200),
        ("--mode,trap,--after,0", 1),
    ];
    for (a, want) in cases {
        let c = Child2::spawn(&[], &[faulty_arg(a)]);
        let (code, err) = c.finish(Duration::from_secs(30));
        assert_eq!(code, Some(*want), "faulty {a}: {err}");
    }
}
