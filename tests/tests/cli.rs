//! End-to-end tests of the `callop-host` binary.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use callop_tests::{assert_sigterm_is_graceful, host_bin, host_cmd, plugin, run, text};

#[test]
fn ticker_ticks_in_order_never_early_and_exits_zero() {
    let start = Instant::now();
    let o = run(host_cmd()
        .arg(plugin("ticker"))
        .args(["--", "--every", "25ms", "--count", "5"]));
    let elapsed = start.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let lines: Vec<String> = text(&o.stdout).lines().map(str::to_string).collect();
    let want: Vec<String> = (1..=5).map(|i| format!("[ticker] tick {i}")).collect();
    assert_eq!(lines, want);
    assert!(
        elapsed >= Duration::from_millis(125),
        "5 ticks of 25ms in {elapsed:?}"
    );
    assert!(text(&o.stderr).contains("finished (no sources left)"));
    assert!(
        !text(&o.stderr).contains('\x1b'),
        "no colour escapes when stderr is not a terminal"
    );
}

#[test]
fn ping_pong_exact_counts() {
    let pp = plugin("ping-pong");
    let o = run(host_cmd()
        .arg(format!("{}@ping=--role,ping,--count,777", pp.display()))
        .arg(format!("{}@pong=--role,pong", pp.display())));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("[ping] ping: done after 777 exchanges"),
        "{out}"
    );
    assert!(out.contains("[pong] pong: done, answered 777"), "{out}");
}

#[test]
fn selftest_and_idle_worker() {
    let o = run(host_cmd().arg(plugin("selftest")).arg(format!(
        "{}=--n,50000,--chunk,500",
        plugin("idle-worker").display()
    )));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let out = text(&o.stdout);
    assert!(out.contains("[selftest] selftest: ok"), "{out}");
    assert!(
        out.contains("[idle_worker] sum 1..=50000 = 1250025000 (100 chunks)"),
        "{out}"
    );
}

#[test]
fn sigterm_is_graceful() {
    assert_sigterm_is_graceful(
        host_cmd()
            .arg("--forever")
            .arg(plugin("ticker"))
            .args(["--", "--every", "10ms", "--count", "100000"]),
    );
}

#[test]
fn load_errors_exit_2_with_message() {
    let dir = std::env::temp_dir().join(format!("callop-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.wasm");
    std::fs::write(&garbage, [0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 1]).unwrap();
    let core = dir.join("core.wasm");
    std::fs::write(&core, wat::parse_str("(module)").unwrap()).unwrap();
    let other = dir.join("other.wasm");
    std::fs::write(
        &other,
        wat::parse_str(
            r#"(component (instance $g) (export "callop:plugin/guest@0.1.0" (instance $g)))"#,
        )
        .unwrap(),
    )
    .unwrap();
    let fifo = dir.join("fifo.wasm");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let cases = [
        (dir.join("missing.wasm"), "cannot read"),
        // Refused without reading: /dev/zero would be read until memory runs out, and opening
        // a FIFO would wait for a writer.
        ("/dev/zero".into(), "it is a device, not a regular file"),
        (fifo, "it is a FIFO, not a regular file"),
        (dir.clone(), "it is a directory, not a regular file"),
        (garbage, "not a WebAssembly binary"),
        (core, "core WebAssembly module, not a component"),
        (
            other,
            "exports `callop:plugin/guest@0.1.0` but this host supports callop:plugin versions 0.3.0, 0.2.0",
        ),
    ];
    for (path, msg) in cases {
        let start = Instant::now();
        let o = run(host_cmd().arg(&path));
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            path.display()
        );
        assert_eq!(o.status.code(), Some(2), "{}", path.display());
        assert!(
            text(&o.stderr).contains(msg),
            "{}: {}",
            path.display(),
            text(&o.stderr)
        );
    }
    // init error
    let o = run(host_cmd().arg(format!("{}=--bogus", plugin("ticker").display())));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("plugin init failed: unknown argument"),
        "{}",
        text(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compile_fills_cache_and_inspect_prints_world() {
    let dir = std::env::temp_dir().join(format!("callop-cli-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = run(Command::new(host_bin())
        .arg("compile")
        .arg("--cache-dir")
        .arg(&dir)
        .arg(plugin("ticker")));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let cwasm: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(cwasm.len(), 1);
    assert!(text(&o.stdout).contains(".cwasm"));
    // A run with that cache uses it.
    let o = run(Command::new(host_bin())
        .arg("--cache-dir")
        .arg(&dir)
        .env("RUST_LOG", "callop=debug")
        .arg(plugin("ticker"))
        .args(["--", "--every", "1ms", "--count", "1"]));
    assert_eq!(o.status.code(), Some(0));
    assert!(
        text(&o.stderr).contains("using cached artifact"),
        "{}",
        text(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);

    let o = run(Command::new(host_bin()).arg("inspect").arg(plugin("relay")));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("world: callop:plugin/plugin@0.3.0"), "{out}");
    assert!(out.contains("callop:plugin/host-loop@0.3.0"), "{out}");
    assert!(
        out.contains("callop:plugin/guest@0.3.0: instance {")
            && out.contains("init, dispatch, shutdown }"),
        "{out}"
    );
    assert!(out.contains("loadable: yes"), "{out}");
}

/// Runs `callop-host --config FILE line_counter.wasm@wc` with FILE holding
/// `config` and `input` on its stdin.
fn run_with_config(config: &str, input: &str) -> Output {
    let dir = callop_tests::target_dir().join("cli-config");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join(format!("callop-{}.toml", std::process::id()));
    std::fs::write(&cfg, config).unwrap();
    let mut child = host_cmd()
        .arg("--config")
        .arg(&cfg)
        .arg(format!("{}@wc", plugin("line-counter").display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A refused config exits before reading stdin: ignore a broken pipe.
    let _ = std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes());
    let o = child.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&cfg);
    o
}

#[test]
fn config_file_sets_limits_and_capabilities_and_refuses_typos() {
    // [limits] allows no source at all; the instance's table overrides that
    // and grants stdin, which line-counter registers as a source.
    let o = run_with_config(
        "[limits]\nmax-sources = 0\ncallback-timeout-ms = 1000\n\n\
         [plugins.wc]\nmax-sources = 4\nmax-memory-mib = 32\nstdin = true\n",
        "one two\nthree\n",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "[wc] lines=2 words=3 bytes=14");
    // Without the override, [limits] applies: init cannot register stdin.
    let o = run_with_config(
        "[limits]\nmax-sources = 0\n\n[plugins.wc]\nstdin = true\n",
        "x\n",
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("plugin init failed"),
        "{}",
        text(&o.stderr)
    );
    // Typos, old spellings and unknown instances are refused before anything runs.
    for (config, msg) in [
        ("[plugins.wc]\nstdn = true\n", "unknown key `stdn`"),
        ("[limit]\nmax-sources = 4\n", "unknown table `[limit]`"),
        (
            "[plugins.wc]\nmax_sources = 4\n",
            "unknown key `max_sources`: did you mean `max-sources`?",
        ),
        (
            "[plugin.wc]\nstdin = true\n",
            "`[plugin.wc]`: did you mean `[plugins.wc]`?",
        ),
        (
            "[plugins.wcc]\nstdin = true\n",
            "`[plugins.wcc]`: no plugin instance named `wcc`",
        ),
    ] {
        let o = run_with_config(config, "");
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{config}: {err}");
        assert!(
            err.contains("--config") && err.contains(msg),
            "{config}: {err}"
        );
        assert!(o.stdout.is_empty(), "{config}: {}", text(&o.stdout));
    }
}
