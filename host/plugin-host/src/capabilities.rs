//! Per-plugin capabilities of the `io` interface: one deny-by-default
//! policy type, [`Capabilities`], checked in one place.
//!
//! A plugin gets nothing unless granted:
//!
//! | grant | builder | CLI flag | what it allows |
//! |---|---|---|---|
//! | [`NetRule`] | [`Capabilities::allow_net`] | `--allow-net [bind:\|connect:]ADDR[/LEN][:PORTS]` | binding and connecting IP sockets |
//! | [`DirGrant`] | [`Capabilities::dir`] | `--dir HOST[::GUEST][:ro]` | files, directories and Unix sockets below `HOST`, seen as `GUEST` |
//! | fd | [`Capabilities::fd`], [`Capabilities::inherited_fd`] | `--fd NAME=N` | taking the descriptor as `NAME` (once) |
//! | stdin | [`Capabilities::stdin`] | `--stdin` | taking the host's stdin (once) |
//! | signals | [`Capabilities::allow_signal`] | `--allow-signal HUP,USR1` | subscribing to these signals |
//!
//! The builders take typed values; the string syntaxes of the flags (and of
//! the `--config` file's `[plugins.NAME]` keys) are parsed by
//! [`config::grants`](crate::config::grants).
//!
//! The same grants, and no others, reach WASI p2 (`std::fs`, `std::net`,
//! stdin): see [`wasi_grants`](crate::wasi_grants).
//!
//! Every refusal the plugin sees is a message naming the flag that would
//! grant it, e.g. `connect to 10.0.0.1:80 denied: grant it with --allow-net
//! 10.0.0.1:80`.
//!
//! Network rules work like cap-std's `Pool`: an IP network (a single
//! address is a /32 or /128) plus a port range, for bind, connect or both.
//!
//! ```
//! use std::net::IpAddr;
//! use callop_plugin_host::{Capabilities, DirGrant, IpNet, NetDirection, NetRule};
//! use callop::signals::Signal;
//!
//! let ten: IpNet = "10.0.0.0/8".parse().unwrap();
//! let caps = Capabilities::new()
//!     .allow_net(NetRule::new(NetDirection::Both, IpAddr::from([127, 0, 0, 1]), 7000..=7010))
//!     .allow_net(NetRule::new(NetDirection::Connect, ten, 0..=u16::MAX))
//!     .dir(DirGrant::new("./config", "/config").unwrap().read_only(true))
//!     .allow_signal(Signal::SIGHUP)
//!     .stdin(true);
//! assert_eq!(caps.net_rules()[0].to_string(), "127.0.0.1:7000-7010");
//! assert!(caps.net_rules()[1].allows(NetDirection::Connect, "10.1.2.3:80".parse().unwrap()));
//! assert!(!caps.net_rules()[1].allows(NetDirection::Bind, "10.1.2.3:80".parse().unwrap()));
//! assert!(caps.dir_grants()[0].is_read_only());
//! // A guest path may not climb out of its grant.
//! assert!(DirGrant::new("/srv", "/a/../b").is_err());
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

pub use ipnet::IpNet;

use callop::signals::Signal;

/// Which socket operations a [`NetRule`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetDirection {
    /// `bind-tcp`, `bind-udp`.
    Bind,
    /// `connect-tcp`, `udp-socket.send-to`.
    Connect,
    /// Both.
    Both,
}

/// One network grant (`--allow-net`): a network, a port range and a
/// direction. Any value is valid; a rule whose `port_min` is above its
/// `port_max` allows nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRule {
    /// Bind, connect or both.
    pub direction: NetDirection,
    /// The addresses (a single address is a /32 or /128 network).
    pub net: IpNet,
    /// First allowed port.
    pub port_min: u16,
    /// Last allowed port (inclusive).
    pub port_max: u16,
}

impl NetRule {
    /// A rule for `direction` on the network `net` (an [`IpNet`], or an
    /// [`IpAddr`](std::net::IpAddr) for that one address; host bits are
    /// cleared) and the
    /// ports `ports` (`0..=u16::MAX` for all).
    pub fn new(direction: NetDirection, net: impl Into<IpNet>, ports: RangeInclusive<u16>) -> Self {
        NetRule {
            direction,
            net: net.into().trunc(),
            port_min: *ports.start(),
            port_max: *ports.end(),
        }
    }

