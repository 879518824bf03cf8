//! Property test: random sequences of guest→host calls against the host
//! implementation of `callop:plugin/host-loop` never panic, never trap
//! (every `Result` is `Ok` or a WIT `error`), and keep the bookkeeping
//! invariants (source and handle counts within their limits).
//!
//! Runs `PROPTEST_CASES` cases (default 256). With `CALLOP_FUZZ_SECONDS=N`
//! it repeats fresh runs until N seconds have passed, e.g. 10 minutes:
//!
//! ```text
//! CALLOP_FUZZ_SECONDS=600 cargo test --release -p callop --lib \
//!     plugin::fuzz_tests -- --nocapture
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use wasmtime::component::Resource;
use wasmtime_wasi::WasiCtxBuilder;

use super::bindings::callop::plugin::host_loop::{Host, HostPing, HostSender};
use super::bindings::callop::plugin::types::LogLevel;
use super::limits::Limits;
use super::policy::Policy;
use super::state::{Op, PingHandle, PluginState, SenderHandle, Shared};

/// One guest→host call, with raw (possibly bogus) arguments.
#[derive(Debug, Clone)]
enum Call {
    Now,
    Log(String),
    InstanceName,
    Stop(i32),
    AddTimer(u64),
    AddIdle,
    MakePing(Option<String>),
    ConnectPing(String),
    OpenChannel(String),
    Connect(String),
    Enable(Id),
    Disable(Id),
    Update(Id),
    Remove(Id),
    Trigger(Handle),
    DropPing(Handle),
    Send(Handle, usize),
    Target(Handle),
    DropSender(Handle),
    /// The export call returns: the host applies the queued operations.
    Return,
}

/// A source id: one the host handed out (by index), or any number.
#[derive(Debug, Clone, Copy)]
enum Id {
    Known(usize),
    Raw(u64),
}

/// A resource handle: one the host handed out (by index, maybe already
/// dropped), or a forged representation.
#[derive(Debug, Clone, Copy)]
enum Handle {
    Known(usize),
    Forged(u32),
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("in".to_string()),
        Just("out".to_string()),
        Just("other/in".to_string()),
        Just("fuzz/in".to_string()),
        Just("@app/out".to_string()),
        Just("@app/nosuch".to_string()),
        Just(String::new()),
        "[a-z/@. _-]{0,12}",
        "\\PC{0,80}",
    ]
}

fn id() -> impl Strategy<Value = Id> {
    prop_oneof![
        (0usize..64).prop_map(Id::Known),
        any::<u64>().prop_map(Id::Raw),
        (0u64..8).prop_map(Id::Raw),
    ]
}

fn handle() -> impl Strategy<Value = Handle> {
    prop_oneof![
        (0usize..32).prop_map(Handle::Known),
        any::<u32>().prop_map(Handle::Forged),
    ]
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        Just(Call::Now),
        "\\PC{0,40}".prop_map(Call::Log),
        Just(Call::InstanceName),
        any::<i32>().prop_map(Call::Stop),
        prop_oneof![any::<u64>(), 0u64..1_000_000_000].prop_map(Call::AddTimer),
        Just(Call::AddIdle),
        proptest::option::of(name()).prop_map(Call::MakePing),
        name().prop_map(Call::ConnectPing),
        name().prop_map(Call::OpenChannel),
        name().prop_map(Call::Connect),
        id().prop_map(Call::Enable),
        id().prop_map(Call::Disable),
        id().prop_map(Call::Update),
        id().prop_map(Call::Remove),
        handle().prop_map(Call::Trigger),
        handle().prop_map(Call::DropPing),
        (handle(), prop_oneof![0usize..64, 0usize..(3 << 20)]).prop_map(|(h, n)| Call::Send(h, n)),
        handle().prop_map(Call::Target),
        handle().prop_map(Call::DropSender),
        Just(Call::Return),
    ]
}

fn limits() -> Limits {
    Limits {
        max_sources: 16,
        max_handles: 8,
        max_queued_messages: 4,
        max_message_bytes: 1 << 20,
        ..Limits::default()
    }
}

fn state(shared: &Arc<Shared>, name: &str) -> PluginState {
    shared.registry().instances.insert(name.to_string());
    PluginState::new(
        Arc::from(name),
        shared.clone(),
        WasiCtxBuilder::new().build(),
    )
}

