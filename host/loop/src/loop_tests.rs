//! Behaviour tests of the loop core: dispatch, insertion and removal from callbacks, tokens,
//! modes, idles, signals, lifecycle hooks, nesting and timers. Every fd test uses a real
//! `socketpair`.

use std::{
    cell::{Cell, RefCell},
    os::fd::{AsRawFd, OwnedFd},
    rc::Rc,
    sync::mpsc,
    time::{Duration, Instant},
};

use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};

use crate::{
    Dispatcher, Error, EventLoop, EventSource, Interest, LoopHandle, Mode, Poll, PostAction,
    Readiness, RegistrationToken, Token, TokenFactory,
    generic::{FdWrapper, Generic},
    ping::{Ping, PingError, PingSource, make_ping},
    timer::{TimeoutAction, Timer},
};

/// A connected, non-blocking pair of Unix stream sockets.
fn pair() -> (OwnedFd, OwnedFd) {
    socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .unwrap()
}

fn put(fd: &OwnedFd, bytes: &[u8]) {
    assert_eq!(rustix::io::write(fd, bytes).unwrap(), bytes.len());
}

fn take(fd: &OwnedFd) -> usize {
    let mut buf = [0u8; 64];
    rustix::io::read(fd, &mut buf).unwrap_or(0)
}

/// Inserts a `Generic` on `fd` that counts its callbacks in `data` (and never reads).
fn counting<'l>(handle: &LoopHandle<'l, u32>, fd: OwnedFd, mode: Mode) -> RegistrationToken {
    counting_then(handle, fd, mode, PostAction::Continue)
}

/// As [`counting`], with the callback answering `then` instead of `Continue`.
fn counting_then<'l>(
    handle: &LoopHandle<'l, u32>,
    fd: OwnedFd,
    mode: Mode,
    then: PostAction,
) -> RegistrationToken {
    handle
        .insert_source(
            Generic::new(fd, Interest::READ, mode),
            move |_, _, n: &mut u32| {
                *n += 1;
                Ok(then)
            },
        )
        .unwrap()
}

/// Inserts a level-triggered counting `Generic` on `fd` whose callback, after counting, calls
/// `on_call` with a handle and the source's own token.
fn counting_with_own_token<'l>(
    handle: &LoopHandle<'l, u32>,
    fd: OwnedFd,
    on_call: impl Fn(&LoopHandle<'l, u32>, RegistrationToken) + 'l,
) -> RegistrationToken {
    let me: Rc<Cell<Option<RegistrationToken>>> = Rc::default();
    let me2 = me.clone();
    let inner_handle = handle.clone();
    let token = handle
        .insert_source(
            Generic::new(fd, Interest::READ, Mode::Level),
            move |_, _, n| {
                *n += 1;
                on_call(&inner_handle, me2.get().unwrap());
                Ok(PostAction::Continue)
            },
        )
        .unwrap();
    me.set(Some(token));
    token
}

/// Inserts a level-triggered `Generic` on `fd` that records the readiness of its one call in
/// `data`, then removes itself.
fn recording_readiness(event_loop: &EventLoop<'_, Option<Readiness>>, fd: OwnedFd) {
    event_loop
        .handle()
        .insert_source(
            Generic::new(fd, Interest::READ, Mode::Level),
            |r, _, seen| {
                *seen = Some(r);
                Ok(PostAction::Remove)
            },
        )
        .unwrap();
}

/// Dispatches once without blocking (also used by the sources' test modules).
pub(crate) fn tick<Data>(event_loop: &mut EventLoop<'_, Data>, data: &mut Data) {
    event_loop.dispatch(Duration::ZERO, data).unwrap();
}

/// From a count of 0, dispatches (without blocking) once per entry of `counts`, checking the
/// count after each.
pub(crate) fn assert_counts_per_tick(event_loop: &mut EventLoop<'_, u32>, counts: &[u32]) {
    let mut n = 0;
    for (i, &expected) in counts.iter().enumerate() {
        tick(event_loop, &mut n);
        assert_eq!(n, expected, "after dispatch {}", i + 1);
    }
}

