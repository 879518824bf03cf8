//! Reloading a running plugin (`Host::reload`, `callop-host --watch`,
//! SIGHUP): under a flood of 100,000 messages from another plugin every
//! message is delivered exactly once across the swap, the state handoff
//! continues the count, a broken new version leaves the old one running,
//! and a reload during a shutdown is refused. Named pings are handed over
//! (the handles others hold keep working, a pending ping is not lost), a
//! new version failing after the swap is restarted by the plugin's policy,
//! and a failed `snapshot` (too big, a trap) fails the reload as the docs
//! say.
//!
//! The counter and the flood are the two roles of the `reload-counter`
//! example plugin: each message is a sequence number, the counter checks
//! that each one follows the previous (`errors` counts gaps, duplicates and
//! reorders) and reports on `@app/counter`.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::rc::Rc;
use std::time::{Duration, Instant};

use callop::EventLoop;
use callop::channel::Event;
use callop_plugin_host::{
    ExitReason, Host, Limits, LoadError, PluginId, PluginSpec, ReloadError, RestartPolicy,
};
use callop_tests::{args, config, host_cmd, plugin, send_signal, wait_exit};

const N: u64 = 100_000;

/// A loop, a host, the counter's report channel (its lines) and the two
/// plugins: `counter` (with `counter_args`) and `flood` sending N numbers.
struct Setup {
    ev: EventLoop<'static, ()>,
    host: Host<'static, ()>,
    lines: Rc<RefCell<Vec<String>>>,
    counter: PluginId,
}

/// The lines the plugins send to the application endpoint `@app/counter`.
fn counter_lines(
    ev: &EventLoop<'static, ()>,
    host: &Host<'static, ()>,
) -> Rc<RefCell<Vec<String>>> {
    let lines = Rc::new(RefCell::new(Vec::new()));
    let l2 = lines.clone();
    ev.handle()
        .insert_source(host.app_channel("counter").unwrap(), move |e, _, _| {
            if let Event::Msg(m) = e {
                l2.borrow_mut().push(String::from_utf8(m).unwrap());
            }
        })
        .unwrap();
    lines
}

fn setup(counter_args: &[&str], per_tick: u64) -> Setup {
    setup_with(counter_args, per_tick, |_| {})
}

/// [`setup`], calling `before` (per-instance limits, restart policies)
/// before the plugins are loaded.
fn setup_with(
    counter_args: &[&str],
    per_tick: u64,
    before: impl FnOnce(&Host<'static, ()>),
) -> Setup {
    let ev: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    before(&host);
    let lines = counter_lines(&ev, &host);
    let c = host.compile_file(plugin("reload-counter")).unwrap();
    let mut cargs = args(&["--notify", "@app/counter", "--progress", "5000"]);
    cargs.extend(args(counter_args));
    let n = N.to_string();
    let pt = per_tick.to_string();
    let fargs = args(&["--role", "flood", "--count", &n, "--per-tick", &pt]);
    let ids = host
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
    let counter = *ids[0].as_ref().unwrap();
    ids[1].as_ref().unwrap();
    Setup {
        ev,
        host,
        lines,
        counter,
    }
}

impl Setup {
    /// Dispatches until the counter reported at least `count` messages.
    fn run_until_count(&mut self, count: u64) {
        self.run_until(&format!("progress to {count}"), |lines| {
            lines.iter().any(|l| {
                l.strip_prefix("counter: progress ")
                    .and_then(|r| field(r, "count"))
                    .is_some_and(|c| c >= count)
            })
        });
    }

    /// Dispatches until `reached` holds for the lines so far (`what` it
    /// waits for, for the panic after 60 s).
    fn run_until(&mut self, what: &str, reached: impl Fn(&[String]) -> bool) {
        let start = Instant::now();
        while !reached(&self.lines.borrow()) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no {what}: {:?}",
                self.lines.borrow()
            );
            self.ev
                .dispatch(Some(Duration::from_millis(100)), &mut ())
                .unwrap();
        }
    }

    /// Dispatches for `d`.
    fn run_for(&mut self, d: Duration) {
        let start = Instant::now();
        while start.elapsed() < d {
            self.ev
                .dispatch(Some(Duration::from_millis(10)), &mut ())
                .unwrap();
        }
    }

    /// The counter's ping reports so far: (generation, pings).
    fn pings(&self) -> Vec<(u64, u64)> {
        self.lines
            .borrow()
            .iter()
            .filter_map(|l| l.strip_prefix("counter: ping "))
            .map(|r| (field(r, "generation").unwrap(), field(r, "pings").unwrap()))
            .collect()
    }

    /// Dispatches until the counter reported exactly `expected` ping
    /// events, then a little longer to see that no other comes.
    fn expect_pings(&mut self, expected: &[(u64, u64)]) {
        self.run_until(&format!("pings {expected:?}"), |lines| {
            lines
                .iter()
                .filter(|l| l.starts_with("counter: ping "))
                .count()
                >= expected.len()
        });
        self.run_for(Duration::from_millis(50));
        assert_eq!(self.pings(), expected);
    }

    /// Dispatches until both plugins ended; returns the counter's lines
    /// (without the progress reports).
    fn finish(&mut self) -> Vec<String> {
        callop_tests::run_until_empty(&mut self.ev, &self.host, &mut (), Duration::from_secs(60));
        // The last report may still be in the app channel.
        self.ev
            .dispatch(Some(Duration::from_millis(10)), &mut ())
            .unwrap();
        self.lines
            .borrow()
            .iter()
            .filter(|l| !l.contains("progress"))
            .cloned()
            .collect()
    }
}

