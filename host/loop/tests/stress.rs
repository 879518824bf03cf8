//! Stress: 4 producer threads × 1,000,000 messages each through one `channel()`.
//!
//! Every message must be delivered exactly once, in per-thread order, and `Closed` exactly once
//! at the end.

use std::time::{Duration, Instant};

use callop::{
    EventLoop,
    channel::{Event, channel},
};

const THREADS: u64 = 4;
const PER_THREAD: u64 = 1_000_000;

struct State {
    /// The next sequence number expected from each thread.
    next: Vec<u64>,
    received: u64,
    closed: u32,
}

#[test]
fn four_producers_a_million_messages_each() {
    let mut event_loop: EventLoop<State> = EventLoop::try_new().unwrap();
    let (sender, receiver) = channel::<u64>();
    event_loop
        .handle()
        .insert_source(receiver, |event, &mut (), state: &mut State| match event {
            Event::Msg(msg) => {
                let (thread, seq) = ((msg >> 32) as usize, msg & 0xFFFF_FFFF);
                assert_eq!(
                    seq, state.next[thread],
                    "thread {thread}: out of order or duplicated"
                );
                state.next[thread] += 1;
                state.received += 1;
            }
            Event::Closed => state.closed += 1,
        })
        .unwrap();

    let producers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for seq in 0..PER_THREAD {
                    sender.send((thread << 32) | seq).unwrap();
                }
            })
        })
        .collect();
    drop(sender);

    let mut state = State {
        next: vec![0; THREADS as usize],
        received: 0,
        closed: 0,
    };
    while state.closed == 0 {
        let (before, start) = (state.received, Instant::now());
        event_loop
            .dispatch(Duration::from_secs(30), &mut state)
            .unwrap();
        // A dispatch may legitimately find nothing (a wake-up for messages an earlier batch
        // already took), but sleeping the whole timeout with messages pending means a lost
        // wake-up.
        assert!(
            state.received > before
                || state.closed > 0
                || start.elapsed() < Duration::from_secs(30),
            "no progress for 30 s: a wake-up was lost"
        );
    }
    for producer in producers {
        producer.join().unwrap();
    }
    assert_eq!(state.received, THREADS * PER_THREAD);
    assert!(state.next.iter().all(|&n| n == PER_THREAD));
    // Nothing more, ever: the source removed itself.
    event_loop.dispatch(Duration::ZERO, &mut state).unwrap();
    assert_eq!(state.closed, 1);
}