/// Dispatches (blocking) until `done` holds.
fn dispatch_until<Data>(
    event_loop: &mut EventLoop<'_, Data>,
    data: &mut Data,
    done: impl Fn(&Data) -> bool,
) {
    while !done(data) {
        event_loop.dispatch(None, data).unwrap();
    }
}

/// With a ready, level-triggered source behind `token` that disables itself when called: it
/// fires once, stays quiet, and fires again once enabled.
fn assert_fires_once_then_again_after_enable(
    event_loop: &mut EventLoop<'_, u32>,
    token: RegistrationToken,
) {
    let mut n = 0;
    tick(event_loop, &mut n);
    tick(event_loop, &mut n);
    assert_eq!(n, 1);
    event_loop.handle().enable(&token).unwrap();
    tick(event_loop, &mut n);
    assert_eq!(n, 2);
}

/// Runs `action` on another thread after a short while (long enough for the loop to block).
fn soon(action: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        action();
    })
}

// ---- insertion and removal from callbacks ----------------------------------------------------

#[test]
fn source_inserted_from_a_callback_fires_on_a_later_dispatch() {
    let mut event_loop = EventLoop::<Vec<&str>>::try_new().unwrap();
    let handle = event_loop.handle();
    let (ping_a, source_a) = make_ping().unwrap();
    let (ping_b, source_b) = make_ping().unwrap();
    // B is already pinged when A's callback inserts it.
    ping_b.ping();
    let source_b = RefCell::new(Some(source_b));
    let inner_handle = handle.clone();
    handle
        .insert_source(source_a, move |(), _, log: &mut Vec<&str>| {
            log.push("a");
            if let Some(b) = source_b.borrow_mut().take() {
                inner_handle
                    .insert_source(b, |(), _, log: &mut Vec<&str>| log.push("b"))
                    .unwrap();
            }
        })
        .unwrap();
    // Also a timer that is already due.
    let inner_handle = handle.clone();
    ping_a.ping();
    let mut log = Vec::new();
    tick(&mut event_loop, &mut log);
    assert_eq!(log, ["a"]);
    inner_handle
        .insert_source(Timer::immediate(), |_, _, log: &mut Vec<&str>| {
            log.push("t");
            TimeoutAction::Drop
        })
        .unwrap();
    tick(&mut event_loop, &mut log);
    log.sort_unstable();
    assert_eq!(log, ["a", "b", "t"]);
}

#[test]
fn source_removed_from_a_callback_is_never_called_again() {
    // Two sources, both ready in the same dispatch; whichever runs first removes the other.
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let handle = event_loop.handle();
    let tokens: Rc<RefCell<Vec<RegistrationToken>>> = Rc::default();
    let mut keep = Vec::new();
    for i in 0..2 {
        let (a, b) = pair();
        put(&b, b"x");
        keep.push(b);
        let others = tokens.clone();
        let inner_handle = handle.clone();
        let token = handle
            .insert_source(
                Generic::new(a, Interest::READ, Mode::Level),
                move |_, _, calls| {
                    *calls += 1;
                    inner_handle.remove(others.borrow()[1 - i]);
                    Ok(PostAction::Continue)
                },
            )
            .unwrap();
        tokens.borrow_mut().push(token);
    }
    let mut calls = 0;
    tick(&mut event_loop, &mut calls);
    assert_eq!(calls, 1);
    tick(&mut event_loop, &mut calls);
    assert_eq!(
        calls, 2,
        "the survivor (level-triggered) fires again, alone"
    );
}

#[test]
fn source_removing_itself_from_its_callback() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let handle = event_loop.handle();
    let (a, b) = pair();
    put(&b, b"x");
    counting_with_own_token(&handle, a, |handle, me| handle.remove(me));
    let mut n = 0;
    tick(&mut event_loop, &mut n);
    tick(&mut event_loop, &mut n);
    assert_eq!(n, 1);
    assert_eq!(handle.inner.sources.borrow().len(), 0);
}

