//! End-to-end tests of the Python and JavaScript example plugins
//! (`plugins/python`, `plugins/js`, built by `plugins/polyglot.sh`): the same
//! behaviours as their Rust twins in `cli.rs` and `library.rs`, through
//! `callop-host` and through the library API, plus a host running a Rust, a
//! Python and a JavaScript plugin that pass messages along.
//!
//! The first test to run builds the plugins (installing the toolchains if
//! needed) and fills the shared compile cache; a missing toolchain fails
//! every test here with the reason.

use std::time::{Duration, Instant};

use callop::EventLoop;
use callop::channel::Event;
use callop_plugin_host::{AppSender, ExitReason, Host, LoadError, PluginId, PluginSpec};
use callop_tests::polyglot::{Lang, polyglot_plugin};
use callop_tests::{
    args, assert_sigterm_is_graceful, config, host_cmd, plugin, run, run_until_empty, text,
};

// ------------------------------------------------------------------ helpers

/// `PATH@NAME=ARG,...` for the CLI: the `lang` plugin `name`, with the
/// instance name `name`.
fn plugin_arg(lang: Lang, name: &str, a: &[&str]) -> String {
    named_plugin_arg(lang, name, name, a)
}

/// `PATH@INSTANCE=ARG,...` for the CLI.
fn named_plugin_arg(lang: Lang, name: &str, instance: &str, a: &[&str]) -> String {
    let mut s = format!("{}@{instance}", polyglot_plugin(lang, name).display());
    if !a.is_empty() {
        s.push('=');
        s.push_str(&a.join(","));
    }
    s
}

/// What the application's `@app/out` endpoint received.
#[derive(Debug, Default)]
struct AppInbox {
    messages: Vec<String>,
    closed: bool,
    /// A message arrived after `Closed`.
    after_close: bool,
}

fn collect_app_out(ev: &EventLoop<'_, AppInbox>, host: &Host<'_, AppInbox>) {
    let out = host.app_channel("out").unwrap();
    ev.handle()
        .insert_source(out, |e, _, inbox: &mut AppInbox| match e {
            Event::Msg(m) => {
                inbox.after_close |= inbox.closed;
                inbox.messages.push(String::from_utf8(m).unwrap());
            }
            Event::Closed => inbox.closed = true,
        })
        .unwrap();
}

/// Dispatches until the app endpoint reported `Closed` (after the plugins
/// ended, their last replies and the close may still be in flight).
fn drain_until_closed(ev: &mut EventLoop<'_, AppInbox>, inbox: &mut AppInbox) {
    let start = Instant::now();
    while !inbox.closed {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "@app/out never reported Closed: {inbox:?}"
        );
        ev.dispatch(Some(Duration::from_millis(10)), inbox).unwrap();
    }
}

/// Generates one `#[test]` per language calling `$body(lang)`.
macro_rules! per_lang {
    ($body:ident: $py:ident, $js:ident) => {
        #[test]
        fn $py() {
            $body(Lang::Python)
        }
        #[test]
        fn $js() {
            $body(Lang::Js)
        }
    };
}

// ---------------------------------------------------------------- ticker

/// Rust twin: `cli.rs::ticker_ticks_in_order_never_early_and_exits_zero`.
fn cli_ticker(lang: Lang) {
    let start = Instant::now();
    let o = run(host_cmd().arg(plugin_arg(
        lang,
        "ticker",
        &["--every", "10ms", "--count", "5"],
    )));
    let elapsed = start.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let lines: Vec<String> = text(&o.stdout).lines().map(str::to_string).collect();
    let want: Vec<String> = (1..=5).map(|i| format!("[ticker] tick {i}")).collect();
    assert_eq!(lines, want, "{}", text(&o.stderr));
    assert!(
        elapsed >= Duration::from_millis(50),
        "5 ticks of 10ms in {elapsed:?}"
    );
    assert!(text(&o.stderr).contains("finished (no sources left)"));
}
per_lang!(cli_ticker: python_ticker_cli_ticks_in_order_and_exits_zero, js_ticker_cli_ticks_in_order_and_exits_zero);

/// Rust twin: `library.rs::ticker_never_fires_early`; the plugin clock
/// (`Host::now`) is the clock its timers use.
fn library_ticker(lang: Lang) {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    let c = host.compile_file(polyglot_plugin(lang, "ticker")).unwrap();
    let start = host.now();
    host.load(&c, "ticker", &args(&["--every", "10ms", "--count", "5"]))
        .unwrap();
    run_until_empty(&mut ev, &host, &mut (), Duration::from_secs(30));
    let took = Duration::from_nanos(host.now() - start);
    assert!(
        took >= Duration::from_millis(50),
        "5 ticks of 10ms ended after {took:?}"
    );
    let exits = host.exits();
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0].reason, ExitReason::Finished);
}
per_lang!(library_ticker: python_ticker_library_never_early_and_finishes, js_ticker_library_never_early_and_finishes);

