//! `Host::sender`: the application's sender goes straight into the plugin's
//! channel (no forwarding source, no extra loop iteration).

use std::time::Duration;

use callop::EventLoop;
use callop_plugin_host::{EngineOptions, ExitReason, Host, HostConfig, HostError};
use callop_tests::{cache_dir, plugin};

fn host<'l>(ev: &EventLoop<'l, ()>) -> Host<'l, ()> {
    let config = HostConfig {
        engine: EngineOptions {
            cache_dir: Some(cache_dir()),
            ..Default::default()
        },
        ..Default::default()
    };
    Host::new(ev.handle(), config).unwrap()
}

#[test]
fn a_message_sent_before_dispatch_is_delivered_in_that_dispatch() {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = host(&ev);
    host.load_file(
        plugin("bench-sink"),
        "sink",
        &["--messages".into(), "2".into()],
    )
    .unwrap();
    let tx = host.sender("sink/in").unwrap();
    let tx2 = tx.clone();
    assert_eq!(tx2.target(), "sink/in");
    tx.send(b"a".to_vec()).unwrap();
    tx2.send(b"b".to_vec()).unwrap();
    // One wake-up: the channel batch, then the plugin's flush in the same
    // iteration's idle phase; the sink stops at its 2nd message.
    ev.dispatch(Some(Duration::from_secs(5)), &mut ()).unwrap();
    assert!(
        host.is_empty(),
        "the sink should have stopped: {:?}",
        host.plugins()
    );
    assert_eq!(host.exits()[0].reason, ExitReason::Stopped(0));
}

#[test]
fn sending_to_an_ended_plugin_reports_closed() {
    let mut ev: EventLoop<()> = EventLoop::try_new().unwrap();
    let host = host(&ev);
    host.load_file(
        plugin("bench-sink"),
        "sink",
        &["--messages".into(), "1".into()],
    )
    .unwrap();
    let tx = host.sender("sink/in").unwrap();
    tx.send(b"x".to_vec()).unwrap();
    while !host.is_empty() {
        ev.dispatch(Some(Duration::from_millis(100)), &mut ())
            .unwrap();
    }
    let e = tx.send(b"late".to_vec()).unwrap_err();
    assert!(
        matches!(e, HostError::Closed(ref m) if m.contains("sink/in")),
        "{e}"
    );
}