#[test]
fn post_action_remove_drops_the_source() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let (a, b) = pair();
    put(&b, b"x");
    let dropped = Rc::new(Cell::new(false));
    struct OnDrop(Rc<Cell<bool>>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.set(true)
        }
    }
    let guard = OnDrop(dropped.clone());
    event_loop
        .handle()
        .insert_source(
            Generic::new(a, Interest::READ, Mode::Level),
            move |_, _, n| {
                let _keep = &guard;
                *n += 1;
                Ok(PostAction::Remove)
            },
        )
        .unwrap();
    let mut n = 0;
    tick(&mut event_loop, &mut n);
    assert!(dropped.get());
    tick(&mut event_loop, &mut n);
    assert_eq!(n, 1);
}

// ---- tokens ----------------------------------------------------------------------------------

#[test]
fn stale_token_is_invalid_and_harmless() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let handle = event_loop.handle();
    let (a, b) = pair();
    // Through a dispatcher, so the source (and its fd) outlives its removal.
    let dispatcher = Dispatcher::new(
        Generic::new(a, Interest::READ, Mode::Level),
        |_, _, n: &mut u32| {
            *n += 1;
            Ok(PostAction::Continue)
        },
    );
    let token = handle.register_dispatcher(dispatcher.clone()).unwrap();
    handle.remove(token);
    assert!(matches!(handle.enable(&token), Err(Error::InvalidToken)));
    assert!(matches!(handle.disable(&token), Err(Error::InvalidToken)));
    assert!(matches!(handle.update(&token), Err(Error::InvalidToken)));
    handle.remove(token); // no-op
    put(&b, b"x");
    let mut n = 0;
    tick(&mut event_loop, &mut n);
    assert_eq!(n, 0);
    drop(dispatcher);
}

#[test]
fn stale_token_never_reaches_the_source_reusing_its_slot() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let handle = event_loop.handle();
    let (a, _b) = pair();
    let old = counting(&handle, a, Mode::Level);
    handle.remove(old);
    let (c, d) = pair();
    let new = counting(&handle, c, Mode::Level);
    assert_eq!(new.inner.id(), old.inner.id(), "the slot is reused");
    assert_ne!(new, old);

    assert!(matches!(handle.disable(&old), Err(Error::InvalidToken)));
    assert!(matches!(handle.update(&old), Err(Error::InvalidToken)));
    assert!(matches!(handle.enable(&old), Err(Error::InvalidToken)));
    handle.remove(old);

    put(&d, b"x");
    let mut n = 0;
    tick(&mut event_loop, &mut n);
    assert_eq!(n, 1, "the new source is untouched by the stale token");
    handle.remove(new);
}

// ---- modes -----------------------------------------------------------------------------------

#[test]
fn level_repeats_while_the_condition_holds() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let (a, b) = pair();
    counting(&event_loop.handle(), a, Mode::Level);
    put(&b, b"x");
    let mut n = 0;
    for _ in 0..3 {
        tick(&mut event_loop, &mut n);
    }
    assert_eq!(n, 3);
}

#[test]
fn edge_fires_only_on_change() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let (a, b) = pair();
    counting(&event_loop.handle(), a, Mode::Edge);
    put(&b, b"x");
    let mut n = 0;
    tick(&mut event_loop, &mut n);
    tick(&mut event_loop, &mut n);
    assert_eq!(n, 1, "unread data does not fire again");
    put(&b, b"y");
    tick(&mut event_loop, &mut n);
    assert_eq!(n, 2, "new data fires again");
}

#[test]
fn oneshot_disarms_until_update() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let handle = event_loop.handle();
    let (a, b) = pair();
    let token = counting(&handle, a, Mode::OneShot);
    put(&b, b"x");
    let mut n = 0;
    tick(&mut event_loop, &mut n);
    tick(&mut event_loop, &mut n);
    put(&b, b"y");
    tick(&mut event_loop, &mut n);
    assert_eq!(n, 1);
    handle.update(&token).unwrap();
    tick(&mut event_loop, &mut n);
    assert_eq!(n, 2);
    tick(&mut event_loop, &mut n);
    assert_eq!(n, 2);
}

#[test]
fn oneshot_rearmed_by_post_action_reregister() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let (a, b) = pair();
    counting_then(
        &event_loop.handle(),
        a,
        Mode::OneShot,
        PostAction::Reregister,
    );
    put(&b, b"x");
    let mut n = 0;
    for _ in 0..3 {
        tick(&mut event_loop, &mut n);
    }
    assert_eq!(n, 3);
}