/// Runs one call sequence; panics (failing the case) on a broken invariant.
fn run(calls: &[Call]) {
    let shared = Arc::new(Shared::new(Policy::default(), limits()));
    // A sibling instance, so that `other/...` targets exist.
    let _other = state(&shared, "other");
    let mut st = state(&shared, "fuzz");
    let mut ids: Vec<u64> = Vec::new();
    let mut pings: Vec<u32> = Vec::new();
    let mut senders: Vec<u32> = Vec::new();
    let pick = |v: &[u64], i: Id| match i {
        Id::Known(k) if !v.is_empty() => v[k % v.len()],
        Id::Known(k) => k as u64,
        Id::Raw(r) => r,
    };
    let rep = |v: &[u32], h: Handle| match h {
        Handle::Known(k) if !v.is_empty() => v[k % v.len()],
        Handle::Known(k) => k as u32,
        Handle::Forged(r) => r,
    };
    for c in calls {
        match c.clone() {
            Call::Now => {
                st.now();
            }
            Call::Log(m) => st.log(LogLevel::Trace, m),
            Call::InstanceName => assert_eq!(st.instance_name(), "fuzz"),
            Call::Stop(code) => st.stop(code),
            Call::AddTimer(d) => {
                if let Ok(i) = st.add_timer(d) {
                    ids.push(i)
                }
            }
            Call::AddIdle => {
                if let Ok(i) = st.add_idle() {
                    ids.push(i)
                }
            }
            Call::MakePing(n) => {
                if let Ok((i, h)) = st.make_ping(n) {
                    ids.push(i);
                    pings.push(h.rep());
                }
            }
            Call::ConnectPing(t) => {
                if let Ok(h) = st.connect_ping(t) {
                    pings.push(h.rep())
                }
            }
            Call::OpenChannel(n) => {
                if let Ok(i) = st.open_channel(n) {
                    ids.push(i)
                }
            }
            Call::Connect(t) => {
                if let Ok(h) = st.connect(t) {
                    senders.push(h.rep())
                }
            }
            Call::Enable(i) => drop(st.enable(pick(&ids, i))),
            Call::Disable(i) => drop(st.disable(pick(&ids, i))),
            Call::Update(i) => drop(st.update(pick(&ids, i))),
            Call::Remove(i) => drop(st.remove(pick(&ids, i))),
            Call::Trigger(h) => {
                HostPing::trigger(&mut st, Resource::<PingHandle>::new_own(rep(&pings, h)))
            }
            Call::DropPing(h) => {
                let r = HostPing::drop(&mut st, Resource::<PingHandle>::new_own(rep(&pings, h)));
                assert!(r.is_ok(), "dropping a ping handle never traps");
            }
            Call::Send(h, n) => {
                let r = st.send(
                    Resource::<SenderHandle>::new_own(rep(&senders, h)),
                    vec![7; n],
                );
                if n > limits().max_message_bytes {
                    assert!(r.is_err(), "an oversized message is refused");
                }
            }
            Call::Target(h) => {
                st.target(Resource::<SenderHandle>::new_own(rep(&senders, h)));
            }
            Call::DropSender(h) => {
                let r =
                    HostSender::drop(&mut st, Resource::<SenderHandle>::new_own(rep(&senders, h)));
                assert!(r.is_ok(), "dropping a sender handle never traps");
            }
            Call::Return => {
                // What the runtime does with the queued operations that
                // concern the bookkeeping (the loop itself is not involved).
                for op in std::mem::take(&mut st.ops) {
                    if let Op::Remove(id) = op {
                        st.sources.forget(id);
                    }
                }
            }
        }
        let live = st.live_sources();
        assert!(live <= limits().max_sources, "{live} live sources");
        assert_eq!(
            live,
            st.sources.recount(),
            "the O(1) live-source count matches the records"
        );
        assert!(st.handles <= limits().max_handles, "{} handles", st.handles);
    }
}

#[test]
fn random_guest_calls_never_panic_and_keep_the_limits() {
    let budget = std::env::var("CALLOP_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let start = Instant::now();
    let mut rounds = 0u64;
    loop {
        let mut runner = TestRunner::new(Config {
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = proptest::collection::vec(call(), 0..200);
        if let Err(e) = runner.run(&strategy, |calls| {
            run(&calls);
            Ok(())
        }) {
            panic!("{e}");
        }
        rounds += 1;
        match budget {
            Some(b) if start.elapsed() < b => continue,
            _ => break,
        }
    }
    if budget.is_some() {
        eprintln!("fuzz: {rounds} rounds in {:?}", start.elapsed());
    }
}
