//! Several loop threads (`Host::start_threads`, `callop-host --threads`):
//! named channels and pings between plugins of different threads keep
//! exact counts and order, placement is deterministic and pinnable, a
//! shutdown ends every thread's plugins, a plugin failing on one thread
//! leaves the others' counts exact, restarts and reloads stay on their
//! thread, and SIGTERM shuts a multi-thread `callop-host` down gracefully.
//!
//! The channel traffic is `reload-counter`'s: a flood of sequence numbers
//! and a counter that checks each one follows the previous (`errors`
//! counts gaps, duplicates and reorders).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use callop::EventLoop;
use callop::channel::Event;
use callop_plugin_host::{
    ExitReason, Host, HostConfig, HostError, Limits, PluginComponent, PluginId, PluginSpec,
};
use callop_tests::{args, assert_sigterm_is_graceful, config, host_cmd, plugin, run_until_empty};

const N: u64 = 100_000;

/// A loop and a host on `threads` loop threads, with the endpoint
/// `@app/counter` collecting the counter's lines.
struct Setup {
    ev: EventLoop<'static, ()>,
    host: Host<'static, ()>,
    lines: Rc<RefCell<Vec<String>>>,
}

fn setup(threads: usize, cfg: HostConfig) -> Setup {
    let ev: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), HostConfig { threads, ..cfg }).unwrap();
    assert_eq!(host.threads(), threads);
    let lines = Rc::new(RefCell::new(Vec::new()));
    let l2 = lines.clone();
    ev.handle()
        .insert_source(host.app_channel("counter").unwrap(), move |e, _, _| {
            if let Event::Msg(m) = e {
                l2.borrow_mut().push(String::from_utf8(m).unwrap());
            }
        })
        .unwrap();
    Setup { ev, host, lines }
}

impl Setup {
    fn counter(&self) -> PluginComponent {
        self.host.compile_file(plugin("reload-counter")).unwrap()
    }

    /// Loads `counter` (reporting to `@app/counter`) and `flood` (N numbers
    /// to `counter/in`), pinned to the given threads.
    fn counter_and_flood(&self, counter_thread: usize, flood_thread: usize) -> [PluginId; 2] {
        self.host.pin_thread("counter", counter_thread).unwrap();
        self.host.pin_thread("flood", flood_thread).unwrap();
        let c = self.counter();
        let cargs = args(&["--notify", "@app/counter", "--progress", "20000"]);
        let n = N.to_string();
        let fargs = args(&["--role", "flood", "--count", &n, "--per-tick", "2000"]);
        let ids = self
            .host
            .load_many(&[
                PluginSpec {
                    component: &c,
                    name: "counter",
                    args: &cargs,
                },
                PluginSpec {
                    component: &c,
                    name: "flood",
                    args: &fargs,
                },
            ])
            .unwrap();
        let ids = [*ids[0].as_ref().unwrap(), *ids[1].as_ref().unwrap()];
        assert_eq!(self.host.thread_of(ids[0]), Some(counter_thread));
        assert_eq!(self.host.thread_of(ids[1]), Some(flood_thread));
        ids
    }

    /// Dispatches until every plugin ended; the counter's final lines.
    fn finish(&mut self) -> Vec<String> {
        run_until_empty(&mut self.ev, &self.host, &mut (), Duration::from_secs(60));
        self.ev
            .dispatch(Some(Duration::from_millis(20)), &mut ())
            .unwrap();
        self.lines
            .borrow()
            .iter()
            .filter(|l| !l.contains("progress"))
            .cloned()
            .collect()
    }

    /// Dispatches until the counter reported at least `count` messages.
    fn run_until_count(&mut self, count: u64) {
        let start = Instant::now();
        while !self.lines.borrow().iter().any(|l| {
            l.strip_prefix("counter: progress ")
                .and_then(|r| field(r, "count"))
                .is_some_and(|c| c >= count)
        }) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no progress to {count}"
            );
            self.ev
                .dispatch(Some(Duration::from_millis(50)), &mut ())
                .unwrap();
        }
    }
}

/// The value of `key=` in a report line.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

