//! End-to-end tests of the `io` interface: real plugins (built from
//! `plugins/`) in a real host, talking to real sockets, pipes and signals.
//! Network tests use 127.0.0.1 only.
//!
//! In-process tests use the embedding API (`Host::grant`); tests of stdin,
//! signals and the command-line flags run the `callop-host` binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use callop::EventLoop;
use callop_plugin_host::{
    Capabilities, ExitReason, Host, HostConfig, Limits, NetDirection, NetRule, PluginExit,
};
use callop_tests::send_signal;

// ---------------------------------------------------------------- helpers

/// Builds the example plugins once (`plugins/build.sh`, through the shared
/// helpers) and checks that the `callop-host` binary was built.
fn build() {
    let _ = callop_tests::plugins_dir();
}

fn plugin(name: &str) -> PathBuf {
    callop_tests::plugin(name)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A host running one plugin in its own thread (the host is not `Send`).
struct HostThread {
    stop: Arc<AtomicBool>,
    unload: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<Vec<PluginExit>>>,
}

impl HostThread {
    fn start(
        plugin_name: &str,
        caps: impl FnOnce() -> Capabilities + Send + 'static,
        args: &[&str],
    ) -> HostThread {
        build();
        let path = plugin(plugin_name);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let unload = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (s2, u2) = (stop.clone(), unload.clone());
        let thread = thread::spawn(move || {
            let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
            // These tests are about I/O semantics under heavy load (500 client threads on 2
            // cores): one dispatch may serve hundreds of connections through a debug-build
            // host, which can spend more than the default 100 ms of CPU. Deadlines are
            // tested in isolation.rs.
            let config = HostConfig {
                limits: Limits {
                    callback_timeout: Some(Duration::from_secs(60)),
                    ..Limits::default()
                },
                ..HostConfig::default()
            };
            let host = Host::new(ev.handle(), config).unwrap();
            host.grant("p", caps());
            let id = host.load_file(&path, "p", &args);
            ready_tx
                .send(id.as_ref().map(|_| ()).map_err(|e| e.to_string()))
                .unwrap();
            let id = id.unwrap();
            while !s2.load(Ordering::Relaxed) && !host.is_empty() {
                if u2.swap(false, Ordering::Relaxed) {
                    host.unload(id);
                }
                ev.dispatch(Some(Duration::from_millis(20)), &mut ())
                    .unwrap();
            }
            host.exits()
        });
        ready_rx.recv().unwrap().expect("plugin loads");
        HostThread {
            stop,
            unload,
            thread: Some(thread),
        }
    }

    /// Waits for the plugin to end by itself.
    fn join(mut self, timeout: Duration) -> Vec<PluginExit> {
        let t = self.thread.take().unwrap();
        let end = Instant::now() + timeout;
        while !t.is_finished() {
            assert!(Instant::now() < end, "plugin did not end in {timeout:?}");
            thread::sleep(Duration::from_millis(10));
        }
        t.join().unwrap()
    }
}

impl Drop for HostThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn connect_retry(addr: SocketAddr) -> TcpStream {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return s,
            Err(e) if Instant::now() < end => {
                let _ = e;
                thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("connect {addr}: {e}"),
        }
    }
}

/// 500 concurrent connections × 100 messages each; every byte must come back.
fn tcp_echo_load(extra: &'static [&'static str]) {
    const CONNS: usize = 500;
    const MSGS: usize = 100;
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = addr.to_string();
    let mut args = vec!["--listen", listen.as_str(), "--exit-after", "500"];
    args.extend_from_slice(extra);
    let h = HostThread::start(
        "echo-server",
        move || Capabilities::new().allow_net(NetRule::socket(NetDirection::Both, addr)),
        &args,
    );
    let barrier = Arc::new(Barrier::new(CONNS));
    let clients: Vec<_> = (0..CONNS)
        .map(|c| {
            let barrier = barrier.clone();
            thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let mut s = connect_retry(addr);
                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    barrier.wait(); // all 500 connections are open at once
                    let mut total = 0;
                    for m in 0..MSGS {
                        // Distinct content and length per message.
                        let msg: Vec<u8> = format!("conn {c} msg {m} ")
                            .repeat(1 + (c + m) % 7)
                            .into_bytes();
                        s.write_all(&msg).unwrap();
                        let mut back = vec![0u8; msg.len()];
                        s.read_exact(&mut back).unwrap();
                        assert_eq!(back, msg, "connection {c} message {m}");
                        total += msg.len();
                    }
                    s.shutdown(std::net::Shutdown::Write).unwrap();
                    let mut rest = Vec::new();
                    s.read_to_end(&mut rest).unwrap();
                    assert!(rest.is_empty(), "no extra bytes");
                    total
                })
                .unwrap()
        })
        .collect();
    let total: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(total > CONNS * MSGS * 10);
    let exits = h.join(Duration::from_secs(30));
    assert_eq!(exits.len(), 1);
    assert!(
        matches!(
            exits[0].reason,
            ExitReason::Finished | ExitReason::Stopped(0)
        ),
        "{:?}",
        exits[0]
    );
}

