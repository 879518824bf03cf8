//! `relay`: answers messages from the embedding application.
//!
//! Args: `--reply-to <target>` (default `@app/out`), `--prefix <text>`
//! (default empty), `--after <n> --then <disable|remove|self-remove>`: once
//! `n` messages were relayed, the channel callback returns
//! `PostAction::Disable` or `PostAction::Remove`, or removes its own source
//! through the loop handle (the host tests use these to check what happens
//! to the rest of a packed batch). `--shared`: the channel is opened with
//! `Channel::open_shared` (messages arrive as `channel::Message`s, views into
//! their batch) instead of `Channel::open` (a `Vec<u8>` each); the replies
//! are the same.
//!
//! Opens the channel `in` (addressed by the application as
//! `<instance-name>/in`, e.g. `relay/in`) and answers every message with
//! `prefix + message` on a sender to the reply target (by convention the
//! application's endpoint `@app/out`). When the application drops its last
//! sender to `relay/in`, the channel reports `Closed`; the relay then prints
//! `relay: closed after N messages`, removes the channel and ends.

use callop_guest::channel::{Channel, Event, Sender};
use callop_guest::{LoopHandle, Plugin, PostAction, RegistrationToken};

struct Relay;

/// Plugin state.
struct State {
    reply_to: String,
    prefix: Vec<u8>,
    /// Connected lazily, on the first message.
    sender: Option<Sender>,
    relayed: u64,
    /// `--after N --then WHAT`.
    then: Option<(u64, Then)>,
    /// The channel's token (for `--then self-remove`).
    token: Option<RegistrationToken>,
}

/// What the callback does after `--after N` messages.
#[derive(Clone, Copy)]
enum Then {
    Disable,
    Remove,
    SelfRemove,
}

struct Args {
    reply_to: String,
    prefix: String,
    then: Option<(u64, Then)>,
    shared: bool,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        reply_to: "@app/out".to_string(),
        prefix: String::new(),
        then: None,
        shared: false,
    };
    let (mut after, mut then) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--reply-to" => a.reply_to = value("--reply-to")?,
            "--prefix" => a.prefix = value("--prefix")?,
            "--shared" => a.shared = true,
            "--after" => {
                after = Some(
                    value("--after")?
                        .parse::<u64>()
                        .map_err(|e| format!("bad --after: {e}"))?,
                )
            }
            "--then" => {
                then = Some(match value("--then")?.as_str() {
                    "disable" => Then::Disable,
                    "remove" => Then::Remove,
                    "self-remove" => Then::SelfRemove,
                    other => {
                        return Err(format!(
                            "bad --then {other:?} (disable, remove or self-remove)"
                        ))
                    }
                })
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (usage: [--reply-to @app/out] [--prefix TEXT] [--after N --then WHAT] [--shared])"
                ));
            }
        }
    }
    a.then = match (after, then) {
        (Some(n), Some(t)) => Some((n, t)),
        (None, None) => None,
        _ => return Err("--after and --then go together".into()),
    };
    Ok(a)
}

fn on_event<M: AsRef<[u8]>>(
    handle: &LoopHandle<State>,
    st: &mut State,
    event: Event<M>,
) -> PostAction {
    match event {
        Event::Msg(bytes) => {
            let bytes = bytes.as_ref();
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
            reply.extend_from_slice(bytes);
            match st.sender.as_ref().map(|tx| tx.send(&reply)) {
                Some(Ok(())) => st.relayed += 1,
                Some(Err(e)) => callop_guest::error!("relay: reply to {} failed: {e}", st.reply_to),
                None => {}
            }
            match st.then {
                Some((n, then)) if st.relayed == n => match then {
                    Then::Disable => PostAction::Disable,
                    Then::Remove => PostAction::Remove,
                    Then::SelfRemove => {
                        if let Some(t) = st.token.take() {
                            handle.remove(t);
                        }
                        PostAction::Continue
                    }
                },
                _ => PostAction::Continue,
            }
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
        let a = parse_args(&args)?;
        let h = *handle;
        let token = if a.shared {
            handle.insert_source(
                Channel::open_shared("in"),
                move |event, _: &mut (), st: &mut State| on_event(&h, st, event),
            )
        } else {
            handle.insert_source(
                Channel::open("in"),
                move |event, _: &mut (), st: &mut State| on_event(&h, st, event),
            )
        }
        .map_err(|e| e.to_string())?;
        Ok(State {
            reply_to: a.reply_to,
            prefix: a.prefix.into_bytes(),
            sender: None,
            relayed: 0,
            then: a.then,
            token: Some(token),
        })
    }
}

callop_guest::export_plugin!(Relay);
