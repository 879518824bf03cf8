//! [`SignalShutdown`]: shutting a [`Host`] down on SIGINT/SIGTERM, the way
//! `callop-host` does.
//!
//! SIGINT and SIGTERM are received by a watcher thread of its own (a small
//! callop loop with a signal source), not by the application's loop: the
//! watcher acts at once even while the loop thread is busy in a guest that
//! spins or blocks. On the first signal it raises the host's
//! [`Alarm`](crate::alarm::Alarm) for the shutdown deadline (every guest call
//! still running then is interrupted), on the second for now; then it
//! forwards the signal to the loop, where [`SignalShutdown::handle_pending`]
//! calls the plugins' `shutdown` and ends the rest. Optionally
//! ([`SignalShutdown::exit_if_stuck`]) it exits the process if the loop does
//! not come back in time.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use callop::channel::{Channel, Event as ChannelEvent};
use callop::ping::Ping;
use callop::signals::{Signal, Signals};
use callop::{EventLoop, LoopHandle, RegistrationToken};

use super::{ExitReason, Host, PluginExit};
use crate::alarm::{Alarm, AlarmCause};

/// Where a [`SignalShutdown`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownPhase {
    /// No SIGINT/SIGTERM was left to the host yet.
    Running,
    /// The first one was: every plugin's `shutdown` has been called; the
    /// shutdown is finished when [`Host::is_empty`] (each plugin ended by
    /// itself or was unloaded at the deadline).
    ShuttingDown,
    /// A second one was: the embedder should stop at once.
    ForcedExit,
}

/// How [`SignalShutdown::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// Every plugin ended by itself, no shutdown was asked for.
    Finished,
    /// A signal started the graceful shutdown and every plugin has ended.
    ShutDown,
    /// A second signal came: the plugins still alive were unloaded
    /// ([`ExitReason::Unloaded`](crate::ExitReason::Unloaded)).
    Forced,
}

/// The signals could not be watched (see [`SignalShutdown::new`]).
#[derive(Debug)]
pub struct SignalShutdownError(callop::Error);

impl fmt::Display for SignalShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SignalShutdownError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl From<std::io::Error> for SignalShutdownError {
    fn from(e: std::io::Error) -> Self {
        SignalShutdownError(callop::Error::IoError(e))
    }
}

/// What the watcher thread and the loop share.
struct Watch {
    grace: Duration,
    /// SIGINT/SIGTERM granted to plugins: only forwarded (whether it is a
    /// shutdown request depends on the plugins subscribed, which the loop
    /// knows).
    granted: Vec<Signal>,
    /// The attached host's alarm.
    alarm: Mutex<Option<Arc<Alarm>>>,
    /// Shutdown requests the watcher counted.
    count: AtomicU32,
    /// When the first one came.
    first_at: Mutex<Option<Instant>>,
    /// The number of the last SIGINT/SIGTERM received (0: none).
    last_signal: AtomicI32,
    /// See [`SignalShutdown::exit_if_stuck`].
    exit_if_stuck: Mutex<Option<Duration>>,
    /// The run is over: no more forced process exit.
    done: AtomicBool,
    /// See [`SignalShutdown::exit_before_run`].
    exit_before_run: AtomicBool,
    /// [`SignalShutdown::handle_pending`] was called: the run has begun.
    started: AtomicBool,
}

impl Watch {
    /// What the watcher does with a SIGINT/SIGTERM, on its own thread.
    fn on_signal(self: &Arc<Self>, sig: Signal) {
        self.last_signal.store(sig as i32, Ordering::SeqCst);
        if self.granted.contains(&sig) {
            return;
        }
        if self.exit_before_run.load(Ordering::SeqCst) && !self.started.load(Ordering::SeqCst) {
            exit_now(sig);
        }
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        let now = Instant::now();
        let until = if n == 1 {
            *self.first_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
            now + self.grace
        } else {
            now
        };
        self.raise(n);
        let margin = *self.exit_if_stuck.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(margin) = margin {
            self.watchdog(until + margin, sig);
        }
    }

