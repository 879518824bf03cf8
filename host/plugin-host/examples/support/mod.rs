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

/// `n` messages from the application to the guest `bench-sink`, whose
/// callback receives each as a `Vec<u8>` (`Channel::open`).
pub fn flood_guest(e: &PluginEngine, sink: &Path, n: u64) -> Duration {
    flood_guest_with(e, sink, n, false)
}

/// The same flood; with `shared` the guest receives each message as a
/// `Message` sharing its batch's buffer (`Channel::open_shared`) instead.
pub fn flood_guest_with(e: &PluginEngine, sink: &Path, n: u64, shared: bool) -> Duration {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let h = host(&ev, e);
    let shared = if shared { " --shared" } else { "" };
    h.load_file(sink, "sink", &args(&format!("--messages {n}{shared}")))
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

/// A plugin-to-plugin flood: `reload-counter`'s flood role sends `n`
/// sequence numbers, as fast as the counter's bounded queue takes them
/// (up to 4,096 per loop iteration), to its counter role. Both on the host's
/// own loop thread, or (`cross`) the counter on a second loop thread.
/// Returns the time from the load until both ended.
pub fn plugin_flood(e: &PluginEngine, counter: &Path, n: u64, cross: bool) -> Duration {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let h = host(&ev, e);
    if cross {
        h.start_threads(2).expect("threads");
        h.pin_thread("counter", 1).unwrap();
        h.pin_thread("flood", 0).unwrap();
    }
    let c = e.load_file(counter).unwrap();
    let flood = args(&format!(
        "--role flood --count {n} --per-tick 4096 --every 0"
    ));
    let t = Instant::now();
    let ids = h
        .load_many(&[
            callop_plugin_host::PluginSpec {
                component: &c,
                name: "counter",
                args: &[],
            },
            callop_plugin_host::PluginSpec {
                component: &c,
                name: "flood",
                args: &flood,
            },
        ])
        .unwrap();
    assert!(ids.iter().all(Result::is_ok), "{ids:?}");
    run_until_empty(&mut ev, &h, &mut ());
    let d = t.elapsed();
    let exits = h.exits();
    assert!(
        exits.iter().all(|x| !x.reason.is_failure()),
        "plugin flood: {exits:?}"
    );
    d
}

/// The CPU-bound mix: `plugins` instances of `bench-sink`, each ticking
/// once per loop iteration (`--tick 0`) `ticks` times and spending `burn`
/// rounds of integer work per tick, spread over `threads` loop threads.
/// Returns the time from the first load until all ended.
pub fn cpu_mix(
    e: &PluginEngine,
    sink: &Path,
    plugins: usize,
    ticks: u64,
    burn: u64,
    threads: usize,
) -> Duration {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let h = host(&ev, e);
    h.start_threads(threads).expect("threads");
    let c = e.load_file(sink).unwrap();
    let a = args(&format!("--tick 0 --ticks {ticks} --burn {burn}"));
    let t = Instant::now();
    for i in 0..plugins {
        h.load(&c, &format!("cpu{i}"), &a).unwrap();
    }
    run_until_empty(&mut ev, &h, &mut ());
    let d = t.elapsed();
    let exits = h.exits();
    assert_eq!(exits.len(), plugins);
    assert!(
        exits.iter().all(|x| !x.reason.is_failure()),
        "cpu mix: {exits:?}"
    );
    d
}

// ------------------------------------------------------------ raw calls

/// A component with the smallest exports a call can reach: `empty: func()`
/// and `echo: func(l: list<u32>) -> list<u32>` (the shape of `dispatch`:
/// a list argument, which the host copies in through the guest's
/// `cabi_realloc`, and a list result read back, with a post-return call).
/// The core module does no work beyond what the canonical ABI needs.
const RAW_CALLS: &str = r#"(component
  (core module $m
    (memory (export "memory") 1)
    (func (export "empty"))
    (func (export "echo") (param $ptr i32) (param $len i32) (result i32)
      (i32.store (i32.const 8) (local.get $ptr))
      (i32.store (i32.const 12) (local.get $len))
      (i32.const 8))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
    (func (export "post") (param i32)))
  (core instance $i (instantiate $m))
  (func (export "empty") (canon lift (core func $i "empty")))
  (func (export "echo") (param "l" (list u32)) (result (list u32))
    (canon lift (core func $i "echo") (memory (core memory $i "memory"))
      (realloc (core func $i "realloc")) (post-return (core func $i "post")))))"#;

/// A store with the [`RAW_CALLS`] component instantiated: one call into a
/// component with nothing of the host around it, the limit of any guest
/// path.
pub struct RawCalls {
    store: wasmtime::Store<()>,
    empty: wasmtime::component::TypedFunc<(), ()>,
    echo: wasmtime::component::TypedFunc<(&'static [u32],), (Vec<u32>,)>,
}

impl RawCalls {
    pub fn new(e: &PluginEngine) -> Self {
        use wasmtime::component::{Component, Linker};
        let bytes = wat::parse_str(RAW_CALLS).expect("the raw-call component parses");
        let c = Component::new(e.engine(), &bytes).expect("the raw-call component compiles");
        let mut store = wasmtime::Store::new(e.engine(), ());
        // The engine interrupts by epoch: never here.
        store.set_epoch_deadline(u64::MAX / 2);
        let i = Linker::<()>::new(e.engine())
            .instantiate(&mut store, &c)
            .expect("the raw-call component instantiates");
        let empty = i.get_typed_func(&mut store, "empty").expect("export empty");
        let echo = i.get_typed_func(&mut store, "echo").expect("export echo");
        RawCalls { store, empty, echo }
    }

    /// `empty()`.
    pub fn empty(&mut self) {
        self.empty.call(&mut self.store, ()).unwrap();
    }

    /// `echo([7])`, checked.
    pub fn echo(&mut self) {
        let (l,) = self.echo.call(&mut self.store, (&[7],)).unwrap();
        assert_eq!(l, [7]);
    }
}

/// The mean cost of one raw call (see [`RawCalls`]) over `n` calls:
/// `(empty, list_in_list_out)`.
pub fn raw_component_calls(e: &PluginEngine, n: u32) -> (Duration, Duration) {
    let mut r = RawCalls::new(e);
    r.empty();
    r.echo();
    let t = Instant::now();
    for _ in 0..n {
        r.empty();
    }
    let empty = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        r.echo();
    }
    (empty, t.elapsed() / n)
}
