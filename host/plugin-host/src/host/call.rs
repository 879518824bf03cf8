//! The funnel every call into a guest export goes through: `init` (first
//! load, restart and reload), `dispatch` (the flush), `shutdown`, and the
//! optional `state` export's `snapshot` and `restore` (a reload, see
//! `reload`).
//!
//! [`HostInner::call_guest`] arms the deadline of that kind of call, makes
//! the call and classifies what happened once, into an [`Outcome`];
//! [`HostInner::settle`] then turns every outcome into what follows for the
//! plugin, the same way for all four callers (the flush first applies the
//! `dispatch` results of an outcome that returned).
//!
//! # The rules
//!
//! * A WASI `exit(code)` (e.g. `std::process::exit`) during any export,
//!   `init` included, counts as `host-loop.stop(code)`: the plugin ends
//!   with [`ExitReason::Stopped`]`(code)` and it is not a failure (no
//!   restart). In `init` this means the load succeeded and the plugin
//!   stopped at once — on a first load (`Host::load` returns its id) as on a
//!   restart, and exactly like `stop(code)` in `init`. `exit(0)` is
//!   `Stopped(0)` (code 0, a success, like `Finished`).
//! * `init` returning an error, and a fault (trap, panic, deadline, out of
//!   memory, stack overflow, host error) in any export, are failures. In
//!   `init` on a first load the caller gets the error
//!   ([`LoadError::Init`] / [`LoadError::Trap`], from
//!   [`Failure::load_error`]). A restart has no caller, and a supervised
//!   load (`Host::load_many_supervised`) keeps it from the caller: both
//!   record an exit [`ExitReason::Trapped`] whose cause is the first line
//!   of that same error (`plugin init failed: …`, `plugin trapped in init: KIND: …`;
//!   the fault itself, with its backtrace, in `PluginExit::fault`), and the
//!   restart policy applies to it like to any failure.
//! * An export that returned applies the guest's queued operations; the
//!   plugin then ends if it called `stop(code)` or owns no source any more.
//! * A call interrupted by the host's alarm ([`crate::alarm`]) is not a
//!   failure: past the shutdown deadline the plugin ends with
//!   [`ExitReason::ShutdownTimeout`], on a forced exit with
//!   [`ExitReason::Unloaded`].

use std::rc::Rc;

use super::{After, ExitReason, HostInner, Live, PluginRt};
use crate::alarm::AlarmCause;
use crate::bindings::callop::plugin::types::{Event, EventResult};
use crate::error::LoadError;
use crate::fault::Fault;
use crate::truncate::{MAX_GUEST_TEXT, truncate};

/// One call of a guest export, with its arguments.
#[derive(Debug, Clone, Copy)]
pub(super) enum Export<'a> {
    /// `init(args)`, under the init timeout.
    Init {
        /// The plugin's arguments.
        args: &'a [String],
    },
    /// `dispatch(events)`, under the callback timeout.
    Dispatch {
        /// One batch (at most `Limits::max_batch` events).
        events: &'a [Event],
    },
    /// `shutdown(deadline)`, under the callback timeout.
    Shutdown {
        /// The shutdown deadline on the plugins' clock.
        deadline_ns: u64,
    },
    /// `state.snapshot()`, under the callback timeout; an instance without
    /// the `state` export returns `none` without a call.
    Snapshot,
    /// `state.restore(snapshot)` before the new instance's `init`, under
    /// the init timeout; `err(message)` is a [`Failure::Refused`].
    Restore {
        /// The previous instance's snapshot.
        snapshot: &'a [u8],
    },
}

impl Export<'_> {
    fn is_init(&self) -> bool {
        matches!(self, Export::Init { .. })
    }

    /// Whether the call runs under the init timeout (start-up code).
    fn init_timeout(&self) -> bool {
        matches!(self, Export::Init { .. } | Export::Restore { .. })
    }

    /// The export's WIT name (for the call's span).
    fn name(&self) -> &'static str {
        match self {
            Export::Init { .. } => "init",
            Export::Dispatch { .. } => "dispatch",
            Export::Shutdown { .. } => "shutdown",
            Export::Snapshot => "snapshot",
            Export::Restore { .. } => "restore",
        }
    }
}

