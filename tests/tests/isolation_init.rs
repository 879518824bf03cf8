//! Isolation at start-up: a plugin whose `init` fails (an error, a trap, the
//! init timeout) or exits is that plugin's business alone. A healthy
//! `ticker` loaded beside it runs to its exact count, the CLI reports the
//! failure and ends with a non-zero status, and `--restart` applies to a
//! failed `init` as to a failed callback (restart with backoff, quarantine
//! beyond the budget). Plus the smaller leaks: an overflowing timer is
//! dropped, a bound unix socket file goes with its listener, and stale
//! compile-cache temp files are removed.
//!
//! Every run of `callop-host` is bounded by a watchdog that kills it.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use callop::EventLoop;
use callop_plugin_host::{
    ExitReason, FaultKind, Host, HostConfig, Limits, PluginExit, PluginSpec, RestartPolicy,
};
use callop_tests::{args, config, host_cmd, plugin, wait_exit};

/// Ticks of the healthy ticker (`--every 5ms`).
const TICKS: usize = 40;

/// Generous: covers a cold compile of the plugins in a debug host on a
/// loaded machine.
const LIMIT: Duration = Duration::from_secs(120);

/// What a `callop-host` run produced.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    /// The ticker's lines on stdout, in order.
    fn ticks(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("[ticker] "))
            .collect()
    }

    fn assert_ticker_exact(&self) {
        let want: Vec<String> = (1..=TICKS).map(|i| format!("[ticker] tick {i}")).collect();
        assert_eq!(
            self.ticks(),
            want,
            "the healthy ticker lost ticks: {}",
            self.stderr
        );
    }

    fn assert_stderr_has(&self, want: &str) {
        assert!(
            self.stderr.contains(want),
            "no `{want}` in:\n{}",
            self.stderr
        );
    }
}

/// Runs `callop-host` with `cmd`'s arguments (stdout and stderr read on
/// their own threads so that neither pipe can fill up), killing it after
/// [`LIMIT`].
fn run(mut cmd: Command, what: &str) -> Run {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run callop-host");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_exit(&mut child, LIMIT, what);
    let elapsed = start.elapsed();
    Run {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        elapsed,
    }
}

/// `callop-host [flags] ticker faulty=<faulty>`: the ticker loaded first,
/// so it has started when the faulty plugin's `init` runs.
fn beside_ticker(flags: &[&str], faulty: &str) -> Run {
    let mut c = host_cmd();
    c.args(flags)
        .arg(format!(
            "{}=--every,5ms,--count,{TICKS}",
            plugin("ticker").display()
        ))
        .arg(format!("{}={faulty}", plugin("faulty").display()));
    run(c, &format!("callop-host ticker + faulty={faulty}"))
}

/// An init failure beside the ticker: the ticker runs to its count, the
/// failure is reported, the status is 2 (a plugin could not be loaded).
fn assert_init_failure_is_alone(mode: &str, cause: &str) {
    let r = beside_ticker(&[], &format!("--mode,{mode}"));
    r.assert_ticker_exact();
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    r.assert_stderr_has(cause);
    r.assert_stderr_has("error: plugin `faulty` failed");
    assert!(
        r.stdout.contains("[faulty] faulty: start mode="),
        "the faulty init ran: {}",
        r.stdout
    );
}

#[test]
fn cli_an_init_error_fails_only_that_plugin() {
    assert_init_failure_is_alone(
        "init-error",
        "plugin init failed: faulty: deliberate init error",
    );
}

#[test]
fn cli_a_trap_in_init_fails_only_that_plugin() {
    assert_init_failure_is_alone("init-trap", "plugin failed: plugin trapped in init: trap: ");
}

#[test]
fn cli_the_init_timeout_fails_only_that_plugin() {
    assert_init_failure_is_alone("init-loop", "init timeout (limits.init_timeout)");
}

#[test]
fn cli_an_exit_in_init_stops_only_that_plugin_with_its_code() {
    // A WASI exit is a stop (not a failure): the status is its code. (Rust
    // std's `exit(3)` on wasm32-wasip2 reaches the host as `exit(err)`,
    // i.e. code 1, until `wasi:cli/exit.exit-with-code` is supported.)
    let r = beside_ticker(&[], "--mode,init-exit");
    r.assert_ticker_exact();
    let code = r.status.code().expect("an exit status");
    assert_ne!(code, 0, "{}", r.stderr);
    r.assert_stderr_has(&format!("plugin stopped with code {code}"));
}

#[test]
fn cli_an_init_failure_of_the_first_plugin_leaves_the_next_one_running() {
    let mut c = host_cmd();
    c.arg(format!("{}=--mode,init-error", plugin("faulty").display()))
        .arg(format!(
            "{}=--every,5ms,--count,{TICKS}",
            plugin("ticker").display()
        ));
    let r = run(c, "callop-host faulty + ticker");
    r.assert_ticker_exact();
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    r.assert_stderr_has("plugin init failed: faulty: deliberate init error");
}

