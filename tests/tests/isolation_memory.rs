//! Isolation of host memory: every byte the host holds for a plugin counts
//! against its host-memory budget (`Limits::max_host_memory_bytes`,
//! `--max-host-memory`, default 64 MiB).
//!
//! The `faulty` plugin's `buffer-bomb` mode sends 1 MiB messages until a
//! send fails, to never-opened channel names or to its own channel that it
//! never reads, beside a healthy `ticker` (`--every 5ms --count 40`). The
//! bomb gets `limit-exceeded` after about budget / 1 MiB messages and keeps
//! running; the host's resident memory grows by at most the budget plus
//! [`RSS_MARGIN`]; the ticker's ticks are exactly `tick 1` … `tick 40`.
//! Without the budget the same bomb made the host hold 4 GiB (4,096 queued
//! messages of 1 MiB per channel name, without bound across names).
//!
//! The tests of this file measure the resident memory of their own process
//! (or of a `callop-host` child), so they run one at a time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use callop::EventLoop;
use callop::channel::Event;
use callop_plugin_host::{
    ExitReason, Host, HostError, Limits, PluginId, PluginSpec, RestartPolicy,
};
use callop_tests::{args, cache_dir, config_with, host_bin, plugin};

const TICKS: usize = 40;
const MIB: usize = 1 << 20;

/// What resident memory may grow by beyond the budget: the two instances'
/// stores and linear memories (the bomb's own 1 MiB message buffer and its
/// heap), the transient copy of the message being sent, the allocator's
/// slack and the test harness. Measured (2026-12-02, loaded 2-core machine):
/// at most budget + 5 MiB; without the budget it is gigabytes.
const RSS_MARGIN: usize = 48 * MIB;

/// Serialises the tests of this file (each measures resident memory).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Resident memory of this process, in bytes (`/proc/self/statm`).
fn rss_self() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// Resident memory of process `pid`, in bytes (`VmRSS` of
/// `/proc/PID/status`); `None` once it is gone.
fn rss_of(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// What a run of `ticker` beside `faulty` produced.
struct Outcome {
    /// Messages on `@app/events`, in order.
    events: Vec<String>,
    exits: Vec<callop_plugin_host::PluginExit>,
    /// Most resident memory above the level before the plugins started.
    rss_growth: usize,
    /// Most host memory charged to `faulty` at any dispatch.
    faulty_held: usize,
}

impl Outcome {
    fn notes(&self, prefix: &str) -> Vec<&str> {
        self.events
            .iter()
            .filter(|e| e.starts_with(prefix))
            .map(String::as_str)
            .collect()
    }

    fn assert_ticker_exact(&self) {
        let want: Vec<String> = (1..=TICKS).map(|i| format!("tick {i}")).collect();
        let ticks: Vec<&String> = self
            .events
            .iter()
            .filter(|e| e.starts_with("tick "))
            .collect();
        assert_eq!(ticks, want.iter().collect::<Vec<_>>(), "ticker lost ticks");
        let t: Vec<_> = self.exits.iter().filter(|e| e.name == "ticker").collect();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].reason, ExitReason::Finished);
    }

    fn assert_rss_within(&self, budget: usize) {
        eprintln!(
            "resident memory grew by {:.1} MiB (budget {} MiB); most charged to faulty: {:.1} MiB",
            self.rss_growth as f64 / MIB as f64,
            budget / MIB,
            self.faulty_held as f64 / MIB as f64
        );
        assert!(
            self.rss_growth <= budget + RSS_MARGIN,
            "resident memory grew by {} MiB (budget {} MiB + margin {} MiB)",
            self.rss_growth / MIB,
            budget / MIB,
            RSS_MARGIN / MIB
        );
    }
}

/// `N` of the note `buffer-bomb: sent N, then limit-exceeded: ...`.
fn sent_before_limit(note: &str) -> usize {
    let rest = note
        .strip_prefix("buffer-bomb: sent ")
        .unwrap_or_else(|| panic!("not a fill note: {note}"));
    let (n, then) = rest.split_once(", then ").expect("`, then `");
    assert!(
        then.starts_with("limit-exceeded: ") && then.contains("--max-host-memory"),
        "the bomb's send failed otherwise: {note}"
    );
    n.parse().expect("a count")
}

