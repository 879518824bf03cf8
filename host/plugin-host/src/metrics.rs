//! The figures of [`Host::stats`](crate::Host::stats) for Prometheus:
//! [`encode`] writes a [`HostStats`] in the Prometheus text exposition
//! format (0.0.4, with the `prometheus` crate), and [`MetricsServer`]
//! serves the latest one over HTTP from a thread of its own.
//!
//! It lives in the library, not in `callop-host`, so that an application
//! embedding a [`Host`](crate::Host) serves the same metrics with two
//! calls (the command line's `--metrics ADDR` is exactly this):
//!
//! ```no_run
//! # use callop::EventLoop;
//! # use callop_plugin_host::{Host, HostConfig, metrics::MetricsServer};
//! # use std::time::Duration;
//! # let event_loop: EventLoop<()> = EventLoop::try_new().unwrap();
//! # let host = Host::new(event_loop.handle(), HostConfig::default()).unwrap();
//! let server = MetricsServer::bind("127.0.0.1:9464").unwrap();
//! let publisher = server.publisher();
//! host.publish_stats(Duration::from_millis(250), move |s| publisher.publish(s))
//!     .unwrap();
//! // ... run the loop; `curl http://127.0.0.1:9464/metrics`
//! ```
//!
//! # Never blocking the loop
//!
//! The loop only hands over a snapshot at a bounded rate
//! ([`Host::publish_stats`](crate::Host::publish_stats), e.g. every 250 ms):
//! [`MetricsPublisher::publish`] swaps a pointer under a mutex that the
//! server thread holds only to clone that pointer. Encoding and every
//! socket operation happen on the server thread, which serves one request
//! at a time with 2 s read and write timeouts: a slow or stuck client holds
//! the endpoint up for at most that, never the loop.
//!
//! # The metrics
//!
//! One series per plugin instance name (label `plugin`): the live instance,
//! or else the last one that ended (with `callop_plugin_up` 0). Counters
//! (`_total`) are cumulative over an instance's restarts. See
//! [`PluginStats`] for what each one means.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `callop_plugin_up` | gauge | `plugin` |
//! | `callop_plugin_guest_calls_total` | counter | `plugin` |
//! | `callop_plugin_dispatch_calls_total` | counter | `plugin` |
//! | `callop_plugin_events_total` | counter | `plugin`, `kind` |
//! | `callop_plugin_received_messages_total` | counter | `plugin` |
//! | `callop_plugin_received_bytes_total` | counter | `plugin` |
//! | `callop_plugin_cpu_seconds_total` | counter | `plugin` (only with a callback timeout) |
//! | `callop_plugin_host_calls_total` | counter | `plugin` |
//! | `callop_plugin_host_seconds_total` | counter | `plugin` |
//! | `callop_plugin_memory_bytes` | gauge | `plugin` |
//! | `callop_plugin_table_elements` | gauge | `plugin` |
//! | `callop_plugin_sources` | gauge | `plugin`, `kind` |
//! | `callop_plugin_queued_messages` | gauge | `plugin` |
//! | `callop_plugin_queued_bytes` | gauge | `plugin` |
//! | `callop_plugin_io_objects` | gauge | `plugin` |
//! | `callop_plugin_faults_total` | counter | `plugin`, `kind` |
//! | `callop_plugin_restarts_total` | counter | `plugin` |
//! | `callop_plugin_reloads_total` | counter | `plugin` |
//! | `callop_host_plugins` | gauge | (live instances) |

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{CounterVec, Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};

use crate::stats::{HostStats, PluginStats};

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long the server waits for a client to send its request or take the
/// answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest request the server reads (request line and headers).
const MAX_REQUEST: usize = 8 * 1024;

/// The metric families, built for one encoding.
struct Families {
    registry: Registry,
}

impl Families {
    fn new() -> Families {
        Families {
            registry: Registry::new(),
        }
    }

    fn add<C: Collector + Clone + 'static>(&self, c: C) -> C {
        // Names are fixed and distinct: registering cannot fail.
        let _ = self.registry.register(Box::new(c.clone()));
        c
    }

    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> CounterVec {
        self.add(CounterVec::new(Opts::new(name, help), labels).expect("a valid metric"))
    }

    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        self.add(GaugeVec::new(Opts::new(name, help), labels).expect("a valid metric"))
    }
}

