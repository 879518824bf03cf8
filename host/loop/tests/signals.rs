//! Behaviour tests of the signal source.
//!
//! They run without the libtest harness (`harness = false`): libtest runs tests on spawned
//! threads, whose signal masks would not match the one the source sets up, and a signal sent to
//! the process could then land on a thread that does not block it. Here everything runs on the
//! main thread, one test after the other, with the thread's mask reset in between.

#[cfg(feature = "signals")]
fn main() {
    for (name, test) in tests::ALL {
        print!("test {name} ... ");
        test();
        tests::reset_mask();
        println!("ok");
    }
    println!("{} signal tests passed", tests::ALL.len());
}

#[cfg(not(feature = "signals"))]
fn main() {}

#[cfg(feature = "signals")]
mod tests {
    use std::time::Duration;

    use callop::signals::{Signal, Signals};
    use callop::{Dispatcher, EventLoop, RegistrationToken};
    use rustix::process::{Signal as RawSignal, getpid, kill_process};

    type Test = (&'static str, fn());

    pub const ALL: &[Test] = &[
        ("signal_is_delivered_as_event", signal_is_delivered_as_event),
        ("added_signal_is_delivered", added_signal_is_delivered),
        (
            "removed_signal_is_not_delivered",
            removed_signal_is_not_delivered,
        ),
        ("set_signals_replaces_the_set", set_signals_replaces_the_set),
        (
            "several_signals_in_one_dispatch",
            several_signals_in_one_dispatch,
        ),
        (
            "removed_source_reports_nothing",
            removed_source_reports_nothing,
        ),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        ("mask_restored_on_drop", linux::mask_restored_on_drop),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        (
            "previously_blocked_signal_stays_blocked",
            linux::previously_blocked_signal_stays_blocked,
        ),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        ("event_carries_siginfo", linux::event_carries_siginfo),
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        (
            "disposition_restored_on_drop",
            kqueue::disposition_restored_on_drop,
        ),
    ];

    pub fn reset_mask() {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        nix::sys::signal::SigSet::empty().thread_set_mask().unwrap();
    }

    fn raise(signal: RawSignal) {
        kill_process(getpid(), signal).unwrap();
    }

    /// Dispatches until `done` says so, failing after a generous number of rounds.
    fn dispatch_until<D>(
        event_loop: &mut EventLoop<'_, D>,
        data: &mut D,
        done: impl Fn(&D) -> bool,
    ) {
        for _ in 0..100 {
            if done(data) {
                return;
            }
            event_loop
                .dispatch(Duration::from_millis(100), data)
                .unwrap();
        }
        assert!(done(data), "the expected signal never arrived");
    }

    /// Inserts a source of `signals` that pushes every signal it reports.
    fn insert_collecting(
        event_loop: &EventLoop<'_, Vec<Signal>>,
        signals: &[Signal],
    ) -> RegistrationToken {
        event_loop
            .handle()
            .insert_source(Signals::new(signals).unwrap(), |event, &mut (), got| {
                got.push(event.signal())
            })
            .unwrap()
    }

    /// Registers, through a dispatcher (to change its set afterwards), a source of `signals`
    /// that pushes every signal it reports.
    fn collecting_dispatcher<'l>(
        event_loop: &EventLoop<'l, Vec<Signal>>,
        signals: &[Signal],
    ) -> Dispatcher<'l, Signals, Vec<Signal>> {
        let dispatcher = Dispatcher::new(
            Signals::new(signals).unwrap(),
            |event, &mut (), got: &mut Vec<Signal>| got.push(event.signal()),
        );
        event_loop
            .handle()
            .register_dispatcher(dispatcher.clone())
            .unwrap();
        dispatcher
    }

    /// Dispatches until a signal arrives, then a little longer for any that should not.
    fn collect_first_and_stragglers(event_loop: &mut EventLoop<'_, Vec<Signal>>) -> Vec<Signal> {
        let mut got = Vec::new();
        dispatch_until(event_loop, &mut got, |got| !got.is_empty());
        event_loop
            .dispatch(Duration::from_millis(20), &mut got)
            .unwrap();
        got
    }

    fn signal_is_delivered_as_event() {
        let mut event_loop: EventLoop<Vec<Signal>> = EventLoop::try_new().unwrap();
        insert_collecting(&event_loop, &[Signal::SIGUSR1]);

        raise(RawSignal::USR1);
        let mut got = Vec::new();
        dispatch_until(&mut event_loop, &mut got, |got| !got.is_empty());
        assert_eq!(got, vec![Signal::SIGUSR1]);
    }

    fn added_signal_is_delivered() {
        let mut event_loop: EventLoop<Option<Signal>> = EventLoop::try_new().unwrap();
        let dispatcher = Dispatcher::new(
            Signals::new(&[Signal::SIGUSR1]).unwrap(),
            |event, &mut (), got| *got = Some(event.signal()),
        );
        event_loop
            .handle()
            .register_dispatcher(dispatcher.clone())
            .unwrap();
        dispatcher
            .as_source_mut()
            .add_signals(&[Signal::SIGUSR2])
            .unwrap();

        raise(RawSignal::USR2);
        let mut got = None;
        dispatch_until(&mut event_loop, &mut got, |got| got.is_some());
        assert_eq!(got, Some(Signal::SIGUSR2));
    }

    fn removed_signal_is_not_delivered() {
        let mut event_loop: EventLoop<Vec<Signal>> = EventLoop::try_new().unwrap();
        let dispatcher = collecting_dispatcher(&event_loop, &[Signal::SIGUSR1, Signal::SIGUSR2]);
        dispatcher
            .as_source_mut()
            .remove_signals(&[Signal::SIGUSR2])
            .unwrap();
        // Keep SIGUSR2 from killing us now that the source let go of it.
        let _guard = ignore(Signal::SIGUSR2);

        raise(RawSignal::USR2);
        raise(RawSignal::USR1);
        let got = collect_first_and_stragglers(&mut event_loop);
        assert_eq!(got, vec![Signal::SIGUSR1]);
    }

    fn set_signals_replaces_the_set() {
        let mut event_loop: EventLoop<Vec<Signal>> = EventLoop::try_new().unwrap();
        let dispatcher = collecting_dispatcher(&event_loop, &[Signal::SIGUSR1]);
        dispatcher
            .as_source_mut()
            .set_signals(&[Signal::SIGUSR2])
            .unwrap();
        let _guard = ignore(Signal::SIGUSR1);

        raise(RawSignal::USR1);
        raise(RawSignal::USR2);
        let got = collect_first_and_stragglers(&mut event_loop);
        assert_eq!(got, vec![Signal::SIGUSR2]);
    }

    fn several_signals_in_one_dispatch() {
        let mut event_loop: EventLoop<Vec<Signal>> = EventLoop::try_new().unwrap();
        insert_collecting(
            &event_loop,
            &[Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGWINCH],
        );

        raise(RawSignal::USR1);
        raise(RawSignal::USR2);
        raise(RawSignal::WINCH);
        let mut got = Vec::new();
        dispatch_until(&mut event_loop, &mut got, |got| got.len() >= 3);
        got.sort();
        let mut expected = vec![Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGWINCH];
        expected.sort();
        assert_eq!(got, expected);
    }

    fn removed_source_reports_nothing() {
        let mut event_loop: EventLoop<Vec<Signal>> = EventLoop::try_new().unwrap();
        let _keep = Signals::new(&[Signal::SIGUSR1]).unwrap();
        let token = insert_collecting(&event_loop, &[Signal::SIGUSR1]);
        event_loop.handle().remove(token);

        // `_keep` still holds SIGUSR1, so the signal is harmless; nobody is listening in the loop.
        raise(RawSignal::USR1);
        let mut got = Vec::new();
        event_loop
            .dispatch(Duration::from_millis(50), &mut got)
            .unwrap();
        assert!(got.is_empty());
        #[cfg(any(target_os = "linux", target_os = "android"))]
        drain_pending(Signal::SIGUSR1);
    }

    /// Consumes a pending signal that no source will read, before the mask is reset.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn drain_pending(signal: Signal) {
        let mut set = nix::sys::signal::SigSet::empty();
        set.add(nix::sys::signal::Signal::try_from(signal as i32).unwrap());
        set.wait().unwrap();
    }

    /// Ignores a signal until the guard is dropped.
    fn ignore(signal: Signal) -> impl Drop {
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, sigaction};
        let nix_signal = nix::sys::signal::Signal::try_from(signal as i32).unwrap();
        let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
        // SAFETY: ignoring a signal installs no code.
        let previous = unsafe { sigaction(nix_signal, &ignore) }.unwrap();
        struct Restore(nix::sys::signal::Signal, SigAction);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: puts back the disposition we found.
                unsafe { sigaction(self.0, &self.1) }.unwrap();
            }
        }
        Restore(nix_signal, previous)
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    mod linux {
        use super::*;
        use nix::sys::signal::{SigSet, Signal as NixSignal};

        fn blocked(signal: NixSignal) -> bool {
            SigSet::thread_get_mask().unwrap().contains(signal)
        }

        pub fn mask_restored_on_drop() {
            assert!(!blocked(NixSignal::SIGUSR1));
            let mut signals = Signals::new(&[Signal::SIGUSR1]).unwrap();
            assert!(blocked(NixSignal::SIGUSR1));
            signals.add_signals(&[Signal::SIGUSR2]).unwrap();
            assert!(blocked(NixSignal::SIGUSR2));
            signals.remove_signals(&[Signal::SIGUSR2]).unwrap();
            assert!(!blocked(NixSignal::SIGUSR2));
            drop(signals);
            assert!(!blocked(NixSignal::SIGUSR1));
            assert!(!blocked(NixSignal::SIGUSR2));
        }

        pub fn previously_blocked_signal_stays_blocked() {
            let mut set = SigSet::empty();
            set.add(NixSignal::SIGUSR2);
            set.thread_block().unwrap();

            let mut signals = Signals::new(&[Signal::SIGUSR1, Signal::SIGUSR2]).unwrap();
            signals.set_signals(&[Signal::SIGUSR1]).unwrap();
            assert!(
                blocked(NixSignal::SIGUSR2),
                "set_signals unblocked a signal it did not block"
            );
            drop(signals);
            assert!(
                blocked(NixSignal::SIGUSR2),
                "drop unblocked a signal it did not block"
            );
            assert!(!blocked(NixSignal::SIGUSR1));
        }

        pub fn event_carries_siginfo() {
            let mut event_loop: EventLoop<Option<(u32, u32)>> = EventLoop::try_new().unwrap();
            event_loop
                .handle()
                .insert_source(
                    Signals::new(&[Signal::SIGUSR1]).unwrap(),
                    |event, &mut (), got| *got = Some((event.pid(), event.uid())),
                )
                .unwrap();

            raise(RawSignal::USR1);
            let mut got = None;
            dispatch_until(&mut event_loop, &mut got, |got| got.is_some());
            let pid = getpid().as_raw_nonzero().get() as u32;
            let uid = rustix::process::getuid().as_raw();
            assert_eq!(got, Some((pid, uid)));
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    mod kqueue {
        use super::*;
        use nix::sys::signal::{
            SaFlags, SigAction, SigHandler, SigSet, Signal as NixSignal, sigaction,
        };

        fn disposition(signal: NixSignal) -> SigHandler {
            let probe = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
            // SAFETY: installs the default disposition for a moment and puts back what it found.
            let current = unsafe { sigaction(signal, &probe) }.unwrap();
            unsafe { sigaction(signal, &current) }.unwrap();
            current.handler()
        }

        pub fn disposition_restored_on_drop() {
            assert!(matches!(
                disposition(NixSignal::SIGUSR1),
                SigHandler::SigDfl
            ));
            let first = Signals::new(&[Signal::SIGUSR1]).unwrap();
            let second = Signals::new(&[Signal::SIGUSR1]).unwrap();
            assert!(matches!(
                disposition(NixSignal::SIGUSR1),
                SigHandler::Handler(_)
            ));
            drop(first);
            assert!(matches!(
                disposition(NixSignal::SIGUSR1),
                SigHandler::Handler(_)
            ));
            drop(second);
            assert!(matches!(
                disposition(NixSignal::SIGUSR1),
                SigHandler::SigDfl
            ));
        }
    }
}
