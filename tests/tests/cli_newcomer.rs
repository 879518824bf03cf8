//! What a new user meets first in `callop-host` (issue #17, [newcomer]):
//! `--stdin` before the plugin path, a compile announced (once) and
//! interruptible, the compile cache's size cap and `cache list|clear`, the
//! `--isolate` refusal naming its flag, and short default log lines.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use callop_tests::{host_bin, plugin, run, send_signal, text, wait_exit};

/// A fresh, empty directory for one test (a cache of its own).
fn fresh_dir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("callop-newcomer-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `callop-host` with the compile cache in `cache` and `RUST_LOG=info`.
fn host_with_cache(cache: &Path) -> Command {
    let mut c = Command::new(host_bin());
    c.arg("--cache-dir").arg(cache).env("RUST_LOG", "info");
    c
}

/// The `.cwasm` entries in `dir`, by file name.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cwasm"))
        .collect();
    v.sort();
    v
}

/// Compiles `p` into the cache `dir` with `callop-host compile` (extra
/// flags `flags`) and returns the entry it added.
fn compile_one(dir: &Path, p: &Path, flags: &[&str]) -> String {
    let before = entries(dir);
    let o = run(Command::new(host_bin())
        .arg("compile")
        .arg("--cache-dir")
        .arg(dir)
        .args(flags)
        .arg(p));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let after = entries(dir);
    let new: Vec<&String> = after.iter().filter(|e| !before.contains(e)).collect();
    assert_eq!(new.len(), 1, "one new entry: {before:?} -> {after:?}");
    new[0].clone()
}

/// Sets the last use (mtime) of cache entry `name` to `ago` before now.
fn set_last_use(dir: &Path, name: &str, ago: Duration) {
    std::fs::File::open(dir.join(name))
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
}

