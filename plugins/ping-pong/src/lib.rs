//! `ping-pong`: two instances of this plugin exchange messages through host
//! named channels.
//!
//! Args: `--role ping|pong` (required), `--count <N>` (default `10`, used by
//! `ping`), `--peer <instance>` (default: `pong` for the ping role, `ping`
//! for the pong role). Load it twice, with instance names `ping` and `pong`
//! (or pass `--peer`).
//!
//! Protocol (messages are decimal numbers as text, on channels `<peer>/in`):
//! `ping` sends `1`; `pong` echoes every number back; `ping` answers `k` with
//! `k+1` until `k == N`. Then `ping` prints `ping: done after N exchanges`,
//! drops its sender and removes its channel; `pong` sees its channel close,
//! prints `pong: done, answered N` and removes its channel. With no source
//! left, both end with exit code 0.
//!
//! If the peer does not exist yet when `ping` starts, `ping` retries the
//! connection every 10 ms for up to 2 s.

use std::time::Duration;

use callop_guest::channel::{Channel, Event, Sender};
use callop_guest::timer::{TimeoutAction, Timer};
use callop_guest::{ErrorCode, LoopHandle, Plugin, PostAction};

struct PingPong;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Ping,
    Pong,
}

/// Plugin state.
struct State {
    role: Role,
    peer: String,
    count: u64,
    /// Messages received so far.
    received: u64,
    /// Sender to `<peer>/in`, once connected.
    to_peer: Option<Sender>,
}

fn parse_args(args: &[String]) -> Result<(Role, u64, Option<String>), String> {
    let (mut role, mut count, mut peer) = (None, 10u64, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--role" => {
                role = Some(match value("--role")?.as_str() {
                    "ping" => Role::Ping,
                    "pong" => Role::Pong,
                    r => return Err(format!("bad --role {r:?}: use ping or pong")),
                })
            }
            "--count" => {
                count = value("--count")?
                    .parse()
                    .map_err(|e| format!("bad --count: {e}"))?
            }
            "--peer" => peer = Some(value("--peer")?),
            other => {
                return Err(format!(
                "unknown argument {other:?} (usage: --role ping|pong [--count N] [--peer NAME])"
            ))
            }
        }
    }
    let role = role.ok_or("missing --role ping|pong")?;
    if count == 0 {
        return Err("--count must be > 0".into());
    }
    Ok((role, count, peer))
}

fn send(st: &State, n: u64) {
    if let Some(tx) = &st.to_peer {
        if let Err(e) = tx.send(n.to_string()) {
            callop_guest::error!("{:?}: sending {n} to {}: {e}", st.role, tx.target());
        }
    }
}

/// Connects `ping` to its peer and starts the exchange; retried from a timer
/// while the peer instance does not exist yet.
fn start_ping(st: &mut State) -> Result<bool, String> {
    match Sender::to(&format!("{}/in", st.peer)) {
        Ok(tx) => {
            st.to_peer = Some(tx);
            send(st, 1);
            Ok(true)
        }
        Err(e) if e.code == ErrorCode::NotFound => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

fn on_message(st: &mut State, event: Event) -> PostAction {
    match event {
        Event::Msg(bytes) => {
            let Some(k) = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            else {
                callop_guest::warn!("{:?}: ignoring malformed message {bytes:?}", st.role);
                return PostAction::Continue;
            };
            st.received += 1;
            match st.role {
                Role::Pong => {
                    if st.to_peer.is_none() {
                        match Sender::to(&format!("{}/in", st.peer)) {
                            Ok(tx) => st.to_peer = Some(tx),
                            Err(e) => callop_guest::error!("pong: connecting to {}: {e}", st.peer),
                        }
                    }
                    send(st, k);
                    PostAction::Continue
                }
                Role::Ping if k >= st.count => {
                    println!("ping: done after {} exchanges", st.received);
                    st.to_peer = None; // closes pong's channel
                    PostAction::Remove
                }
                Role::Ping => {
                    send(st, k + 1);
                    PostAction::Continue
                }
            }
        }
        Event::Closed => {
            match st.role {
                Role::Pong => println!("pong: done, answered {}", st.received),
                Role::Ping => println!("ping: peer closed after {} exchanges", st.received),
            }
            st.to_peer = None;
            PostAction::Remove
        }
    }
}

impl Plugin for PingPong {
    type State = State;

    fn init(handle: &LoopHandle<State>, args: Vec<String>) -> Result<State, String> {
        let (role, count, peer) = parse_args(&args)?;
        let peer = peer.unwrap_or_else(|| match role {
            Role::Ping => "pong".into(),
            Role::Pong => "ping".into(),
        });
        let mut st = State {
            role,
            peer,
            count,
            received: 0,
            to_peer: None,
        };
        handle
            .insert_source(Channel::open("in"), |event, _: &mut (), st: &mut State| {
                on_message(st, event)
            })
            .map_err(|e| e.to_string())?;
        if role == Role::Ping && !start_ping(&mut st)? {
            let signal = handle.get_signal();
            let mut tries = 0;
            handle
                .insert_source(
                    Timer::from_duration(Duration::from_millis(10)),
                    move |_, _: &mut (), st: &mut State| {
                        tries += 1;
                        match start_ping(st) {
                            Ok(true) => TimeoutAction::Drop,
                            Ok(false) if tries < 200 => {
                                TimeoutAction::ToDuration(Duration::from_millis(10))
                            }
                            Ok(false) => {
                                callop_guest::error!("ping: peer {:?} not found", st.peer);
                                signal.stop_with_code(2);
                                TimeoutAction::Drop
                            }
                            Err(e) => {
                                callop_guest::error!("ping: {e}");
                                signal.stop_with_code(2);
                                TimeoutAction::Drop
                            }
                        }
                    },
                )
                .map_err(|e| e.to_string())?;
        }
        Ok(st)
    }

    fn shutdown(handle: &LoopHandle<State>, st: &mut State, _deadline: callop_guest::Instant) {
        st.to_peer = None;
        handle.remove_all();
    }
}

callop_guest::export_plugin!(PingPong);