#[test]
fn pending_level_event_survives_disable_and_enable() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let handle = event_loop.handle();
    let (a, b) = pair();
    let token = counting(&handle, a, Mode::Level);
    put(&b, b"x");
    handle.disable(&token).unwrap();
    let mut n = 0;
    tick(&mut event_loop, &mut n);
    assert_eq!(n, 0);
    handle.enable(&token).unwrap();
    tick(&mut event_loop, &mut n);
    assert_eq!(n, 1);
}

#[test]
fn disable_from_own_callback_takes_effect_after_it() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let handle = event_loop.handle();
    let (a, b) = pair();
    let token = counting_with_own_token(&handle, a, |handle, me| handle.disable(&me).unwrap());
    put(&b, b"x");
    assert_fires_once_then_again_after_enable(&mut event_loop, token);
}

#[test]
fn post_action_disable_keeps_the_source_for_enable() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let (a, b) = pair();
    let token = counting_then(&event_loop.handle(), a, Mode::Level, PostAction::Disable);
    put(&b, b"x");
    assert_fires_once_then_again_after_enable(&mut event_loop, token);
}

#[test]
fn readiness_error_is_set_on_hang_up() {
    let mut event_loop = EventLoop::<Option<Readiness>>::try_new().unwrap();
    let (a, b) = pair();
    recording_readiness(&event_loop, a);
    drop(b);
    let mut seen = None;
    tick(&mut event_loop, &mut seen);
    let readiness = seen.expect("hang-up reported");
    assert!(readiness.readable, "a read would not block (end of stream)");
    assert!(readiness.error);
}

#[test]
fn readiness_error_is_clear_on_plain_data() {
    let mut event_loop = EventLoop::<Option<Readiness>>::try_new().unwrap();
    let (a, b) = pair();
    recording_readiness(&event_loop, a);
    put(&b, b"x");
    let mut seen = None;
    tick(&mut event_loop, &mut seen);
    assert_eq!(
        seen,
        Some(Readiness {
            readable: true,
            writable: false,
            error: false
        })
    );
}

// ---- idles -----------------------------------------------------------------------------------

#[test]
fn idles_run_after_events_once() {
    let mut event_loop = EventLoop::<Vec<&str>>::try_new().unwrap();
    let handle = event_loop.handle();
    let (ping, source) = make_ping().unwrap();
    let inner = handle.clone();
    handle
        .insert_source(source, move |(), _, log: &mut Vec<&str>| {
            log.push("event");
            // Inserted from a callback: runs at the end of this same dispatch.
            inner.insert_idle(|log| log.push("idle from event"));
        })
        .unwrap();
    handle.insert_idle(|log| log.push("idle"));
    ping.ping();
    let mut log = Vec::new();
    tick(&mut event_loop, &mut log);
    assert_eq!(log, ["event", "idle", "idle from event"]);
    tick(&mut event_loop, &mut log);
    assert_eq!(log.len(), 3, "idles run once");
}

#[test]
fn cancelled_idle_never_runs() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let handle = event_loop.handle();
    let idle = handle.insert_idle(|n| *n += 1);
    handle.insert_idle(|n| *n += 10);
    idle.cancel();
    let mut n = 0;
    tick(&mut event_loop, &mut n);
    assert_eq!(n, 10);
}

#[test]
fn pending_idle_makes_dispatch_not_block() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    event_loop.handle().insert_idle(|n| *n += 1);
    let mut n = 0;
    // Would block forever without the idle.
    event_loop.dispatch(None, &mut n).unwrap();
    assert_eq!(n, 1);
}

// ---- signals ---------------------------------------------------------------------------------

/// Runs `test` on a thread and fails if it does not finish in time (instead of hanging).
fn with_watchdog(test: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        test();
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(30)) {
        Ok(()) => thread.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(thread.join().unwrap_err())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the loop did not wake up"),
    }
}

#[test]
fn wakeup_is_sticky() {
    with_watchdog(|| {
        let mut event_loop = EventLoop::<()>::try_new().unwrap();
        event_loop.get_signal().wakeup();
        event_loop.dispatch(None, &mut ()).unwrap();
    });
}

