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
//! * `sleep`: sleeps `--ms` (default 30,000) in the callback with
//!   `std::thread::sleep` (a blocking WASI wait);
//! * `init-sleep`: the same inside `init`;
//! * `shutdown-sleep`: runs healthily (a 100 ms periodic timer) and sleeps
//!   `--ms` in its `shutdown` export;
//! * `stop`: calls `host-loop.stop(--code)`;
//! * `exit`: calls `std::process::exit(--code)` (WASI `exit`, which
//!   carries only success or failure);
//! * `exit-with-code`: calls WASI 0.2.12's `exit-with-code(--code)`.
//! * `init-error`, `init-exit`, `init-trap`, `init-loop`: fail in `init`
//!   itself, after printing the start line: return an error
//!   (`faulty: deliberate init error`), `std::process::exit(3)`, execute
//!   `unreachable`, loop forever (the init timeout must interrupt it);
//! * `timer-overflow`: a timer that fires after `--after` and answers
//!   `ToDuration(u64::MAX ns)` (printing `timer-overflow: re-armed to
//!   u64::MAX ns`); the host drops an overflowing timer, so the plugin,
//!   having no other source, finishes.
//! * `buffer-bomb`: sends 1 MiB messages, 4 per idle callback, until a send
//!   fails (at most 100,000), then prints `buffer-bomb: sent N, then <code>:
//!   <message>` and keeps running. `--target unopened` (default) sends round
//!   robin to `--names K` (default 16) distinct channel names of its own
//!   that are never opened; `--target own` opens its channel `sink`,
//!   disables it (never reads it) and sends to it; `--target app` sends to
//!   the application endpoint `@app/bomb`. After `--hold <ms>`
//!   (default 200) it tries one more send (`buffer-bomb: after hold: ...`);
//!   with `--target own` it then enables `sink`, reads every message and
//!   sends once more (`buffer-bomb: received N; after delivery: ...`). Then,
//!   with `--then finish` (default) it drops everything and finishes, with
//!   `--then trap` it traps (to test what a restart gets back).
//! * `flood`: prints [`FLOOD_LINES`] stdout lines (`flood: line N`, counting
//!   on) in each timer callback, the timer re-armed every millisecond, until
//!   the host shuts it down;
//! * `flood-stderr`: the same on stderr;
//! * `huge-error`: `init` returns an error of [`HUGE_ERROR_BYTES`] (50 MiB:
//!   `huge-error: ` and then `x`s).

use std::hint::black_box;
use std::time::Duration;

use callop_guest::bindings::callop::plugin::host_loop;
use callop_guest::channel::{Channel, Event as ChannelEvent, Sender};
use callop_guest::timer::{TimeoutAction, Timer};
use callop_guest::{LoopHandle, Plugin, PostAction};

/// `wasi:cli/exit.exit-with-code` (WASI 0.2.12), which Rust's std does not
/// use yet.
mod wasi_exit {
    wit_bindgen::generate!({
        inline: "
            package wasi:cli@0.2.12;
            interface exit {
                exit: func(status: result);
                exit-with-code: func(status-code: u8);
            }
            world faulty-exit {
                import exit;
            }
        ",
        world: "wasi:cli/faulty-exit",
    });
}

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
    Sleep,
    InitSleep,
    ShutdownSleep,
    Stop,
    Exit,
    ExitWithCode,
    InitError,
    InitExit,
    InitTrap,
    InitLoop,
    TimerOverflow,
    BufferBomb,
    Flood,
    FloodStderr,
    HugeError,
}

/// Where `buffer-bomb` sends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BombTarget {
    /// Distinct channel names of its own, never opened.
    Unopened,
    /// Its own open channel `sink`, disabled.
    Own,
    /// The application endpoint `@app/bomb` (which the test never drains).
    App,
}

/// Options and state of `buffer-bomb`.
struct Bomb {
    target: BombTarget,
    names: usize,
    hold: Duration,
    then_trap: bool,
    senders: Vec<Sender>,
    sink: Option<callop_guest::RegistrationToken>,
    sent: usize,
    received: usize,
}

const BOMB_MESSAGE: usize = 1 << 20;
const BOMB_MAX_SENDS: usize = 100_000;
const BOMB_CHUNK: usize = 4;

