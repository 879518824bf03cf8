//! Events reach a guest in batches: channel messages are packed into
//! `messages` events (at most 1,024 messages or 1 MiB each), and the events
//! of one loop iteration are split into `dispatch` calls of at most
//! `Limits::max_batch`. Every message arrives once, in order, and a
//! callback's `Disable`/`Remove` in the middle of a packed batch has the
//! meaning it would have with one event per message. Each test runs the
//! relay twice: receiving `Vec<u8>`s (`Channel::open`) and receiving
//! `Message`s that share their batch (`Channel::open_shared`).

use std::time::{Duration, Instant};

use callop::EventLoop;
use callop::channel::Event;
use callop_plugin_host::{EngineOptions, ExitReason, Host, HostConfig, Limits};
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

/// The relay's two ways of receiving: extra arguments for each.
const MODES: [&[&str]; 2] = [&[], &["--shared"]];

/// Sends `n` messages to a relay (all queued before the loop runs, so the
/// loop drains them in packed batches of up to 1024) and returns the replies.
fn relay_flood(max_batch: usize, n: usize, mode: &[&str]) -> Vec<Vec<u8>> {
    let msgs: Vec<Vec<u8>> = (0..n).map(|i| format!("{i}").into_bytes()).collect();
    relay(max_batch, mode, msgs, true).0
}

/// Runs a relay with `args`, sends it `msgs` before the loop first runs,
/// then (if `close`) drops the sender; runs until the relay ends or 2 s of
/// quiet pass. Returns the replies and whether the relay ended.
fn relay(max_batch: usize, args: &[&str], msgs: Vec<Vec<u8>>, close: bool) -> (Vec<Vec<u8>>, bool) {
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
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    host.load_file(plugin("relay"), "relay", &args).unwrap();
    let tx = host.sender("relay/in").unwrap();
    for m in msgs {
        tx.send(m).unwrap();
    }
    if close {
        drop(tx);
    } else {
        std::mem::forget(tx);
    }
    let mut got = Vec::new();
    let start = Instant::now();
    let mut quiet = Instant::now();
    while !host.is_empty() && quiet.elapsed() < Duration::from_secs(2) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "relay still busy"
        );
        let before = got.len();
        ev.dispatch(Some(Duration::from_millis(100)), &mut got)
            .unwrap();
        if got.len() != before {
            quiet = Instant::now();
        }
    }
    for _ in 0..3 {
        ev.dispatch(Some(Duration::ZERO), &mut got).unwrap();
    }
    let ended = host.is_empty();
    if ended {
        assert_eq!(host.exits()[0].reason, ExitReason::Finished);
    }
    (got, ended)
}

fn expected(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{i}").into_bytes()).collect()
}

#[test]
fn batches_split_at_max_batch_keep_order_and_exact_counts() {
    for mode in MODES {
        for max_batch in [1, 7, 1000] {
            assert_eq!(
                relay_flood(max_batch, 3000, mode),
                expected(3000),
                "max_batch {max_batch} {mode:?}"
            );
        }
    }
}

#[test]
fn messages_larger_than_a_batch_arrive_whole_and_in_order() {
    // 700 KiB each: no two fit in one 1 MiB batch; empty messages too.
    let msgs: Vec<Vec<u8>> = (0..6u8)
        .map(|i| {
            if i == 3 {
                Vec::new()
            } else {
                vec![i; 700 << 10]
            }
        })
        .collect();
    for mode in MODES {
        let (got, ended) = relay(1000, mode, msgs.clone(), true);
        assert!(ended);
        assert!(
            got == msgs,
            "replies differ from the messages sent {mode:?}"
        );
    }
}

#[test]
fn disable_in_the_middle_of_a_packed_batch_takes_effect_after_it() {
    // 2,000 messages queued at once: a first packed batch of 1,024 and a
    // second one. The callback disables the channel at the 3rd message: the
    // rest of the first batch is still delivered (as it would be with one
    // event per message), the second batch is not.
    let msgs: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_le_bytes().to_vec()).collect();
    for mode in MODES {
        let args = [&["--after", "3", "--then", "disable"], mode].concat();
        let (got, ended) = relay(5000, &args, msgs.clone(), false);
        assert!(!ended, "a disabled channel keeps the relay alive {mode:?}");
        assert!(
            got == msgs[..1024],
            "got {} replies, not the first batch {mode:?}",
            got.len()
        );
    }
}

#[test]
fn remove_in_the_middle_of_a_packed_batch_drops_the_rest() {
    for mode in MODES {
        for then in ["remove", "self-remove"] {
            let msgs: Vec<Vec<u8>> = (0..10).map(|i| vec![i]).collect();
            let args = [&["--after", "3", "--then", then], mode].concat();
            let (got, ended) = relay(1000, &args, msgs, false);
            assert!(ended, "{then} {mode:?}: the relay has no source left");
            assert_eq!(got, vec![vec![0], vec![1], vec![2]], "{then} {mode:?}");
        }
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
