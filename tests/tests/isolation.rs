//! Isolation: a faulty plugin never takes the host or other plugins down.
//!
//! Every fault mode of the `faulty` plugin runs beside a healthy `ticker`
//! (`--every 5ms --count 40`, reporting each tick on `@app/events`): the host
//! survives, reports the fault (name and cause) and the ticker's ticks are
//! exactly `tick 1` … `tick 40`.

use std::time::{Duration, Instant};

use callop::EventLoop;
use callop::channel::Event;
use callop_plugin_host::{
    ExitReason, FaultKind, Host, Limits, PluginExit, PluginSpec, RestartPolicy,
};
use callop_tests::{args, cache_dir, config_with, host_bin, plugin};

const TICKS: usize = 40;

/// What a run of `ticker` beside `faulty` produced.
struct Outcome {
    /// Messages on `@app/events`, in order.
    events: Vec<String>,
    exits: Vec<PluginExit>,
}

impl Outcome {
    fn ticks(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e.starts_with("tick "))
            .cloned()
            .collect()
    }

    fn faulty_notes(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| !e.starts_with("tick "))
            .cloned()
            .collect()
    }

    fn exits_of(&self, name: &str) -> Vec<&PluginExit> {
        self.exits.iter().filter(|e| e.name == name).collect()
    }

    fn assert_ticker_exact(&self) {
        let want: Vec<String> = (1..=TICKS).map(|i| format!("tick {i}")).collect();
        assert_eq!(
            self.ticks(),
            want,
            "the healthy ticker lost or duplicated ticks"
        );
        let t = self.exits_of("ticker");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].reason, ExitReason::Finished);
    }
}

/// Runs `ticker` and `faulty <faulty_args>` together until both are gone.
fn run_beside_ticker(faulty_args: &[&str], limits: Limits, restart: RestartPolicy) -> Outcome {
    let mut ev: EventLoop<Vec<String>> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config_with(limits, restart)).unwrap();
    let events = host.app_channel("events").unwrap();
    ev.handle()
        .insert_source(events, |e, _, got: &mut Vec<String>| {
            if let Event::Msg(m) = e {
                got.push(String::from_utf8(m).unwrap())
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
    let mut fa = args(faulty_args);
    fa.extend(args(&["--notify", "@app/events"]));
    let results = host
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
        .unwrap();
    for r in results {
        r.unwrap();
    }
    let mut got = Vec::new();
    let start = Instant::now();
    while !host.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "plugins still alive: {:?}",
            host.plugins()
        );
        ev.dispatch(Some(Duration::from_millis(50)), &mut got)
            .unwrap();
    }
    // Messages sent in the last dispatch may still be in flight.
    for _ in 0..3 {
        ev.dispatch(Some(Duration::ZERO), &mut got).unwrap();
    }
    Outcome {
        events: got,
        exits: host.exits(),
    }
}

/// Asserts `faulty` failed once with `kind`, and returns the fault message.
fn assert_failed_once(o: &Outcome, kind: FaultKind) -> String {
    let f = o.exits_of("faulty");
    assert_eq!(f.len(), 1, "{:?}", o.exits);
    assert!(
        matches!(f[0].reason, ExitReason::Trapped(_)),
        "{:?}",
        f[0].reason
    );
    assert!(f[0].reason.is_failure());
    assert_eq!(f[0].reason.code(), 1);
    let fault = f[0].fault.as_ref().expect("a failure carries its fault");
    assert_eq!(fault.kind, kind, "{fault}");
    fault.message.clone()
}

#[test]
fn trap_in_a_callback_fails_only_that_plugin() {
    let o = run_beside_ticker(&["--mode", "trap"], Limits::default(), RestartPolicy::Never);
    o.assert_ticker_exact();
    let msg = assert_failed_once(&o, FaultKind::Trap);
    assert!(msg.contains("unreachable"), "{msg}");
    let fault = o.exits_of("faulty")[0].fault.clone().unwrap();
    let bt = fault.backtrace.expect("a trap has a wasm backtrace");
    assert!(bt.contains("wasm function"), "backtrace lists frames: {bt}");
}

#[test]
fn guest_panic_is_reported_with_its_message() {
    let o = run_beside_ticker(
        &["--mode", "panic"],
        Limits::default(),
        RestartPolicy::Never,
    );
    o.assert_ticker_exact();
    let msg = assert_failed_once(&o, FaultKind::Panic);
    assert!(msg.contains("faulty: deliberate panic"), "{msg}");
}

