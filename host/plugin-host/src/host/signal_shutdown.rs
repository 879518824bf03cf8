//! [`SignalShutdown`]: shutting a [`Host`] down on SIGINT/SIGTERM, the way
//! `callop-host` does.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use callop::signals::{Signal, Signals};
use callop::{EventLoop, LoopHandle, RegistrationToken};

use super::Host;

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
    token: Option<RegistrationToken>,
    watched: Vec<Signal>,
    /// Signals received by the source, not handled yet.
    received: Rc<RefCell<Vec<Signal>>>,
    grace: Duration,
    forever: bool,
    /// SIGINT/SIGTERM received that no plugin took.
    host_signals: u32,
    /// How many of those were acted on.
    handled: u32,
}

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
        let source = Signals::new(&watched).map_err(SignalShutdownError)?;
        let received = Rc::new(RefCell::new(Vec::new()));
        let queue = Rc::clone(&received);
        // Handled after the dispatch (`handle_pending`): the host is not
        // reachable from a source's callback.
        let token = handle
            .insert_source(source, move |ev, _, _| {
                tracing::info!("received {:?}", ev.signal());
                queue.borrow_mut().push(ev.signal());
            })
            .map_err(|e| SignalShutdownError(e.error))?;
        Ok(SignalShutdown {
            handle: handle.clone(),
            token: Some(token),
            watched,
            received,
            grace,
            forever: false,
            host_signals: 0,
            handled: 0,
        })
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
        let received = std::mem::take(&mut *self.received.borrow_mut());
        for sig in received {
            let host_owned = matches!(sig, Signal::SIGINT | Signal::SIGTERM);
            let delivered = host.deliver_signal(sig);
            if host_owned && !delivered {
                self.host_signals += 1;
            } else if !delivered {
                tracing::debug!("{sig:?}: no plugin subscribed");
            }
        }
        if self.host_signals > self.handled {
            self.handled = self.host_signals;
            if self.handled == 1 {
                tracing::info!("shutting down (grace {:?})", self.grace);
                host.shutdown(self.grace);
            } else {
                tracing::warn!("second signal: exiting now");
            }
        }
        self.phase()
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
        loop {
            let phase = self.handle_pending(host);
            if phase == ShutdownPhase::ForcedExit {
                for (id, _) in host.plugins() {
                    host.unload(id);
                }
                return Ok(RunEnd::Forced);
            }
            if host.is_empty() && (!self.forever || phase == ShutdownPhase::ShuttingDown) {
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
        if let Some(t) = self.token.take() {
            self.handle.remove(t);
        }
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