/// One series per instance name: the live instance, or else the last one
/// that ended.
fn per_name(stats: &HostStats) -> Vec<&PluginStats> {
    let mut out: Vec<&PluginStats> = Vec::new();
    for p in &stats.plugins {
        match out.iter_mut().find(|q| q.name == p.name) {
            Some(q) if q.alive => {}
            Some(q) => *q = p,
            None => out.push(p),
        }
    }
    out
}

/// `stats` in the Prometheus text exposition format (version 0.0.4).
pub fn encode(stats: &HostStats) -> String {
    let f = Families::new();
    let plugin = &["plugin"];
    let kind = &["plugin", "kind"];
    let up = f.gauge(
        "callop_plugin_up",
        "Whether the plugin instance is running (0: it ended).",
        plugin,
    );
    let guest_calls = f.counter(
        "callop_plugin_guest_calls_total",
        "Calls of the plugin's exports (init, dispatch, shutdown).",
        plugin,
    );
    let dispatch = f.counter(
        "callop_plugin_dispatch_calls_total",
        "Calls of the plugin's dispatch export (one per batch of events).",
        plugin,
    );
    let events = f.counter(
        "callop_plugin_events_total",
        "Events delivered to the plugin, by kind (a batch of messages is one event).",
        kind,
    );
    let msgs = f.counter(
        "callop_plugin_received_messages_total",
        "Channel messages delivered to the plugin.",
        plugin,
    );
    let msg_bytes = f.counter(
        "callop_plugin_received_bytes_total",
        "Bytes of the channel messages delivered to the plugin.",
        plugin,
    );
    let cpu = stats.cpu_measured.then(|| {
        f.counter(
            "callop_plugin_cpu_seconds_total",
            "CPU time of the loop thread in the plugin's calls, sampled at each 5 ms epoch tick.",
            plugin,
        )
    });
    let host_calls = f.counter(
        "callop_plugin_host_calls_total",
        "Calls the plugin made to the host-loop and io imports.",
        plugin,
    );
    let host_secs = f.counter(
        "callop_plugin_host_seconds_total",
        "Wall time spent in the plugin's host-loop and io imports and blocking WASI calls.",
        plugin,
    );
    let memory = f.gauge(
        "callop_plugin_memory_bytes",
        "The plugin's linear memory.",
        plugin,
    );
    let tables = f.gauge(
        "callop_plugin_table_elements",
        "Elements of the plugin's tables.",
        plugin,
    );
    let sources = f.gauge(
        "callop_plugin_sources",
        "The plugin's live sources, by kind.",
        kind,
    );
    let queued = f.gauge(
        "callop_plugin_queued_messages",
        "Messages waiting in the plugin's channels.",
        plugin,
    );
    let queued_bytes = f.gauge(
        "callop_plugin_queued_bytes",
        "Bytes of the messages waiting in the plugin's channels.",
        plugin,
    );
    let io_objects = f.gauge(
        "callop_plugin_io_objects",
        "I/O objects (sockets, files, directories, descriptors) the plugin holds.",
        plugin,
    );
    let faults = f.counter(
        "callop_plugin_faults_total",
        "The plugin's failures, by kind.",
        kind,
    );
    let restarts = f.counter(
        "callop_plugin_restarts_total",
        "Restarts of the plugin instance after a failure.",
        plugin,
    );
    let reloads = f.counter(
        "callop_plugin_reloads_total",
        "Reloads of the plugin instance.",
        plugin,
    );
    let live = f.add(
        Gauge::with_opts(Opts::new(
            "callop_host_plugins",
            "Plugin instances running in the host.",
        ))
        .expect("a valid metric"),
    );
    live.set(stats.plugins.iter().filter(|p| p.alive).count() as f64);
    for p in per_name(stats) {
        let n = p.name.as_str();
        let l = &[n];
        up.with_label_values(l).set(if p.alive { 1.0 } else { 0.0 });
        guest_calls
            .with_label_values(l)
            .inc_by(p.guest_calls as f64);
        dispatch
            .with_label_values(l)
            .inc_by(p.dispatch_calls as f64);
        for (k, v) in p.events.by_kind() {
            events.with_label_values(&[n, k]).inc_by(v as f64);
        }
        msgs.with_label_values(l)
            .inc_by(p.events.messages_received as f64);
        msg_bytes
            .with_label_values(l)
            .inc_by(p.events.message_bytes as f64);
        if let (Some(c), Some(t)) = (&cpu, p.guest_cpu) {
            c.with_label_values(l).inc_by(t.as_secs_f64());
        }
        host_calls.with_label_values(l).inc_by(p.host_calls as f64);
        host_secs
            .with_label_values(l)
            .inc_by(p.host_time.as_secs_f64());
        memory.with_label_values(l).set(p.memory_bytes as f64);
        tables.with_label_values(l).set(p.table_elements as f64);
        for (k, v) in p.sources.by_kind() {
            sources.with_label_values(&[n, k]).set(v as f64);
        }
        queued.with_label_values(l).set(p.queued_messages as f64);
        queued_bytes.with_label_values(l).set(p.queued_bytes as f64);
        io_objects.with_label_values(l).set(p.io_objects as f64);
        for (k, v) in p.faults.by_kind() {
            faults.with_label_values(&[n, k]).inc_by(v as f64);
        }
        restarts.with_label_values(l).inc_by(p.restarts as f64);
        reloads.with_label_values(l).inc_by(p.reloads as f64);
    }
    let mut out = Vec::new();
    // Writing into a Vec of well-formed families cannot fail.
    let _ = TextEncoder::new().encode(&f.registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// The latest snapshot, shared between the loop (which publishes) and the
/// server thread (which reads).
type Latest = Arc<Mutex<Arc<HostStats>>>;

/// Hands snapshots to a [`MetricsServer`]; cheap to clone, `Send`.
#[derive(Debug, Clone)]
pub struct MetricsPublisher {
    latest: Latest,
}

impl MetricsPublisher {
    /// Makes `stats` the snapshot the server answers with (swaps a pointer
    /// under a mutex the server holds only to clone it: never blocks for
    /// long).
    pub fn publish(&self, stats: HostStats) {
        let new = Arc::new(stats);
        let old = {
            let mut l = self.latest.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *l, new)
        };
        // The old snapshot is freed here, outside the lock (or by the
        // server thread if it still encodes it).
        drop(old);
    }
}

/// A tiny HTTP server answering `GET /metrics` with [`encode`] of the
/// latest published snapshot, on a thread of its own (see the module
/// documentation). Dropping it stops the thread.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    latest: Latest,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` (e.g. `127.0.0.1:9464`; port 0 picks a free one, see
    /// [`MetricsServer::local_addr`]) and starts serving. Until a snapshot
    /// is published the answer has no plugin.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let latest: Latest = Arc::new(Mutex::new(Arc::new(HostStats::default())));
        let stop = Arc::new(AtomicBool::new(false));
        let (l2, s2) = (latest.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("callop-metrics".into())
            .spawn(move || serve(listener, l2, s2))?;
        Ok(MetricsServer {
            addr,
            latest,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle publishing snapshots to this server.
    pub fn publisher(&self) -> MetricsPublisher {
        MetricsPublisher {
            latest: self.latest.clone(),
        }
    }

    /// Makes `stats` the snapshot this server answers with.
    pub fn publish(&self, stats: HostStats) {
        self.publisher().publish(stats);
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept up with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let woke = TcpStream::connect_timeout(&wake, Duration::from_millis(200)).is_ok();
        if let Some(t) = self.thread.take()
            && woke
        {
            let _ = t.join();
        }
    }
}

fn serve(listener: TcpListener, latest: Latest, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match conn {
            Ok(c) => {
                let _ = answer(c, &latest);
            }
            // E.g. out of descriptors: do not spin.
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Reads one request from `c` and answers it.
fn answer(mut c: TcpStream, latest: &Latest) -> io::Result<()> {
    c.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    c.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && !req.windows(2).any(|w| w == b"\n\n") {
        let n = c.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
        if req.len() > MAX_REQUEST {
            return respond(
                &mut c,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request too large\n",
            );
        }
    }
    let line = String::from_utf8_lossy(&req);
    let mut parts = line.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let snapshot = latest.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let body = encode(&snapshot);
            let body = if method == "HEAD" {
                String::new()
            } else {
                body
            };
            respond(&mut c, "200 OK", CONTENT_TYPE, &body)
        }
        ("GET" | "HEAD", "/") => respond(
            &mut c,
            "200 OK",
            "text/plain; charset=utf-8",
            "callop-host metrics: GET /metrics\n",
        ),
        ("GET" | "HEAD", _) => respond(
            &mut c,
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n",
        ),
        _ => respond(&mut c, "405 Method Not Allowed", "text/plain", "only GET\n"),
    }
}

fn respond(c: &mut TcpStream, status: &str, ctype: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes())?;
    c.write_all(body.as_bytes())?;
    c.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::PluginId;
    use crate::stats::{EventCounts, FaultCounts};

    fn sample() -> HostStats {
        HostStats {
            plugins: vec![
                PluginStats {
                    id: PluginId(1),
                    name: "a".into(),
                    alive: false,
                    dispatch_calls: 1,
                    ..PluginStats::default()
                },
                PluginStats {
                    id: PluginId(2),
                    name: "a".into(),
                    alive: true,
                    dispatch_calls: 7,
                    events: EventCounts {
                        ping: 7,
                        ..EventCounts::default()
                    },
                    guest_cpu: Some(Duration::from_millis(1500)),
                    memory_bytes: 1 << 20,
                    ..PluginStats::default()
                },
                PluginStats {
                    id: PluginId(3),
                    name: "b".into(),
                    alive: false,
                    faults: FaultCounts {
                        trap: 1,
                        ..FaultCounts::default()
                    },
                    ..PluginStats::default()
                },
            ],
            cpu_measured: true,
        }
    }

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(series))
            .map(|l| l[series.len()..].trim())
    }

    #[test]
    fn one_series_per_name_the_live_instance_first() {
        let t = encode(&sample());
        assert_eq!(
            line(&t, "callop_plugin_dispatch_calls_total{plugin=\"a\"}"),
            Some("7"),
            "{t}"
        );
        assert_eq!(line(&t, "callop_plugin_up{plugin=\"a\"}"), Some("1"));
        assert_eq!(line(&t, "callop_plugin_up{plugin=\"b\"}"), Some("0"));
        assert_eq!(
            line(&t, "callop_plugin_events_total{kind=\"ping\",plugin=\"a\"}"),
            Some("7"),
            "{t}"
        );
        assert_eq!(
            line(&t, "callop_plugin_faults_total{kind=\"trap\",plugin=\"b\"}"),
            Some("1")
        );
        assert_eq!(
            line(&t, "callop_plugin_cpu_seconds_total{plugin=\"a\"}"),
            Some("1.5")
        );
        assert_eq!(
            line(&t, "callop_plugin_memory_bytes{plugin=\"a\"}"),
            Some("1048576")
        );
        assert_eq!(line(&t, "callop_host_plugins"), Some("1"));
        assert!(t.contains("# TYPE callop_plugin_dispatch_calls_total counter"));
        assert!(t.contains("# TYPE callop_plugin_memory_bytes gauge"));
    }

    #[test]
    fn cpu_time_is_left_out_when_not_measured() {
        let mut s = sample();
        s.cpu_measured = false;
        assert!(!encode(&s).contains("cpu_seconds"));
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn the_server_answers_with_the_latest_snapshot() {
        let server = MetricsServer::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr();
        let r = get(addr, "/metrics");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains(CONTENT_TYPE));
        assert!(r.contains("callop_host_plugins 0"), "{r}");
        server.publisher().publish(sample());
        let r = get(addr, "/metrics");
        assert!(
            r.contains("callop_plugin_dispatch_calls_total{plugin=\"a\"} 7"),
            "{r}"
        );
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
        // A client that sends nothing holds the server up for at most
        // CLIENT_TIMEOUT; the others are answered afterwards.
        let _silent = TcpStream::connect(addr).unwrap();
        let t = std::time::Instant::now();
        assert!(get(addr, "/metrics").contains("200 OK"));
        assert!(t.elapsed() < CLIENT_TIMEOUT * 5);
        drop(server);
        // Stopped: the port is closed (or refuses at least reading).
        assert!(TcpStream::connect(addr).is_err());
    }
}
