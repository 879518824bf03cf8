//! End-to-end tests of `callop-host --metrics`, `callop-host top` and
//! `--stats-on-exit`: a real host serving its endpoint on 127.0.0.1, read
//! with a real HTTP client (`ureq`), validated by a real parser (Debian's
//! `promtool check metrics`, and `prometheus-parse` in Rust), and figures
//! that move exactly as a known workload says.
//!
//! `promtool` is required: `tests/run-all.sh` installs Debian's
//! `prometheus` package when it is missing; these tests fail (never skip)
//! without it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use callop_tests::{host_cmd, plugin, run, send_signal, text, wait_exit};

/// A running `callop-host --metrics 127.0.0.1:0 --forever ...`, its stderr
/// collected by a thread; killed when dropped.
struct LiveHost {
    child: Child,
    url: String,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl LiveHost {
    fn start(args: &[String]) -> LiveHost {
        let mut child = host_cmd()
            .args(["--metrics", "127.0.0.1:0", "--forever"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start callop-host");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut h = LiveHost {
            child,
            url: String::new(),
            stderr: rx,
            seen: Vec::new(),
        };
        // A first run compiles the plugins (a cache miss): generous bound.
        let deadline = Instant::now() + Duration::from_secs(120);
        while h.url.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match h.stderr.recv_timeout(left) {
                Ok(line) => {
                    if let Some(u) = line.strip_prefix("metrics: ") {
                        h.url = u.trim().to_string();
                    }
                    h.seen.push(line);
                }
                Err(_) => panic!("no `metrics: URL` line on stderr:\n{}", h.seen.join("\n")),
            }
        }
        assert!(h.url.starts_with("http://127.0.0.1:"), "{}", h.url);
        h
    }

    /// The address part of the URL (`127.0.0.1:PORT`).
    fn addr(&self) -> String {
        self.url
            .trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .to_string()
    }

    fn get(&self) -> String {
        let mut r = ureq::get(&self.url).call().expect("GET /metrics");
        assert_eq!(r.status(), 200);
        let ctype = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        r.body_mut().read_to_string().expect("a text body")
    }

    /// Scrapes until `done` holds for the parsed samples (or panics after
    /// `limit`); returns the last body.
    fn until(&mut self, limit: Duration, done: impl Fn(&Samples) -> bool) -> String {
        let start = Instant::now();
        loop {
            let body = self.get();
            if done(&parse(&body)) {
                return body;
            }
            if start.elapsed() > limit {
                while let Ok(l) = self.stderr.try_recv() {
                    self.seen.push(l);
                }
                panic!(
                    "figures never reached the expected values in {limit:?}:\n{body}\nstderr:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then the exit status and the rest of stderr.
    fn stop(mut self) -> (Option<i32>, String) {
        send_signal(&self.child, "TERM");
        let st = wait_exit(&mut self.child, Duration::from_secs(20), "callop-host");
        // The reader thread ends with the pipe.
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        (st.code(), self.seen.join("\n"))
    }
}

impl Drop for LiveHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples by `metric{label=value,...}` (labels sorted), parsed with
/// `prometheus-parse`.
type Samples = HashMap<String, f64>;

fn parse(body: &str) -> Samples {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("prometheus-parse parses the endpoint");
    let mut out = HashMap::new();
    for s in scrape.samples {
        let mut labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            other => panic!("unexpected value {other:?}"),
        };
        out.insert(format!("{}{{{}}}", s.metric, l.join(",")), v);
    }
    out
}

fn get(s: &Samples, key: &str) -> f64 {
    s.get(key).copied().unwrap_or(f64::NAN)
}

/// `promtool check metrics` on `body`: it must exist and accept it.
fn promtool_accepts(body: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's `prometheus` package \
                 (`apt-get install prometheus`; tests/run-all.sh does it)"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "promtool check metrics rejects the endpoint:\n{}{}\n{body}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

fn p(name: &str) -> String {
    plugin(name).display().to_string()
}

#[test]
fn the_endpoint_counts_a_known_workload_and_passes_promtool() {
    let pp = p("ping-pong");
    let mut h = LiveHost::start(&[
        format!("{}=--every,5ms,--count,40", p("ticker")),
        format!("{pp}@ping=--role,ping,--count,300"),
        format!("{pp}@pong=--role,pong"),
        format!("{}=--mode,trap,--after,50", p("faulty")),
    ]);
    // Every plugin ends (ping and pong finish after their exchanges); the
    // host lives on (`--forever`) and keeps their final figures.
    let body = h.until(Duration::from_secs(60), |s| {
        ["ticker", "ping", "pong", "faulty"]
            .iter()
            .all(|n| get(s, &format!("callop_plugin_up{{plugin={n}}}")) == 0.0)
    });
    promtool_accepts(&body);
    let s = parse(&body);
    // The ticker's 40 ticks are 40 timer events in 40 dispatches.
    assert_eq!(
        get(&s, "callop_plugin_dispatch_calls_total{plugin=ticker}"),
        40.0,
        "{body}"
    );
    assert_eq!(
        get(&s, "callop_plugin_events_total{kind=timer,plugin=ticker}"),
        40.0
    );
    // init + 40 dispatches.
    assert_eq!(
        get(&s, "callop_plugin_guest_calls_total{plugin=ticker}"),
        41.0
    );
    // 300 exchanges: each side received exactly 300 messages, and sent
    // them through the `sender.send` import.
    assert_eq!(
        get(&s, "callop_plugin_received_messages_total{plugin=ping}"),
        300.0,
        "{body}"
    );
    assert_eq!(
        get(&s, "callop_plugin_received_messages_total{plugin=pong}"),
        300.0
    );
    assert!(
        get(&s, "callop_plugin_host_calls_total{plugin=pong}") >= 300.0,
        "{body}"
    );
    assert!(get(&s, "callop_plugin_host_seconds_total{plugin=pong}") > 0.0);
    // The faulting plugin shows its fault kind, and no other.
    assert_eq!(
        get(&s, "callop_plugin_faults_total{kind=trap,plugin=faulty}"),
        1.0,
        "{body}"
    );
    for k in [
        "panic",
        "timeout",
        "out_of_memory",
        "stack_overflow",
        "blocked",
        "host",
    ] {
        assert_eq!(
            get(
                &s,
                &format!("callop_plugin_faults_total{{kind={k},plugin=faulty}}")
            ),
            0.0
        );
    }
    assert_eq!(
        get(&s, "callop_plugin_faults_total{kind=trap,plugin=ticker}"),
        0.0
    );
    // CPU time is measured (the default callback timeout) and never negative.
    for n in ["ticker", "ping", "pong", "faulty"] {
        let c = get(
            &s,
            &format!("callop_plugin_cpu_seconds_total{{plugin={n}}}"),
        );
        assert!(c >= 0.0, "{n}: {c}");
    }
    // Ended: their gauges are zero.
    assert_eq!(
        get(&s, "callop_plugin_memory_bytes{plugin=pong}"),
        0.0,
        "{body}"
    );
    assert_eq!(get(&s, "callop_host_plugins{}"), 0.0);
    let (code, err) = h.stop();
    assert!(
        code.is_some(),
        "callop-host did not exit on SIGTERM:\n{err}"
    );
}

#[test]
fn live_gauges_show_sources_and_restarts_count() {
    let mut h = LiveHost::start(&[
        format!("{}=--every,10ms,--count,1000000", p("ticker")),
        format!("{}=--mode,trap,--after,20", p("faulty")),
        "--restart".into(),
        "on-failure:3/60s".into(),
    ]);
    let body = h.until(Duration::from_secs(60), |s| {
        get(s, "callop_plugin_restarts_total{plugin=faulty}") == 3.0
            && get(s, "callop_plugin_faults_total{kind=trap,plugin=faulty}") == 4.0
            && get(s, "callop_plugin_dispatch_calls_total{plugin=ticker}") >= 5.0
    });
    promtool_accepts(&body);
    let s = parse(&body);
    assert_eq!(
        get(&s, "callop_plugin_sources{kind=timer,plugin=ticker}"),
        1.0,
        "{body}"
    );
    assert_eq!(
        get(&s, "callop_plugin_sources{kind=ping,plugin=ticker}"),
        0.0
    );
    assert!(get(&s, "callop_plugin_memory_bytes{plugin=ticker}") > 0.0);
    assert!(get(&s, "callop_plugin_table_elements{plugin=ticker}") > 0.0);
    assert_eq!(
        get(&s, "callop_plugin_up{plugin=faulty}"),
        0.0,
        "quarantined"
    );
    let _ = h.stop();
}

#[test]
fn top_prints_a_table_of_a_live_host() {
    let h = LiveHost::start(&[format!("{}=--every,5ms,--count,1000000", p("ticker"))]);
    let o = run(Command::new(callop_tests::host_bin()).args([
        "top",
        &h.addr(),
        "--interval",
        "300",
        "--count",
        "2",
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert_eq!(out.matches("callop-host top:").count(), 2, "{out}");
    assert!(
        out.contains("PLUGIN") && out.contains("DISPATCH/s"),
        "{out}"
    );
    let row = out
        .lines()
        .rfind(|l| l.starts_with("ticker "))
        .unwrap_or_else(|| panic!("no ticker row:\n{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "1", "up: {row}");
    // About 200 ticks/s; generous bounds for a loaded machine.
    let per_s: f64 = cols[3].parse().unwrap();
    assert!(per_s > 10.0 && per_s < 1000.0, "{row}");
    assert!(
        !out.contains('\x1b'),
        "no screen clearing when stdout is not a terminal"
    );
    let _ = h.stop();
}

#[test]
fn top_reports_an_unreachable_endpoint() {
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = run(Command::new(callop_tests::host_bin()).args([
        "top",
        &format!("127.0.0.1:{port}"),
        "--count",
        "1",
    ]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("error: http://127.0.0.1:"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn stats_on_exit_prints_one_line_per_plugin() {
    let o = run(host_cmd()
        .arg("--stats-on-exit")
        .arg(format!("{}=--every,1ms,--count,50", p("ticker")))
        .arg(format!("{}=--mode,trap,--after,5", p("faulty"))));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("plugin stats after"), "{err}");
    let row = |name: &str| -> Vec<String> {
        err.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} row:\n{err}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let t = row("ticker");
    // PLUGIN DISPATCHES EVENTS MESSAGES CPU HOST FAULTS RESTARTS
    assert_eq!(&t[1..4], ["50", "50", "0"], "{err}");
    assert_eq!(t[6], "0");
    let f = row("faulty");
    assert_eq!(f[6], "1", "{err}");
}

/// The TCP sockets process `pid` listens on (from `/proc`).
fn listening_sockets(pid: u32) -> usize {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(t) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in t.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // f[3]: state (0A = LISTEN), f[9]: inode.
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn only_the_flag_opens_a_port() {
    let ticker = format!("{}=--every,10ms,--count,1000000", p("ticker"));
    // Without --metrics: no listening socket once the plugin runs.
    let mut child = host_cmd()
        .args(["--forever", &ticker])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("plugin started") {
        let mut l = String::new();
        if err.read_line(&mut l).unwrap() == 0 {
            panic!("callop-host ended:\n{seen}");
        }
        seen += &l;
    }
    let without = listening_sockets(child.id());
    send_signal(&child, "TERM");
    wait_exit(&mut child, Duration::from_secs(20), "callop-host");
    assert_eq!(without, 0);
    // With it: exactly the metrics endpoint.
    let h = LiveHost::start(&[ticker]);
    assert_eq!(listening_sockets(h.child.id()), 1);
    let _ = h.stop();
}
