//! Events reach a guest in batches (`Limits::max_batch`): splitting a flood
//! into many `dispatch` calls keeps every message, once, in order.

use std::time::{Duration, Instant};

use callop::EventLoop;
use callop::channel::Event;
use callop::plugin::{EngineOptions, ExitReason, Host, HostConfig, Limits};
use callop_tests::{cache_dir, plugin};

fn config(max_batch: usize) -> HostConfig {
    HostConfig {
        engine: EngineOptions {
            cache_dir: Some(cache_dir()),
            ..Default::default()
        },
        limits: Limits {
            max_batch,
            callback_timeout: Some(Duration::from_secs(5)),
            ..Limits::default()
        },
        ..Default::default()
    }
}

/// Sends `n` messages to a relay (all queued before the loop runs, so the
/// loop drains them in channel batches of up to 1024, which the host splits
/// again at `max_batch`) and returns the replies.
fn relay_flood(max_batch: usize, n: usize) -> Vec<Vec<u8>> {
    let mut ev: EventLoop<Vec<Vec<u8>>> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config(max_batch)).unwrap();
    let out = host.app_channel("out").unwrap();
    ev.handle()
        .insert_source(out, |e, _, got: &mut Vec<Vec<u8>>| {
            if let Event::Msg(m) = e {
                got.push(m)
            }
        })
        .unwrap();
    host.load_file(plugin("relay"), "relay", &[]).unwrap();
    let tx = host.sender("relay/in").unwrap();
    for i in 0..n {
        tx.send(format!("{i}").into_bytes()).unwrap();
    }
    drop(tx);
    let mut got = Vec::new();
    let start = Instant::now();
    while !host.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "relay still alive"
        );
        ev.dispatch(Some(Duration::from_millis(100)), &mut got)
            .unwrap();
    }
    for _ in 0..3 {
        ev.dispatch(Some(Duration::ZERO), &mut got).unwrap();
    }
    assert_eq!(host.exits()[0].reason, ExitReason::Finished);
    got
}

fn expected(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{i}").into_bytes()).collect()
}

#[test]
fn batches_split_at_max_batch_keep_order_and_exact_counts() {
    for max_batch in [1, 7, 1000] {
        assert_eq!(
            relay_flood(max_batch, 3000),
            expected(3000),
            "max_batch {max_batch}"
        );
    }
}

#[test]
fn a_guest_counting_a_split_flood_sees_every_message() {
    // bench-sink stops with code 0 at exactly its N-th message; a missing
    // message would leave it running, an extra one cannot be delivered
    // (it stops first and the host ends it).
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = Host::new(ev.handle(), config(100)).unwrap();
    host.load_file(
        plugin("bench-sink"),
        "sink",
        &["--messages".into(), "5000".into()],
    )
    .unwrap();
    let tx = host.sender("sink/in").unwrap();
    for i in 0..5000u32 {
        tx.send(i.to_le_bytes().to_vec()).unwrap();
    }
    let start = Instant::now();
    while !host.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "sink still alive"
        );
        ev.dispatch(Some(Duration::from_millis(100)), &mut ())
            .unwrap();
    }
    assert_eq!(host.exits()[0].reason, ExitReason::Stopped(0));
}
