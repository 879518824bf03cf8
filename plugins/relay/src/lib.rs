//! `relay`: answers messages from the embedding application.
//!
//! Args: `--reply-to <target>` (default `@app/out`), `--prefix <text>`
//! (default empty).
//!
//! Opens the channel `in` (addressed by the application as
//! `<instance-name>/in`, e.g. `relay/in`) and answers every message with
//! `prefix + message` on a sender to the reply target (by convention the
//! application's endpoint `@app/out`). When the application drops its last
//! sender to `relay/in`, the channel reports `Closed`; the relay then prints
//! `relay: closed after N messages`, removes the channel and ends.

use callop_guest::channel::{Channel, Event, Sender};
use callop_guest::{LoopHandle, Plugin, PostAction};

struct Relay;

/// Plugin state.
struct State {
    reply_to: String,
    prefix: Vec<u8>,
    /// Connected lazily, on the first message.
    sender: Option<Sender>,
    relayed: u64,
}

fn parse_args(args: &[String]) -> Result<(String, String), String> {
    let (mut reply_to, mut prefix) = ("@app/out".to_string(), String::new());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--reply-to" => reply_to = value("--reply-to")?,
            "--prefix" => prefix = value("--prefix")?,
            other => return Err(format!("unknown argument {other:?} (usage: [--reply-to @app/out] [--prefix TEXT])")),
        }
    }
    Ok((reply_to, prefix))
}

fn on_event(st: &mut State, event: Event) -> PostAction {
    match event {
        Event::Msg(bytes) => {
            if st.sender.is_none() {
                match Sender::to(&st.reply_to) {
                    Ok(tx) => st.sender = Some(tx),
                    Err(e) => {
                        callop_guest::error!("relay: cannot reach {}: {e}", st.reply_to);
                        return PostAction::Continue;
                    }
                }
            }
            let mut reply = Vec::with_capacity(st.prefix.len() + bytes.len());
            reply.extend_from_slice(&st.prefix);
            reply.extend_from_slice(&bytes);
            match st.sender.as_ref().map(|tx| tx.send(&reply)) {
                Some(Ok(())) => st.relayed += 1,
                Some(Err(e)) => callop_guest::error!("relay: reply to {} failed: {e}", st.reply_to),
                None => {}
            }
            PostAction::Continue
        }
        Event::Closed => {
            println!("relay: closed after {} messages", st.relayed);
            st.sender = None;
            PostAction::Remove
        }
    }
}

impl Plugin for Relay {
    type State = State;

    fn init(handle: &LoopHandle<State>, args: Vec<String>) -> Result<State, String> {
        let (reply_to, prefix) = parse_args(&args)?;
        handle
            .insert_source(Channel::open("in"), |event, _: &mut (), st: &mut State| on_event(st, event))
            .map_err(|e| e.to_string())?;
        Ok(State { reply_to, prefix: prefix.into_bytes(), sender: None, relayed: 0 })
    }
}

callop_guest::export_plugin!(Relay);