// ------------------------------------------------------------------ TCP

#[test]
fn tcp_echo_500_connections_callbacks() {
    tcp_echo_load(&[]);
}

#[test]
fn tcp_echo_500_connections_async() {
    tcp_echo_load(&["--async"]);
}

#[test]
fn tcp_echo_edge_mode_drains_large_writes() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = addr.to_string();
    let _h = HostThread::start(
        "echo-server",
        move || Capabilities::new().allow_net(NetRule::socket(NetDirection::Both, addr)),
        &["--listen", &listen, "--edge"],
    );
    let mut s = connect_retry(addr);
    let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut r = s.try_clone().unwrap();
    let reader = thread::spawn(move || {
        let mut back = vec![0u8; 4_000_000];
        r.read_exact(&mut back).unwrap();
        back
    });
    s.write_all(&data).unwrap();
    assert!(reader.join().unwrap() == data);
}

/// An edge-mode source that is not drained stalls until new data arrives —
/// exactly like an edge-triggered source of the host loop (documented
/// behaviour, see `io.mode` in the WIT).
#[test]
fn tcp_echo_edge_mode_without_draining_stalls_until_new_data() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = addr.to_string();
    let _h = HostThread::start(
        "echo-server",
        move || Capabilities::new().allow_net(NetRule::socket(NetDirection::Both, addr)),
        &["--listen", &listen, "--edge-no-drain", "--chunk", "16"],
    );
    let mut s = connect_retry(addr);
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.write_all(&[b'a'; 1000]).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break, // timed out: stalled
        }
    }
    assert_eq!(got.len(), 16, "one chunk per edge, then a stall");
    // New data makes a new edge: one more chunk of the old data comes back.
    s.write_all(b"b").unwrap();
    let n = s.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], &[b'a'; 16][..]);
}

#[test]
fn unloading_a_plugin_closes_its_sockets() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = addr.to_string();
    let h = HostThread::start(
        "echo-server",
        move || Capabilities::new().allow_net(NetRule::socket(NetDirection::Both, addr)),
        &["--listen", &listen],
    );
    let mut s = connect_retry(addr);
    s.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    h.unload.store(true, Ordering::Relaxed);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).unwrap(),
        0,
        "the connection is closed by the host"
    );
    // And the listener is gone.
    let exits = h.join(Duration::from_secs(10));
    assert_eq!(exits[0].reason, ExitReason::Unloaded);
    assert!(TcpStream::connect(addr).is_err());
}

// ------------------------------------------------------------------ UDP

