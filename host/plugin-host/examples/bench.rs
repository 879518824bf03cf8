//! The plugin-host benchmark: prints one Markdown table comparing calloop
//! 0.14, callop's native callbacks, and wasm guests (Rust, Python, JS).
//!
//! ```text
//! plugins/build.sh && cargo run --release -p callop-plugin-host --example bench
//! ```
//!
//! Options: `--idle N` (idle plugins for the memory row, default 10000),
//! `--messages N` (channel flood, default 1000000), `--pings N` (ping storm
//! iterations, default 200000), `--polyglot DIR` (Python/JS tickers built by
//! `plugins/polyglot.sh`, default `target/polyglot`), `--only PART` (one of
//! `flood`, `storm`, `metrics`, `threads`, `start`, `idle`, `blocking`, `reload`, `polyglot`, or `flood-guest` / `storm-guest` for
//! the guest side of one workload alone: e.g. for `perf record` (`flood-guest-shared`: the
//! guest receiving `channel::Message`s instead of `Vec`s); `flood-native`
//! for the native side of the flood alone, to compare instruction counts).
//!
//! Every guest configuration runs with isolation on: a 1 s callback timeout
//! (epoch interruption, 5 ms ticks) and the default 256 MiB memory limit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use callop::EventLoop;
use callop::channel::Event;
use callop_plugin_host::{EngineOptions, PluginComponent, PluginEngine};

mod support;
use support::{
    args, cpu_mix, expect_stopped, flood_calloop, flood_guest, flood_guest_with, flood_native,
    host, plugin_flood, raw_component_calls, run_until_empty, storm_calloop, storm_guest,
    storm_guest_metrics, storm_native,
};

struct Opts {
    idle: usize,
    messages: u64,
    pings: u64,
    plugins: PathBuf,
    polyglot: PathBuf,
    only: Option<String>,
}

impl Opts {
    fn run(&self, part: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == part)
    }
}

fn opts() -> Opts {
    // host/plugin-host -> the repository root.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    let mut o = Opts {
        idle: 10_000,
        messages: 1_000_000,
        pings: 200_000,
        plugins: root.join("plugins/target/wasm32-wasip2/release"),
        polyglot: root.join("target/polyglot"),
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--idle" => o.idle = v.parse().expect("--idle N"),
            "--messages" => o.messages = v.parse().expect("--messages N"),
            "--pings" => o.pings = v.parse().expect("--pings N"),
            "--plugins" => o.plugins = v.into(),
            "--polyglot" => o.polyglot = v.into(),
            "--only" => o.only = Some(v),
            _ => panic!("unknown option {a}"),
        }
    }
    o
}

