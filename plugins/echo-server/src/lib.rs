//! `echo-server`: a TCP echo server, in two styles.
//!
//! Args: `--listen ADDR` (default `127.0.0.1:7000`), `--async` (use the
//! SDK's executor instead of callbacks), `--edge` (callback style: register
//! connections in edge mode and drain them), `--edge-no-drain` (edge mode
//! but read only `--chunk` bytes per event: demonstrates the stall of an
//! edge-triggered source that is not drained), `--chunk N` (read size,
//! default 65536), `--exit-after N` (end after N connections closed).
//!
//! Needs `--allow-net ADDR`. Prints `echo-server: listening on ADDR` once
//! bound, and `echo-server: done after N connections` when it ends.

use std::cell::{Cell, RefCell};
use std::io::{self, ErrorKind};
use std::rc::Rc;

use callop_guest::futures::Async;
use callop_guest::generic::{Generic, Interest, Mode, NoIoDrop};
use callop_guest::io::{read_available, write_pending};
use callop_guest::net::{TcpListener, TcpStream};
use callop_guest::{LoopHandle, Plugin, PostAction, RegistrationToken};

struct EchoServer;

#[derive(Clone)]
struct Opts {
    listen: String,
    use_async: bool,
    mode: Mode,
    drain: bool,
    chunk: usize,
    exit_after: Option<u64>,
}

/// Plugin state (callback style).
pub struct State {
    closed: u64,
    opts: Opts,
    listener: Option<RegistrationToken>,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        listen: "127.0.0.1:7000".into(),
        use_async: false,
        mode: Mode::Level,
        drain: true,
        chunk: 65536,
        exit_after: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |n: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{n} needs a value"))
        };
        match a.as_str() {
            "--listen" => o.listen = val("--listen")?,
            "--async" => o.use_async = true,
            "--edge" => o.mode = Mode::Edge,
            "--edge-no-drain" => {
                o.mode = Mode::Edge;
                o.drain = false;
            }
            "--chunk" => o.chunk = val("--chunk")?.parse().map_err(|_| "--chunk: not a number")?,
            "--exit-after" => {
                o.exit_after = Some(val("--exit-after")?.parse().map_err(|_| "--exit-after: not a number")?)
            }
            other => return Err(format!(
                "unknown argument {other:?} (usage: [--listen ADDR] [--async] [--edge|--edge-no-drain] [--chunk N] [--exit-after N])"
            )),
        }
    }
    Ok(o)
}

/// One connection (callback style): the bytes not written back yet.
struct Conn {
    out: Vec<u8>,
    eof: bool,
    /// Whether the registration currently includes writability.
    want_write: bool,
    token: Rc<Cell<Option<RegistrationToken>>>,
}

fn on_conn(
    handle: &LoopHandle<State>,
    conn: &mut Conn,
    stream: &NoIoDrop<TcpStream>,
    st: &mut State,
) -> io::Result<PostAction> {
    let limit = if st.opts.drain {
        usize::MAX
    } else {
        st.opts.chunk
    };
    if !conn.eof {
        let r = read_available(&**stream, &mut conn.out, limit)?;
        conn.eof = r.eof;
    }
    write_pending(&**stream, &mut conn.out)?;
    if conn.eof && conn.out.is_empty() {
        conn_closed(handle, st);
        return Ok(PostAction::Remove);
    }
    // Wait for writability only while output is pending.
    let want_write = !conn.out.is_empty();
    if want_write != conn.want_write {
        conn.want_write = want_write;
        if let Some(t) = conn.token.get() {
            let interest = Interest {
                readable: !conn.eof,
                writable: want_write,
            };
            handle
                .set_interest(&t, interest, st.opts.mode)
                .map_err(io::Error::other)?;
        }
    }
    Ok(PostAction::Continue)
}

fn conn_closed(handle: &LoopHandle<State>, st: &mut State) {
    st.closed += 1;
    if st.opts.exit_after.is_some_and(|n| st.closed >= n) {
        println!("echo-server: done after {} connections", st.closed);
        if let Some(t) = st.listener.take() {
            handle.remove(t);
        }
    }
}

fn on_listener(
    handle: &LoopHandle<State>,
    listener: &TcpListener,
    st: &mut State,
) -> io::Result<PostAction> {
    loop {
        match listener.accept() {
            Ok((stream, _peer)) => {
                let token = Rc::new(Cell::new(None));
                let mut conn = Conn {
                    out: Vec::new(),
                    eof: false,
                    want_write: false,
                    token: token.clone(),
                };
                let h = *handle;
                let t = handle
                    .insert_source(
                        Generic::new(stream, Interest::READ, st.opts.mode),
                        move |_r, s, st: &mut State| on_conn(&h, &mut conn, s, st),
                    )
                    .map_err(io::Error::other)?;
                token.set(Some(t));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(PostAction::Continue),
            Err(e) => {
                callop_guest::warn!("accept failed: {e}");
                return Ok(PostAction::Continue);
            }
        }
    }
}

async fn serve_async(
    listener: Async<TcpListener>,
    opts: Opts,
    closed: Rc<Cell<u64>>,
    stop: Rc<RefCell<bool>>,
) {
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                callop_guest::warn!("accept failed: {e}");
                continue;
            }
        };
        let (closed, opts, stop2) = (closed.clone(), opts.clone(), stop.clone());
        callop_guest::futures::spawn(async move {
            let mut buf = vec![0u8; opts.chunk];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Err(e) = stream.write_all(&buf[..n]).await {
                            callop_guest::debug!("write failed: {e}");
                            break;
                        }
                    }
                    Err(e) => {
                        callop_guest::debug!("read failed: {e}");
                        break;
                    }
                }
            }
            closed.set(closed.get() + 1);
            if opts.exit_after.is_some_and(|n| closed.get() >= n) {
                *stop2.borrow_mut() = true;
                println!("echo-server: done after {} connections", closed.get());
                // Ending the accept task drops the listener; with no source
                // left the plugin ends.
                callop_guest::stop(0);
            }
        });
        if *stop.borrow() {
            return;
        }
    }
}

impl Plugin for EchoServer {
    type State = State;

    fn init(handle: &LoopHandle<State>, args: Vec<String>) -> Result<State, String> {
        let opts = parse(&args)?;
        let listener = TcpListener::bind(&opts.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", opts.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("echo-server: listening on {addr}");
        let mut st = State {
            closed: 0,
            opts: opts.clone(),
            listener: None,
        };
        if opts.use_async {
            let listener = Async::new(listener).map_err(|e| e.to_string())?;
            handle.spawn(serve_async(
                listener,
                opts,
                Rc::new(Cell::new(0)),
                Rc::new(RefCell::new(false)),
            ));
        } else {
            let h = *handle;
            let t = handle
                .insert_source(
                    Generic::new(listener, Interest::READ, Mode::Level),
                    move |_r, l, st: &mut State| on_listener(&h, l, st),
                )
                .map_err(|e| e.to_string())?;
            st.listener = Some(t);
        }
        Ok(st)
    }
}

callop_guest::export_plugin!(EchoServer);