#[test]
fn wakeup_from_another_thread_unblocks_dispatch() {
    with_watchdog(|| {
        let mut event_loop = EventLoop::<()>::try_new().unwrap();
        let signal = event_loop.get_signal();
        let thread = soon(move || signal.wakeup());
        event_loop.dispatch(None, &mut ()).unwrap();
        thread.join().unwrap();
    });
}

#[test]
fn run_returns_when_stopped_from_a_callback() {
    with_watchdog(|| {
        let mut event_loop = EventLoop::<u32>::try_new().unwrap();
        let signal = event_loop.get_signal();
        event_loop
            .handle()
            .insert_source(
                Timer::from_duration(Duration::from_millis(1)),
                move |_, _, n| {
                    *n += 1;
                    if *n == 3 {
                        signal.stop();
                        TimeoutAction::Drop
                    } else {
                        TimeoutAction::ToDuration(Duration::from_millis(1))
                    }
                },
            )
            .unwrap();
        let mut n = 0;
        let mut after_each = 0;
        event_loop.run(None, &mut n, |_| after_each += 1).unwrap();
        assert_eq!(n, 3);
        assert!(after_each >= 3);
    });
}

#[test]
fn run_returns_when_stopped_from_another_thread() {
    with_watchdog(|| {
        let mut event_loop = EventLoop::<()>::try_new().unwrap();
        let signal = event_loop.get_signal();
        let thread = soon(move || {
            signal.stop();
            signal.wakeup();
        });
        event_loop.run(None, &mut (), |_| {}).unwrap();
        thread.join().unwrap();
    });
}

// ---- small values ----------------------------------------------------------------------------

#[test]
fn post_action_or_table() {
    use PostAction::*;
    let all = [Continue, Reregister, Disable, Remove];
    for a in all {
        for b in all {
            let expected = if a == b { a } else { Reregister };
            assert_eq!(a | b, expected, "{a:?} | {b:?}");
            let mut c = a;
            c |= b;
            assert_eq!(c, expected, "{a:?} |= {b:?}");
        }
    }
}

// ---- handles and dispatchers -----------------------------------------------------------------

#[test]
fn dispatcher_gives_access_to_its_source_and_back() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let handle = event_loop.handle();
    let (a, b) = pair();
    let raw = a.as_raw_fd();
    let dispatcher = Dispatcher::new(
        Generic::new(a, Interest::READ, Mode::Level),
        |_, fd, n: &mut u32| {
            *n += take(fd) as u32;
            Ok(PostAction::Continue)
        },
    );
    let token = handle.register_dispatcher(dispatcher.clone()).unwrap();
    assert_eq!(dispatcher.as_source_ref().get_ref().as_raw_fd(), raw);
    // Changing the source's settings, then `update`, takes effect.
    dispatcher.as_source_mut().interest = Interest::WRITE;
    handle.update(&token).unwrap();
    put(&b, b"abc");
    let mut n = 0;
    tick(&mut event_loop, &mut n);
    assert_eq!(n, 3, "writable now, and the callback read the 3 bytes");
    handle.remove(token);
    let generic = dispatcher.into_source_inner();
    assert_eq!(generic.unwrap().as_raw_fd(), raw);
}

#[test]
#[should_panic]
fn into_source_inner_panics_while_registered() {
    let event_loop = EventLoop::<()>::try_new().unwrap();
    let (_ping, source) = make_ping().unwrap();
    let dispatcher = Dispatcher::new(source, |_, _, _| {});
    event_loop
        .handle()
        .register_dispatcher(dispatcher.clone())
        .unwrap();
    dispatcher.into_source_inner();
}

#[test]
fn try_into_source_inner_gives_a_registered_dispatcher_back() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let handle = event_loop.handle();
    let (ping, source) = make_ping().unwrap();
    let dispatcher = Dispatcher::new(source, |_, _, n: &mut u32| *n += 1);
    let token = handle.register_dispatcher(dispatcher.clone()).unwrap();
    let dispatcher = dispatcher
        .try_into_source_inner()
        .expect_err("still registered");
    // Pinged before it leaves the loop: the ping stays pending in the source.
    ping.ping();
    handle.remove(token);
    let source = dispatcher
        .try_into_source_inner()
        .expect("removed and not cloned");
    // The source goes on in another registration, its pending ping with it.
    handle
        .insert_source(source, |(), &mut (), n| *n += 10)
        .unwrap();
    let mut n = 0;
    tick(&mut event_loop, &mut n);
    assert_eq!(n, 10);
}