fn engine(cache: &Path, pooling: Option<u32>) -> PluginEngine {
    PluginEngine::new(&EngineOptions {
        cache_dir: Some(cache.to_path_buf()),
        pooling_instances: pooling,
        ..Default::default()
    })
    .expect("engine")
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

// ---------------------------------------------------------------- start

/// Warm start: cached `.cwasm` on disk → compiled component → instance →
/// `init` → first event callback. Returns (load from cache, instantiate +
/// init, to first callback), medians over `runs`.
fn warm_start(e: &PluginEngine, sink: &Path, runs: usize) -> (Duration, Duration, Duration) {
    e.load_file(sink).expect("cold compile fills the cache");
    let mut load = Vec::new();
    let mut init = Vec::new();
    let mut first = Vec::new();
    for _ in 0..runs {
        let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
        let h = host(&ev, e);
        let t = Instant::now();
        let c = e.load_file(sink).unwrap();
        let t1 = t.elapsed();
        h.load(&c, "sink", &args("--pings 1")).unwrap();
        let t2 = t.elapsed();
        h.ping("sink/p").unwrap().ping();
        run_until_empty(&mut ev, &h, &mut ());
        let t3 = t.elapsed();
        expect_stopped(&h, "warm start");
        load.push(t1);
        init.push(t2 - t1);
        first.push(t3);
    }
    (median(load), median(init), median(first))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Start time of a ticker (`--every 1ms --count 1`; cached component in
/// memory: instantiate + init) and its per-event cost (`--every 0ms
/// --count n`: each tick is one timer event, one guest call, one re-arm).
fn ticker_costs(e: &PluginEngine, c: &PluginComponent, n: u64) -> (Duration, Duration) {
    let mut starts = Vec::new();
    for _ in 0..5 {
        let ev: EventLoop<()> = EventLoop::try_new().unwrap();
        let h = host(&ev, e);
        let t = Instant::now();
        h.load(c, "t", &args("--every 1ms --count 1")).unwrap();
        starts.push(t.elapsed());
    }
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let h = host(&ev, e);
    h.load(c, "t", &args(&format!("--every 0ms --count {n}")))
        .unwrap();
    // From the end of `init`: the start (milliseconds for Python) is the
    // row's other figure.
    let t = Instant::now();
    run_until_empty(&mut ev, &h, &mut ());
    let per = t.elapsed() / n as u32;
    let exit = &h.exits()[0];
    assert!(!exit.reason.is_failure(), "ticker: {}", exit.reason);
    (median(starts), per)
}

// -------------------------------------------------------------- blocking

/// A `ticker` every 1 ms (2,000 ticks, reporting on `@app/ticks`) beside a
/// `faulty` plugin sleeping 30 s in a callback, 100 ms after start. Returns
/// the ticker's largest gap between two ticks and how long the sleeping
/// call was let wait (its budget: the 1 s callback timeout).
fn blocked_neighbour(e: &PluginEngine, ticker: &Path, faulty: &Path) -> (Duration, Duration) {
    let mut ev: EventLoop<Vec<Instant>> = EventLoop::try_new().unwrap();
    let h = host(&ev, e);
    let ticks = h.app_channel("ticks").unwrap();
    ev.handle()
        .insert_source(ticks, |m, _, got: &mut Vec<Instant>| {
            if let Event::Msg(_) = m {
                got.push(Instant::now());
            }
        })
        .unwrap();
    let t = e.load_file(ticker).unwrap();
    let f = e.load_file(faulty).unwrap();
    h.load(
        &t,
        "ticker",
        &args("--every 1ms --count 2000 --notify @app/ticks"),
    )
    .unwrap();
    let start = Instant::now();
    h.load(&f, "faulty", &args("--mode sleep --ms 30000 --after 100"))
        .unwrap();
    let mut got = Vec::new();
    let mut faulty_end = None;
    while !h.is_empty() {
        ev.dispatch(Some(Duration::from_millis(10)), &mut got)
            .unwrap();
        if faulty_end.is_none() && h.exits().iter().any(|x| x.name == "faulty") {
            faulty_end = Some(start.elapsed());
        }
    }
    // Messages sent in the last dispatch may still be in flight.
    for _ in 0..3 {
        ev.dispatch(Some(Duration::ZERO), &mut got).unwrap();
    }
    assert_eq!(got.len(), 2000, "the ticker lost ticks");
    let gap = got
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    let cut = faulty_end
        .unwrap_or_default()
        .saturating_sub(Duration::from_millis(100));
    (gap, cut)
}

// ---------------------------------------------------------------- reload

/// The pause a reload causes: a `reload-counter` (`--progress 50`,
/// reporting on `@app/counter`) gets 50 messages per loop iteration from
/// the application; after 500 iterations it is reloaded (with or without
/// its state handed over). Returns, medians over `runs`: the `reload` call
/// (the loop does nothing else meanwhile), the longest time between two
/// reports around the swap (no message delivered to the plugin), and the
/// usual time between two reports.
fn reload_pause(
    e: &PluginEngine,
    counter: &Path,
    state: bool,
    runs: usize,
) -> (Duration, Duration, Duration) {
    let c = e.load_file(counter).unwrap();
    let (mut calls, mut gaps, mut usual) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut ev: EventLoop<Vec<Instant>> = EventLoop::try_new().unwrap();
        let h = host(&ev, e);
        let rx = h.app_channel("counter").unwrap();
        ev.handle()
            .insert_source(rx, |m, _, got: &mut Vec<Instant>| {
                if let Event::Msg(_) = m {
                    got.push(Instant::now());
                }
            })
            .unwrap();
        let a = format!(
            "--notify @app/counter --progress 50{}",
            if state { " --state" } else { "" }
        );
        let id = h.load(&c, "counter", &args(&a)).unwrap();
        let tx = h.sender("counter/in").unwrap();
        let mut got = Vec::new();
        let mut seq = 0u64;
        let mut reload_at = 0;
        for i in 0..1000 {
            for _ in 0..50 {
                tx.send(seq.to_le_bytes().to_vec()).unwrap();
                seq += 1;
            }
            if i == 500 {
                reload_at = got.len();
                let t = Instant::now();
                h.reload(id, &c).expect("reload");
                calls.push(t.elapsed());
            }
            ev.dispatch(Some(Duration::ZERO), &mut got).unwrap();
        }
        tx.send(Vec::new()).unwrap();
        drop(tx);
        run_until_empty(&mut ev, &h, &mut got);
        assert_eq!(h.exits()[0].reloads, 1, "reloaded once");
        let diffs: Vec<Duration> = got.windows(2).map(|w| w[1] - w[0]).collect();
        let around = &diffs[reload_at.saturating_sub(3)..(reload_at + 3).min(diffs.len())];
        gaps.push(around.iter().copied().max().unwrap_or_default());
        usual.push(median(diffs));
    }
    (median(calls), median(gaps), median(usual))
}

// ---------------------------------------------------------------- memory

/// Field `i` of `/proc/self/statm` in bytes (0: address space, 1: RSS).
fn statm_bytes(i: usize) -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(i)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn rss_bytes() -> u64 {
    statm_bytes(1)
}

/// Memory mappings of this process (`vm.max_map_count` bounds them).
fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count())
}