fn assert_exact(lines: &[String]) {
    let done: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("counter: done"))
        .collect();
    assert_eq!(done.len(), 1, "{lines:?}");
    assert_eq!(field(done[0], "count"), Some(N), "{lines:?}");
    assert_eq!(field(done[0], "first"), Some(0), "{lines:?}");
    assert_eq!(field(done[0], "next"), Some(N), "{lines:?}");
    assert_eq!(field(done[0], "errors"), Some(0), "{lines:?}");
}

#[test]
fn a_flood_across_threads_delivers_every_message_once_in_order() {
    // Both directions: the flood on the coordinator's thread, the counter
    // on a worker, and the other way round.
    for (counter_thread, flood_thread) in [(1, 0), (0, 1)] {
        let mut s = setup(2, config());
        let [counter, flood] = s.counter_and_flood(counter_thread, flood_thread);
        let lines = s.finish();
        assert_exact(&lines);
        let exits = s.host.exits();
        for id in [counter, flood] {
            let e = exits.iter().find(|e| e.id == id).unwrap();
            assert!(!e.reason.is_failure(), "{e:?}");
        }
    }
}

#[test]
fn a_flood_between_two_worker_threads_is_exact_too() {
    let mut s = setup(3, config());
    s.counter_and_flood(2, 1);
    assert_exact(&s.finish());
}

#[test]
fn application_pings_and_senders_reach_a_plugin_on_another_thread() {
    let mut s = setup(2, config());
    s.host.pin_thread("sink", 1).unwrap();
    let c = s.host.compile_file(plugin("bench-sink")).unwrap();
    const PINGS: u64 = 200;
    let id = s
        .host
        .load(&c, "sink", &args(&["--pings", &PINGS.to_string()]))
        .unwrap();
    assert_eq!(s.host.thread_of(id), Some(1));
    let ping = s.host.ping("sink/p").unwrap();
    let pings_seen = |h: &Host<'static, ()>| h.stats().plugin("sink").map_or(0, |p| p.events.ping);
    for i in 1..=PINGS {
        ping.ping();
        // One ping at a time (pings coalesce): wait until this one arrived.
        let start = Instant::now();
        while pings_seen(&s.host) < i && !s.host.is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "ping {i} not delivered"
            );
            s.ev.dispatch(Some(Duration::from_millis(1)), &mut ())
                .unwrap();
        }
    }
    run_until_empty(&mut s.ev, &s.host, &mut (), Duration::from_secs(10));
    let exits = s.host.exits();
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(exits[0].reason, ExitReason::Stopped(0), "{exits:?}");
    assert_eq!(s.host.stats().plugin("sink").unwrap().events.ping, PINGS);

    // An application sender to a worker's plugin: the counter on thread 1.
    let mut s = setup(2, config());
    s.host.pin_thread("counter", 1).unwrap();
    let c = s.counter();
    s.host
        .load(&c, "counter", &args(&["--notify", "@app/counter"]))
        .unwrap();
    let tx = s.host.sender("counter/in").unwrap();
    for i in 0..N {
        tx.send(i.to_le_bytes().to_vec()).unwrap_or_else(|e| {
            panic!("send {i}: {e}");
        });
        if i % 2000 == 1999 {
            // Give the counter time to drain (the queue is bounded).
            s.ev.dispatch(Some(Duration::from_millis(0)), &mut ())
                .unwrap();
            while s.host.stats().plugin("counter").unwrap().queued_messages > 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    tx.send(Vec::new()).unwrap();
    assert_exact(&s.finish());
}

#[test]
fn placement_is_deterministic_and_pins_are_kept() {
    let s = setup(3, config());
    let c = s.host.compile_file(plugin("ticker")).unwrap();
    let long = args(&["--every", "1s", "--count", "1000"]);
    s.host.pin_thread("pinned", 2).unwrap();
    assert!(matches!(
        s.host.pin_thread("nowhere", 3),
        Err(HostError::NotFound(_))
    ));
    // The fewest plugins first, the lowest thread on a tie: 0, 1, 2, 0, 1.
    let mut threads = Vec::new();
    for i in 0..5 {
        let id = s.host.load(&c, &format!("t{i}"), &long).unwrap();
        threads.push(s.host.thread_of(id).unwrap());
    }
    assert_eq!(threads, [0, 1, 2, 0, 1]);
    let id = s.host.load(&c, "pinned", &long).unwrap();
    assert_eq!(s.host.thread_of(id), Some(2));
    // Thread 2 has 2 plugins now, the others 2 each: the next goes to 0.
    let id = s.host.load(&c, "next", &long).unwrap();
    assert_eq!(s.host.thread_of(id), Some(0));
    // Every plugin is listed, in load order, whatever its thread.
    let names: Vec<String> = s.host.plugins().into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["t0", "t1", "t2", "t3", "t4", "pinned", "next"]);
    assert_eq!(s.host.stats().plugins.len(), 7);
    // Names are unique across threads.
    assert!(s.host.load(&c, "t1", &long).is_err());
    // Threads are started once, before any plugin.
    assert!(s.host.start_threads(2).is_err());
    assert!(s.host.start_threads(3).is_ok());
}