#[test]
fn stdin_before_the_plugin_path_grants_stdin() {
    let dir = fresh_dir("stdin");
    let mut child = host_with_cache(&dir)
        .arg("--stdin")
        .arg(plugin("line-counter"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"one two\nthree\n")
        .unwrap(); // dropped: EOF
    wait_exit(&mut child, Duration::from_secs(60), "line-counter");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("lines=2 words=3 bytes=14"),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    // `--stdin=NAME` names the instance; a wrong name is refused by name.
    let o = run(host_with_cache(&dir)
        .arg("--stdin=nobody")
        .arg(plugin("line-counter"))
        .stdin(Stdio::null()));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("no plugin instance named `nobody`"),
        "{}",
        text(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_compile_is_announced_once_and_a_cached_run_is_quiet() {
    let dir = fresh_dir("announce");
    let ticker = || {
        let mut c = host_with_cache(&dir);
        c.arg(plugin("ticker"))
            .args(["--", "--every", "1ms", "--count", "1"]);
        c
    };
    let first = run(&mut ticker());
    let err = text(&first.stderr);
    assert_eq!(first.status.code(), Some(0), "{err}");
    let msg = "compiling ticker (first run, cached afterwards)";
    assert_eq!(err.matches(msg).count(), 1, "{err}");
    let second = run(&mut ticker());
    let err = text(&second.stderr);
    assert_eq!(second.status.code(), Some(0), "{err}");
    assert!(!err.contains("compiling"), "a cached run compiles: {err}");
    // Two instances of one file: compiled (and announced) once.
    let dir2 = fresh_dir("announce2");
    let pp = plugin("ping-pong");
    let o = run(host_with_cache(&dir2)
        .arg(format!("{}@ping=--role,ping,--count,3", pp.display()))
        .arg(format!("{}@pong=--role,pong", pp.display())));
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("compiling").count(), 1, "{err}");
    assert!(err.contains("compiling ping (first run"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

/// A component whose compile takes seconds: one core module of `funcs`
/// functions of `ops` additions each, written as binary by hand.
fn big_component(funcs: u32, ops: u32) -> Vec<u8> {
    fn leb(mut v: u32, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len() as u32, out);
        out.extend_from_slice(body);
    }
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    // One type: (i32) -> i32.
    section(1, &[1, 0x60, 1, 0x7f, 1, 0x7f], &mut module);
    let mut funcs_sec = Vec::new();
    leb(funcs, &mut funcs_sec);
    funcs_sec.extend(std::iter::repeat_n(0u8, funcs as usize));
    section(3, &funcs_sec, &mut module);
    // Each body: local.get 0, then `ops` times (i32.const k, i32.mul,
    // local.get 0, i32.add), end.
    let mut body = vec![0u8]; // no locals
    body.extend_from_slice(&[0x20, 0]);
    for k in 0..ops {
        body.push(0x41);
        leb(k % 64 + 1, &mut body);
        body.extend_from_slice(&[0x6c, 0x20, 0, 0x6a]);
    }
    body.push(0x0b);
    let mut code = Vec::new();
    leb(funcs, &mut code);
    for _ in 0..funcs {
        leb(body.len() as u32, &mut code);
        code.extend_from_slice(&body);
    }
    section(10, &code, &mut module);
    // The component: its preamble and one core module section.
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    section(1, &module, &mut component);
    component
}

#[test]
fn sigint_during_a_slow_compile_exits_promptly() {
    let dir = fresh_dir("sigint");
    let big = dir.join("big.wasm");
    std::fs::write(&big, big_component(2000, 1000)).unwrap();
    let cache = dir.join("cache");
    let mut child = host_with_cache(&cache)
        .arg(&big)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its stderr, line by line, on a thread (the test never blocks on it).
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.iter().any(|l: &String| l.contains("compiling big")) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => seen.push(l),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no compile message: {seen:?}");
            }
        }
    }
    // Well inside the compile (which takes many seconds).
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    send_signal(&child, "INT");
    let status = wait_exit(
        &mut child,
        Duration::from_secs(20),
        "callop-host after SIGINT",
    );
    let took = sent.elapsed();
    reader.join().unwrap();
    seen.extend(rx.try_iter());
    assert_eq!(status.code(), Some(130), "{seen:?}");
    assert!(
        took < Duration::from_millis(2500),
        "exit {took:?} after SIGINT"
    );
    assert!(
        seen.iter().any(|l| l.contains("interrupted by SIGINT")),
        "{seen:?}"
    );
    // Nothing half-written stays in the cache.
    let left: Vec<String> = std::fs::read_dir(&cache)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.iter().all(|n| !n.ends_with(".cwasm")),
        "an entry after an interrupted compile: {left:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_cache_cap_evicts_the_least_recently_used_entries() {
    let dir = fresh_dir("lru");
    let ticker = compile_one(&dir, &plugin("ticker"), &[]);
    let relay = compile_one(&dir, &plugin("relay"), &[]);
    let idle = compile_one(&dir, &plugin("idle-worker"), &[]);
    // ticker is the oldest entry, relay the next, idle-worker the newest...
    set_last_use(&dir, &ticker, Duration::from_secs(3 * 3600));
    set_last_use(&dir, &relay, Duration::from_secs(2 * 3600));
    set_last_use(&dir, &idle, Duration::from_secs(3600));
    // ...until a run uses ticker: now it is the most recently used.
    let o = run(host_with_cache(&dir)
        .arg(plugin("ticker"))
        .args(["--", "--every", "1ms", "--count", "1"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        !text(&o.stderr).contains("compiling"),
        "{}",
        text(&o.stderr)
    );
    // Four entries of about 0.27 MiB do not fit in 1 MiB: a fourth store
    // evicts relay (least recently used) and keeps the rest.
    let sizes: u64 = entries(&dir)
        .iter()
        .map(|e| std::fs::metadata(dir.join(e)).unwrap().len())
        .sum();
    assert!(sizes < 1 << 20, "the test assumes small entries: {sizes}");
    let counter = compile_one(&dir, &plugin("line-counter"), &["--cache-max-size", "1"]);
    let left = entries(&dir);
    assert!(!left.contains(&relay), "relay kept: {left:?}");
    assert!(!dir.join(relay.replace(".cwasm", ".blake3")).exists());
    for kept in [&ticker, &counter] {
        assert!(left.contains(kept), "{kept} evicted: {left:?}");
    }
    let total: u64 = left
        .iter()
        .map(|e| std::fs::metadata(dir.join(e)).unwrap().len())
        .sum();
    assert!(total <= 1 << 20, "{total} bytes left");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cache_list_and_clear() {
    let dir = fresh_dir("list");
    let cache = |action: &str| {
        run(Command::new(host_bin())
            .args(["cache", action, "--cache-dir"])
            .arg(&dir))
    };
    let o = cache("list");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("total: 0 entries"),
        "{}",
        text(&o.stdout)
    );
    let a = compile_one(&dir, &plugin("ticker"), &[]);
    let b = compile_one(&dir, &plugin("relay"), &[]);
    let o = cache("list");
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(out.contains(&format!("cache: {}", dir.display())), "{out}");
    // The size is what the two entries take on disk (artifacts and sidecars).
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let total = format!(
        "total: 2 entries, {:.1} MiB",
        bytes as f64 / (1 << 20) as f64
    );
    assert!(out.contains(&total), "{total}: {out}");
    for e in [&a, &b] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&e[..16]))
            .unwrap_or_else(|| panic!("{e} not listed: {out}"));
        assert!(line.contains(" MiB") && line.ends_with("s ago"), "{line}");
    }
    let o = cache("clear");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).starts_with("removed 2 entries"),
        "{}",
        text(&o.stdout)
    );
    assert!(entries(&dir).is_empty());
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert!(names.is_empty(), "left: {names:?}");
    assert!(text(&cache("list").stdout).contains("total: 0 entries"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_isolate_refusal_names_the_flag() {
    // ping alone: its first connect to `pong/in` is refused by the policy
    // before any lookup, and ping's init fails with that error.
    let pp = plugin("ping-pong");
    let o = run(callop_tests::host_cmd()
        .arg("--isolate")
        .arg(format!("{}@ping=--role,ping,--count,3", pp.display())));
    let err = text(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("policy forbids"), "{err}");
    assert!(
        err.contains("--isolate"),
        "the refusal names the flag: {err}"
    );
}

#[test]
fn default_log_lines_have_no_module_path() {
    let ticker = |log: &str| {
        let mut c = callop_tests::host_cmd();
        c.env("RUST_LOG", log)
            .arg(plugin("ticker"))
            .args(["--", "--every", "1ms", "--count", "1"]);
        text(&run(&mut c).stderr)
    };
    let info = ticker("info");
    let started = info
        .lines()
        .find(|l| l.contains("plugin started"))
        .unwrap_or_else(|| panic!("no start line: {info}"));
    assert!(started.contains("plugin=ticker "), "{started}");
    assert!(!info.contains("callop_plugin_host::"), "{info}");
    // At debug the module paths are back.
    let debug = ticker("callop_plugin_host=debug");
    assert!(
        debug.contains("callop_plugin_host::host::lifecycle: plugin started"),
        "{debug}"
    );
}