/// What a guest export call came to, classified once.
#[derive(Debug)]
pub(super) enum Outcome {
    /// It returned (`dispatch`: with its results; empty otherwise). Its
    /// queued operations are not applied yet.
    Returned(Vec<EventResult>),
    /// `snapshot` returned (`None`: nothing to hand over). Its queued
    /// operations are not applied yet.
    Snapshot(Option<Vec<u8>>),
    /// The guest called WASI `exit(code)`.
    Exited(i32),
    /// The host's alarm stopped it (see [`crate::alarm`]): the shutdown
    /// deadline passed, or a forced exit was asked for.
    Interrupted(AlarmCause),
    /// It failed.
    Failed(Failure),
}

/// How a guest export call failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// `init` returned `Err(message)` (cut to
    /// [`MAX_GUEST_TEXT`](crate::truncate::MAX_GUEST_TEXT)).
    Refused(String),
    /// A trap, guest panic, deadline, out of memory, stack overflow or host
    /// error, classified.
    Fault {
        /// The classified fault.
        fault: Fault,
        /// Whether it happened in `init`.
        in_init: bool,
    },
}

impl Failure {
    /// The error a first load reports for this failure of `init`.
    pub(super) fn load_error(&self) -> LoadError {
        match self {
            Failure::Refused(m) => LoadError::Init(m.clone()),
            Failure::Fault { fault, .. } => LoadError::Trap(fault.to_string()),
        }
    }

    /// The one-line cause of the exit this failure ends a plugin with: for
    /// `init`, the first line of [`Failure::load_error`].
    fn cause(&self) -> String {
        match self {
            Failure::Fault {
                fault,
                in_init: false,
            } => one_line(fault),
            Failure::Fault {
                fault,
                in_init: true,
            } => LoadError::Trap(one_line(fault)).to_string(),
            Failure::Refused(m) => LoadError::Init(m.clone()).to_string(),
        }
    }

    /// The fault, if the failure is one (kept for the exit report).
    fn into_fault(self) -> Option<Fault> {
        match self {
            Failure::Refused(_) => None,
            Failure::Fault { fault, .. } => Some(fault),
        }
    }
}

/// What a guest export returned (before it is classified).
enum Returned {
    /// `init`, `dispatch`, `shutdown`, `restore`: the dispatch results (empty
    /// for the others).
    Results(Vec<EventResult>),
    /// `snapshot`.
    Snapshot(Option<Vec<u8>>),
}

/// Whether a failed call was stopped by an epoch interrupt or a bounded
/// blocking call's alarm.
fn interrupted(e: &wasmtime::Error) -> bool {
    e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt)
        || e.downcast_ref::<crate::wasi_blocking::Interrupted>()
            .is_some()
}

/// A fault's kind and message, without the backtrace.
fn one_line(f: &Fault) -> String {
    format!("{}: {}", f.kind, f.message)
}