/// Plugin state.
struct State {
    handle: LoopHandle<State>,
    notify: Option<Sender>,
    storm: Storm,
    /// `--ms`.
    ms: u64,
    /// `--code`.
    code: i32,
    /// Whether `shutdown` sleeps `ms`.
    sleep_in_shutdown: bool,
    bomb: Bomb,
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
    ms: u64,
    code: i32,
    bomb: Bomb,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut mode = None;
    let mut after = Duration::from_millis(20);
    let mut notify = None;
    let mut only_first_run = false;
    let mut ms = 30_000;
    let mut code = 0;
    let mut bomb = Bomb {
        target: BombTarget::Unopened,
        names: 16,
        hold: Duration::from_millis(200),
        then_trap: false,
        senders: Vec::new(),
        sink: None,
        sent: 0,
        received: 0,
    };
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
                    "sleep" => Mode::Sleep,
                    "init-sleep" => Mode::InitSleep,
                    "shutdown-sleep" => Mode::ShutdownSleep,
                    "stop" => Mode::Stop,
                    "exit" => Mode::Exit,
                    "exit-with-code" => Mode::ExitWithCode,
                    "init-error" => Mode::InitError,
                    "init-exit" => Mode::InitExit,
                    "init-trap" => Mode::InitTrap,
                    "init-loop" => Mode::InitLoop,
                    "timer-overflow" => Mode::TimerOverflow,
                    "buffer-bomb" => Mode::BufferBomb,
                    "flood" => Mode::Flood,
                    "flood-stderr" => Mode::FloodStderr,
                    "huge-error" => Mode::HugeError,
                    m => {
                        return Err(format!(
                            "unknown mode {m:?} (trap, panic, loop, memory, stack, bad-handle, storm, sleep, init-sleep, shutdown-sleep, stop, exit, exit-with-code, init-error, init-exit, init-trap, init-loop, timer-overflow, buffer-bomb, flood, flood-stderr, huge-error)"
                        ))
                    }
                })
            }
            "--after" => {
                let ms: u64 = value("--after")?.parse().map_err(|e| format!("bad --after: {e}"))?;
                after = Duration::from_millis(ms);
            }
            "--notify" => notify = Some(value("--notify")?),
            "--ms" => ms = value("--ms")?.parse().map_err(|e| format!("bad --ms: {e}"))?,
            "--code" => code = value("--code")?.parse().map_err(|e| format!("bad --code: {e}"))?,
            "--target" => {
                bomb.target = match value("--target")?.as_str() {
                    "unopened" => BombTarget::Unopened,
                    "own" => BombTarget::Own,
                    "app" => BombTarget::App,
                    t => return Err(format!("unknown --target {t:?} (unopened, own, app)")),
                }
            }
            "--names" => {
                bomb.names = value("--names")?
                    .parse::<usize>()
                    .map_err(|e| format!("bad --names: {e}"))?
                    .max(1)
            }
            "--hold" => {
                let ms: u64 = value("--hold")?.parse().map_err(|e| format!("bad --hold: {e}"))?;
                bomb.hold = Duration::from_millis(ms);
            }
            "--then" => {
                bomb.then_trap = match value("--then")?.as_str() {
                    "finish" => false,
                    "trap" => true,
                    t => return Err(format!("unknown --then {t:?} (finish, trap)")),
                }
            }
            "--only-first-run" => only_first_run = true,
            other => return Err(format!("unknown argument {other:?} (usage: --mode MODE [--after MS] [--notify TARGET] [--only-first-run] [--ms MS] [--code N] [--target unopened|own|app] [--names K] [--hold MS] [--then finish|trap])")),
        }
    }
    let mode = mode.ok_or("--mode is required")?;
    Ok(Args {
        mode,
        after,
        notify,
        only_first_run,
        ms,
        code,
        bomb,
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
        Mode::Sleep | Mode::InitSleep => {
            note(st, &format!("faulty: sleeping {} ms", st.ms));
            std::thread::sleep(Duration::from_millis(st.ms));
            note(st, "faulty: woke up");
        }
        Mode::ShutdownSleep => {}
        Mode::Stop => st.handle.get_signal().stop_with_code(st.code),
        Mode::Exit => std::process::exit(st.code),
        Mode::ExitWithCode => wasi_exit::wasi::cli::exit::exit_with_code(st.code as u8),
        Mode::BufferBomb => bomb_fill(st),
        // These fail in `init` (see `init_fault`) or answer their timer
        // (see `Faulty::init`): nothing happens in the fault callback.
        Mode::InitError
        | Mode::InitExit
        | Mode::InitTrap
        | Mode::InitLoop
        | Mode::TimerOverflow => {}
    }
}

/// The faults of the `init-*` modes, inside `init`.
fn init_fault(mode: Mode) -> Result<(), String> {
    match mode {
        Mode::InitError => Err("faulty: deliberate init error".into()),
        Mode::InitExit => std::process::exit(3),
        Mode::InitTrap => std::arch::wasm32::unreachable(),
        Mode::InitLoop => {
            let mut i = 0u64;
            loop {
                i = black_box(i.wrapping_add(1));
            }
        }
        _ => Ok(()),
    }
}

/// A send result as `ok` or `<code>: <message>` (`limit-exceeded: ...`).
fn outcome(r: callop_guest::Result<()>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) if e.code == callop_guest::ErrorCode::LimitExceeded => {
            format!("limit-exceeded: {}", e.message)
        }
        Err(e) => format!("{:?}: {}", e.code, e.message),
    }
}

