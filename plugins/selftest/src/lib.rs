//! `selftest`: exercises the guest SDK against a host, for integration tests.
//!
//! No args. Checks ping coalescing, disable/enable, `Idle::cancel`,
//! `Timer::immediate`, a periodic `ToDuration` timer, `Ping::connect` to a
//! named ping, and host error reporting (bad channel name, duplicate
//! channel, unknown target). After ~50 ms it prints `selftest: ok` (exit
//! code 0, by removing every source) or `selftest: FAILED: ...` lines and
//! stops with exit code 1.

use std::time::Duration;

use callop_guest::channel::{Channel, Event, Sender};
use callop_guest::ping::{make_named_ping, make_ping, Ping};
use callop_guest::timer::{TimeoutAction, Timer};
use callop_guest::{ErrorCode, Instant, LoopHandle, Plugin, PostAction, RegistrationToken};

struct SelfTest;

/// Plugin state: observations, checked at the end.
#[derive(Default)]
struct State {
    failures: Vec<String>,
    pings_a: u32,
    pings_b: u32,
    b_enabled_at: Option<Instant>,
    b_fired_at: Option<Instant>,
    cancelled_idle_ran: bool,
    idle_ran: bool,
    immediate_fired: bool,
    periodic: u32,
    named_pings: u32,
    token_b: Option<RegistrationToken>,
}

fn check(st: &mut State, ok: bool, what: &str) {
    if !ok {
        st.failures.push(what.to_string());
    }
}

fn expect_err<T>(st: &mut State, r: callop_guest::Result<T>, code: ErrorCode, what: &str) {
    match r {
        Err(e) if e.code == code => {}
        Err(e) => st
            .failures
            .push(format!("{what}: expected {code:?}, got {e}")),
        Ok(_) => st
            .failures
            .push(format!("{what}: expected {code:?}, got Ok")),
    }
}

impl Plugin for SelfTest {
    type State = State;

    fn init(handle: &LoopHandle<State>, _args: Vec<String>) -> Result<State, String> {
        let mut st = State::default();
        let e = |e: callop_guest::Error| e.to_string();

        // Ping coalescing: two triggers before dispatch -> one event.
        let (ping_a, src_a) = make_ping().map_err(e)?;
        handle
            .insert_source(src_a, |(), _: &mut (), st: &mut State| {
                st.pings_a += 1;
                PostAction::Continue
            })
            .map_err(e)?;
        ping_a.ping();
        ping_a.ping();

        // Disabled ping: triggered now, must only fire after enable.
        let (ping_b, src_b) = make_ping().map_err(e)?;
        let token_b = handle
            .insert_source(src_b, |(), _: &mut (), st: &mut State| {
                st.pings_b += 1;
                st.b_fired_at.get_or_insert_with(Instant::now);
                PostAction::Remove
            })
            .map_err(e)?;
        handle.disable(&token_b).map_err(e)?;
        ping_b.ping();
        st.token_b = Some(token_b);
        let h = *handle;
        handle
            .insert_source(
                Timer::from_duration(Duration::from_millis(15)),
                move |_, _: &mut (), st: &mut State| {
                    st.b_enabled_at = Some(Instant::now());
                    let t = st.token_b.unwrap();
                    if let Err(err) = h.enable(&t) {
                        st.failures.push(format!("enable: {err}"));
                    }
                    TimeoutAction::Drop
                },
            )
            .map_err(e)?;

        // Named ping, triggered through a handle obtained by name.
        let (_own, src_n) = make_named_ping("wake").map_err(e)?;
        handle
            .insert_source(src_n, |(), _: &mut (), st: &mut State| {
                st.named_pings += 1;
                PostAction::Continue
            })
            .map_err(e)?;
        match Ping::connect("wake") {
            Ok(p) => p.ping(),
            Err(err) => st.failures.push(format!("Ping::connect(wake): {err}")),
        }

        // Idles: one cancelled, one kept.
        let idle = handle.insert_idle(|st: &mut State| st.cancelled_idle_ran = true);
        idle.cancel();
        handle.insert_idle(|st: &mut State| st.idle_ran = true);

        // Immediate timer, and a periodic one re-armed 3 times.
        handle
            .insert_source(Timer::immediate(), |_, _: &mut (), st: &mut State| {
                st.immediate_fired = true;
                TimeoutAction::Drop
            })
            .map_err(e)?;
        handle
            .insert_source(
                Timer::from_duration(Duration::from_millis(1)),
                |_, _: &mut (), st: &mut State| {
                    st.periodic += 1;
                    if st.periodic < 3 {
                        TimeoutAction::ToDuration(Duration::from_millis(1))
                    } else {
                        TimeoutAction::Drop
                    }
                },
            )
            .map_err(e)?;

        // Host errors (never traps).
        let r = handle.insert_source(Channel::open("bad/name"), |_, _: &mut (), _: &mut State| {
            PostAction::Remove
        });
        expect_err(
            &mut st,
            r,
            ErrorCode::InvalidArgument,
            "open_channel(bad/name)",
        );
        let echo = |ev: Event, _: &mut (), _: &mut State| match ev {
            Event::Msg(_) => PostAction::Continue,
            Event::Closed => PostAction::Remove,
        };
        handle
            .insert_source(Channel::open("dup"), echo)
            .map_err(e)?;
        let r = handle.insert_source(Channel::open("dup"), echo);
        expect_err(
            &mut st,
            r,
            ErrorCode::AlreadyExists,
            "open_channel(dup) twice",
        );
        expect_err(
            &mut st,
            Sender::to("no-such-plugin-xyz/in"),
            ErrorCode::NotFound,
            "Sender::to(unknown)",
        );

        // Verdict.
        let h = *handle;
        handle
            .insert_source(
                Timer::from_duration(Duration::from_millis(50)),
                move |_, _: &mut (), st: &mut State| {
                    let s = &mut *st;
                    let pa = s.pings_a;
                    check(
                        s,
                        pa == 1,
                        &format!("ping coalescing: {pa} events for 2 triggers"),
                    );
                    let pb = s.pings_b;
                    check(
                        s,
                        pb == 1,
                        &format!("disabled ping: {pb} events (want 1 after enable)"),
                    );
                    let order =
                        matches!((s.b_enabled_at, s.b_fired_at), (Some(en), Some(f)) if f >= en);
                    check(s, order, "disabled ping fired before enable");
                    let c = s.cancelled_idle_ran;
                    check(s, !c, "cancelled idle ran");
                    let i = s.idle_ran;
                    check(s, i, "idle did not run");
                    let im = s.immediate_fired;
                    check(s, im, "immediate timer did not fire");
                    let p = s.periodic;
                    check(
                        s,
                        p == 3,
                        &format!("periodic timer fired {p} times (want 3)"),
                    );
                    let n = s.named_pings;
                    check(s, n == 1, &format!("named ping: {n} events (want 1)"));
                    if s.failures.is_empty() {
                        println!("selftest: ok");
                        h.remove_all();
                    } else {
                        for f in &s.failures {
                            println!("selftest: FAILED: {f}");
                        }
                        h.get_signal().stop_with_code(1);
                    }
                    TimeoutAction::Drop
                },
            )
            .map_err(e)?;
        Ok(st)
    }
}

callop_guest::export_plugin!(SelfTest);
