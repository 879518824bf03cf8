//! callop vs calloop 0.14, side by side, on the same work.
//!
//! Every benchmark is written once, as a macro over the crate name, and instantiated for both
//! crates, so the two rows of a group run identical code against different loops.
//!
//! Run: `cargo bench -p callop --bench loop` (add `-- --quick` for a fast pass).

use std::{
    os::fd::OwnedFd,
    sync::mpsc,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rustix::event::{EventfdFlags, eventfd};

fn new_eventfd() -> OwnedFd {
    eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).unwrap()
}

macro_rules! suite {
    ($krate:ident) => {
        mod $krate {
            use super::*;
            use ::$krate::{
                EventLoop, Interest, Mode, PostAction,
                channel::{Event, channel},
                generic::Generic,
                ping::make_ping,
                timer::{TimeoutAction, Timer},
            };

            /// `iters` round trips of a ping between two threads, each running its own loop.
            pub fn ping_round_trips(iters: u64) -> Duration {
                let (to_b, b_source) = make_ping().unwrap();
                let (to_a, a_source) = make_ping().unwrap();
                let (ready_tx, ready_rx) = mpsc::channel();
                let peer = std::thread::spawn(move || {
                    let mut event_loop = EventLoop::<u64>::try_new().unwrap();
                    let signal = event_loop.get_signal();
                    event_loop
                        .handle()
                        .insert_source(b_source, move |_, _, n| {
                            *n += 1;
                            if *n == iters {
                                signal.stop();
                            }
                            to_a.ping();
                        })
                        .unwrap();
                    ready_tx.send(()).unwrap();
                    let mut n = 0;
                    event_loop.run(None, &mut n, |_| {}).unwrap();
                });
                ready_rx.recv().unwrap();
                let mut event_loop = EventLoop::<u64>::try_new().unwrap();
                event_loop
                    .handle()
                    .insert_source(a_source, |_, _, n| *n += 1)
                    .unwrap();
                let mut n = 0;
                let start = Instant::now();
                while n < iters {
                    to_b.ping();
                    let before = n;
                    while n == before {
                        event_loop.dispatch(None, &mut n).unwrap();
                    }
                }
                let elapsed = start.elapsed();
                peer.join().unwrap();
                elapsed
            }

            /// `count` messages from another thread into the loop.
            pub fn channel_throughput(count: u64) -> Duration {
                let mut event_loop = EventLoop::<u64>::try_new().unwrap();
                let (sender, receiver) = channel::<u64>();
                event_loop
                    .handle()
                    .insert_source(receiver, |event, _, n| {
                        if let Event::Msg(_) = event {
                            *n += 1;
                        }
                    })
                    .unwrap();
                let start = Instant::now();
                let producer = std::thread::spawn(move || {
                    for i in 0..count {
                        sender.send(i).unwrap();
                    }
                });
                let mut n = 0;
                while n < count {
                    event_loop.dispatch(None, &mut n).unwrap();
                }
                let elapsed = start.elapsed();
                producer.join().unwrap();
                elapsed
            }

            /// Insert `count` timers due now and dispatch until all fired.
            pub fn timers_insert_fire(count: u64) -> Duration {
                let mut event_loop = EventLoop::<u64>::try_new().unwrap();
                let handle = event_loop.handle();
                let start = Instant::now();
                let now = Instant::now();
                for i in 0..count {
                    handle
                        .insert_source(
                            Timer::from_deadline(now + Duration::from_nanos(i % 1000)),
                            |_, _, n| {
                                *n += 1;
                                TimeoutAction::Drop
                            },
                        )
                        .unwrap();
                }
                let mut n = 0;
                while n < count {
                    event_loop.dispatch(None, &mut n).unwrap();
                }
                start.elapsed()
            }

            /// calloop's own timer benchmark: re-insert one timer among `others` long timers.
            pub fn extend(others: usize) -> impl FnMut() {
                let mut event_loop = EventLoop::<()>::try_new().unwrap();
                let handle = event_loop.handle();
                for _ in 0..others {
                    handle
                        .insert_source(
                            Timer::from_duration(Duration::from_secs(60 * 10 - 1)),
                            |_, _, _| TimeoutAction::Drop,
                        )
                        .unwrap();
                }
                let mut token = handle
                    .insert_source(
                        Timer::from_duration(Duration::from_secs(60 * 10)),
                        |_, _, _| TimeoutAction::Drop,
                    )
                    .unwrap();
                for _ in 0..others {
                    handle
                        .insert_source(
                            Timer::from_duration(Duration::from_secs(90 * 10)),
                            |_, _, _| TimeoutAction::Drop,
                        )
                        .unwrap();
                }
                move || {
                    handle.remove(token);
                    token = handle
                        .insert_source(
                            Timer::from_duration(Duration::from_secs(60 * 10)),
                            |_, _, _| TimeoutAction::Drop,
                        )
                        .unwrap();
                    event_loop.dispatch(Some(Duration::ZERO), &mut ()).unwrap();
                }
            }

            /// One dispatch of one ready eventfd among `idle` idle ones.
            pub fn idle_fds(idle: usize) -> impl FnMut() {
                let mut event_loop = EventLoop::<u64>::try_new().unwrap();
                let handle = event_loop.handle();
                for _ in 0..idle {
                    handle
                        .insert_source(
                            Generic::new(new_eventfd(), Interest::READ, Mode::Level),
                            |_, _, _| Ok(PostAction::Continue),
                        )
                        .unwrap();
                }
                let active = new_eventfd();
                let writer = active.try_clone().unwrap();
                handle
                    .insert_source(
                        Generic::new(active, Interest::READ, Mode::Level),
                        |_, fd, n| {
                            let mut buf = [0u8; 8];
                            let _ = rustix::io::read(&**fd, &mut buf);
                            *n += 1;
                            Ok(PostAction::Continue)
                        },
                    )
                    .unwrap();
                let mut n = 0;
                move || {
                    rustix::io::write(&writer, &1u64.to_ne_bytes()).unwrap();
                    let before = n;
                    while n == before {
                        event_loop.dispatch(None, &mut n).unwrap();
                    }
                }
            }
        }
    };
}