    /// Raises the alarm of the attached host for the `n`-th request.
    fn raise(&self, n: u32) {
        let alarm = self.alarm.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let first = *self.first_at.lock().unwrap_or_else(|e| e.into_inner());
        match (alarm, first) {
            (Some(a), _) if n >= 2 => a.raise(Instant::now(), AlarmCause::Forced),
            (Some(a), Some(t)) if n == 1 => a.raise(t + self.grace, AlarmCause::ShutdownDeadline),
            _ => {}
        }
    }

    /// Exits the process at `at` unless the run is over by then.
    fn watchdog(self: &Arc<Self>, at: Instant, sig: Signal) {
        let me = Arc::clone(self);
        let r = std::thread::Builder::new()
            .name("callop-watchdog".into())
            .spawn(move || {
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                if !me.done.load(Ordering::SeqCst) {
                    eprintln!(
                        "error: the event loop did not stop after {sig:?} in time: exiting now"
                    );
                    std::process::exit(128 + sig as i32);
                }
            });
        if let Err(e) = r {
            tracing::warn!("cannot start the shutdown watchdog: {e}");
        }
    }

    /// The shutdown grace left at this moment.
    fn grace_left(&self) -> Duration {
        match *self.first_at.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(t) => self.grace.saturating_sub(t.elapsed()),
            None => self.grace,
        }
    }
}

/// Exits the process for `sig` before the run began (see
/// [`SignalShutdown::exit_before_run`]): says so on stderr, gives the output
/// queues 200 ms, and exits with 128 + the signal's number.
fn exit_now(sig: Signal) -> ! {
    use std::io::Write as _;
    let _ = writeln!(
        crate::output::stderr(),
        "interrupted by {sig:?} before the plugins ran: exiting"
    );
    crate::output::flush(Duration::from_millis(200));
    std::process::exit(128 + sig as i32);
}

