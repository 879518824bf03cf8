//! Several loop threads: [`Host::start_threads`] spreads a host's plugins
//! over the loop the host was created on and `n - 1` worker threads, each
//! running a callop [`EventLoop`] of its own with a host of its own.
//!
//! An event loop stays single-threaded (as calloop is): a plugin lives on
//! one thread for its whole life (its restarts and reloads included), and
//! nothing of it is touched from another. What the threads share is what
//! was already thread-safe because it is shared with other threads anyway:
//! * the engine and its compile cache, and the epoch ticker;
//! * the [`Shared`] registry of instance names, named channels and pings:
//!   a mailbox wakes its owner with a [`Ping`](callop::ping::Ping), which
//!   works from any thread, so a message sent on one thread is delivered on
//!   the owner's with the same rules (FIFO per channel, batches, `closed`
//!   once) — the application's senders, endpoints and pings too;
//! * plugin ids (one counter), the exits (one list, one exit channel), and
//!   the [`Alarm`](crate::alarm::Alarm) that interrupts guest calls at a
//!   shutdown deadline (so [`SignalShutdown`](super::SignalShutdown) reaches
//!   the guests of every thread).
//!
//! The first host is the *coordinator*: every [`Host`] method works on it as
//! with one thread, by doing the work itself for its own plugins and asking
//! the worker that owns a plugin for the rest (a job run on the worker's
//! loop thread between two dispatches; the answer comes back on a channel).
//! A worker wakes the coordinator whenever its number of plugins changes,
//! so that [`Host::is_empty`] is seen as soon as it becomes true.
//!
//! Placement is deterministic: an instance name pinned with
//! [`Host::pin_thread`] goes to its thread, any other to the thread with
//! the fewest plugins at load time (the lowest index on a tie), so the
//! plugins of one load are dealt out in turn.
//!
//! Loading several plugins together keeps its guarantees across threads:
//! the coordinator registers every name first, every thread instantiates
//! its share, and only then does any `init` run (so plugins can `connect`
//! to each other from `init`; the `init`s of different threads run at the
//! same time, in order within a thread). An unsupervised load that fails to
//! instantiate one plugin starts none.
//!
//! Signals: worker threads block every asynchronous signal, so a signal is
//! received only by the coordinator's loop (or the embedder's watcher), and
//! a worker's plugin subscribing to a signal asks the coordinator to watch
//! it; [`Host::deliver_signal`] delivers to the plugins of every thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use callop::EventLoop;
use callop::channel::{self, Event as ChannelEvent, Sender};
use callop::ping::Ping;
use callop::signals::Signal;

use super::lifecycle::Prepared;
use super::{Host, HostError, HostInner, PluginExit, PluginId, PluginSpec};
use crate::alarm::Alarm;
use crate::capabilities::Capabilities;
use crate::engine::{PluginComponent, PluginEngine};
use crate::error::LoadError;
use crate::limits::Limits;
use crate::restart::RestartPolicy;
use crate::state::Shared;

/// The most loop threads a host starts.
pub const MAX_THREADS: usize = 256;

/// What a worker's host shares with the coordinator.
pub(super) struct Link {
    /// This worker's thread number (1, 2, ...).
    index: usize,
    pub(super) exits: Arc<Mutex<Vec<PluginExit>>>,
    pub(super) exit_tx: Sender<PluginExit>,
    pub(super) alarm: Arc<Alarm>,
    /// Asks the coordinator to watch a signal a plugin of this thread
    /// subscribed to.
    watch_tx: Sender<Signal>,
}

/// The coordinator's worker threads and placement.
pub(super) struct Workers {
    /// Thread `i + 1` is `threads[i]`.
    threads: Vec<Worker>,
    /// Instance names pinned to a thread.
    pinned: HashMap<String, usize>,
    /// The thread of each plugin loaded on a worker.
    owners: HashMap<PluginId, usize>,
    next_batch: u64,
}