/// The number of 1 MiB messages a budget holds: each costs its bytes plus
/// a batch's bookkeeping (see `mailbox.rs`), so one less than budget / 1 MiB.
fn expected_sends(budget: usize) -> std::ops::RangeInclusive<usize> {
    (budget / MIB).saturating_sub(2)..=budget / MIB
}

/// Runs `ticker` and `faulty --mode buffer-bomb <bomb_args>` until both are
/// gone, sampling resident memory at each dispatch.
fn run_bomb_beside_ticker(bomb_args: &[&str], limits: Limits, restart: RestartPolicy) -> Outcome {
    run_bomb_beside(bomb_args, limits, restart, "5ms")
}

/// [`run_bomb_beside_ticker`] with a ticker ticking `every`.
fn run_bomb_beside(
    bomb_args: &[&str],
    limits: Limits,
    restart: RestartPolicy,
    every: &str,
) -> Outcome {
    let mut ev: EventLoop<Vec<String>> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config_with(limits, restart)).unwrap();
    let events = host.app_channel("events").unwrap();
    // `--target app` sends here; the application never drains it.
    let _bomb = host.app_channel("bomb").unwrap();
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
        every,
        "--count",
        &TICKS.to_string(),
        "--notify",
        "@app/events",
    ]);
    let mut fa = args(&["--mode", "buffer-bomb", "--notify", "@app/events"]);
    fa.extend(args(bomb_args));
    let base = rss_self();
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
    let ids: Vec<PluginId> = results.into_iter().map(Result::unwrap).collect();
    let mut got = Vec::new();
    let mut rss_max = base;
    let mut held_max = 0;
    let start = Instant::now();
    while !host.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "plugins still alive: {:?}",
            host.plugins()
        );
        ev.dispatch(Some(Duration::from_millis(20)), &mut got)
            .unwrap();
        rss_max = rss_max.max(rss_self());
        if let Some(h) = host.host_memory_used(ids[1]) {
            held_max = held_max.max(h);
        }
    }
    for _ in 0..3 {
        ev.dispatch(Some(Duration::ZERO), &mut got).unwrap();
    }
    Outcome {
        events: got,
        exits: host.exits(),
        rss_growth: rss_max.saturating_sub(base),
        faulty_held: held_max,
    }
}

#[test]
fn buffer_bomb_on_never_opened_names_is_refused_at_the_default_budget() {
    let _one = one_at_a_time();
    let budget = Limits::default().max_host_memory_bytes;
    assert_eq!(budget, 64 * MIB);
    let o = run_bomb_beside_ticker(
        &["--target", "unopened", "--names", "16"],
        Limits::default(),
        RestartPolicy::Never,
    );
    o.assert_ticker_exact();
    let fill = o.notes("buffer-bomb: sent ");
    assert_eq!(fill.len(), 1, "{:?}", o.events);
    let n = sent_before_limit(fill[0]);
    assert!(expected_sends(budget).contains(&n), "{}", fill[0]);
    // Holding its messages, it is still refused: nothing leaked out of the
    // budget, and nothing was released while they are queued.
    let hold = o.notes("buffer-bomb: after hold: ");
    assert_eq!(hold.len(), 1, "{:?}", o.events);
    assert!(hold[0].contains("limit-exceeded"), "{}", hold[0]);
    assert!(
        o.faulty_held >= n * MIB && o.faulty_held <= budget,
        "charged {} bytes for {n} messages",
        o.faulty_held
    );
    // A refused send is no fault: the bomb kept running and finished.
    let f: Vec<_> = o.exits.iter().filter(|e| e.name == "faulty").collect();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].reason, ExitReason::Finished);
    o.assert_rss_within(budget);
}

