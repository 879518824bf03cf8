//! End-to-end tests of the grants through WASI: a Rust plugin (`io-probe`'s
//! `std-*` probes) using `std::fs`, `std::net` and `std::io::stdin` in the
//! `callop-host` binary gets exactly what `--dir`, `--allow-net` and
//! `--stdin` name, as the `io` interface does (see `guest_io.rs`), and
//! nothing without them. Network tests use 127.0.0.1 only.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Runs `io-probe` in `callop-host` with the host flags `flags` and the
/// probes `probes`, stdin from `stdin`; returns (success, stdout, stderr).
/// The host is killed (and the test fails) after 30 s.
fn probe(flags: &[&str], probes: &[&str], stdin: Stdio) -> (bool, String, String) {
    let p = callop_tests::plugin("io-probe");
    let mut child = Command::new(callop_tests::host_bin())
        .arg("--cache-dir")
        .arg(callop_tests::cache_dir())
        // Grants, not deadlines (a loaded machine).
        .args(["--callback-timeout", "60000"])
        .arg(&p)
        .args(flags)
        .arg("--")
        .args(probes)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn callop-host");
    let status = callop_tests::wait_exit(&mut child, Duration::from_secs(30), "io-probe");
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
    (status.success(), out, err)
}

/// The report line of probe `p` (`[io_probe] ALLOWED p`, `... DENIED p: ...`).
fn line(out: &str, p: &str) -> String {
    out.lines()
        .filter(|l| !l.contains("] CONTENT "))
        .find(|l| l.contains(&format!(" {p}:")) || l.ends_with(&format!(" {p}")))
        .unwrap_or_else(|| panic!("no line for {p} in {out}"))
        .to_string()
}

/// The `CONTENT` line of probe `p`, if it printed one.
fn content(out: &str, p: &str) -> Option<String> {
    let tag = format!("] CONTENT {p}: ");
    out.lines()
        .find_map(|l| l.split_once(&tag).map(|(_, c)| c.to_string()))
        .or_else(|| {
            // An empty content has no text after the colon.
            let bare = format!("] CONTENT {p}:");
            out.lines()
                .find(|l| l.ends_with(&bare))
                .map(|_| String::new())
        })
}

fn allowed(out: &str, p: &str) {
    let l = line(out, p);
    assert!(l.contains(&format!("ALLOWED {p}")), "{p}: got `{l}`\n{out}");
}

/// Refused as a permission error (`DENIED`, `PermissionDenied`).
fn denied(out: &str, p: &str) {
    let l = line(out, p);
    assert!(
        l.contains(&format!("DENIED {p}: PermissionDenied")),
        "{p}: expected DENIED, got `{l}`\n{out}"
    );
}

