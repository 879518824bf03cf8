//! Unit tests of the `io` resources, called as the guest calls them
//! (through the `wit::Host*` traits of a bare [`PluginState`]).

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use wasmtime::component::Resource;
use wasmtime_wasi::WasiCtxBuilder;

use super::wit::{self, Host, HostFd, HostTcpListener, HostTcpStream, HostUdpSocket};
use super::wit::{HostDir, HostFile, HostUnixListener, HostUnixStream};
use super::{MAX_READ, Pollable};
use crate::bindings::callop::plugin::types::{ErrorCode, Signal as WitSignal};
use crate::capabilities::{Capabilities, DirGrant, NetDirection, NetRule};
use crate::limits::Limits;
use crate::policy::Policy;
use crate::sources::{Source, Status};
use crate::state::{Op, PluginState, Shared};

fn state_with(caps: Capabilities, limits: Limits) -> PluginState {
    let shared = Arc::new(Shared::new(Policy::default(), limits.clone()));
    PluginState::with_limits(
        Arc::from("io-test"),
        shared,
        Arc::new(limits),
        WasiCtxBuilder::new().build(),
        caps,
    )
}

fn state(caps: Capabilities) -> PluginState {
    state_with(caps, Limits::default())
}

fn loopback() -> Capabilities {
    Capabilities::new().allow_net(NetRule::new(
        NetDirection::Both,
        IpAddr::from(Ipv4Addr::LOCALHOST),
        0..=u16::MAX,
    ))
}

/// `io.register` with both interests.
fn register(
    st: &mut PluginState,
    object: wit::Pollable,
    mode: wit::Mode,
) -> Result<u64, crate::bindings::callop::plugin::types::Error> {
    let both = wit::Interest::READABLE | wit::Interest::WRITABLE;
    st.register(object, both, mode)
}

/// A fresh temporary directory.
fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("callop-io-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Reads until data comes (the peer's write may take a moment to arrive).
fn read_some<T>(st: &mut PluginState, r: &Resource<Pollable<T>>) -> Vec<u8>
where
    T: Send + Sync + 'static,
    for<'a> &'a T: Read,
{
    for _ in 0..1000 {
        match st.stream_read(r, 64, "stream") {
            Ok(d) => return d,
            Err(wit::IoError::WouldBlock) => {
                std::thread::sleep(std::time::Duration::from_millis(2))
            }
            Err(wit::IoError::Failed(f)) => panic!("read failed: {}", f.message),
        }
    }
    panic!("no data came");
}

fn accept_tcp(
    st: &mut PluginState,
    l: &Resource<super::TcpListenerRes>,
) -> Resource<super::TcpStreamRes> {
    for _ in 0..1000 {
        match HostTcpListener::accept(st, borrow(l)) {
            Ok((s, _)) => return s,
            Err(wit::IoError::WouldBlock) => {
                std::thread::sleep(std::time::Duration::from_millis(2))
            }
            Err(wit::IoError::Failed(f)) => panic!("accept failed: {}", f.message),
        }
    }
    panic!("no connection came");
}

fn borrow<T: 'static>(r: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(r.rep())
}

#[test]
fn tcp_streams_read_write_and_shut_down_through_their_resources() {
    let mut st = state(loopback());
    let l = st.bind_tcp("127.0.0.1:0".into()).unwrap();
    let addr = HostTcpListener::local_address(&mut st, borrow(&l)).unwrap();
    let c = st.connect_tcp(addr.clone()).unwrap();
    let s = accept_tcp(&mut st, &l);
    assert_eq!(
        HostTcpStream::peer_address(&mut st, borrow(&c)).unwrap(),
        addr
    );
    assert!(st.take_error(borrow(&c)).is_none());
    assert!(matches!(
        HostTcpStream::read(&mut st, borrow(&s), 64),
        Err(wit::IoError::WouldBlock)
    ));
    assert_eq!(
        HostTcpStream::write(&mut st, borrow(&c), b"ping".to_vec()).ok(),
        Some(4)
    );
    assert_eq!(read_some(&mut st, &s), b"ping");
    HostTcpStream::shutdown(&mut st, borrow(&c), wit::ShutdownHow::Write).unwrap();
    assert_eq!(read_some(&mut st, &s), b"", "end of stream after shutdown");
    st.set_nodelay(borrow(&s), true).unwrap();
    assert_eq!(st.handles, 3);
}