#[test]
fn buffer_bomb_on_an_application_endpoint_nobody_drains_is_refused_at_the_budget() {
    let _one = one_at_a_time();
    let budget = Limits::default().max_host_memory_bytes;
    let o = run_bomb_beside_ticker(
        &["--target", "app"],
        Limits::default(),
        RestartPolicy::Never,
    );
    o.assert_ticker_exact();
    let fill = o.notes("buffer-bomb: sent ");
    assert_eq!(fill.len(), 1, "{:?}", o.events);
    let n = sent_before_limit(fill[0]);
    assert!(expected_sends(budget).contains(&n), "{}", fill[0]);
    let hold = o.notes("buffer-bomb: after hold: ");
    assert!(hold[0].contains("limit-exceeded"), "{}", hold[0]);
    o.assert_rss_within(budget);
}

#[test]
fn buffer_bomb_on_its_own_unread_channel_is_refused_and_delivery_releases_it() {
    let _one = one_at_a_time();
    let budget = Limits::default().max_host_memory_bytes;
    let o = run_bomb_beside_ticker(
        &["--target", "own"],
        Limits::default(),
        RestartPolicy::Never,
    );
    o.assert_ticker_exact();
    let fill = o.notes("buffer-bomb: sent ");
    assert_eq!(fill.len(), 1, "{:?}", o.events);
    let n = sent_before_limit(fill[0]);
    assert!(expected_sends(budget).contains(&n), "{}", fill[0]);
    let hold = o.notes("buffer-bomb: after hold: ");
    assert!(hold[0].contains("limit-exceeded"), "{}", hold[0]);
    // Read at last, every message arrives, and the budget is free again.
    assert_eq!(
        o.notes("buffer-bomb: received "),
        vec![format!("buffer-bomb: received {n}; after delivery: ok").as_str()]
    );
    let f: Vec<_> = o.exits.iter().filter(|e| e.name == "faulty").collect();
    assert_eq!(f[0].reason, ExitReason::Finished);
    o.assert_rss_within(budget);
}

#[test]
fn a_configured_budget_is_what_the_bomb_gets() {
    let _one = one_at_a_time();
    let budget = 8 * MIB;
    let limits = Limits {
        max_host_memory_bytes: budget,
        ..Limits::default()
    };
    let o = run_bomb_beside_ticker(&["--target", "own"], limits, RestartPolicy::Never);
    o.assert_ticker_exact();
    let n = sent_before_limit(o.notes("buffer-bomb: sent ")[0]);
    assert_eq!(
        n, 7,
        "8 MiB hold seven 1 MiB messages and their bookkeeping"
    );
    o.assert_rss_within(budget);
}

#[test]
fn a_restarted_bomb_gets_its_whole_budget_back() {
    let _one = one_at_a_time();
    let budget = 16 * MIB;
    for target in ["unopened", "own"] {
        let limits = Limits {
            max_host_memory_bytes: budget,
            ..Limits::default()
        };
        // Each run fills its budget, holds, and traps (`unopened`: with its
        // messages still queued; `own`: after reading them). The ticker
        // (40 ticks of 50 ms) outlives the runs: its sender keeps
        // `@app/events` open for the restarted runs' notes.
        let o = run_bomb_beside(
            &["--target", target, "--hold", "50", "--then", "trap"],
            limits,
            "on-failure:2/60s".parse().unwrap(),
            "50ms",
        );
        o.assert_ticker_exact();
        let runs: Vec<usize> = o
            .notes("buffer-bomb: sent ")
            .into_iter()
            .map(sent_before_limit)
            .collect();
        assert_eq!(runs.len(), 3, "{target}: {:?}", o.events);
        assert!(expected_sends(budget).contains(&runs[0]), "{runs:?}");
        assert!(
            runs.iter().all(|n| *n == runs[0]),
            "{target}: each restart gets the same budget back: {runs:?}"
        );
        let failed = o
            .exits
            .iter()
            .filter(|e| e.name == "faulty" && matches!(e.reason, ExitReason::Trapped(_)))
            .count();
        assert_eq!(failed, 3, "{target}: {:?}", o.exits);
        o.assert_rss_within(budget);
    }
}