struct IdleResult {
    /// Address space (bytes) and memory mappings with every plugin loaded.
    vm: u64,
    maps: usize,
    per_plugin: u64,
    total: u64,
    load_time: Duration,
    ticks_ok: bool,
    late_p50: Duration,
    late_p99: Duration,
    late_max: Duration,
    early: usize,
    /// Lateness of a native 7 ms timer on the same loop.
    native: String,
}

/// `n` bench-sink plugins ticking every second three times (first ticks
/// spread evenly over one second if `spread`, else all at once), each reporting
/// `<name> <k> <late-ns>` to `@app/ticks`. Checks every plugin reported
/// exactly 1, 2, 3 in order and measures RSS after all ticked once.
fn idle_plugins(e: &PluginEngine, sink: &Path, n: usize, spread: bool) -> IdleResult {
    struct D {
        got: Vec<Vec<u64>>,
        late: Vec<i64>,
        native_late: Vec<Duration>,
        msgs: usize,
    }
    let mut ev: EventLoop<D> = EventLoop::try_new().unwrap();
    let h = host(&ev, e);
    let rx = h.app_channel("ticks").unwrap();
    ev.handle()
        .insert_source(rx, |e, _, d: &mut D| {
            if let Event::Msg(m) = e {
                let s = String::from_utf8(m).unwrap();
                let mut f = s.split(' ');
                let i: usize = f.next().unwrap()[1..].parse().unwrap();
                d.got[i].push(f.next().unwrap().parse().unwrap());
                d.late.push(f.next().unwrap().parse().unwrap());
                d.msgs += 1;
            }
        })
        .unwrap();
    let c = e.load_file(sink).unwrap();
    let base = rss_bytes();
    let t = Instant::now();
    for i in 0..n {
        let offset = if spread { i * 1000 / n } else { 0 };
        let a = format!("--tick 1000 --ticks 3 --report --offset {offset}");
        h.load(&c, &format!("p{i}"), &args(&a)).unwrap();
    }
    let load_time = t.elapsed();
    let (vm, maps) = (statm_bytes(0), mappings());
    // A native timer every 7 ms on the same loop: the machine's own
    // lateness, to compare the guests' with (inserted once every plugin is
    // loaded: the loads hold the loop for a while).
    ev.handle()
        .insert_source(
            callop::timer::Timer::from_duration(Duration::from_millis(7)),
            |deadline, _, d: &mut D| {
                d.native_late
                    .push(Instant::now().saturating_duration_since(deadline));
                callop::timer::TimeoutAction::ToInstant(deadline + Duration::from_millis(7))
            },
        )
        .unwrap();
    let mut d = D {
        got: vec![Vec::new(); n],
        late: Vec::new(),
        native_late: Vec::new(),
        msgs: 0,
    };
    let mut total = 0;
    while !h.is_empty() {
        ev.dispatch(Some(Duration::from_millis(100)), &mut d)
            .unwrap();
        if d.msgs >= n && total == 0 {
            total = rss_bytes().saturating_sub(base);
        }
    }
    // Drain the last reports.
    for _ in 0..3 {
        ev.dispatch(Some(Duration::ZERO), &mut d).unwrap();
    }
    let ticks_ok = d.got.iter().all(|v| v == &[1, 2, 3]);
    let early = d.late.iter().filter(|&&l| l < 0).count();
    let mut late: Vec<Duration> = d
        .late
        .iter()
        .map(|&l| Duration::from_nanos(l.max(0) as u64))
        .collect();
    late.sort();
    let pct = |p: f64| late[((late.len() - 1) as f64 * p) as usize];
    IdleResult {
        vm,
        maps,
        per_plugin: total / n as u64,
        total,
        load_time,
        ticks_ok,
        late_p50: pct(0.5),
        late_p99: pct(0.99),
        late_max: *late.last().unwrap(),
        native: {
            d.native_late.sort();
            let n = &d.native_late;
            format!(
                "p50 {} / p99 {} / max {}",
                us(n[n.len() / 2]),
                us(n[(n.len() - 1) * 99 / 100]),
                us(*n.last().unwrap())
            )
        },
        early,
    }
}

