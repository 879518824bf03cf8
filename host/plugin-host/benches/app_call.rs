//! The cost of one guest → application host-function call (the kv example
//! application's `store.len`, see `tests/kv-app`) beside one guest →
//! `host-loop.now` call: both `func() -> u64`, both through the engine's one
//! linker. The goal is that they are within 1.2× of each other.
//!
//! The guest is `plugins/kv-plugin` in its `--bench N` mode: each message
//! `now` or `len` on its channel `bench` makes one `dispatch` that calls
//! the function N times (`noop`: none, the baseline). Criterion reports each
//! dispatch; the table printed at the end gives the cost per call,
//! `(dispatch - baseline) / N`, and the ratio.
//!
//! ```sh
//! plugins/build.sh kv-plugin && cargo bench --workspace --bench app_call
//! ```
//! `CALLOP_PLUGINS=DIR` points at the built `.wasm` files (default
//! `plugins/target/wasm32-wasip2/release`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use callop::EventLoop;
use callop_plugin_host::{AppApi, AppData, AppSender, Capabilities, Host, HostConfig, app_data};
use criterion::{Criterion, criterion_group, criterion_main};

/// Calls per dispatch.
const N: u64 = 1000;

// The kv application's WIT: the same interfaces the plugin imports.
wasmtime::component::bindgen!({
    world: "kv-imports",
    path: "../../tests/kv-app/wit",
});

use example::kv::notify::Level;

/// The per-plugin state: a store of `len` keys (nothing else is called).
struct Kv {
    keys: Vec<String>,
}

impl example::kv::store::Host for Kv {
    fn get(&mut self, _key: String) -> Option<String> {
        None
    }
    fn set(&mut self, key: String, _value: String) {
        self.keys.push(key);
    }
    fn keys(&mut self) -> Vec<String> {
        self.keys.clone()
    }
    fn len(&mut self) -> u64 {
        self.keys.len() as u64
    }
}

impl example::kv::notify::Host for Kv {
    fn notify(&mut self, _level: Level, _text: String) {}
}

fn kv_plugin() -> PathBuf {
    let dir = std::env::var_os("CALLOP_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/target/wasm32-wasip2/release")
        });
    let p = dir.join("kv_plugin.wasm");
    assert!(
        p.exists(),
        "{} is missing: run plugins/build.sh kv-plugin first (or set CALLOP_PLUGINS)",
        p.display()
    );
    p
}

struct Bench<'l> {
    ev: EventLoop<'l, ()>,
    host: Host<'l, ()>,
    tx: AppSender,
}

impl Bench<'_> {
    fn new() -> Self {
        let api = AppApi::new().add(
            &["example:kv/store@1.0.0", "example:kv/notify@1.0.0"],
            |l| KvImports::add_to_linker::<_, AppData<Kv>>(l, app_data::<Kv>),
            |_| Kv {
                keys: vec!["a".into(), "b".into()],
            },
        );
        let mut config = HostConfig::default().with_app_api(api);
        config.engine.cache_dir = Some(std::env::temp_dir().join("callop-bench-cache"));
        // Isolation on, as in production: a callback deadline (epoch ticks).
        config.limits.callback_timeout = Some(Duration::from_secs(1));
        let ev: EventLoop<()> = EventLoop::try_new().unwrap();
        let host = Host::new(ev.handle(), config).unwrap();
        host.grant(
            "bench",
            Capabilities::new()
                .allow_app_interface("example:kv/store@1.0.0")
                .allow_app_interface("example:kv/notify@1.0.0"),
        );
        host.load_file(kv_plugin(), "bench", &["--bench".into(), N.to_string()])
            .expect("load kv-plugin --bench");
        let tx = host.sender("bench/bench").unwrap();
        let mut b = Bench { ev, host, tx };
        b.round(b"noop");
        b
    }

    /// One message, one dispatch of the guest.
    fn round(&mut self, what: &[u8]) {
        self.tx.send(what.to_vec()).unwrap();
        self.ev
            .dispatch(Some(Duration::from_millis(100)), &mut ())
            .unwrap();
        assert!(
            !self.host.is_empty(),
            "the bench plugin ended: {:?}",
            self.host.exits()
        );
    }

    fn time(&mut self, what: &[u8], rounds: u32) -> Duration {
        let t = Instant::now();
        for _ in 0..rounds {
            self.round(what);
        }
        t.elapsed()
    }
}

fn benches(c: &mut Criterion) {
    let mut b = Bench::new();
    let mut g = c.benchmark_group(format!("guest_call_x{N}_per_dispatch"));
    for (name, what) in [
        ("baseline (no call)", &b"noop"[..]),
        ("host-loop.now", b"now"),
        ("app store.len", b"len"),
    ] {
        g.bench_function(name, |bench| bench.iter(|| b.round(what)));
    }
    g.finish();

    // The table: interleaved runs, the best of several, per call.
    let rounds = 200;
    let mut best = [Duration::MAX; 3];
    for _ in 0..7 {
        for (i, what) in [&b"noop"[..], b"now", b"len"].into_iter().enumerate() {
            best[i] = best[i].min(b.time(what, rounds));
        }
    }
    let per_call = |d: Duration| {
        (d.as_nanos() as f64 - best[0].as_nanos() as f64) / (rounds as f64 * N as f64)
    };
    let (now, len) = (per_call(best[1]), per_call(best[2]));
    println!();
    println!("guest → host call, ns per call (best of 7 × {rounds} dispatches of {N} calls):");
    println!("  {:<28} {:>8.1}", "host-loop.now", now);
    println!("  {:<28} {:>8.1}", "app store.len (example:kv)", len);
    println!(
        "  {:<28} {:>8.2}×  (goal: within 1.2×)",
        "ratio app / now",
        len / now
    );
    b.tx.send(b"stop".to_vec()).unwrap();
    while !b.host.is_empty() {
        b.ev.dispatch(Some(Duration::from_millis(100)), &mut ())
            .unwrap();
    }
}

criterion_group!(app_call, benches);
criterion_main!(app_call);