#[test]
fn infinite_loop_is_interrupted_at_the_default_callback_timeout() {
    assert_eq!(
        Limits::default().callback_timeout,
        Some(Duration::from_millis(100))
    );
    let o = run_beside_ticker(&["--mode", "loop"], Limits::default(), RestartPolicy::Never);
    o.assert_ticker_exact();
    let msg = assert_failed_once(&o, FaultKind::Timeout);
    assert!(
        msg.contains("100ms") && msg.contains("--callback-timeout"),
        "{msg}"
    );
}

#[test]
fn memory_bomb_hits_the_memory_cap() {
    let limits = Limits {
        max_memory_bytes: 32 << 20,
        ..Limits::default()
    };
    let o = run_beside_ticker(&["--mode", "memory"], limits, RestartPolicy::Never);
    o.assert_ticker_exact();
    let msg = assert_failed_once(&o, FaultKind::OutOfMemory);
    assert!(
        msg.contains("--max-memory") && msg.contains("33554432"),
        "{msg}"
    );
}

#[test]
fn unbounded_recursion_is_a_stack_overflow() {
    let o = run_beside_ticker(
        &["--mode", "stack"],
        Limits::default(),
        RestartPolicy::Never,
    );
    o.assert_ticker_exact();
    assert_failed_once(&o, FaultKind::StackOverflow);
}

#[test]
fn bogus_stale_and_foreign_ids_get_errors_not_a_crash() {
    let o = run_beside_ticker(
        &["--mode", "bad-handle"],
        Limits::default(),
        RestartPolicy::Never,
    );
    o.assert_ticker_exact();
    let f = o.exits_of("faulty");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].reason, ExitReason::Finished, "{:?}", f[0]);
    let notes = o.faulty_notes();
    let has = |needle: &str| notes.iter().any(|n| n.contains(needle));
    assert!(has("survived"), "{notes:#?}");
    assert!(
        has("enable(999999) -> err ErrorCode::InvalidSource"),
        "{notes:#?}"
    );
    assert!(
        has("again -> err ErrorCode::InvalidSource"),
        "stale id: {notes:#?}"
    );
    assert!(has("disable(idle") && has("WrongKind"), "{notes:#?}");
    assert!(has("add-timer(u64::MAX) -> "), "{notes:#?}");
    assert!(
        has("connect(\"nosuchplugin/in\") -> err ErrorCode::NotFound"),
        "{notes:#?}"
    );
    assert!(
        has("connect(\"bad name!\") -> err ErrorCode::InvalidArgument"),
        "{notes:#?}"
    );
    assert!(
        has("open-channel(\"in\") again -> err ErrorCode::AlreadyExists"),
        "{notes:#?}"
    );
    assert!(
        has("send(2 MiB) -> err ErrorCode::LimitExceeded") && has("--max-message-size"),
        "{notes:#?}"
    );
    assert!(
        has("to the removed channel -> err ErrorCode::Closed"),
        "{notes:#?}"
    );
    // Every call got an answer: no `ok` for a bogus id.
    assert!(!has("(0) -> ok"), "{notes:#?}");
}

#[test]
fn registration_storm_gets_limit_exceeded_after_the_cap() {
    let o = run_beside_ticker(
        &["--mode", "storm"],
        Limits::default(),
        RestartPolicy::Never,
    );
    o.assert_ticker_exact();
    let f = o.exits_of("faulty");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].reason, ExitReason::Finished, "{:?}", f[0]);
    let summary = o
        .faulty_notes()
        .into_iter()
        .find(|n| n.starts_with("storm:"))
        .expect("storm summary");
    let cap = Limits::default().max_sources;
    // The idle driving the storm and the notify sender's channel do not
    // count against timers; at most `cap` sources are live at once.
    let registered: usize = summary
        .split("registered ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .expect("registered count");
    assert!(registered < cap && registered > cap - 4, "{summary}");
    assert!(summary.contains("asked 1000000"), "{summary}");
    assert!(
        summary.contains("LimitExceeded") && summary.contains("--max-sources"),
        "{summary}"
    );
}

#[test]
fn a_plugin_failing_beyond_its_restart_budget_is_quarantined() {
    let policy: RestartPolicy = "on-failure:2/60s".parse().unwrap();
    let o = run_beside_ticker(
        &["--mode", "trap", "--after", "5"],
        Limits::default(),
        policy,
    );
    o.assert_ticker_exact();
    let f = o.exits_of("faulty");
    let reasons: Vec<String> = f.iter().map(|e| format!("{:?}", e.reason)).collect();
    assert_eq!(f.len(), 4, "{reasons:#?}");
    for (i, e) in f[..3].iter().enumerate() {
        assert!(matches!(e.reason, ExitReason::Trapped(_)), "{reasons:#?}");
        assert_eq!(e.restarts, i as u32);
        assert_eq!(e.id, f[0].id, "a restart keeps the plugin id");
    }
    assert!(
        matches!(&f[3].reason, ExitReason::Quarantined(m) if m.contains("3 failures")),
        "{reasons:#?}"
    );
    let starts = o
        .faulty_notes()
        .iter()
        .filter(|n| n.starts_with("faulty: start"))
        .count();
    assert_eq!(starts, 3, "first run + 2 restarts");
}