/// The watcher thread: receives SIGINT/SIGTERM with a loop of its own,
/// acts on them ([`Watch::on_signal`]) and forwards them to `tx`.
fn start_watcher(
    watch: Arc<Watch>,
    tx: callop::channel::Sender<Signal>,
) -> Result<(Ping, JoinHandle<()>), SignalShutdownError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("callop-signals".into())
        .spawn(move || {
            let setup = || -> Result<(EventLoop<'static, bool>, Ping), callop::Error> {
                let event_loop = EventLoop::try_new()?;
                let signals = Signals::new(&[Signal::SIGINT, Signal::SIGTERM])?;
                let (ping, stop) = callop::ping::make_ping()?;
                let h = event_loop.handle();
                h.insert_source(signals, move |ev, _, _| {
                    let sig = ev.signal();
                    watch.on_signal(sig);
                    let _ = tx.send(sig);
                })
                .map_err(|e| e.error)?;
                h.insert_source(stop, |_, _, quit| *quit = true)
                    .map_err(|e| e.error)?;
                Ok((event_loop, ping))
            };
            let mut event_loop = match setup() {
                Ok((l, ping)) => {
                    let _ = ready_tx.send(Ok(ping));
                    l
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut quit = false;
            while !quit {
                if let Err(e) = event_loop.dispatch(None, &mut quit) {
                    tracing::error!("signal watcher: {e}");
                    return;
                }
            }
        })?;
    match ready_rx.recv() {
        Ok(Ok(ping)) => Ok((ping, thread)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(SignalShutdownError(e))
        }
        Err(_) => {
            let _ = thread.join();
            Err(SignalShutdownError(callop::Error::OtherError(
                "the signal watcher thread ended".into(),
            )))
        }
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread (threads started later
/// inherit it): they are received only by the watcher's signal source.
fn block_int_term() -> std::io::Result<()> {
    // SAFETY: `set` is a valid, initialised signal set for the calls below;
    // `pthread_sigmask` with a null old-set pointer only changes this
    // thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        match libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) {
            0 => Ok(()),
            e => Err(std::io::Error::from_raw_os_error(e)),
        }
    }
}

/// Shutting a [`Host`] down on SIGINT/SIGTERM, the way `callop-host` does:
/// the first signal calls every plugin's graceful `shutdown` with a
/// deadline ([`Host::shutdown`]); a second one asks to exit at once.
///
/// It is a signal source of the application's loop. It must
/// be created before the host (and before any other thread) so that the
/// signals are blocked in every thread the process starts later, then
/// [attached](SignalShutdown::attach) to the host. Signals granted to
/// plugins ([`Capabilities::allow_signal`](crate::Capabilities::allow_signal))
/// go through the same source: name them when creating it. A granted
/// SIGINT/SIGTERM goes to the plugins subscribed to it; only when no plugin
/// takes it does it count as a shutdown request.
///
/// ```no_run
/// use std::time::Duration;
/// use callop::EventLoop;
/// use callop_plugin_host::{Host, HostConfig, RunEnd, SignalShutdown};
///
/// let mut event_loop: EventLoop<()> = EventLoop::try_new()?;
/// // First, while this is the only thread: SIGINT and SIGTERM (plus the
/// // signals granted to plugins, none here) are watched by the loop.
/// let mut signals = SignalShutdown::new(&event_loop.handle(), Duration::from_secs(2), &[])?;
/// let host = Host::new(event_loop.handle(), HostConfig::default())?;
/// signals.attach(&host);
/// host.load_file("ticker.wasm", "ticker", &[])?;
/// // Dispatches until every plugin ended, or a signal shut them down.
/// match signals.run(&mut event_loop, &host, &mut ())? {
///     RunEnd::Finished => println!("every plugin finished"),
///     RunEnd::ShutDown => println!("shut down gracefully"),
///     RunEnd::Forced => println!("second signal: the rest was unloaded"),
/// }
/// for exit in host.exits() {
///     println!("{}: {}", exit.name, exit.reason);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// An embedder running its own loop calls
/// [`handle_pending`](SignalShutdown::handle_pending) after each dispatch
/// instead of [`run`](SignalShutdown::run), and reads the
/// [`ShutdownPhase`] it returns.
///
/// Dropping it removes its source from the loop.
pub struct SignalShutdown<'l, Data> {
    handle: LoopHandle<'l, Data>,
    /// The loop sources: the watcher's forwarding channel, and the granted
    /// signals other than SIGINT/SIGTERM.
    tokens: Vec<RegistrationToken>,
    watch: Arc<Watch>,
    /// Stops the watcher thread.
    stop: Ping,
    watcher: Option<JoinHandle<()>>,
    watched: Vec<Signal>,
    /// Signals received by the source, not handled yet.
    received: Rc<RefCell<Vec<Signal>>>,
    grace: Duration,
    forever: bool,
    /// SIGINT/SIGTERM received that no plugin took.
    host_signals: u32,
    /// How many of those were acted on.
    handled: u32,
    /// The embedder's hook, run at the end of each `handle_pending`.
    hook: Option<PendingHook<'l, Data>>,
}

/// See [`SignalShutdown::on_pending`].
type PendingHook<'l, Data> = Box<dyn FnMut(&Host<'l, Data>, &[Signal], ShutdownPhase) + 'l>;

impl<'l, Data: 'l> fmt::Debug for SignalShutdown<'l, Data> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalShutdown")
            .field("watched", &self.watched)
            .field("grace", &self.grace)
            .field("forever", &self.forever)
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

