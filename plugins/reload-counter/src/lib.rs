//! `reload-counter`: the guest side of the reload tests and bench — a
//! message counter that can be reloaded mid-stream, and the flood that
//! feeds it.
//!
//! Roles (`--role`, default `count`):
//!
//! - `count`: opens channel `in`. Each message is a sequence number (8
//!   bytes, little endian); it counts them and checks that each is the one
//!   after the previous (`errors` counts the others: a gap, a duplicate, a
//!   reorder). An empty message ends the stream: it prints
//!   `counter: done gen=G count=C first=F next=N errors=E` and stops with
//!   code 0. Its `shutdown` prints `counter: shutdown gen=G count=C next=N`.
//!   `gen` is 1 for a first start and one more for each reload that handed
//!   the state over. Options:
//!   * `--state`: its snapshot carries `count`, `first`, `next`, `errors`
//!     and `gen` to the new version (else the new one starts at 0 and
//!     takes the first number it gets as `first`);
//!   * `--notify TARGET`: also sends every printed line, and one
//!     `counter: progress gen=G count=C` per `--progress K` messages
//!     (default 10000), to TARGET (e.g. `@app/counter`);
//!   * `--trap-if-restored`: traps in `init` when it got a snapshot — a
//!     new version broken in `init` (the reload must fail and the old
//!     version keep counting);
//!   * `--ping NAME`: also makes the named ping NAME; on each ping event
//!     it says `counter: ping generation=G pings=P` (G is
//!     `host-loop.generation`, P counts this instance's ping events);
//!   * `--snapshot-bytes N`: pads its snapshot with zeros to N bytes (if
//!     N is more than 40);
//!   * `--trap-in-snapshot`: traps in `snapshot` (an old version that
//!     fails when asked for its state);
//!   * `--trap-after-ms N`: in a later run (`host-loop.generation` at
//!     least 1: reloaded or restarted), says `counter: trap generation=G`
//!     and traps in a timer N ms after `init` (a new version that fails
//!     shortly after its start); a first run does not.
//!
//!   Its `restore` refuses a snapshot that is not one of its own (at least
//!   40 bytes; the first 40 are the state).
//! - `flood`: sends `--count N` sequence numbers (0..N) and then one empty
//!   message to `--to TARGET` (default `counter/in`), `--per-tick K`
//!   (default 1000) every `--every MS` milliseconds (default 1); a full
//!   queue (`limit-exceeded`) is back-pressure: the rest waits for the next
//!   tick. Prints `flood: sent N` and finishes. With `--state` a reload
//!   hands over how many were sent (the new version goes on from there).
//! - `pinger`: connects to the named ping `--to TARGET` (default
//!   `counter/p`) and opens channel `in`; it triggers the ping once per
//!   message it gets, and stops with code 0 on an empty message.

use std::time::Duration;

use callop_guest::channel::{Channel, Event, Sender};
use callop_guest::ping::{make_named_ping, Ping};
use callop_guest::timer::{TimeoutAction, Timer};
use callop_guest::{ErrorCode, LoopHandle, Plugin, PostAction};

struct Counter;

/// Plugin state.
pub struct State {
    count: u64,
    first: Option<u64>,
    next: Option<u64>,
    errors: u64,
    gen: u64,
    keep_state: bool,
    progress: u64,
    notify: Option<Sender>,
    // flood
    to: Option<Sender>,
    total: u64,
    per_tick: u64,
    // `--ping`, `--snapshot-bytes`, `--trap-in-snapshot`
    pings: u64,
    snapshot_bytes: usize,
    trap_in_snapshot: bool,
}

/// Bytes of a snapshot's state: count, first (u64::MAX: none), next,
/// errors, gen (any padding follows).
const SNAPSHOT_LEN: usize = 40;

impl State {
    fn say(&self, line: String) {
        println!("{line}");
        if let Some(n) = &self.notify {
            let _ = n.send(line);
        }
    }