#[test]
fn weak_handle_upgrades_while_the_loop_lives() {
    let event_loop = EventLoop::<()>::try_new().unwrap();
    let weak = event_loop.handle().downgrade();
    assert!(!weak.expired());
    let strong = weak.upgrade().expect("loop alive");
    drop(strong);
    drop(event_loop);
    assert!(weak.expired());
    assert!(weak.upgrade().is_none());
    let empty = crate::WeakLoopHandle::<()>::default();
    assert!(empty.expired() && empty.upgrade().is_none());
}

#[test]
fn event_loop_fd_is_readable_when_a_nested_loop_has_events() {
    let mut inner = EventLoop::<u32>::try_new().unwrap();
    let (ping, source) = make_ping().unwrap();
    inner
        .handle()
        .insert_source(source, |(), _, n| *n += 1)
        .unwrap();

    let mut outer = EventLoop::<bool>::try_new().unwrap();
    // SAFETY (of the test): `inner` outlives the registration (the outer loop is dropped first).
    let fd = unsafe { FdWrapper::new(inner.as_raw_fd()) };
    outer
        .handle()
        .insert_source(
            Generic::new(fd, Interest::READ, Mode::Level),
            |_, _, ready| {
                *ready = true;
                Ok(PostAction::Continue)
            },
        )
        .unwrap();

    let mut ready = false;
    tick(&mut outer, &mut ready);
    assert!(!ready, "the inner loop has nothing yet");
    ping.ping();
    outer.dispatch(Duration::from_secs(10), &mut ready).unwrap();
    assert!(ready);
    let mut n = 0;
    tick(&mut inner, &mut n);
    assert_eq!(n, 1);
    ready = false;
    tick(&mut outer, &mut ready);
    assert!(!ready, "quiet again once the inner loop dispatched");
    drop(outer);
}

// ---- lifecycle hooks -------------------------------------------------------------------------

/// A source with no fd at all: it produces one synthetic event from `before_sleep`, and logs
/// every hook.
struct Lifecycle {
    log: Rc<RefCell<Vec<String>>>,
    token: Option<Token>,
    armed: bool,
}

impl EventSource for Lifecycle {
    type Event = ();
    type Metadata = ();
    type Ret = ();
    type Error = std::io::Error;

    const NEEDS_EXTRA_LIFECYCLE_EVENTS: bool = true;

    fn process_events<F>(
        &mut self,
        _: Readiness,
        token: Token,
        mut cb: F,
    ) -> std::io::Result<PostAction>
    where
        F: FnMut((), &mut ()),
    {
        assert_eq!(Some(token), self.token);
        self.log.borrow_mut().push("process".into());
        cb((), &mut ());
        Ok(PostAction::Continue)
    }

    fn register(&mut self, _: &mut Poll, tf: &mut TokenFactory) -> crate::Result<()> {
        self.token = Some(tf.token());
        Ok(())
    }

    fn reregister(&mut self, poll: &mut Poll, tf: &mut TokenFactory) -> crate::Result<()> {
        self.register(poll, tf)
    }

    fn unregister(&mut self, _: &mut Poll) -> crate::Result<()> {
        self.token = None;
        Ok(())
    }

    fn before_sleep(&mut self) -> crate::Result<Option<(Readiness, Token)>> {
        self.log.borrow_mut().push("before_sleep".into());
        Ok(if std::mem::take(&mut self.armed) {
            Some((Readiness::EMPTY, self.token.unwrap()))
        } else {
            None
        })
    }

    fn before_handle_events(&mut self, events: crate::EventIterator<'_>) {
        self.log
            .borrow_mut()
            .push(format!("before_handle_events({})", events.count()));
    }
}