/// Not reachable: the path names no granted directory (`NotFound`).
fn not_found(out: &str, p: &str) {
    let l = line(out, p);
    assert!(
        l.contains(&format!("FAILED {p}: NotFound")),
        "{p}: expected NotFound, got `{l}`\n{out}"
    );
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("callop-wasi-grants-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A granted directory `granted/` (with `ok.txt`, `sub/`, and symlinks
/// out of it to `../secret.txt`) beside a secret file.
fn escape_tree(name: &str) -> PathBuf {
    let tmp = tempdir(name);
    let granted = tmp.join("granted");
    std::fs::create_dir_all(granted.join("sub")).unwrap();
    std::fs::write(granted.join("ok.txt"), "ok\n").unwrap();
    std::fs::write(tmp.join("secret.txt"), "secret\n").unwrap();
    std::os::unix::fs::symlink(tmp.join("secret.txt"), granted.join("link")).unwrap();
    std::os::unix::fs::symlink("../../secret.txt", granted.join("sub/rel-link")).unwrap();
    tmp
}

/// A TCP listener on 127.0.0.1 whose thread sends what each accepted
/// connection wrote (up to 4 bytes) on the returned channel; it stops after
/// 30 s.
fn tcp_sink() -> (u16, mpsc::Receiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            match l.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut got = Vec::new();
                    let _ = (&mut s).take(4).read_to_end(&mut got);
                    if tx.send(got).is_err() {
                        return;
                    }
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (port, rx)
}

#[test]
fn std_fs_reads_a_granted_file_and_nothing_without_the_grant() {
    let tmp = escape_tree("read");
    let dir = format!("{}::/data", tmp.join("granted").display());
    let (ok, out, err) = probe(&["--dir", &dir], &["std-read:/data/ok.txt"], Stdio::null());
    assert!(ok, "{err}");
    allowed(&out, "std-read:/data/ok.txt");
    assert_eq!(
        content(&out, "std-read:/data/ok.txt").as_deref(),
        Some("ok")
    );
    // The same without the grant: no preopen, nothing to read.
    let (ok, out, err) = probe(&[], &["std-read:/data/ok.txt"], Stdio::null());
    assert!(ok, "{err}");
    not_found(&out, "std-read:/data/ok.txt");
    assert_eq!(content(&out, "std-read:/data/ok.txt"), None);
}

#[test]
fn std_fs_escape_attempts_are_refused() {
    let tmp = escape_tree("escape");
    let dir = format!("{}::/data", tmp.join("granted").display());
    let outside = format!("std-read:{}", tmp.join("secret.txt").display());
    let probes = [
        "std-read:/data/../secret.txt",
        "std-read:/data/sub/../../secret.txt",
        "std-read:/data/link",
        "std-read:/data/sub/rel-link",
        "std-read:/etc/passwd",
        &outside,
        "std-list:/",
        "std-write:/data/../evil.txt",
    ];
    let (ok, out, err) = probe(&["--dir", &dir], &probes, Stdio::null());
    assert!(ok, "{err}");
    // `..` and symlinks out of the dir: refused by cap-std.
    denied(&out, "std-read:/data/../secret.txt");
    denied(&out, "std-read:/data/sub/../../secret.txt");
    denied(&out, "std-read:/data/link");
    denied(&out, "std-read:/data/sub/rel-link");
    denied(&out, "std-write:/data/../evil.txt");
    // Absolute paths outside every grant: there is nothing there.
    not_found(&out, "std-read:/etc/passwd");
    not_found(&out, &outside);
    not_found(&out, "std-list:/");
    // Nothing was read.
    assert!(!out.contains("] CONTENT "), "{out}");
    assert!(!tmp.join("evil.txt").exists());
}

#[test]
fn std_fs_read_only_dir_refuses_writes_and_read_write_dir_takes_them() {
    let tmp = tempdir("ro");
    std::fs::create_dir_all(tmp.join("ro")).unwrap();
    std::fs::create_dir_all(tmp.join("rw")).unwrap();
    std::fs::write(tmp.join("ro/r.txt"), "keep\n").unwrap();
    let ro = format!("{}::/ro:ro", tmp.join("ro").display());
    let rw = format!("{}::/rw", tmp.join("rw").display());
    let (ok, out, err) = probe(
        &["--dir", &ro, "--dir", &rw],
        &[
            "std-read:/ro/r.txt",
            "std-write:/ro/r.txt",
            "std-write:/ro/new.txt",
            "std-write:/rw/new.txt",
        ],
        Stdio::null(),
    );
    assert!(ok, "{err}");
    allowed(&out, "std-read:/ro/r.txt");
    assert_eq!(content(&out, "std-read:/ro/r.txt").as_deref(), Some("keep"));
    denied(&out, "std-write:/ro/r.txt");
    denied(&out, "std-write:/ro/new.txt");
    assert_eq!(
        std::fs::read_to_string(tmp.join("ro/r.txt")).unwrap(),
        "keep\n"
    );
    assert!(!tmp.join("ro/new.txt").exists());
    allowed(&out, "std-write:/rw/new.txt");
    assert_eq!(
        std::fs::read_to_string(tmp.join("rw/new.txt")).unwrap(),
        "probe"
    );
}

#[test]
fn std_net_connects_to_a_granted_address_only() {
    let (port, rx) = tcp_sink();
    let ok_addr = format!("std-connect:127.0.0.1:{port}");
    let other = format!("std-connect:127.0.0.1:{}", port.wrapping_add(1).max(1));
    let bind = format!("std-bind:127.0.0.1:{port}");
    let grant = format!("connect:127.0.0.1:{port}");
    let (ok, out, err) = probe(
        &["--allow-net", &grant],
        &[&ok_addr, &other, &bind, "std-bind:0.0.0.0:0"],
        Stdio::null(),
    );
    assert!(ok, "{err}");
    allowed(&out, &ok_addr);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        b"wasi",
        "the bytes reached the granted listener"
    );
    denied(&out, &other);
    let other_addr = other.trim_start_matches("std-connect:");
    assert!(
        err.contains(&format!(
            "WASI socket: connect to {other_addr} denied: grant it with --allow-net connect:{other_addr}"
        )),
        "{err}"
    );
    // A connect grant does not let the plugin listen.
    denied(&out, &bind);
    denied(&out, "std-bind:0.0.0.0:0");
    // The same without the grant, and with a bind-only grant.
    let bind_only = format!("bind:127.0.0.1:{port}");
    for flags in [&[][..], &["--allow-net", bind_only.as_str()][..]] {
        let (ok, out, err) = probe(flags, &[&ok_addr], Stdio::null());
        assert!(ok, "{err}");
        denied(&out, &ok_addr);
    }
    assert!(
        rx.try_recv().is_err(),
        "no connection arrived without the grant"
    );
}

#[test]
fn std_net_binds_only_a_granted_address() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("std-bind:127.0.0.1:{port}");
    let grant = format!("bind:127.0.0.1:{port}");
    let (ok, out, err) = probe(
        &["--allow-net", &grant],
        &[&bind, "std-bind:127.0.0.1:0", "std-bind:0.0.0.0:0"],
        Stdio::null(),
    );
    assert!(ok, "{err}");
    allowed(&out, &bind);
    denied(&out, "std-bind:127.0.0.1:0");
    denied(&out, "std-bind:0.0.0.0:0");
}

