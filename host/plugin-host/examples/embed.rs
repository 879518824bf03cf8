//! Embedding two plugins in an application's own event loop.
//!
//! The application owns the loop and its own sources (a timer here). It
//! loads a `relay` plugin, sends it messages through a
//! `callop::channel::Sender`, receives the answers on its `@app/out`
//! endpoint, and runs a `ticker` plugin beside it. It stops when no plugin is
//! left; SIGINT/SIGTERM shut the plugins down gracefully (a second one
//! stops at once), through [`SignalShutdown`].
//!
//! ```sh
//! plugins/build.sh
//! cargo run -p callop --example embed -- plugins/target/wasm32-wasip2/release
//! ```

use std::path::PathBuf;
use std::time::Duration;

use callop::EventLoop;
use callop::channel::Event;
use callop::timer::{TimeoutAction, Timer};
use callop_plugin_host::{Host, HostConfig, ShutdownPhase, SignalShutdown};

/// The application's state, passed to every callback.
#[derive(Default)]
struct App {
    answers: Vec<String>,
    sent: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "plugins/target/wasm32-wasip2/release".into()),
    );
    let mut event_loop: EventLoop<App> = EventLoop::try_new()?;
    let handle = event_loop.handle();
    // Before the host starts any thread: SIGINT and SIGTERM are blocked in
    // every thread from now on and arrive through the loop.
    let mut signals = SignalShutdown::new(&handle, Duration::from_secs(1), &[])?;
    let host = Host::new(handle.clone(), HostConfig::default())?;
    signals.attach(&host);

    // Where plugins' messages to the application arrive.
    let out = host.app_channel("out")?;
    handle.insert_source(out, |event, _, app: &mut App| match event {
        Event::Msg(bytes) => {
            let s = String::from_utf8_lossy(&bytes).into_owned();
            println!("app: got {s:?}");
            app.answers.push(s);
        }
        Event::Closed => println!("app: every plugin sender to @app/out is gone"),
    })?;
    // Learn when plugins end.
    handle.insert_source(host.exit_events().expect("first take"), |event, _, _| {
        if let Event::Msg(exit) = event {
            println!("app: plugin {} {}", exit.name, exit.reason);
        }
    })?;

    host.load_file(
        dir.join("relay.wasm"),
        "relay",
        &["--prefix".into(), "echo: ".into()],
    )?;
    host.load_file(
        dir.join("ticker.wasm"),
        "ticker",
        &[
            "--every".into(),
            "40ms".into(),
            "--count".into(),
            "4".into(),
        ],
    )?;

    // The application's own timer feeds the relay, then closes its input.
    let mut to_relay = Some(host.sender("relay/in")?);
    handle.insert_source(
        Timer::from_duration(Duration::from_millis(30)),
        move |_, _, app: &mut App| {
            match &to_relay {
                Some(tx) if app.sent < 5 => {
                    app.sent += 1;
                    tx.send(format!("hello #{}", app.sent).into_bytes())
                        .expect("relay alive");
                    TimeoutAction::ToDuration(Duration::from_millis(30))
                }
                _ => {
                    to_relay = None; // dropping the sender closes relay/in: the relay ends
                    TimeoutAction::Drop
                }
            }
        },
    )?;

    let mut app = App::default();
    while !host.is_empty() {
        event_loop.dispatch(Some(Duration::from_millis(100)), &mut app)?;
        if signals.handle_pending(&host) == ShutdownPhase::ForcedExit {
            break;
        }
    }
    event_loop.dispatch(Some(Duration::ZERO), &mut app)?;
    println!(
        "app: {} answers; exits: {:?}",
        app.answers.len(),
        host.exits()
    );
    Ok(())
}
