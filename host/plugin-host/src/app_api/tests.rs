use std::sync::{Arc, Mutex};

use callop::EventLoop;

use super::test_component;
use super::*;
use crate::{ExitReason, Host, HostConfig, PluginEngine};

wasmtime::component::bindgen!({
    inline: "
        package example:counter@1.0.0;
        interface counter { bump: func(n: u32) -> u32; }
        world imports { import counter; }
    ",
    imports: { default: trappable },
});

const WIT: &str = "package example:counter@1.0.0; interface counter { bump: func(n: u32) -> u32; }";
const IFACE: &str = "example:counter/counter@1.0.0";

type Log = Arc<Mutex<Vec<(String, u32, u32)>>>;

/// The per-plugin state: `bump(0)` is an error, `bump(99)` panics.
struct Counter {
    plugin: String,
    restarts: u32,
    log: Log,
}

impl example::counter::counter::Host for Counter {
    fn bump(&mut self, n: u32) -> wasmtime::Result<u32> {
        match n {
            0 => Err(wasmtime::format_err!("the counter refuses 0")),
            99 => panic!("the counter cannot count to 99"),
            n => {
                self.log
                    .lock()
                    .unwrap()
                    .push((self.plugin.clone(), self.restarts, n));
                Ok(n + 1)
            }
        }
    }
}

fn api(log: &Log) -> AppApi {
    let log = log.clone();
    AppApi::new().add(
        &[IFACE],
        |l| Imports::add_to_linker::<_, AppData<Counter>>(l, app_data::<Counter>),
        move |cx| Counter {
            plugin: cx.name().to_string(),
            restarts: cx.restarts(),
            log: log.clone(),
        },
    )
}

fn plugin(arg: u32) -> Vec<u8> {
    test_component::build(WIT, IFACE, "bump", arg)
}

fn granted() -> Capabilities {
    Capabilities::new().allow_app_interface(IFACE)
}

#[test]
fn each_granted_plugin_reaches_its_own_typed_state() {
    let log = Log::default();
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), HostConfig::default().with_app_api(api(&log))).unwrap();
    let c = host.engine().load_bytes(&plugin(7)).unwrap();
    assert_eq!(c.app_interfaces(), [IFACE]);
    host.grant("a", granted());
    // Versions are ignored in grants.
    host.grant(
        "b",
        Capabilities::new().allow_app_interface("example:counter/counter"),
    );
    host.load(&c, "a", &[]).unwrap();
    host.load(&c, "b", &[]).unwrap();
    while !host.is_empty() {
        ev.dispatch(None, &mut ()).unwrap();
    }
    assert_eq!(
        *log.lock().unwrap(),
        [("a".to_string(), 0, 7), ("b".to_string(), 0, 7)]
    );
    assert!(
        host.exits()
            .iter()
            .all(|e| e.reason == ExitReason::Finished)
    );
}

#[test]
fn a_plugin_importing_an_interface_not_granted_is_refused_naming_it() {
    let log = Log::default();
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), HostConfig::default().with_app_api(api(&log))).unwrap();
    let c = host.engine().load_bytes(&plugin(7)).unwrap();
    // Other grants do not grant it.
    host.grant(
        "x",
        Capabilities::new().allow_app_interface("example:counter/other"),
    );
    for name in ["x", "y"] {
        let e = host.load(&c, name, &[]).unwrap_err();
        assert!(matches!(&e, LoadError::NotGranted { interface, plugin }
            if interface == IFACE && plugin == name), "{e:?}");
        let m = e.to_string();
        assert!(
            m.contains(&format!("plugin `{name}` imports the application interface `{IFACE}`"))
                && m.contains("not granted"),
            "{m}"
        );
    }
    assert!(log.lock().unwrap().is_empty());
    assert!(host.is_empty() && host.plugins().is_empty());
    // The names are free again.
    host.grant("x", granted());
    host.load(&c, "x", &[]).unwrap();
    ev.dispatch(Some(std::time::Duration::ZERO), &mut ())
        .unwrap();
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[test]
fn an_error_in_an_app_function_is_the_plugins_fault() {
    let log = Log::default();
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), HostConfig::default().with_app_api(api(&log))).unwrap();
    let bad = host.engine().load_bytes(&plugin(0)).unwrap();
    host.grant("bad", granted());
    let e = host.load(&bad, "bad", &[]).unwrap_err().to_string();
    assert!(
        e.starts_with("plugin trapped in init: host error: ") && e.contains("the counter refuses 0"),
        "{e}"
    );
    // The host goes on: a healthy plugin loads and reaches its state.
    let good = host.engine().load_bytes(&plugin(3)).unwrap();
    host.grant("good", granted());
    host.load(&good, "good", &[]).unwrap();
    while !host.is_empty() {
        ev.dispatch(None, &mut ()).unwrap();
    }
    assert_eq!(*log.lock().unwrap(), [("good".to_string(), 0, 3)]);
}