/// The value of `key=` in a report line.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

fn line<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    let found: Vec<&String> = lines.iter().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(found.len(), 1, "one `{prefix}` line expected: {lines:?}");
    found[0]
}

#[test]
fn a_reload_under_a_flood_delivers_every_message_exactly_once() {
    let mut s = setup(&[], 1000);
    s.run_until_count(30_000);
    let c = s.host.compile_file(plugin("reload-counter")).unwrap();
    s.host.reload(s.counter, &c).unwrap();
    assert_eq!(s.host.reloads(s.counter), Some(1));
    let lines = s.finish();
    // The old instance counted `a` (0..a), the new one the rest (a..N),
    // starting fresh (no state handed over).
    let old = line(&lines, "counter: shutdown ");
    let a = field(old, "count").unwrap();
    assert_eq!(field(old, "next"), Some(a), "{old}");
    assert!((30_000..N).contains(&a), "{old}");
    let done = line(&lines, "counter: done ");
    assert_eq!(field(done, "gen"), Some(1), "fresh start: {done}");
    assert_eq!(field(done, "count"), Some(N - a), "{done}");
    assert_eq!(field(done, "first"), Some(a), "{done}");
    assert_eq!(field(done, "next"), Some(N), "{done}");
    assert_eq!(field(done, "errors"), Some(0), "{done}");
    let exits = s.host.exits();
    let e = exits.iter().find(|e| e.name == "counter").unwrap();
    assert_eq!(
        (e.id, &e.reason, e.reloads),
        (s.counter, &ExitReason::Stopped(0), 1)
    );
}

#[test]
fn with_state_handoff_the_count_continues_across_reloads() {
    let mut s = setup(&["--state"], 500);
    let c = s.host.compile_file(plugin("reload-counter")).unwrap();
    for at in [20_000, 50_000] {
        s.run_until_count(at);
        s.host.reload(s.counter, &c).unwrap();
    }
    assert_eq!(s.host.reloads(s.counter), Some(2));
    let lines = s.finish();
    let done = line(&lines, "counter: done ");
    assert_eq!(field(done, "gen"), Some(3), "two handoffs: {done}");
    assert_eq!(field(done, "count"), Some(N), "{done}");
    assert_eq!(field(done, "first"), Some(0), "{done}");
    assert_eq!(field(done, "errors"), Some(0), "{done}");
    // Each old instance's shutdown ran once, after its snapshot.
    let shutdowns: Vec<&String> = lines.iter().filter(|l| l.contains("shutdown")).collect();
    assert_eq!(shutdowns.len(), 2, "{lines:?}");
}