// ----------------------------------------------------------------- relay

/// A loop whose `@app/out` is collected, with a `lang` relay loaded with
/// `a`: returns them, the relay's id and a sender to `relay/in`.
fn relay_host(
    lang: Lang,
    a: &[&str],
) -> (
    EventLoop<'static, AppInbox>,
    Host<'static, AppInbox>,
    PluginId,
    AppSender,
) {
    let ev: EventLoop<AppInbox> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    collect_app_out(&ev, &host);
    let id = host
        .load_file(polyglot_plugin(lang, "relay"), "relay", &args(a))
        .unwrap();
    let tx = host.sender("relay/in").unwrap();
    (ev, host, id, tx)
}

/// Rust twin: `library.rs::relay_answers_every_app_message_in_order_then_ends_on_close`.
fn library_relay(lang: Lang) {
    let (mut ev, host, id, tx) = relay_host(lang, &["--prefix", "re: "]);
    tx.send(b"hello".to_vec()).unwrap();
    tx.send(b"world".to_vec()).unwrap();
    drop(tx); // the relay sees `closed` and ends
    let mut inbox = AppInbox::default();
    run_until_empty(&mut ev, &host, &mut inbox, Duration::from_secs(30));
    drain_until_closed(&mut ev, &mut inbox);
    assert_eq!(inbox.messages, ["re: hello", "re: world"]);
    assert!(!inbox.after_close, "{inbox:?}");
    let exits = host.exits();
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0].id, id);
    assert_eq!(exits[0].reason, ExitReason::Finished);
}
per_lang!(library_relay: python_relay_answers_in_order_then_finishes_on_close, js_relay_answers_in_order_then_finishes_on_close);

/// Many messages keep their order through a guest-language relay.
fn library_relay_many(lang: Lang) {
    let (mut ev, host, _, tx) = relay_host(lang, &["--prefix", "re:"]);
    for i in 0..500 {
        tx.send(format!("m{i}").into_bytes()).unwrap();
    }
    drop(tx);
    let mut inbox = AppInbox::default();
    run_until_empty(&mut ev, &host, &mut inbox, Duration::from_secs(30));
    drain_until_closed(&mut ev, &mut inbox);
    let want: Vec<String> = (0..500).map(|i| format!("re:m{i}")).collect();
    assert_eq!(inbox.messages, want);
    assert_eq!(host.exits()[0].reason, ExitReason::Finished);
}
per_lang!(library_relay_many: python_relay_keeps_the_order_of_500_messages, js_relay_keeps_the_order_of_500_messages);

/// Rust twin: `batching.rs`: 2,000 messages queued at once arrive as a packed
/// batch of 1,024 and a second one; `then` acts at the 3rd message. Returns
/// the replies and whether the relay ended.
fn relay_then(lang: Lang, then: &str) -> (Vec<String>, bool) {
    let (mut ev, host, _, tx) = relay_host(lang, &["--after", "3", "--then", then]);
    for i in 0..2000 {
        tx.send(format!("{i}").into_bytes()).unwrap();
    }
    let mut inbox = AppInbox::default();
    let start = Instant::now();
    while !host.is_empty() && start.elapsed() < Duration::from_secs(3) {
        ev.dispatch(Some(Duration::from_millis(100)), &mut inbox)
            .unwrap();
    }
    let ended = host.is_empty();
    if ended {
        drain_until_closed(&mut ev, &mut inbox);
    }
    drop(tx);
    (inbox.messages, ended)
}

fn relay_then_disable_and_remove(lang: Lang) {
    let (got, ended) = relay_then(lang, "disable");
    assert!(!ended, "a disabled channel keeps the relay alive");
    let first: Vec<String> = (0..1024).map(|i| format!("{i}")).collect();
    assert!(
        got == first,
        "got {} replies, not the first batch",
        got.len()
    );
    for then in ["remove", "self-remove"] {
        let (got, ended) = relay_then(lang, then);
        assert!(ended, "{then}: the relay has no source left");
        assert_eq!(got, ["0", "1", "2"], "{then}");
    }
}
per_lang!(relay_then_disable_and_remove: python_relay_disable_and_remove_in_a_packed_batch, js_relay_disable_and_remove_in_a_packed_batch);

// -------------------------------------------------------------- selftest

/// Rust twin: `cli.rs::selftest_and_idle_worker`.
fn cli_selftest(lang: Lang) {
    let o = run(host_cmd().arg(plugin_arg(lang, "selftest", &[])));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let out = text(&o.stdout);
    assert!(out.contains("[selftest] selftest: ok"), "{out}");
}
per_lang!(cli_selftest: python_selftest_cli_passes, js_selftest_cli_passes);