    /// A rule for `direction` on exactly one address and port.
    pub fn socket(direction: NetDirection, addr: SocketAddr) -> Self {
        Self::new(direction, addr.ip(), addr.port()..=addr.port())
    }

    /// Whether the rule allows `addr` for `op`.
    pub fn allows(&self, op: NetDirection, addr: SocketAddr) -> bool {
        (self.direction == NetDirection::Both || self.direction == op)
            && self.net.contains(&addr.ip())
            && (self.port_min..=self.port_max).contains(&addr.port())
    }
}

impl fmt::Display for NetRule {
    /// The rule as `--allow-net` writes it (`bind:127.0.0.1:7000-7010`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.direction {
            NetDirection::Bind => f.write_str("bind:")?,
            NetDirection::Connect => f.write_str("connect:")?,
            NetDirection::Both => {}
        }
        match self.net {
            IpNet::V4(n) if n.prefix_len() == 32 => write!(f, "{}", n.addr())?,
            IpNet::V6(n) if n.prefix_len() == 128 => write!(f, "[{}]", n.addr())?,
            IpNet::V4(n) => write!(f, "{n}")?,
            IpNet::V6(n) => write!(f, "[{n}]")?,
        }
        match (self.port_min, self.port_max) {
            (0, u16::MAX) => write!(f, ":*"),
            (a, b) if a == b => write!(f, ":{a}"),
            (a, b) => write!(f, ":{a}-{b}"),
        }
    }
}

/// One directory grant (`--dir`): a host directory, the guest path it
/// appears as, and whether it is read-only. Made by [`DirGrant::new`], which
/// checks the guest path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The host directory.
    pub(crate) host: PathBuf,
    /// The guest path it appears as (normalised: no trailing `/`).
    pub(crate) guest: String,
    /// Whether writes are refused.
    pub(crate) read_only: bool,
}

impl DirGrant {
    /// Grants the host directory `host` as the guest path `guest`
    /// (absolute, like `/config`, or relative to the plugin's working
    /// directory), read-write. The guest path is normalised (`.` and
    /// duplicate `/` removed); it must not be empty nor contain `..`.
    pub fn new(host: impl Into<PathBuf>, guest: &str) -> Result<DirGrant, GrantError> {
        let host = host.into();
        if host.as_os_str().is_empty() || guest.is_empty() {
            return Err(GrantError::EmptyPath);
        }
        let guest = normalize_guest(guest).ok_or(GrantError::GuestPathEscapes)?;
        Ok(DirGrant {
            host,
            guest,
            read_only: false,
        })
    }

    /// The same grant, read-only if `on` (writes are refused).
    pub fn read_only(mut self, on: bool) -> DirGrant {
        self.read_only = on;
        self
    }

    /// The host directory.
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// The guest path (normalised).
    pub fn guest(&self) -> &str {
        &self.guest
    }

    /// Whether writes are refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
}

/// A grant that could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum GrantError {
    /// A [`DirGrant`] with an empty host or guest path.
    EmptyPath,
    /// A [`DirGrant`] guest path with a `..` component (grants must be plain).
    GuestPathEscapes,
    /// [`Capabilities::inherited_fd`]: the number is not an open descriptor
    /// of this process.
    NotOpen {
        /// The descriptor number.
        fd: RawFd,
        /// Why it is not usable.
        source: io::Error,
    },
    /// [`Capabilities::inherited_fd`]: the descriptor could not be duplicated.
    CannotDuplicate {
        /// The descriptor number.
        fd: RawFd,
        /// Why.
        source: io::Error,
    },
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantError::EmptyPath => f.write_str("the host and guest paths must not be empty"),
            GrantError::GuestPathEscapes => f.write_str("the guest path must not contain `..`"),
            GrantError::NotOpen { fd, source } => write!(f, "descriptor {fd}: {source}"),
            GrantError::CannotDuplicate { fd, source } => {
                write!(f, "cannot duplicate descriptor {fd}: {source}")
            }
        }
    }
}

