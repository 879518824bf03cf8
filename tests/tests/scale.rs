//! Many plugins in one host: pooled instances, exact per-plugin counts.

use std::time::{Duration, Instant};

use callop::EventLoop;
use callop::channel::Event;
use callop_plugin_host::{EngineOptions, ExitReason, Host, HostConfig, Limits};
use callop_tests::{cache_dir, plugin};

const PLUGINS: usize = 100;

#[test]
fn hundred_pooled_plugins_each_tick_exactly_their_count_then_finish() {
    let config = HostConfig {
        engine: EngineOptions {
            cache_dir: Some(cache_dir()),
            pooling_instances: Some(PLUGINS as u32 + 4),
            ..Default::default()
        },
        // Isolation stays on: epoch deadline and memory limit.
        limits: Limits {
            callback_timeout: Some(Duration::from_secs(5)),
            ..Limits::default()
        },
        ..Default::default()
    };
    let mut ev: EventLoop<Vec<Vec<u64>>> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config).unwrap();
    let rx = host.app_channel("ticks").unwrap();
    ev.handle()
        .insert_source(rx, |e, _, got: &mut Vec<Vec<u64>>| {
            if let Event::Msg(m) = e {
                // `p<i> <k> <late-ns>`
                let s = String::from_utf8(m).unwrap();
                let mut f = s.split(' ');
                let i: usize = f.next().unwrap()[1..].parse().unwrap();
                got[i].push(f.next().unwrap().parse().unwrap());
                let late: i64 = f.next().unwrap().parse().unwrap();
                assert!(late >= 0, "p{i} ticked {late} ns early");
            }
        })
        .unwrap();
    let c = host.compile_file(plugin("bench-sink")).unwrap();
    let args: Vec<String> = ["--tick", "20", "--ticks", "3", "--report"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for i in 0..PLUGINS {
        host.load(&c, &format!("p{i}"), &args).unwrap();
    }
    let mut got = vec![Vec::new(); PLUGINS];
    let start = Instant::now();
    while !host.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "plugins still alive"
        );
        ev.dispatch(Some(Duration::from_millis(100)), &mut got)
            .unwrap();
    }
    ev.dispatch(Some(Duration::ZERO), &mut got).unwrap();
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g, &[1, 2, 3], "ticks reported by p{i}");
    }
    let exits = host.exits();
    assert_eq!(exits.len(), PLUGINS);
    assert!(
        exits.iter().all(|e| e.reason == ExitReason::Finished),
        "{exits:?}"
    );
}
