//! Start time and per-event cost of the Rust, Python and JavaScript example
//! plugins, side by side (a measurement, not a test):
//!
//! ```sh
//! bash plugins/build.sh && bash plugins/polyglot.sh
//! cargo run --release -p callop-tests --example polyglot_cost [-- N] >/dev/null
//! ```
//!
//! The table goes to stderr; stdout carries the plugins' own output (the
//! ticks), forwarded by the host as usual.
//!
//! For each language it reports:
//! * `compile`: compiling the component with Cranelift (no cache);
//! * `cached`: loading it from a warm compile cache;
//! * `start`: instantiating it and running its `init`;
//! * `tick`: per tick of `ticker --every 0ns --count N` (one loop iteration
//!   and one `dispatch` call with one timer event per tick);
//! * `relay msg`: per message of N messages app → `relay` → app (messages
//!   arrive in batches, so this is the per-event cost inside a batch).

use std::time::{Duration, Instant};

use callop::EventLoop;
use callop::channel::Event;
use callop_plugin_host::{EngineOptions, Host, HostConfig, PluginEngine};
use callop_tests::polyglot::{Lang, polyglot_plugin};
use callop_tests::{plugin, target_dir};

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn run_until_empty<D>(ev: &mut EventLoop<'_, D>, host: &Host<'_, D>, data: &mut D) {
    while !host.is_empty() {
        ev.dispatch(Some(Duration::from_millis(100)), data).unwrap();
    }
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N must be a number"))
        .unwrap_or(10_000);
    let cache = target_dir().join("callop-cost-cache");
    let _ = std::fs::remove_dir_all(&cache);
    eprintln!(
        "{:<7} {:>9} {:>9} {:>9} {:>10} {:>10}   (N = {n})",
        "plugin", "compile", "cached", "start", "tick", "relay msg"
    );
    for lang in ["rust", "python", "js"] {
        let path = |name: &str| match lang {
            "rust" => plugin(name),
            "python" => polyglot_plugin(Lang::Python, name),
            _ => polyglot_plugin(Lang::Js, name),
        };
        // Compile (no cache), then fill and hit the cache.
        let engine = PluginEngine::new(&EngineOptions::default()).unwrap();
        let t = Instant::now();
        engine.load_file(path("ticker")).unwrap();
        let compile = t.elapsed();
        let cached_engine = PluginEngine::new(&EngineOptions {
            cache_dir: Some(cache.clone()),
            ..Default::default()
        })
        .unwrap();
        for name in ["ticker", "relay"] {
            cached_engine.load_file(path(name)).unwrap();
        }
        let t = Instant::now();
        let ticker = cached_engine.load_file(path("ticker")).unwrap();
        let cached = t.elapsed();
        let relay = cached_engine.load_file(path("relay")).unwrap();

        // Start: instantiate + init.
        let mut ev: EventLoop<u32> = EventLoop::try_new().unwrap();
        let cfg = HostConfig::default();
        let host = Host::with_engine(ev.handle(), cached_engine, cfg.policy, cfg.limits).unwrap();
        let count = n.to_string();
        let t = Instant::now();
        host.load(
            &ticker,
            "ticker",
            &args(&["--every", "0ns", "--count", &count]),
        )
        .unwrap();
        let start = t.elapsed();
        // Ticks.
        let t = Instant::now();
        run_until_empty(&mut ev, &host, &mut 0);
        let tick = t.elapsed() / n;

        // Relay: N messages app -> relay -> app.
        let out = host.app_channel("out").unwrap();
        ev.handle()
            .insert_source(out, |e, _, got: &mut u32| {
                if let Event::Msg(_) = e {
                    *got += 1
                }
            })
            .unwrap();
        host.load(&relay, "relay", &[]).unwrap();
        let tx = host.sender("relay/in").unwrap();
        let t = Instant::now();
        for i in 0..n {
            tx.send(i.to_le_bytes().to_vec()).unwrap();
        }
        drop(tx);
        let mut got = 0;
        while got < n {
            ev.dispatch(Some(Duration::from_millis(100)), &mut got)
                .unwrap();
        }
        let msg = t.elapsed() / n;
        run_until_empty(&mut ev, &host, &mut got);
        eprintln!(
            "{lang:<7} {:>9.2?} {:>9.2?} {:>9.2?} {:>10.2?} {:>10.2?}",
            compile, cached, start, tick, msg
        );
    }
    let _ = std::fs::remove_dir_all(&cache);
}
