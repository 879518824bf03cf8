//! `ticker`: a repeating timer.
//!
//! Args: `--every <duration>` (default `100ms`; units `ns`, `us`, `ms`, `s`)
//! and `--count <n>` (default `5`). Prints `tick 1` … `tick N` on stdout, one
//! per period, then drops its timer; with no source left the plugin ends
//! (exit code 0). `--notify <target>` (optional) also sends each `tick N`
//! line as a message to that channel, e.g. `@app/ticks`. `--stderr` prints
//! the tick lines on stderr instead of stdout.
//!
//! Explicit stops (used by the host's exit tests):
//! `--stop-in-init <code>` registers the timer and then calls
//! `stop(code)` inside `init`, so the plugin ends before its first tick;
//! `--stop-at-end <code>` calls `stop(code)` in the callback of the last
//! tick while keeping the timer armed (the stop, not a lack of sources,
//! ends the plugin).

use std::time::Duration;

use callop_guest::channel::Sender;
use callop_guest::timer::{TimeoutAction, Timer};
use callop_guest::{LoopHandle, Plugin};

struct Ticker;

/// Plugin state.
struct State {
    every: Duration,
    count: u64,
    ticks: u64,
    /// `--stop-at-end`: the code to stop with after the last tick.
    stop_at_end: Option<i32>,
    /// `--notify`: where to send each tick line too.
    notify: Option<Sender>,
    /// `--stderr`: tick lines go to stderr.
    stderr: bool,
}

/// Parsed arguments.
struct Args {
    every: Duration,
    count: u64,
    stop_in_init: Option<i32>,
    stop_at_end: Option<i32>,
    notify: Option<String>,
    stderr: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    match unit {
        "ns" => Ok(Duration::from_nanos(n)),
        "us" | "µs" => Ok(Duration::from_micros(n)),
        "ms" | "" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        _ => Err(format!("bad duration unit in {s:?} (use ns, us, ms or s)")),
    }
}

fn parse_code(name: &str, v: &str) -> Result<i32, String> {
    v.parse().map_err(|e| format!("bad {name}: {e}"))
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut every = Duration::from_millis(100);
    let mut count = 5;
    let (mut stop_in_init, mut stop_at_end) = (None, None);
    let mut notify = None;
    let mut stderr = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--every" => every = parse_duration(&value("--every")?)?,
            "--count" => {
                count = value("--count")?
                    .parse()
                    .map_err(|e| format!("bad --count: {e}"))?
            }
            "--stop-in-init" => {
                stop_in_init = Some(parse_code("--stop-in-init", &value("--stop-in-init")?)?)
            }
            "--stop-at-end" => {
                stop_at_end = Some(parse_code("--stop-at-end", &value("--stop-at-end")?)?)
            }
            "--notify" => notify = Some(value("--notify")?),
            "--stderr" => stderr = true,
            other => {
                return Err(format!(
                    "unknown argument {other:?} (usage: --every 10ms --count 5)"
                ))
            }
        }
    }
    Ok(Args {
        every,
        count,
        stop_in_init,
        stop_at_end,
        notify,
        stderr,
    })
}

impl Plugin for Ticker {
    type State = State;

    fn init(handle: &LoopHandle<State>, args: Vec<String>) -> Result<State, String> {
        let Args {
            every,
            count,
            stop_in_init,
            stop_at_end,
            notify,
            stderr,
        } = parse_args(&args)?;
        let notify = match notify {
            Some(t) => Some(Sender::to(&t).map_err(|e| format!("--notify {t}: {e}"))?),
            None => None,
        };
        if count > 0 {
            handle
                .insert_source(
                    Timer::from_duration(every),
                    |deadline, _: &mut (), st: &mut State| {
                        st.ticks += 1;
                        if st.stderr {
                            eprintln!("tick {}", st.ticks);
                        } else {
                            println!("tick {}", st.ticks);
                        }
                        if let Some(s) = &st.notify {
                            if let Err(e) = s.send(format!("tick {}", st.ticks)) {
                                eprintln!("ticker: cannot notify: {e}");
                            }
                        }
                        if st.ticks >= st.count {
                            match st.stop_at_end {
                                Some(code) => {
                                    callop_guest::stop(code);
                                    // Still armed: the stop alone ends the plugin.
                                    TimeoutAction::ToInstant(deadline + st.every)
                                }
                                None => TimeoutAction::Drop,
                            }
                        } else {
                            // Drift-free period, relative to the deadline that fired.
                            TimeoutAction::ToInstant(deadline + st.every)
                        }
                    },
                )
                .map_err(|e| e.to_string())?;
        }
        if let Some(code) = stop_in_init {
            callop_guest::stop(code);
        }
        Ok(State {
            every,
            count,
            ticks: 0,
            stop_at_end,
            notify,
            stderr,
        })
    }
}

callop_guest::export_plugin!(Ticker);