impl std::error::Error for GrantError {}

/// Normalises a guest path: removes `.` and duplicate `/`, keeps a leading
/// `/`; `None` if it has a `..` component (grants must be plain).
fn normalize_guest(p: &str) -> Option<String> {
    let abs = p.starts_with('/');
    let mut parts = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    Some(if abs {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".into()
    } else {
        joined
    })
}

/// A granted descriptor, taken at most once.
pub(crate) enum FdGrant {
    /// Still available.
    Available(OwnedFd),
    /// Taken by the plugin (and maybe closed since).
    Taken,
}

/// What one plugin instance may do through the `io` interface. The default
/// grants nothing; hand it to [`Host::grant`](crate::Host::grant).
#[derive(Default)]
pub struct Capabilities {
    /// Network grants.
    pub(crate) net: Vec<NetRule>,
    /// Directory grants.
    pub(crate) dirs: Vec<DirGrant>,
    pub(crate) fds: BTreeMap<String, FdGrant>,
    /// Whether the plugin may take the host's stdin.
    pub(crate) stdin: bool,
    /// Signals the plugin may subscribe to.
    pub(crate) signals: Vec<Signal>,
    /// Application interfaces the plugin may import
    /// ([`AppApi`](crate::AppApi)), as `ns:pkg/iface` (no version).
    pub(crate) app_interfaces: BTreeSet<String>,
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capabilities")
            .field(
                "net",
                &self.net.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            )
            .field("dirs", &self.dirs)
            .field("fds", &self.fds.keys().collect::<Vec<_>>())
            .field("stdin", &self.stdin)
            .field("signals", &self.signals)
            .field("app_interfaces", &self.app_interfaces)
            .finish()
    }
}

/// The short name of a signal as `--allow-signal` takes it (`HUP`).
pub(crate) fn signal_flag_name(s: Signal) -> String {
    let n = format!("{s:?}");
    n.strip_prefix("SIG").unwrap_or(&n).to_string()
}

impl Capabilities {
    /// A copy for one more instance of the same plugin (a restart): every
    /// grant, each granted descriptor duplicated (`dup`), so that each
    /// instance can take it once. A descriptor that cannot be duplicated is
    /// left out of the copy (logged).
    pub(crate) fn instance_copy(&self) -> Capabilities {
        let fds = self
            .fds
            .iter()
            .map(|(name, g)| {
                let copy = match g {
                    FdGrant::Available(fd) => match fd.try_clone() {
                        Ok(dup) => FdGrant::Available(dup),
                        Err(e) => {
                            tracing::warn!("granted fd `{name}` cannot be kept for restarts: {e}");
                            FdGrant::Taken
                        }
                    },
                    FdGrant::Taken => FdGrant::Taken,
                };
                (name.clone(), copy)
            })
            .collect();
        Capabilities {
            net: self.net.clone(),
            dirs: self.dirs.clone(),
            fds,
            stdin: self.stdin,
            signals: self.signals.clone(),
            app_interfaces: self.app_interfaces.clone(),
        }
    }

    /// Grants nothing.
    pub fn new() -> Capabilities {
        Capabilities::default()
    }

    /// Adds a network grant.
    pub fn allow_net(mut self, rule: NetRule) -> Capabilities {
        self.net.push(rule);
        self
    }

    /// Adds a directory grant.
    pub fn dir(mut self, grant: DirGrant) -> Capabilities {
        self.dirs.push(grant);
        self
    }

    /// Grants (with `true`) or withholds the host's stdin.
    pub fn stdin(mut self, on: bool) -> Capabilities {
        self.stdin = on;
        self
    }

    /// Lets the plugin subscribe to `signal` (granting `SIGINT` or
    /// `SIGTERM` takes it from the host while the plugin is subscribed).
    pub fn allow_signal(mut self, signal: Signal) -> Capabilities {
        if !self.signals.contains(&signal) {
            self.signals.push(signal);
        }
        self
    }

