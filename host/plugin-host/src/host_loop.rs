//! Host side of WIT interface `callop:plugin/host-loop`.
//!
//! Every call is validated at once against the instance's [`PluginState`];
//! source-changing calls only *queue* an [`Op`] that the runtime applies to
//! the real event loop after the guest's export call has returned, so the
//! guest is never re-entered and the loop is never touched from inside wasm.
//! Bad guest input (unknown ids, ids of another kind, malformed names, ...)
//! always yields an `error` result, never a trap or a host panic.

use wasmtime::component::Resource;

use super::bindings::callop::plugin::host_loop::{Host, HostPing, HostSender};
use super::bindings::callop::plugin::types::{Error, ErrorCode, Instant, LogLevel, SourceId};
use super::host_memory::OverBudget;
use super::log_limit;
use super::mailbox::{Mailbox, MailboxSource, SendError};
use super::policy::{self, Owner};
use super::sources::{Change, Source};
use super::state::{Op, PingHandle, PluginState, SenderHandle, wit_err};
use super::types::tracing_level;

fn bad_name(e: policy::NameError) -> Error {
    wit_err(ErrorCode::InvalidArgument, e.0)
}

fn over_budget(e: OverBudget) -> Error {
    wit_err(ErrorCode::LimitExceeded, e.to_string())
}

impl PluginState {
    fn push_handle<T: Send + 'static>(&mut self, v: T) -> Result<Resource<T>, Error> {
        self.check_handles()?;
        let r = self
            .table
            .push(v)
            .map_err(|e| wit_err(ErrorCode::Internal, format!("resource table: {e}")))?;
        self.handles += 1;
        Ok(r)
    }
}

impl Host for PluginState {
    fn now(&mut self) -> Instant {
        let _t = crate::stats::HostCall::start();
        self.shared.now_ns()
    }

    fn log(&mut self, level: LogLevel, message: String) {
        let _t = crate::stats::HostCall::start();
        // Rate-limited per plugin and cut to a bound (see `log_limit`).
        let level = tracing_level(level);
        if log_limit::enabled(level) && self.log_limit.admit(level, &message) {
            log_limit::emit(level, &self.name, &message);
        }
    }

    fn instance_name(&mut self) -> String {
        let _t = crate::stats::HostCall::start();
        self.name.to_string()
    }

    fn generation(&mut self) -> u32 {
        self.generation
    }

    fn stop(&mut self, exit_code: i32) {
        let _t = crate::stats::HostCall::start();
        // The first stop wins.
        self.stop.get_or_insert(exit_code);
    }

    fn add_timer(&mut self, deadline: Instant) -> Result<SourceId, Error> {
        let _t = crate::stats::HostCall::start();
        let Some(at) = self.shared.ns_to_instant(deadline) else {
            return Err(wit_err(
                ErrorCode::InvalidArgument,
                format!("deadline {deadline} overflows the host clock"),
            ));
        };
        let id = self.sources.add(Source::Timer { deadline: at })?;
        self.ops.push(Op::Add(id));
        Ok(id)
    }

    fn add_idle(&mut self) -> Result<SourceId, Error> {
        let _t = crate::stats::HostCall::start();
        let id = self.sources.add(Source::Idle)?;
        self.ops.push(Op::Add(id));
        Ok(id)
    }

    fn make_ping(
        &mut self,
        name: Option<String>,
    ) -> Result<(SourceId, Resource<PingHandle>), Error> {
        let _t = crate::stats::HostCall::start();
        let full_name = match &name {
            Some(n) => {
                policy::check_name(n).map_err(bad_name)?;
                let full = format!("{}/{n}", self.name);
                if self.shared.registry().pings.contains_key(&full) {
                    return Err(wit_err(
                        ErrorCode::AlreadyExists,
                        format!("ping `{full}` already exists"),
                    ));
                }
                Some(full)
            }
            None => None,
        };
        self.check_handles()?;
        // The new version of a plugin being reloaded adopts the ping of the
        // same name the old version had (the reload's commit hands the old
        // loop source over to it; see `host::reload`).
        let held = full_name
            .as_ref()
            .and_then(|full| self.shared.registry().held_pings.get(full).cloned());
        let (ping, source) = match held {
            Some(ping) => (ping, None),
            None => {
                let (ping, source) = callop::ping::make_ping().map_err(|e| {
                    wit_err(ErrorCode::Internal, format!("cannot create ping: {e}"))
                })?;
                (ping, Some(source))
            }
        };
        let id = self.sources.add(Source::Ping {
            name: full_name.clone(),
            source,
        })?;
        let handle = match self.push_handle(PingHandle { ping: ping.clone() }) {
            Ok(h) => h,
            Err(e) => {
                self.sources.discard(id);
                return Err(e);
            }
        };
        if let Some(full) = full_name {
            let mut reg = self.shared.registry();
            reg.held_pings.remove(&full);
            reg.pings.insert(full, ping);
        }
        self.ops.push(Op::Add(id));
        Ok((id, handle))
    }

