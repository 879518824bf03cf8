//! The application API with the kv example's WIT (`tests/kv-app/wit`) and
//! its Rust plugin (`plugins/kv-plugin`, built by `plugins/build.sh`). The
//! example application itself, with its Python and JS plugins and host
//! functions that fail, is tested end to end in `tests/tests/kv_app.rs`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use callop::EventLoop;

use super::*;
use crate::{ExitReason, Host, HostConfig, PluginEngine};

wasmtime::component::bindgen!({
    world: "kv-imports",
    path: "../../tests/kv-app/wit",
});

use example::kv::notify::Level;

const STORE: &str = "example:kv/store@1.0.0";
const NOTIFY: &str = "example:kv/notify@1.0.0";

/// What the plugins did, by plugin: (plugin, restarts, call).
type Log = Arc<Mutex<Vec<(String, u32, String)>>>;

/// A per-plugin state recording every call.
struct Kv {
    plugin: String,
    restarts: u32,
    log: Log,
}

impl Kv {
    fn record(&self, call: String) {
        self.log
            .lock()
            .unwrap()
            .push((self.plugin.clone(), self.restarts, call));
    }
}

impl example::kv::store::Host for Kv {
    fn get(&mut self, key: String) -> Option<String> {
        self.record(format!("get {key}"));
        Some("v".into())
    }
    fn set(&mut self, key: String, value: String) {
        self.record(format!("set {key}={value}"));
    }
    fn keys(&mut self) -> Vec<String> {
        Vec::new()
    }
    fn len(&mut self) -> u64 {
        0
    }
}

impl example::kv::notify::Host for Kv {
    fn notify(&mut self, level: Level, text: String) {
        self.record(format!("{level:?}: {text}"));
    }
}

fn api(log: &Log) -> AppApi {
    let log = log.clone();
    AppApi::new().add(
        &[STORE, NOTIFY],
        |l| KvImports::add_to_linker::<_, AppData<Kv>>(l, app_data::<Kv>),
        move |cx| Kv {
            plugin: cx.name().to_string(),
            restarts: cx.restarts(),
            log: log.clone(),
        },
    )
}

fn kv_plugin() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/target/wasm32-wasip2/release/kv_plugin.wasm");
    assert!(
        p.exists(),
        "{} is missing: run plugins/build.sh kv-plugin",
        p.display()
    );
    p
}

fn granted() -> Capabilities {
    Capabilities::new()
        .allow_app_interface(STORE)
        .allow_app_interface(NOTIFY)
}

#[test]
fn each_granted_plugin_reaches_its_own_typed_state() {
    let log = Log::default();
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), HostConfig::default().with_app_api(api(&log))).unwrap();
    let c = host.compile_file(kv_plugin()).unwrap();
    let mut imported = c.app_interfaces().to_vec();
    imported.sort();
    assert_eq!(imported, [NOTIFY, STORE]);
    host.grant("a", granted());
    // Versions are ignored in grants.
    host.grant(
        "b",
        Capabilities::new()
            .allow_app_interface("example:kv/store")
            .allow_app_interface("example:kv/notify@1.0.1"),
    );
    let one = vec!["--count".to_string(), "1".into()];
    host.load(&c, "a", &one).unwrap();
    host.load(&c, "b", &one).unwrap();
    let t0 = std::time::Instant::now();
    while !host.is_empty() {
        assert!(t0.elapsed() < std::time::Duration::from_secs(30));
        ev.dispatch(Some(std::time::Duration::from_millis(50)), &mut ())
            .unwrap();
    }
    let log = log.lock().unwrap();
    for p in ["a", "b"] {
        let calls: Vec<&str> = log
            .iter()
            .filter(|(n, r, _)| n == p && *r == 0)
            .map(|(_, _, c)| c.as_str())
            .collect();
        assert_eq!(
            calls,
            [
                format!("set {p}/tick=1"),
                "Level::Info: wrote 1 ticks".to_string(),
                format!("get {p}/tick"),
                format!("Level::Info: read {p}/tick=v (0 of my keys)"),
            ],
            "{log:?}"
        );
    }
    assert_eq!(log.len(), 8);
    assert!(
        host.exits()
            .iter()
            .all(|e| e.reason == ExitReason::Finished)
    );
}

#[test]
fn a_plugin_importing_an_interface_not_granted_is_refused_naming_it() {
    let log = Log::default();
    let ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), HostConfig::default().with_app_api(api(&log))).unwrap();
    let c = host.compile_file(kv_plugin()).unwrap();
    host.grant("x", Capabilities::new().allow_app_interface(STORE));
    let e = host.load(&c, "x", &[]).unwrap_err();
    assert!(
        matches!(&e, LoadError::NotGranted { interface, plugin }
            if interface == NOTIFY && plugin == "x"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "plugin `x` imports the application interface `{NOTIFY}`, which is not granted to \
             it (the application grants it with Capabilities::allow_app_interface(\"{NOTIFY}\"))"
        )
    );
    // Nothing granted at all.
    let e = host.load(&c, "y", &[]).unwrap_err();
    assert!(matches!(e, LoadError::NotGranted { .. }), "{e:?}");
    assert!(log.lock().unwrap().is_empty());
    assert!(host.is_empty() && host.plugins().is_empty());
    // The name is free again; granted, it starts.
    host.grant("x", granted());
    host.load(&c, "x", &[]).unwrap();
    assert_eq!(host.plugins().len(), 1);
}

#[test]
fn a_panicking_state_factory_fails_only_that_load() {
    let api = AppApi::new().add(
        &[STORE, NOTIFY],
        |l| KvImports::add_to_linker::<_, AppData<Kv>>(l, app_data::<Kv>),
        |cx: &AppContext<'_>| -> Kv { panic!("no state for {}", cx.name()) },
    );
    let ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), HostConfig::default().with_app_api(api)).unwrap();
    let c = host.compile_file(kv_plugin()).unwrap();
    host.grant("p", granted());
    let e = host.load(&c, "p", &[]).unwrap_err().to_string();
    assert!(
        e.contains("cannot instantiate plugin: the application's state")
            && e.contains("panicked: no state for p"),
        "{e}"
    );
    assert!(host.is_empty());
}

#[test]
fn an_app_interface_nobody_provides_is_a_link_error_naming_it() {
    let e = PluginEngine::new(&Default::default())
        .unwrap()
        .load_file(kv_plugin())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("cannot link plugin") && e.contains("example:kv/"),
        "{e}"
    );
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
    let api = AppApi::new().add(&["a:b/c"], |_| Err(wasmtime::format_err!("boom")), |_| ());
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