    fn on_message(&mut self, data: &[u8]) -> bool {
        let Ok(seq) = <[u8; 8]>::try_from(data).map(u64::from_le_bytes) else {
            self.say(format!(
                "counter: done gen={} count={} first={} next={} errors={}",
                self.gen,
                self.count,
                self.first.map_or(-1, |f| f as i64),
                self.next.unwrap_or(0),
                self.errors
            ));
            return true;
        };
        if self.next.is_some_and(|n| n != seq) {
            self.errors += 1;
        }
        self.first.get_or_insert(seq);
        self.next = Some(seq + 1);
        self.count += 1;
        if self.progress > 0 && self.count.is_multiple_of(self.progress) {
            if let Some(n) = &self.notify {
                let _ = n.send(format!(
                    "counter: progress gen={} count={}",
                    self.gen, self.count
                ));
            }
        }
        false
    }
}

fn decode(b: &[u8]) -> Result<[u64; 5], String> {
    if b.len() < SNAPSHOT_LEN {
        return Err(format!(
            "a snapshot is at least {SNAPSHOT_LEN} bytes, this one {}",
            b.len()
        ));
    }
    let mut v = [0u64; 5];
    for (i, c) in b[..SNAPSHOT_LEN].chunks_exact(8).enumerate() {
        v[i] = u64::from_le_bytes(c.try_into().expect("8 bytes"));
    }
    Ok(v)
}

impl Plugin for Counter {
    type State = State;