/// Rust twin: `library.rs::selftest_and_idle_worker_pass` (the selftest
/// stops with code 1 on a failed check).
fn library_selftest(lang: Lang) {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    let c = host
        .compile_file(polyglot_plugin(lang, "selftest"))
        .unwrap();
    host.load(&c, "selftest", &[]).unwrap();
    run_until_empty(&mut ev, &host, &mut (), Duration::from_secs(30));
    let exits = host.exits();
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0].reason, ExitReason::Finished);
}
per_lang!(library_selftest: python_selftest_library_passes, js_selftest_library_passes);

// ------------------------------------------------------------- bad args

/// Rust twins: the init errors of `cli.rs::load_errors_exit_2_with_message`
/// and `library.rs::init_error_and_duplicate_names`; the messages are the
/// Rust plugins' word for word.
fn bad_args(lang: Lang) {
    let o = run(host_cmd().arg(plugin_arg(lang, "ticker", &["--bogus"])));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains(
            r#"plugin init failed: unknown argument "--bogus" (usage: --every 10ms --count 5)"#
        ),
        "{}",
        text(&o.stderr)
    );
    let o = run(host_cmd().arg(plugin_arg(lang, "relay", &["--prefix"])));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("plugin init failed: --prefix needs a value"),
        "{}",
        text(&o.stderr)
    );

    let ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    for (a, msg) in [
        (
            &["--count", "x"][..],
            "bad --count: invalid digit found in string",
        ),
        (
            &["--every", "10parsecs"][..],
            r#"bad duration unit in "10parsecs" (use ns, us, ms or s)"#,
        ),
    ] {
        let e = host
            .load_file(polyglot_plugin(lang, "ticker"), "t", &args(a))
            .unwrap_err();
        assert!(matches!(e, LoadError::Init(_)), "{e}");
        assert!(e.to_string().contains(msg), "{a:?}: {e}");
        // The instance never started and released its name.
        assert!(host.is_empty());
    }
}
per_lang!(bad_args: python_bad_args_fail_init_with_the_message, js_bad_args_fail_init_with_the_message);

// --------------------------------------------------------------- shutdown

/// Rust twin: `cli.rs::sigterm_is_graceful` (without a `shutdown` function
/// the helper libraries remove every source).
fn sigterm(lang: Lang) {
    assert_sigterm_is_graceful(host_cmd().arg("--forever").arg(plugin_arg(
        lang,
        "ticker",
        &["--every", "10ms", "--count", "100000"],
    )));
}
per_lang!(sigterm: python_ticker_sigterm_is_graceful, js_ticker_sigterm_is_graceful);

// ------------------------------------------------------------ mixed host

/// One host, three languages: app → Rust relay → Python relay → JS relay →
/// app. Each relay prefixes the message; closing the application's sender
/// closes the chain link by link and every plugin finishes.
#[test]
fn rust_python_and_js_relays_chained_in_one_host() {
    let mut ev: EventLoop<AppInbox> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config()).unwrap();
    collect_app_out(&ev, &host);
    let rs = host.compile_file(plugin("relay")).unwrap();
    let py = host
        .compile_file(polyglot_plugin(Lang::Python, "relay"))
        .unwrap();
    let js = host
        .compile_file(polyglot_plugin(Lang::Js, "relay"))
        .unwrap();
    let (a_rs, a_py, a_js) = (
        args(&["--reply-to", "py/in", "--prefix", "rs>"]),
        args(&["--reply-to", "js/in", "--prefix", "py>"]),
        args(&["--reply-to", "@app/out", "--prefix", "js>"]),
    );
    let r = host
        .load_many(&[
            PluginSpec {
                component: &rs,
                name: "rs",
                args: &a_rs,
            },
            PluginSpec {
                component: &py,
                name: "py",
                args: &a_py,
            },
            PluginSpec {
                component: &js,
                name: "js",
                args: &a_js,
            },
        ])
        .unwrap();
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    let tx = host.sender("rs/in").unwrap();
    for i in 0..300 {
        tx.send(format!("m{i}").into_bytes()).unwrap();
    }
    tx.send("héllo wörld".as_bytes().to_vec()).unwrap();
    drop(tx);
    let mut inbox = AppInbox::default();
    run_until_empty(&mut ev, &host, &mut inbox, Duration::from_secs(30));
    drain_until_closed(&mut ev, &mut inbox);
    let mut want: Vec<String> = (0..300).map(|i| format!("js>py>rs>m{i}")).collect();
    want.push("js>py>rs>héllo wörld".into());
    assert_eq!(inbox.messages, want);
    assert!(!inbox.after_close);
    let exits = host.exits();
    let order: Vec<&str> = exits.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        order,
        ["rs", "py", "js"],
        "closing propagates along the chain"
    );
    assert!(
        exits.iter().all(|e| e.reason == ExitReason::Finished),
        "{exits:?}"
    );
}

