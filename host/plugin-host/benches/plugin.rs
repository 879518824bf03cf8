//! The plugin path under criterion: events into a wasm guest side by side with a native closure
//! on the same loop, a plugin → plugin flood on one loop thread and across two, and warm start
//! (cached `.cwasm` → first callback).
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
use callop_plugin_host::{EngineOptions, PluginEngine};
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../examples/support/mod.rs"]
mod support;
use support::{RawCalls, plugin_flood, storm_guest, storm_native};
use support::{args, expect_stopped, flood_guest, flood_native, host, run_until_empty};

const MESSAGES: u64 = 100_000;
const PINGS: u64 = 10_000;

fn plugin_file(name: &str) -> PathBuf {
    let dir = std::env::var_os("CALLOP_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/target/wasm32-wasip2/release")
        });
    let sink = dir.join(name);
    assert!(
        sink.exists(),
        "{} is missing: run plugins/build.sh first (or set CALLOP_PLUGINS)",
        sink.display()
    );
    sink
}

fn sink() -> PathBuf {
    plugin_file("bench_sink.wasm")
}

fn engine() -> PluginEngine {
    let cache = std::env::temp_dir().join("callop-bench-cache");
    PluginEngine::new(&EngineOptions {
        cache_dir: Some(cache),
        ..Default::default()
    })
    .expect("engine")
}

/// Cached `.cwasm` on disk → component → instance → `init` → first event callback.
fn warm_start(e: &PluginEngine, sink: &Path) -> Duration {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let h = host(&ev, e);
    let t = Instant::now();
    let c = e.load_file(sink).unwrap();
    h.load(&c, "sink", &args("--pings 1")).unwrap();
    h.ping("sink/p").unwrap().ping();
    run_until_empty(&mut ev, &h, &mut ());
    let d = t.elapsed();
    expect_stopped(&h, "warm start");
    d
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

    let counter = plugin_file("reload_counter.wasm");
    // The engine's own cost of one call (no host around it): the limit of
    // the ping storm's guest path, which makes one `dispatch` call per event.
    let mut raw = RawCalls::new(&e);
    let mut g = c.benchmark_group("raw_component_call");
    g.bench_function("empty", |b| b.iter(|| raw.empty()));
    g.bench_function("list in, list out", |b| b.iter(|| raw.echo()));
    g.finish();
    let mut g = c.benchmark_group("plugin_flood_100k_messages");
    g.sample_size(10);
    for (name, cross) in [("same_thread", false), ("cross_thread", true)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| plugin_flood(&e, &counter, MESSAGES, cross))
                    .sum()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("warm_start_to_first_callback");
    g.bench_function("guest", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| warm_start(&e, &sink)).sum())
    });
    g.finish();
}

criterion_group!(plugin, benches);
criterion_main!(plugin);
