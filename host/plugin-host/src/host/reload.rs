//! Replacing a running plugin's code in place: [`Host::reload`](super::Host::reload).
//!
//! # What a reload does, in order
//!
//! All of it happens inside the one `reload` call, on the loop thread: no
//! loop iteration runs in between, so no event source of the plugin can
//! fire while its code is swapped.
//!
//! 1. **Checks.** The new code is a [`PluginComponent`], so it already
//!    passed the load-time checks (not wasm, a core module, the wrong
//!    world: [`Host::reload_file`](super::Host::reload_file) / [`Host::reload_bytes`](super::Host::reload_bytes) fail with
//!    [`ReloadError::Load`] before anything is touched). A reload is
//!    refused during a shutdown ([`ReloadError::ShuttingDown`]) and from
//!    inside the plugin's own call ([`ReloadError::Busy`]).
//! 2. **Drain.** Events the loop already took for the plugin (its pending
//!    batch: e.g. a batch of channel messages taken from its mailbox) are
//!    delivered to the *old* instance first, so nothing taken is dropped.
//! 3. **Snapshot.** If both the old instance and the new component export
//!    [`STATE_EXPORT`](crate::STATE_EXPORT), the old instance's
//!    `snapshot()` is called (callback timeout). Its bytes are charged to
//!    the plugin's host-memory budget
//!    ([`Limits::max_host_memory_bytes`](crate::Limits::max_host_memory_bytes))
//!    until the reload is over; a bigger snapshot fails the reload and the
//!    old instance keeps running. A fault in `snapshot` is the old
//!    instance's own failure (it ends as `Trapped`, its restart policy
//!    applies, with its old code) and fails the reload.
//! 4. **Hold.** Every channel the old instance has open goes back to
//!    *unopened* (`Mailbox::detach`): its queued messages and its senders
//!    (other plugins' `sender` handles, [`AppSender`](crate::AppSender)s)
//!    stay, new messages queue behind them, and nothing is taken from it by
//!    either instance. The old instance's named pings are taken out of the
//!    registry and held (`Registry::held_pings`): their loop sources stay
//!    registered for the old instance, and a ping triggered during the
//!    reload stays pending in its source.
//! 5. **New instance.** The new component is instantiated under the *same*
//!    instance name, with a copy of the plugin's capabilities and its
//!    limits; `restore(snapshot)` (init timeout) and then `init(args)` (the
//!    same arguments) run. The new `init` reopens the channels by name and
//!    gets the held messages, in order, from the next loop iteration on; a
//!    `make-named-ping` of a held name adopts that ping (the same
//!    [`Ping`]: no new one is made) and waits for its loop source.
//! 6. **Commit**, if the new instance was created and neither `restore`
//!    nor `init` failed. First each named ping the new instance adopted
//!    gets the old instance's loop source (`ping_routing`): the handles
//!    others got for it before the reload (`connect-ping`,
//!    [`Host::ping`](super::Host::ping)) keep waking the plugin, now its new
//!    instance, and a ping triggered but not yet dispatched (one triggered
//!    during the reload included) is delivered to the new instance, once
//!    (pings coalesce), on the next loop iteration. A held ping the new
//!    version did not make again is dropped with the old instance: its
//!    handles then wake nothing. Then the old instance's `shutdown(deadline)` is called
//!    (deadline [`RELOAD_GRACE`] on the plugins' clock, the call bounded by
//!    the callback timeout like any callback; what it queues is not
//!    applied, what it sends is sent), then its loop sources are removed
//!    and its store dropped (its I/O objects closed, its `sender`s and
//!    `ping`s released). The plugin keeps its [`PluginId`]; its restart
//!    policy and restart count stay, its reload count
//!    ([`Host::reloads`](super::Host::reloads), [`PluginExit::reloads`](super::PluginExit::reloads))
//!    goes up by one, and a later failure restarts the *new* code. A new
//!    `init` that calls `stop` (or WASI `exit`), or registers nothing, is a
//!    start like any other: the reload commits and the plugin then ends, as
//!    it would after a first load.
//! 7. **Rollback**, if creating the new instance, `restore` or `init`
//!    failed (a trap, an `err`, a timeout, an exit): the new instance is
//!    dropped, the channels it opened go back to unopened, the old
//!    instance's channels are reattached to it (`Mailbox::open` with its
//!    own wake-up) and its named pings put back in the registry (their loop
//!    sources never left it: a ping triggered meanwhile goes to the old
//!    instance). The old instance never
//!    saw anything of this — its `shutdown` was not called — and keeps
//!    running with every message still queued for it.
//!
//! # Why both "nothing lost" and "the old one keeps running" hold
//!
//! The new instance runs its start-up code *before* the old one is told
//! anything, while the host (not either instance) holds the plugin's
//! channels. Messages only ever live in one place: in the mailbox (held),
//! or in a batch the old instance already received (step 2). The new
//! instance takes from the mailbox only after the commit, the old one only
//! after a rollback; so every message is delivered exactly once, in send
//! order, across the swap. A named ping's pending wake-up lives in its
//! loop source, which belongs to the old instance until the commit and to
//! the new one after it.
//!
//! # Limits of this design
//!
//! * The new `init` runs while the old instance still holds its I/O
//!   objects: a new version that binds the same address in `init` fails
//!   with `address in use`, so the reload fails safe and the old version
//!   keeps running. (I/O objects are not handed over.)
//! * Named pings are carried over by name only. One the new version does
//!   not make again in its `init` goes with the old instance: `ping`
//!   handles of it (`connect-ping`, [`Host::ping`](super::Host::ping)) do
//!   nothing from then on, and a ping pending in it is lost. Anonymous
//!   pings are not carried over. An adopted ping is a new source of the new
//!   instance (its own source id; enabled, even if the old instance had
//!   disabled it).
//! * Old timers, idles and I/O registrations are not carried over: the new
//!   `init` registers its own (the state handoff is how it learns what the
//!   old one was doing).
//! * A channel the new `init` does not reopen stays unopened, keeping
//!   (bounded by the queue limit and the senders' budgets) what is sent to
//!   it, as a channel connected to before its owner opened it does.