impl<'l, Data: 'l> SignalShutdown<'l, Data> {
    /// Watches SIGINT, SIGTERM and `granted` (the signals granted to
    /// plugins) with a source on `handle`; a shutdown gives the plugins
    /// `grace` to finish.
    ///
    /// Call it before creating the [`Host`] or any other thread: the
    /// signals are blocked in the calling thread, and only threads started
    /// afterwards inherit that (a thread started before could receive, and
    /// die of, a SIGTERM).
    pub fn new(
        handle: &LoopHandle<'l, Data>,
        grace: Duration,
        granted: &[Signal],
    ) -> Result<Self, SignalShutdownError> {
        let mut watched = vec![Signal::SIGINT, Signal::SIGTERM];
        for s in granted {
            if !watched.contains(s) {
                watched.push(*s);
            }
        }
        let received = Rc::new(RefCell::new(Vec::new()));
        let mut tokens = Vec::new();
        // Granted signals other than SIGINT/SIGTERM: a source of this loop.
        let others: Vec<Signal> = watched[2..].to_vec();
        if !others.is_empty() {
            let source = Signals::new(&others).map_err(SignalShutdownError)?;
            let queue = Rc::clone(&received);
            // Handled after the dispatch (`handle_pending`): the host is not
            // reachable from a source's callback.
            let t = handle
                .insert_source(source, move |ev, _, _| {
                    tracing::info!("received {:?}", ev.signal());
                    queue.borrow_mut().push(ev.signal());
                })
                .map_err(|e| SignalShutdownError(e.error))?;
            tokens.push(t);
        }
        // SIGINT/SIGTERM: the watcher thread, forwarding through a channel.
        block_int_term()?;
        let (tx, rx): (_, Channel<Signal>) = callop::channel::channel();
        let queue = Rc::clone(&received);
        let t = handle
            .insert_source(rx, move |ev, _, _| {
                if let ChannelEvent::Msg(sig) = ev {
                    tracing::info!("received {sig:?}");
                    queue.borrow_mut().push(sig);
                }
            })
            .map_err(|e| SignalShutdownError(e.error))?;
        tokens.push(t);
        let watch = Arc::new(Watch {
            grace,
            granted: granted
                .iter()
                .copied()
                .filter(|s| matches!(s, Signal::SIGINT | Signal::SIGTERM))
                .collect(),
            alarm: Mutex::new(None),
            count: AtomicU32::new(0),
            first_at: Mutex::new(None),
            last_signal: AtomicI32::new(0),
            exit_if_stuck: Mutex::new(None),
            done: AtomicBool::new(false),
            exit_before_run: AtomicBool::new(false),
            started: AtomicBool::new(false),
        });
        let (stop, watcher) = match start_watcher(Arc::clone(&watch), tx) {
            Ok(w) => w,
            Err(e) => {
                for t in tokens {
                    handle.remove(t);
                }
                return Err(e);
            }
        };
        Ok(SignalShutdown {
            handle: handle.clone(),
            tokens,
            watch,
            stop,
            watcher: Some(watcher),
            watched,
            received,
            grace,
            forever: false,
            host_signals: 0,
            handled: 0,
            hook: None,
        })
    }

    /// Runs `hook` at the end of every [`handle_pending`](Self::handle_pending)
    /// (in [`run`](Self::run): after every dispatch of the loop), with the
    /// host, the signals received since the last call that no plugin took
    /// (other than SIGINT/SIGTERM; often none) and the phase. For operator
    /// controls of the embedder: `callop-host` reloads its plugins there on
    /// an unclaimed SIGHUP and for `--watch` (refusing while the phase is
    /// not [`ShutdownPhase::Running`]).
    pub fn on_pending(
        mut self,
        hook: impl FnMut(&Host<'l, Data>, &[Signal], ShutdownPhase) + 'l,
    ) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }

    /// With `Some(margin)`, the process exits (status 128 + the signal's
    /// number) if [`run`](Self::run) has not returned `margin` after the
    /// shutdown deadline of a first SIGINT/SIGTERM, or `margin` after a
    /// second one — for a loop stuck where no alarm reaches it. Off by
    /// default (an embedder's process is its own); `callop-host` turns it on.
    pub fn exit_if_stuck(self, margin: Option<Duration>) -> Self {
        *self
            .watch
            .exit_if_stuck
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = margin;
        self
    }

    /// With `true`, a SIGINT/SIGTERM (not granted to a plugin) that comes
    /// before the run began — before the first [`run`](Self::run) or
    /// [`handle_pending`](Self::handle_pending), while the embedder still
    /// compiles or starts plugins, which no alarm interrupts — exits the
    /// process at once, status 128 + the signal's number (130 for SIGINT),
    /// after giving the [output queues](crate::output) 200 ms. Off by
    /// default (an embedder's process is its own; the signal is then acted
    /// on when the run begins); `callop-host` turns it on, so that Ctrl-C
    /// during a first, long compile works.
    pub fn exit_before_run(self, on: bool) -> Self {
        self.watch.exit_before_run.store(on, Ordering::SeqCst);
        self
    }

    /// The last SIGINT or SIGTERM received, if any.
    pub fn last_signal(&self) -> Option<Signal> {
        match self.watch.last_signal.load(Ordering::SeqCst) {
            libc::SIGINT => Some(Signal::SIGINT),
            libc::SIGTERM => Some(Signal::SIGTERM),
            _ => None,
        }
    }

    /// The process exit status for a run that ended with `end` and these
    /// plugin exits, by `callop-host`'s rules: [`signal_status`] if the
    /// run was ended by a signal, otherwise the first non-zero
    /// [`exit_status`] of the plugins (a failure is 1); 0 if there is none —
    /// a graceful shutdown in which every plugin ended in time is a success.
    ///
    /// [`signal_status`]: Self::signal_status
    pub fn exit_code(&self, end: RunEnd, exits: &[PluginExit]) -> u8 {
        self.signal_status(end, exits).unwrap_or_else(|| {
            exits
                .iter()
                .map(|e| exit_status(&e.reason))
                .find(|c| *c != 0)
                .unwrap_or(0)
        })
    }

    /// The status of a run a signal ended by force — a second signal, or a
    /// shutdown in which a plugin had to be ended at the deadline: 128 + the
    /// signal's number (130 for SIGINT, 143 for SIGTERM), as a shell reports
    /// a process killed by it. `None` for any other end.
    pub fn signal_status(&self, end: RunEnd, exits: &[PluginExit]) -> Option<u8> {
        let killed = exits
            .iter()
            .any(|e| e.reason == ExitReason::ShutdownTimeout);
        let by_signal = end == RunEnd::Forced || (end == RunEnd::ShutDown && killed);
        by_signal.then(|| self.last_signal().map_or(1, |sig| 128 + sig as u8))
    }

    /// With `true`, [`run`](Self::run) keeps running when no plugin is
    /// left, until a signal (`callop-host --forever`).
    pub fn forever(mut self, on: bool) -> Self {
        self.forever = on;
        self
    }

    /// The signals its source watches.
    pub fn watched(&self) -> &[Signal] {
        &self.watched
    }

    /// Tells `host` that these signals come from this source (so it creates
    /// no signal source of its own for plugins subscribing to them). Call
    /// it before loading plugins.
    pub fn attach(&self, host: &Host<'l, Data>) {
        host.watch_signals_externally(&self.watched);
        *self.watch.alarm.lock().unwrap_or_else(|e| e.into_inner()) = Some(host.alarm());
        // A request that came before: raise the alarm for it now.
        let n = self.watch.count.load(Ordering::SeqCst);
        if n > 0 {
            self.watch.raise(n);
        }
    }

    /// Where the state machine stands.
    pub fn phase(&self) -> ShutdownPhase {
        match self.host_signals {
            0 => ShutdownPhase::Running,
            1 => ShutdownPhase::ShuttingDown,
            _ => ShutdownPhase::ForcedExit,
        }
    }

    /// Handles the signals received since the last call: each goes to the
    /// plugins subscribed to it; a SIGINT/SIGTERM no plugin takes is a
    /// shutdown request: the first calls [`Host::shutdown`] with the grace
    /// period, a second makes the phase [`ShutdownPhase::ForcedExit`].
    /// Call it after every dispatch of the loop.
    pub fn handle_pending(&mut self, host: &Host<'l, Data>) -> ShutdownPhase {
        self.watch.started.store(true, Ordering::SeqCst);
        let received = std::mem::take(&mut *self.received.borrow_mut());
        let mut unclaimed = Vec::new();
        for sig in received {
            let host_owned = matches!(sig, Signal::SIGINT | Signal::SIGTERM);
            let delivered = host.deliver_signal(sig);
            if host_owned && !delivered {
                self.host_signals += 1;
            } else if !delivered {
                tracing::debug!("{sig:?}: no plugin subscribed");
                unclaimed.push(sig);
            }
        }
        if self.host_signals > self.handled {
            self.handled = self.host_signals;
            if self.handled == 1 {
                // The grace counts from the signal (the loop may have been
                // busy in a guest when it came).
                let grace = self.watch.grace_left();
                tracing::info!("shutting down (grace {grace:?})");
                host.shutdown(grace);
            } else {
                tracing::warn!("second signal: exiting now");
            }
        }
        let phase = self.phase();
        if let Some(hook) = self.hook.as_mut() {
            hook(host, &unclaimed, phase);
        }
        phase
    }

    /// Dispatches `event_loop` (with `data`) until every plugin of `host`
    /// ended — by itself ([`RunEnd::Finished`], unless
    /// [`forever`](Self::forever)) or after a signal's graceful shutdown
    /// ([`RunEnd::ShutDown`]) — or a second signal came
    /// ([`RunEnd::Forced`]: the plugins still alive are unloaded, so that
    /// [`Host::exits`] lists every plugin). The exit condition is checked
    /// before every (blocking) dispatch, so plugins that all ended inside
    /// `init` end the run at once.
    pub fn run(
        &mut self,
        event_loop: &mut EventLoop<'l, Data>,
        host: &Host<'l, Data>,
        data: &mut Data,
    ) -> Result<RunEnd, callop::Error> {
        let r = self.run_inner(event_loop, host, data);
        self.watch.done.store(true, Ordering::SeqCst);
        r
    }

    fn run_inner(
        &mut self,
        event_loop: &mut EventLoop<'l, Data>,
        host: &Host<'l, Data>,
        data: &mut Data,
    ) -> Result<RunEnd, callop::Error> {
        loop {
            let phase = self.handle_pending(host);
            if phase == ShutdownPhase::ForcedExit {
                for (id, _) in host.plugins() {
                    host.unload(id);
                }
                return Ok(RunEnd::Forced);
            }
            if host.is_empty() && (!self.forever || phase == ShutdownPhase::ShuttingDown) {
                // A second signal the watcher acted on (it interrupted the
                // last plugin) may not have been forwarded yet.
                if self.watch.count.load(Ordering::SeqCst) >= 2 {
                    tracing::warn!("second signal: exiting now");
                    return Ok(RunEnd::Forced);
                }
                return Ok(match phase {
                    ShutdownPhase::Running => RunEnd::Finished,
                    _ => RunEnd::ShutDown,
                });
            }
            event_loop.dispatch(None, data)?;
        }
    }
}

