//! `kv-plugin`: a plugin of the key-value example application
//! (`tests/kv-app`), using the application's own API (`example:kv`: the
//! store and `notify`) beside the loop.
//!
//! A timer writes the store: every `--every` (default `10ms`) it sets
//! `--key` (default `<instance>/tick`) to the tick number, `--count` times
//! (default 3), then sends the key to its own channel `read` and drops
//! itself. The channel callback reads the key back, notifies
//! `read <key>=<value> (<n> of my keys)` and removes the channel: with no
//! source left the plugin ends. After the last tick it also notifies
//! `wrote <count> ticks`.
//!
//! `--bench N` instead opens the channel `bench` and, for each message
//! `now` or `len`, calls `host-loop.now` or the application's `store.len`
//! N times (the bench `app_call` of the plugin host); a message `stop`
//! ends it.
//!
//! # Using `callop_guest` and the application's imports in one crate
//!
//! `callop_guest` provides the `callop:plugin` part (its imports and the
//! `guest` export, through [`callop_guest::export_plugin!`]); this crate
//! generates bindings only for the application's imports, the world
//! `kv-imports` of the application's WIT directory (whose `deps/` holds
//! `callop:plugin`, which its world `kv-plugin` includes). Both land in
//! one component: the linker merges the two worlds. An application whose
//! interfaces `use` callop's types would add `with:` entries mapping
//! `callop:plugin/types@0.3.0` onto `callop_guest::bindings::callop::plugin::types`,
//! so both sides share one Rust type.

use std::time::Duration;

use callop_guest::channel::{Channel, Event, Sender};
use callop_guest::timer::{TimeoutAction, Timer};
use callop_guest::{LoopHandle, Plugin, PostAction};

wit_bindgen::generate!({
    world: "example:kv/kv-imports",
    path: "../../tests/kv-app/wit",
});

use example::kv::notify::{notify, Level};
use example::kv::store;

struct Kv;

struct State {
    key: String,
    count: u64,
    ticks: u64,
}

struct Args {
    every: Duration,
    count: u64,
    key: Option<String>,
    bench: Option<u64>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        every: Duration::from_millis(10),
        count: 3,
        key: None,
        bench: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|e| format!("bad {name} {v:?}: {e}"))
        };
        match arg.as_str() {
            "--every" => a.every = Duration::from_millis(number("--every", value("--every")?)?),
            "--count" => a.count = number("--count", value("--count")?)?,
            "--key" => a.key = Some(value("--key")?),
            "--bench" => a.bench = Some(number("--bench", value("--bench")?)?),
            other => {
                return Err(format!(
                    "unknown argument {other:?} (usage: [--every MS] [--count N] [--key KEY] | --bench N)"
                ))
            }
        }
    }
    Ok(a)
}

fn on_tick(st: &mut State, deadline: callop_guest::Instant, every: Duration) -> TimeoutAction {
    st.ticks += 1;
    store::set(&st.key, &st.ticks.to_string());
    if st.ticks < st.count {
        return TimeoutAction::ToInstant(deadline + every);
    }
    notify(Level::Info, &format!("wrote {} ticks", st.ticks));
    match Sender::to("read").and_then(|tx| tx.send(st.key.as_bytes())) {
        Ok(()) => {}
        Err(e) => notify(Level::Error, &format!("cannot send to read: {e}")),
    }
    TimeoutAction::Drop
}

fn on_read(event: Event) -> PostAction {
    let Event::Msg(bytes) = event else {
        return PostAction::Remove;
    };
    let key = String::from_utf8_lossy(&bytes).into_owned();
    let value = store::get(&key).unwrap_or_else(|| "<unset>".into());
    let prefix = format!("{}/", callop_guest::instance_name());
    let mine = store::keys()
        .iter()
        .filter(|k| k.starts_with(&prefix))
        .count();
    notify(
        Level::Info,
        &format!("read {key}={value} ({mine} of my keys)"),
    );
    PostAction::Remove
}

fn bench(handle: &LoopHandle<State>, n: u64) -> Result<(), String> {
    handle
        .insert_source(Channel::open("bench"), move |event, _, _: &mut State| {
            let Event::Msg(what) = event else {
                return PostAction::Remove;
            };
            let mut sum = 0u64;
            match &what[..] {
                b"now" => {
                    for _ in 0..n {
                        sum = sum
                            .wrapping_add(callop_guest::bindings::callop::plugin::host_loop::now());
                    }
                }
                b"len" => {
                    for _ in 0..n {
                        sum = sum.wrapping_add(store::len());
                    }
                }
                b"stop" => return PostAction::Remove,
                _ => {}
            }
            std::hint::black_box(sum);
            PostAction::Continue
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl Plugin for Kv {
    type State = State;

    fn init(handle: &LoopHandle<State>, args: Vec<String>) -> Result<State, String> {
        let a = parse_args(&args)?;
        let st = State {
            key: a
                .key
                .unwrap_or_else(|| format!("{}/tick", callop_guest::instance_name())),
            count: a.count.max(1),
            ticks: 0,
        };
        if let Some(n) = a.bench {
            bench(handle, n)?;
            return Ok(st);
        }
        handle
            .insert_source(Channel::open("read"), |event, _, _: &mut State| {
                on_read(event)
            })
            .map_err(|e| e.to_string())?;
        let every = a.every;
        handle
            .insert_source(
                Timer::from_duration(every),
                move |deadline, _, st: &mut State| on_tick(st, deadline, every),
            )
            .map_err(|e| e.to_string())?;
        Ok(st)
    }
}

callop_guest::export_plugin!(Kv);