#[test]
fn starting_threads_is_refused_after_a_load_and_out_of_range() {
    let ev: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    assert!(matches!(
        host.start_threads(0),
        Err(HostError::InvalidName(_))
    ));
    assert!(host.start_threads(100_000).is_err());
    let c = host.compile_file(plugin("ticker")).unwrap();
    host.load(&c, "t", &args(&["--every", "1s", "--count", "1000"]))
        .unwrap();
    assert!(matches!(host.start_threads(2), Err(HostError::Busy(_))));
    assert_eq!(host.threads(), 1);
}

#[test]
fn an_unsupervised_load_that_cannot_instantiate_one_plugin_starts_none() {
    let mut s = setup(2, config());
    let c = s.host.compile_file(plugin("ticker")).unwrap();
    let long = args(&["--every", "1s", "--count", "1000"]);
    // `big` cannot be instantiated (its memory limit is below what the
    // component declares) and goes to thread 1; `a` to thread 0.
    s.host.pin_thread("big", 1).unwrap();
    s.host.set_limits(
        "big",
        Limits {
            max_memory_bytes: 1024,
            ..Limits::default()
        },
    );
    let r = s.host.load_many(&[
        PluginSpec {
            component: &c,
            name: "a",
            args: &long,
        },
        PluginSpec {
            component: &c,
            name: "big",
            args: &long,
        },
    ]);
    let (name, _) = r.unwrap_err();
    assert_eq!(name, "big");
    assert!(s.host.is_empty());
    assert!(s.host.plugins().is_empty());
    // The names are free again.
    s.host
        .load(&c, "a", &args(&["--every", "1ms", "--count", "2"]))
        .unwrap();
    s.host
        .load(&c, "big", &args(&["--every", "1ms", "--count", "2"]))
        .unwrap_err();
    run_until_empty(&mut s.ev, &s.host, &mut (), Duration::from_secs(10));
}

#[test]
fn a_shutdown_ends_the_plugins_of_every_thread() {
    let mut s = setup(3, config());
    let c = s.host.compile_file(plugin("ticker")).unwrap();
    for i in 0..6 {
        s.host
            .load(
                &c,
                &format!("t{i}"),
                &args(&["--every", "5ms", "--count", "100000"]),
            )
            .unwrap();
    }
    s.ev.dispatch(Some(Duration::from_millis(30)), &mut ())
        .unwrap();
    assert!(!s.host.is_empty());
    let start = Instant::now();
    s.host.shutdown(Duration::from_secs(2));
    run_until_empty(&mut s.ev, &s.host, &mut (), Duration::from_secs(10));
    // Every ticker ended in its `shutdown`, well before the deadline.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let exits = s.host.exits();
    assert_eq!(exits.len(), 6, "{exits:?}");
    assert!(
        exits
            .iter()
            .all(|e| e.reason != ExitReason::ShutdownTimeout),
        "{exits:?}"
    );
}

