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

use std::fs::File as StdFile;
use std::io::{self, Read, Seek, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::fs::{Dir as CapDir, OpenOptions as CapOpenOptions};
use wasmtime::component::Resource;

use super::bindings::callop::plugin::io as wit;
use super::bindings::callop::plugin::types::{Error, ErrorCode, Signal as WitSignal, SourceId};
use super::capabilities::{Capabilities, FdGrant, is_plain_name};
use super::sources::Source;
use super::state::{Op, PluginState, wit_err};
use callop::signals::Signal;
use callop::{Interest, Mode};

/// Largest single read or datagram returned to a guest.
pub const MAX_READ: u32 = 256 * 1024;

/// The OS object behind a pollable resource.
pub(crate) enum Obj {
    TcpListener(TcpListener),
    TcpStream(TcpStream),
    Udp(UdpSocket),
    UnixListener(UnixListener),
    UnixStream(UnixStream),
    Fd(StdFile),
}

/// A pollable object shared by the resource table and its loop source.
pub(crate) struct IoObj {
    pub obj: Obj,
    /// The OS cannot poll it (regular file): report it always ready.
    pub always_ready: bool,
    /// The registered source id, 0 if none.
    pub reg: AtomicU64,
    /// File status flags to restore when closed (stdin).
    restore: Option<rustix::fs::OFlags>,
    /// Grant name of an `fd` object.
    pub name: String,
}

impl IoObj {
    fn new(obj: Obj) -> Arc<IoObj> {
        Arc::new(IoObj {
            obj,
            always_ready: false,
            reg: AtomicU64::new(0),
            restore: None,
            name: String::new(),
        })
    }
}

impl AsFd for IoObj {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.obj {
            Obj::TcpListener(x) => x.as_fd(),
            Obj::TcpStream(x) => x.as_fd(),
            Obj::Udp(x) => x.as_fd(),
            Obj::UnixListener(x) => x.as_fd(),
            Obj::UnixStream(x) => x.as_fd(),
            Obj::Fd(x) => x.as_fd(),
        }
    }
}

impl Drop for IoObj {
    fn drop(&mut self) {
        if let Some(flags) = self.restore {
            let _ = rustix::fs::fcntl_setfl(self.as_fd(), flags);
        }
    }
}

/// The loop's handle on a registered object (`Generic<LoopFd>`).
pub(crate) struct LoopFd(pub Arc<IoObj>);

impl AsFd for LoopFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

macro_rules! resources {
    ($($(#[$m:meta])* $name:ident),*) => {$(
        $(#[$m])*
        pub struct $name(pub(crate) Arc<IoObj>);
    )*};
}

resources!(
    /// Host side of a guest `tcp-listener`.
    TcpListenerRes,
    /// Host side of a guest `tcp-stream`.
    TcpStreamRes,
    /// Host side of a guest `udp-socket`.
    UdpSocketRes,
    /// Host side of a guest `unix-listener`.
    UnixListenerRes,
    /// Host side of a guest `unix-stream`.
    UnixStreamRes,
    /// Host side of a guest `fd`.
    FdRes
);

/// Host side of a guest `file`.
pub struct FileRes(StdFile);

/// Host side of a guest `dir`.
pub struct DirRes {
    dir: CapDir,
    /// Guest path (for messages and `path`).
    guest: String,
    read_only: bool,
}

/// I/O registration of a source (kept in its `Source::Io` entry).
pub(crate) struct IoReg {
    pub obj: Arc<IoObj>,
    pub interest: Interest,
    pub mode: Mode,
    /// For an always-ready object: the ping emulating its readiness.
    pub ping: Option<callop::ping::Ping>,
}

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

fn parse_addr(s: &str) -> Result<SocketAddr, wit::IoFailure> {
    s.parse().map_err(|_| {
        failure(
            wit::IoErrorKind::InvalidInput,
            format!("`{s}` is not an `ip:port` socket address"),
        )
    })
}

fn closed(what: &str) -> wit::IoFailure {
    failure(wit::IoErrorKind::Closed, format!("{what} is closed"))
}

fn read_from(r: &mut dyn Read, max: u32, what: &str) -> Result<Vec<u8>, wit::IoError> {
    let mut buf = vec![0u8; max.min(MAX_READ) as usize];
    loop {
        match r.read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(nb(what, e)),
        }
    }
}

fn write_to(w: &mut dyn Write, data: &[u8], what: &str) -> Result<u32, wit::IoError> {
    loop {
        match w.write(data) {
            Ok(n) => return Ok(n as u32),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(nb(what, e)),
        }
    }
}

fn how(h: wit::ShutdownHow) -> Shutdown {
    match h {
        wit::ShutdownHow::Read => Shutdown::Read,
        wit::ShutdownHow::Write => Shutdown::Write,
        wit::ShutdownHow::Both => Shutdown::Both,
    }
}

pub(crate) fn to_signal(s: WitSignal) -> Signal {
    match s {
        WitSignal::Hup => Signal::SIGHUP,
        WitSignal::Int => Signal::SIGINT,
        WitSignal::Quit => Signal::SIGQUIT,
        WitSignal::Usr1 => Signal::SIGUSR1,
        WitSignal::Usr2 => Signal::SIGUSR2,
        WitSignal::Pipe => Signal::SIGPIPE,
        WitSignal::Alrm => Signal::SIGALRM,
        WitSignal::Term => Signal::SIGTERM,
        WitSignal::Chld => Signal::SIGCHLD,
        WitSignal::Cont => Signal::SIGCONT,
        WitSignal::Tstp => Signal::SIGTSTP,
        WitSignal::Ttin => Signal::SIGTTIN,
        WitSignal::Ttou => Signal::SIGTTOU,
        WitSignal::Winch => Signal::SIGWINCH,
    }
}

pub(crate) fn from_signal(s: Signal) -> Option<WitSignal> {
    [
        WitSignal::Hup,
        WitSignal::Int,
        WitSignal::Quit,
        WitSignal::Usr1,
        WitSignal::Usr2,
        WitSignal::Pipe,
        WitSignal::Alrm,
        WitSignal::Term,
        WitSignal::Chld,
        WitSignal::Cont,
        WitSignal::Tstp,
        WitSignal::Ttin,
        WitSignal::Ttou,
        WitSignal::Winch,
    ]
    .into_iter()
    .find(|w| to_signal(*w) == s)
}

// ------------------------------------------------------------- OS helpers

/// Puts a descriptor in non-blocking mode; returns the previous flags.
fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<rustix::fs::OFlags> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(flags)
}

