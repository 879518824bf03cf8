//! Host side of WIT interface `callop:plugin/io`: host-owned I/O objects
//! (sockets, granted descriptors, stdin, files, directories), their
//! registration on the loop, and signal subscriptions.
//!
//! No raw descriptor crosses the boundary: each object is an entry of the
//! instance's resource table, created only after a [`Capabilities`] check.
//! Registering a pollable object queues an [`Op::Add`]; the runtime then
//! inserts a real [`Generic`](callop::generic::Generic) source over the
//! object into the loop, whose callback queues an `event-kind.readiness`
//! for the plugin (see `host/io_routing.rs`). Objects that the OS cannot
//! poll (a regular file passed as stdin or `--fd`) are reported always
//! ready.
//! Dropping the store (the plugin ended or failed) drops the table and the
//! loop sources, which closes every object the plugin held.
//!
//! Layout (as wasmtime-wasi's `p2/host/{tcp,udp,filesystem}.rs`): this
//! module holds the interface-level functions of [`wit::Host`], the shared
//! error helpers and the per-plugin [`IoState`]; each resource family has
//! its own module implementing its `wit::HostXxx` trait over the concrete
//! type the resource table holds:
//! * `pollable` — [`Pollable`], the table entry of every pollable
//!   resource, and [`IoReg`], what the loop holds of a registered one;
//! * `stream` — read and write shared by the byte streams;
//! * `tcp`, `udp`, `unix` — sockets;
//! * `fd` — granted descriptors and stdin;
//! * `file`, `dir` — files and directories inside granted directories;
//! * `signals` — the WIT signal names.

mod dir;
mod fd;
mod file;
mod pollable;
mod signals;
mod stream;
mod tcp;
#[cfg(test)]
mod tests;
mod udp;
mod unix;

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use cap_std::fs::Dir as CapDir;
use wasmtime::component::{Resource, ResourceTableError};

use super::bindings::callop::plugin::io as wit;
use super::bindings::callop::plugin::types::{Error, ErrorCode, Signal as WitSignal, SourceId};
use super::capabilities::{Capabilities, FdGrant};
use super::sources::Source;
use super::state::{Op, PluginState, wit_err};
use callop::{Interest, Mode};

pub use dir::DirRes;
pub use fd::{FdRes, GrantedFd};
pub use file::FileRes;
pub use pollable::Pollable;
pub(crate) use pollable::{IoReg, LoopFd};
pub(crate) use signals::from_signal;
pub use tcp::{TcpListenerRes, TcpStreamRes};
pub use udp::UdpSocketRes;
pub use unix::{BoundListener, UnixListenerRes, UnixStreamRes};

/// Largest single read or datagram returned to a guest.
pub const MAX_READ: u32 = 256 * 1024;

/// Per-instance I/O state.
pub(crate) struct IoState {
    pub caps: Capabilities,
    /// Opened granted directories (index = grant index), lazily.
    dirs: Vec<Option<CapDir>>,
    /// Whether stdin was taken.
    stdin_taken: bool,
}

impl IoState {
    pub fn new(caps: Capabilities) -> IoState {
        let n = caps.dirs.len();
        IoState {
            caps,
            dirs: (0..n).map(|_| None).collect(),
            stdin_taken: false,
        }
    }
}

// ------------------------------------------------------------------ errors

fn failure(kind: wit::IoErrorKind, message: impl Into<String>) -> wit::IoFailure {
    wit::IoFailure {
        kind,
        message: message.into(),
    }
}

fn denied(message: impl Into<String>) -> wit::IoFailure {
    failure(wit::IoErrorKind::NotPermitted, message)
}

fn kind_of(e: &io::Error) -> wit::IoErrorKind {
    use io::ErrorKind as K;
    use wit::IoErrorKind as W;
    match e.kind() {
        K::NotFound => W::NotFound,
        K::PermissionDenied => W::PermissionDenied,
        K::AlreadyExists => W::AlreadyExists,
        K::AddrInUse => W::AddrInUse,
        K::AddrNotAvailable => W::AddrNotAvailable,
        K::ConnectionRefused => W::ConnectionRefused,
        K::ConnectionReset => W::ConnectionReset,
        K::ConnectionAborted => W::ConnectionAborted,
        K::NotConnected => W::NotConnected,
        K::BrokenPipe => W::BrokenPipe,
        K::TimedOut => W::TimedOut,
        K::InvalidInput | K::InvalidData => W::InvalidInput,
        K::IsADirectory | K::NotADirectory => W::IsDirectory,
        K::Unsupported => W::Unsupported,
        _ => W::Other,
    }
}