#[test]
fn a_plugin_failing_once_is_restarted_and_then_works() {
    let policy: RestartPolicy = "on-failure:3/60s".parse().unwrap();
    let o = run_beside_ticker(
        &["--mode", "panic", "--after", "5", "--only-first-run"],
        Limits::default(),
        policy,
    );
    o.assert_ticker_exact();
    let f = o.exits_of("faulty");
    assert_eq!(f.len(), 2, "{:?}", o.exits);
    assert_eq!(f[0].fault.as_ref().unwrap().kind, FaultKind::Panic);
    assert_eq!(f[0].restarts, 0);
    assert_eq!(f[1].reason, ExitReason::Finished);
    assert_eq!(f[1].restarts, 1);
    let notes = o.faulty_notes();
    assert_eq!(
        notes,
        vec![
            "faulty: start mode=Panic restarts=0 generation=0",
            "faulty: start mode=Panic restarts=1 generation=1",
            "faulty: healthy run finished",
        ]
    );
}

#[test]
fn cli_reports_a_fault_on_stderr_and_exits_non_zero() {
    let o = std::process::Command::new(host_bin())
        .arg("--cache-dir")
        .arg(cache_dir())
        .env("RUST_LOG", "warn")
        .arg(format!(
            "{}=--every,5ms,--count,{TICKS}",
            plugin("ticker").display()
        ))
        .arg(format!("{}=--mode,panic", plugin("faulty").display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let ticks: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("[ticker] tick"))
        .collect();
    let want: Vec<String> = (1..=TICKS).map(|i| format!("[ticker] tick {i}")).collect();
    assert_eq!(ticks, want);
    assert!(
        stderr.contains("error: plugin `faulty` failed (run 1): panic: guest panicked at")
            && stderr.contains("faulty: deliberate panic"),
        "{stderr}"
    );
}

#[test]
fn cli_restart_policy_quarantines_and_reports_each_failure() {
    let o = std::process::Command::new(host_bin())
        .arg("--cache-dir")
        .arg(cache_dir())
        .env("RUST_LOG", "error")
        .args(["--restart", "on-failure:1/60s", "--callback-timeout", "50"])
        .arg(format!(
            "{}=--mode,loop,--after,1",
            plugin("faulty").display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: plugin `faulty` failed (run 1): callback timeout"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: plugin `faulty` failed (run 2): callback timeout"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: plugin `faulty` quarantined: 2 failures"),
        "{stderr}"
    );
}

#[test]
fn cli_rejects_a_bad_restart_policy_naming_the_flag() {
    let o = std::process::Command::new(host_bin())
        .args(["--restart", "sometimes", "x.wasm"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--restart") && stderr.contains("on-failure"),
        "{stderr}"
    );
}

#[test]
fn cli_config_file_sets_per_plugin_limits() {
    let dir = callop_tests::target_dir().join("isolation-config");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("callop.toml");
    std::fs::write(
        &cfg,
        "[limits]\ncallback-timeout-ms = 100\n\n[plugins.faulty]\nmax-memory-mib = 16\n",
    )
    .unwrap();
    let o = std::process::Command::new(host_bin())
        .arg("--cache-dir")
        .arg(cache_dir())
        .env("RUST_LOG", "error")
        .arg("--config")
        .arg(&cfg)
        .arg(format!(
            "{}=--every,5ms,--count,{TICKS}",
            plugin("ticker").display()
        ))
        .arg(format!("{}=--mode,memory", plugin("faulty").display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("[ticker] tick"))
            .count(),
        TICKS
    );
    assert!(
        stderr.contains("failed (run 1): out of memory: memory limit of 16777216 bytes"),
        "{stderr}"
    );

    std::fs::write(&cfg, "[limits]\nmax-sorces = 1\n").unwrap();
    let o = std::process::Command::new(host_bin())
        .arg("--config")
        .arg(&cfg)
        .arg(plugin("ticker"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--config") && stderr.contains("unknown key `max-sorces`"),
        "{stderr}"
    );
}
