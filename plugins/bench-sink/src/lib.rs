//! `bench-sink`: the guest side of the host's benchmarks and scale tests.
//!
//! Modes (one per instance):
//!
//! - `--messages N`: opens channel `in`, counts messages; after the N-th it
//!   stops with code 0 (so the host sees the flood fully delivered). Each
//!   message arrives as a `Vec<u8>` ([`Channel::open`]); with `--shared` as
//!   a [`Message`](callop_guest::channel::Message) sharing its batch's
//!   buffer ([`Channel::open_shared`]).
//! - `--pings N`: makes the named ping `p`, counts ping events; after the
//!   N-th it stops with code 0.
//! - `--tick <ms> --ticks N`: a repeating timer; on every tick it sends its
//!   running count and how late the tick ran
//!   (`<instance> <k> <late-ns>`) to the application endpoint
//!   `@app/ticks`, and after N ticks drops its timer (the plugin then ends).
//!   With `--report` omitted nothing is sent (pure idle ticking);
//!   `--offset <ms>` delays the first tick (to spread many tickers);
//!   `--burn K` spends K rounds of integer work in every tick (the CPU-bound
//!   mix of the several-threads bench; with `--tick 0` it ticks once per loop
//!   iteration).

use std::time::Duration;

use callop_guest::channel::{Channel, Event, Sender};
use callop_guest::ping::make_named_ping;
use callop_guest::timer::{TimeoutAction, Timer};
use callop_guest::{LoopHandle, Plugin, PostAction};

struct Sink;

/// Plugin state.
struct State {
    target: u64,
    seen: u64,
    every: Duration,
    report: Option<Sender>,
    name: String,
    /// Rounds of work per tick (`--burn`).
    burn: u64,
    /// The work's running result (kept so it is not optimised away).
    acc: u64,
}

/// `rounds` steps of xorshift64 from `x`: work the compiler cannot skip.
fn burn(mut x: u64, rounds: u64) -> u64 {
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    std::hint::black_box(x)
}

impl Plugin for Sink {
    type State = State;

    fn init(handle: &LoopHandle<State>, args: Vec<String>) -> Result<State, String> {
        let mut st = State {
            target: 0,
            seen: 0,
            every: Duration::from_secs(1),
            report: None,
            name: callop_guest::instance_name(),
            burn: 0,
            acc: 0x9E37_79B9_7F4A_7C15,
        };
        let mut mode = None;
        let mut report = false;
        let mut shared = false;
        let mut offset = Duration::ZERO;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut num = |name: &str| -> Result<u64, String> {
                it.next()
                    .ok_or_else(|| format!("{name} needs a value"))?
                    .parse()
                    .map_err(|e| format!("bad {name}: {e}"))
            };
            match arg.as_str() {
                "--messages" | "--pings" | "--ticks" => {
                    st.target = num(arg)?;
                    mode.get_or_insert(arg.clone());
                }
                "--tick" => st.every = Duration::from_millis(num("--tick")?),
                "--offset" => offset = Duration::from_millis(num("--offset")?),
                "--report" => report = true,
                "--shared" => shared = true,
                "--burn" => st.burn = num("--burn")?,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if report {
            st.report = Some(Sender::to("@app/ticks").map_err(|e| e.to_string())?);
        }
        let done = |st: &mut State| {
            st.seen += 1;
            st.seen >= st.target
        };
        match mode.as_deref() {
            Some("--messages") => {
                // The same count for either kind of message.
                fn on_msg<M>(ev: Event<M>, st: &mut State) -> PostAction {
                    if let Event::Msg(_) = ev {
                        st.seen += 1;
                        if st.seen >= st.target {
                            callop_guest::stop(0);
                        }
                    }
                    PostAction::Continue
                }
                let token = if shared {
                    handle.insert_source(Channel::open_shared("in"), |ev, _: &mut (), st| {
                        on_msg(ev, st)
                    })
                } else {
                    handle.insert_source(Channel::open("in"), |ev, _: &mut (), st| on_msg(ev, st))
                };
                token.map_err(|e| e.to_string())?;
            }
            Some("--pings") => {
                let (ping, source) = make_named_ping("p").map_err(|e| e.to_string())?;
                handle
                    .insert_source(source, move |(), _: &mut (), st: &mut State| {
                        let _keep = &ping;
                        if done(st) {
                            callop_guest::stop(0);
                        }
                        PostAction::Continue
                    })
                    .map_err(|e| e.to_string())?;
            }
            Some(_) => {
                handle
                    .insert_source(
                        Timer::from_duration(st.every + offset),
                        |deadline, _: &mut (), st: &mut State| {
                            st.seen += 1;
                            if st.burn > 0 {
                                st.acc = burn(st.acc, st.burn);
                            }
                            if let Some(tx) = &st.report {
                                // Lateness as the guest sees it (negative = early).
                                let now = callop_guest::now();
                                let late = match now.checked_duration_since(deadline) {
                                    Some(d) => d.as_nanos() as i64,
                                    None => -(deadline.duration_since(now).as_nanos() as i64),
                                };
                                let _ = tx.send(format!("{} {} {late}", st.name, st.seen));
                            }
                            if st.seen >= st.target {
                                st.report = None;
                                TimeoutAction::Drop
                            } else {
                                TimeoutAction::ToInstant(deadline + st.every)
                            }
                        },
                    )
                    .map_err(|e| e.to_string())?;
            }
            None => {
                return Err(
                    "usage: --messages N [--shared] | --pings N | --tick MS --ticks N [--report]"
                        .into(),
                )
            }
        }
        Ok(st)
    }
}

callop_guest::export_plugin!(Sink);