#[test]
fn udp_echo_every_datagram_comes_back() {
    const CLIENTS: usize = 50;
    const MSGS: usize = 100;
    let port = free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let server: SocketAddr = listen.parse().unwrap();
    let h = HostThread::start(
        "udp-echo",
        // bind on the port, send back to any 127.0.0.1 client
        move || {
            Capabilities::new().allow_net(NetRule::new(
                NetDirection::Both,
                IpAddr::from([127, 0, 0, 1]),
                0..=u16::MAX,
            ))
        },
        &["--listen", &listen],
    );
    thread::sleep(Duration::from_millis(200));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            thread::spawn(move || {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                let mut buf = [0u8; 2048];
                for m in 0..MSGS {
                    let msg = format!("client {c} datagram {m} ")
                        .repeat(1 + m % 20)
                        .into_bytes();
                    // Stop-and-wait with retransmission (UDP may drop).
                    let mut tries = 0;
                    loop {
                        s.send_to(&msg, server).unwrap();
                        match s.recv_from(&mut buf) {
                            Ok((n, from)) if from == server && buf[..n] == msg[..] => break,
                            Ok(_) => continue, // a late duplicate of an earlier datagram
                            Err(_) => {
                                tries += 1;
                                assert!(tries < 20, "client {c} datagram {m} never echoed");
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    drop(h);
}

// ------------------------------------------------------------- CLI tests

fn run_cli(args: &[&str], stdin: Stdio) -> Child {
    build();
    Command::new(callop_tests::host_bin())
        .arg("--cache-dir")
        .arg(callop_tests::cache_dir())
        // I/O semantics, not deadlines (see `HostThread::start`).
        .args(["--callback-timeout", "60000"])
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn callop-host")
}

fn output_of(child: Child) -> (bool, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn line_counter_counts_a_million_lines_of_stdin() {
    let lc = plugin("line-counter");
    let mut child = run_cli(&[lc.to_str().unwrap(), "--stdin"], Stdio::piped());
    let mut stdin = child.stdin.take().unwrap();
    let writer = thread::spawn(move || {
        let mut w = std::io::BufWriter::new(&mut stdin);
        let mut bytes = 0u64;
        let mut words = 0u64;
        for i in 0..1_000_000u64 {
            let line = if i % 3 == 0 {
                format!("line {i} has five words\n")
            } else {
                format!("{i}\n")
            };
            words += line.split_whitespace().count() as u64;
            bytes += line.len() as u64;
            w.write_all(line.as_bytes()).unwrap();
        }
        w.flush().unwrap();
        (words, bytes)
    });
    let (words, bytes) = writer.join().unwrap();
    let (ok, out, err) = output_of(child);
    assert!(ok, "{err}");
    let expected = format!("lines=1000000 words={words} bytes={bytes}");
    assert!(
        out.contains(&expected),
        "expected `{expected}` in {out:?}\n{err}"
    );
}

/// A regular file cannot be polled by the OS; the host reports it always
/// ready and the plugin reads it to the end.
#[test]
fn line_counter_reads_a_regular_file_as_stdin() {
    let tmp = tempdir("stdin-file");
    let f = tmp.join("input.txt");
    let text: String = (0..10_000).map(|i| format!("{i} two\n")).collect();
    std::fs::write(&f, &text).unwrap();
    let lc = plugin("line-counter");
    for mode in [None, Some("--level")] {
        let mut args = vec![lc.to_str().unwrap(), "--stdin"];
        if let Some(m) = mode {
            args.extend(["--", m]);
        }
        let (ok, out, err) = output_of(run_cli(
            &args,
            Stdio::from(std::fs::File::open(&f).unwrap()),
        ));
        assert!(ok, "{err}");
        let expected = format!("lines=10000 words=20000 bytes={}", text.len());
        assert!(
            out.contains(&expected),
            "{mode:?}: expected `{expected}` in {out:?}"
        );
    }
}

#[test]
fn unix_sockets_work_inside_a_read_write_dir_only() {
    let tmp = tempdir("unix");
    std::fs::create_dir_all(tmp.join("rw")).unwrap();
    std::fs::create_dir_all(tmp.join("ro")).unwrap();
    let probe = plugin("io-probe");
    let rw = format!("{}::/rw", tmp.join("rw").display());
    let ro = format!("{}::/ro:ro", tmp.join("ro").display());
    let (ok, out, err) = output_of(run_cli(
        &[
            probe.to_str().unwrap(),
            "--dir",
            &rw,
            "--dir",
            &ro,
            "--",
            "unix-pair:/rw/s.sock",
            "unix-bind:/ro/s.sock",
            "unix-bind:/rw/../x.sock",
        ],
        Stdio::null(),
    ));
    assert!(ok, "{err}");
    assert!(out.contains("ALLOWED unix-pair:/rw/s.sock"), "{out}");
    // The socket file went with its listener (the next bind succeeds).
    assert!(!tmp.join("rw/s.sock").exists());
    assert!(
        out.contains(
            "DENIED unix-bind:/ro/s.sock: bind /ro/s.sock denied: /ro is granted read-only"
        ),
        "{out}"
    );
    assert!(out.contains("DENIED unix-bind:/rw/../x.sock"), "{out}");
    assert!(!tmp.join("x.sock").exists());
}

#[test]
fn escape_attempts_are_denied_with_the_flag_that_grants_them() {
    let tmp = tempdir("escape");
    let granted = tmp.join("granted");
    std::fs::create_dir_all(granted.join("sub")).unwrap();
    std::fs::write(granted.join("ok.txt"), "ok").unwrap();
    std::fs::write(tmp.join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(tmp.join("secret.txt"), granted.join("link")).unwrap();
    std::os::unix::fs::symlink("../../secret.txt", granted.join("sub/rel-link")).unwrap();
    // A socket outside the granted dir, reached through a symlink inside it.
    let outside_sock = tmp.join("outside.sock");
    let _l = std::os::unix::net::UnixListener::bind(&outside_sock).unwrap();
    std::os::unix::fs::symlink(&outside_sock, granted.join("sock-link")).unwrap();
    let port = free_port();
    let dir = format!("{}::/data", granted.display());
    let probe = plugin("io-probe");
    let bind_ok = format!("bind:127.0.0.1:{port}");
    let stale = format!("stale-source:127.0.0.1:{port}");
    let udp_send = format!("udp-send:127.0.0.1:{port}>10.1.2.3:53");
    let probes = [
        "connect:10.0.0.1:80",
        &format!("connect:127.0.0.1:{}", port + 1),
        "bind:0.0.0.0:8080",
        &bind_ok,
        &udp_send,
        "read:/data/ok.txt",
        "read:/data/../secret.txt",
        "read:/data/sub/../../secret.txt",
        "read:/data/link",
        "read:/data/sub/rel-link",
        "read:/etc/passwd",
        "list:/",
        "unix-connect:/data/sock-link",
        "unix-bind:/data/../evil.sock",
        "fd:db",
        "fd-twice:input",
        "stdin",
        "signal:USR2",
        "signal:TERM",
        &stale,
    ];
    let mut args = vec![probe.to_str().unwrap().to_string(), "--dir".into(), dir];
    args.extend([
        "--allow-net".into(),
        format!("127.0.0.1:{port}"),
        "--fd".into(),
        "input=0".into(),
        "--".into(),
    ]);
    args.extend(probes.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = output_of(run_cli(&args, Stdio::null()));
    assert!(ok, "{err}");
    let line = |p: &str| -> String {
        out.lines()
            .find(|l| l.contains(&format!(" {p}:")) || l.ends_with(&format!(" {p}")))
            .unwrap_or_else(|| panic!("no line for {p} in {out}"))
            .to_string()
    };
    let denied = |p: &str, msg: &str| {
        let l = line(p);
        assert!(
            l.contains(&format!("DENIED {p}: ")) && l.contains(msg),
            "{p}: expected DENIED with `{msg}`, got `{l}`"
        );
    };
    denied(
        "connect:10.0.0.1:80",
        "connect to 10.0.0.1:80 denied: grant it with --allow-net 10.0.0.1:80",
    );
    denied(
        &format!("connect:127.0.0.1:{}", port + 1),
        &format!("grant it with --allow-net 127.0.0.1:{}", port + 1),
    );
    denied(
        "bind:0.0.0.0:8080",
        "bind to 0.0.0.0:8080 denied: grant it with --allow-net 0.0.0.0:8080",
    );
    assert!(line(&bind_ok).contains("ALLOWED"));
    denied(
        &udp_send,
        "connect to 10.1.2.3:53 denied: grant it with --allow-net 10.1.2.3:53",
    );
    assert!(line("read:/data/ok.txt").contains("ALLOWED"));
    denied(
        "read:/data/../secret.txt",
        "outside the granted directory /data",
    );
    denied(
        "read:/data/sub/../../secret.txt",
        "outside the granted directory /data",
    );
    denied("read:/data/link", "outside the granted directory /data");
    denied(
        "read:/data/sub/rel-link",
        "outside the granted directory /data",
    );
    denied(
        "read:/etc/passwd",
        "not inside a granted directory; grant one with --dir",
    );
    denied("list:/", "--dir");
    denied("unix-connect:/data/sock-link", "symbolic link");
    denied("unix-bind:/data/../evil.sock", "--dir");
    denied("fd:db", "grant it with --fd db=N");
    denied("fd-twice:input", "already taken");
    denied("stdin", "grant it with --stdin");
    denied("signal:USR2", "grant it with --allow-signal USR2");
    denied("signal:TERM", "grant it with --allow-signal TERM");
    denied(&stale, "no source");
    assert!(!tmp.join("evil.sock").exists());
}

#[test]
fn sighup_reload_rereads_its_config_on_sighup() {
    let tmp = tempdir("sighup");
    std::fs::write(tmp.join("app.conf"), "version one\n").unwrap();
    let dir = format!("{}::/config:ro", tmp.display());
    let p = plugin("sighup-reload");
    let mut child = run_cli(
        &[p.to_str().unwrap(), "--dir", &dir, "--allow-signal", "HUP"],
        Stdio::null(),
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().expect("output").unwrap();
    assert!(next().contains("loaded generation 1: version one"));
    std::fs::write(tmp.join("app.conf"), "version two\n").unwrap();
    // The subscription is active once init returned; give the host a moment.
    thread::sleep(Duration::from_millis(300));
    send_signal(&child, "HUP");
    assert!(next().contains("loaded generation 2: version two"));
    // SIGHUP did not kill the host; SIGTERM shuts it down cleanly.
    send_signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn config_file_grants_capabilities_per_plugin() {
    let tmp = tempdir("config");
    let port = free_port();
    let cfg = tmp.join("callop.toml");
    std::fs::write(
        &cfg,
        format!("[plugins.probe]\nallow-net = [\"bind:127.0.0.1:{port}\"]\n"),
    )
    .unwrap();
    let probe = plugin("io-probe");
    let spec = format!("{}@probe", probe.display());
    let bind = format!("bind:127.0.0.1:{port}");
    let connect = format!("connect:127.0.0.1:{port}");
    let (ok, out, err) = output_of(run_cli(
        &[
            &spec,
            "--config",
            cfg.to_str().unwrap(),
            "--",
            &bind,
            &connect,
        ],
        Stdio::null(),
    ));
    assert!(ok, "{err}");
    assert!(out.contains(&format!("ALLOWED {bind}")), "{out}");
    assert!(out.contains(&format!("DENIED {connect}")), "{out}");
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("callop-guest-io-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