    fn connect_ping(&mut self, target: String) -> Result<Resource<PingHandle>, Error> {
        let _t = crate::stats::HostCall::start();
        let t = policy::parse_target(&self.name, &target).map_err(bad_name)?;
        if t.owner == Owner::App {
            return Err(wit_err(
                ErrorCode::NotFound,
                "the application has no named pings",
            ));
        }
        if !self.shared.policy.may_address(&self.name, &t) {
            return Err(wit_err(
                ErrorCode::NotPermitted,
                self.shared.policy.refusal("reaching", &t),
            ));
        }
        let full = t.full_name();
        let ping = self.shared.registry().pings.get(&full).cloned();
        match ping {
            Some(ping) => self.push_handle(PingHandle { ping }),
            None => Err(wit_err(
                ErrorCode::NotFound,
                format!("no ping named `{full}`"),
            )),
        }
    }

    fn open_channel(&mut self, name: String) -> Result<SourceId, Error> {
        let _t = crate::stats::HostCall::start();
        policy::check_name(&name).map_err(bad_name)?;
        let full = format!("{}/{name}", self.name);
        let slot = {
            let mut reg = self.shared.registry();
            match reg.channels.get(&full) {
                Some(s) if s.is_open() || s.is_closed() => {
                    return Err(wit_err(
                        ErrorCode::AlreadyExists,
                        format!("channel `{full}` is already open"),
                    ));
                }
                Some(s) => s.clone(),
                None => {
                    let s =
                        Mailbox::new_charged(full.clone(), &self.budget).map_err(over_budget)?;
                    reg.channels.insert(full.clone(), s.clone());
                    s
                }
            }
        };
        // A failure leaves a pre-existing (connected-to) slot in place;
        // opening the slot comes last as it claims it.
        self.sources.check_room()?;
        let source = MailboxSource::open(slot.clone()).map_err(|e| {
            wit_err(
                ErrorCode::Internal,
                format!("cannot open channel `{full}`: {e}"),
            )
        })?;
        let id = self.sources.add(Source::Channel {
            full_name: full,
            slot,
            source: Some(source),
        })?;
        self.ops.push(Op::Add(id));
        Ok(id)
    }

    fn connect(&mut self, target: String) -> Result<Resource<SenderHandle>, Error> {
        let _t = crate::stats::HostCall::start();
        let t = policy::parse_target(&self.name, &target).map_err(bad_name)?;
        if !self.shared.policy.may_address(&self.name, &t) {
            return Err(wit_err(
                ErrorCode::NotPermitted,
                self.shared.policy.refusal("sending to", &t),
            ));
        }
        self.check_handles()?;
        let full = t.full_name();
        let slot = {
            let mut reg = self.shared.registry();
            match (reg.channels.get(&full), &t.owner) {
                (Some(s), _) => s.clone(),
                (None, Owner::App) => {
                    return Err(wit_err(
                        ErrorCode::NotFound,
                        format!("the application has no endpoint `{full}`"),
                    ));
                }
                (None, Owner::Plugin(p)) => {
                    if !reg.instances.contains(p) {
                        return Err(wit_err(
                            ErrorCode::NotFound,
                            format!("no plugin instance named `{p}`"),
                        ));
                    }
                    let s =
                        Mailbox::new_charged(full.clone(), &self.budget).map_err(over_budget)?;
                    reg.channels.insert(full.clone(), s.clone());
                    s
                }
            }
        };
        if slot.is_closed() {
            return Err(wit_err(
                ErrorCode::Closed,
                format!("channel `{full}` is closed"),
            ));
        }
        slot.add_sender();
        self.push_handle(SenderHandle {
            slot,
            app: t.owner == Owner::App,
        })
    }

