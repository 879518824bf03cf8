//! The cost of one timer event in one plugin, for A/B comparisons of plugin
//! variants (e.g. the Python and JS helpers) and for `valgrind --tool=callgrind`.
//!
//! ```text
//! cargo build --release -p callop-plugin-host --example event_cost
//! target/release/examples/event_cost [--runs R] FILE N [ARG...]
//! ```
//!
//! Loads the component FILE (the compile cache of the `bench` example),
//! then `--runs` times (default 5): starts one instance with ARG... (every
//! `{n}` replaced by N; default `--every 0ms --count {n}`, the ticker's) and
//! runs the loop until the plugin ended. Prints per run the start
//! (instantiate + init) and the time per event, with and without the start;
//! the plugin must end by itself after N events (no source left, or exit 0).
//!
//! Instruction counts per event: run it under callgrind with N and with
//! 2N (`--runs 1`) and divide the difference by N (the plugin is compiled
//! for the CPU valgrind reports, so once more, under valgrind, if the cache
//! holds it only for the real one).
//!
//! `examples/empty-plugins/` holds a Python and a JavaScript plugin without
//! the helpers, answering every event with a prebuilt result (build commands
//! at their top): the fixed cost of one `dispatch` call into such a component.

use std::path::PathBuf;
use std::time::Instant;

use callop::EventLoop;
use callop_plugin_host::{EngineOptions, ExitReason, PluginEngine};

mod support;
use support::{host, run_until_empty};

fn main() {
    let mut runs = 5;
    let mut rest = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--runs" {
            runs = it.next().and_then(|v| v.parse().ok()).expect("--runs R");
        } else {
            rest.push(a);
        }
    }
    assert!(
        rest.len() >= 2,
        "usage: event_cost [--runs R] FILE N [ARG...]"
    );
    let file = PathBuf::from(&rest[0]);
    let n: u64 = rest[1].parse().expect("N: events per run");
    let template: Vec<String> = if rest.len() > 2 {
        rest[2..].to_vec()
    } else {
        ["--every", "0ms", "--count", "{n}"]
            .map(String::from)
            .to_vec()
    };
    let args: Vec<String> = template
        .iter()
        .map(|a| a.replace("{n}", &n.to_string()))
        .collect();
    let engine = PluginEngine::new(&EngineOptions {
        cache_dir: Some(std::env::temp_dir().join("callop-bench-cache")),
        pooling_instances: Some(64),
        ..EngineOptions::default()
    })
    .expect("engine");
    let c = engine.load_file(&file).expect("load");
    for _ in 0..runs {
        let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
        let h = host(&ev, &engine);
        let t = Instant::now();
        h.load(&c, "t", &args).expect("start");
        let started = t.elapsed();
        run_until_empty(&mut ev, &h, &mut ());
        let total = t.elapsed();
        let exit = &h.exits()[0];
        assert!(
            matches!(exit.reason, ExitReason::Finished | ExitReason::Stopped(0)),
            "plugin: {}",
            exit.reason
        );
        let per = |d: std::time::Duration| d.as_nanos() as f64 / n as f64;
        println!(
            "start {:8.1} µs | per event {:8.0} ns with the start, {:8.0} ns without",
            started.as_secs_f64() * 1e6,
            per(total),
            per(total - started)
        );
    }
}
