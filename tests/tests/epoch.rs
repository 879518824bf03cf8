//! One epoch ticker per engine: hosts sharing a `PluginEngine` share one
//! ticker thread, and each still enforces its own callback deadline.
//!
//! Alone in its test binary, so that the thread count it reads from
//! `/proc/self/task` sees no other test's threads.

use std::time::{Duration, Instant};

use callop::EventLoop;
use callop_plugin_host::{ExitReason, FaultKind, Host, Limits, PluginEngine, Policy};
use callop_tests::{args, config, plugin};

/// Threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[cfg(target_os = "linux")]
#[test]
fn two_hosts_on_one_engine_share_one_ticker_and_both_enforce_their_deadline() {
    let engine = PluginEngine::new(&config().engine).unwrap();
    let faulty = engine.load_file(plugin("faulty")).unwrap();
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    // Compiled and with a loop: the threads of this process without a host.
    let before = threads();
    let host = |ms| {
        let limits = Limits {
            callback_timeout: Some(Duration::from_millis(ms)),
            ..Limits::default()
        };
        Host::with_engine(ev.handle(), engine.clone(), Policy::default(), limits).unwrap()
    };
    let (a, b) = (host(50), host(80));
    assert_eq!(threads(), before + 1, "one engine, one ticker thread");
    for h in [&a, &b] {
        h.load(&faulty, "spin", &args(&["--mode", "loop", "--after", "5"]))
            .unwrap();
    }
    let start = Instant::now();
    while !(a.is_empty() && b.is_empty()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "a spinning guest was never stopped"
        );
        ev.dispatch(Some(Duration::from_millis(20)), &mut ())
            .unwrap();
    }
    for (h, ms) in [(&a, 50), (&b, 80)] {
        let exits = h.exits();
        assert_eq!(exits.len(), 1, "{exits:?}");
        assert!(
            matches!(exits[0].reason, ExitReason::Trapped(_)),
            "{:?}",
            exits[0].reason
        );
        let fault = exits[0].fault.as_ref().unwrap();
        assert_eq!(fault.kind, FaultKind::Timeout, "{fault}");
        assert!(fault.message.contains(&format!("{ms}ms")), "{fault}");
    }
    // (Running plugins may have started other threads, e.g. for WASI.)
    let running = threads();
    drop(a);
    assert_eq!(
        threads(),
        running,
        "the ticker stopped while a host still uses it"
    );
    drop(b);
    assert_eq!(threads(), running - 1, "the ticker outlived its last host");
}