/// Wraps a granted descriptor (non-blocking; regular files always ready).
fn fd_object(fd: OwnedFd, name: &str, restore_flags: bool) -> io::Result<Arc<IoObj>> {
    let stat = rustix::fs::fstat(&fd)?;
    let ft = rustix::fs::FileType::from_raw_mode(stat.st_mode);
    let always_ready = matches!(
        ft,
        rustix::fs::FileType::RegularFile | rustix::fs::FileType::Directory
    );
    let old = set_nonblocking(fd.as_fd())?;
    Ok(Arc::new(IoObj {
        obj: Obj::Fd(StdFile::from(fd)),
        always_ready,
        reg: AtomicU64::new(0),
        restore: restore_flags.then_some(old),
        name: name.to_string(),
    }))
}

/// A non-blocking connect (EINPROGRESS is success: writability tells).
fn connect_nonblocking(addr: SocketAddr) -> io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(TcpStream::from(fd))
}

/// `/proc/self/fd/N/name`: a path to `name` inside an open directory, for
/// the socket calls that only take paths.
fn proc_path(dir: &CapDir, name: &Path) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
}

// ------------------------------------------------------------ the state

impl PluginState {
    fn push_io<T: Send + 'static>(&mut self, v: T) -> Result<Resource<T>, wit::IoFailure> {
        self.check_handles()
            .map_err(|e| failure(wit::IoErrorKind::Other, e.message))?;
        let r = self
            .table
            .push(v)
            .map_err(|e| failure(wit::IoErrorKind::Other, format!("resource table: {e}")))?;
        self.handles += 1;
        Ok(r)
    }

    /// Removes an object from the table; a registration is removed too.
    fn drop_io<T: 'static>(&mut self, rep: Resource<T>, obj: impl Fn(&T) -> Option<Arc<IoObj>>) {
        if let Ok(v) = self.table.delete(rep) {
            self.handles = self.handles.saturating_sub(1);
            if let Some(o) = obj(&v) {
                let id = o.reg.swap(0, Ordering::Relaxed);
                if id != 0 && self.sources.remove(id).is_ok() {
                    self.ops.push(Op::Remove(id));
                }
            }
        }
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

    fn register_obj(
        &mut self,
        obj: Arc<IoObj>,
        interest: wit::Interest,
        mode: wit::Mode,
    ) -> Result<SourceId, Error> {
        if obj.reg.load(Ordering::Relaxed) != 0 {
            return Err(wit_err(
                ErrorCode::AlreadyExists,
                "this object is already registered",
            ));
        }
        let id = self.sources.add(Source::Io(IoReg {
            obj: obj.clone(),
            interest: interest_of(interest),
            mode: mode_of(mode),
            ping: None,
        }))?;
        obj.reg.store(id, Ordering::Relaxed);
        self.ops.push(Op::Add(id));
        Ok(id)
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

fn open_options(f: wit::OpenFlags) -> (CapOpenOptions, bool) {
    let has = |x: wit::OpenFlags| (f & x) == x;
    let mut o = CapOpenOptions::new();
    let write = has(wit::OpenFlags::WRITE) || has(wit::OpenFlags::APPEND);
    o.read(has(wit::OpenFlags::READ) || !write)
        .write(has(wit::OpenFlags::WRITE))
        .append(has(wit::OpenFlags::APPEND))
        .create(has(wit::OpenFlags::CREATE))
        .create_new(has(wit::OpenFlags::CREATE_NEW))
        .truncate(has(wit::OpenFlags::TRUNCATE));
    let mutating = write
        || has(wit::OpenFlags::CREATE)
        || has(wit::OpenFlags::CREATE_NEW)
        || has(wit::OpenFlags::TRUNCATE);
    (o, mutating)
}

fn ro_denied(op: &str, path: &str, grant: &str) -> wit::IoFailure {
    denied(format!(
        "{op} {path} denied: {grant} is granted read-only; grant it read-write with --dir HOST::{grant}"
    ))
}

fn entry_kind(ft: cap_std::fs::FileType) -> wit::EntryKind {
    if ft.is_dir() {
        wit::EntryKind::Directory
    } else if ft.is_file() {
        wit::EntryKind::File
    } else if ft.is_symlink() {
        wit::EntryKind::Symlink
    } else {
        wit::EntryKind::Other
    }
}

fn metadata_of(m: &cap_std::fs::Metadata) -> wit::Metadata {
    let modified = m
        .modified()
        .ok()
        .and_then(|t| t.into_std().duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_nanos()).ok());
    wit::Metadata {
        kind: entry_kind(m.file_type()),
        size: m.len(),
        modified,
    }
}