/// An OS error of an object call.
fn os(what: &str, e: io::Error) -> wit::IoFailure {
    failure(kind_of(&e), format!("{what}: {e}"))
}

/// An object call's error, `would-block` kept distinct.
fn nb(what: &str, e: io::Error) -> wit::IoError {
    if e.kind() == io::ErrorKind::WouldBlock {
        wit::IoError::WouldBlock
    } else {
        wit::IoError::Failed(os(what, e))
    }
}

/// A path call's error: a cap-std escape is a capability refusal.
fn path_err(op: &str, guest: &str, grant: &str, e: io::Error) -> wit::IoFailure {
    let msg = e.to_string();
    if msg.contains("outside of the filesystem") || msg.contains("escape") {
        denied(format!(
            "{op} {guest} denied: the path leads outside the granted directory {grant}; \
             grant the target with --dir HOST::GUEST"
        ))
    } else {
        failure(kind_of(&e), format!("{op} {guest}: {e}"))
    }
}

/// A write under a read-only grant.
fn ro_denied(op: &str, path: &str, grant: &str) -> wit::IoFailure {
    denied(format!(
        "{op} {path} denied: {grant} is granted read-only; grant it read-write with --dir HOST::{grant}"
    ))
}

fn parse_addr(s: &str) -> Result<SocketAddr, wit::IoFailure> {
    s.parse().map_err(|_| {
        failure(
            wit::IoErrorKind::InvalidInput,
            format!("`{s}` is not an `ip:port` socket address"),
        )
    })
}

/// A socket address as the guest sees it (`what` names the call).
fn address(r: io::Result<SocketAddr>, what: &str) -> Result<String, wit::IoError> {
    r.map(|a| a.to_string()).map_err(|e| nb(what, e))
}

fn closed(what: &str) -> wit::IoFailure {
    failure(wit::IoErrorKind::Closed, format!("{what} is closed"))
}

/// The `set non-blocking` step of creating a socket.
fn nonblocking(r: io::Result<()>) -> Result<(), wit::IoFailure> {
    r.map_err(|e| os("set non-blocking", e))
}

// ------------------------------------------------------------ the state

impl PluginState {
    /// Puts a new object in the table, within the handle limit.
    fn push_io<T: Send + 'static>(&mut self, v: T) -> Result<Resource<T>, wit::IoFailure> {
        self.check_handles()
            .map_err(|e| failure(wit::IoErrorKind::Other, e.message))?;
        let r = self
            .table
            .push(v)
            .map_err(|e| failure(wit::IoErrorKind::Other, format!("resource table: {e}")))?;
        self.handles += 1;
        self.run_stats.io_objects += 1;
        Ok(r)
    }

    /// Removes an object from the table (the guest dropped it).
    fn drop_io<T: 'static>(&mut self, rep: Resource<T>) -> Option<T> {
        let v = self.table.delete(rep).ok()?;
        self.handles = self.handles.saturating_sub(1);
        self.run_stats.io_objects = self.run_stats.io_objects.saturating_sub(1);
        Some(v)
    }

    /// A socket address to bind, if granted.
    fn bind_address(&self, address: &str) -> Result<SocketAddr, wit::IoFailure> {
        let addr = parse_addr(address)?;
        self.io.caps.check_bind(addr).map_err(denied)?;
        Ok(addr)
    }

    /// The opened granted directory `i`.
    fn grant_dir(&mut self, i: usize) -> Result<&CapDir, wit::IoFailure> {
        if self.io.dirs[i].is_none() {
            let g = &self.io.caps.dirs[i];
            let d =
                CapDir::open_ambient_dir(&g.host, cap_std::ambient_authority()).map_err(|e| {
                    failure(
                        kind_of(&e),
                        format!("granted directory {} ({}): {e}", g.guest, g.host.display()),
                    )
                })?;
            self.io.dirs[i] = Some(d);
        }
        Ok(self.io.dirs[i].as_ref().expect("just opened"))
    }

    /// Resolves a guest path: (grant dir, relative path, guest grant path, read-only).
    fn resolve_path(
        &mut self,
        op: &str,
        path: &str,
    ) -> Result<(CapDir, PathBuf, String, bool), wit::IoFailure> {
        let (i, rel) = self
            .io
            .caps
            .resolve(path)
            .map_err(|m| denied(format!("{op} {m}")))?;
        let (guest, ro) = (
            self.io.caps.dirs[i].guest.clone(),
            self.io.caps.dirs[i].read_only,
        );
        let d = self
            .grant_dir(i)?
            .try_clone()
            .map_err(|e| os("duplicate directory handle", e))?;
        Ok((d, rel, guest, ro))
    }
}