#[test]
fn lifecycle_hooks_run_around_the_poll() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let token = event_loop
        .handle()
        .insert_source(
            Lifecycle {
                log: log.clone(),
                token: None,
                armed: true,
            },
            |(), _, n| *n += 1,
        )
        .unwrap();
    let mut n = 0;
    // Would block forever if the synthetic event did not make the poll non-blocking.
    event_loop.dispatch(None, &mut n).unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        *log.borrow(),
        ["before_sleep", "before_handle_events(0)", "process"]
    );
    log.borrow_mut().clear();
    tick(&mut event_loop, &mut n);
    assert_eq!(*log.borrow(), ["before_sleep", "before_handle_events(0)"]);
    // A removed source gets no more hooks.
    event_loop.handle().remove(token);
    log.borrow_mut().clear();
    tick(&mut event_loop, &mut n);
    assert!(log.borrow().is_empty());
}

// ---- composite sources and the batch macros --------------------------------------------------

/// Three pings behind one source; reports which child fired.
struct Triple {
    pings: [PingSource; 3],
    tokens: [Option<Token>; 3],
}

impl EventSource for Triple {
    type Event = usize;
    type Metadata = ();
    type Ret = ();
    type Error = PingError;

    fn process_events<F>(
        &mut self,
        r: Readiness,
        token: Token,
        mut cb: F,
    ) -> Result<PostAction, PingError>
    where
        F: FnMut(usize, &mut ()),
    {
        let mut action = PostAction::Continue;
        for (i, ping) in self.pings.iter_mut().enumerate() {
            action |= ping.process_events(r, token, |(), m| cb(i, m))?;
        }
        Ok(action)
    }

    fn register(&mut self, poll: &mut Poll, tf: &mut TokenFactory) -> crate::Result<()> {
        let [a, b, c] = &mut self.pings;
        crate::batch_register!(poll, tf, a, b, c)
    }

    fn reregister(&mut self, poll: &mut Poll, tf: &mut TokenFactory) -> crate::Result<()> {
        let [a, b, c] = &mut self.pings;
        crate::batch_reregister!(poll, tf, a, b, c)
    }

    fn unregister(&mut self, poll: &mut Poll) -> crate::Result<()> {
        let [a, b, c] = &mut self.pings;
        crate::batch_unregister!(poll, a, b, c)
    }
}

fn triple() -> ([Ping; 3], Triple) {
    let (p0, s0) = make_ping().unwrap();
    let (p1, s1) = make_ping().unwrap();
    let (p2, s2) = make_ping().unwrap();
    (
        [p0, p1, p2],
        Triple {
            pings: [s0, s1, s2],
            tokens: [None; 3],
        },
    )
}

#[test]
fn composite_of_three_pings_with_batch_macros() {
    let mut event_loop = EventLoop::<Vec<usize>>::try_new().unwrap();
    let handle = event_loop.handle();
    let (pings, source) = triple();
    assert!(source.tokens.iter().all(Option::is_none));
    let token = handle
        .insert_source(source, |i, _, fired: &mut Vec<usize>| fired.push(i))
        .unwrap();
    let mut fired = Vec::new();
    pings[2].ping();
    pings[0].ping();
    tick(&mut event_loop, &mut fired);
    fired.sort_unstable();
    assert_eq!(fired, [0, 2]);

    // Re-registration (batch_reregister!) keeps every child working.
    handle.update(&token).unwrap();
    pings[1].ping();
    tick(&mut event_loop, &mut fired);
    assert_eq!(fired, [0, 2, 1]);

    // Unregistration (batch_unregister!) silences all of them; registration brings them back.
    handle.disable(&token).unwrap();
    for p in &pings {
        p.ping();
    }
    tick(&mut event_loop, &mut fired);
    assert_eq!(fired.len(), 3);
    handle.enable(&token).unwrap();
    tick(&mut event_loop, &mut fired);
    assert_eq!(fired.len(), 6);
}

// ---- timers ----------------------------------------------------------------------------------

