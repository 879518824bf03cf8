//! `init` fails the same way on a first load and on a restart: the first
//! load returns the error, and the restart — which has no caller — records
//! an `ExitReason::Trapped` whose cause is the first line of that same error
//! (both go through the host's one guest-call funnel; see `host/call.rs`).

use std::time::{Duration, Instant};

use callop::EventLoop;
use callop_plugin_host::{
    ExitReason, Host, HostConfig, Limits, LoadError, PluginExit, RestartPolicy,
};
use callop_tests::{args, config, plugin};

/// One restart allowed: the restart's failure then quarantines the plugin.
fn one_restart() -> HostConfig {
    HostConfig {
        restart: RestartPolicy::OnFailure {
            max_restarts: 1,
            period: Duration::from_secs(60),
        },
        ..config()
    }
}

/// The first line of a load error: what a restart reports as its cause.
fn first_line(e: &LoadError) -> String {
    e.to_string().lines().next().unwrap().to_string()
}

/// Loads `faulty --mode trap` (its first run traps in a callback), calls
/// `before_restart` once that failure is reported (the restart is still
/// pending), and runs until the plugin is gone; returns every exit.
fn trap_then_restart(
    host_cfg: HostConfig,
    before_restart: impl Fn(&Host<'_, ()>),
) -> Vec<PluginExit> {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), host_cfg).unwrap();
    let _rx = host.app_channel("faulty").unwrap();
    host.load_file(
        plugin("faulty"),
        "faulty",
        &args(&["--mode", "trap", "--notify", "@app/faulty"]),
    )
    .unwrap();
    let start = Instant::now();
    let mut changed = false;
    while !host.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{:?}",
            host.exits()
        );
        ev.dispatch(Some(Duration::from_millis(50)), &mut ())
            .unwrap();
        if !changed && !host.exits().is_empty() {
            before_restart(&host);
            changed = true;
        }
    }
    host.exits()
}

/// Asserts the restart's exit (the second one) reports `want` as its cause,
/// followed by the quarantine if `quarantined` (a failure to instantiate
/// is reported without applying the restart policy again).
fn assert_restart_failed_with<'a>(
    exits: &'a [PluginExit],
    want: &str,
    quarantined: bool,
) -> &'a PluginExit {
    let reasons: Vec<&ExitReason> = exits.iter().map(|e| &e.reason).collect();
    assert_eq!(exits.len(), 2 + quarantined as usize, "{reasons:?}");
    assert!(
        matches!(exits[0].reason, ExitReason::Trapped(_)),
        "{reasons:?}"
    );
    assert_eq!(exits[1].reason, ExitReason::Trapped(want.to_string()));
    assert_eq!(exits[1].restarts, 1);
    if quarantined {
        assert!(
            matches!(exits[2].reason, ExitReason::Quarantined(_)),
            "{reasons:?}"
        );
    }
    &exits[1]
}

#[test]
fn an_init_error_is_the_same_cause_on_first_load_and_on_restart() {
    // First load: `--notify @app/faulty` names no endpoint, so init fails.
    let ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    let e = host
        .load_file(
            plugin("faulty"),
            "faulty",
            &args(&["--mode", "trap", "--notify", "@app/faulty"]),
        )
        .unwrap_err();
    assert!(matches!(e, LoadError::Init(_)), "{e}");
    assert!(
        e.to_string()
            .starts_with("plugin init failed: --notify @app/faulty"),
        "{e}"
    );
    // Restart: the endpoint existed for the first run, and is gone for the
    // restart's init.
    let exits = trap_then_restart(one_restart(), |h| {
        assert!(h.close_app_channel("faulty"));
    });
    let restart = assert_restart_failed_with(&exits, &first_line(&e), true);
    assert_eq!(restart.fault, None, "an init error is no fault");
}

#[test]
fn a_deadline_while_starting_is_the_same_cause_on_first_load_and_on_restart() {
    // A zero init budget (it covers instantiation and `init`) interrupts
    // the component's start code at its first epoch check: a deadline
    // fault, deterministically, before `init` could run.
    let no_init_time = Limits {
        init_timeout: Some(Duration::ZERO),
        ..Limits::default()
    };
    let ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(
        ev.handle(),
        HostConfig {
            limits: no_init_time.clone(),
            ..config()
        },
    )
    .unwrap();
    let e = host
        .load_file(plugin("faulty"), "faulty", &args(&["--mode", "trap"]))
        .unwrap_err();
    assert!(matches!(e, LoadError::Instantiate(_)), "{e}");
    assert!(e.to_string().contains("interrupt"), "{e}");
    let exits = trap_then_restart(one_restart(), |h| {
        h.set_limits("faulty", no_init_time.clone())
    });
    assert_restart_failed_with(&exits, &first_line(&e), false);
}
