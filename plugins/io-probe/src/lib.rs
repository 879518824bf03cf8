//! `io-probe`: tries capabilities and reports each outcome; used by the
//! sandbox-escape tests.
//!
//! Each argument is one probe, run in order; each prints one line
//! `ALLOWED <probe>` or `DENIED <probe>: <message>` (or
//! `FAILED <probe>: <message>` for an error that is not a refusal):
//!
//! * `connect:ADDR`, `bind:ADDR`, `udp-bind:ADDR`, `udp-send:BIND>ADDR`
//! * `read:PATH` (open a file and read it), `write:PATH`, `list:PATH`,
//!   `unix-bind:PATH`, `unix-connect:PATH`, `unix-pair:PATH` (bind, connect,
//!   accept and exchange two bytes)
//! * `fd:NAME`, `fd-twice:NAME` (take it, drop it, take it again), `stdin`
//! * `signal:NAME` (e.g. `signal:USR2`)
//! * `stale-source` (change the interest of a removed registration)
//! * `trap-first-run`: traps on the first run (`CALLOP_RESTARTS` 0 or
//!   unset); on a restart it passes, and the probes after it run
//! * the same grants through WASI (Rust's `std`): `std-read:PATH` (also
//!   prints `CONTENT <probe>: <text>`), `std-write:PATH`, `std-list:PATH`,
//!   `std-connect:ADDR` (connects and sends `wasi`), `std-bind:ADDR`,
//!   `std-udp-send:BIND>ADDR`, `std-stdin` (reads one line; prints
//!   `CONTENT std-stdin: <line>`, empty at end of input)
//!
//! A `std` error counts as a refusal (`DENIED`) when its kind is
//! `PermissionDenied`; every message names the error kind.
//!
//! The plugin registers no source and ends after the probes.

use std::io::Read;

use callop_guest::generic::{Generic, Interest, Mode};
use callop_guest::io::is_denied;
use callop_guest::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
use callop_guest::signals::{Signal, Signals};
use callop_guest::{fs, ErrorCode, LoopHandle, Plugin};

struct IoProbe;

fn report(probe: &str, r: Result<(), (bool, String)>) {
    match r {
        Ok(()) => println!("ALLOWED {probe}"),
        Err((true, m)) => println!("DENIED {probe}: {m}"),
        Err((false, m)) => println!("FAILED {probe}: {m}"),
    }
}

fn io<T>(r: std::io::Result<T>) -> Result<T, (bool, String)> {
    r.map_err(|e| {
        (
            is_denied(&e)
                || callop_guest::io::error_kind(&e) == Some(callop_guest::io::IoErrorKind::Closed),
            e.to_string(),
        )
    })
}

/// A `std` result: `PermissionDenied` is a refusal.
fn stdio<T>(r: std::io::Result<T>) -> Result<T, (bool, String)> {
    r.map_err(|e| {
        (
            e.kind() == std::io::ErrorKind::PermissionDenied,
            format!("{:?}: {e}", e.kind()),
        )
    })
}

fn sdk<T>(r: callop_guest::Result<T>) -> Result<T, (bool, String)> {
    r.map_err(|e| {
        (
            matches!(e.code, ErrorCode::NotPermitted | ErrorCode::InvalidSource),
            e.message,
        )
    })
}

fn signal(name: &str) -> Option<Signal> {
    Some(match name {
        "HUP" => Signal::SIGHUP,
        "INT" => Signal::SIGINT,
        "TERM" => Signal::SIGTERM,
        "USR1" => Signal::SIGUSR1,
        "USR2" => Signal::SIGUSR2,
        _ => return None,
    })
}