/// The CLI runs plugins of the three languages side by side; the exit
/// status is the first non-zero one.
#[test]
fn cli_runs_rust_python_and_js_plugins_together() {
    let o = run(host_cmd()
        .arg(format!(
            "{}@rs=--every,5ms,--count,3",
            plugin("ticker").display()
        ))
        .arg(named_plugin_arg(Lang::Python, "selftest", "py", &[]))
        .arg(named_plugin_arg(Lang::Js, "selftest", "js", &[])));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let out = text(&o.stdout);
    let ticks: Vec<&str> = out.lines().filter(|l| l.starts_with("[rs] ")).collect();
    assert_eq!(ticks, ["[rs] tick 1", "[rs] tick 2", "[rs] tick 3"]);
    assert!(out.contains("[py] selftest: ok"), "{out}");
    assert!(out.contains("[js] selftest: ok"), "{out}");
}

/// Python's own `open` and `socket` (WASI) get what `--dir` and
/// `--allow-net` grant, as Rust's `std` does (`tests/tests/wasi_grants.rs`):
/// a granted file is read, a read-only dir refuses writes, `..` and
/// symlinks out of the dir are refused, a granted 127.0.0.1 address is
/// connected to; the rest is refused.
#[test]
fn python_open_and_socket_get_what_the_grants_name() {
    use std::io::Read;
    let tmp = std::env::temp_dir().join(format!("callop-py-grants-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (granted, ro) = (tmp.join("granted"), tmp.join("ro"));
    std::fs::create_dir_all(granted.join("sub")).unwrap();
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(granted.join("ok.txt"), "ok\n").unwrap();
    std::fs::write(tmp.join("secret.txt"), "secret\n").unwrap();
    std::os::unix::fs::symlink(tmp.join("secret.txt"), granted.join("link")).unwrap();
    std::os::unix::fs::symlink("../../secret.txt", granted.join("sub/rel-link")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect_ok = format!("std-connect:127.0.0.1:{port}");
    let connect_other = format!("std-connect:127.0.0.1:{}", port.wrapping_add(1).max(1));
    let bind = format!("std-bind:127.0.0.1:{port}");
    let probes = [
        "std-read:/data/ok.txt",
        "std-read:/data/../secret.txt",
        "std-read:/data/link",
        "std-read:/data/sub/rel-link",
        "std-read:/etc/passwd",
        "std-write:/ro/new.txt",
        "std-write:/data/py.txt",
        &connect_ok,
        &connect_other,
        &bind,
    ];
    let o = run(host_cmd()
        .args(["--callback-timeout", "60000"])
        .arg(plugin_arg(Lang::Python, "io-probe", &probes))
        .arg("--dir")
        .arg(format!("{}::/data", granted.display()))
        .arg("--dir")
        .arg(format!("{}::/ro:ro", ro.display()))
        .arg("--allow-net")
        .arg(format!("connect:127.0.0.1:{port}")));
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    let line = |p: &str| -> String {
        out.lines()
            .filter(|l| !l.contains("] CONTENT "))
            .find(|l| l.contains(&format!(" {p}:")) || l.ends_with(&format!(" {p}")))
            .unwrap_or_else(|| panic!("no line for {p} in {out}"))
            .to_string()
    };
    let allowed = |p: &str| assert!(line(p).contains(&format!("ALLOWED {p}")), "{p}: {out}");
    let denied = |p: &str| {
        assert!(
            line(p).contains(&format!("DENIED {p}: PermissionError")),
            "{p}: {out}"
        )
    };
    allowed("std-read:/data/ok.txt");
    assert!(out.contains("] CONTENT std-read:/data/ok.txt: ok"), "{out}");
    denied("std-read:/data/../secret.txt");
    denied("std-read:/data/link");
    denied("std-read:/data/sub/rel-link");
    assert!(
        line("std-read:/etc/passwd").contains("FileNotFoundError"),
        "{out}"
    );
    denied("std-write:/ro/new.txt");
    assert!(!ro.join("new.txt").exists());
    allowed("std-write:/data/py.txt");
    assert_eq!(
        std::fs::read_to_string(granted.join("py.txt")).unwrap(),
        "probe"
    );
    allowed(&connect_ok);
    let (s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    s.take(4).read_to_end(&mut got).unwrap();
    assert_eq!(got, b"wasi");
    denied(&connect_other);
    denied(&bind);
    let _ = std::fs::remove_dir_all(&tmp);
}