/// One worker thread, as the coordinator sees it.
struct Worker {
    jobs: Sender<Job>,
    /// Its live plugins plus pending restarts, as of its last job or
    /// dispatch.
    count: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

/// Work for a worker, run on its thread between two dispatches.
type Job = Box<dyn FnOnce(&mut WorkerCtx) + Send>;

/// A worker's state, given to its jobs.
pub(super) struct WorkerCtx {
    host: Host<'static, ()>,
    /// Plugins of a multi-thread load, instantiated and waiting for `init`.
    batches: HashMap<u64, (Vec<OwnedSpec>, Vec<Prepared>)>,
    /// Whether the thread ends after this job.
    stop: bool,
    count: Arc<AtomicUsize>,
    /// The coordinator's waker: pinged when `count` changes.
    coordinator: Ping,
}

impl WorkerCtx {
    /// Publishes the number of live plugins and pending restarts, waking
    /// the coordinator if it changed.
    fn publish_count(&self) {
        let n = self.host.inner.plugins.borrow().len() + self.host.inner.pending_restarts.get();
        if self.count.swap(n, Ordering::SeqCst) != n {
            self.coordinator.ping();
        }
    }
}

/// A [`PluginSpec`] with owned parts, sent to a worker.
struct OwnedSpec {
    component: PluginComponent,
    name: String,
    args: Vec<String>,
}

impl OwnedSpec {
    fn spec(&self) -> PluginSpec<'_> {
        PluginSpec {
            component: &self.component,
            name: &self.name,
            args: &self.args,
        }
    }
}

/// What a worker is started with: the coordinator's settings at the time.
struct Seed {
    engine: PluginEngine,
    shared: Arc<Shared>,
    link: Link,
    restart_default: RestartPolicy,
    restart_overrides: HashMap<String, RestartPolicy>,
    limit_overrides: HashMap<String, Arc<Limits>>,
    count: Arc<AtomicUsize>,
    coordinator: Ping,
}

fn gone(thread: usize) -> HostError {
    HostError::Loop(format!("loop thread {thread} has ended"))
}

impl<'l, Data: 'l> HostInner<'l, Data> {
    /// Whether this host coordinates worker threads.
    pub(super) fn is_threaded(&self) -> bool {
        self.workers.borrow().is_some()
    }

    fn workers(&self) -> Option<std::cell::RefMut<'_, Workers>> {
        std::cell::RefMut::filter_map(self.workers.borrow_mut(), Option::as_mut).ok()
    }

    /// See [`Host::start_threads`].
    pub(super) fn start_threads(self: &Rc<Self>, n: usize) -> Result<(), HostError> {
        if !(1..=MAX_THREADS).contains(&n) {
            return Err(HostError::InvalidName(format!(
                "{n} loop threads: give 1 to {MAX_THREADS}"
            )));
        }
        if self.is_threaded() || self.link.is_some() || n == 1 {
            return match self.thread_count() == n {
                true => Ok(()),
                false => Err(HostError::AlreadyExists(format!(
                    "the host already runs on {} loop thread(s)",
                    self.thread_count()
                ))),
            };
        }
        if !self.plugins.borrow().is_empty() {
            return Err(HostError::Busy(
                "start the loop threads before loading plugins".into(),
            ));
        }
        // The coordinator watches the signals its workers' plugins subscribe to.
        let (watch_tx, watch_rx) = channel::channel::<Signal>();
        let w = Rc::downgrade(self);
        let t = self
            .handle
            .insert_source(watch_rx, move |ev, _, _| {
                if let (ChannelEvent::Msg(sig), Some(inner)) = (ev, w.upgrade())
                    && let Err(e) = inner.watch_signal(sig)
                {
                    tracing::error!("a plugin on a worker thread subscribed to a signal: {e}");
                }
            })
            .map_err(|e| HostError::Loop(e.error.to_string()))?;
        self.aux_tokens.borrow_mut().push(t);
        let mut threads = Vec::new();
        for i in 1..n {
            let count = Arc::new(AtomicUsize::new(0));
            let seed = Seed {
                engine: self.engine.clone(),
                shared: self.shared.clone(),
                link: Link {
                    index: i,
                    exits: self.exits.clone(),
                    exit_tx: self.exit_tx.clone(),
                    alarm: self.alarm.clone(),
                    watch_tx: watch_tx.clone(),
                },
                restart_default: self.restart_default.get(),
                restart_overrides: self.restart_overrides.borrow().clone(),
                limit_overrides: self.limit_overrides.borrow().clone(),
                count: count.clone(),
                coordinator: self.waker.clone(),
            };
            match spawn(i, seed) {
                Ok((jobs, thread)) => threads.push(Worker {
                    jobs,
                    count,
                    thread: Some(thread),
                }),
                Err(e) => {
                    stop_all(&mut threads);
                    return Err(e);
                }
            }
        }
        *self.workers.borrow_mut() = Some(Workers {
            threads,
            pinned: HashMap::new(),
            owners: HashMap::new(),
            next_batch: 0,
        });
        Ok(())
    }

    /// This host's loop thread number, when the host runs several (`None`
    /// with one thread: nothing to tell).
    pub(super) fn thread_index(&self) -> Option<usize> {
        match &self.link {
            Some(l) => Some(l.index),
            None => self.is_threaded().then_some(0),
        }
    }

    /// Number of loop threads (1 without workers).
    pub(super) fn thread_count(&self) -> usize {
        self.workers
            .borrow()
            .as_ref()
            .map_or(1, |w| w.threads.len() + 1)
    }
}

