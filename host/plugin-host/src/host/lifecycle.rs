//! The life of a plugin instance: loading (names, instantiation, `init`;
//! a failure returned to the caller, or, supervised, that plugin's exit),
//! ending it (removing its sources and names, reporting the exit) and, after
//! a failure, applying its restart policy and starting it again.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::Store;
use wasmtime_wasi::WasiCtxBuilder;

use super::call::{Export, Outcome};
use super::{
    After, ExitReason, HostInner, Live, Pending, PluginExit, PluginId, PluginRt, PluginSpec,
    StartSpec,
};

/// A plugin instantiated by the second step of a load, before its `init`.
pub(super) struct Prepared {
    /// Its id, taken at once by a supervised load (a failed start is that
    /// id's exit); an unsupervised load takes it once `init` succeeded.
    id: Option<PluginId>,
    name: Arc<str>,
    /// `None`: its instantiation failed (supervised: its exit is recorded).
    live: Option<Live>,
}
use crate::capabilities::Capabilities;
use crate::engine::PluginComponent;
use crate::error::{self, LoadError};
use crate::policy;
use crate::restart::Decision;
use crate::state::PluginState;
use crate::stdio::{Tagged, Tail, Which};
use crate::ticker::CpuDeadline;
use callop::timer::{TimeoutAction, Timer};

