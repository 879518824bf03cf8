//! `Host::stats` against real plugins: the figures move exactly as a known
//! workload says (N pings one per iteration are N dispatches of one ping
//! event; N messages are N messages and their bytes; queued messages are
//! seen before the loop takes them; a fault is counted by its kind; CPU
//! time follows a plugin that spins).

use std::time::Duration;

use callop::EventLoop;
use callop_plugin_host::{Host, Limits, RestartPolicy};
use callop_tests::{args, config, config_with, plugin, run_until_empty};

#[test]
fn n_pings_one_per_iteration_are_n_dispatches() {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let h = Host::new(ev.handle(), config()).unwrap();
    let id = h
        .load_file(plugin("bench-sink"), "sink", &args(&["--pings", "100"]))
        .unwrap();
    let s = h.stats();
    let p = s.plugin("sink").unwrap();
    assert!(p.alive);
    assert_eq!(
        (p.id, p.guest_calls, p.dispatch_calls),
        (id, 1, 0),
        "init only"
    );
    assert_eq!(p.sources.ping, 1);
    assert!(p.memory_bytes >= 64 * 1024, "{} bytes", p.memory_bytes);
    let ping = h.ping("sink/p").unwrap();
    while !h.is_empty() {
        ping.ping();
        ev.dispatch(Some(Duration::from_millis(100)), &mut ())
            .unwrap();
    }
    let s = h.stats();
    let p = s.plugin("sink").unwrap();
    assert!(!p.alive);
    assert_eq!(p.dispatch_calls, 100);
    assert_eq!(p.events.ping, 100);
    assert_eq!(p.events.total(), 100);
    assert_eq!(p.guest_calls, 101);
    // Ended: gauges are zero, counters stay.
    assert_eq!((p.memory_bytes, p.sources.total()), (0, 0));
    assert!(
        s.cpu_measured,
        "the default callback timeout runs the ticker"
    );
    assert!(p.guest_cpu.is_some());
}

#[test]
fn messages_are_counted_queued_then_delivered() {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let h = Host::new(ev.handle(), config()).unwrap();
    h.load_file(plugin("bench-sink"), "sink", &args(&["--messages", "1000"]))
        .unwrap();
    let tx = h.sender("sink/in").unwrap();
    for i in 0..10u64 {
        tx.send(i.to_le_bytes().to_vec()).unwrap();
    }
    // Sent, not taken by the loop yet.
    let p = h.stats().plugin("sink").unwrap().clone();
    assert_eq!((p.queued_messages, p.queued_bytes), (10, 80));
    assert_eq!(p.sources.channel, 1);
    for i in 10..1000u64 {
        tx.send(i.to_le_bytes().to_vec()).unwrap();
    }
    run_until_empty(&mut ev, &h, &mut (), Duration::from_secs(30));
    let p = h.stats().plugin("sink").unwrap().clone();
    assert_eq!(p.events.messages_received, 1000);
    assert_eq!(p.events.message_bytes, 8000);
    assert!(p.events.messages >= 1, "batches");
    assert_eq!(p.queued_messages, 0);
}

#[test]
fn faults_and_restarts_are_counted_by_kind_under_one_id() {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let h = Host::new(
        ev.handle(),
        config_with(
            Limits::default(),
            "on-failure:2/60s".parse::<RestartPolicy>().unwrap(),
        ),
    )
    .unwrap();
    let id = h
        .load_file(
            plugin("faulty"),
            "faulty",
            &args(&["--mode", "trap", "--after", "5"]),
        )
        .unwrap();
    run_until_empty(&mut ev, &h, &mut (), Duration::from_secs(30));
    let s = h.stats();
    // Restarts keep the id: one entry, cumulative.
    assert_eq!(s.plugins.len(), 1);
    let p = &s.plugins[0];
    assert_eq!(p.id, id);
    assert_eq!((p.faults.trap, p.faults.total()), (3, 3));
    assert_eq!(p.restarts, 2);
    assert_eq!(p.guest_calls, 6, "3 runs of init + the timer's dispatch");
}

#[test]
fn cpu_time_follows_a_spinning_plugin() {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let limits = Limits {
        callback_timeout: Some(Duration::from_millis(200)),
        ..Limits::default()
    };
    let h = Host::new(ev.handle(), config_with(limits, RestartPolicy::Never)).unwrap();
    h.load_file(
        plugin("faulty"),
        "spin",
        &args(&["--mode", "loop", "--after", "1"]),
    )
    .unwrap();
    h.load_file(
        plugin("ticker"),
        "idle",
        &args(&["--every", "1ms", "--count", "20"]),
    )
    .unwrap();
    run_until_empty(&mut ev, &h, &mut (), Duration::from_secs(30));
    let s = h.stats();
    let spin = s.plugin("spin").unwrap();
    let idle = s.plugin("idle").unwrap();
    assert_eq!(spin.faults.timeout, 1);
    // It spent its 200 ms budget (sampled at 5 ms ticks: generous bounds).
    let cpu = spin.guest_cpu.unwrap();
    assert!(
        (Duration::from_millis(100)..=Duration::from_secs(2)).contains(&cpu),
        "{cpu:?}"
    );
    // A ticker doing next to nothing costs far less.
    assert!(idle.guest_cpu.unwrap() < cpu / 4, "{:?}", idle.guest_cpu);
}
