//! The plugin path under criterion: events into a wasm guest side by side with a native closure
//! on the same loop, and warm start (cached `.cwasm` → first callback).
//!
//! Needs the example plugins: `plugins/build.sh && cargo bench -p callop --bench plugin`.
//! `CALLOP_PLUGINS=DIR` points at the built `.wasm` files (default
//! `plugins/target/wasm32-wasip2/release`). Isolation stays on in every guest configuration: a
//! 1 s callback deadline (epoch interruption) and the default 256 MiB memory limit. The
//! one-table version of these numbers (plus calloop, memory and Python/JS rows) is
//! `cargo run --release -p callop --example bench`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use callop::EventLoop;
use callop::channel::Event;
use callop::plugin::{EngineOptions, Host, Limits, PluginEngine, Policy};
use criterion::{Criterion, criterion_group, criterion_main};

const MESSAGES: u64 = 100_000;
const PINGS: u64 = 10_000;

fn sink() -> PathBuf {
    let dir = std::env::var_os("CALLOP_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/target/wasm32-wasip2/release")
        });
    let sink = dir.join("bench_sink.wasm");
    assert!(
        sink.exists(),
        "{} is missing: run plugins/build.sh first (or set CALLOP_PLUGINS)",
        sink.display()
    );
    sink
}

fn engine() -> PluginEngine {
    let cache = std::env::temp_dir().join("callop-bench-cache");
    PluginEngine::new(&EngineOptions {
        cache_dir: Some(cache),
        ..Default::default()
    })
    .expect("engine")
}

fn host<'l, D>(ev: &EventLoop<'l, D>, e: &PluginEngine) -> Host<'l, D> {
    let limits = Limits {
        callback_timeout: Some(Duration::from_secs(1)),
        ..Limits::default()
    };
    let policy = Policy {
        forward_stdout: false,
        ..Policy::default()
    };
    Host::with_engine(ev.handle(), e.clone(), policy, limits).expect("host")
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn flood_native(n: u64) -> Duration {
    let mut ev: EventLoop<u64> = EventLoop::try_new().unwrap();
    let (tx, rx) = callop::channel::channel::<Vec<u8>>();
    ev.handle()
        .insert_source(rx, |e, _, c: &mut u64| {
            if let Event::Msg(_) = e {
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

fn flood_guest(e: &PluginEngine, sink: &Path, n: u64) -> Duration {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let h = host(&ev, e);
    h.load_file(sink, "sink", &args(&format!("--messages {n}")))
        .unwrap();
    let tx = h.sender("sink/in").unwrap();
    let t = Instant::now();
    for i in 0..n {
        tx.send(i.to_le_bytes().to_vec()).unwrap();
    }
    while !h.is_empty() {
        ev.dispatch(Some(Duration::from_millis(100)), &mut ())
            .unwrap();
    }
    t.elapsed()
}

fn storm_native(n: u64) -> Duration {
    let mut ev: EventLoop<u64> = EventLoop::try_new().unwrap();
    let (ping, src) = callop::ping::make_ping().unwrap();
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

fn storm_guest(e: &PluginEngine, sink: &Path, n: u64) -> Duration {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let h = host(&ev, e);
    h.load_file(sink, "sink", &args(&format!("--pings {n}")))
        .unwrap();
    let ping = h.ping("sink/p").unwrap();
    let t = Instant::now();
    while !h.is_empty() {
        ping.ping();
        ev.dispatch(None, &mut ()).unwrap();
    }
    t.elapsed()
}

/// Cached `.cwasm` on disk → component → instance → `init` → first event callback.
fn warm_start(e: &PluginEngine, sink: &Path) -> Duration {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let h = host(&ev, e);
    let t = Instant::now();
    let c = e.load_file(sink).unwrap();
    h.load(&c, "sink", &args("--pings 1")).unwrap();
    h.ping("sink/p").unwrap().ping();
    while !h.is_empty() {
        ev.dispatch(Some(Duration::from_millis(100)), &mut ())
            .unwrap();
    }
    t.elapsed()
}

fn benches(c: &mut Criterion) {
    let sink = sink();
    let e = engine();
    e.load_file(&sink).expect("cold compile fills the cache");

    let mut g = c.benchmark_group("channel_flood_100k_messages");
    g.sample_size(10);
    g.bench_function("native", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| flood_native(MESSAGES)).sum())
    });
    g.bench_function("guest", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| flood_guest(&e, &sink, MESSAGES)).sum())
    });
    g.finish();

    let mut g = c.benchmark_group("ping_storm_10k");
    g.sample_size(10);
    g.bench_function("native", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| storm_native(PINGS)).sum())
    });
    g.bench_function("guest", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| storm_guest(&e, &sink, PINGS)).sum())
    });
    g.finish();

    let mut g = c.benchmark_group("warm_start_to_first_callback");
    g.bench_function("guest", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| warm_start(&e, &sink)).sum())
    });
    g.finish();
}

criterion_group!(plugin, benches);
criterion_main!(plugin);