/// Starts worker thread `index`; returns its job sender once its loop and
/// host exist.
fn spawn(index: usize, seed: Seed) -> Result<(Sender<Job>, JoinHandle<()>), HostError> {
    let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<Sender<Job>, String>>(1);
    let thread = std::thread::Builder::new()
        .name(format!("callop-loop-{index}"))
        .spawn(move || worker_main(seed, ready_tx))
        .map_err(|e| HostError::Loop(format!("cannot start loop thread {index}: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(jobs)) => Ok((jobs, thread)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(HostError::Loop(format!("loop thread {index}: {e}")))
        }
        Err(_) => {
            let _ = thread.join();
            Err(gone(index))
        }
    }
}

/// Stops worker threads and waits for them (their hosts unload their
/// plugins and flush their output).
fn stop_all(threads: &mut [Worker]) {
    for w in threads.iter() {
        let _ = w.jobs.send(Box::new(|ctx: &mut WorkerCtx| ctx.stop = true));
    }
    for w in threads.iter_mut() {
        if let Some(t) = w.thread.take() {
            let _ = t.join();
        }
    }
}

/// Blocks every asynchronous signal in the calling thread (a worker): they
/// are received by the coordinator's loop. The signals wasmtime turns into
/// traps (SIGSEGV, SIGBUS, SIGILL, SIGFPE) and SIGTRAP/SIGSYS stay open.
fn block_async_signals() {
    // SAFETY: plain libc calls on a local, initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for s in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGTRAP,
            libc::SIGSYS,
        ] {
            libc::sigdelset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// A worker thread: its loop, its host, its jobs.
fn worker_main(seed: Seed, ready: mpsc::SyncSender<Result<Sender<Job>, String>>) {
    block_async_signals();
    let mut event_loop: EventLoop<'static, ()> = match EventLoop::try_new() {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot create its event loop: {e}")));
            return;
        }
    };
    let host = match Host::build(
        event_loop.handle(),
        seed.engine,
        seed.shared,
        Some(seed.link),
    ) {
        Ok(h) => h,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    host.inner.restart_default.set(seed.restart_default);
    *host.inner.restart_overrides.borrow_mut() = seed.restart_overrides;
    *host.inner.limit_overrides.borrow_mut() = seed.limit_overrides;
    let (jobs_tx, jobs_rx) = channel::channel::<Job>();
    let queue: Rc<RefCell<Vec<Job>>> = Rc::default();
    let closed = Rc::new(std::cell::Cell::new(false));
    let (q, c) = (queue.clone(), closed.clone());
    if let Err(e) = event_loop
        .handle()
        .insert_source(jobs_rx, move |ev, _, _| match ev {
            ChannelEvent::Msg(job) => q.borrow_mut().push(job),
            ChannelEvent::Closed => c.set(true),
        })
    {
        let _ = ready.send(Err(format!("cannot register its job channel: {}", e.error)));
        return;
    }
    let mut ctx = WorkerCtx {
        host,
        batches: HashMap::new(),
        stop: false,
        count: seed.count,
        coordinator: seed.coordinator,
    };
    if ready.send(Ok(jobs_tx)).is_err() {
        return;
    }
    loop {
        let jobs: Vec<Job> = std::mem::take(&mut *queue.borrow_mut());
        for job in jobs {
            job(&mut ctx);
        }
        ctx.publish_count();
        if ctx.stop || closed.get() {
            break;
        }
        if let Err(e) = event_loop.dispatch(None, &mut ()) {
            tracing::error!("loop thread: {e}");
            break;
        }
    }
    // Dropping the host unloads what is left and flushes the output.
    drop(ctx);
}

// The embedding API's side: placement, and asking a worker.
impl<'l, Data: 'l> HostInner<'l, Data> {
    /// The worker thread of plugin `id` (`None`: this thread's, or unknown).
    pub(super) fn remote_owner(&self, id: PluginId) -> Option<usize> {
        self.workers()?.owners.get(&id).copied()
    }

    /// For a plugin a worker thread owns: runs the query `f` on that
    /// worker's host and returns `Some` of its answer (`None` inside if the
    /// thread has ended). `None` for this thread's plugins.
    pub(super) fn ask_owner<R: Send + 'static>(
        &self,
        id: PluginId,
        f: impl FnOnce(&Host<'static, ()>) -> Option<R> + Send + 'static,
    ) -> Option<Option<R>> {
        let t = self.remote_owner(id)?;
        Some(self.ask(t, f).ok().flatten())
    }

    /// Runs `f` on worker thread `thread` (1-based) and waits for its answer.
    fn ask_ctx<R: Send + 'static>(
        &self,
        thread: usize,
        f: impl FnOnce(&mut WorkerCtx) -> R + Send + 'static,
    ) -> Result<R, HostError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |ctx: &mut WorkerCtx| {
            let r = f(ctx);
            // Before answering: whoever asked sees the plugin count the
            // job left (e.g. `is_empty` right after a load).
            ctx.publish_count();
            let _ = tx.send(r);
        });
        self.send_job(thread, job)?;
        rx.recv().map_err(|_| gone(thread))
    }

    /// Runs `f` on the host of worker thread `thread` and waits for its answer.
    pub(super) fn ask<R: Send + 'static>(
        &self,
        thread: usize,
        f: impl FnOnce(&Host<'static, ()>) -> R + Send + 'static,
    ) -> Result<R, HostError> {
        self.ask_ctx(thread, move |ctx| f(&ctx.host))
    }

    fn send_job(&self, thread: usize, job: Job) -> Result<(), HostError> {
        let w = self.workers().ok_or_else(|| gone(thread))?;
        let worker = w.threads.get(thread - 1).ok_or_else(|| gone(thread))?;
        worker.jobs.send(job).map_err(|_| gone(thread))
    }

    /// Runs `f` on the host of every worker thread without waiting.
    pub(super) fn tell_all(&self, f: impl Fn(&Host<'static, ()>) + Clone + Send + 'static) {
        let Some(w) = self.workers() else { return };
        for worker in &w.threads {
            let f = f.clone();
            let _ = worker
                .jobs
                .send(Box::new(move |ctx: &mut WorkerCtx| f(&ctx.host)));
        }
    }

    /// Asks every worker thread (in thread order) and collects the answers
    /// of those that are still running.
    pub(super) fn ask_all<R: Send + 'static>(
        &self,
        f: impl Fn(&Host<'static, ()>) -> R + Clone + Send + 'static,
    ) -> Vec<R> {
        let n = self.thread_count();
        // Send every job first, then wait: the workers answer in parallel.
        let mut waiting = Vec::new();
        for t in 1..n {
            let (tx, rx) = mpsc::sync_channel(1);
            let f = f.clone();
            let job: Job = Box::new(move |ctx: &mut WorkerCtx| {
                let _ = tx.send(f(&ctx.host));
            });
            if self.send_job(t, job).is_ok() {
                waiting.push(rx);
            }
        }
        waiting
            .into_iter()
            .filter_map(|rx| rx.recv().ok())
            .collect()
    }

    /// Whether every worker thread has no plugin and no pending restart.
    pub(super) fn workers_empty(&self) -> bool {
        self.workers.borrow().as_ref().is_none_or(|w| {
            w.threads
                .iter()
                .all(|t| t.count.load(Ordering::SeqCst) == 0)
        })
    }

    /// See [`Host::pin_thread`].
    pub(super) fn pin_thread(&self, name: &str, thread: usize) -> Result<(), HostError> {
        let n = self.thread_count();
        if thread >= n {
            return Err(HostError::NotFound(format!(
                "loop thread {thread} (the host runs {n}: 0 to {})",
                n - 1
            )));
        }
        // With one thread every plugin is on thread 0 anyway.
        if let Some(mut w) = self.workers() {
            w.pinned.insert(name.to_string(), thread);
        }
        Ok(())
    }

    /// See [`Host::thread_of`].
    pub(super) fn thread_of(&self, id: PluginId) -> Option<usize> {
        if let Some(t) = self.remote_owner(id) {
            return Some(t);
        }
        (self.plugins.borrow().contains_key(&id)
            || self
                .exits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|e| e.id == id))
        .then_some(0)
    }

    /// The thread of each spec: pinned, or the one with the fewest plugins.
    fn place(&self, specs: &[PluginSpec<'_>]) -> Vec<usize> {
        let Some(w) = self.workers() else {
            return vec![0; specs.len()];
        };
        let mut load: Vec<usize> =
            std::iter::once(self.plugins.borrow().len() + self.pending_restarts.get())
                .chain(w.threads.iter().map(|t| t.count.load(Ordering::SeqCst)))
                .collect();
        specs
            .iter()
            .map(|s| {
                let t = w.pinned.get(s.name).copied().unwrap_or_else(|| {
                    (0..load.len())
                        .min_by_key(|&i| (load[i], i))
                        .expect("at least one thread")
                });
                load[t] += 1;
                t
            })
            .collect()
    }

    /// [`Host::load_many`] / [`Host::load_many_supervised`] over several
    /// threads (see the module docs). Results in spec order.
    #[allow(clippy::type_complexity)]
    pub(super) fn load_many_threaded(
        self: &Rc<Self>,
        specs: &[PluginSpec<'_>],
        supervised: bool,
    ) -> Result<Vec<Result<PluginId, LoadError>>, (String, LoadError)> {
        self.register_names(specs)?;
        let forget_names = || {
            let mut reg = self.shared.registry();
            for s in specs {
                reg.remove_instance(s.name);
            }
        };
        let threads = self.place(specs);
        let batch = {
            let mut w = self.workers().expect("threaded");
            w.next_batch += 1;
            w.next_batch
        };
        // 2. Every thread instantiates its share (the workers in parallel).
        let mut waiting = Vec::new();
        for t in 1..self.thread_count() {
            let owned: Vec<OwnedSpec> = specs
                .iter()
                .zip(&threads)
                .filter(|(_, th)| **th == t)
                .map(|(s, _)| OwnedSpec {
                    component: s.component.clone(),
                    name: s.name.to_string(),
                    args: s.args.to_vec(),
                })
                .collect();
            if owned.is_empty() {
                continue;
            }
            let grants: Vec<(String, Capabilities)> = {
                let mut g = self.grants.borrow_mut();
                owned
                    .iter()
                    .filter_map(|o| g.remove(&o.name).map(|c| (o.name.clone(), c)))
                    .collect()
            };
            let (tx, rx) = mpsc::sync_channel(1);
            let job: Job = Box::new(move |ctx: &mut WorkerCtx| {
                for (name, caps) in grants {
                    ctx.host.grant(&name, caps);
                }
                let specs: Vec<PluginSpec<'_>> = owned.iter().map(OwnedSpec::spec).collect();
                let r = ctx.host.inner.prepare(&specs, supervised);
                drop(specs);
                let r = r.map(|prepared| {
                    ctx.batches.insert(batch, (owned, prepared));
                });
                ctx.publish_count();
                let _ = tx.send(r);
            });
            match self.send_job(t, job) {
                Ok(()) => waiting.push((t, rx)),
                Err(e) => {
                    self.abort_batch(batch, &waiting);
                    forget_names();
                    return Err((String::new(), LoadError::Link(e.to_string())));
                }
            }
        }
        let mine: Vec<PluginSpec<'_>> = specs
            .iter()
            .zip(&threads)
            .filter(|(_, t)| **t == 0)
            .map(|(s, _)| *s)
            .collect();
        let (local, mut failure) = match self.prepare(&mine, supervised) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        };
        let mut started = Vec::new();
        for (t, rx) in &waiting {
            match rx.recv() {
                Ok(Ok(())) => started.push(*t),
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(_) => {
                    failure.get_or_insert((String::new(), LoadError::Link(gone(*t).to_string())));
                }
            }
        }
        if let Some(e) = failure {
            // Unsupervised (or a thread gone): nothing starts.
            drop(local);
            let asked: Vec<_> = started.iter().map(|t| (*t, ())).collect();
            self.abort_batch(batch, &asked);
            forget_names();
            return Err(e);
        }
        // 3. init, every thread its share, at the same time.
        let mut answers = Vec::new();
        for &t in &started {
            let (tx, rx) = mpsc::sync_channel(1);
            let job: Job = Box::new(move |ctx: &mut WorkerCtx| {
                let Some((owned, prepared)) = ctx.batches.remove(&batch) else {
                    let _ = tx.send(Vec::new());
                    return;
                };
                let specs: Vec<PluginSpec<'_>> = owned.iter().map(OwnedSpec::spec).collect();
                let r = ctx.host.inner.start_prepared(&specs, prepared);
                ctx.publish_count();
                let _ = tx.send(r);
            });
            if self.send_job(t, job).is_ok() {
                answers.push((t, rx));
            }
        }
        let mut by_thread: HashMap<usize, std::vec::IntoIter<Result<PluginId, LoadError>>> =
            HashMap::new();
        by_thread.insert(
            0,
            self.start_prepared(&mine, local.unwrap_or_default())
                .into_iter(),
        );
        for (t, rx) in answers {
            let r = rx.recv().unwrap_or_default();
            by_thread.insert(t, r.into_iter());
        }
        let mut out = Vec::new();
        let mut w = self.workers().expect("threaded");
        for t in threads {
            let r = by_thread
                .get_mut(&t)
                .and_then(Iterator::next)
                .unwrap_or_else(|| Err(LoadError::Link(gone(t).to_string())));
            if let (Ok(id), true) = (&r, t > 0) {
                w.owners.insert(*id, t);
            }
            out.push(r);
        }
        Ok(out)
    }

    /// Drops what the threads in `asked` prepared for `batch`.
    fn abort_batch<T>(&self, batch: u64, asked: &[(usize, T)]) {
        for (t, _) in asked {
            let _ = self.send_job(
                *t,
                Box::new(move |ctx: &mut WorkerCtx| {
                    ctx.batches.remove(&batch);
                }),
            );
        }
    }

    /// Stops the worker threads (the host is dropped).
    pub(super) fn stop_threads(&self) {
        if let Some(mut w) = self.workers.borrow_mut().take() {
            stop_all(&mut w.threads);
        }
    }

    /// On a worker: asks the coordinator to watch `signal`.
    pub(super) fn forward_watch(&self, signal: Signal) -> Option<Result<(), String>> {
        self.link.as_ref().map(|link| {
            link.watch_tx
                .send(signal)
                .map_err(|_| format!("cannot watch {signal:?}: the first loop thread ended"))
        })
    }

    /// The shutdown grace's deadline is every thread's: see [`Host::shutdown`].
    pub(super) fn shutdown_workers(&self, grace: Duration) {
        self.tell_all(move |h| h.shutdown(grace));
    }
}
