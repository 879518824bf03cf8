//! Helpers for the end-to-end tests: building the example plugins once,
//! finding the `callop-host` binary, a host configuration with the shared
//! compile cache, running a loop until its plugins end, and signalling and
//! awaiting a `callop-host` child.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod polyglot;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Builds every example plugin (`plugins/build.sh`, once per test binary;
/// cargo makes repeated builds cheap) and returns the directory holding the
/// `.wasm` components.
pub fn plugins_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = repo_root();
        let out = Command::new("bash")
            .arg(root.join("plugins/build.sh"))
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .expect("cannot run plugins/build.sh");
        assert!(
            out.status.success(),
            "plugins/build.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        root.join("plugins/target/wasm32-wasip2/release")
    })
}

/// Path of the component of example plugin `name` (e.g. `ping-pong`).
pub fn plugin(name: &str) -> PathBuf {
    let p = plugins_dir().join(format!("{}.wasm", name.replace('-', "_")));
    assert!(p.exists(), "missing plugin {}", p.display());
    p
}

/// A compile cache shared by all tests (compiled components are reused).
pub fn cache_dir() -> PathBuf {
    target_dir().join("callop-test-cache")
}

/// The cargo target directory these tests were built in.
pub fn target_dir() -> PathBuf {
    // <target>/debug/deps/<test-binary>
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// The `callop-host` binary built alongside the tests (`cargo test
/// --workspace` builds it, because the `callop-host` package has integration
/// tests).
pub fn host_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("profile dir");
    let bin = dir.join("callop-host");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p callop-host` (or `cargo test --workspace`)",
        bin.display()
    );
    bin
}

/// A [`HostConfig`](callop_plugin_host::HostConfig) using the shared compile
/// cache, everything else default.
pub fn config() -> callop_plugin_host::HostConfig {
    callop_plugin_host::HostConfig {
        engine: callop_plugin_host::EngineOptions {
            cache_dir: Some(cache_dir()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// [`config`] with these limits and restart policy.
pub fn config_with(
    limits: callop_plugin_host::Limits,
    restart: callop_plugin_host::RestartPolicy,
) -> callop_plugin_host::HostConfig {
    callop_plugin_host::HostConfig {
        limits,
        restart,
        ..config()
    }
}

/// Owned plugin arguments.
pub fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Dispatches `ev` until `host` has no plugin left; panics after `limit`.
pub fn run_until_empty<D>(
    ev: &mut callop::EventLoop<'_, D>,
    host: &callop_plugin_host::Host<'_, D>,
    data: &mut D,
    limit: Duration,
) {
    let start = Instant::now();
    while !host.is_empty() {
        assert!(
            start.elapsed() < limit,
            "plugins still alive after {limit:?}: {:?}",
            host.plugins()
        );
        ev.dispatch(Some(Duration::from_millis(100)), data).unwrap();
    }
}

/// Sends signal `sig` (`"TERM"`, `"HUP"`, ...) to `child` with kill(1).
pub fn send_signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("cannot run kill")
        .success();
    assert!(ok, "kill -{sig} {} failed", child.id());
}

/// Waits for `child` to exit; kills it and panics (naming `what`) after
/// `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: no exit after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Spawns `cmd` (a `callop-host` running a `ticker` instance named
/// `ticker`), waits for its first tick, sends SIGTERM and asserts a graceful
/// exit: code 0, the shutdown and the plugin's end logged.
pub fn assert_sigterm_is_graceful(cmd: &mut Command) {
    use std::io::{BufRead, BufReader, Read};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run callop-host");
    // The first tick: the plugin is running.
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("read stdout");
    assert_eq!(line.trim(), "[ticker] tick 1");
    send_signal(&child, "TERM");
    let status = wait_exit(
        &mut child,
        Duration::from_secs(10),
        "callop-host after SIGTERM",
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("shutting down"), "{err}");
    assert!(err.contains("plugin finished"), "{err}");
}

/// `callop-host` with the shared compile cache and `RUST_LOG=info`.
pub fn host_cmd() -> Command {
    let mut c = Command::new(host_bin());
    c.arg("--cache-dir")
        .arg(cache_dir())
        .env("RUST_LOG", "info");
    c
}

/// Runs `c` to completion, capturing its output.
pub fn run(c: &mut Command) -> std::process::Output {
    c.output().expect("cannot run callop-host")
}

/// Bytes of captured output as text.
pub fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}
