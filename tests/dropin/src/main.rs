//! Written against calloop 0.14's API only: timers, channels, pings, generic
//! sources, the executor and signals, with `calloop::` paths throughout.

use std::time::Duration;

use calloop::channel::{channel, Event};
use calloop::futures::executor;
use calloop::generic::Generic;
use calloop::ping::make_ping;
use calloop::signals::{Signal, Signals};
use calloop::timer::{TimeoutAction, Timer};
use calloop::{EventLoop, Interest, LoopSignal, Mode, PostAction};

#[derive(Default)]
struct State {
    ticks: u32,
    messages: Vec<u32>,
    pinged: bool,
    future_done: bool,
    readable: bool,
    signal: Option<LoopSignal>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut event_loop: EventLoop<State> = EventLoop::try_new()?;
    let handle = event_loop.handle();

    handle.insert_source(Timer::from_duration(Duration::from_millis(1)), |deadline, _, s: &mut State| {
        s.ticks += 1;
        if s.ticks < 3 {
            TimeoutAction::ToInstant(deadline + Duration::from_millis(1))
        } else {
            TimeoutAction::Drop
        }
    })?;

    let (tx, rx) = channel::<u32>();
    handle.insert_source(rx, |event, _, s: &mut State| {
        if let Event::Msg(n) = event {
            s.messages.push(n);
        }
    })?;
    std::thread::spawn(move || (0..3).for_each(|n| tx.send(n).unwrap()));

    let (ping, ping_source) = make_ping()?;
    handle.insert_source(ping_source, |_, _, s: &mut State| s.pinged = true)?;
    ping.ping();

    let (exec, scheduler) = executor::<u32>()?;
    handle.insert_source(exec, |n, _, s: &mut State| s.future_done = n == 42)?;
    scheduler.schedule(async { 42 })?;

    let (reader, writer) = std::os::unix::net::UnixStream::pair()?;
    std::io::Write::write_all(&mut &writer, b"x")?;
    handle.insert_source(Generic::new(reader, Interest::READ, Mode::OneShot), |_, _, s: &mut State| {
        s.readable = true;
        Ok(PostAction::Remove)
    })?;

    // Registering a signal source must work (nothing is raised).
    handle.insert_source(Signals::new(&[Signal::SIGUSR2])?, |_, _, _: &mut State| {})?;

    let mut state = State { signal: Some(event_loop.get_signal()), ..State::default() };
    let start = std::time::Instant::now();
    while !(state.ticks == 3 && state.messages.len() == 3 && state.pinged && state.future_done && state.readable) {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out");
        event_loop.dispatch(Some(Duration::from_millis(10)), &mut state)?;
    }
    assert_eq!(state.messages, [0, 1, 2]);
    state.signal.take().unwrap().stop();
    println!("calloop drop-in: ok");
    Ok(())
}