#[test]
fn a_plugin_failing_on_one_thread_leaves_the_other_threads_exact() {
    // The threads start in `Host::new`: the restart policy set below
    // reaches the worker only if settings made later are passed on.
    let mut s = setup(3, config());
    s.host.pin_thread("faulty", 2).unwrap();
    s.host
        .set_restart_policy(Some("faulty"), "on-failure:2/60s".parse().unwrap());
    let f = s.host.compile_file(plugin("faulty")).unwrap();
    let faulty = s
        .host
        .load(
            &f,
            "faulty",
            &args(&["--mode", "trap", "--after", "5", "--only-first-run"]),
        )
        .unwrap();
    s.counter_and_flood(1, 0);
    let lines = s.finish();
    assert_exact(&lines);
    let exits = s.host.exits();
    let mine: Vec<_> = exits.iter().filter(|e| e.id == faulty).collect();
    // It trapped once, was restarted on its own thread and then finished.
    assert_eq!(mine.len(), 2, "{exits:?}");
    assert!(
        matches!(mine[0].reason, ExitReason::Trapped(_)),
        "{exits:?}"
    );
    assert!(!mine[1].reason.is_failure(), "{exits:?}");
    assert_eq!(mine[1].restarts, 1);
    assert_eq!(s.host.thread_of(faulty), Some(2));
}

#[test]
fn a_plugin_on_a_worker_thread_is_reloaded_there_without_losing_a_message() {
    let mut s = setup(2, config());
    let [counter, _] = s.counter_and_flood(1, 0);
    s.run_until_count(20_000);
    let c = s.counter();
    s.host.reload(counter, &c).unwrap();
    assert_eq!(s.host.reloads(counter), Some(1));
    assert_eq!(s.host.thread_of(counter), Some(1));
    let lines = s.finish();
    // The old instance counted up to its shutdown, the new one the rest.
    let count: u64 = lines
        .iter()
        .filter(|l| l.starts_with("counter: shutdown") || l.starts_with("counter: done"))
        .filter_map(|l| field(l, "count"))
        .sum();
    assert_eq!(count, N, "{lines:?}");
    assert!(
        lines.iter().all(|l| field(l, "errors").unwrap_or(0) == 0),
        "{lines:?}"
    );
}

#[test]
fn a_stats_table_covers_every_thread_and_unload_reaches_a_worker() {
    let s = setup(2, config());
    let c = s.host.compile_file(plugin("ticker")).unwrap();
    let long = args(&["--every", "1s", "--count", "1000"]);
    let a = s.host.load(&c, "a", &long).unwrap();
    let b = s.host.load(&c, "b", &long).unwrap();
    assert_eq!(s.host.thread_of(b), Some(1));
    assert!(s.host.source_count(b).unwrap() >= 1);
    assert!(s.host.source_registrations(b).is_some());
    assert!(s.host.host_memory_used(b).is_some());
    let st = s.host.stats();
    assert_eq!(st.plugins.iter().map(|p| p.id).collect::<Vec<_>>(), [a, b]);
    assert!(s.host.unload(b));
    assert!(!s.host.unload(b));
    assert_eq!(s.host.plugins(), [(a, "a".to_string())]);
    let exits = s.host.exits();
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0].reason, ExitReason::Unloaded);
}

#[test]
fn callop_host_with_two_threads_shuts_down_gracefully_on_sigterm() {
    // `sink` (silent) goes to thread 0, `ticker` (whose first tick the
    // helper waits for) to thread 1.
    let sink = format!(
        "{}@sink=--tick,10,--ticks,100000",
        plugin("bench-sink").display()
    );
    let ticker = format!(
        "{}@ticker=--every,10ms,--count,100000",
        plugin("ticker").display()
    );
    assert_sigterm_is_graceful(host_cmd().args(["--threads", "2", &sink, &ticker]));
}

#[test]
fn callop_host_places_plugins_by_the_config_file() {
    let dir = std::env::temp_dir().join(format!("callop-threads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("callop.toml");
    std::fs::write(&cfg, "[plugins.b]\nthread = 1\n[plugins.a]\nthread = 1\n").unwrap();
    let out = callop_tests::run(
        host_cmd()
            .args(["--threads", "2", "--config"])
            .arg(&cfg)
            .arg(format!("{}@a", plugin("ticker").display()))
            .arg(format!("{}@b", plugin("ticker").display()))
            .args(["--", "--every", "1ms", "--count", "3"]),
    );
    let err = callop_tests::text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("thread=1").count(), 2, "{err}");
    // A pin past the thread count is an error naming it.
    std::fs::write(&cfg, "[plugins.a]\nthread = 2\n").unwrap();
    let out = callop_tests::run(
        host_cmd()
            .args(["--threads", "2", "--config"])
            .arg(&cfg)
            .arg(format!("{}@a", plugin("ticker").display())),
    );
    let err = callop_tests::text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("thread 2"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
