//! End-to-end tests of the embedding API with the example plugins.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use callop::EventLoop;
use callop::channel::Event;
use callop_plugin_host::{ExitReason, Host, HostConfig, Limits, LoadError, PluginSpec};
use callop_tests::{args, config, plugin, run_until_empty};

#[test]
fn relay_answers_every_app_message_in_order_then_ends_on_close() {
    let mut ev: EventLoop<Vec<Vec<u8>>> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    let out = host.app_channel("out").unwrap();
    ev.handle()
        .insert_source(out, |e, _, got: &mut Vec<Vec<u8>>| {
            if let Event::Msg(m) = e {
                got.push(m)
            }
        })
        .unwrap();
    let id = host
        .load_file(plugin("relay"), "relay", &args(&["--prefix", "re:"]))
        .unwrap();
    let tx = host.sender("relay/in").unwrap();
    for i in 0..200 {
        tx.send(format!("m{i}").into_bytes()).unwrap();
    }
    drop(tx); // the relay sees `closed` and ends
    let mut got = Vec::new();
    run_until_empty(&mut ev, &host, &mut got, Duration::from_secs(20));
    // Replies sent in the relay's last dispatch may still be in flight.
    for _ in 0..3 {
        ev.dispatch(Some(Duration::ZERO), &mut got).unwrap();
    }
    let want: Vec<Vec<u8>> = (0..200).map(|i| format!("re:m{i}").into_bytes()).collect();
    assert_eq!(got, want);
    let exits = host.exits();
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0].id, id);
    assert_eq!(exits[0].reason, ExitReason::Finished);
}

#[test]
fn ping_pong_siblings_finish() {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    let c = host.compile_file(plugin("ping-pong")).unwrap();
    let a1 = args(&["--role", "ping", "--count", "500"]);
    let a2 = args(&["--role", "pong"]);
    let r = host
        .load_many(&[
            PluginSpec {
                component: &c,
                name: "ping",
                args: &a1,
            },
            PluginSpec {
                component: &c,
                name: "pong",
                args: &a2,
            },
        ])
        .unwrap();
    assert!(r.iter().all(|r| r.is_ok()));
    run_until_empty(&mut ev, &host, &mut (), Duration::from_secs(30));
    let exits = host.exits();
    assert_eq!(exits.len(), 2);
    assert!(
        exits.iter().all(|e| e.reason == ExitReason::Finished),
        "{exits:?}"
    );
}

#[test]
fn ticker_never_fires_early() {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    let c = host.compile_file(plugin("ticker")).unwrap();
    let start = Instant::now();
    host.load(&c, "ticker", &args(&["--every", "30ms", "--count", "4"]))
        .unwrap();
    run_until_empty(&mut ev, &host, &mut (), Duration::from_secs(20));
    assert!(
        start.elapsed() >= Duration::from_millis(120),
        "4 ticks of 30ms took only {:?}",
        start.elapsed()
    );
    assert_eq!(host.exits()[0].reason, ExitReason::Finished);
}

#[test]
fn a_periodic_timer_keeps_one_loop_registration_and_never_fires_early() {
    let mut ev: EventLoop<Vec<Instant>> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    let ticks = host.app_channel("ticks").unwrap();
    ev.handle()
        .insert_source(ticks, |e, _, got: &mut Vec<Instant>| {
            if let Event::Msg(_) = e {
                got.push(Instant::now())
            }
        })
        .unwrap();
    let c = host.compile_file(plugin("ticker")).unwrap();
    let every = Duration::from_millis(20);
    let start = Instant::now();
    let id = host
        .load(
            &c,
            "ticker",
            &args(&["--every", "20ms", "--count", "6", "--notify", "@app/ticks"]),
        )
        .unwrap();
    let mut seen = HashSet::new();
    let mut got = Vec::new();
    let limit = start + Duration::from_secs(20);
    while !host.is_empty() {
        assert!(Instant::now() < limit, "the ticker did not finish");
        if let Some(regs) = host.source_registrations(id) {
            seen.extend(regs);
        }
        ev.dispatch(Some(Duration::from_millis(5)), &mut got)
            .unwrap();
    }
    for _ in 0..3 {
        ev.dispatch(Some(Duration::ZERO), &mut got).unwrap();
    }
    assert_eq!(
        seen.len(),
        1,
        "one loop registration for the timer's whole life: {seen:?}"
    );
    assert_eq!(got.len(), 6, "six ticks");
    for (k, at) in got.iter().enumerate() {
        let due = start + every * (k as u32 + 1);
        assert!(*at >= due, "tick {} came {:?} early", k + 1, due - *at);
    }
    assert_eq!(host.exits()[0].reason, ExitReason::Finished);
}

#[test]
fn selftest_and_idle_worker_pass() {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    // Compile first: the selftest's checks are timer based, so the loop must
    // not be blocked by a compilation between its init and its first dispatch.
    let st = host.compile_file(plugin("selftest")).unwrap();
    let iw = host.compile_file(plugin("idle-worker")).unwrap();
    host.load(&st, "selftest", &[]).unwrap();
    host.load(&iw, "worker", &args(&["--n", "100000", "--chunk", "1000"]))
        .unwrap();
    run_until_empty(&mut ev, &host, &mut (), Duration::from_secs(30));
    let exits = host.exits();
    assert_eq!(exits.len(), 2);
    assert!(
        exits.iter().all(|e| e.reason == ExitReason::Finished),
        "{exits:?}"
    );
}