suite!(callop);
suite!(calloop);

fn ping(c: &mut Criterion) {
    let mut g = c.benchmark_group("ping_round_trip_cross_thread");
    g.bench_function("callop", |b| b.iter_custom(callop::ping_round_trips));
    g.bench_function("calloop", |b| b.iter_custom(calloop::ping_round_trips));
    g.finish();
}

fn channel(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    let mut g = c.benchmark_group("channel_1M_messages");
    g.sample_size(10);
    g.bench_function("callop", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| callop::channel_throughput(N)).sum())
    });
    g.bench_function("calloop", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| calloop::channel_throughput(N)).sum())
    });
    g.finish();
}

fn timers(c: &mut Criterion) {
    const N: u64 = 100_000;
    let mut g = c.benchmark_group("timers_100k_insert_fire");
    g.sample_size(10);
    g.bench_function("callop", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| callop::timers_insert_fire(N)).sum())
    });
    g.bench_function("calloop", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| calloop::timers_insert_fire(N)).sum())
    });
    g.finish();
}

fn extend(c: &mut Criterion) {
    for (name, others) in [
        ("extend_single", 0),
        ("extend_mixed", 1),
        ("extend_mixed_many", 1000),
    ] {
        let mut g = c.benchmark_group(name);
        let mut f = callop::extend(others);
        g.bench_function(BenchmarkId::new("callop", others), |b| b.iter(&mut f));
        let mut f = calloop::extend(others);
        g.bench_function(BenchmarkId::new("calloop", others), |b| b.iter(&mut f));
        g.finish();
    }
}

fn idle(c: &mut Criterion) {
    const IDLE: usize = 10_000;
    let mut g = c.benchmark_group("idle_fds_10k_plus_1_active");
    let mut f = callop::idle_fds(IDLE);
    g.bench_function("callop", |b| b.iter(&mut f));
    drop(f);
    let mut f = calloop::idle_fds(IDLE);
    g.bench_function("calloop", |b| b.iter(&mut f));
    g.finish();
}

criterion_group!(benches, ping, channel, timers, extend, idle);
criterion_main!(benches);
