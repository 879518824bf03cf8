//! The key-value example application (`tests/kv-app`): plugins in Rust,
//! Python and JS using the application's own API (`example:kv`) beside the
//! loop, per-plugin grants, and host functions that fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use callop::EventLoop;
use callop_plugin_host::{ExitReason, Host, LoadError, PluginExit};
use callop_tests::{args, config, plugin, repo_root, run_until_empty};
use kv_app::{KvApp, Level, MAX_KEYS, NOTIFY, Note, STORE, grants};

const LIMIT: Duration = Duration::from_secs(60);

/// Builds the Python and JS kv plugins (`plugins/polyglot.sh python/kv
/// js/kv`, once per test binary) into `target/polyglot-kv` and returns
/// the component of `lang` (`python` or `js`).
fn polyglot_kv(lang: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let root = repo_root();
        let out = root.join("target/polyglot-kv");
        let o = Command::new("bash")
            .arg(root.join("plugins/polyglot.sh"))
            .args(["python/kv", "js/kv"])
            .env("CALLOP_POLYGLOT_OUT", &out)
            .output()
            .expect("cannot run plugins/polyglot.sh");
        assert!(
            o.status.success(),
            "plugins/polyglot.sh python/kv js/kv failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        out
    });
    let p = dir.join(format!("{lang}-kv.wasm"));
    assert!(p.exists(), "missing {}", p.display());
    p
}

fn note(plugin: &str, text: &str) -> Note {
    Note {
        plugin: plugin.to_string(),
        level: Level::Info,
        text: text.to_string(),
    }
}

fn notes_of(app: &KvApp, plugin: &str) -> Vec<Note> {
    app.notes()
        .into_iter()
        .filter(|n| n.plugin == plugin)
        .collect()
}

fn exit_of(host: &Host<'_, ()>, name: &str) -> PluginExit {
    let exits: Vec<_> = host
        .exits()
        .into_iter()
        .filter(|e| e.name == name)
        .collect();
    assert_eq!(exits.len(), 1, "{exits:?}");
    exits[0].clone()
}

fn load(host: &Host<'_, ()>, path: &Path, name: &str, a: &[&str]) {
    host.grant(name, grants());
    host.load_file(path, name, &args(a))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn rust_python_and_js_plugins_use_the_store_and_notify_beside_the_loop() {
    let (py, js) = (polyglot_kv("python"), polyglot_kv("js"));
    let app = KvApp::new();
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config().with_app_api(app.api())).unwrap();
    load(&host, &plugin("kv-plugin"), "rust", &[]);
    load(&host, &py, "python", &[]);
    load(&host, &js, "js", &["--count", "4"]);
    run_until_empty(&mut ev, &host, &mut (), LIMIT);

    let want: BTreeMap<String, String> =
        [("js/tick", "4"), ("python/tick", "3"), ("rust/tick", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(app.contents(), want);
    for (name, ticks) in [("rust", 3), ("python", 3), ("js", 4)] {
        assert_eq!(
            notes_of(&app, name),
            [
                note(name, &format!("wrote {ticks} ticks")),
                note(name, &format!("read {name}/tick={ticks} (1 of my keys)")),
            ],
            "{name}"
        );
        assert_eq!(exit_of(&host, name).reason, ExitReason::Finished, "{name}");
    }
    assert_eq!(app.notes().len(), 6);
}

#[test]
fn a_plugin_importing_an_interface_it_was_not_granted_is_refused_naming_it() {
    let app = KvApp::new();
    let ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config().with_app_api(app.api())).unwrap();
    let c = host.compile_file(plugin("kv-plugin")).unwrap();
    let mut imported = c.app_interfaces().to_vec();
    imported.sort();
    assert_eq!(imported, [NOTIFY, STORE]);

    // Nothing granted: refused, naming the first interface it imports.
    let e = host.load(&c, "stranger", &[]).unwrap_err();
    let LoadError::NotGranted { interface, plugin } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(plugin, "stranger");
    assert!(interface == STORE || interface == NOTIFY, "{interface}");
    assert!(e.to_string().contains(&format!("`{interface}`")), "{e}");

    // Only the store granted: refused naming `notify`.
    host.grant(
        "half",
        callop_plugin_host::Capabilities::new().allow_app_interface(STORE),
    );
    let e = host.load(&c, "half", &[]).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "plugin `half` imports the application interface `{NOTIFY}`, which is not granted"
        )),
        "{e}"
    );
    assert!(app.contents().is_empty() && app.notes().is_empty());
    assert!(host.is_empty());
}

#[test]
fn a_python_or_js_plugin_not_granted_the_api_is_refused_too() {
    let app = KvApp::new();
    let ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config().with_app_api(app.api())).unwrap();
    for lang in ["python", "js"] {
        let e = host
            .load_file(polyglot_kv(lang), lang, &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "plugin `{lang}` imports the application interface `example:kv/"
            )),
            "{e}"
        );
    }
}

#[test]
fn a_panicking_host_function_fails_only_its_plugin() {
    let app = KvApp::new();
    app.panic_on_set("boom");
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config().with_app_api(app.api())).unwrap();
    let kv = plugin("kv-plugin");
    load(&host, &kv, "bad", &["--key", "boom"]);
    load(&host, &kv, "good", &["--count", "5"]);
    run_until_empty(&mut ev, &host, &mut (), LIMIT);

    let bad = exit_of(&host, "bad");
    match &bad.reason {
        ExitReason::Trapped(c) => assert_eq!(
            c, "host error: a host function panicked: kv-app bug: cannot store `boom`",
            "{bad:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(notes_of(&app, "bad").is_empty());
    // The healthy plugin beside it kept its counts.
    assert_eq!(exit_of(&host, "good").reason, ExitReason::Finished);
    assert_eq!(
        app.contents(),
        BTreeMap::from([("good/tick".to_string(), "5".to_string())])
    );
    assert_eq!(
        notes_of(&app, "good"),
        [
            note("good", "wrote 5 ticks"),
            note("good", "read good/tick=5 (1 of my keys)")
        ]
    );
}

#[test]
fn an_error_from_a_host_function_fails_only_its_plugin() {
    let app = KvApp::new();
    // A full store: `good` only rewrites a key that exists, `bad` adds one.
    app.set("good/tick", "0");
    for i in 1..MAX_KEYS {
        app.set(&format!("app/{i:02}"), "x");
    }
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config().with_app_api(app.api())).unwrap();
    let kv = plugin("kv-plugin");
    load(&host, &kv, "bad", &[]);
    load(&host, &kv, "good", &[]);
    run_until_empty(&mut ev, &host, &mut (), LIMIT);

    let bad = exit_of(&host, "bad");
    match &bad.reason {
        ExitReason::Trapped(c) => assert!(
            c.starts_with("host error: ")
                && c.contains("the store is full (64 keys): `bad` cannot set `bad/tick`"),
            "{bad:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        bad.fault.as_ref().map(|f| f.kind),
        Some(callop_plugin_host::FaultKind::Host)
    );
    assert!(notes_of(&app, "bad").is_empty());
    assert_eq!(exit_of(&host, "good").reason, ExitReason::Finished);
    let contents = app.contents();
    assert_eq!(contents.len(), MAX_KEYS);
    assert_eq!(contents["good/tick"], "3");
    assert!(!contents.contains_key("bad/tick"));
    assert_eq!(
        notes_of(&app, "good"),
        [
            note("good", "wrote 3 ticks"),
            note("good", "read good/tick=3 (1 of my keys)")
        ]
    );
}
