//! `faulty`: a fault-injection plugin for the host's isolation tests.
//!
//! Args: `--mode <mode>` (required), `--after <ms>` (default `20`: the fault
//! happens in a timer callback that long after `init`), `--notify <target>`
//! (optional: a channel, e.g. `@app/faulty`, that gets one message per
//! notable step), `--only-first-run` (fault only when the host's
//! `CALLOP_RESTARTS` environment variable is `0` or absent, i.e. on the first
//! run; a restarted instance runs healthily and finishes).
//!
//! Modes:
//! * `trap`: executes `unreachable`;
//! * `panic`: panics (the message is `faulty: deliberate panic`);
//! * `loop`: loops forever inside the callback (the host's callback timeout
//!   must interrupt it);
//! * `memory`: allocates and touches 1 MiB blocks until allocation fails;
//! * `stack`: recurses without bound (stack overflow);
//! * `bad-handle`: calls the host with bogus, stale and foreign ids, names
//!   and an oversized message; prints `bad-handle: <call> -> <result>` for
//!   each, then `bad-handle: survived N calls` and finishes (exit code 0);
//! * `storm`: asks for 1,000,000 timers, 10,000 per idle callback; prints
//!   `storm: registered R, refused F (first error: ...)`, removes its
//!   timers and finishes;
//! * `flood`: prints [`FLOOD_LINES`] stdout lines (`flood: line N`, counting
//!   on) in each timer callback, the timer re-armed every millisecond, until
//!   the host shuts it down;
//! * `flood-stderr`: the same on stderr;
//! * `huge-error`: `init` returns an error of [`HUGE_ERROR_BYTES`] (50 MiB:
//!   `huge-error: ` and then `x`s).

use std::hint::black_box;
use std::time::Duration;

use callop_guest::bindings::callop::plugin::host_loop;
use callop_guest::channel::Sender;
use callop_guest::timer::{TimeoutAction, Timer};
use callop_guest::{LoopHandle, Plugin};

struct Faulty;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Trap,
    Panic,
    Loop,
    Memory,
    Stack,
    BadHandle,
    Storm,
    Flood,
    FloodStderr,
    HugeError,
}

/// Plugin state.
struct State {
    handle: LoopHandle<State>,
    notify: Option<Sender>,
    storm: Storm,
    /// Lines printed so far in mode `flood`.
    flooded: u64,
}

#[derive(Default)]
struct Storm {
    asked: u64,
    ids: Vec<u64>,
    refused: u64,
    first_error: Option<String>,
}

const STORM_TOTAL: u64 = 1_000_000;
const STORM_CHUNK: u64 = 10_000;

/// Lines printed per timer callback in mode `flood`.
pub const FLOOD_LINES: u64 = 1_000;

/// Size of the `init` error in mode `huge-error`.
pub const HUGE_ERROR_BYTES: usize = 50 << 20;

struct Args {
    mode: Mode,
    after: Duration,
    notify: Option<String>,
    only_first_run: bool,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut mode = None;
    let mut after = Duration::from_millis(20);
    let mut notify = None;
    let mut only_first_run = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--mode" => {
                mode = Some(match value("--mode")?.as_str() {
                    "trap" => Mode::Trap,
                    "panic" => Mode::Panic,
                    "loop" => Mode::Loop,
                    "memory" => Mode::Memory,
                    "stack" => Mode::Stack,
                    "bad-handle" => Mode::BadHandle,
                    "storm" => Mode::Storm,
                    "flood" => Mode::Flood,
                    "flood-stderr" => Mode::FloodStderr,
                    "huge-error" => Mode::HugeError,
                    m => {
                        return Err(format!(
                            "unknown mode {m:?} (trap, panic, loop, memory, stack, bad-handle, storm, flood, flood-stderr, huge-error)"
                        ))
                    }
                })
            }
            "--after" => {
                let ms: u64 = value("--after")?.parse().map_err(|e| format!("bad --after: {e}"))?;
                after = Duration::from_millis(ms);
            }
            "--notify" => notify = Some(value("--notify")?),
            "--only-first-run" => only_first_run = true,
            other => return Err(format!("unknown argument {other:?} (usage: --mode MODE [--after MS] [--notify TARGET] [--only-first-run])")),
        }
    }
    let mode = mode.ok_or("--mode is required")?;
    Ok(Args {
        mode,
        after,
        notify,
        only_first_run,
    })
}