#[test]
fn std_net_udp_sends_only_to_granted_addresses() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = sink.local_addr().unwrap().port();
    let send_ok = format!("std-udp-send:0.0.0.0:0>127.0.0.1:{port}");
    let send_other = "std-udp-send:0.0.0.0:0>127.0.0.1:9";
    let grant = format!("connect:127.0.0.1:{port}");
    let (ok, out, err) = probe(
        &["--allow-net", &grant],
        &[&send_ok, send_other],
        Stdio::null(),
    );
    assert!(ok, "{err}");
    allowed(&out, &send_ok);
    let mut buf = [0u8; 16];
    let (n, _) = sink.recv_from(&mut buf).expect("the datagram arrived");
    assert_eq!(&buf[..n], b"probe");
    denied(&out, send_other);
    // Without any grant even the socket is refused.
    let (ok, out, err) = probe(&[], &[&send_ok], Stdio::null());
    assert!(ok, "{err}");
    denied(&out, &send_ok);
}

#[test]
fn std_stdin_reads_the_hosts_stdin_only_when_granted() {
    let tmp = tempdir("stdin");
    let input = tmp.join("input.txt");
    std::fs::write(&input, "first line\nsecond\n").unwrap();
    let file = || Stdio::from(std::fs::File::open(&input).unwrap());
    let (ok, out, err) = probe(&["--stdin"], &["std-stdin"], file());
    assert!(ok, "{err}");
    allowed(&out, "std-stdin");
    assert_eq!(content(&out, "std-stdin").as_deref(), Some("first line"));
    // Without the grant WASI stdin is closed: end of input at once.
    let (ok, out, err) = probe(&[], &["std-stdin"], file());
    assert!(ok, "{err}");
    assert_eq!(content(&out, "std-stdin").as_deref(), Some(""), "{out}");
}