    /// Hands the plugin a descriptor under `name` (the embedding API's way
    /// to give a plugin any `OwnedFd`: a socket, a pipe end, a tty ...).
    /// The plugin takes it with `io.open-fd(name)`, once.
    pub fn fd(mut self, name: &str, fd: OwnedFd) -> Capabilities {
        self.fds.insert(name.to_string(), FdGrant::Available(fd));
        self
    }

    /// Hands the plugin the inherited descriptor `fd` of this process under
    /// `name` (what `--fd NAME=N` does). The descriptor is duplicated (the
    /// original stays open in the host process); fails if `fd` is not open.
    pub fn inherited_fd(self, name: &str, fd: RawFd) -> Result<Capabilities, GrantError> {
        // SAFETY: the descriptor is only borrowed for the duration of the
        // dup; `fcntl_getfd` first checks it is open.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        rustix::io::fcntl_getfd(borrowed).map_err(|e| GrantError::NotOpen {
            fd,
            source: e.into(),
        })?;
        let owned = rustix::io::fcntl_dupfd_cloexec(borrowed, 3).map_err(|e| {
            GrantError::CannotDuplicate {
                fd,
                source: e.into(),
            }
        })?;
        Ok(self.fd(name, owned))
    }

    /// Merges the grants of `other` into `self`.
    pub fn merge(mut self, other: Capabilities) -> Capabilities {
        self.net.extend(other.net);
        self.dirs.extend(other.dirs);
        self.fds.extend(other.fds);
        self.stdin |= other.stdin;
        for s in other.signals {
            self = self.allow_signal(s);
        }
        self.app_interfaces.extend(other.app_interfaces);
        self
    }

    /// Grants the application interface `interface` (`ns:pkg/iface`, a
    /// version suffix `@x.y.z` is ignored): the plugin may import it if the
    /// engine's [`AppApi`](crate::AppApi) provides it. Deny by default: a
    /// plugin importing an application interface it was not granted is
    /// refused at load ([`LoadError::NotGranted`](crate::LoadError::NotGranted)).
    pub fn allow_app_interface(mut self, interface: &str) -> Capabilities {
        self.app_interfaces
            .insert(crate::app_api::unversioned(interface).to_string());
        self
    }

    /// The granted application interfaces (`ns:pkg/iface`, without versions).
    pub fn app_interfaces(&self) -> impl Iterator<Item = &str> {
        self.app_interfaces.iter().map(String::as_str)
    }

    /// Whether the application interface `interface` is granted (versions ignored).
    pub fn grants_app_interface(&self, interface: &str) -> bool {
        self.app_interfaces
            .contains(crate::app_api::unversioned(interface))
    }

    /// The network grants, in the order given.
    pub fn net_rules(&self) -> &[NetRule] {
        &self.net
    }

    /// The directory grants, in the order given.
    pub fn dir_grants(&self) -> &[DirGrant] {
        &self.dirs
    }

    /// The names of the granted descriptors.
    pub fn fd_names(&self) -> impl Iterator<Item = &str> {
        self.fds.keys().map(String::as_str)
    }

    /// Whether the host's stdin is granted.
    pub fn grants_stdin(&self) -> bool {
        self.stdin
    }

    /// The signals the plugin may subscribe to.
    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }

    /// Whether binding `addr` is allowed; the error names the flag.
    pub(crate) fn check_bind(&self, addr: SocketAddr) -> Result<(), String> {
        if self.net.iter().any(|r| r.allows(NetDirection::Bind, addr)) {
            Ok(())
        } else {
            Err(format!(
                "bind to {addr} denied: grant it with --allow-net {}",
                flag_addr(addr)
            ))
        }
    }

    /// Whether connecting (or sending) to `addr` is allowed.
    pub(crate) fn check_connect(&self, addr: SocketAddr) -> Result<(), String> {
        if self
            .net
            .iter()
            .any(|r| r.allows(NetDirection::Connect, addr))
        {
            Ok(())
        } else {
            Err(format!(
                "connect to {addr} denied: grant it with --allow-net {}",
                flag_addr(addr)
            ))
        }
    }

    /// Whether subscribing to `sig` is allowed.
    pub(crate) fn check_signal(&self, sig: Signal) -> Result<(), String> {
        if self.signals.contains(&sig) {
            Ok(())
        } else {
            let n = signal_flag_name(sig);
            let extra = if matches!(sig, Signal::SIGINT | Signal::SIGTERM) {
                " (it belongs to the host unless granted)"
            } else {
                ""
            };
            Err(format!(
                "signal SIG{n} denied{extra}: grant it with --allow-signal {n}"
            ))
        }
    }

    /// Resolves a guest path to its grant (longest matching guest prefix)
    /// and the path relative to it (`.` for the grant itself).
    pub(crate) fn resolve(&self, guest_path: &str) -> Result<(usize, PathBuf), String> {
        let norm_abs = guest_path.starts_with('/');
        let parts: Vec<&str> = guest_path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let mut best: Option<(usize, usize)> = None;
        for (i, g) in self.dirs.iter().enumerate() {
            let g_abs = g.guest.starts_with('/');
            if g_abs != norm_abs && g.guest != "." {
                continue;
            }
            let gparts: Vec<&str> = g
                .guest
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .collect();
            if g.guest == "." && norm_abs {
                continue;
            }
            if parts.len() >= gparts.len()
                && parts[..gparts.len()] == gparts[..]
                && best.is_none_or(|(_, l)| gparts.len() > l)
            {
                best = Some((i, gparts.len()));
            }
        }
        match best {
            Some((i, l)) => {
                let mut rel = PathBuf::new();
                for c in &parts[l..] {
                    rel.push(c);
                }
                if rel.as_os_str().is_empty() {
                    rel.push(".");
                }
                Ok((i, rel))
            }
            None => {
                let parent = Path::new(guest_path)
                    .parent()
                    .map(|p| p.display().to_string())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| guest_path.to_string());
                Err(format!(
                    "{guest_path} denied: not inside a granted directory; grant one with --dir HOST::{parent}"
                ))
            }
        }
    }
}