use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use callop::ping::Ping;

use super::call::{Export, Failure, Outcome};
use super::{After, HostInner, Live, PluginId, PluginRt, StartSpec};
use crate::engine::PluginComponent;
use crate::error::LoadError;
use crate::mailbox::Mailbox;

/// The deadline the old instance's `shutdown` gets on a reload (on the
/// plugins' clock, from the commit); the call itself is bounded by the
/// callback timeout.
pub const RELOAD_GRACE: Duration = Duration::from_millis(100);

/// Why [`Host::reload`](super::Host::reload) did not replace a plugin. Unless said otherwise,
/// nothing changed: the old instance keeps running, with every message
/// sent to it still queued.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReloadError {
    /// The new code could not be loaded: not wasm, a core module, the
    /// wrong world or version, a compile error.
    Load(LoadError),
    /// No live plugin with this id (it ended, or never existed).
    NotFound(PluginId),
    /// The host is shutting down (SIGINT/SIGTERM, [`Host::shutdown`](super::Host::shutdown)):
    /// plugins are not reloaded any more.
    ShuttingDown,
    /// The plugin is running (a reload asked for from inside its own call).
    Busy(String),
    /// The old instance's `snapshot` failed. Too big (over the plugin's
    /// host-memory budget): the old instance keeps running. A fault or an
    /// exit in `snapshot`: the old instance ended by it (a fault is its
    /// failure, and its restart policy applies).
    Snapshot(String),
    /// The new component could not be instantiated.
    Instantiate(String),
    /// The new instance's `restore` returned an error or failed.
    Restore(String),
    /// The new instance's `init` returned an error or failed.
    Init(String),
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Load(e) => write!(f, "the new version cannot be loaded: {e}"),
            ReloadError::NotFound(id) => write!(f, "no live plugin {id}"),
            ReloadError::ShuttingDown => f.write_str("the host is shutting down"),
            ReloadError::Busy(m) => write!(f, "busy: {m}"),
            ReloadError::Snapshot(m) => write!(f, "snapshot failed: {m}"),
            ReloadError::Instantiate(m) => {
                write!(f, "the new version cannot be instantiated: {m}")
            }
            ReloadError::Restore(m) => write!(f, "the new version refused the state: {m}"),
            ReloadError::Init(m) => write!(f, "the new version failed to start: {m}"),
        }
    }
}

impl std::error::Error for ReloadError {}

impl From<LoadError> for ReloadError {
    fn from(e: LoadError) -> Self {
        ReloadError::Load(e)
    }
}

/// What the host holds for the plugin while its code is swapped.
struct Held {
    /// The old instance's open channels and the wake-up of its loop source.
    channels: Vec<(Arc<Mailbox>, Ping)>,
    /// Its named pings (full name, ping), also in `Registry::held_pings`
    /// for the new instance to adopt.
    pings: Vec<(String, Ping)>,
}