#[test]
fn a_panic_in_an_app_function_is_the_plugins_fault_and_restarts_apply() {
    let log = Log::default();
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), HostConfig::default().with_app_api(api(&log))).unwrap();
    let bad = host.engine().load_bytes(&plugin(99)).unwrap();
    host.grant("bad", granted());
    let e = host.load(&bad, "bad", &[]).unwrap_err().to_string();
    assert!(
        e.contains("host error: a host function panicked: the counter cannot count to 99"),
        "{e}"
    );
    // Supervised, the failure is that plugin's exit and its restart policy
    // applies (each run gets a fresh state, told its restart count).
    host.set_restart_policy(
        Some("bad2"),
        "on-failure:2".parse().unwrap(),
    );
    host.grant("bad2", granted());
    let good = host.engine().load_bytes(&plugin(5)).unwrap();
    host.grant("good", granted());
    let ids = host
        .load_many_supervised(&[
            crate::PluginSpec {
                component: &bad,
                name: "bad2",
                args: &[],
            },
            crate::PluginSpec {
                component: &good,
                name: "good",
                args: &[],
            },
        ])
        .unwrap();
    let t0 = std::time::Instant::now();
    while !host.is_empty() {
        assert!(t0.elapsed() < std::time::Duration::from_secs(30));
        ev.dispatch(Some(std::time::Duration::from_millis(50)), &mut ())
            .unwrap();
    }
    let bad_exits: Vec<_> = host.exits().into_iter().filter(|x| x.id == ids[0]).collect();
    assert!(bad_exits.len() >= 2, "{bad_exits:?}");
    assert!(
        bad_exits.iter().any(|x| matches!(&x.reason, ExitReason::Trapped(c) if c.contains("a host function panicked"))),
        "{bad_exits:?}"
    );
    assert!(bad_exits.iter().any(|x| x.restarts > 0), "{bad_exits:?}");
    assert_eq!(*log.lock().unwrap(), [("good".to_string(), 0, 5)]);
}

#[test]
fn a_panicking_state_factory_fails_only_that_load() {
    let api = AppApi::new().add(
        &[IFACE],
        |l| Imports::add_to_linker::<_, AppData<Counter>>(l, app_data::<Counter>),
        |cx: &AppContext<'_>| -> Counter { panic!("no state for {}", cx.name()) },
    );
    let ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), HostConfig::default().with_app_api(api)).unwrap();
    let c = host.engine().load_bytes(&plugin(1)).unwrap();
    host.grant("p", granted());
    let e = host.load(&c, "p", &[]).unwrap_err().to_string();
    assert!(
        e.contains("cannot instantiate plugin: the application's state")
            && e.contains("panicked: no state for p"),
        "{e}"
    );
}

#[test]
fn an_app_interface_nobody_provides_is_a_link_error_naming_it() {
    let e = PluginEngine::new(&Default::default())
        .unwrap()
        .load_bytes(&plugin(1))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("cannot link plugin") && e.contains(IFACE), "{e}");
}

#[test]
fn registrations_are_checked_when_the_engine_is_built() {
    let bad = |names: &[&str]| {
        let api = AppApi::new().add(names, |_| Ok(()), |_| ());
        PluginEngine::new(&crate::EngineOptions {
            app_api: api,
            ..Default::default()
        })
        .unwrap_err()
        .to_string()
    };
    let e = bad(&["callop:plugin/host-loop@0.2.0"]);
    assert!(e.contains("which the host provides itself"), "{e}");
    let e = bad(&["wasi:cli/stdout"]);
    assert!(e.contains("which the host provides itself"), "{e}");
    let e = bad(&["no-package"]);
    assert!(e.contains("is not an interface name"), "{e}");
    let e = bad(&[]);
    assert!(e.contains("names no interface"), "{e}");
    let e = bad(&["a:b/c@1.0.0", "a:b/c@2.0.0"]);
    assert!(e.contains("registered twice"), "{e}");
    // A link step's own error names the interfaces.
    let api = AppApi::new().add(
        &["a:b/c"],
        |_| Err(wasmtime::format_err!("boom")),
        |_| (),
    );
    let e = PluginEngine::new(&crate::EngineOptions {
        app_api: api,
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("application API a:b/c: boom"), "{e}");
}

#[test]
fn names() {
    assert_eq!(unversioned("a:b/c@1.0.0"), "a:b/c");
    assert_eq!(unversioned("a:b/c"), "a:b/c");
    assert!(well_formed("example:kv/store@1.0.0"));
    assert!(!well_formed("example:kv"));
    assert!(!well_formed("Example:kv/store"));
}