#[test]
fn application_messages_are_charged_to_the_receiver_until_it_is_unloaded() {
    let _one = one_at_a_time();
    let budget = 8 * MIB;
    let limits = Limits {
        max_host_memory_bytes: budget,
        ..Limits::default()
    };
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config_with(limits, RestartPolicy::Never)).unwrap();
    let ticker = host.compile_file(plugin("ticker")).unwrap();
    let long = args(&["--every", "1s", "--count", "60"]);
    let fill = |host: &Host<'_, ()>| {
        let tx = host.sender("ticker/never-opened").unwrap();
        let mut n = 0;
        let err = loop {
            match tx.send(vec![7; MIB]) {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
            assert!(n <= 64, "no limit");
        };
        assert!(
            matches!(&err, HostError::LimitExceeded(m) if m.contains("--max-host-memory")),
            "{err}"
        );
        n
    };
    let id = host.load(&ticker, "ticker", &long).unwrap();
    let n = fill(&host);
    assert_eq!(n, 7);
    let held = host.host_memory_used(id).unwrap();
    assert!(held >= 7 * MIB && held <= budget, "{held}");
    ev.dispatch(Some(Duration::ZERO), &mut ()).unwrap();
    assert_eq!(host.host_memory_used(id), Some(held), "nothing delivered");
    // Unloading drops its queues and every byte charged for them: a new
    // instance of the name gets the whole budget.
    assert!(host.unload(id));
    let id2 = host.load(&ticker, "ticker", &long).unwrap();
    assert_eq!(host.host_memory_used(id2), Some(0));
    assert_eq!(fill(&host), n);
    host.unload(id2);
}

#[test]
fn cli_isolated_bomb_stays_within_its_budget() {
    let _one = one_at_a_time();
    use std::io::{BufRead, BufReader, Read};
    use std::sync::atomic::{AtomicBool, Ordering};
    let budget = 16 * MIB;
    let mut child = std::process::Command::new(host_bin())
        .arg("--cache-dir")
        .arg(cache_dir())
        .env("RUST_LOG", "warn")
        .args(["--isolate", "--max-host-memory", "16"])
        .arg(format!(
            "{}=--every,5ms,--count,{TICKS}",
            plugin("ticker").display()
        ))
        .arg(format!(
            "{}=--mode,buffer-bomb,--target,own,--after,300,--hold,300",
            plugin("faulty").display()
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run callop-host");
    let pid = child.id();
    // The host's own footprint is taken at the first tick, with both
    // plugins running and the bomb not gone off yet (300 ms after init).
    let started = std::sync::Arc::new(AtomicBool::new(false));
    let stdout = child.stdout.take().unwrap();
    let reader = {
        let started = started.clone();
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if l.starts_with("[ticker] tick") {
                    started.store(true, Ordering::SeqCst);
                }
                lines.push(l);
            }
            lines
        })
    };
    let start = Instant::now();
    let mut base = None;
    let mut max = 0;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.load(Ordering::SeqCst)
            && let Some(r) = rss_of(pid)
        {
            base.get_or_insert(r);
            max = max.max(r);
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("callop-host did not end");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let lines = reader.join().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    let ticks: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("[ticker] tick"))
        .collect();
    let want: Vec<String> = (1..=TICKS).map(|i| format!("[ticker] tick {i}")).collect();
    assert_eq!(ticks, want.iter().collect::<Vec<_>>(), "{lines:?}");
    let fill: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("[faulty] "))
        .filter(|l| l.starts_with("buffer-bomb: sent "))
        .collect();
    assert_eq!(fill.len(), 1, "{lines:?}");
    assert_eq!(sent_before_limit(fill[0]), 15, "{}", fill[0]);
    assert!(
        lines
            .iter()
            .any(|l| l == "[faulty] buffer-bomb: received 15; after delivery: ok"),
        "{lines:?}"
    );
    let base = base.expect("sampled while running");
    let growth = max.saturating_sub(base);
    eprintln!(
        "callop-host: {} MiB at the first tick, at most {} MiB (budget {} MiB)",
        base / MIB,
        max / MIB,
        budget / MIB
    );
    assert!(
        growth <= budget + RSS_MARGIN,
        "callop-host grew by {} MiB (from {} MiB)",
        growth / MIB,
        base / MIB
    );
}