fn probe(handle: &LoopHandle<()>, p: &str) -> Result<(), (bool, String)> {
    let (what, arg) = p.split_once(':').unwrap_or((p, ""));
    match what {
        "connect" => io(TcpStream::connect(arg)).map(drop),
        "bind" => io(TcpListener::bind(arg)).map(drop),
        "udp-bind" => io(UdpSocket::bind(arg)).map(drop),
        "udp-send" => {
            let (bind, to) = arg
                .split_once('>')
                .ok_or((false, "udp-send:BIND>ADDR".to_string()))?;
            let s = io(UdpSocket::bind(bind))?;
            io(s.send_to(b"probe", to)).map(drop)
        }
        "read" => {
            let mut f = io(fs::File::open(arg))?;
            let mut s = Vec::new();
            io(f.read_to_end(&mut s)).map(drop)
        }
        "write" => io(fs::write(arg, b"probe")),
        "list" => io(fs::Dir::open(arg).and_then(|d| d.entries())).map(drop),
        "unix-bind" => io(UnixListener::bind(arg)).map(drop),
        "unix-connect" => io(UnixStream::connect(arg)).map(drop),
        "unix-pair" => {
            // bind, connect, accept, exchange bytes
            let l = io(UnixListener::bind(arg))?;
            let c = io(UnixStream::connect(arg))?;
            let s = io(l.accept())?;
            io(c.write(b"hi"))?;
            let mut b = [0u8; 2];
            io(s.read(&mut b))?;
            if &b != b"hi" {
                return Err((false, "bytes lost".into()));
            }
            Ok(())
        }
        "fd" => io(fs::Fd::open(arg)).map(drop),
        "fd-twice" => {
            drop(io(fs::Fd::open(arg))?);
            io(fs::Fd::open(arg)).map(drop)
        }
        "stdin" => io(fs::stdin()).map(drop),
        "signal" => {
            let s = signal(arg).ok_or((false, format!("unknown signal {arg}")))?;
            let t = sdk(handle.insert_source(
                Signals::new(&[s]).map_err(|e| (false, e.message))?,
                |_, _, _| callop_guest::PostAction::Continue,
            ))?;
            handle.remove(t);
            Ok(())
        }
        "trap-first-run" => {
            let restarts = std::env::var("CALLOP_RESTARTS").unwrap_or_default();
            if restarts.is_empty() || restarts == "0" {
                std::arch::wasm32::unreachable();
            }
            Ok(())
        }
        "stale-source" => {
            let l = io(TcpListener::bind(arg))?;
            let t = sdk(handle
                .insert_source(Generic::new(l, Interest::READ, Mode::Level), |_, _, _| {
                    Ok(callop_guest::PostAction::Continue)
                }))?;
            handle.remove(t);
            sdk(handle.set_interest(&t, Interest::BOTH, Mode::Level))
        }
        "std-read" => {
            let text = stdio(std::fs::read_to_string(arg))?;
            println!("CONTENT {p}: {}", text.trim_end());
            Ok(())
        }
        "std-write" => stdio(std::fs::write(arg, b"probe")),
        "std-list" => stdio(std::fs::read_dir(arg).map(|d| d.count())).map(drop),
        "std-connect" => {
            use std::io::Write;
            let mut s = stdio(std::net::TcpStream::connect(arg))?;
            stdio(s.write_all(b"wasi"))
        }
        "std-bind" => stdio(std::net::TcpListener::bind(arg)).map(drop),
        "std-udp-send" => {
            let (bind, to) = arg
                .split_once('>')
                .ok_or((false, "std-udp-send:BIND>ADDR".to_string()))?;
            let s = stdio(std::net::UdpSocket::bind(bind))?;
            stdio(s.send_to(b"probe", to)).map(drop)
        }
        "std-stdin" => {
            let mut line = String::new();
            stdio(std::io::stdin().read_line(&mut line))?;
            println!("CONTENT {p}: {}", line.trim_end());
            Ok(())
        }
        _ => Err((false, format!("unknown probe {p:?}"))),
    }
}

impl Plugin for IoProbe {
    type State = ();

    fn init(handle: &LoopHandle<()>, args: Vec<String>) -> Result<(), String> {
        for p in &args {
            report(p, probe(handle, p));
        }
        Ok(())
    }
}

callop_guest::export_plugin!(IoProbe);