fn note(st: &State, msg: &str) {
    println!("{msg}");
    if let Some(s) = &st.notify {
        let _ = s.send(msg.as_bytes());
    }
}

/// Recursion that keeps its state in wasm locals (not on the shadow stack
/// in linear memory), so the wasm stack overflows first.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    recurse(black_box(n.wrapping_add(1))).wrapping_mul(black_box(n))
}

fn fault(mode: Mode, st: &mut State) {
    match mode {
        Mode::Trap => std::arch::wasm32::unreachable(),
        Mode::Panic => panic!("faulty: deliberate panic"),
        Mode::Loop => {
            let mut i = 0u64;
            loop {
                i = black_box(i.wrapping_add(1));
            }
        }
        Mode::Memory => {
            let mut blocks: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut b = vec![0u8; 1 << 20];
                b[4095] = 1;
                blocks.push(black_box(b));
            }
        }
        Mode::Stack => {
            black_box(recurse(1));
        }
        Mode::BadHandle => bad_handles(st),
        Mode::Storm => storm_step(st),
        Mode::Flood => {
            for _ in 0..FLOOD_LINES {
                st.flooded += 1;
                println!("flood: line {}", st.flooded);
            }
        }
        Mode::FloodStderr => {
            for _ in 0..FLOOD_LINES {
                st.flooded += 1;
                eprintln!("flood: line {}", st.flooded);
            }
        }
        // Fails in `init`, before any timer.
        Mode::HugeError => {}
    }
}

fn bad_handles(st: &mut State) {
    let mut lines: Vec<String> = Vec::new();
    let mut report = |call: &str, r: String| lines.push(format!("bad-handle: {call} -> {r}"));
    fn show<T: std::fmt::Debug>(r: Result<T, host_loop::Error>) -> String {
        match r {
            Ok(v) => format!("ok {v:?}"),
            Err(e) => format!("err {:?}: {}", e.code, e.message),
        }
    }
    // Bogus ids: never allocated, zero, the largest id.
    for id in [0u64, 999_999, u64::MAX] {
        report(&format!("enable({id})"), show(host_loop::enable(id)));
        report(&format!("disable({id})"), show(host_loop::disable(id)));
        report(&format!("update({id})"), show(host_loop::update(id)));
        report(&format!("remove({id})"), show(host_loop::remove(id)));
    }
    // Stale ids: a timer removed twice, then used.
    let t = host_loop::add_timer(host_loop::now().saturating_add(3_600_000_000_000));
    report("add-timer(now+1h)", show(t.clone()));
    if let Ok(id) = t {
        report(&format!("remove({id})"), show(host_loop::remove(id)));
        report(&format!("remove({id}) again"), show(host_loop::remove(id)));
        report(
            &format!("enable({id}) after remove"),
            show(host_loop::enable(id)),
        );
    }
    // Wrong kind: disabling an idle.
    if let Ok(idle) = host_loop::add_idle() {
        report(
            &format!("disable(idle {idle})"),
            show(host_loop::disable(idle)),
        );
        let _ = host_loop::remove(idle);
    }
    // Bad instants and names; foreign instances and endpoints.
    // (The far future is a valid deadline; remove it so the plugin can end.)
    let far = host_loop::add_timer(u64::MAX);
    if let Ok(id) = far {
        let _ = host_loop::remove(id);
    }
    report("add-timer(u64::MAX)", show(far));
    for target in [
        "",
        "no/such/thing",
        "bad name!",
        "nosuchplugin/in",
        "@app/nosuch",
        "ticker/../x",
    ] {
        report(
            &format!("connect({target:?})"),
            show(host_loop::connect(target).map(|s| s.target())),
        );
        report(
            &format!("connect-ping({target:?})"),
            show(host_loop::connect_ping(target).map(|_| ())),
        );
    }
    report(
        "open-channel(\"a/b\")",
        show(host_loop::open_channel("a/b")),
    );
    report(
        "make-ping(\"x y\")",
        show(host_loop::make_ping(Some("x y")).map(|(id, _)| id)),
    );
    // A channel opened twice; an oversized (2 MiB) message; a stale sender (its
    // channel removed).
    let chan = host_loop::open_channel("in");
    report("open-channel(\"in\")", show(chan.clone()));
    report(
        "open-channel(\"in\") again",
        show(host_loop::open_channel("in")),
    );
    if let Ok(s) = host_loop::connect("in") {
        report("send(2 MiB)", show(s.send(&vec![0u8; 2 << 20])));
        if let Ok(id) = chan {
            report(
                &format!("remove(channel {id})"),
                show(host_loop::remove(id)),
            );
        }
        report("send(3 bytes) to the removed channel", show(s.send(b"hi!")));
    }
    let n = lines.len();
    for l in &lines {
        note(st, l);
    }
    note(st, &format!("bad-handle: survived {n} calls"));
}