/// `buffer-bomb`: sends 1 MiB messages until a send fails, then holds them.
fn bomb_fill(st: &mut State) {
    if st.bomb.target == BombTarget::Own {
        let sink =
            st.handle
                .insert_source(Channel::open("sink"), |e, _: &mut (), st: &mut State| {
                    if let ChannelEvent::Msg(_) = e {
                        st.bomb.received += 1;
                        if st.bomb.received == st.bomb.sent {
                            bomb_after_delivery(st);
                        }
                    }
                    PostAction::Continue
                });
        match sink {
            Ok(t) => {
                let _ = st.handle.disable(&t);
                st.bomb.sink = Some(t);
            }
            Err(e) => return note(st, &format!("buffer-bomb: cannot open sink: {e}")),
        }
    }
    let names: Vec<String> = match st.bomb.target {
        BombTarget::Own => vec!["sink".into()],
        BombTarget::App => vec!["@app/bomb".into()],
        BombTarget::Unopened => (0..st.bomb.names).map(|i| format!("never-{i}")).collect(),
    };
    for n in &names {
        match Sender::to(n) {
            Ok(s) => st.bomb.senders.push(s),
            Err(e) => return note(st, &format!("buffer-bomb: cannot connect to {n}: {e}")),
        }
    }
    bomb_step(st);
}

/// Sends up to [`BOMB_CHUNK`] messages, then goes on in an idle callback
/// (a callback sending 64 MiB could exceed a loaded machine's callback
/// timeout), until a send fails.
fn bomb_step(st: &mut State) {
    let msg = vec![0xb0u8; BOMB_MESSAGE];
    let mut last = Ok(());
    for _ in 0..BOMB_CHUNK {
        if st.bomb.sent >= BOMB_MAX_SENDS {
            break;
        }
        let s = &st.bomb.senders[st.bomb.sent % st.bomb.senders.len()];
        last = s.send(&msg);
        if last.is_err() {
            break;
        }
        st.bomb.sent += 1;
    }
    if last.is_ok() && st.bomb.sent < BOMB_MAX_SENDS {
        if let Err(e) = st.handle.try_insert_idle(bomb_step) {
            note(st, &format!("buffer-bomb: cannot go on: {e}"));
        }
        return;
    }
    let line = format!("buffer-bomb: sent {}, then {}", st.bomb.sent, outcome(last));
    note(st, &line);
    let hold = st.bomb.hold;
    let r = st.handle.insert_source(
        Timer::from_duration(hold),
        move |_, _: &mut (), st: &mut State| {
            let r = st.bomb.senders[0].send(vec![0u8; BOMB_MESSAGE]);
            let line = format!("buffer-bomb: after hold: {}", outcome(r));
            note(st, &line);
            match st.bomb.sink {
                Some(_) if st.bomb.sent == 0 => bomb_after_delivery(st),
                Some(t) => {
                    // Read the sink now: delivery releases what it held.
                    let _ = st.handle.enable(&t);
                }
                None => bomb_end(st),
            }
            TimeoutAction::Drop
        },
    );
    if let Err(e) = r {
        note(st, &format!("buffer-bomb: cannot hold: {e}"));
    }
}

/// `--target own`: every message was read; one more send must fit.
fn bomb_after_delivery(st: &mut State) {
    let r = st.bomb.senders[0].send(b"after delivery");
    let line = format!(
        "buffer-bomb: received {}; after delivery: {}",
        st.bomb.received,
        outcome(r)
    );
    note(st, &line);
    bomb_end(st);
}

/// Drops what the bomb holds (and finishes), or traps (`--then trap`).
fn bomb_end(st: &mut State) {
    if st.bomb.then_trap {
        std::arch::wasm32::unreachable();
    }
    st.bomb.senders.clear();
    if let Some(t) = st.bomb.sink.take() {
        st.handle.remove(t);
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
        let mut st = State {
            handle: *handle,
            notify,
            storm: Storm::default(),
            ms: args.ms,
            code: args.code,
            sleep_in_shutdown: args.mode == Mode::ShutdownSleep,
            bomb: args.bomb,
            flooded: 0,
        };
        note(
            &st,
            &format!(
                "faulty: start mode={:?} restarts={restarts} generation={}",
                args.mode,
                callop_guest::generation()
            ),
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
        if mode == Mode::InitSleep {
            fault(mode, &mut st);
        }
        if mode == Mode::ShutdownSleep {
            handle
                .insert_source(
                    Timer::from_duration(Duration::from_millis(100)),
                    |_, _: &mut (), _: &mut State| {
                        TimeoutAction::ToDuration(Duration::from_millis(100))
                    },
                )
                .map_err(|e| e.to_string())?;
            return Ok(st);
        }
        init_fault(mode)?;
        if mode == Mode::TimerOverflow {
            handle
                .insert_source(
                    Timer::from_duration(args.after),
                    |_, _: &mut (), st: &mut State| {
                        note(st, "timer-overflow: re-armed to u64::MAX ns");
                        TimeoutAction::ToDuration(Duration::from_nanos(u64::MAX))
                    },
                )
                .map_err(|e| e.to_string())?;
            return Ok(st);
        }
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

    fn shutdown(handle: &LoopHandle<State>, st: &mut State, _deadline: callop_guest::Instant) {
        if st.sleep_in_shutdown {
            note(st, &format!("faulty: shutdown sleeping {} ms", st.ms));
            std::thread::sleep(Duration::from_millis(st.ms));
            note(st, "faulty: shutdown woke up");
        }
        // As the default does: the plugin ends right away.
        handle.remove_all();
    }
}

callop_guest::export_plugin!(Faulty);