#[test]
fn unix_streams_share_the_stream_calls_inside_a_granted_directory() {
    let d = tempdir("unix");
    let caps = Capabilities::new().dir(DirGrant::new(&d, "/run").unwrap());
    let mut st = state(caps);
    let l = st.bind_unix("/run/s.sock".into()).unwrap();
    assert!(d.join("s.sock").exists());
    let c = st.connect_unix("/run/s.sock".into()).unwrap();
    let s = HostUnixListener::accept(&mut st, borrow(&l)).unwrap();
    assert_eq!(
        HostUnixStream::write(&mut st, borrow(&s), b"hi".to_vec()).ok(),
        Some(2)
    );
    assert_eq!(read_some(&mut st, &c), b"hi");
    HostUnixStream::shutdown(&mut st, borrow(&s), wit::ShutdownHow::Both).unwrap();
    assert_eq!(read_some(&mut st, &c), b"");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_bound_socket_file_goes_with_its_listener_and_its_plugin() {
    let d = tempdir("unix-unlink");
    let caps = || Capabilities::new().dir(DirGrant::new(&d, "/run").unwrap());
    let mut st = state(caps());
    // The guest drops its listener: the file goes, the path binds again.
    let l = st.bind_unix("/run/s.sock".into()).unwrap();
    assert!(d.join("s.sock").exists());
    HostUnixListener::drop(&mut st, l).unwrap();
    assert!(!d.join("s.sock").exists(), "unlinked with its listener");
    let _l = st.bind_unix("/run/s.sock".into()).unwrap();
    // The plugin ends (its state is dropped with the listener still open).
    drop(st);
    assert!(!d.join("s.sock").exists(), "unlinked when the plugin ended");
    let mut st = state(caps());
    let l = st.bind_unix("/run/s.sock".into()).unwrap();
    // Someone replaced the file meanwhile: it is not the listener's to unlink.
    std::fs::remove_file(d.join("s.sock")).unwrap();
    std::fs::write(d.join("s.sock"), b"not a socket").unwrap();
    HostUnixListener::drop(&mut st, l).unwrap();
    assert_eq!(std::fs::read(d.join("s.sock")).unwrap(), b"not a socket");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_read_returns_at_most_max_read_bytes() {
    let d = tempdir("max-read");
    std::fs::write(d.join("big"), vec![7u8; MAX_READ as usize + 10]).unwrap();
    let f = std::fs::File::open(d.join("big")).unwrap();
    let mut st = state(Capabilities::new().fd("big", f.into()));
    let fd = st.open_fd("big".into()).unwrap();
    let got = HostFd::read(&mut st, borrow(&fd), u32::MAX).unwrap();
    assert_eq!(got.len(), MAX_READ as usize);
    assert_eq!(HostFd::read(&mut st, borrow(&fd), 64).unwrap().len(), 10);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_granted_fd_keeps_its_name_and_is_taken_once() {
    let (mine, theirs) = UnixStream::pair().unwrap();
    let mut st = state(Capabilities::new().fd("peer", theirs.into()));
    let fd = st.open_fd("peer".into()).unwrap();
    assert_eq!(st.name(borrow(&fd)), "peer");
    assert_eq!(
        HostFd::write(&mut st, borrow(&fd), b"x".to_vec()).ok(),
        Some(1)
    );
    let mut b = [0u8; 1];
    (&mine).read_exact(&mut b).unwrap();
    assert_eq!(&b, b"x");
    let again = st.open_fd("peer".into()).err().unwrap();
    assert_eq!(again.kind, wit::IoErrorKind::Closed);
    let never = st.open_fd("other".into()).err().unwrap();
    assert_eq!(never.kind, wit::IoErrorKind::NotPermitted);
    assert!(never.message.contains("--fd other=N"), "{}", never.message);
}

#[test]
fn registering_hands_the_loop_the_objects_descriptor() {
    let mut st = state(loopback());
    let l = st.bind_tcp("127.0.0.1:0".into()).unwrap();
    let raw = st.pollable(&l, "tcp-listener").unwrap().as_raw_fd();
    let id = register(
        &mut st,
        wit::Pollable::TcpListener(borrow(&l)),
        wit::Mode::Level,
    )
    .unwrap();
    assert!(matches!(st.ops.last(), Some(Op::Add(i)) if *i == id));
    let reg = pending_io(&mut st, id);
    assert_eq!(reg.obj.as_fd().as_raw_fd(), raw);
    assert!(!reg.obj.always_ready());
    assert!(reg.interest.readable && reg.interest.writable);
    assert!(matches!(reg.mode, callop::Mode::Level));
}

#[test]
fn an_object_is_registered_once() {
    let mut st = state(loopback());
    let u = st.bind_udp("127.0.0.1:0".into()).unwrap();
    register(
        &mut st,
        wit::Pollable::UdpSocket(borrow(&u)),
        wit::Mode::Edge,
    )
    .unwrap();
    let e = register(
        &mut st,
        wit::Pollable::UdpSocket(borrow(&u)),
        wit::Mode::Edge,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::AlreadyExists);
}

#[test]
fn registering_a_dropped_handle_is_a_bad_handle() {
    let mut st = state(loopback());
    let u = st.bind_udp("127.0.0.1:0".into()).unwrap();
    let rep = u.rep();
    HostUdpSocket::drop(&mut st, u).unwrap();
    let e = register(
        &mut st,
        wit::Pollable::UdpSocket(Resource::new_borrow(rep)),
        wit::Mode::Level,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
}

#[test]
fn dropping_a_registered_object_removes_its_registration() {
    let mut st = state(loopback());
    let l = st.bind_tcp("127.0.0.1:0".into()).unwrap();
    let id = register(
        &mut st,
        wit::Pollable::TcpListener(borrow(&l)),
        wit::Mode::Level,
    )
    .unwrap();
    HostTcpListener::drop(&mut st, l).unwrap();
    assert!(matches!(st.ops.last(), Some(Op::Remove(i)) if *i == id));
    assert!(matches!(
        st.sources.status(id),
        Some(Status::Removed { .. })
    ));
    assert_eq!(st.handles, 0);
}

#[test]
fn a_regular_file_fd_is_always_ready() {
    let d = tempdir("fd");
    std::fs::write(d.join("f"), b"data").unwrap();
    let f = std::fs::File::open(d.join("f")).unwrap();
    let mut st = state(Capabilities::new().fd("f", f.into()));
    let fd = st.open_fd("f".into()).unwrap();
    let id = register(&mut st, wit::Pollable::Fd(borrow(&fd)), wit::Mode::Level).unwrap();
    assert!(pending_io(&mut st, id).obj.always_ready());
    assert_eq!(HostFd::read(&mut st, borrow(&fd), 64).unwrap(), b"data");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn calls_on_a_dropped_handle_say_which_resource_is_closed() {
    let mut st = state(loopback());
    let l = st.bind_tcp("127.0.0.1:0".into()).unwrap();
    let addr = HostTcpListener::local_address(&mut st, borrow(&l)).unwrap();
    let c = st.connect_tcp(addr).unwrap();
    let rep = c.rep();
    HostTcpStream::drop(&mut st, c).unwrap();
    let Err(wit::IoError::Failed(f)) = HostTcpStream::read(&mut st, Resource::new_borrow(rep), 1)
    else {
        panic!("a read of a dropped stream must fail");
    };
    assert_eq!(f.kind, wit::IoErrorKind::Closed);
    assert_eq!(f.message, "tcp-stream is closed");
    assert!(st.take_error(Resource::new_borrow(rep)).is_none());
}

#[test]
fn io_objects_count_against_the_handle_limit() {
    let limits = Limits {
        max_handles: 1,
        ..Limits::default()
    };
    let mut st = state_with(loopback(), limits);
    let _u = st.bind_udp("127.0.0.1:0".into()).unwrap();
    let e = st.bind_udp("127.0.0.1:0".into()).err().unwrap();
    assert_eq!(e.kind, wit::IoErrorKind::Other);
    assert!(e.message.contains("limits.max_handles"), "{}", e.message);
}

#[test]
fn sockets_need_their_network_grant() {
    let mut st = state(Capabilities::new());
    let e = st.bind_tcp("127.0.0.1:0".into()).err().unwrap();
    assert_eq!(e.kind, wit::IoErrorKind::NotPermitted);
    let e = st.connect_tcp("not an address".into()).err().unwrap();
    assert_eq!(e.kind, wit::IoErrorKind::InvalidInput);
}

#[test]
fn udp_datagrams_go_to_granted_addresses_only() {
    let mut st = state(Capabilities::new().allow_net(NetRule::new(
        NetDirection::Bind,
        IpAddr::from(Ipv4Addr::LOCALHOST),
        0..=u16::MAX,
    )));
    let u = st.bind_udp("127.0.0.1:0".into()).unwrap();
    let to = HostUdpSocket::local_address(&mut st, borrow(&u)).unwrap();
    let Err(wit::IoError::Failed(f)) = st.send_to(borrow(&u), b"d".to_vec(), to) else {
        panic!("sending without a connect grant must fail");
    };
    assert_eq!(f.kind, wit::IoErrorKind::NotPermitted);
    assert!(matches!(
        st.recv_from(borrow(&u), 8),
        Err(wit::IoError::WouldBlock)
    ));
}

#[test]
fn files_and_dirs_work_inside_a_grant_and_read_only_refuses_changes() {
    let d = tempdir("files");
    let caps = Capabilities::new().dir(DirGrant::new(&d, "/data").unwrap());
    let mut st = state(caps);
    let dir = Host::open_dir(&mut st, "/data".into()).unwrap();
    assert_eq!(st.path(borrow(&dir)), "/data");
    let flags = wit::OpenFlags::WRITE | wit::OpenFlags::CREATE | wit::OpenFlags::READ;
    let f = HostDir::open_file(&mut st, borrow(&dir), "a.txt".into(), flags).unwrap();
    HostFile::write(&mut st, borrow(&f), b"hello".to_vec()).unwrap();
    assert_eq!(st.seek(borrow(&f), wit::SeekFrom::Start(1)).ok(), Some(1));
    assert_eq!(HostFile::read(&mut st, borrow(&f), 64).unwrap(), b"ello");
    let m = HostFile::metadata(&mut st, borrow(&f)).unwrap();
    assert_eq!((m.kind, m.size), (wit::EntryKind::File, 5));
    st.set_size(borrow(&f), 2).unwrap();
    st.sync(borrow(&f)).unwrap();
    HostDir::create_dir(&mut st, borrow(&dir), "sub".into()).unwrap();
    st.rename(borrow(&dir), "a.txt".into(), "sub/b.txt".into())
        .unwrap();
    let sub = HostDir::open_dir(&mut st, borrow(&dir), "sub".into()).unwrap();
    assert_eq!(st.path(borrow(&sub)), "/data/sub");
    let names: Vec<_> = st
        .entries(borrow(&sub))
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect();
    assert_eq!(names, [("b.txt".to_string(), wit::EntryKind::File)]);
    let m = HostDir::metadata(&mut st, borrow(&dir), "sub/b.txt".into()).unwrap();
    assert_eq!(m.size, 2);
    let e = HostDir::open_dir(&mut st, borrow(&dir), "../..".into())
        .err()
        .unwrap();
    assert_eq!(e.kind, wit::IoErrorKind::NotPermitted, "{}", e.message);
    HostFile::drop(&mut st, f).unwrap();
    HostDir::remove_file(&mut st, borrow(&sub), "b.txt".into()).unwrap();
    HostDir::remove_dir(&mut st, borrow(&dir), "sub".into()).unwrap();

    let ro = Capabilities::new().dir(DirGrant::new(&d, "/ro").unwrap().read_only(true));
    let mut st = state(ro);
    let dir = Host::open_dir(&mut st, "/ro".into()).unwrap();
    let e = HostDir::create_dir(&mut st, borrow(&dir), "x".into())
        .err()
        .unwrap();
    assert_eq!(e.kind, wit::IoErrorKind::NotPermitted);
    assert!(e.message.contains("/ro/x"), "{}", e.message);
    let e = HostDir::open_file(&mut st, borrow(&dir), "y".into(), flags)
        .err()
        .unwrap();
    assert!(
        e.message.starts_with("write to /ro/y denied"),
        "{}",
        e.message
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn signal_subscriptions_need_a_grant_and_list_each_signal_once() {
    let mut st = state(Capabilities::new().allow_signal(callop::signals::Signal::SIGHUP));
    let e = st.add_signals(vec![]).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    let e = st
        .add_signals(vec![WitSignal::Hup, WitSignal::Term])
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotPermitted);
    let id = st
        .add_signals(vec![WitSignal::Hup, WitSignal::Hup])
        .unwrap();
    let Some(Source::Signals(signals)) = st.sources.pending_mut(id) else {
        panic!("source {id} is not a pending signal subscription");
    };
    assert_eq!(*signals, [callop::signals::Signal::SIGHUP]);
    assert_eq!(
        super::from_signal(callop::signals::Signal::SIGHUP),
        Some(WitSignal::Hup)
    );
}

/// The I/O registration of source `id`, still waiting for its `Op::Add`.
fn pending_io(st: &mut PluginState, id: u64) -> &mut super::IoReg {
    match st.sources.pending_mut(id) {
        Some(Source::Io(reg)) => reg,
        _ => panic!("source {id} is not a pending I/O registration"),
    }
}
