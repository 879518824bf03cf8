//! `udp-echo`: answers every UDP datagram with the same bytes.
//!
//! Args: `--listen ADDR` (default `127.0.0.1:7001`), `--exit-after N`
//! (end after N datagrams). Needs `--allow-net ADDR` (bind) and permission
//! to send back to the clients (connect), e.g. `--allow-net 127.0.0.1`.

use std::io::ErrorKind;

use callop_guest::generic::{Generic, Interest, Mode};
use callop_guest::net::UdpSocket;
use callop_guest::{LoopHandle, Plugin, PostAction};

struct UdpEcho;

/// Plugin state.
pub struct State {
    echoed: u64,
    dropped: u64,
    exit_after: Option<u64>,
}

impl Plugin for UdpEcho {
    type State = State;

    fn init(handle: &LoopHandle<State>, args: Vec<String>) -> Result<State, String> {
        let mut listen = "127.0.0.1:7001".to_string();
        let mut exit_after = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--listen" => listen = it.next().cloned().ok_or("--listen needs a value")?,
                "--exit-after" => {
                    exit_after = Some(
                        it.next()
                            .ok_or("--exit-after needs a value")?
                            .parse()
                            .map_err(|_| "--exit-after: not a number")?,
                    )
                }
                other => {
                    return Err(format!(
                        "unknown argument {other:?} (usage: [--listen ADDR] [--exit-after N])"
                    ))
                }
            }
        }
        let socket = UdpSocket::bind(&listen).map_err(|e| format!("cannot bind {listen}: {e}"))?;
        println!(
            "udp-echo: listening on {}",
            socket.local_addr().map_err(|e| e.to_string())?
        );
        handle
            .insert_source(
                Generic::new(socket, Interest::READ, Mode::Level),
                |_r, socket, st: &mut State| {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        match socket.recv_from(&mut buf) {
                            Ok((n, from)) => match socket.send_to(&buf[..n], from) {
                                Ok(_) => st.echoed += 1,
                                Err(e) if e.kind() == ErrorKind::WouldBlock => st.dropped += 1,
                                Err(e) => {
                                    callop_guest::warn!("send to {from} failed: {e}");
                                    st.dropped += 1;
                                }
                            },
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                        if st.exit_after.is_some_and(|n| st.echoed + st.dropped >= n) {
                            println!(
                                "udp-echo: done: {} echoed, {} dropped",
                                st.echoed, st.dropped
                            );
                            return Ok(PostAction::Remove);
                        }
                    }
                    Ok(PostAction::Continue)
                },
            )
            .map_err(|e| e.to_string())?;
        Ok(State {
            echoed: 0,
            dropped: 0,
            exit_after,
        })
    }
}

callop_guest::export_plugin!(UdpEcho);
