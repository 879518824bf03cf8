//! A plugin that ends with `stop(code)` — inside `init` or inside a
//! callback — ends the host's run promptly, with its code: through the
//! library (a blocking `dispatch(None)` is woken) and through `callop-host`.
//!
//! Every wait is bounded by a watchdog so that a regression fails the test
//! instead of hanging it.

use std::io::Read;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use callop::EventLoop;
use callop_plugin_host::{ExitReason, Host, PluginExit};
use callop_tests::{args, config, host_cmd, plugin, wait_exit};

/// Generous: covers a cold compile of the plugin in a debug host.
const LIMIT: Duration = Duration::from_secs(120);

/// Runs `f` on its own thread; fails the test if it does not return in time
/// (the thread is then left blocked; the test binary exits anyway).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(v) => v,
        Err(_) => panic!("{what}: still blocked after {LIMIT:?} (the loop was never woken)"),
    }
}

#[test]
fn stop_in_init_wakes_a_blocking_dispatch() {
    let exits = within("dispatch(None) after a plugin stopped in init", || {
        let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
        let host = Host::new(ev.handle(), config()).unwrap();
        // The timer is armed (in an hour) when init stops: only the stop ends it.
        host.load_file(
            plugin("ticker"),
            "t",
            &args(&["--every", "3600s", "--stop-in-init", "3"]),
        )
        .unwrap();
        assert!(host.is_empty(), "the plugin is still alive after init");
        // The calloop `run` pattern: dispatch first, check afterwards.
        ev.dispatch(None, &mut ()).unwrap();
        host.exits()
    });
    assert_eq!(reasons(&exits), [ExitReason::Stopped(3)]);
}

#[test]
fn stop_in_a_callback_ends_a_run_loop() {
    let (exits, ticks) = within(
        "EventLoop::run with a plugin stopping in a callback",
        || {
            let mut ev: EventLoop<u32> = EventLoop::try_new().unwrap();
            let host = Host::new(ev.handle(), config()).unwrap();
            host.load_file(
                plugin("ticker"),
                "t",
                &args(&["--every", "5ms", "--count", "3", "--stop-at-end", "4"]),
            )
            .unwrap();
            let signal = ev.get_signal();
            let mut dispatches = 0;
            ev.run(None, &mut dispatches, |n| {
                *n += 1;
                if host.is_empty() {
                    signal.stop();
                }
            })
            .unwrap();
            (host.exits(), dispatches)
        },
    );
    assert_eq!(reasons(&exits), [ExitReason::Stopped(4)]);
    assert!(
        ticks >= 3,
        "the loop ran only {ticks} dispatches for 3 ticks"
    );
}

fn reasons(exits: &[PluginExit]) -> Vec<ExitReason> {
    exits.iter().map(|e| e.reason.clone()).collect()
}

/// Runs `callop-host` with a watchdog: kills it and fails after [`LIMIT`].
fn run_host(plugin_arg: String) -> (ExitStatus, String, String) {
    let mut child: Child = host_cmd()
        .arg(&plugin_arg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run callop-host");
    let status = wait_exit(&mut child, LIMIT, &format!("callop-host {plugin_arg}"));
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, out, err)
}

#[test]
fn cli_exits_with_the_code_of_a_stop_in_init() {
    let (status, out, err) = run_host(format!(
        "{}=--every,3600s,--stop-in-init,3",
        plugin("ticker").display()
    ));
    assert_eq!(status.code(), Some(3), "{err}");
    assert_eq!(out, "", "no tick expected");
    assert!(err.contains("stopped with code 3"), "{err}");
}

#[test]
fn cli_exits_with_the_code_of_a_stop_in_a_callback() {
    let (status, out, err) = run_host(format!(
        "{}=--every,5ms,--count,3,--stop-at-end,4",
        plugin("ticker").display()
    ));
    assert_eq!(status.code(), Some(4), "{err}");
    let want: String = (1..=3).map(|i| format!("[ticker] tick {i}\n")).collect();
    assert_eq!(out, want);
    assert!(err.contains("stopped with code 4"), "{err}");
}
