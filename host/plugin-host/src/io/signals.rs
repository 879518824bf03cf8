//! Signals of `io.add-signals`: the WIT names of the unix signals and the
//! capability check of a subscription.

use crate::bindings::callop::plugin::types::{Error, ErrorCode, Signal as WitSignal};
use crate::capabilities::Capabilities;
use crate::state::wit_err;
use callop::signals::Signal;

/// The unix signal of a WIT signal.
fn to_signal(s: WitSignal) -> Signal {
    match s {
        WitSignal::Hup => Signal::SIGHUP,
        WitSignal::Int => Signal::SIGINT,
        WitSignal::Quit => Signal::SIGQUIT,
        WitSignal::Usr1 => Signal::SIGUSR1,
        WitSignal::Usr2 => Signal::SIGUSR2,
        WitSignal::Pipe => Signal::SIGPIPE,
        WitSignal::Alrm => Signal::SIGALRM,
        WitSignal::Term => Signal::SIGTERM,
        WitSignal::Chld => Signal::SIGCHLD,
        WitSignal::Cont => Signal::SIGCONT,
        WitSignal::Tstp => Signal::SIGTSTP,
        WitSignal::Ttin => Signal::SIGTTIN,
        WitSignal::Ttou => Signal::SIGTTOU,
        WitSignal::Winch => Signal::SIGWINCH,
    }
}

/// The WIT signal of a unix signal, if the WIT names it.
pub(crate) fn from_signal(s: Signal) -> Option<WitSignal> {
    [
        WitSignal::Hup,
        WitSignal::Int,
        WitSignal::Quit,
        WitSignal::Usr1,
        WitSignal::Usr2,
        WitSignal::Pipe,
        WitSignal::Alrm,
        WitSignal::Term,
        WitSignal::Chld,
        WitSignal::Cont,
        WitSignal::Tstp,
        WitSignal::Ttin,
        WitSignal::Ttou,
        WitSignal::Winch,
    ]
    .into_iter()
    .find(|w| to_signal(*w) == s)
}

/// The signals of a subscription, each once, if all are granted:
/// `invalid-argument` for none, `not-permitted` naming the first refused.
pub(super) fn granted(caps: &Capabilities, signals: Vec<WitSignal>) -> Result<Vec<Signal>, Error> {
    if signals.is_empty() {
        return Err(wit_err(ErrorCode::InvalidArgument, "no signal given"));
    }
    let mut list = Vec::new();
    for s in signals {
        let sig = to_signal(s);
        caps.check_signal(sig)
            .map_err(|m| wit_err(ErrorCode::NotPermitted, m))?;
        if !list.contains(&sig) {
            list.push(sig);
        }
    }
    Ok(list)
}