// ---------------------------------------------------------------- main

fn ns(d: Duration) -> String {
    format!("{} ns", d.as_nanos())
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

impl IdleResult {
    /// The guest tickers' lateness, as a table cell.
    fn lateness(&self) -> String {
        format!(
            "p50 {} / p99 {} / max {}; early: {}",
            us(self.late_p50),
            us(self.late_p99),
            us(self.late_max),
            self.early
        )
    }
}

fn main() {
    let o = opts();
    // Kept between runs: the cold compile (Python/JS: minutes) happens once.
    let cache = std::env::temp_dir().join("callop-bench-cache");
    let sink = o.plugins.join("bench_sink.wasm");
    let ticker = o.plugins.join("ticker.wasm");
    assert!(
        sink.exists(),
        "{} missing: run plugins/build.sh",
        sink.display()
    );
    let ondemand = engine(&cache, None);
    // A pool for the rows that run a few plugins; the idle rows get one sized
    // for them (its reservation, 4 GiB of address space per memory slot,
    // would slow every mapping of the other rows down).
    let pooled = engine(&cache, Some(64));
    let mut rows: Vec<[String; 4]> = Vec::new();
    let mut row = |a: &str, b: String, c: String, d: String| rows.push([a.into(), b, c, d]);

    // Only the guest side of one workload, for profilers.
    match o.only.as_deref() {
        Some("flood-guest") => {
            let d = flood_guest(&pooled, &sink, o.messages);
            println!("guest flood: {:.2} M/s", rate(o.messages, d) / 1e6);
            return;
        }
        Some("flood-guest-shared") => {
            let d = flood_guest_with(&pooled, &sink, o.messages, true);
            println!(
                "guest flood (shared messages): {:.2} M/s",
                rate(o.messages, d) / 1e6
            );
            return;
        }
        Some("flood-native") => {
            let d = flood_native(o.messages);
            println!("native flood: {:.2} M/s", rate(o.messages, d) / 1e6);
            return;
        }
        Some("storm-guest") => {
            let d = storm_guest(&pooled, &sink, o.pings);
            println!("guest storm: {} per ping", ns(d / o.pings as u32));
            return;
        }
        _ => {}
    }
    if o.run("flood") {
        let n = o.messages;
        // Interleaved, median of three: the first run of a process faults its
        // heap in (about 3 µs per page here), which would favour whichever
        // variant runs later.
        let mut t: [Vec<Duration>; 4] = Default::default();
        for _ in 0..3 {
            t[0].push(flood_calloop(n));
            t[1].push(flood_native(n));
            t[2].push(flood_guest(&pooled, &sink, n));
            t[3].push(flood_guest_with(&pooled, &sink, n, true));
        }
        let [cl, na, gu, gs] = t.map(median);
        row(
            &format!("channel flood, {n} msgs (median of 3 interleaved runs): events/s"),
            format!("{:.2} M/s", rate(n, cl) / 1e6),
            format!("{:.2} M/s", rate(n, na) / 1e6),
            format!(
                "{:.2} M/s (guest/native = {:.2})",
                rate(n, gu) / 1e6,
                na.as_secs_f64() / gu.as_secs_f64()
            ),
        );
        row(
            &format!(
                "channel flood, {n} msgs, guest receiving `Message`s (`Channel::open_shared`): events/s"
            ),
            String::new(),
            String::new(),
            format!(
                "{:.2} M/s (guest/native = {:.2})",
                rate(n, gs) / 1e6,
                na.as_secs_f64() / gs.as_secs_f64()
            ),
        );
    }
    if o.run("storm") {
        let n = o.pings;
        let cl = storm_calloop(n);
        let na = storm_native(n);
        let gu = storm_guest(&pooled, &sink, n);
        row(
            &format!("ping storm, {n} pings (1 per iteration): per event"),
            ns(cl / n as u32),
            ns(na / n as u32),
            format!(
                "{} (guest/native events/s = {:.2})",
                ns(gu / n as u32),
                na.as_secs_f64() / gu.as_secs_f64()
            ),
        );
    }
    if o.run("storm") {
        // The engine's own cost of one call, the limit under any guest path:
        // the ping storm makes one `dispatch` call per event.
        let (empty, list) = raw_component_calls(&pooled, 1_000_000);
        row(
            "one raw component call, no host around it: `func()` / `func(list<u32>) -> list<u32>`",
            "-".into(),
            "-".into(),
            format!("{} / {}", ns(empty), ns(list)),
        );
    }
    if o.run("storm") || o.run("metrics") {
        // Metrics on vs off, interleaved (3 runs each; medians): the
        // per-plugin counters are always kept, "on" adds the publishing
        // timer (every 250 ms), the endpoint and a client scraping it.
        let n = o.pings;
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            off.push(storm_guest(&pooled, &sink, n));
            on.push(storm_guest_metrics(&pooled, &sink, n));
        }
        let (off, on) = (median(off), median(on));
        row(
            &format!(
                "ping storm, {n} pings: metrics off / on (--metrics, scraped every 250 ms), median of 3"
            ),
            "-".into(),
            "-".into(),
            format!(
                "{} / {} per event ({:+.1} %)",
                ns(off / n as u32),
                ns(on / n as u32),
                (on.as_secs_f64() / off.as_secs_f64() - 1.0) * 100.0
            ),
        );
    }
    if o.run("threads") {
        // Several loop threads (Host::start_threads): medians of 3.
        let counter = o.plugins.join("reload_counter.wasm");
        let n = 1_000_000;
        let (mut same, mut cross) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            same.push(plugin_flood(&pooled, &counter, n, false));
            cross.push(plugin_flood(&pooled, &counter, n, true));
        }
        let (same, cross) = (median(same), median(cross));
        row(
            &format!(
                "plugin → plugin channel flood, {n} msgs: one loop thread / two (sender and receiver on different threads), median of 3"
            ),
            "-".into(),
            "-".into(),
            format!(
                "{:.2} M/s / {:.2} M/s (cross/same = {:.2})",
                rate(n, same) / 1e6,
                rate(n, cross) / 1e6,
                same.as_secs_f64() / cross.as_secs_f64()
            ),
        );
        let (plugins, ticks, burn) = (8, 2_000, 20_000);
        let (mut one, mut two) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            one.push(cpu_mix(&pooled, &sink, plugins, ticks, burn, 1));
            two.push(cpu_mix(&pooled, &sink, plugins, ticks, burn, 2));
        }
        let (one, two) = (median(one), median(two));
        let total = plugins as u64 * ticks;
        row(
            &format!(
                "CPU-bound mix: {plugins} plugins × {ticks} ticks of {burn} work rounds, 1 loop thread / 2, median of 3"
            ),
            "-".into(),
            "-".into(),
            format!(
                "{:.0} / {:.0} ticks/s (2 threads / 1 = {:.2}×)",
                rate(total, one),
                rate(total, two),
                one.as_secs_f64() / two.as_secs_f64()
            ),
        );
    }
    if o.run("start") {
        let (load, init, first) = warm_start(&pooled, &sink, 21);
        row(
            "warm start, pooling (cached .cwasm → first callback), median of 21",
            "-".into(),
            "-".into(),
            format!(
                "{} (cache load {} + instantiate&init {})",
                us(first),
                us(load),
                us(init)
            ),
        );
        let (_, _, first_od) = warm_start(&ondemand, &sink, 21);
        row(
            "warm start, on-demand allocator",
            "-".into(),
            "-".into(),
            us(first_od),
        );
    }
    if o.run("idle") {
        let pool_size = (o.idle as u32 + 16).max(64);
        let r = idle_plugins(&engine(&cache, Some(pool_size)), &sink, o.idle, true);
        row(
            &format!("{} idle Rust plugins ticking 1/s, pooling: RSS", o.idle),
            "-".into(),
            "-".into(),
            format!(
                "{:.1} MiB total, {:.0} KiB/plugin; loaded in {:.0} ms; counts exact: {}; \
                 address space {:.1} TiB, {} mappings",
                r.total as f64 / (1 << 20) as f64,
                r.per_plugin as f64 / 1024.0,
                r.load_time.as_secs_f64() * 1e3,
                r.ticks_ok,
                r.vm as f64 / (1u64 << 40) as f64,
                r.maps
            ),
        );
        row(
            &format!(
                "timer lateness, {} guest tickers spread over each second + 1 native 7 ms timer",
                o.idle
            ),
            "-".into(),
            r.native.clone(),
            r.lateness(),
        );
        let r = idle_plugins(&ondemand, &sink, o.idle.min(200), false);
        row(
            &format!(
                "{} idle Rust plugins, on-demand allocator: RSS",
                o.idle.min(200)
            ),
            "-".into(),
            "-".into(),
            format!(
                "{:.0} KiB/plugin; counts exact: {}",
                r.per_plugin as f64 / 1024.0,
                r.ticks_ok
            ),
        );
        row(
            &format!(
                "timer lateness, {} guest tickers firing in the same instant (burst) + 1 native 7 ms timer",
                o.idle.min(200)
            ),
            "-".into(),
            r.native.clone(),
            r.lateness(),
        );
    }
    if o.run("blocking") {
        let (gap, cut) = blocked_neighbour(&pooled, &ticker, &o.plugins.join("faulty.wasm"));
        row(
            "a plugin sleeping 30 s in a callback beside a 1 ms ticker: the sleep is cut after / the ticker's largest gap",
            "-".into(),
            "-".into(),
            format!(
                "{:.1} ms (budget 1 s) / {:.1} ms",
                cut.as_secs_f64() * 1e3,
                gap.as_secs_f64() * 1e3
            ),
        );
    }
    if o.run("reload") {
        let counter = o.plugins.join("reload_counter.wasm");
        for state in [false, true] {
            let (call, gap, usual) = reload_pause(&pooled, &counter, state, 21);
            row(
                &format!(
                    "reload under a message stream{}: `reload` call / longest time without a delivery (usual), median of 21",
                    if state { ", state handed over" } else { "" }
                ),
                "-".into(),
                "-".into(),
                format!("{} / {} ({})", us(call), us(gap), us(usual)),
            );
        }
    }
    if o.run("polyglot") {
        let mut guests = vec![("Rust", ticker.clone())];
        for (lang, f) in [("Python", "python-ticker.wasm"), ("JS", "js-ticker.wasm")] {
            guests.push((lang, o.polyglot.join(f)));
        }
        for (lang, path) in guests {
            if !path.exists() {
                row(
                    &format!("{lang} ticker"),
                    "-".into(),
                    "-".into(),
                    format!("not measured: {} missing", path.display()),
                );
                continue;
            }
            let t = Instant::now();
            let c = pooled.load_file(&path).unwrap();
            let load = t.elapsed();
            let n = 20_000;
            let (start, per) = ticker_costs(&pooled, &c, n);
            row(
                &format!("{lang} ticker: start (instantiate+init) / per timer event"),
                "-".into(),
                "-".into(),
                format!(
                    "start {} (+ {} to load the cache) / {} per event",
                    us(start),
                    us(load),
                    ns(per)
                ),
            );
        }
    }

    println!(
        "\n| measurement | calloop 0.14 | callop native | wasm guest (epoch deadline 1 s + 256 MiB memory limit on) |"
    );
    println!("|---|---|---|---|");
    for [a, b, c, d] in &rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
}
