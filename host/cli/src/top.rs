//! `callop-host top [ADDR]`: a refreshing table of what each plugin of a
//! running host costs, read from its `--metrics` endpoint (the same figures
//! Prometheus scrapes; rates are differences between two scrapes).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

/// `top`'s arguments.
#[derive(Args, Debug, Clone)]
pub struct TopArgs {
    /// The host's `--metrics` address (HOST:PORT) or URL.
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:9464")]
    addr: String,
    /// Milliseconds between two refreshes.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    interval: u64,
    /// Print this many tables, then exit [default: until interrupted].
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

/// One plugin's figures in a scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    up: bool,
    cpu_seconds: Option<f64>,
    dispatches: f64,
    events: f64,
    memory: f64,
    queued: f64,
    faults: f64,
    restarts: f64,
}

/// The rows of a scrape (the Prometheus text format), by plugin name.
pub fn parse(body: &str) -> Result<BTreeMap<String, Row>, String> {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .map_err(|e| format!("not the Prometheus text format: {e}"))?;
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for s in &scrape.samples {
        let Some(plugin) = s.labels.get("plugin") else {
            continue;
        };
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        let r = rows.entry(plugin.to_string()).or_default();
        match s.metric.as_str() {
            "callop_plugin_up" => r.up = v > 0.0,
            "callop_plugin_cpu_seconds_total" => r.cpu_seconds = Some(v),
            "callop_plugin_dispatch_calls_total" => r.dispatches = v,
            "callop_plugin_events_total" => r.events += v,
            "callop_plugin_memory_bytes" => r.memory = v,
            "callop_plugin_queued_messages" => r.queued = v,
            "callop_plugin_faults_total" => r.faults += v,
            "callop_plugin_restarts_total" => r.restarts = v,
            _ => {}
        }
    }
    Ok(rows)
}

/// The table between two scrapes `dt` apart (`old`: the earlier one).
pub fn table(old: &BTreeMap<String, Row>, new: &BTreeMap<String, Row>, dt: Duration) -> String {
    let secs = dt.as_secs_f64().max(1e-9);
    let mut out = format!(
        "{:<24} {:>3} {:>6} {:>11} {:>11} {:>10} {:>8} {:>7} {:>8}\n",
        "PLUGIN", "UP", "CPU%", "DISPATCH/s", "EVENTS/s", "MEMORY", "QUEUED", "FAULTS", "RESTARTS"
    );
    for (name, r) in new {
        let before = old.get(name);
        let rate = |f: fn(&Row) -> f64| match before {
            Some(b) => format!("{:.1}", ((f(r) - f(b)) / secs).max(0.0)),
            None => "-".into(),
        };
        let cpu = match (r.cpu_seconds, before.and_then(|b| b.cpu_seconds)) {
            (Some(n), Some(o)) => format!("{:.1}", ((n - o) / secs * 100.0).max(0.0)),
            _ => "-".into(),
        };
        out += &format!(
            "{:<24} {:>3} {:>6} {:>11} {:>11} {:>10} {:>8} {:>7} {:>8}\n",
            name,
            if r.up { "1" } else { "0" },
            cpu,
            rate(|r| r.dispatches),
            rate(|r| r.events),
            mib(r.memory),
            r.queued,
            r.faults,
            r.restarts
        );
    }
    out
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / f64::from(1 << 20))
}

/// The URL of the endpoint `addr` names.
fn url(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}/metrics")
    }
}

fn scrape(agent: &ureq::Agent, url: &str) -> Result<BTreeMap<String, Row>, String> {
    let body = agent
        .get(url)
        .call()
        .map_err(|e| format!("{url}: {e}"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    parse(&body).map_err(|e| format!("{url}: {e}"))
}

/// Runs `top`.
pub fn run(args: &TopArgs) -> ExitCode {
    let url = url(&args.addr);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let interval = Duration::from_millis(args.interval.max(10));
    let clear = std::io::stdout().is_terminal();
    let mut old = match scrape(&agent, &url) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let mut at = Instant::now();
    let mut shown = 0u64;
    while args.count.is_none_or(|n| shown < n) {
        std::thread::sleep(interval);
        let new = match scrape(&agent, &url) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        let now = Instant::now();
        let mut o = std::io::stdout().lock();
        if clear {
            let _ = write!(o, "\x1b[2J\x1b[H");
        }
        let _ = writeln!(
            o,
            "callop-host top: {url}, {} plugins, every {:.1} s",
            new.len(),
            interval.as_secs_f64()
        );
        let _ = writeln!(o, "{}", table(&old, &new, now - at));
        let _ = o.flush();
        (old, at) = (new, now);
        shown += 1;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = "\
# HELP callop_plugin_up Up.
# TYPE callop_plugin_up gauge
callop_plugin_up{plugin=\"a\"} 1
# HELP callop_plugin_dispatch_calls_total D.
# TYPE callop_plugin_dispatch_calls_total counter
callop_plugin_dispatch_calls_total{plugin=\"a\"} 100
# HELP callop_plugin_events_total E.
# TYPE callop_plugin_events_total counter
callop_plugin_events_total{kind=\"ping\",plugin=\"a\"} 150
callop_plugin_events_total{kind=\"timer\",plugin=\"a\"} 50
# HELP callop_plugin_cpu_seconds_total C.
# TYPE callop_plugin_cpu_seconds_total counter
callop_plugin_cpu_seconds_total{plugin=\"a\"} 0.5
";

    #[test]
    fn a_scrape_gives_one_row_per_plugin_and_rates_between_two() {
        let new = parse(SCRAPE).unwrap();
        let r = &new["a"];
        assert!(r.up);
        assert_eq!(
            (r.dispatches, r.events, r.cpu_seconds),
            (100.0, 200.0, Some(0.5))
        );
        let mut old = new.clone();
        let o = old.get_mut("a").unwrap();
        o.dispatches = 0.0;
        o.events = 0.0;
        o.cpu_seconds = Some(0.25);
        let t = table(&old, &new, Duration::from_secs(2));
        let line = t.lines().nth(1).unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        // a, up, cpu% (0.25 s over 2 s), dispatches/s, events/s.
        assert_eq!(&cols[..5], ["a", "1", "12.5", "50.0", "100.0"], "{t}");
        // A plugin new in this scrape has no rate yet.
        let t = table(&BTreeMap::new(), &new, Duration::from_secs(1));
        assert!(t.lines().nth(1).unwrap().contains(" - "), "{t}");
    }

    #[test]
    fn addresses_become_urls() {
        assert_eq!(url("127.0.0.1:9"), "http://127.0.0.1:9/metrics");
        assert_eq!(url("http://h:1/m"), "http://h:1/m");
    }
}