#[test]
fn unload_removes_all_sources() {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    let id = host
        .load_file(
            plugin("ticker"),
            "t",
            &args(&["--every", "1ms", "--count", "1000000"]),
        )
        .unwrap();
    assert_eq!(host.source_count(id), Some(1));
    ev.dispatch(Some(Duration::from_millis(5)), &mut ())
        .unwrap();
    assert!(host.unload(id));
    assert!(!host.unload(id));
    assert!(host.is_empty());
    assert_eq!(host.source_count(id), None);
    // Nothing of the plugin fires any more.
    for _ in 0..5 {
        ev.dispatch(Some(Duration::from_millis(2)), &mut ())
            .unwrap();
    }
    assert_eq!(host.exits()[0].reason, ExitReason::Unloaded);
}

#[test]
fn shutdown_ends_plugins_gracefully() {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    let exits = Rc::new(RefCell::new(Vec::new()));
    let e2 = exits.clone();
    ev.handle()
        .insert_source(host.exit_events().unwrap(), move |e, _, _| {
            if let Event::Msg(x) = e {
                e2.borrow_mut().push(x)
            }
        })
        .unwrap();
    host.load_file(
        plugin("ticker"),
        "t",
        &args(&["--every", "10ms", "--count", "1000000"]),
    )
    .unwrap();
    host.load_file(plugin("relay"), "r", &[]).unwrap();
    ev.dispatch(Some(Duration::from_millis(20)), &mut ())
        .unwrap();
    host.shutdown(Duration::from_secs(5));
    run_until_empty(&mut ev, &host, &mut (), Duration::from_secs(10));
    ev.dispatch(Some(Duration::ZERO), &mut ()).unwrap();
    let got = exits.borrow();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.iter().all(|e| e.reason == ExitReason::Finished),
        "{got:?}"
    );
}

#[test]
fn init_error_and_duplicate_names() {
    let ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    let e = host
        .load_file(plugin("ticker"), "t", &args(&["--bogus"]))
        .unwrap_err();
    assert!(matches!(e, LoadError::Init(_)), "{e}");
    assert!(e.to_string().contains("unknown argument"), "{e}");
    assert!(host.is_empty());
    // The failed instance released its name.
    host.load_file(plugin("ticker"), "t", &[]).unwrap();
    let e = host.load_file(plugin("ticker"), "t", &[]).unwrap_err();
    assert!(e.to_string().contains("already running"), "{e}");
    let e = host
        .load_file(plugin("ticker"), "bad/name", &[])
        .unwrap_err();
    assert!(matches!(e, LoadError::Name(_)), "{e}");
}

#[test]
fn load_errors_have_clear_messages() {
    let ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), HostConfig::default()).unwrap();
    let e = host
        .load_file("/no/such/plugin.wasm", "x", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read `/no/such/plugin.wasm`"), "{e}");
    let e = host
        .load_bytes(b"hello world, not wasm", "x", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a WebAssembly binary"), "{e}");
    let core = wat::parse_str("(module)").unwrap();
    let e = host.load_bytes(&core, "x", &[]).unwrap_err().to_string();
    assert!(
        e.contains("core WebAssembly module, not a component"),
        "{e}"
    );
    let other = wat::parse_str(
        r#"(component (instance $g) (export "callop:plugin/guest@0.1.0" (instance $g)))"#,
    )
    .unwrap();
    let e = host.load_bytes(&other, "x", &[]).unwrap_err().to_string();
    assert!(
        e.contains("callop:plugin/guest@0.1.0") && e.contains("another version"),
        "{e}"
    );
    let empty = wat::parse_str("(component)").unwrap();
    let e = host.load_bytes(&empty, "x", &[]).unwrap_err().to_string();
    assert!(
        e.contains("missing export `callop:plugin/guest@0.3.0`"),
        "{e}"
    );
}

#[test]
fn callback_timeout_is_enforced_without_breaking_normal_plugins() {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let cfg = HostConfig {
        limits: Limits {
            callback_timeout: Some(Duration::from_millis(500)),
            ..Limits::default()
        },
        ..config()
    };
    let host = Host::new(ev.handle(), cfg).unwrap();
    host.load_file(
        plugin("ticker"),
        "t",
        &args(&["--every", "5ms", "--count", "3"]),
    )
    .unwrap();
    run_until_empty(&mut ev, &host, &mut (), Duration::from_secs(10));
    assert_eq!(host.exits()[0].reason, ExitReason::Finished);
}

#[test]
fn app_can_ping_named_pings_and_errors_for_unknown() {
    let ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    assert!(host.ping("nobody/p").is_err());
    assert!(host.ping("bad").is_err());
    assert!(host.sender("nobody/in").is_err());
    assert!(host.app_channel("out").is_ok());
    assert!(host.app_channel("out").is_err());
    assert!(host.close_app_channel("out"));
}

#[test]
fn pooling_allocator_runs_plugins() {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let mut cfg = config();
    cfg.engine.pooling_instances = Some(4);
    cfg.engine.pooling_max_memory = Some(64 << 20);
    cfg.limits.max_memory_bytes = 64 << 20;
    let host = Host::new(ev.handle(), cfg).unwrap();
    host.load_file(
        plugin("ticker"),
        "t",
        &args(&["--every", "1ms", "--count", "2"]),
    )
    .unwrap();
    run_until_empty(&mut ev, &host, &mut (), Duration::from_secs(10));
    assert_eq!(host.exits()[0].reason, ExitReason::Finished);
}
