//! Load: 4 application threads × 1,000,000 messages to one plugin (`relay`)
//! through the embedding API; every message comes back exactly once and in
//! per-thread order.
//!
//! The message count can be lowered with `CALLOP_LOAD_MESSAGES` (per
//! thread) for quick local runs; the default is the full 1,000,000.
//!
//! The producers keep at most [`IN_FLIGHT`] messages between them on the
//! way: what the application sends a plugin is held on the plugin's
//! host-memory budget, like what the plugin sends, so four unthrottled
//! producers fill the relay's 64 MiB and its own replies are refused (the
//! relay logs and drops a refused reply). The refusals themselves are tested
//! in `isolation_memory.rs`; here every message must come back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use callop::EventLoop;
use callop::channel::Event;
use callop_plugin_host::{EngineOptions, ExitReason, Host, HostConfig};
use callop_tests::{cache_dir, plugin};

const THREADS: usize = 4;

/// Messages sent and not yet back, at most (about 2 MiB of queues).
const IN_FLIGHT: u64 = 100_000;

struct Tally {
    /// Next expected sequence number per thread.
    next: Vec<u64>,
    received: u64,
    /// `received`, for the producers' window.
    back: Arc<AtomicU64>,
    errors: Vec<String>,
}

#[test]
fn four_threads_times_a_million_messages_arrive_exactly_once_in_order() {
    let per_thread: u64 = std::env::var("CALLOP_LOAD_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut ev: EventLoop<Tally> = EventLoop::try_new().unwrap();
    let host = Host::new(
        ev.handle(),
        HostConfig {
            engine: EngineOptions {
                cache_dir: Some(cache_dir()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let out = host.app_channel("out").unwrap();
    ev.handle()
        .insert_source(out, |e, _, t: &mut Tally| {
            if let Event::Msg(m) = e {
                t.received += 1;
                t.back.store(t.received, Ordering::Relaxed);
                let (th, seq) = (
                    m[0] as usize,
                    u64::from_le_bytes(m[1..9].try_into().unwrap()),
                );
                if th >= THREADS || t.next[th] != seq {
                    if t.errors.len() < 10 {
                        t.errors.push(format!(
                            "thread {th}: got {seq}, expected {:?}",
                            t.next.get(th)
                        ));
                    }
                } else {
                    t.next[th] += 1;
                }
            }
        })
        .unwrap();
    host.load_file(plugin("relay"), "relay", &[]).unwrap();
    let start = Instant::now();
    let back = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..THREADS)
        .map(|th| {
            let tx = host.sender("relay/in").unwrap();
            let (back, sent) = (back.clone(), sent.clone());
            std::thread::spawn(move || {
                for seq in 0..per_thread {
                    while sent.load(Ordering::Relaxed) > back.load(Ordering::Relaxed) + IN_FLIGHT {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    let mut m = Vec::with_capacity(9);
                    m.push(th as u8);
                    m.extend_from_slice(&seq.to_le_bytes());
                    // Over the relay's host-memory budget the send is
                    // refused (back-pressure): wait for the loop and retry.
                    loop {
                        match tx.send(m.clone()) {
                            Ok(()) => break,
                            Err(callop_plugin_host::HostError::LimitExceeded(_)) => {
                                std::thread::sleep(Duration::from_millis(1))
                            }
                            Err(e) => panic!("send: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    let mut tally = Tally {
        next: vec![0; THREADS],
        received: 0,
        back,
        errors: Vec::new(),
    };
    let total = per_thread * THREADS as u64;
    // The relay ends when every sender is dropped (the threads end).
    while !host.is_empty() || tally.received < total {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "received {} of {total}",
            tally.received
        );
        ev.dispatch(Some(Duration::from_millis(100)), &mut tally)
            .unwrap();
        if host.is_empty() && tally.received < total {
            // Replies of the relay's last dispatch still in flight.
            ev.dispatch(Some(Duration::from_millis(10)), &mut tally)
                .unwrap();
            if tally.received < total {
                break;
            }
        }
    }
    for p in producers {
        p.join().unwrap();
    }
    let elapsed = start.elapsed();
    eprintln!(
        "load: {total} messages through relay in {elapsed:?} ({:.0} msg/s)",
        total as f64 / elapsed.as_secs_f64()
    );
    assert!(tally.errors.is_empty(), "{:?}", tally.errors);
    assert_eq!(tally.received, total);
    assert_eq!(tally.next, vec![per_thread; THREADS]);
    assert_eq!(host.exits()[0].reason, ExitReason::Finished);
}