fn std_metadata(m: &std::fs::Metadata) -> wit::Metadata {
    let kind = if m.is_dir() {
        wit::EntryKind::Directory
    } else if m.is_file() {
        wit::EntryKind::File
    } else if m.file_type().is_symlink() {
        wit::EntryKind::Symlink
    } else {
        wit::EntryKind::Other
    };
    let modified = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_nanos()).ok());
    wit::Metadata {
        kind,
        size: m.len(),
        modified,
    }
}

/// Joins a guest path for messages.
fn join_guest(base: &str, rel: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{rel}")
    } else {
        format!("{base}/{rel}")
    }
}

impl DirRes {
    fn check_write(&self, op: &str, path: &str) -> Result<(), wit::IoFailure> {
        if self.read_only {
            Err(ro_denied(op, &join_guest(&self.guest, path), &self.guest))
        } else {
            Ok(())
        }
    }

    fn err(&self, op: &str, path: &str, e: io::Error) -> wit::IoFailure {
        path_err(op, &join_guest(&self.guest, path), &self.guest, e)
    }
}

// --------------------------------------------------------- the interface

impl wit::Host for PluginState {
    fn bind_tcp(&mut self, address: String) -> Result<Resource<TcpListenerRes>, wit::IoFailure> {
        let addr = parse_addr(&address)?;
        self.io.caps.check_bind(addr).map_err(denied)?;
        let l = TcpListener::bind(addr).map_err(|e| os(&format!("bind to {addr}"), e))?;
        l.set_nonblocking(true)
            .map_err(|e| os("set non-blocking", e))?;
        self.push_io(TcpListenerRes(IoObj::new(Obj::TcpListener(l))))
    }

    fn connect_tcp(&mut self, address: String) -> Result<Resource<TcpStreamRes>, wit::IoFailure> {
        let addr = parse_addr(&address)?;
        self.io.caps.check_connect(addr).map_err(denied)?;
        let s = connect_nonblocking(addr).map_err(|e| os(&format!("connect to {addr}"), e))?;
        self.push_io(TcpStreamRes(IoObj::new(Obj::TcpStream(s))))
    }

    fn bind_udp(&mut self, address: String) -> Result<Resource<UdpSocketRes>, wit::IoFailure> {
        let addr = parse_addr(&address)?;
        self.io.caps.check_bind(addr).map_err(denied)?;
        let s = UdpSocket::bind(addr).map_err(|e| os(&format!("bind to {addr}"), e))?;
        s.set_nonblocking(true)
            .map_err(|e| os("set non-blocking", e))?;
        self.push_io(UdpSocketRes(IoObj::new(Obj::Udp(s))))
    }