#[test]
fn a_broken_new_version_leaves_the_old_one_running() {
    let mut s = setup(&["--state", "--trap-if-restored"], 500);
    s.run_until_count(10_000);
    // Trap in init: this counter traps when it is handed a state.
    let c = s.host.compile_file(plugin("reload-counter")).unwrap();
    let e = s.host.reload(s.counter, &c).unwrap_err();
    assert!(
        matches!(&e, ReloadError::Init(m) if m.contains("trap")),
        "{e}"
    );
    s.run_until_count(20_000);
    // Not wasm.
    let e = s
        .host
        .reload_bytes(s.counter, b"#!/bin/sh\necho hi\n")
        .unwrap_err();
    assert!(
        matches!(e, ReloadError::Load(LoadError::NotWasm { .. })),
        "{e}"
    );
    // The wrong world: a component exporting nothing.
    let empty = wat::parse_str("(component)").unwrap();
    let e = s.host.reload_bytes(s.counter, &empty).unwrap_err();
    assert!(matches!(&e, ReloadError::Load(LoadError::World(_))), "{e}");
    // A missing file.
    let e = s
        .host
        .reload_file(s.counter, "/nonexistent/counter.wasm")
        .unwrap_err();
    assert!(matches!(e, ReloadError::Load(_)), "{e}");
    s.run_until_count(30_000);
    // Another plugin whose init refuses the counter's arguments.
    let faulty = s.host.compile_file(plugin("faulty")).unwrap();
    let e = s.host.reload(s.counter, &faulty).unwrap_err();
    assert!(matches!(e, ReloadError::Init(_)), "{e}");
    assert_eq!(s.host.reloads(s.counter), Some(0));
    let lines = s.finish();
    // The old instance got everything, once, and was never shut down.
    let done = line(&lines, "counter: done ");
    assert_eq!(field(done, "gen"), Some(1), "{done}");
    assert_eq!(field(done, "count"), Some(N), "{done}");
    assert_eq!(field(done, "errors"), Some(0), "{done}");
    assert!(!lines.iter().any(|l| l.contains("shutdown")), "{lines:?}");
}

#[test]
fn a_reload_during_shutdown_is_refused() {
    let mut s = setup(&["--state"], 100);
    s.run_until_count(5000);
    let c = s.host.compile_file(plugin("reload-counter")).unwrap();
    s.host.shutdown(Duration::from_secs(5));
    let e = s.host.reload(s.counter, &c).unwrap_err();
    assert!(matches!(e, ReloadError::ShuttingDown), "{e}");
    let lines = s.finish();
    // The counter's own shutdown ran once; nothing was reloaded.
    let old = line(&lines, "counter: shutdown ");
    assert_eq!(field(old, "gen"), Some(1), "{old}");
    let exits = s.host.exits();
    assert!(exits.iter().all(|e| e.reloads == 0), "{exits:?}");
    // Still refused once every plugin ended.
    let e = s.host.reload(s.counter, &c).unwrap_err();
    assert!(matches!(e, ReloadError::ShuttingDown), "{e}");
}

#[test]
fn an_ended_plugin_is_not_found() {
    let mut ev: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    let c = host.compile_file(plugin("reload-counter")).unwrap();
    let id = host
        .load(
            &c,
            "flood",
            &args(&["--role", "flood", "--to", "flood/x", "--count", "1"]),
        )
        .unwrap();
    callop_tests::run_until_empty(&mut ev, &host, &mut (), Duration::from_secs(20));
    let e = host.reload(id, &c).unwrap_err();
    assert!(matches!(e, ReloadError::NotFound(i) if i == id), "{e}");
    assert_eq!(host.reloads(id), None);
}