#[test]
fn timer_is_never_early_and_gets_its_scheduled_deadline() {
    let mut event_loop = EventLoop::<Vec<(Instant, Instant)>>::try_new().unwrap();
    let start = Instant::now();
    for ms in [1u64, 3, 7, 15] {
        let deadline = start + Duration::from_millis(ms);
        event_loop
            .handle()
            .insert_source(
                Timer::from_deadline(deadline),
                move |scheduled, _, fired: &mut Vec<_>| {
                    assert_eq!(scheduled, deadline);
                    fired.push((scheduled, Instant::now()));
                    TimeoutAction::Drop
                },
            )
            .unwrap();
    }
    let mut fired = Vec::new();
    dispatch_until(&mut event_loop, &mut fired, |fired| fired.len() >= 4);
    for (scheduled, ran) in fired {
        assert!(ran >= scheduled, "fired early");
    }
}

#[test]
fn timer_to_instant_in_the_past_fires_on_the_next_dispatch() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    event_loop
        .handle()
        .insert_source(Timer::immediate(), |deadline, _, n| {
            *n += 1;
            if *n < 3 {
                TimeoutAction::ToInstant(deadline - Duration::from_secs(1))
            } else {
                TimeoutAction::Drop
            }
        })
        .unwrap();
    assert_counts_per_tick(&mut event_loop, &[1, 2, 3, 3]);
}

#[test]
fn many_timers_fire_in_deadline_order() {
    let mut event_loop = EventLoop::<Vec<u64>>::try_new().unwrap();
    let start = Instant::now();
    // A scrambled order of insertion.
    let offsets: Vec<u64> = (0..200u64).map(|i| (i * 7919) % 200).collect();
    for &offset in &offsets {
        let deadline = start + Duration::from_micros(offset * 50);
        event_loop
            .handle()
            .insert_source(
                Timer::from_deadline(deadline),
                move |_, _, fired: &mut Vec<u64>| {
                    fired.push(offset);
                    TimeoutAction::Drop
                },
            )
            .unwrap();
    }
    let mut fired = Vec::new();
    dispatch_until(&mut event_loop, &mut fired, |fired| {
        fired.len() >= offsets.len()
    });
    let mut sorted = fired.clone();
    sorted.sort_unstable();
    assert_eq!(fired, sorted);
}

#[test]
fn removed_timer_never_fires() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let handle = event_loop.handle();
    let token = handle
        .insert_source(Timer::from_duration(Duration::from_millis(5)), |_, _, n| {
            *n += 1;
            TimeoutAction::Drop
        })
        .unwrap();
    handle.remove(token);
    let mut n = 0;
    event_loop
        .dispatch(Duration::from_millis(20), &mut n)
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(handle.inner.poll.borrow().timers.borrow().len(), 0);
}

#[test]
fn timer_rearmed_with_to_duration_fires_again() {
    let mut event_loop = EventLoop::<Vec<Instant>>::try_new().unwrap();
    event_loop
        .handle()
        .insert_source(Timer::immediate(), |_, _, fired: &mut Vec<Instant>| {
            fired.push(Instant::now());
            if fired.len() < 4 {
                TimeoutAction::ToDuration(Duration::from_millis(2))
            } else {
                TimeoutAction::Drop
            }
        })
        .unwrap();
    let mut fired = Vec::new();
    dispatch_until(&mut event_loop, &mut fired, |fired| fired.len() >= 4);
    for pair in fired.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(2),
            "re-armed timer fired early"
        );
    }
    tick(&mut event_loop, &mut fired);
    assert_eq!(fired.len(), 4);
}

#[test]
fn timer_churn_leaves_the_wheel_bounded() {
    let mut event_loop = EventLoop::<u32>::try_new().unwrap();
    let handle = event_loop.handle();
    let far = Duration::from_secs(3600);
    for _ in 0..100_000 {
        let token = handle
            .insert_source(Timer::from_duration(far), |_, _, _| TimeoutAction::Drop)
            .unwrap();
        handle.remove(token);
    }
    assert_eq!(handle.inner.poll.borrow().timers.borrow().len(), 0);
    // Re-arming one timer many times does not grow it either.
    let token = handle
        .insert_source(Timer::from_duration(far), |_, _, _| TimeoutAction::Drop)
        .unwrap();
    for _ in 0..10_000 {
        handle.update(&token).unwrap();
    }
    assert_eq!(handle.inner.poll.borrow().timers.borrow().len(), 1);
    let mut n = 0;
    tick(&mut event_loop, &mut n);
    assert_eq!(handle.inner.sources.borrow().len(), 1);
}