    fn enable(&mut self, id: SourceId) -> Result<(), Error> {
        let _t = crate::stats::HostCall::start();
        self.sources.check(id, Change::Enable)?;
        self.ops.push(Op::Enable(id));
        Ok(())
    }

    fn disable(&mut self, id: SourceId) -> Result<(), Error> {
        let _t = crate::stats::HostCall::start();
        self.sources.check(id, Change::Disable)?;
        self.ops.push(Op::Disable(id));
        Ok(())
    }

    fn update(&mut self, id: SourceId) -> Result<(), Error> {
        let _t = crate::stats::HostCall::start();
        self.sources.check(id, Change::Update)?;
        self.ops.push(Op::Update(id));
        Ok(())
    }

    fn remove(&mut self, id: SourceId) -> Result<(), Error> {
        let _t = crate::stats::HostCall::start();
        self.sources.remove(id)?;
        self.ops.push(Op::Remove(id));
        Ok(())
    }
}

impl HostPing for PluginState {
    fn trigger(&mut self, self_: Resource<PingHandle>) {
        let _t = crate::stats::HostCall::start();
        if let Ok(h) = self.table.get(&self_) {
            h.ping.ping();
        }
    }

    fn drop(&mut self, rep: Resource<PingHandle>) -> wasmtime::Result<()> {
        let _t = crate::stats::HostCall::start();
        if self.table.delete(rep).is_ok() {
            self.handles = self.handles.saturating_sub(1);
        }
        Ok(())
    }
}

impl HostSender for PluginState {
    fn send(&mut self, self_: Resource<SenderHandle>, data: Vec<u8>) -> Result<(), Error> {
        let _t = crate::stats::HostCall::start();
        let max_msg = self.limits.max_message_bytes;
        let max_q = self.limits.max_queued_messages;
        let h = self.table.get(&self_).map_err(|e| {
            wit_err(
                ErrorCode::InvalidArgument,
                format!("bad sender handle: {e}"),
            )
        })?;
        if data.len() > max_msg {
            return Err(wit_err(
                ErrorCode::LimitExceeded,
                format!(
                    "message of {} bytes exceeds the limit of {max_msg} bytes \
                     (--max-message-size / limits.max_message_bytes)",
                    data.len()
                ),
            ));
        }
        // Nothing counts deliveries to an `@app` endpoint (the application
        // drains its own channel), so the queue limit applies to plugin
        // channels only; otherwise a long-lived sender to `@app/...` would
        // hit `limit-exceeded` after `max_queued_messages` messages.
        let max_q = if h.app { usize::MAX } else { max_q };
        match h.slot.send(data, max_q, Some(&self.budget)) {
            Ok(()) => Ok(()),
            Err(SendError::OverBudget(o)) => Err(wit_err(
                ErrorCode::LimitExceeded,
                format!("cannot queue for `{}`: {o}", h.slot.full_name),
            )),
            Err(SendError::Full) => Err(wit_err(
                ErrorCode::LimitExceeded,
                format!(
                    "channel `{}` already has {max_q} queued messages \
                     (limits.max_queued_messages)",
                    h.slot.full_name
                ),
            )),
            Err(SendError::Closed) if h.app => Err(wit_err(
                ErrorCode::NotFound,
                format!(
                    "the application endpoint `{}` no longer exists",
                    h.slot.full_name
                ),
            )),
            Err(SendError::Closed) => Err(wit_err(
                ErrorCode::Closed,
                format!("channel `{}` is closed", h.slot.full_name),
            )),
        }
    }

    fn target(&mut self, self_: Resource<SenderHandle>) -> String {
        let _t = crate::stats::HostCall::start();
        self.table
            .get(&self_)
            .map(|h| h.slot.full_name.clone())
            .unwrap_or_default()
    }

    fn drop(&mut self, rep: Resource<SenderHandle>) -> wasmtime::Result<()> {
        let _t = crate::stats::HostCall::start();
        if self.table.delete(rep).is_ok() {
            self.handles = self.handles.saturating_sub(1);
        }
        Ok(())
    }
}