#[test]
fn cli_restart_applies_to_an_init_failure() {
    // The first run fails in init; the restart (CALLOP_RESTARTS=1) runs
    // healthily and finishes.
    let r = beside_ticker(
        &["--restart", "on-failure:2/60s"],
        "--mode,init-error,--only-first-run",
    );
    r.assert_ticker_exact();
    r.assert_stderr_has("restarting in 10ms (restart 1 under `on-failure:2/60s`)");
    r.assert_stderr_has("plugin restarted");
    let faulty: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("[faulty] "))
        .collect();
    assert_eq!(
        faulty,
        [
            "[faulty] faulty: start mode=InitError restarts=0 generation=0",
            "[faulty] faulty: start mode=InitError restarts=1 generation=1",
            "[faulty] faulty: healthy run finished"
        ]
    );
    // The failed first start is still reported, and in the status.
    r.assert_stderr_has(
        "error: plugin `faulty` failed: plugin init failed: faulty: deliberate init error",
    );
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
}

#[test]
fn cli_init_failures_beyond_the_restart_budget_are_quarantined() {
    let r = beside_ticker(&["--restart", "on-failure:1/60s"], "--mode,init-trap");
    r.assert_ticker_exact();
    r.assert_stderr_has("error: plugin `faulty` failed (run 1): trap");
    r.assert_stderr_has("error: plugin `faulty` failed (run 2): trap");
    r.assert_stderr_has("error: plugin `faulty` quarantined: 2 failures");
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
}

#[test]
fn cli_exits_promptly_when_every_plugin_fails_to_start() {
    // Even with --forever: nothing is left to run or to restart.
    let mut c = host_cmd();
    c.arg("--forever")
        .arg(format!(
            "{}@a=--mode,init-error",
            plugin("faulty").display()
        ))
        .arg(format!("{}@b=--mode,init-trap", plugin("faulty").display()));
    let r = run(c, "callop-host --forever with two failing plugins");
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    r.assert_stderr_has("error: plugin `a` failed: plugin init failed");
    r.assert_stderr_has("error: plugin `b` failed (run 1): trap");
    assert!(r.elapsed < Duration::from_secs(60), "{:?}", r.elapsed);
    // With no restart left at once (`on-failure:0`: quarantined at the
    // first failure), too.
    let mut c = host_cmd();
    c.args(["--forever", "--restart", "on-failure:0"])
        .arg(format!("{}=--mode,init-error", plugin("faulty").display()));
    let r = run(c, "callop-host --forever --restart on-failure:0");
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    r.assert_stderr_has("error: plugin `faulty` quarantined: 1 failures");
    assert!(r.elapsed < Duration::from_secs(60), "{:?}", r.elapsed);
}

// ------------------------------------------------------------ the library

/// Loads `ticker` and `faulty <faulty_args>` with
/// [`Host::load_many_supervised`] and runs until both are gone.
fn supervised_beside_ticker(
    cfg: HostConfig,
    faulty_args: &[&str],
    faulty_limits: Option<Limits>,
) -> Vec<PluginExit> {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), cfg).unwrap();
    if let Some(l) = faulty_limits {
        host.set_limits("faulty", l);
    }
    let ticker = host.compile_file(plugin("ticker")).unwrap();
    let faulty = host.compile_file(plugin("faulty")).unwrap();
    let ta = args(&["--every", "5ms", "--count", &TICKS.to_string()]);
    let fa = args(faulty_args);
    let ids = host
        .load_many_supervised(&[
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
    assert_eq!(ids.len(), 2);
    // Only init has run: the failures so far are the failed starts.
    let failed: Vec<_> = host
        .exits()
        .iter()
        .filter(|e| e.reason.is_failure())
        .map(|e| e.id)
        .collect();
    assert_eq!(failed, [ids[1]], "{:?}", host.exits());
    assert_eq!(host.plugins()[0], (ids[0], "ticker".to_string()));
    let start = Instant::now();
    while !host.is_empty() {
        assert!(start.elapsed() < LIMIT, "{:?}", host.plugins());
        ev.dispatch(Some(Duration::from_millis(50)), &mut ())
            .unwrap();
    }
    let exits = host.exits();
    assert!(exits.iter().all(|e| e.id == ids[0] || e.id == ids[1]));
    exits
}

fn of<'a>(exits: &'a [PluginExit], name: &str) -> Vec<&'a PluginExit> {
    exits.iter().filter(|e| e.name == name).collect()
}