#[test]
fn std_stdin_waiting_past_the_budget_fails_the_plugin() {
    // A blocking read of a stdin that never gets data: the host bounds it
    // by the call's budget (init: 1 s by default), the plugin fails, the
    // host does not hang.
    let p = callop_tests::plugin("io-probe");
    let start = Instant::now();
    let mut child = Command::new(callop_tests::host_bin())
        .arg("--cache-dir")
        .arg(callop_tests::cache_dir())
        .arg(&p)
        .args(["--stdin", "--", "std-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn callop-host");
    // Held open, never written.
    let _stdin = child.stdin.take();
    let status = callop_tests::wait_exit(&mut child, Duration::from_secs(30), "blocked stdin");
    let took = start.elapsed();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("blocked in a host call"), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn std_fs_relative_paths_resolve_in_a_dir_granted_as_dot() {
    // `--dir HOST::.`: `std::fs::read_to_string("ok.txt")` works, `..`
    // still cannot leave it.
    let tmp = escape_tree("dot");
    let dir = format!("{}::.", tmp.join("granted").display());
    let (ok, out, err) = probe(
        &["--dir", &dir],
        &[
            "std-read:ok.txt",
            "std-read:sub/../ok.txt",
            "std-read:../secret.txt",
        ],
        Stdio::null(),
    );
    assert!(ok, "{err}");
    assert_eq!(content(&out, "std-read:ok.txt").as_deref(), Some("ok"));
    assert_eq!(
        content(&out, "std-read:sub/../ok.txt").as_deref(),
        Some("ok")
    );
    denied(&out, "std-read:../secret.txt");
}

#[test]
fn a_granted_dir_that_does_not_exist_is_logged_and_reaches_nothing() {
    let tmp = tempdir("missing");
    let dir = format!("{}::/gone", tmp.join("gone").display());
    let (ok, out, err) = probe(&["--dir", &dir], &["std-read:/gone/x"], Stdio::null());
    assert!(ok, "{err}");
    not_found(&out, "std-read:/gone/x");
    assert!(err.contains("is not preopened for WASI"), "{err}");
}

#[test]
fn refused_wasi_socket_uses_are_logged_under_the_rate_limit() {
    // 200 refused connects in one call: a handful of log lines and one
    // summary, not 200 lines.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let grant = format!("connect:127.0.0.1:{port}");
    let refused = format!("std-connect:127.0.0.1:{}", port.wrapping_add(1).max(1));
    let probes = vec![refused.as_str(); 200];
    let (ok, out, err) = probe(&["--allow-net", &grant], &probes, Stdio::null());
    assert!(ok, "{err}");
    assert_eq!(out.matches(&format!("DENIED {refused}")).count(), 200);
    let logged = err
        .lines()
        .filter(|l| l.contains("WASI socket: connect to"))
        .count();
    assert!((1..=10).contains(&logged), "{logged} lines:\n{err}");
    assert!(err.contains("more like"), "{err}");
}

#[test]
fn embedding_grants_reach_std_fs_too() {
    // `Host::grant` (the library path): a read-write `DirGrant` lets
    // `std::fs::write` create a file; the same plugin without the grant
    // creates nothing.
    use callop_plugin_host::{Capabilities, DirGrant, ExitReason, Host};
    let tmp = tempdir("embed");
    let probe = callop_tests::plugin("io-probe");
    let mut ev: callop::EventLoop<()> = callop::EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), callop_tests::config()).unwrap();
    host.grant(
        "granted",
        Capabilities::new().dir(DirGrant::new(&tmp, "/rw").unwrap()),
    );
    let a = callop_tests::args(&["std-write:/rw/new.txt"]);
    host.load_file(&probe, "granted", &a).unwrap();
    callop_tests::run_until_empty(&mut ev, &host, &mut (), Duration::from_secs(30));
    assert_eq!(
        std::fs::read_to_string(tmp.join("new.txt")).unwrap(),
        "probe"
    );
    std::fs::remove_file(tmp.join("new.txt")).unwrap();
    host.load_file(&probe, "ungranted", &a).unwrap();
    callop_tests::run_until_empty(&mut ev, &host, &mut (), Duration::from_secs(30));
    assert!(!tmp.join("new.txt").exists());
    let exits = host.exits();
    assert_eq!(exits.len(), 2, "{exits:?}");
    assert!(
        exits.iter().all(|e| e.reason == ExitReason::Finished),
        "{exits:?}"
    );
}

#[test]
fn a_restarted_plugin_keeps_its_grants() {
    let tmp = escape_tree("restart");
    let dir = format!("{}::/data:ro", tmp.join("granted").display());
    // The first run traps before its probes; the restart runs them with
    // the same grants, through the io interface and through WASI.
    let (_, out, err) = probe(
        &["--dir", &dir, "--restart", "on-failure:2"],
        &[
            "trap-first-run",
            "read:/data/ok.txt",
            "std-read:/data/ok.txt",
        ],
        Stdio::null(),
    );
    assert!(err.contains("restarting in"), "{err}");
    allowed(&out, "read:/data/ok.txt");
    allowed(&out, "std-read:/data/ok.txt");
}

#[test]
fn a_fifo_in_a_granted_dir_is_refused_at_once_through_the_io_interface() {
    let tmp = escape_tree("fifo");
    let fifo = tmp.join("granted").join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let dir = format!("{}::/data", tmp.join("granted").display());
    let start = Instant::now();
    // Without a writer, opening it would wait for one: on the loop thread.
    let (_, out, err) = probe(&["--dir", &dir], &["read:/data/fifo"], Stdio::null());
    assert!(start.elapsed() < Duration::from_secs(10), "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("read:/data/fifo"))
        .unwrap_or_else(|| panic!("no report\n{out}\n{err}"));
    assert!(!line.contains("ALLOWED"), "{line}");
    assert!(line.contains("not a regular file"), "{line}");
}