/// The address as `--allow-net` writes it.
fn flag_addr(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// Whether a relative path is a single plain file name.
pub(crate) fn is_plain_name(p: &Path) -> bool {
    let mut c = p.components();
    matches!((c.next(), c.next()), (Some(Component::Normal(_)), None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn net_rules_match_direction_network_and_ports() {
        let r = NetRule::socket(NetDirection::Both, a("127.0.0.1:7000"));
        assert!(r.allows(NetDirection::Bind, a("127.0.0.1:7000")));
        assert!(r.allows(NetDirection::Connect, a("127.0.0.1:7000")));
        assert!(!r.allows(NetDirection::Bind, a("127.0.0.1:7001")));
        assert!(!r.allows(NetDirection::Bind, a("127.0.0.2:7000")));
        let r = NetRule::new(NetDirection::Connect, net("10.0.0.0/8"), 8000..=8100);
        assert!(r.allows(NetDirection::Connect, a("10.9.9.9:8050")));
        assert!(!r.allows(NetDirection::Bind, a("10.9.9.9:8050")));
        assert!(!r.allows(NetDirection::Connect, a("10.9.9.9:8101")));
        assert!(!r.allows(NetDirection::Connect, a("11.0.0.1:8050")));
        let r = NetRule::new(NetDirection::Both, net("fd00::/8"), 0..=u16::MAX);
        assert!(r.allows(NetDirection::Connect, a("[fd12::1]:9")));
        assert_eq!(r.to_string(), "[fd00::/8]:*");
        // Host bits are cleared, as in the flag syntax.
        let r = NetRule::new(NetDirection::Bind, net("10.1.2.3/8"), 80..=80);
        assert_eq!(r.to_string(), "bind:10.0.0.0/8:80");
        let ip: IpAddr = "::1".parse().unwrap();
        assert_eq!(
            NetRule::new(NetDirection::Both, ip, 0..=u16::MAX).to_string(),
            "[::1]:*"
        );
        // An empty port range allows nothing.
        #[allow(clippy::reversed_empty_ranges)]
        let r = NetRule::new(NetDirection::Both, ip, 90..=80);
        assert!(!r.allows(NetDirection::Bind, a("[::1]:85")));
    }

    #[test]
    fn refusals_name_the_flag() {
        let c = Capabilities::new();
        assert_eq!(
            c.check_connect(a("10.0.0.1:80")).unwrap_err(),
            "connect to 10.0.0.1:80 denied: grant it with --allow-net 10.0.0.1:80"
        );
        assert_eq!(
            c.check_bind(a("[::1]:80")).unwrap_err(),
            "bind to [::1]:80 denied: grant it with --allow-net [::1]:80"
        );
        assert_eq!(
            c.check_signal(Signal::SIGUSR2).unwrap_err(),
            "signal SIGUSR2 denied: grant it with --allow-signal USR2"
        );
        assert!(
            c.check_signal(Signal::SIGTERM)
                .unwrap_err()
                .contains("belongs to the host")
        );
        assert!(
            c.resolve("/etc/passwd")
                .unwrap_err()
                .contains("--dir HOST::/etc")
        );
    }

    #[test]
    fn dir_grants_resolve_longest_prefix() {
        let c = Capabilities::new()
            .dir(DirGrant::new("/tmp/a", "/data").unwrap())
            .dir(
                DirGrant::new("/tmp/b", "/data/sub")
                    .unwrap()
                    .read_only(true),
            )
            .dir(DirGrant::new("rel", "rel").unwrap());
        assert!(c.dir_grants()[1].is_read_only());
        assert_eq!(
            c.resolve("/data/x.txt").unwrap(),
            (0, PathBuf::from("x.txt"))
        );
        assert_eq!(c.resolve("/data/sub/y").unwrap(), (1, PathBuf::from("y")));
        assert_eq!(c.resolve("/data//./sub").unwrap(), (1, PathBuf::from(".")));
        assert_eq!(c.resolve("/data").unwrap(), (0, PathBuf::from(".")));
        assert_eq!(c.resolve("rel/f").unwrap(), (2, PathBuf::from("f")));
        // `..` is kept in the relative path: cap-std refuses the escape.
        assert_eq!(
            c.resolve("/data/../etc").unwrap(),
            (0, PathBuf::from("../etc"))
        );
        assert!(c.resolve("/datax/f").is_err());
    }

    #[test]
    fn dir_grant_guest_paths_are_checked_and_normalised() {
        let g = DirGrant::new("/srv", "/data//./sub/").unwrap();
        assert_eq!(g.guest(), "/data/sub");
        assert_eq!(g.host(), Path::new("/srv"));
        assert!(!g.is_read_only());
        assert!(matches!(
            DirGrant::new("/x", "/a/../b"),
            Err(GrantError::GuestPathEscapes)
        ));
        assert!(matches!(
            DirGrant::new("", "/a"),
            Err(GrantError::EmptyPath)
        ));
        assert!(matches!(
            DirGrant::new("/x", ""),
            Err(GrantError::EmptyPath)
        ));
    }

    #[test]
    fn signal_grants_are_kept_once_and_merged() {
        let c = Capabilities::new()
            .allow_signal(Signal::SIGHUP)
            .allow_signal(Signal::SIGHUP)
            .merge(
                Capabilities::new()
                    .allow_signal(Signal::SIGUSR1)
                    .allow_signal(Signal::SIGHUP)
                    .stdin(true),
            );
        assert_eq!(c.signals(), &[Signal::SIGHUP, Signal::SIGUSR1]);
        assert!(c.grants_stdin());
        assert!(c.check_signal(Signal::SIGUSR1).is_ok());
    }

    #[test]
    fn inherited_fd_duplicates_an_open_descriptor_and_refuses_a_closed_one() {
        let c = Capabilities::new().inherited_fd("err", 2).unwrap();
        assert_eq!(c.fd_names().collect::<Vec<_>>(), ["err"]);
        let e = Capabilities::new().inherited_fd("x", 987_654).unwrap_err();
        assert!(
            matches!(e, GrantError::NotOpen { fd: 987_654, .. }),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("descriptor 987654: "), "{e}");
    }
}