impl<'l, Data: 'l> HostInner<'l, Data> {
    /// See [`Host::load_many`].
    #[allow(clippy::type_complexity)]
    pub(super) fn load_many(
        self: &Rc<Self>,
        specs: &[PluginSpec<'_>],
    ) -> Result<Vec<Result<PluginId, LoadError>>, (String, LoadError)> {
        if self.is_threaded() {
            return self.load_many_threaded(specs, false);
        }
        self.register_names(specs)?;
        let prepared = self.prepare(specs, false).inspect_err(|_| {
            let mut reg = self.shared.registry();
            for s in specs {
                reg.remove_instance(s.name);
            }
        })?;
        Ok(self.start_prepared(specs, prepared))
    }

    /// See [`Host::load_many_supervised`].
    pub(super) fn load_many_supervised(
        self: &Rc<Self>,
        specs: &[PluginSpec<'_>],
    ) -> Result<Vec<PluginId>, (String, LoadError)> {
        let ids = if self.is_threaded() {
            self.load_many_threaded(specs, true)?
        } else {
            self.register_names(specs)?;
            let prepared = self.prepare(specs, true)?;
            self.start_prepared(specs, prepared)
        };
        Ok(ids
            .into_iter()
            .map(|r| r.expect("a supervised start is the plugin's own failure"))
            .collect())
    }

    /// Step 2 of a load (the names are registered): instantiates every
    /// plugin. Unsupervised, one failure fails the whole load (the caller
    /// forgets the names). Supervised, a failure is that plugin's exit
    /// alone: like a failed instantiation on a restart, it is not restarted
    /// (it is the component's or its start code's, not a run's).
    pub(super) fn prepare(
        &self,
        specs: &[PluginSpec<'_>],
        supervised: bool,
    ) -> Result<Vec<Prepared>, (String, LoadError)> {
        let mut prepared = Vec::new();
        for s in specs {
            let name: Arc<str> = Arc::from(s.name);
            let id = supervised.then(|| self.next_plugin_id());
            match self.instantiate(s.component, &name, 0, true) {
                Ok(live) => prepared.push(Prepared {
                    id,
                    name,
                    live: Some(live),
                }),
                Err(e) => {
                    let Some(id) = id else {
                        return Err((s.name.to_string(), e));
                    };
                    self.shared.registry().remove_instance(s.name);
                    tracing::error!(plugin = s.name, %id, "plugin failed: {e}");
                    self.record_exit(PluginExit {
                        id,
                        name: s.name.to_string(),
                        reason: ExitReason::Trapped(e.to_string()),
                        fault: None,
                        restarts: 0,
                        reloads: 0,
                    });
                    prepared.push(Prepared {
                        id: Some(id),
                        name,
                        live: None,
                    });
                }
            }
        }
        Ok(prepared)
    }

    /// Step 3 of a load: `init`, in order. Unsupervised, a failed `init` is
    /// the caller's error (see `call` for the rules) and any other outcome
    /// a started plugin; supervised (the ids were taken by [`Self::prepare`]),
    /// a failed `init` ends that plugin like a failed callback: its exit is
    /// recorded and its restart policy applies (the result is its id).
    pub(super) fn start_prepared(
        self: &Rc<Self>,
        specs: &[PluginSpec<'_>],
        prepared: Vec<Prepared>,
    ) -> Vec<Result<PluginId, LoadError>> {
        let mut out = Vec::new();
        for (s, p) in specs.iter().zip(prepared) {
            let Some(mut live) = p.live else {
                out.push(Ok(p.id.expect("a failed instantiation is supervised")));
                continue;
            };
            let outcome = self.call_guest(&mut live, Export::Init { args: s.args });
            match p.id {
                Some(id) => {
                    self.start_as(id, s, p.name, live, outcome);
                    out.push(Ok(id));
                }
                None => {
                    if let Outcome::Failed(f) = &outcome {
                        // Returned, not logged: the caller reports it (once).
                        let e = f.load_error();
                        self.shared.registry().remove_instance(s.name);
                        drop(live);
                        out.push(Err(e));
                        continue;
                    }
                    out.push(Ok(self.start(s, p.name, live, outcome)));
                }
            }
        }
        out
    }

    /// Step 1 of a load: checks every name and registers them all (so the
    /// plugins can `connect` to each other from `init`), or none.
    pub(super) fn register_names(
        &self,
        specs: &[PluginSpec<'_>],
    ) -> Result<(), (String, LoadError)> {
        let mut reg = self.shared.registry();
        let mut seen = std::collections::HashSet::new();
        for s in specs {
            policy::check_name(s.name).map_err(|e| (s.name.to_string(), LoadError::Name(e.0)))?;
            if reg.instances.contains(s.name) || !seen.insert(s.name) {
                return Err((
                    s.name.to_string(),
                    LoadError::Name(format!("an instance named `{}` is already running", s.name)),
                ));
            }
        }
        for s in specs {
            reg.instances.insert(s.name.to_string());
        }
        Ok(())
    }

    /// A fresh plugin id.
    fn next_plugin_id(&self) -> PluginId {
        PluginId(self.shared.next_plugin_id())
    }

    /// A first run of `s` whose `init` gave `outcome`: see [`Self::start_as`].
    fn start(
        self: &Rc<Self>,
        s: &PluginSpec<'_>,
        name: Arc<str>,
        live: Live,
        outcome: Outcome,
    ) -> PluginId {
        let id = self.next_plugin_id();
        self.start_as(id, s, name, live, outcome);
        id
    }

    /// Makes instance `live` the first run of plugin `id` and settles the
    /// `outcome` of its `init` (by the rules of `call`: it may end at once,
    /// a failure then applying its restart policy).
    fn start_as(
        self: &Rc<Self>,
        id: PluginId,
        s: &PluginSpec<'_>,
        name: Arc<str>,
        mut live: Live,
        outcome: Outcome,
    ) {
        let spec = Rc::new(StartSpec {
            component: s.component.clone(),
            args: s.args.to_vec(),
        });
        let failed = matches!(outcome, Outcome::Failed(_));
        let p = PluginRt::new(id, name, spec, 0, None);
        live.counters = self.stats.borrow_mut().track(id, &p.name, &live.counters);
        self.plugins.borrow_mut().insert(id, p.clone());
        if !failed {
            match self.thread_index() {
                Some(thread) => {
                    tracing::info!(plugin = %s.name, %id, thread, origin = s.component.origin(), "plugin started")
                }
                None => {
                    tracing::info!(plugin = %s.name, %id, origin = s.component.origin(), "plugin started")
                }
            }
        }
        let after = self.settle(&p, &mut live, outcome);
        *p.live.borrow_mut() = Some(live);
        if let After::End(reason) = after {
            self.end(&p, reason);
        }
    }

    /// A new instance of `component` named `name`; `fresh` for a first
    /// start (it takes the grants made for the name), `false` for a restart
    /// or a reload (a copy of the first start's grants).
    pub(super) fn instantiate(
        &self,
        component: &PluginComponent,
        name: &Arc<str>,
        restarts: u32,
        fresh: bool,
    ) -> Result<Live, LoadError> {
        let policy = &self.shared.policy;
        let mut wasi = WasiCtxBuilder::new();
        // WASI args carry only the instance name: plugin arguments go to
        // `init`. The only environment variable is CALLOP_RESTARTS (how
        // often this instance was restarted after a failure). Preopens,
        // sockets and stdin only as the plugin's grants name them
        // (`wasi_grants::apply`, below).
        wasi.args(&[name.to_string()])
            .env("CALLOP_RESTARTS", restarts.to_string())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if policy.forward_stdout {
            wasi.stdout(Tagged::new(name, Which::Stdout));
        }
        let stderr_tail = Tail::default();
        let which = if policy.forward_stderr {
            Which::Stderr
        } else {
            Which::Discard
        };
        wasi.stderr(Tagged::with_tail(name, which, Some(stderr_tail.clone())));
        let limits = self
            .limit_overrides
            .borrow()
            .get(&**name)
            .cloned()
            .unwrap_or_else(|| Arc::new(self.shared.limits.clone()));
        // A first start takes the grants made for its name and keeps a copy
        // for its restarts; a restart (and a reload) gets a copy of that copy.
        let caps = if fresh {
            let caps = self.grants.borrow_mut().remove(&**name).unwrap_or_default();
            self.restart_grants
                .borrow_mut()
                .insert(name.to_string(), caps.instance_copy());
            caps
        } else {
            self.restart_grants
                .borrow()
                .get(&**name)
                .map(Capabilities::instance_copy)
                .unwrap_or_default()
        };
        // The application interfaces it imports must all be granted to it;
        // each gets its per-plugin state (see `app_api`).
        let app =
            self.engine
                .app_api()
                .instance_states(&component.app_imports, &caps, name, restarts)?;
        crate::wasi_grants::apply(&mut wasi, &caps, name);
        let mut state = PluginState::with_limits(
            name.clone(),
            self.shared.clone(),
            limits,
            wasi.build(),
            caps,
        );
        state.generation = restarts;
        state.app = app;
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|s| &mut s.store_limits);
        // Instantiation (start functions) runs under the init timeout.
        let deadline = CpuDeadline::install(&mut store, self.alarm.clone());
        store.data_mut().deadline = Some(deadline.clone());
        let init_timeout = store.data().limits.init_timeout;
        deadline.arm(&mut store, self.budget(init_timeout));
        let guest = component
            .pre
            .instantiate(&mut store)
            .and_then(|instance| component.exports.load(&mut store, &instance))
            .map_err(|e| LoadError::Instantiate(error::chain(&e)))?;
        Ok(Live {
            store,
            guest,
            stderr_tail,
            armed: None,
            deadline,
            counters: Rc::default(),
        })
    }

    /// Ends a plugin: removes its sources, names and instance.
    pub(super) fn end(self: &Rc<Self>, p: &Rc<PluginRt>, reason: ExitReason) {
        let Some(live) = p.live.try_borrow_mut().ok().and_then(|mut l| l.take()) else {
            if p.live.try_borrow_mut().is_err() {
                tracing::error!(plugin = %p.name, "cannot end a plugin while it runs");
            }
            return;
        };
        {
            let st = live.store.data();
            for t in st.sources.tokens() {
                self.remove_loop_source(t);
            }
        }
        self.shared.registry().remove_instance(&p.name);
        p.pending.replace(Pending::default());
        p.idle_queue.borrow_mut().clear();
        live.fold_stats();
        self.stats.borrow_mut().ended(p.id);
        drop(live); // drops the store: sender handles release their channels
        self.plugins.borrow_mut().remove(&p.id);
        let fault = p.fault.borrow_mut().take();
        match (&reason, &fault) {
            // The cause is the fault's kind and message, prefixed in `init`.
            (ExitReason::Trapped(c), Some(f)) => match &f.backtrace {
                Some(bt) => {
                    tracing::error!(plugin = %p.name, id = %p.id, "plugin failed: {c}\n{}", bt.trim_end())
                }
                None => tracing::error!(plugin = %p.name, id = %p.id, "plugin failed: {c}"),
            },
            (ExitReason::Trapped(c), None) => {
                tracing::error!(plugin = %p.name, id = %p.id, "plugin failed: {c}")
            }
            (r, _) => tracing::info!(plugin = %p.name, id = %p.id, "plugin {r}"),
        }
        let failed = matches!(reason, ExitReason::Trapped(_));
        self.record_exit(PluginExit {
            id: p.id,
            name: p.name.to_string(),
            reason,
            fault,
            restarts: p.restarts,
            reloads: p.reloads.get(),
        });
        if failed {
            self.after_failure(p);
        } else {
            self.restart_grants.borrow_mut().remove(&*p.name);
        }
    }

    fn record_exit(&self, exit: PluginExit) {
        self.exits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(exit.clone());
        let _ = self.exit_tx.send(exit);
        // An embedder typically loops `while !host.is_empty()` or checks
        // it after each dispatch. A plugin can end outside the loop (in
        // `init`, during `load`) or late in an iteration; without a wake-up
        // the next dispatch would block with nothing left to wake it.
        self.waker.ping();
    }

    /// Applies the restart policy after `p` failed.
    fn after_failure(self: &Rc<Self>, p: &Rc<PluginRt>) {
        if self.shutting_down.get() {
            return;
        }
        let policy = self
            .restart_overrides
            .borrow()
            .get(&*p.name)
            .copied()
            .unwrap_or(self.restart_default.get());
        let decision = self
            .trackers
            .borrow_mut()
            .entry(p.name.to_string())
            .or_default()
            .on_failure(policy, Instant::now());
        if !matches!(decision, Decision::Restart(_)) {
            self.restart_grants.borrow_mut().remove(&*p.name);
        }
        match decision {
            Decision::Stay => {}
            Decision::Quarantine { failures } => {
                let why = format!(
                    "{failures} failures within the period of its restart policy `{policy}`; not restarted"
                );
                tracing::error!(plugin = %p.name, id = %p.id, "plugin quarantined: {why}");
                self.record_exit(PluginExit {
                    id: p.id,
                    name: p.name.to_string(),
                    reason: ExitReason::Quarantined(why),
                    fault: None,
                    restarts: p.restarts,
                    reloads: p.reloads.get(),
                });
            }
            Decision::Restart(delay) => {
                tracing::warn!(plugin = %p.name, id = %p.id, "restarting in {delay:?} (restart {} under `{policy}`)", p.restarts + 1);
                self.pending_restarts.set(self.pending_restarts.get() + 1);
                let w = Rc::downgrade(self);
                let (id, name, spec, restarts, reloads) = (
                    p.id,
                    p.name.clone(),
                    p.spec.clone(),
                    p.restarts + 1,
                    p.reloads.get(),
                );
                let r = self
                    .handle
                    .insert_source(Timer::from_duration(delay), move |_, _, _| {
                        if let Some(inner) = w.upgrade() {
                            inner
                                .pending_restarts
                                .set(inner.pending_restarts.get().saturating_sub(1));
                            inner.restart(id, &name, &spec, restarts, reloads);
                        }
                        TimeoutAction::Drop
                    });
                match r {
                    Ok(t) => self.aux_tokens.borrow_mut().push(t),
                    Err(e) => {
                        self.pending_restarts
                            .set(self.pending_restarts.get().saturating_sub(1));
                        tracing::error!(plugin = %p.name, "cannot schedule the restart: {}", e.error);
                    }
                }
            }
        }
    }

    /// Starts a failed instance again, under the same id and name.
    fn restart(
        self: &Rc<Self>,
        id: PluginId,
        name: &Arc<str>,
        spec: &Rc<StartSpec>,
        restarts: u32,
        reloads: u32,
    ) {
        if self.shutting_down.get() {
            return;
        }
        let fail = |reason: String| {
            tracing::error!(plugin = %name, %id, "restart failed: {reason}");
            self.record_exit(PluginExit {
                id,
                name: name.to_string(),
                reason: ExitReason::Trapped(reason),
                fault: None,
                restarts,
                reloads,
            });
        };
        {
            let mut reg = self.shared.registry();
            if reg.instances.contains(&**name) {
                drop(reg);
                fail(format!("the instance name `{name}` was taken meanwhile"));
                return;
            }
            reg.instances.insert(name.to_string());
        }
        let mut live = match self.instantiate(&spec.component, name, restarts, false) {
            Ok(l) => l,
            Err(e) => {
                self.shared.registry().remove_instance(name);
                fail(e.to_string());
                return;
            }
        };
        // `host-loop.generation`: every earlier run, restarts and reloads.
        live.store.data_mut().generation = restarts.saturating_add(reloads);
        let p = PluginRt::new(id, name.clone(), spec.clone(), restarts, None);
        p.reloads.set(reloads);
        live.counters = self.stats.borrow_mut().track(id, name, &live.counters);
        live.counters.count_restart();
        self.plugins.borrow_mut().insert(id, p.clone());
        tracing::info!(plugin = %name, %id, restarts, "plugin restarted");
        // The same funnel and rules as a first load; a failed init, having
        // no caller to return to, ends the run (see `call`).
        let outcome = self.call_guest(&mut live, Export::Init { args: &spec.args });
        let after = self.settle(&p, &mut live, outcome);
        *p.live.borrow_mut() = Some(live);
        if let After::End(reason) = after {
            self.end(&p, reason);
        }
    }
}