/// `src` with a custom section appended: the same plugin, other bytes (a
/// "rebuilt" file).
fn rebuilt(src: &Path, tag: &str) -> Vec<u8> {
    let mut b = std::fs::read(src).unwrap();
    let name = format!("callop-test-{tag}");
    let payload = [name.len() as u8]
        .into_iter()
        .chain(name.bytes())
        .chain(*b"rebuilt")
        .collect::<Vec<u8>>();
    assert!(payload.len() < 128);
    b.push(0); // custom section
    b.push(payload.len() as u8);
    b.extend(payload);
    b
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("callop-reload-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `callop-host` with a counter (`--state`) at `path` and a slow
/// flood (about 4 s; `--state` too, so that a SIGHUP reloading it as well
/// goes on where it was), lets `trigger` change something once the counter is
/// running, and returns (status, stdout, stderr).
fn cli_run(
    extra: &[&str],
    path: &Path,
    trigger: impl FnOnce(&std::process::Child),
) -> (Option<i32>, String, String) {
    let flood = plugin("reload-counter");
    let mut child = host_cmd()
        .args(extra)
        .arg(format!("{}@counter=--state", path.display()))
        .arg(format!(
            "{}@flood=--role,flood,--state,--count,{N},--per-tick,25,--every,1",
            flood.display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run callop-host");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for l in BufReader::new(stderr).lines() {
            let l = l.unwrap();
            let _ = tx.send(l.clone());
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    // Both plugins started: the flood is under way.
    let start = Instant::now();
    let mut started = 0;
    while started < 2 {
        let l = rx
            .recv_timeout(Duration::from_secs(60).saturating_sub(start.elapsed()))
            .expect("plugins did not start");
        if l.contains("plugin started") {
            started += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    trigger(&child);
    let status = wait_exit(&mut child, Duration::from_secs(90), "callop-host");
    let err = reader.join().unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (status.code(), out, err)
}

#[test]
fn watch_reloads_a_rebuilt_file_and_the_count_continues() {
    let dir = temp_dir("watch");
    let path = dir.join("counter.wasm");
    std::fs::copy(plugin("reload-counter"), &path).unwrap();
    let v2 = rebuilt(&plugin("reload-counter"), "v2");
    let (code, out, err) = cli_run(&["--watch"], &path, |_| {
        // As a build does it: write elsewhere, then copy over the file.
        std::fs::write(dir.join("new.wasm"), &v2).unwrap();
        std::fs::copy(dir.join("new.wasm"), &path).unwrap();
    });
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(err.contains("changed"), "{err}");
    assert!(err.contains("plugin reloaded"), "{err}");
    let lines: Vec<String> = out
        .lines()
        .map(|l| l.trim_start_matches("[counter] ").to_string())
        .collect();
    let done = line(&lines, "counter: done ");
    assert_eq!(field(done, "gen"), Some(2), "one handoff: {out}\n{err}");
    assert_eq!(field(done, "count"), Some(N), "{done}");
    assert_eq!(field(done, "errors"), Some(0), "{done}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_reloads_every_plugin_and_a_broken_file_changes_nothing() {
    let dir = temp_dir("hup");
    let path = dir.join("counter.wasm");
    std::fs::copy(plugin("reload-counter"), &path).unwrap();
    let (code, out, err) = cli_run(&[], &path, |child| {
        send_signal(child, "HUP");
        std::thread::sleep(Duration::from_millis(500));
        // A file that is not wasm: the reload fails, the plugins keep running.
        std::fs::write(&path, b"not wasm").unwrap();
        send_signal(child, "HUP");
    });
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(err.contains("SIGHUP: reloading every plugin"), "{err}");
    assert!(err.contains("reload failed"), "{err}");
    let lines: Vec<String> = out
        .lines()
        .map(|l| l.trim_start_matches("[counter] ").to_string())
        .collect();
    let done = line(&lines, "counter: done ");
    assert_eq!(field(done, "gen"), Some(2), "{out}\n{err}");
    assert_eq!(field(done, "count"), Some(N), "{done}");
    assert_eq!(field(done, "errors"), Some(0), "{done}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_counter_without_reports_gets_the_whole_flood_across_a_reload() {
    let mut ev: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    let c = host.compile_file(plugin("reload-counter")).unwrap();
    let n = N.to_string();
    let cargs = args(&["--state"]);
    let fargs = args(&["--role", "flood", "--count", &n, "--per-tick", "100"]);
    let ids = host
        .load_many_supervised(&[
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
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(300) {
        ev.dispatch(Some(Duration::from_millis(10)), &mut ())
            .unwrap();
    }
    host.reload(ids[0], &c).unwrap();
    callop_tests::run_until_empty(&mut ev, &host, &mut (), Duration::from_secs(60));
    let exits = host.exits();
    assert!(
        exits
            .iter()
            .all(|e| e.reason == ExitReason::Stopped(0) || e.reason == ExitReason::Finished),
        "{exits:?}"
    );
}

#[test]
fn named_pings_are_handed_over_and_a_pending_ping_is_not_lost() {
    let ev: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    let lines = counter_lines(&ev, &host);
    let c = host.compile_file(plugin("reload-counter")).unwrap();
    let counter = host
        .load(
            &c,
            "counter",
            &args(&["--notify", "@app/counter", "--ping", "p"]),
        )
        .unwrap();
    // Another plugin holding a `connect-ping` handle of `counter/p`, which it
    // triggers once per message on its channel `in`.
    host.load(&c, "pinger", &args(&["--role", "pinger"]))
        .unwrap();
    let app_ping = host.ping("counter/p").unwrap();
    let pinger = host.sender("pinger/in").unwrap();
    let mut s = Setup {
        ev,
        host,
        lines,
        counter,
    };
    // Both handles wake the first instance (generation 0).
    app_ping.ping();
    s.expect_pings(&[(0, 1)]);
    pinger.send(b"go".to_vec()).unwrap();
    s.expect_pings(&[(0, 1), (0, 2)]);

    // A failed reload: the old instance keeps its ping, and a ping
    // triggered before the reload and not yet dispatched goes to it.
    app_ping.ping();
    let faulty = s.host.compile_file(plugin("faulty")).unwrap();
    let e = s.host.reload(counter, &faulty).unwrap_err();
    assert!(matches!(e, ReloadError::Init(_)), "{e}");
    s.expect_pings(&[(0, 1), (0, 2), (0, 3)]);
    pinger.send(b"go".to_vec()).unwrap();
    s.expect_pings(&[(0, 1), (0, 2), (0, 3), (0, 4)]);

    // A committed reload. No loop iteration runs between this ping and the
    // commit: it is still pending in the ping's loop source while the host
    // holds the ping and the new version starts. It reaches the new
    // instance (generation 1), once, and not the old one.
    app_ping.ping();
    s.host.reload(counter, &c).unwrap();
    assert_eq!(s.host.reloads(counter), Some(1));
    let mut expected = vec![(0, 1), (0, 2), (0, 3), (0, 4), (1, 1)];
    s.expect_pings(&expected);
    // The handles got before the reload wake the new instance: the
    // application's, the other plugin's, and `Host::ping` gives the same.
    app_ping.ping();
    expected.push((1, 2));
    s.expect_pings(&expected);
    pinger.send(b"go".to_vec()).unwrap();
    expected.push((1, 3));
    s.expect_pings(&expected);
    s.host.ping("counter/p").unwrap().ping();
    expected.push((1, 4));
    s.expect_pings(&expected);

    // Both end normally.
    pinger.send(Vec::new()).unwrap();
    s.host
        .sender("counter/in")
        .unwrap()
        .send(Vec::new())
        .unwrap();
    let lines = s.finish();
    let done = line(&lines, "counter: done ");
    assert_eq!(field(done, "count"), Some(0), "{done}");
    let exits = s.host.exits();
    assert_eq!(exits.len(), 2, "{exits:?}");
    for e in &exits {
        assert_eq!(e.reason, ExitReason::Stopped(0), "{exits:?}");
        assert_eq!(e.reloads, u32::from(e.id == counter), "{exits:?}");
    }
}

/// Loads `keeper`, a pinger of `counter/p` that also holds a sender to
/// `@app/counter` until it gets an empty message on the returned sender:
/// the endpoint stays open while the counter ends and is restarted (it
/// reports `Closed` once every sender to it is gone).
fn load_keeper(
    host: &Host<'static, ()>,
    c: &callop_plugin_host::PluginComponent,
) -> callop_plugin_host::AppSender {
    host.load(
        c,
        "keeper",
        &args(&["--role", "pinger", "--notify", "@app/counter"]),
    )
    .unwrap();
    host.sender("keeper/in").unwrap()
}

#[test]
fn a_new_version_failing_after_the_reload_is_restarted_by_its_policy() {
    let ev: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    host.set_restart_policy(
        Some("counter"),
        RestartPolicy::OnFailure {
            max_restarts: 1,
            period: Duration::from_secs(60),
        },
    );
    let lines = counter_lines(&ev, &host);
    let c = host.compile_file(plugin("reload-counter")).unwrap();
    // Traps 30 ms after `init` in any run but the first.
    let counter = host
        .load(
            &c,
            "counter",
            &args(&[
                "--notify",
                "@app/counter",
                "--ping",
                "p",
                "--trap-after-ms",
                "30",
            ]),
        )
        .unwrap();
    let keeper = load_keeper(&host, &c);
    let mut s = Setup {
        ev,
        host,
        lines,
        counter,
    };
    s.run_for(Duration::from_millis(200));
    assert!(
        s.lines.borrow().is_empty(),
        "the first run is healthy: {:?}",
        s.lines.borrow()
    );
    s.host.reload(counter, &c).unwrap();
    let start = Instant::now();
    while !s
        .host
        .exits()
        .iter()
        .any(|e| matches!(e.reason, ExitReason::Quarantined(_)))
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{:?}",
            s.host.exits()
        );
        s.run_for(Duration::from_millis(10));
    }
    keeper.send(Vec::new()).unwrap();
    callop_tests::run_until_empty(&mut s.ev, &s.host, &mut (), Duration::from_secs(60));
    s.run_for(Duration::from_millis(10));
    // The reloaded run (generation 1) traps, the policy restarts it
    // (generation 2: one restart, one reload before it), it traps again
    // and, its one restart used, is quarantined.
    let exits: Vec<_> = s
        .host
        .exits()
        .into_iter()
        .filter(|e| e.id == counter)
        .collect();
    let traps: Vec<String> = s
        .lines
        .borrow()
        .iter()
        .filter(|l| l.contains("trap"))
        .cloned()
        .collect();
    assert_eq!(
        traps,
        ["counter: trap generation=1", "counter: trap generation=2"],
        "{exits:?}"
    );
    let summary: Vec<(&str, u32, u32)> = exits
        .iter()
        .map(|e| {
            let kind = match &e.reason {
                ExitReason::Trapped(_) => "trapped",
                ExitReason::Quarantined(_) => "quarantined",
                _ => "other",
            };
            (kind, e.restarts, e.reloads)
        })
        .collect();
    assert_eq!(
        summary,
        [("trapped", 0, 1), ("trapped", 1, 1), ("quarantined", 1, 1)],
        "{exits:?}"
    );
    assert!(exits.iter().all(|e| e.name == "counter"));
}

#[test]
fn a_snapshot_over_the_host_memory_budget_fails_the_reload() {
    let budget = 1 << 20;
    let mut s = setup_with(
        &["--state", "--snapshot-bytes", &(2 * budget).to_string()],
        500,
        |h| {
            h.set_limits(
                "counter",
                Limits {
                    max_host_memory_bytes: budget,
                    ..Limits::default()
                },
            )
        },
    );
    s.run_until_count(10_000);
    let c = s.host.compile_file(plugin("reload-counter")).unwrap();
    let e = s.host.reload(s.counter, &c).unwrap_err();
    assert!(
        matches!(&e, ReloadError::Snapshot(m) if m.contains(&format!("a snapshot of {} bytes does not fit", 2 * budget))),
        "{e}"
    );
    assert_eq!(s.host.reloads(s.counter), Some(0));
    // The old instance goes on with its count: every message, once, and it
    // was never shut down.
    let lines = s.finish();
    let done = line(&lines, "counter: done ");
    assert_eq!(field(done, "gen"), Some(1), "{done}");
    assert_eq!(field(done, "count"), Some(N), "{done}");
    assert_eq!(field(done, "errors"), Some(0), "{done}");
    assert!(!lines.iter().any(|l| l.contains("shutdown")), "{lines:?}");
}

#[test]
fn a_trap_in_snapshot_ends_the_old_instance_under_its_restart_policy() {
    let ev: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    host.set_restart_policy(
        Some("counter"),
        RestartPolicy::OnFailure {
            max_restarts: 1,
            period: Duration::from_secs(60),
        },
    );
    let lines = counter_lines(&ev, &host);
    let c = host.compile_file(plugin("reload-counter")).unwrap();
    let counter = host
        .load(
            &c,
            "counter",
            &args(&[
                "--notify",
                "@app/counter",
                "--ping",
                "p",
                "--state",
                "--trap-in-snapshot",
            ]),
        )
        .unwrap();
    let keeper = load_keeper(&host, &c);
    let mut s = Setup {
        ev,
        host,
        lines,
        counter,
    };
    let to_counter = s.host.sender("counter/in").unwrap();
    for i in 0..3u64 {
        to_counter.send(i.to_le_bytes().to_vec()).unwrap();
    }
    s.run_for(Duration::from_millis(50));
    let e = s.host.reload(counter, &c).unwrap_err();
    assert!(
        matches!(&e, ReloadError::Snapshot(m) if m.contains("unreachable") && m.contains("the plugin ended")),
        "{e}"
    );
    // It ended as `Trapped`, not reloaded, and its policy restarts it with
    // its (old) code, starting afresh: generation 1, a restart.
    let exits = s.host.exits();
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert!(
        matches!(&exits[0].reason, ExitReason::Trapped(m) if m.contains("unreachable")),
        "{exits:?}"
    );
    assert_eq!(
        (exits[0].id, exits[0].restarts, exits[0].reloads),
        (counter, 0, 0)
    );
    let start = Instant::now();
    while !s.host.plugins().iter().any(|(id, _)| *id == counter) {
        assert!(start.elapsed() < Duration::from_secs(60), "not restarted");
        s.run_for(Duration::from_millis(10));
    }
    assert_eq!(s.host.reloads(counter), Some(0));
    let to_counter = s.host.sender("counter/in").unwrap();
    to_counter.send(7u64.to_le_bytes().to_vec()).unwrap();
    to_counter.send(Vec::new()).unwrap();
    keeper.send(Vec::new()).unwrap();
    let lines = s.finish();
    // The restart starts afresh (no state: that was in the failed snapshot).
    let done = line(&lines, "counter: done ");
    assert_eq!(
        (
            field(done, "gen"),
            field(done, "count"),
            field(done, "first")
        ),
        (Some(1), Some(1), Some(7)),
        "{done}"
    );
    let exits: Vec<_> = s
        .host
        .exits()
        .into_iter()
        .filter(|e| e.id == counter)
        .collect();
    assert_eq!(exits.len(), 2, "{exits:?}");
    assert_eq!(exits[1].reason, ExitReason::Stopped(0), "{exits:?}");
    assert_eq!(
        (exits[1].id, exits[1].restarts, exits[1].reloads),
        (counter, 1, 0)
    );
}
