//! `ticker`: a repeating timer.
//!
//! Args: `--every <duration>` (default `100ms`; units `ns`, `us`, `ms`, `s`)
//! and `--count <n>` (default `5`), `--notify <target>` (optional: also send
//! each `tick N` line as a message to that channel, e.g. `@app/ticks`).
//! Prints `tick 1` … `tick N` on stdout, one per period, then drops its
//! timer; with no source left the plugin ends (exit code 0).

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
    notify: Option<Sender>,
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

fn parse_args(args: &[String]) -> Result<(Duration, u64, Option<String>), String> {
    let mut every = Duration::from_millis(100);
    let mut count = 5;
    let mut notify = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--every" => every = parse_duration(&value("--every")?)?,
            "--count" => {
                count = value("--count")?.parse().map_err(|e| format!("bad --count: {e}"))?
            }
            "--notify" => notify = Some(value("--notify")?),
            other => return Err(format!("unknown argument {other:?} (usage: --every 10ms --count 5 [--notify TARGET])")),
        }
    }
    Ok((every, count, notify))
}

impl Plugin for Ticker {
    type State = State;

    fn init(handle: &LoopHandle<State>, args: Vec<String>) -> Result<State, String> {
        let (every, count, notify) = parse_args(&args)?;
        let notify = match notify {
            Some(t) => Some(Sender::to(&t).map_err(|e| format!("--notify {t}: {e}"))?),
            None => None,
        };
        if count > 0 {
            handle
                .insert_source(Timer::from_duration(every), |deadline, _: &mut (), st: &mut State| {
                    st.ticks += 1;
                    println!("tick {}", st.ticks);
                    if let Some(s) = &st.notify {
                        if let Err(e) = s.send(format!("tick {}", st.ticks)) {
                            eprintln!("ticker: cannot notify: {e}");
                        }
                    }
                    if st.ticks >= st.count {
                        TimeoutAction::Drop
                    } else {
                        // Drift-free period, relative to the deadline that fired.
                        TimeoutAction::ToInstant(deadline + st.every)
                    }
                })
                .map_err(|e| e.to_string())?;
        }
        Ok(State { every, count, ticks: 0, notify })
    }
}

callop_guest::export_plugin!(Ticker);