impl<Data> Drop for SignalShutdown<'_, Data> {
    fn drop(&mut self) {
        self.watch.done.store(true, Ordering::SeqCst);
        for t in self.tokens.drain(..) {
            self.handle.remove(t);
        }
        self.stop.ping();
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
    }
}

/// The process exit status of one plugin exit: 0 for `Finished`,
/// `Unloaded` and `ShutdownTimeout`, 1 for a failure, and for `Stopped(code)`
/// the code modulo 256 as a shell takes it (`-1` is 255), except that a
/// non-zero code never becomes 0 (`256` and `-256` are 1).
pub fn exit_status(reason: &ExitReason) -> u8 {
    match reason {
        ExitReason::Trapped(_) | ExitReason::Quarantined(_) => 1,
        ExitReason::Stopped(c) => match (*c as u8, *c) {
            (0, 0) => 0,
            (0, _) => 1,
            (b, _) => b,
        },
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HostConfig;

    /// A loop, a shutdown source and a host without plugins. Signals are
    /// injected as if the source had received them (sending real ones
    /// would reach the test harness's other threads).
    fn setup(
        forever: bool,
    ) -> (
        EventLoop<'static, ()>,
        SignalShutdown<'static, ()>,
        Host<'static, ()>,
    ) {
        let event_loop = EventLoop::try_new().unwrap();
        let signals = SignalShutdown::new(
            &event_loop.handle(),
            Duration::from_millis(50),
            &[Signal::SIGHUP],
        )
        .unwrap()
        .forever(forever);
        let host = Host::new(event_loop.handle(), HostConfig::default()).unwrap();
        signals.attach(&host);
        (event_loop, signals, host)
    }

    #[test]
    fn watches_int_term_and_the_granted_signals_once() {
        let (_l, s, _h) = setup(false);
        assert_eq!(
            s.watched(),
            &[Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]
        );
        let l: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
        let s2 = SignalShutdown::new(&l.handle(), Duration::ZERO, &[Signal::SIGTERM]).unwrap();
        assert_eq!(s2.watched(), &[Signal::SIGINT, Signal::SIGTERM]);
    }

    #[test]
    fn first_signal_shuts_down_second_forces_exit() {
        let (_l, mut s, h) = setup(false);
        assert_eq!(s.handle_pending(&h), ShutdownPhase::Running);
        // A granted signal nobody subscribed to is not a shutdown request.
        s.received.borrow_mut().push(Signal::SIGHUP);
        assert_eq!(s.handle_pending(&h), ShutdownPhase::Running);
        s.received.borrow_mut().push(Signal::SIGTERM);
        assert_eq!(s.handle_pending(&h), ShutdownPhase::ShuttingDown);
        assert_eq!(s.handle_pending(&h), ShutdownPhase::ShuttingDown);
        s.received.borrow_mut().push(Signal::SIGINT);
        assert_eq!(s.handle_pending(&h), ShutdownPhase::ForcedExit);
        assert_eq!(s.phase(), ShutdownPhase::ForcedExit);
    }

    #[test]
    fn two_signals_at_once_force_exit() {
        let (_l, mut s, h) = setup(false);
        s.received
            .borrow_mut()
            .extend([Signal::SIGTERM, Signal::SIGTERM]);
        assert_eq!(s.handle_pending(&h), ShutdownPhase::ForcedExit);
    }

    #[test]
    fn run_ends_at_once_when_no_plugin_is_left() {
        let (mut l, mut s, h) = setup(false);
        assert_eq!(s.run(&mut l, &h, &mut ()).unwrap(), RunEnd::Finished);
    }

    #[test]
    fn run_forever_ends_with_the_shutdown_or_the_second_signal() {
        let (mut l, mut s, h) = setup(true);
        s.received.borrow_mut().push(Signal::SIGTERM);
        assert_eq!(s.run(&mut l, &h, &mut ()).unwrap(), RunEnd::ShutDown);
        let (mut l, mut s, h) = setup(true);
        s.received
            .borrow_mut()
            .extend([Signal::SIGINT, Signal::SIGTERM]);
        assert_eq!(s.run(&mut l, &h, &mut ()).unwrap(), RunEnd::Forced);
    }
}
