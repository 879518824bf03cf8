//! The plugin-path workloads shared by the `bench` example and the criterion suite
//! `benches/plugin.rs`, so both measure exactly the same work.
//!
//! Every guest configuration runs with isolation on: a 1 s callback timeout (epoch
//! interruption) and the default 256 MiB memory limit.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use callop::EventLoop;
use callop_plugin_host::metrics::MetricsServer;
use callop_plugin_host::{ExitReason, Host, Limits, PluginEngine, Policy};

/// Isolation stays on in every measured configuration.
pub fn limits() -> Limits {
    Limits {
        callback_timeout: Some(Duration::from_secs(1)),
        ..Limits::default()
    }
}

pub fn policy() -> Policy {
    Policy {
        forward_stdout: false,
        ..Policy::default()
    }
}

pub fn host<'l, D>(ev: &EventLoop<'l, D>, e: &PluginEngine) -> Host<'l, D> {
    Host::with_engine(ev.handle(), e.clone(), policy(), limits()).expect("host")
}

pub fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

pub fn run_until_empty<D>(ev: &mut EventLoop<'_, D>, h: &Host<'_, D>, d: &mut D) {
    while !h.is_empty() {
        ev.dispatch(Some(Duration::from_millis(100)), d).unwrap();
    }
}

pub fn expect_stopped<D>(h: &Host<'_, D>, what: &str) {
    let exits = h.exits();
    let last = exits.last().expect("an exit");
    assert_eq!(
        last.reason,
        ExitReason::Stopped(0),
        "{what}: {}",
        last.reason
    );
}

/// The native workloads, written once for any crate with calloop's API:
/// `native_workloads!(krate, flood_fn, storm_fn)` defines `flood_fn(n)` (n
/// channel messages from the same thread, then dispatch until all arrived)
/// and `storm_fn(n)` (n pings, one per loop iteration) on `krate`.
macro_rules! native_workloads {
    ($krate:ident, $flood:ident, $storm:ident) => {
        pub fn $flood(n: u64) -> Duration {
            let mut ev: $krate::EventLoop<u64> = $krate::EventLoop::try_new().unwrap();
            let (tx, rx) = $krate::channel::channel::<Vec<u8>>();
            ev.handle()
                .insert_source(rx, |e, _, c: &mut u64| {
                    if let $krate::channel::Event::Msg(_) = e {
                        *c += 1
                    }
                })
                .unwrap();
            let mut c = 0;
            let t = Instant::now();
            for i in 0..n {
                tx.send(i.to_le_bytes().to_vec()).unwrap();
            }
            while c < n {
                ev.dispatch(None, &mut c).unwrap();
            }
            t.elapsed()
        }

        pub fn $storm(n: u64) -> Duration {
            let mut ev: $krate::EventLoop<u64> = $krate::EventLoop::try_new().unwrap();
            let (ping, src) = $krate::ping::make_ping().unwrap();
            ev.handle()
                .insert_source(src, |_, _, c: &mut u64| *c += 1)
                .unwrap();
            let mut c = 0;
            let t = Instant::now();
            while c < n {
                ping.ping();
                ev.dispatch(None, &mut c).unwrap();
            }
            t.elapsed()
        }
    };
}

native_workloads!(callop, flood_native, storm_native);
native_workloads!(calloop, flood_calloop, storm_calloop);

pub fn flood_guest(e: &PluginEngine, sink: &Path, n: u64) -> Duration {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let h = host(&ev, e);
    h.load_file(sink, "sink", &args(&format!("--messages {n}")))
        .unwrap();
    let tx = h.sender("sink/in").unwrap();
    let t = Instant::now();
    for i in 0..n {
        tx.send(i.to_le_bytes().to_vec()).unwrap();
    }
    run_until_empty(&mut ev, &h, &mut ());
    let d = t.elapsed();
    expect_stopped(&h, "channel flood");
    d
}

pub fn storm_guest(e: &PluginEngine, sink: &Path, n: u64) -> Duration {
    storm_guest_with(e, sink, n, false)
}

/// The ping storm with metrics on: the host publishes its figures every
/// 250 ms to a [`MetricsServer`] on 127.0.0.1, which a client thread
/// scrapes every 250 ms (as `callop-host --metrics` with Prometheus).
pub fn storm_guest_metrics(e: &PluginEngine, sink: &Path, n: u64) -> Duration {
    storm_guest_with(e, sink, n, true)
}

/// Scrapes `addr`'s `/metrics` every 250 ms until `stop`; returns the
/// number of scrapes.
fn scraper(
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(mut c) = std::net::TcpStream::connect(addr) {
                let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n");
                let mut body = Vec::new();
                if c.read_to_end(&mut body).is_ok() && body.starts_with(b"HTTP/1.1 200") {
                    n += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        n
    })
}

fn storm_guest_with(e: &PluginEngine, sink: &Path, n: u64, metrics: bool) -> Duration {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let h = host(&ev, e);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = metrics.then(|| {
        let server = MetricsServer::bind("127.0.0.1:0").expect("metrics server");
        let p = server.publisher();
        h.publish_stats(Duration::from_millis(250), move |s| p.publish(s))
            .expect("publish");
        let t = scraper(server.local_addr(), stop.clone());
        (server, t)
    });
    h.load_file(sink, "sink", &args(&format!("--pings {n}")))
        .unwrap();
    let ping = h.ping("sink/p").unwrap();
    let t = Instant::now();
    while !h.is_empty() {
        ping.ping();
        ev.dispatch(None, &mut ()).unwrap();
    }
    let d = t.elapsed();
    expect_stopped(&h, "ping storm");
    if let Some((server, t)) = served {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let scrapes = t.join().unwrap();
        drop(server);
        assert!(
            scrapes >= 1 || d < Duration::from_millis(500),
            "the endpoint was never scraped"
        );
    }
    d
}