fn storm_step(st: &mut State) {
    // Reserve the next step's idle first (see the module docs).
    let more = st.storm.asked + STORM_CHUNK < STORM_TOTAL;
    if more {
        let _ = st.handle.try_insert_idle(|st: &mut State| storm_step(st));
    }
    let far = host_loop::now().saturating_add(3_600_000_000_000);
    for _ in 0..STORM_CHUNK.min(STORM_TOTAL - st.storm.asked) {
        st.storm.asked += 1;
        match host_loop::add_timer(far) {
            Ok(id) => st.storm.ids.push(id),
            Err(e) => {
                st.storm.refused += 1;
                if st.storm.first_error.is_none() {
                    st.storm.first_error = Some(format!("{:?}: {}", e.code, e.message));
                }
            }
        }
    }
    if !more {
        for id in st.storm.ids.drain(..) {
            let _ = host_loop::remove(id);
        }
        let msg = format!(
            "storm: asked {}, registered {}, refused {} (first error: {})",
            st.storm.asked,
            st.storm.asked - st.storm.refused,
            st.storm.refused,
            st.storm.first_error.as_deref().unwrap_or("none")
        );
        note(st, &msg);
    }
}

impl Plugin for Faulty {
    type State = State;

    fn init(handle: &LoopHandle<State>, args: Vec<String>) -> Result<State, String> {
        let args = parse_args(&args)?;
        let restarts: u32 = std::env::var("CALLOP_RESTARTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let notify = match &args.notify {
            Some(t) => Some(Sender::to(t).map_err(|e| format!("--notify {t}: {e}"))?),
            None => None,
        };
        let st = State {
            handle: *handle,
            notify,
            storm: Storm::default(),
            flooded: 0,
        };
        note(
            &st,
            &format!("faulty: start mode={:?} restarts={restarts}", args.mode),
        );
        if args.only_first_run && restarts > 0 {
            handle
                .insert_source(
                    Timer::from_duration(args.after),
                    |_, _: &mut (), st: &mut State| {
                        note(st, "faulty: healthy run finished");
                        TimeoutAction::Drop
                    },
                )
                .map_err(|e| e.to_string())?;
            return Ok(st);
        }
        let mode = args.mode;
        if mode == Mode::HugeError {
            let mut e = String::with_capacity(HUGE_ERROR_BYTES);
            e.push_str("huge-error: ");
            e.extend(std::iter::repeat_n('x', HUGE_ERROR_BYTES - e.len()));
            return Err(e);
        }
        handle
            .insert_source(
                Timer::from_duration(args.after),
                move |_, _: &mut (), st: &mut State| {
                    fault(mode, st);
                    if matches!(mode, Mode::Flood | Mode::FloodStderr) {
                        return TimeoutAction::ToDuration(Duration::from_millis(1));
                    }
                    TimeoutAction::Drop
                },
            )
            .map_err(|e| e.to_string())?;
        Ok(st)
    }
}

callop_guest::export_plugin!(Faulty);