fn interest_of(i: wit::Interest) -> Interest {
    Interest {
        readable: (i & wit::Interest::READABLE) == wit::Interest::READABLE,
        writable: (i & wit::Interest::WRITABLE) == wit::Interest::WRITABLE,
    }
}

fn mode_of(m: wit::Mode) -> Mode {
    match m {
        wit::Mode::Oneshot => Mode::OneShot,
        wit::Mode::Level => Mode::Level,
        wit::Mode::Edge => Mode::Edge,
    }
}

// --------------------------------------------------------- the interface

impl wit::Host for PluginState {
    fn bind_tcp(&mut self, address: String) -> Result<Resource<TcpListenerRes>, wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        let addr = self.bind_address(&address)?;
        let l = TcpListener::bind(addr).map_err(|e| os(&format!("bind to {addr}"), e))?;
        nonblocking(l.set_nonblocking(true))?;
        self.push_io(Pollable::new(l))
    }

    fn connect_tcp(&mut self, address: String) -> Result<Resource<TcpStreamRes>, wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        let addr = parse_addr(&address)?;
        self.io.caps.check_connect(addr).map_err(denied)?;
        let s = tcp::connect_nonblocking(addr).map_err(|e| os(&format!("connect to {addr}"), e))?;
        self.push_io(Pollable::new(s))
    }

    fn bind_udp(&mut self, address: String) -> Result<Resource<UdpSocketRes>, wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        let addr = self.bind_address(&address)?;
        let s = UdpSocket::bind(addr).map_err(|e| os(&format!("bind to {addr}"), e))?;
        nonblocking(s.set_nonblocking(true))?;
        self.push_io(Pollable::new(s))
    }

    fn bind_unix(&mut self, path: String) -> Result<Resource<UnixListenerRes>, wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        let (root, rel, grant, ro) = self.resolve_path("bind", &path)?;
        if ro {
            return Err(ro_denied("bind", &path, &grant));
        }
        let (dir, name) = unix::socket_dir(&root, &rel, "bind", &path, &grant)?;
        let l = BoundListener::bind(dir, name).map_err(|e| os(&format!("bind {path}"), e))?;
        nonblocking(l.listener().set_nonblocking(true))?;
        self.push_io(Pollable::new(l))
    }

    fn connect_unix(&mut self, path: String) -> Result<Resource<UnixStreamRes>, wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        let (root, rel, grant, _) = self.resolve_path("connect to", &path)?;
        let (dir, name) = unix::socket_dir(&root, &rel, "connect to", &path, &grant)?;
        let meta = dir
            .symlink_metadata(&name)
            .map_err(|e| path_err("connect to", &path, &grant, e))?;
        if meta.file_type().is_symlink() {
            return Err(denied(format!(
                "connect to {path} denied: it is a symbolic link, which may lead outside the granted directory {grant} (--dir)"
            )));
        }
        let s = UnixStream::connect(unix::proc_path(&dir, &name))
            .map_err(|e| os(&format!("connect to {path}"), e))?;
        nonblocking(s.set_nonblocking(true))?;
        self.push_io(Pollable::new(s))
    }

    fn open_fd(&mut self, name: String) -> Result<Resource<FdRes>, wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        let grant = match self.io.caps.fds.get_mut(&name) {
            None => {
                return Err(denied(format!(
                    "fd `{name}` denied: it was not granted; grant it with --fd {name}=N"
                )));
            }
            Some(g) => std::mem::replace(g, FdGrant::Taken),
        };
        let FdGrant::Available(fd) = grant else {
            return Err(closed(&format!(
                "fd `{name}` (a granted descriptor can be taken once; it was already taken)"
            )));
        };
        let obj = GrantedFd::new(fd, &name, false).map_err(|e| os(&format!("fd `{name}`"), e))?;
        self.push_io(Pollable::new(obj))
    }

    fn open_stdin(&mut self) -> Result<Resource<FdRes>, wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        if !self.io.caps.stdin {
            return Err(denied("stdin denied: grant it with --stdin"));
        }
        if std::mem::replace(&mut self.io.stdin_taken, true) {
            return Err(closed("stdin (it can be taken once; it was already taken)"));
        }
        let fd = rustix::io::fcntl_dupfd_cloexec(std::io::stdin().as_fd(), 3)
            .map_err(|e| os("stdin", e.into()))?;
        let obj = GrantedFd::new(fd, "stdin", true).map_err(|e| os("stdin", e))?;
        self.push_io(Pollable::new(obj))
    }

    fn open_dir(&mut self, path: String) -> Result<Resource<DirRes>, wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        let (root, rel, grant, ro) = self.resolve_path("open", &path)?;
        let dir = if rel == Path::new(".") {
            root
        } else {
            root.open_dir(&rel)
                .map_err(|e| path_err("open", &path, &grant, e))?
        };
        self.push_io(DirRes::new(dir, path, ro))
    }

    fn open_file(
        &mut self,
        path: String,
        flags: wit::OpenFlags,
    ) -> Result<Resource<FileRes>, wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        let (root, rel, grant, ro) = self.resolve_path("open", &path)?;
        let (opts, mutating) = file::open_options(flags);
        if mutating && ro {
            return Err(ro_denied("write to", &path, &grant));
        }
        let f = root
            .open_with(&rel, &opts)
            .and_then(file::only_regular)
            .map_err(|e| path_err("open", &path, &grant, e))?;
        self.push_io(FileRes::new(f))
    }

    fn register(
        &mut self,
        object: wit::Pollable,
        interest: wit::Interest,
        mode: wit::Mode,
    ) -> Result<SourceId, Error> {
        let _t = crate::stats::HostCall::start();
        let (interest, mode) = (interest_of(interest), mode_of(mode));
        match object {
            wit::Pollable::TcpListener(r) => self.register_pollable(&r, interest, mode),
            wit::Pollable::TcpStream(r) => self.register_pollable(&r, interest, mode),
            wit::Pollable::UdpSocket(r) => self.register_pollable(&r, interest, mode),
            wit::Pollable::UnixListener(r) => self.register_pollable(&r, interest, mode),
            wit::Pollable::UnixStream(r) => self.register_pollable(&r, interest, mode),
            wit::Pollable::Fd(r) => self.register_pollable(&r, interest, mode),
        }
    }

    fn set_interest(
        &mut self,
        id: SourceId,
        interest: wit::Interest,
        mode: wit::Mode,
    ) -> Result<(), Error> {
        let _t = crate::stats::HostCall::start();
        let reg = self.sources.io_mut(id)?;
        reg.interest = interest_of(interest);
        reg.mode = mode_of(mode);
        self.ops.push(Op::SetInterest(id));
        Ok(())
    }

    fn add_signals(&mut self, signals: Vec<WitSignal>) -> Result<SourceId, Error> {
        let _t = crate::stats::HostCall::start();
        let list = signals::granted(&self.io.caps, signals)?;
        let id = self.sources.add(Source::Signals(list))?;
        self.ops.push(Op::Add(id));
        Ok(id)
    }
}

/// A `bad handle` error of `register`.
fn bad_handle(e: ResourceTableError) -> Error {
    wit_err(ErrorCode::InvalidArgument, format!("bad handle: {e}"))
}