#[test]
fn a_supervised_load_restarts_an_init_failure_under_the_same_id() {
    let cfg = HostConfig {
        restart: RestartPolicy::OnFailure {
            max_restarts: 1,
            period: Duration::from_secs(60),
        },
        ..config()
    };
    let exits = supervised_beside_ticker(cfg, &["--mode", "init-trap", "--only-first-run"], None);
    let t = of(&exits, "ticker");
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].reason, ExitReason::Finished);
    let f = of(&exits, "faulty");
    assert_eq!(f.len(), 2, "{exits:?}");
    match &f[0].reason {
        ExitReason::Trapped(c) => assert!(
            c.starts_with("plugin trapped in init: trap: ") && c.contains("unreachable"),
            "{c}"
        ),
        r => panic!("{r:?}"),
    }
    assert_eq!(f[0].restarts, 0);
    let fault = f[0].fault.as_ref().expect("a trap keeps its fault");
    assert_eq!(fault.kind, FaultKind::Trap);
    assert!(fault.backtrace.is_some(), "{fault}");
    assert_eq!(f[1].reason, ExitReason::Finished);
    assert_eq!((f[1].restarts, f[1].id), (1, f[0].id));
}

#[test]
fn a_supervised_load_without_restarts_leaves_the_failure_as_the_exit() {
    let exits = supervised_beside_ticker(config(), &["--mode", "init-error"], None);
    assert_eq!(of(&exits, "ticker")[0].reason, ExitReason::Finished);
    let f = of(&exits, "faulty");
    assert_eq!(f.len(), 1, "{exits:?}");
    assert_eq!(
        f[0].reason,
        ExitReason::Trapped("plugin init failed: faulty: deliberate init error".into())
    );
    assert_eq!(f[0].fault, None, "an init error is no fault");
}

#[test]
fn a_supervised_load_keeps_a_failed_instantiation_to_that_plugin() {
    // A zero init budget interrupts the component's start code: the
    // instantiation fails, which is not restarted (as on a restart).
    let zero = Limits {
        init_timeout: Some(Duration::ZERO),
        ..Limits::default()
    };
    let cfg = HostConfig {
        restart: RestartPolicy::OnFailure {
            max_restarts: 3,
            period: Duration::from_secs(60),
        },
        ..config()
    };
    let exits = supervised_beside_ticker(cfg, &["--mode", "trap"], Some(zero));
    assert_eq!(of(&exits, "ticker")[0].reason, ExitReason::Finished);
    let f = of(&exits, "faulty");
    assert_eq!(f.len(), 1, "not restarted: {exits:?}");
    match &f[0].reason {
        ExitReason::Trapped(c) => assert!(
            c.starts_with("cannot instantiate plugin:") && c.contains("interrupt"),
            "{c}"
        ),
        r => panic!("{r:?}"),
    }
}

// ------------------------------------------------------------ point 9

#[test]
fn an_overflowing_timer_is_dropped_and_its_plugin_finishes() {
    let mut c = host_cmd();
    c.arg(format!(
        "{}=--mode,timer-overflow",
        plugin("faulty").display()
    ));
    let r = run(c, "callop-host faulty --mode timer-overflow");
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("[faulty] timer-overflow: re-armed to u64::MAX ns"),
        "{}",
        r.stdout
    );
    r.assert_stderr_has("plugin finished");
    assert!(r.elapsed < Duration::from_secs(60), "{:?}", r.elapsed);
}

fn tempdir(name: &str) -> PathBuf {
    let d = callop_tests::target_dir().join(format!("isolation-init-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_unix_socket_path_binds_again_after_its_plugin_ended() {
    let d = tempdir("unix");
    let probe = || {
        let mut c = host_cmd();
        c.arg(plugin("io-probe"))
            .arg("--dir")
            .arg(format!("{}::/rw", d.display()))
            .args(["--", "unix-bind:/rw/s.sock", "unix-pair:/rw/s.sock"]);
        run(c, "callop-host io-probe unix-bind")
    };
    for round in 1..=2 {
        let r = probe();
        assert_eq!(r.status.code(), Some(0), "round {round}: {}", r.stderr);
        // The second probe binds the same path again within the run.
        assert!(
            r.stdout.contains("ALLOWED unix-bind:/rw/s.sock")
                && r.stdout.contains("ALLOWED unix-pair:/rw/s.sock"),
            "round {round}: {}",
            r.stdout
        );
        assert!(
            !d.join("s.sock").exists(),
            "round {round}: the socket file is left"
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn opening_the_compile_cache_removes_a_killed_writers_temp_files() {
    let d = tempdir("cache");
    // A process that is gone: a reaped child.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let key = "0123456789abcdef".repeat(4);
    let stale = [
        d.join(format!("{key}.cwasm.callop-tmp.{dead}.0")),
        d.join(format!("{key}.tmp.{dead}")),
    ];
    for f in &stale {
        std::fs::write(f, b"half an artifact").unwrap();
    }
    let mut c = Command::new(callop_tests::host_bin());
    c.arg("compile")
        .arg("--cache-dir")
        .arg(&d)
        .arg(plugin("ticker"));
    let r = run(c, "callop-host compile");
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);
    for f in &stale {
        assert!(!f.exists(), "{} left", f.display());
    }
    let names: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "an entry and its digest only: {names:?}");
    assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
    let _ = std::fs::remove_dir_all(&d);
}