    fn bind_unix(&mut self, path: String) -> Result<Resource<UnixListenerRes>, wit::IoFailure> {
        let (root, rel, grant, ro) = self.resolve_path("bind", &path)?;
        if ro {
            return Err(ro_denied("bind", &path, &grant));
        }
        let (parent, name) = split_parent(&rel, &path)?;
        let dir = root
            .open_dir(&parent)
            .map_err(|e| path_err("bind", &path, &grant, e))?;
        let l = UnixListener::bind(proc_path(&dir, &name))
            .map_err(|e| os(&format!("bind {path}"), e))?;
        l.set_nonblocking(true)
            .map_err(|e| os("set non-blocking", e))?;
        self.push_io(UnixListenerRes(IoObj::new(Obj::UnixListener(l))))
    }

    fn connect_unix(&mut self, path: String) -> Result<Resource<UnixStreamRes>, wit::IoFailure> {
        let (root, rel, grant, _) = self.resolve_path("connect to", &path)?;
        let (parent, name) = split_parent(&rel, &path)?;
        let dir = root
            .open_dir(&parent)
            .map_err(|e| path_err("connect to", &path, &grant, e))?;
        let meta = dir
            .symlink_metadata(&name)
            .map_err(|e| path_err("connect to", &path, &grant, e))?;
        if meta.file_type().is_symlink() {
            return Err(denied(format!(
                "connect to {path} denied: it is a symbolic link, which may lead outside the granted directory {grant} (--dir)"
            )));
        }
        let s = UnixStream::connect(proc_path(&dir, &name))
            .map_err(|e| os(&format!("connect to {path}"), e))?;
        s.set_nonblocking(true)
            .map_err(|e| os("set non-blocking", e))?;
        self.push_io(UnixStreamRes(IoObj::new(Obj::UnixStream(s))))
    }

    fn open_fd(&mut self, name: String) -> Result<Resource<FdRes>, wit::IoFailure> {
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
        let obj = fd_object(fd, &name, false).map_err(|e| os(&format!("fd `{name}`"), e))?;
        self.push_io(FdRes(obj))
    }

    fn open_stdin(&mut self) -> Result<Resource<FdRes>, wit::IoFailure> {
        if !self.io.caps.stdin {
            return Err(denied("stdin denied: grant it with --stdin"));
        }
        if std::mem::replace(&mut self.io.stdin_taken, true) {
            return Err(closed("stdin (it can be taken once; it was already taken)"));
        }
        let fd = rustix::io::fcntl_dupfd_cloexec(std::io::stdin().as_fd(), 3)
            .map_err(|e| os("stdin", e.into()))?;
        let obj = fd_object(fd, "stdin", true).map_err(|e| os("stdin", e))?;
        self.push_io(FdRes(obj))
    }

    fn open_dir(&mut self, path: String) -> Result<Resource<DirRes>, wit::IoFailure> {
        let (root, rel, grant, ro) = self.resolve_path("open", &path)?;
        let dir = if rel == Path::new(".") {
            root
        } else {
            root.open_dir(&rel)
                .map_err(|e| path_err("open", &path, &grant, e))?
        };
        self.push_io(DirRes {
            dir,
            guest: path,
            read_only: ro,
        })
    }

    fn open_file(
        &mut self,
        path: String,
        flags: wit::OpenFlags,
    ) -> Result<Resource<FileRes>, wit::IoFailure> {
        let (root, rel, grant, ro) = self.resolve_path("open", &path)?;
        let (opts, mutating) = open_options(flags);
        if mutating && ro {
            return Err(ro_denied("write to", &path, &grant));
        }
        let f = root
            .open_with(&rel, &opts)
            .map_err(|e| path_err("open", &path, &grant, e))?;
        self.push_io(FileRes(f.into_std()))
    }

    fn register(
        &mut self,
        object: wit::Pollable,
        interest: wit::Interest,
        mode: wit::Mode,
    ) -> Result<SourceId, Error> {
        let bad = |e: wasmtime::component::ResourceTableError| {
            wit_err(ErrorCode::InvalidArgument, format!("bad handle: {e}"))
        };
        let obj = match object {
            wit::Pollable::TcpListener(r) => self.table.get(&r).map_err(bad)?.0.clone(),
            wit::Pollable::TcpStream(r) => self.table.get(&r).map_err(bad)?.0.clone(),
            wit::Pollable::UdpSocket(r) => self.table.get(&r).map_err(bad)?.0.clone(),
            wit::Pollable::UnixListener(r) => self.table.get(&r).map_err(bad)?.0.clone(),
            wit::Pollable::UnixStream(r) => self.table.get(&r).map_err(bad)?.0.clone(),
            wit::Pollable::Fd(r) => self.table.get(&r).map_err(bad)?.0.clone(),
        };
        self.register_obj(obj, interest, mode)
    }