impl<'l, Data: 'l> HostInner<'l, Data> {
    /// Calls `export` of the instance `live`: arms the deadline of that kind
    /// of call, makes the call and classifies the outcome. Every call into
    /// a guest export goes through here.
    pub(super) fn call_guest(&self, live: &mut Live, export: Export<'_>) -> Outcome {
        // One span per guest call, with the plugin's name, when a subscriber
        // wants TRACE. The level check first: one atomic load, where building
        // the disabled span still costs about 230 instructions per call (the
        // `log` feature the loop enables for calloop's compatibility).
        let _span = tracing::level_enabled!(tracing::Level::TRACE).then(|| {
            tracing::trace_span!(
                "guest_call",
                plugin = &*live.store.data().name,
                export = export.name()
            )
            .entered()
        });
        live.counters.count_call(match export {
            Export::Dispatch { events } => Some(events),
            _ => None,
        });
        self.arm(live, export.init_timeout());
        let host_before = crate::stats::HostCall::totals();
        let guest = &live.guest;
        // A panic in a host function the guest called (an application's,
        // see `app_api`) unwinds out of the call: it is that plugin's fault,
        // and its store, possibly inconsistent now, is dropped when it ends.
        let store = &mut live.store;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match export {
            Export::Snapshot => guest
                .snapshot(&mut *store)
                .map(|s| Ok(Returned::Snapshot(s))),
            Export::Restore { snapshot } => guest
                .restore(&mut *store, snapshot)
                .map(|r| r.map(|()| Returned::Results(Vec::new()))),
            Export::Init { args } => guest
                .init(&mut *store, args)
                .map(|r| r.map(|()| Returned::Results(Vec::new()))),
            Export::Dispatch { events } => guest
                .dispatch(&mut *store, events)
                .map(|r| Ok(Returned::Results(r))),
            Export::Shutdown { deadline_ns } => guest
                .shutdown(&mut *store, deadline_ns)
                .map(|()| Ok(Returned::Results(Vec::new()))),
        }));
        let r = match r {
            Ok(r) => r,
            Err(payload) => {
                live.counters.count_fault(crate::fault::FaultKind::Host);
                return Outcome::Failed(Failure::Fault {
                    fault: Fault {
                        kind: crate::fault::FaultKind::Host,
                        message: truncate(
                            format!(
                                "a host function panicked: {}",
                                crate::app_api::panic_text(&*payload)
                            ),
                            MAX_GUEST_TEXT,
                        ),
                        backtrace: None,
                    },
                    in_init: export.is_init(),
                });
            }
        };
        live.counters
            .count_host(host_before, crate::stats::HostCall::totals());
        // Summaries of the guest's rate-limited log lines are due?
        live.store.data_mut().log_limit.tick();
        match r {
            Ok(Ok(Returned::Results(results))) => Outcome::Returned(results),
            Ok(Ok(Returned::Snapshot(snapshot))) => Outcome::Snapshot(snapshot),
            // The guest's text, cut to a bound: it is printed and kept.
            Ok(Err(message)) => {
                live.counters.count_init_error();
                Outcome::Failed(Failure::Refused(truncate(message, MAX_GUEST_TEXT)))
            }
            Err(e) => self.failed(live, &export, e),
        }
    }

    /// Classifies a call that returned an error (an exit, the alarm, or a
    /// fault).
    fn failed(&self, live: &mut Live, export: &Export<'_>, e: wasmtime::Error) -> Outcome {
        match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(x) => Outcome::Exited(x.0),
            None if self.alarm.due() && interrupted(&e) => {
                Outcome::Interrupted(self.alarm.cause().unwrap_or(AlarmCause::Forced))
            }
            None => {
                let fault = self.classify(live, &e);
                live.counters.count_fault(fault.kind);
                Outcome::Failed(Failure::Fault {
                    fault,
                    in_init: export.is_init(),
                })
            }
        }
    }

    /// What follows an export call of `p` (instance `live`), by the rules
    /// of this module; a failure's fault is kept in `p.fault` for the exit
    /// report.
    pub(super) fn settle(self: &Rc<Self>, p: &Rc<PluginRt>, live: &mut Live, o: Outcome) -> After {
        match o {
            Outcome::Returned(_) | Outcome::Snapshot(_) => {
                self.apply_ops(p, live);
                self.check_after(live)
            }
            Outcome::Exited(code) => After::End(ExitReason::Stopped(code)),
            Outcome::Interrupted(AlarmCause::ShutdownDeadline) => {
                After::End(ExitReason::ShutdownTimeout)
            }
            Outcome::Interrupted(AlarmCause::Forced) => After::End(ExitReason::Unloaded),
            Outcome::Failed(f) => {
                let reason = ExitReason::Trapped(f.cause());
                *p.fault.borrow_mut() = f.into_fault();
                After::End(reason)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultKind;

    fn fault() -> Fault {
        Fault {
            kind: FaultKind::Trap,
            message: "wasm trap: unreachable".into(),
            backtrace: Some("0: f\n1: g".into()),
        }
    }

    #[test]
    fn an_init_failure_is_the_first_line_of_the_load_error() {
        for f in [
            Failure::Refused("bad --mode".into()),
            Failure::Fault {
                fault: fault(),
                in_init: true,
            },
        ] {
            let load = f.load_error().to_string();
            assert_eq!(f.cause(), load.lines().next().unwrap(), "{f:?}");
        }
        assert_eq!(
            Failure::Fault {
                fault: fault(),
                in_init: true
            }
            .cause(),
            "plugin trapped in init: trap: wasm trap: unreachable"
        );
    }

    #[test]
    fn a_fault_outside_init_is_its_kind_and_message() {
        let f = Failure::Fault {
            fault: fault(),
            in_init: false,
        };
        assert_eq!(f.cause(), "trap: wasm trap: unreachable");
        assert_eq!(f.into_fault(), Some(fault()));
        assert_eq!(Failure::Refused("x".into()).into_fault(), None);
    }
}