impl<'l, Data: 'l> HostInner<'l, Data> {
    /// See [`Host::reload`](super::Host::reload).
    pub(super) fn reload(
        self: &Rc<Self>,
        id: PluginId,
        component: &PluginComponent,
    ) -> Result<(), ReloadError> {
        if self.shutting_down.get() {
            return Err(ReloadError::ShuttingDown);
        }
        let old = self
            .plugins
            .borrow()
            .get(&id)
            .cloned()
            .ok_or(ReloadError::NotFound(id))?;
        if old.live.try_borrow_mut().is_err() {
            return Err(ReloadError::Busy(format!(
                "plugin `{}` is running; reload it from another callback",
                old.name
            )));
        }
        // 2. What the loop already took for the old instance goes to it.
        self.flush(&old);
        let mut guard = old.live.borrow_mut();
        let Some(old_live) = guard.as_mut() else {
            return Err(ReloadError::NotFound(id));
        };
        // 3. Snapshot, if both versions have the state interface.
        let snapshot = if component.has_state() && old_live.guest.has_state() {
            let outcome = self.call_guest(old_live, Export::Snapshot);
            let taken = match &outcome {
                Outcome::Snapshot(s) => Some(s.clone()),
                _ => None,
            };
            let why = match &outcome {
                Outcome::Failed(Failure::Fault { fault, .. }) => {
                    format!("{}: {}", fault.kind, fault.message)
                }
                Outcome::Failed(Failure::Refused(m)) => m.clone(),
                Outcome::Exited(c) => format!("the plugin exited with code {c}"),
                _ => "the plugin was interrupted".to_string(),
            };
            match self.settle(&old, old_live, outcome) {
                After::Continue => {}
                After::End(reason) => {
                    drop(guard);
                    let msg = match taken {
                        Some(_) => format!("the plugin ended in `snapshot` ({reason})"),
                        None => format!("{why}; the plugin ended ({reason})"),
                    };
                    self.end(&old, reason);
                    return Err(ReloadError::Snapshot(msg));
                }
            }
            taken.flatten()
        } else {
            None
        };
        let _charge = match &snapshot {
            Some(s) => Some(
                old_live
                    .store
                    .data()
                    .budget
                    .try_charge(s.len())
                    .map_err(|e| {
                        ReloadError::Snapshot(format!(
                            "a snapshot of {} bytes does not fit: {e}",
                            s.len()
                        ))
                    })?,
            ),
            None => None,
        };
        // 4. The host holds the plugin's channels and named pings.
        let held = self.hold(&old.name);
        // 5. The new instance: restore, then init.
        let mut new_live = match self.start_new(&old, component, snapshot.as_deref()) {
            Ok(n) => n,
            Err(e) => {
                self.unhold(&old.name, held);
                tracing::warn!(plugin = %old.name, %id, "reload failed, the old version keeps running: {e}");
                return Err(e);
            }
        };
        let outcome = match self.call_guest(
            &mut new_live,
            Export::Init {
                args: &old.spec.args,
            },
        ) {
            Outcome::Failed(f) => Err(ReloadError::Init(f.load_error().to_string())),
            Outcome::Interrupted(c) => Err(ReloadError::Init(format!("interrupted ({c:?})"))),
            o => Ok(o),
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                drop(new_live);
                self.unhold(&old.name, held);
                tracing::warn!(plugin = %old.name, %id, "reload failed, the old version keeps running: {e}");
                return Err(e);
            }
        };
        // 6. Commit: the old instance's shutdown, then it goes.
        let deadline_ns = self
            .shared
            .now_ns()
            .saturating_add(u64::try_from(RELOAD_GRACE.as_nanos()).unwrap_or(u64::MAX));
        old.shutdown_called.set(true);
        // What the old instance removes now must not release the names the
        // new one has (its channels, its named pings).
        old_live.store.data_mut().sources.hand_over_names();
        // The named pings the new instance created again get the old
        // instance's loop sources (the handles others hold, pings pending).
        self.hand_over_pings(
            &old.name,
            held.pings.iter().map(|(k, _)| k.as_str()),
            &mut old_live.store.data_mut().sources,
            &mut new_live.store.data_mut().sources,
        );
        self.shared.registry().remove_held_pings(&old.name);
        match self.call_guest(old_live, Export::Shutdown { deadline_ns }) {
            Outcome::Returned(_) | Outcome::Snapshot(_) | Outcome::Exited(_) => {}
            Outcome::Interrupted(c) => {
                tracing::warn!(plugin = %old.name, %id, "old version's shutdown interrupted ({c:?})")
            }
            Outcome::Failed(f) => {
                tracing::warn!(plugin = %old.name, %id, "old version's shutdown failed: {}", f.load_error())
            }
        }
        let old_live = guard.take().expect("checked above");
        drop(guard);
        self.retire(&old, old_live);
        drop(held);
        let reloads = old.reloads.get().saturating_add(1);
        let spec = Rc::new(StartSpec {
            component: component.clone(),
            args: old.spec.args.clone(),
        });
        let p = PluginRt::new(id, old.name.clone(), spec, old.restarts, None);
        p.reloads.set(reloads);
        self.plugins.borrow_mut().insert(id, p.clone());
        tracing::info!(plugin = %p.name, %id, reloads, origin = component.origin(), state = snapshot.as_ref().map(Vec::len), "plugin reloaded");
        let mut live = new_live;
        // The figures of the instance go on under its id (see `stats`).
        live.counters = self.stats.borrow_mut().track(id, &p.name, &live.counters);
        self.note_reload(id);
        let after = self.settle(&p, &mut live, outcome);
        *p.live.borrow_mut() = Some(live);
        if let After::End(reason) = after {
            self.end(&p, reason);
        }
        Ok(())
    }

    /// Step 5 up to `init`: a new instance of `component` for plugin `old`,
    /// given the old instance's `snapshot` if there is one.
    fn start_new(
        &self,
        old: &PluginRt,
        component: &PluginComponent,
        snapshot: Option<&[u8]>,
    ) -> Result<Live, ReloadError> {
        let mut live = self
            .instantiate(component, &old.name, old.restarts, false)
            .map_err(|e| match e {
                LoadError::Instantiate(m) => ReloadError::Instantiate(m),
                e => ReloadError::Instantiate(e.to_string()),
            })?;
        // `host-loop.generation`: one more than the run it replaces.
        live.store.data_mut().generation = old
            .restarts
            .saturating_add(old.reloads.get())
            .saturating_add(1);
        if let Some(s) = snapshot {
            match self.call_guest(&mut live, Export::Restore { snapshot: s }) {
                Outcome::Returned(_) | Outcome::Snapshot(_) => {}
                Outcome::Failed(Failure::Refused(m)) => {
                    return Err(ReloadError::Restore(m));
                }
                Outcome::Failed(Failure::Fault { fault, .. }) => {
                    return Err(ReloadError::Restore(format!(
                        "{}: {}",
                        fault.kind, fault.message
                    )));
                }
                Outcome::Exited(c) => {
                    return Err(ReloadError::Restore(format!("exited with code {c}")));
                }
                Outcome::Interrupted(c) => {
                    return Err(ReloadError::Restore(format!("interrupted ({c:?})")));
                }
            }
        }
        Ok(live)
    }

    /// Step 4: detaches the channels plugin `name` has open and takes its
    /// named pings out of the registry.
    fn hold(&self, name: &str) -> Held {
        let prefix = format!("{name}/");
        let mut reg = self.shared.registry();
        let channels = reg
            .channels
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(_, m)| m.detach().map(|ping| (m.clone(), ping)))
            .collect();
        let names: Vec<String> = reg
            .pings
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        let pings: Vec<(String, Ping)> = names
            .into_iter()
            .filter_map(|k| reg.pings.remove(&k).map(|p| (k, p)))
            .collect();
        reg.held_pings.extend(pings.iter().cloned());
        Held { channels, pings }
    }

    /// Step 7: gives plugin `name`'s channels and named pings back to the
    /// old instance (the failed new one may have opened or created some).
    fn unhold(&self, name: &str, held: Held) {
        let prefix = format!("{name}/");
        let mut reg = self.shared.registry();
        for (k, m) in reg.channels.iter() {
            if k.starts_with(&prefix) {
                // Opened by the failed new instance: unopened again (its
                // messages, if any, stay queued).
                let _ = m.detach();
            }
        }
        for (m, ping) in held.channels {
            m.open(ping);
        }
        reg.pings.retain(|k, _| !k.starts_with(&prefix));
        reg.remove_held_pings(name);
        reg.pings.extend(held.pings);
    }

    /// Step 6: the old instance goes: its loop sources, pending events and
    /// store (its names stay: the new instance has them).
    fn retire(&self, old: &PluginRt, live: Live) {
        for t in live.store.data().sources.tokens() {
            self.remove_loop_source(t);
        }
        old.pending.replace(Default::default());
        old.idle_queue.borrow_mut().clear();
        drop(live);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_failed() {
        assert_eq!(
            ReloadError::Init("plugin trapped in init: trap: unreachable".into()).to_string(),
            "the new version failed to start: plugin trapped in init: trap: unreachable"
        );
        assert_eq!(
            ReloadError::from(LoadError::CoreModule).to_string(),
            format!(
                "the new version cannot be loaded: {}",
                LoadError::CoreModule
            )
        );
        assert_eq!(
            ReloadError::ShuttingDown.to_string(),
            "the host is shutting down"
        );
    }
}