    fn set_interest(
        &mut self,
        id: SourceId,
        interest: wit::Interest,
        mode: wit::Mode,
    ) -> Result<(), Error> {
        let reg = self.sources.io_mut(id)?;
        reg.interest = interest_of(interest);
        reg.mode = mode_of(mode);
        self.ops.push(Op::SetInterest(id));
        Ok(())
    }

    fn add_signals(&mut self, signals: Vec<WitSignal>) -> Result<SourceId, Error> {
        if signals.is_empty() {
            return Err(wit_err(ErrorCode::InvalidArgument, "no signal given"));
        }
        let mut list = Vec::new();
        for s in signals {
            let sig = to_signal(s);
            self.io
                .caps
                .check_signal(sig)
                .map_err(|m| wit_err(ErrorCode::NotPermitted, m))?;
            if !list.contains(&sig) {
                list.push(sig);
            }
        }
        let id = self.sources.add(Source::Signals(list))?;
        self.ops.push(Op::Add(id));
        Ok(id)
    }
}

fn split_parent(rel: &Path, guest: &str) -> Result<(PathBuf, PathBuf), wit::IoFailure> {
    let name = rel
        .file_name()
        .map(PathBuf::from)
        .filter(|n| is_plain_name(n))
        .ok_or_else(|| {
            failure(
                wit::IoErrorKind::InvalidInput,
                format!("{guest}: not a socket path inside a granted directory"),
            )
        })?;
    let parent = match rel.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

impl wit::HostTcpListener for PluginState {
    fn accept(
        &mut self,
        self_: Resource<TcpListenerRes>,
    ) -> Result<(Resource<TcpStreamRes>, String), wit::IoError> {
        let obj = self
            .table
            .get(&self_)
            .map_err(|_| wit::IoError::Failed(closed("tcp-listener")))?
            .0
            .clone();
        let Obj::TcpListener(l) = &obj.obj else {
            unreachable!("a tcp-listener resource holds a listener")
        };
        let (s, peer) = l.accept().map_err(|e| nb("accept", e))?;
        s.set_nonblocking(true)
            .map_err(|e| wit::IoError::Failed(os("set non-blocking", e)))?;
        let r = self
            .push_io(TcpStreamRes(IoObj::new(Obj::TcpStream(s))))
            .map_err(wit::IoError::Failed)?;
        Ok((r, peer.to_string()))
    }

    fn local_address(&mut self, self_: Resource<TcpListenerRes>) -> Result<String, wit::IoError> {
        let obj = &self
            .table
            .get(&self_)
            .map_err(|_| wit::IoError::Failed(closed("tcp-listener")))?
            .0;
        let Obj::TcpListener(l) = &obj.obj else {
            unreachable!()
        };
        l.local_addr()
            .map(|a| a.to_string())
            .map_err(|e| nb("local address", e))
    }

    fn drop(&mut self, rep: Resource<TcpListenerRes>) -> wasmtime::Result<()> {
        self.drop_io(rep, |r| Some(r.0.clone()));
        Ok(())
    }
}

/// Gets the stream of a tcp-stream resource.
macro_rules! stream_of {
    ($self:ident, $res:expr, $variant:ident, $what:expr) => {{
        let obj = $self
            .table
            .get(&$res)
            .map_err(|_| wit::IoError::Failed(closed($what)))?
            .0
            .clone();
        obj
    }};
}

impl wit::HostTcpStream for PluginState {
    fn read(&mut self, self_: Resource<TcpStreamRes>, max: u32) -> Result<Vec<u8>, wit::IoError> {
        let obj = stream_of!(self, self_, TcpStream, "tcp-stream");
        let Obj::TcpStream(s) = &obj.obj else {
            unreachable!()
        };
        read_from(&mut &*s, max, "read")
    }

    fn write(&mut self, self_: Resource<TcpStreamRes>, data: Vec<u8>) -> Result<u32, wit::IoError> {
        let obj = stream_of!(self, self_, TcpStream, "tcp-stream");
        let Obj::TcpStream(s) = &obj.obj else {
            unreachable!()
        };
        write_to(&mut &*s, &data, "write")
    }

    fn shutdown(
        &mut self,
        self_: Resource<TcpStreamRes>,
        h: wit::ShutdownHow,
    ) -> Result<(), wit::IoError> {
        let obj = stream_of!(self, self_, TcpStream, "tcp-stream");
        let Obj::TcpStream(s) = &obj.obj else {
            unreachable!()
        };
        s.shutdown(how(h)).map_err(|e| nb("shutdown", e))
    }

    fn take_error(&mut self, self_: Resource<TcpStreamRes>) -> Option<wit::IoFailure> {
        let obj = self.table.get(&self_).ok()?.0.clone();
        let Obj::TcpStream(s) = &obj.obj else {
            unreachable!()
        };
        match s.take_error() {
            Ok(None) => None,
            Ok(Some(e)) | Err(e) => Some(os("connect", e)),
        }
    }

    fn local_address(&mut self, self_: Resource<TcpStreamRes>) -> Result<String, wit::IoError> {
        let obj = stream_of!(self, self_, TcpStream, "tcp-stream");
        let Obj::TcpStream(s) = &obj.obj else {
            unreachable!()
        };
        s.local_addr()
            .map(|a| a.to_string())
            .map_err(|e| nb("local address", e))
    }

    fn peer_address(&mut self, self_: Resource<TcpStreamRes>) -> Result<String, wit::IoError> {
        let obj = stream_of!(self, self_, TcpStream, "tcp-stream");
        let Obj::TcpStream(s) = &obj.obj else {
            unreachable!()
        };
        s.peer_addr()
            .map(|a| a.to_string())
            .map_err(|e| nb("peer address", e))
    }

    fn set_nodelay(
        &mut self,
        self_: Resource<TcpStreamRes>,
        enabled: bool,
    ) -> Result<(), wit::IoError> {
        let obj = stream_of!(self, self_, TcpStream, "tcp-stream");
        let Obj::TcpStream(s) = &obj.obj else {
            unreachable!()
        };
        s.set_nodelay(enabled).map_err(|e| nb("set nodelay", e))
    }

    fn drop(&mut self, rep: Resource<TcpStreamRes>) -> wasmtime::Result<()> {
        self.drop_io(rep, |r| Some(r.0.clone()));
        Ok(())
    }
}

impl wit::HostUdpSocket for PluginState {
    fn send_to(
        &mut self,
        self_: Resource<UdpSocketRes>,
        data: Vec<u8>,
        to: String,
    ) -> Result<u32, wit::IoError> {
        let addr = parse_addr(&to).map_err(wit::IoError::Failed)?;
        self.io
            .caps
            .check_connect(addr)
            .map_err(|m| wit::IoError::Failed(denied(m)))?;
        let obj = stream_of!(self, self_, Udp, "udp-socket");
        let Obj::Udp(s) = &obj.obj else {
            unreachable!()
        };
        s.send_to(&data, addr)
            .map(|n| n as u32)
            .map_err(|e| nb(&format!("send to {addr}"), e))
    }

    fn recv_from(
        &mut self,
        self_: Resource<UdpSocketRes>,
        max: u32,
    ) -> Result<(Vec<u8>, String), wit::IoError> {
        let obj = stream_of!(self, self_, Udp, "udp-socket");
        let Obj::Udp(s) = &obj.obj else {
            unreachable!()
        };
        let mut buf = vec![0u8; max.min(MAX_READ) as usize];
        let (n, from) = s.recv_from(&mut buf).map_err(|e| nb("receive", e))?;
        buf.truncate(n);
        Ok((buf, from.to_string()))
    }

    fn local_address(&mut self, self_: Resource<UdpSocketRes>) -> Result<String, wit::IoError> {
        let obj = stream_of!(self, self_, Udp, "udp-socket");
        let Obj::Udp(s) = &obj.obj else {
            unreachable!()
        };
        s.local_addr()
            .map(|a| a.to_string())
            .map_err(|e| nb("local address", e))
    }

    fn drop(&mut self, rep: Resource<UdpSocketRes>) -> wasmtime::Result<()> {
        self.drop_io(rep, |r| Some(r.0.clone()));
        Ok(())
    }
}

impl wit::HostUnixListener for PluginState {
    fn accept(
        &mut self,
        self_: Resource<UnixListenerRes>,
    ) -> Result<Resource<UnixStreamRes>, wit::IoError> {
        let obj = stream_of!(self, self_, UnixListener, "unix-listener");
        let Obj::UnixListener(l) = &obj.obj else {
            unreachable!()
        };
        let (s, _) = l.accept().map_err(|e| nb("accept", e))?;
        s.set_nonblocking(true)
            .map_err(|e| wit::IoError::Failed(os("set non-blocking", e)))?;
        self.push_io(UnixStreamRes(IoObj::new(Obj::UnixStream(s))))
            .map_err(wit::IoError::Failed)
    }

    fn drop(&mut self, rep: Resource<UnixListenerRes>) -> wasmtime::Result<()> {
        self.drop_io(rep, |r| Some(r.0.clone()));
        Ok(())
    }
}

impl wit::HostUnixStream for PluginState {
    fn read(&mut self, self_: Resource<UnixStreamRes>, max: u32) -> Result<Vec<u8>, wit::IoError> {
        let obj = stream_of!(self, self_, UnixStream, "unix-stream");
        let Obj::UnixStream(s) = &obj.obj else {
            unreachable!()
        };
        read_from(&mut &*s, max, "read")
    }

    fn write(
        &mut self,
        self_: Resource<UnixStreamRes>,
        data: Vec<u8>,
    ) -> Result<u32, wit::IoError> {
        let obj = stream_of!(self, self_, UnixStream, "unix-stream");
        let Obj::UnixStream(s) = &obj.obj else {
            unreachable!()
        };
        write_to(&mut &*s, &data, "write")
    }

    fn shutdown(
        &mut self,
        self_: Resource<UnixStreamRes>,
        h: wit::ShutdownHow,
    ) -> Result<(), wit::IoError> {
        let obj = stream_of!(self, self_, UnixStream, "unix-stream");
        let Obj::UnixStream(s) = &obj.obj else {
            unreachable!()
        };
        s.shutdown(how(h)).map_err(|e| nb("shutdown", e))
    }

    fn drop(&mut self, rep: Resource<UnixStreamRes>) -> wasmtime::Result<()> {
        self.drop_io(rep, |r| Some(r.0.clone()));
        Ok(())
    }
}

impl wit::HostFd for PluginState {
    fn name(&mut self, self_: Resource<FdRes>) -> String {
        self.table
            .get(&self_)
            .map(|r| r.0.name.clone())
            .unwrap_or_default()
    }

    fn read(&mut self, self_: Resource<FdRes>, max: u32) -> Result<Vec<u8>, wit::IoError> {
        let obj = stream_of!(self, self_, Fd, "fd");
        let Obj::Fd(f) = &obj.obj else { unreachable!() };
        read_from(&mut &*f, max, "read")
    }

    fn write(&mut self, self_: Resource<FdRes>, data: Vec<u8>) -> Result<u32, wit::IoError> {
        let obj = stream_of!(self, self_, Fd, "fd");
        let Obj::Fd(f) = &obj.obj else { unreachable!() };
        write_to(&mut &*f, &data, "write")
    }

    fn drop(&mut self, rep: Resource<FdRes>) -> wasmtime::Result<()> {
        self.drop_io(rep, |r| Some(r.0.clone()));
        Ok(())
    }
}

impl wit::HostFile for PluginState {
    fn read(&mut self, self_: Resource<FileRes>, max: u32) -> Result<Vec<u8>, wit::IoFailure> {
        let f = &mut self.table.get_mut(&self_).map_err(|_| closed("file"))?.0;
        let mut buf = vec![0u8; max.min(MAX_READ) as usize];
        let n = f.read(&mut buf).map_err(|e| os("read", e))?;
        buf.truncate(n);
        Ok(buf)
    }

    fn write(&mut self, self_: Resource<FileRes>, data: Vec<u8>) -> Result<(), wit::IoFailure> {
        let f = &mut self.table.get_mut(&self_).map_err(|_| closed("file"))?.0;
        f.write_all(&data).map_err(|e| os("write", e))
    }

    fn seek(
        &mut self,
        self_: Resource<FileRes>,
        pos: wit::SeekFrom,
    ) -> Result<u64, wit::IoFailure> {
        let f = &mut self.table.get_mut(&self_).map_err(|_| closed("file"))?.0;
        let pos = match pos {
            wit::SeekFrom::Start(n) => io::SeekFrom::Start(n),
            wit::SeekFrom::Current(n) => io::SeekFrom::Current(n),
            wit::SeekFrom::End(n) => io::SeekFrom::End(n),
        };
        f.seek(pos).map_err(|e| os("seek", e))
    }

    fn metadata(&mut self, self_: Resource<FileRes>) -> Result<wit::Metadata, wit::IoFailure> {
        let f = &self.table.get(&self_).map_err(|_| closed("file"))?.0;
        f.metadata()
            .map(|m| std_metadata(&m))
            .map_err(|e| os("metadata", e))
    }

    fn set_size(&mut self, self_: Resource<FileRes>, size: u64) -> Result<(), wit::IoFailure> {
        let f = &self.table.get(&self_).map_err(|_| closed("file"))?.0;
        f.set_len(size).map_err(|e| os("set size", e))
    }

    fn sync(&mut self, self_: Resource<FileRes>) -> Result<(), wit::IoFailure> {
        let f = &self.table.get(&self_).map_err(|_| closed("file"))?.0;
        f.sync_all().map_err(|e| os("sync", e))
    }

    fn drop(&mut self, rep: Resource<FileRes>) -> wasmtime::Result<()> {
        self.drop_io(rep, |_| None);
        Ok(())
    }
}

impl wit::HostDir for PluginState {
    fn path(&mut self, self_: Resource<DirRes>) -> String {
        self.table
            .get(&self_)
            .map(|d| d.guest.clone())
            .unwrap_or_default()
    }

    fn open_file(
        &mut self,
        self_: Resource<DirRes>,
        path: String,
        flags: wit::OpenFlags,
    ) -> Result<Resource<FileRes>, wit::IoFailure> {
        let d = self.table.get(&self_).map_err(|_| closed("dir"))?;
        let (opts, mutating) = open_options(flags);
        if mutating {
            d.check_write("write to", &path)?;
        }
        let f = d
            .dir
            .open_with(&path, &opts)
            .map_err(|e| d.err("open", &path, e))?;
        self.push_io(FileRes(f.into_std()))
    }

    fn open_dir(
        &mut self,
        self_: Resource<DirRes>,
        path: String,
    ) -> Result<Resource<DirRes>, wit::IoFailure> {
        let d = self.table.get(&self_).map_err(|_| closed("dir"))?;
        let sub = d.dir.open_dir(&path).map_err(|e| d.err("open", &path, e))?;
        let res = DirRes {
            dir: sub,
            guest: join_guest(&d.guest, &path),
            read_only: d.read_only,
        };
        self.push_io(res)
    }

    fn entries(&mut self, self_: Resource<DirRes>) -> Result<Vec<wit::DirEntry>, wit::IoFailure> {
        let d = self.table.get(&self_).map_err(|_| closed("dir"))?;
        let mut out = Vec::new();
        for e in d.dir.entries().map_err(|e| d.err("list", ".", e))? {
            let e = e.map_err(|e| d.err("list", ".", e))?;
            let kind = e
                .file_type()
                .map(entry_kind)
                .unwrap_or(wit::EntryKind::Other);
            out.push(wit::DirEntry {
                name: e.file_name().to_string_lossy().into_owned(),
                kind,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn metadata(
        &mut self,
        self_: Resource<DirRes>,
        path: String,
    ) -> Result<wit::Metadata, wit::IoFailure> {
        let d = self.table.get(&self_).map_err(|_| closed("dir"))?;
        d.dir
            .symlink_metadata(&path)
            .map(|m| metadata_of(&m))
            .map_err(|e| d.err("stat", &path, e))
    }

    fn create_dir(&mut self, self_: Resource<DirRes>, path: String) -> Result<(), wit::IoFailure> {
        let d = self.table.get(&self_).map_err(|_| closed("dir"))?;
        d.check_write("create", &path)?;
        d.dir
            .create_dir(&path)
            .map_err(|e| d.err("create", &path, e))
    }

    fn remove_file(&mut self, self_: Resource<DirRes>, path: String) -> Result<(), wit::IoFailure> {
        let d = self.table.get(&self_).map_err(|_| closed("dir"))?;
        d.check_write("remove", &path)?;
        d.dir
            .remove_file(&path)
            .map_err(|e| d.err("remove", &path, e))
    }

    fn remove_dir(&mut self, self_: Resource<DirRes>, path: String) -> Result<(), wit::IoFailure> {
        let d = self.table.get(&self_).map_err(|_| closed("dir"))?;
        d.check_write("remove", &path)?;
        d.dir
            .remove_dir(&path)
            .map_err(|e| d.err("remove", &path, e))
    }

    fn rename(
        &mut self,
        self_: Resource<DirRes>,
        from: String,
        to: String,
    ) -> Result<(), wit::IoFailure> {
        let d = self.table.get(&self_).map_err(|_| closed("dir"))?;
        d.check_write("rename", &from)?;
        d.dir
            .rename(&from, &d.dir, &to)
            .map_err(|e| d.err("rename", &from, e))
    }

    fn drop(&mut self, rep: Resource<DirRes>) -> wasmtime::Result<()> {
        self.drop_io(rep, |_| None);
        Ok(())
    }
}
