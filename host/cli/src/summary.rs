//! `--stats-on-exit`: one table on stderr, at exit, of what each plugin
//! instance cost over the whole run ([`Host::stats`]).
//!
//! [`Host::stats`]: callop_plugin_host::Host::stats

use std::time::Duration;

use callop_plugin_host::HostStats;

/// The table of `stats` after a run of `elapsed`.
pub fn table(stats: &HostStats, elapsed: Duration) -> String {
    let mut out = format!(
        "plugin stats after {:.2} s{}:\n{:<24} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7} {:>8}\n",
        elapsed.as_secs_f64(),
        if stats.cpu_measured {
            ""
        } else {
            " (CPU not measured: no callback timeout)"
        },
        "PLUGIN",
        "DISPATCHES",
        "EVENTS",
        "MESSAGES",
        "CPU s",
        "HOST s",
        "FAULTS",
        "RESTARTS"
    );
    for p in &stats.plugins {
        let cpu = match p.guest_cpu {
            Some(c) => format!("{:.3}", c.as_secs_f64()),
            None => "-".into(),
        };
        out += &format!(
            "{:<24} {:>10} {:>10} {:>10} {:>10} {:>10.3} {:>7} {:>8}\n",
            p.name,
            p.dispatch_calls,
            p.events.total(),
            p.events.messages_received,
            cpu,
            p.host_time.as_secs_f64(),
            p.faults.total(),
            p.restarts
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use callop_plugin_host::PluginStats;

    #[test]
    fn one_line_per_instance() {
        let s = HostStats {
            plugins: vec![PluginStats {
                name: "ticker".into(),
                dispatch_calls: 5,
                guest_cpu: Some(Duration::from_millis(10)),
                ..PluginStats::default()
            }],
            cpu_measured: true,
        };
        let t = table(&s, Duration::from_secs(1));
        let cols: Vec<&str> = t.lines().nth(2).unwrap().split_whitespace().collect();
        assert_eq!(&cols[..2], ["ticker", "5"], "{t}");
        assert_eq!(cols[4], "0.010");
    }
}