    fn init(handle: &LoopHandle<State>, args: Vec<String>) -> Result<State, String> {
        let mut st = State {
            count: 0,
            first: None,
            next: None,
            errors: 0,
            gen: 1,
            keep_state: false,
            progress: 10_000,
            notify: None,
            to: None,
            total: 0,
            per_tick: 1000,
            pings: 0,
            snapshot_bytes: 0,
            trap_in_snapshot: false,
        };
        let mut role = "count".to_string();
        let mut trap_if_restored = false;
        let mut to = None;
        let mut every = 1;
        let mut ping = None;
        let mut trap_after = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut val = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{arg} needs a value"))
            };
            let num = |v: String| v.parse::<u64>().map_err(|e| format!("bad {arg}: {e}"));
            match arg.as_str() {
                "--role" => role = val()?,
                "--state" => st.keep_state = true,
                "--notify" => {
                    st.notify = Some(Sender::to(&val()?).map_err(|e| e.to_string())?);
                }
                "--progress" => st.progress = num(val()?)?,
                "--trap-if-restored" => trap_if_restored = true,
                "--to" => to = Some(val()?),
                "--count" => st.total = num(val()?)?,
                "--per-tick" => st.per_tick = num(val()?)?.max(1),
                "--every" => every = num(val()?)?,
                "--ping" => ping = Some(val()?),
                "--snapshot-bytes" => {
                    st.snapshot_bytes = usize::try_from(num(val()?)?).map_err(|e| e.to_string())?;
                }
                "--trap-in-snapshot" => st.trap_in_snapshot = true,
                "--trap-after-ms" => trap_after = Some(num(val()?)?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        match role.as_str() {
            "count" => {
                if let Some(b) = callop_guest::restored() {
                    if trap_if_restored {
                        // A new version broken in `init`.
                        core::arch::wasm32::unreachable();
                    }
                    let [count, first, next, errors, gen] = decode(&b)?;
                    st.count = count;
                    st.first = (first != u64::MAX).then_some(first);
                    st.next = (st.count > 0).then_some(next);
                    st.errors = errors;
                    st.gen = gen + 1;
                }
                handle
                    .insert_source(Channel::open("in"), |ev, _: &mut (), st: &mut State| {
                        if let Event::Msg(m) = ev {
                            if st.on_message(&m) {
                                callop_guest::stop(0);
                            }
                        }
                        PostAction::Continue
                    })
                    .map_err(|e| e.to_string())?;
                if let Some(name) = ping {
                    let (ping, source) = make_named_ping(&name).map_err(|e| e.to_string())?;
                    handle
                        .insert_source(source, move |(), _: &mut (), st: &mut State| {
                            let _keep = &ping;
                            st.pings += 1;
                            st.say(format!(
                                "counter: ping generation={} pings={}",
                                callop_guest::generation(),
                                st.pings
                            ));
                            PostAction::Continue
                        })
                        .map_err(|e| e.to_string())?;
                }
                if let Some(ms) = trap_after.filter(|_| callop_guest::generation() > 0) {
                    handle
                        .insert_source(
                            Timer::from_duration(Duration::from_millis(ms)),
                            |_, _: &mut (), st: &mut State| {
                                st.say(format!(
                                    "counter: trap generation={}",
                                    callop_guest::generation()
                                ));
                                core::arch::wasm32::unreachable()
                            },
                        )
                        .map_err(|e| e.to_string())?;
                }
            }
            "pinger" => {
                let target = to.as_deref().unwrap_or("counter/p");
                let ping = Ping::connect(target).map_err(|e| e.to_string())?;
                handle
                    .insert_source(Channel::open("in"), move |ev, _: &mut (), _: &mut State| {
                        if let Event::Msg(m) = ev {
                            if m.is_empty() {
                                callop_guest::stop(0);
                            } else {
                                ping.ping();
                            }
                        }
                        PostAction::Continue
                    })
                    .map_err(|e| e.to_string())?;
            }
            "flood" => {
                if let Some(b) = callop_guest::restored() {
                    // `--state`: a reloaded flood goes on where it was.
                    st.count = decode(&b)?[0];
                }
                st.to = Some(
                    Sender::to(to.as_deref().unwrap_or("counter/in")).map_err(|e| e.to_string())?,
                );
                let every = Duration::from_millis(every);
                handle
                    .insert_source(
                        Timer::from_duration(every),
                        move |deadline, _: &mut (), st: &mut State| {
                            let Some(tx) = st.to.as_ref() else {
                                return TimeoutAction::Drop;
                            };
                            for _ in 0..st.per_tick {
                                let r = if st.count < st.total {
                                    tx.send(st.count.to_le_bytes())
                                } else {
                                    tx.send([])
                                };
                                match r {
                                    Ok(()) if st.count < st.total => st.count += 1,
                                    Ok(()) => {
                                        println!("flood: sent {}", st.count);
                                        st.to = None;
                                        return TimeoutAction::Drop;
                                    }
                                    Err(e) if e.code == ErrorCode::LimitExceeded => break,
                                    Err(e) => {
                                        println!("flood: failed after {}: {e}", st.count);
                                        st.to = None;
                                        return TimeoutAction::Drop;
                                    }
                                }
                            }
                            TimeoutAction::ToInstant(deadline + every)
                        },
                    )
                    .map_err(|e| e.to_string())?;
            }
            other => return Err(format!("unknown role {other:?} (count, flood, pinger)")),
        }
        Ok(st)
    }

    fn shutdown(handle: &LoopHandle<State>, st: &mut State, _deadline: callop_guest::Instant) {
        if st.to.is_none() && st.total == 0 {
            st.say(format!(
                "counter: shutdown gen={} count={} next={}",
                st.gen,
                st.count,
                st.next.unwrap_or(0)
            ));
        }
        handle.remove_all();
    }

    fn snapshot(st: &mut State) -> Option<Vec<u8>> {
        if st.trap_in_snapshot {
            core::arch::wasm32::unreachable();
        }
        if !st.keep_state {
            return None;
        }
        let mut b = Vec::with_capacity(SNAPSHOT_LEN);
        for v in [
            st.count,
            st.first.unwrap_or(u64::MAX),
            st.next.unwrap_or(0),
            st.errors,
            st.gen,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.resize(st.snapshot_bytes.max(SNAPSHOT_LEN), 0);
        Some(b)
    }

    fn restore(snapshot: &[u8]) -> Result<(), String> {
        decode(snapshot).map(|_| ())
    }
}

callop_guest::export_plugin!(Counter);
