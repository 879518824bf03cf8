//! Per-plugin capabilities of the `io` interface: one deny-by-default
//! policy type, [`Capabilities`], checked in one place.
//!
//! A plugin gets nothing unless granted:
//!
//! | grant | CLI flag | what it allows |
//! |---|---|---|
//! | [`NetRule`] | `--allow-net [bind:\|connect:]ADDR[/LEN][:PORTS]` | binding and connecting IP sockets |
//! | [`DirGrant`] | `--dir HOST[::GUEST][:ro]` | files, directories and Unix sockets below `HOST`, seen as `GUEST` |
//! | fd | `--fd NAME=N` | taking the inherited descriptor `N` as `NAME` (once) |
//! | stdin | `--stdin` | taking the host's stdin (once) |
//! | signals | `--allow-signal HUP,USR1` | subscribing to these signals |
//!
//! Every refusal is a message naming the flag that would grant it, e.g.
//! `connect to 10.0.0.1:80 denied: grant it with --allow-net 10.0.0.1:80`.
//!
//! Network rules work like cap-std's `Pool`: an IP network (a single
//! address is a /32 or /128) plus a port range, for bind, connect or both.
//!
//! ```
//! use callop_plugin_host::Capabilities;
//! let caps = Capabilities::new()
//!     .allow_net("127.0.0.1:7000-7010").unwrap()
//!     .allow_net("connect:10.0.0.0/8:*").unwrap()
//!     .dir("./config::/config:ro").unwrap()
//!     .stdin(true);
//! assert!(caps.check_bind("127.0.0.1:7005".parse().unwrap()).is_ok());
//! assert!(caps.check_connect("10.1.2.3:80".parse().unwrap()).is_ok());
//! assert!(caps.check_bind("10.1.2.3:80".parse().unwrap()).is_err());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use ipnet::IpNet;

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

/// One `--allow-net` grant: a network, a port range and a direction.
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
    /// Whether the rule allows `addr` for `op`.
    pub fn allows(&self, op: NetDirection, addr: SocketAddr) -> bool {
        (self.direction == NetDirection::Both || self.direction == op)
            && self.net.contains(&addr.ip())
            && (self.port_min..=self.port_max).contains(&addr.port())
    }
}

fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    if s == "*" {
        return Ok((0, u16::MAX));
    }
    let p = |x: &str| x.parse::<u16>().map_err(|_| format!("bad port `{x}`"));
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (p(a)?, p(b)?);
            if a > b {
                return Err(format!("empty port range `{s}`"));
            }
            Ok((a, b))
        }
        None => {
            let a = p(s)?;
            Ok((a, a))
        }
    }
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    if s.contains('/') {
        s.parse::<IpNet>()
            .map(|n| n.trunc())
            .map_err(|_| format!("bad network `{s}`"))
    } else {
        s.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("bad address `{s}`"))
    }
}

impl FromStr for NetRule {
    type Err = String;

    /// `[bind:|connect:]ADDR[/LEN][:PORTS]`; IPv6 in brackets when a port
    /// follows (`[::1]:80`, `[fd00::/8]:*`); PORTS is `N`, `N-M` or `*`
    /// (the default: all ports).
    fn from_str(spec: &str) -> Result<NetRule, String> {
        let err = |e: String| format!("--allow-net `{spec}`: {e}");
        let (direction, rest) = if let Some(r) = spec.strip_prefix("bind:") {
            (NetDirection::Bind, r)
        } else if let Some(r) = spec.strip_prefix("connect:") {
            (NetDirection::Connect, r)
        } else {
            (NetDirection::Both, spec)
        };
        let (net, ports) = if let Some(r) = rest.strip_prefix('[') {
            let (inside, after) = r.split_once(']').ok_or_else(|| err("missing `]`".into()))?;
            let ports = match after {
                "" => "*",
                a => a
                    .strip_prefix(':')
                    .ok_or_else(|| err(format!("unexpected `{a}`")))?,
            };
            (inside, ports)
        } else if rest.matches(':').count() > 1 {
            (rest, "*") // bare IPv6, no port
        } else {
            match rest.split_once(':') {
                Some((a, p)) => (a, p),
                None => (rest, "*"),
            }
        };
        let net = parse_net(net).map_err(err)?;
        let (port_min, port_max) = parse_ports(ports).map_err(err)?;
        Ok(NetRule {
            direction,
            net,
            port_min,
            port_max,
        })
    }
}

impl fmt::Display for NetRule {
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

/// One `--dir` grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The host directory.
    pub host: PathBuf,
    /// The guest path it appears as (normalised: no trailing `/`).
    pub guest: String,
    /// Whether writes are refused.
    pub read_only: bool,
}

impl FromStr for DirGrant {
    type Err = String;

    /// `HOST[::GUEST][:ro|:rw]` (the guest path defaults to `HOST` as
    /// written; read-write by default).
    fn from_str(spec: &str) -> Result<DirGrant, String> {
        let (rest, read_only) = if let Some(r) = spec.strip_suffix(":ro") {
            (r, true)
        } else if let Some(r) = spec.strip_suffix(":rw") {
            (r, false)
        } else {
            (spec, false)
        };
        let (host, guest) = match rest.split_once("::") {
            Some((h, g)) => (h, g),
            None => (rest, rest),
        };
        if host.is_empty() || guest.is_empty() {
            return Err(format!("--dir `{spec}`: expected HOST[::GUEST][:ro]"));
        }
        let guest = normalize_guest(guest)
            .ok_or_else(|| format!("--dir `{spec}`: the guest path must not contain `..`"))?;
        Ok(DirGrant {
            host: PathBuf::from(host),
            guest,
            read_only,
        })
    }
}

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
/// grants nothing.
#[derive(Default)]
pub struct Capabilities {
    /// Network grants.
    pub net: Vec<NetRule>,
    /// Directory grants.
    pub dirs: Vec<DirGrant>,
    pub(crate) fds: BTreeMap<String, FdGrant>,
    /// Whether the plugin may take the host's stdin.
    pub stdin: bool,
    /// Signals the plugin may subscribe to.
    pub signals: Vec<Signal>,
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
            .finish()
    }
}

/// Parses a signal name: `HUP`, `SIGHUP` or `hup`.
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    let up = s.trim().to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    Ok(match name {
        "HUP" => Signal::SIGHUP,
        "INT" => Signal::SIGINT,
        "QUIT" => Signal::SIGQUIT,
        "USR1" => Signal::SIGUSR1,
        "USR2" => Signal::SIGUSR2,
        "PIPE" => Signal::SIGPIPE,
        "ALRM" => Signal::SIGALRM,
        "TERM" => Signal::SIGTERM,
        "CHLD" => Signal::SIGCHLD,
        "CONT" => Signal::SIGCONT,
        "TSTP" => Signal::SIGTSTP,
        "TTIN" => Signal::SIGTTIN,
        "TTOU" => Signal::SIGTTOU,
        "WINCH" => Signal::SIGWINCH,
        _ => {
            return Err(format!(
                "--allow-signal: unknown or unsupported signal `{s}`"
            ));
        }
    })
}

/// The short name of a signal as `--allow-signal` takes it (`HUP`).
pub fn signal_flag_name(s: Signal) -> String {
    let n = format!("{s:?}");
    n.strip_prefix("SIG").unwrap_or(&n).to_string()
}

impl Capabilities {
    /// Grants nothing.
    pub fn new() -> Capabilities {
        Capabilities::default()
    }

    /// Adds `--allow-net` rules (comma-separated specs).
    pub fn allow_net(mut self, spec: &str) -> Result<Capabilities, String> {
        for s in spec.split(',').filter(|s| !s.is_empty()) {
            self.net.push(s.parse()?);
        }
        Ok(self)
    }

    /// Adds a `--dir` grant.
    pub fn dir(mut self, spec: &str) -> Result<Capabilities, String> {
        self.dirs.push(spec.parse()?);
        Ok(self)
    }

    /// Grants stdin.
    pub fn stdin(mut self, on: bool) -> Capabilities {
        self.stdin = on;
        self
    }

    /// Adds `--allow-signal` grants (comma-separated names).
    pub fn allow_signals(mut self, spec: &str) -> Result<Capabilities, String> {
        for s in spec.split(',').filter(|s| !s.trim().is_empty()) {
            let sig = parse_signal(s)?;
            if !self.signals.contains(&sig) {
                self.signals.push(sig);
            }
        }
        Ok(self)
    }

    /// Hands the plugin a descriptor under `name` (the embedding API's way
    /// to give a plugin any `OwnedFd`: a socket, a pipe end, a tty ...).
    /// The plugin takes it with `io.open-fd(name)`, once.
    pub fn fd(mut self, name: &str, fd: OwnedFd) -> Capabilities {
        self.fds.insert(name.to_string(), FdGrant::Available(fd));
        self
    }

    /// Grants `--fd NAME=N`: the inherited descriptor `N` of this process.
    /// Fails if `N` is not an open descriptor. The descriptor is duplicated
    /// (the original stays open in the host process).
    pub fn inherited_fd(self, spec: &str) -> Result<Capabilities, String> {
        let (name, n) = spec
            .split_once('=')
            .ok_or_else(|| format!("--fd `{spec}`: expected NAME=N"))?;
        super::policy::check_name(name).map_err(|e| format!("--fd `{spec}`: {e}"))?;
        let n: i32 = n
            .parse()
            .map_err(|_| format!("--fd `{spec}`: `{n}` is not a descriptor number"))?;
        // SAFETY: the descriptor is only borrowed for the duration of the
        // dup; `fcntl_getfd` first checks it is open.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(n) };
        rustix::io::fcntl_getfd(borrowed)
            .map_err(|e| format!("--fd `{spec}`: descriptor {n}: {e}"))?;
        let owned = rustix::io::fcntl_dupfd_cloexec(borrowed, 3)
            .map_err(|e| format!("--fd `{spec}`: cannot duplicate descriptor {n}: {e}"))?;
        Ok(self.fd(name, owned))
    }

    /// Merges the grants of `other` into `self`.
    pub fn merge(mut self, other: Capabilities) -> Capabilities {
        self.net.extend(other.net);
        self.dirs.extend(other.dirs);
        self.fds.extend(other.fds);
        self.stdin |= other.stdin;
        for s in other.signals {
            if !self.signals.contains(&s) {
                self.signals.push(s);
            }
        }
        self
    }

    /// Whether binding `addr` is allowed; the error names the flag.
    pub fn check_bind(&self, addr: SocketAddr) -> Result<(), String> {
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
    pub fn check_connect(&self, addr: SocketAddr) -> Result<(), String> {
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
    pub fn check_signal(&self, sig: Signal) -> Result<(), String> {
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
    pub fn resolve(&self, guest_path: &str) -> Result<(usize, PathBuf), String> {
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

/// String form of a plugin's capabilities, as in a `[plugins.NAME]` table
/// of the `--config` file (read by `plugin::config`, which also holds the
/// limit keys); each key is named like its flag:
///
/// ```toml
/// [plugins.echo]                # instance name
/// allow-net = ["127.0.0.1:7000"]
/// dir = ["./cfg::/cfg:ro"]
/// fd = ["db=3"]
/// stdin = true
/// allow-signal = ["HUP", "USR1"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct CapabilitySpec {
    /// `allow-net`: `--allow-net` specs.
    pub allow_net: Vec<String>,
    /// `dir`: `--dir` specs.
    pub dir: Vec<String>,
    /// `fd`: `--fd NAME=N` specs.
    pub fd: Vec<String>,
    /// `stdin`: `--stdin`.
    pub stdin: bool,
    /// `allow-signal`: `--allow-signal` names.
    pub allow_signal: Vec<String>,
}

impl CapabilitySpec {
    /// The keys, as written in the file.
    pub const KEYS: &'static [&'static str] = &["allow-net", "dir", "fd", "stdin", "allow-signal"];

    /// Parses the specs (and takes the inherited descriptors).
    pub fn build(&self) -> Result<Capabilities, String> {
        let mut c = Capabilities::new().stdin(self.stdin);
        for s in &self.allow_net {
            c = c.allow_net(s)?;
        }
        for s in &self.dir {
            c = c.dir(s)?;
        }
        for s in &self.fd {
            c = c.inherited_fd(s)?;
        }
        for s in &self.allow_signal {
            c = c.allow_signals(s)?;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn net_rules_parse_and_match() {
        let r: NetRule = "127.0.0.1:7000".parse().unwrap();
        assert!(r.allows(NetDirection::Bind, a("127.0.0.1:7000")));
        assert!(r.allows(NetDirection::Connect, a("127.0.0.1:7000")));
        assert!(!r.allows(NetDirection::Bind, a("127.0.0.1:7001")));
        assert!(!r.allows(NetDirection::Bind, a("127.0.0.2:7000")));
        let r: NetRule = "connect:10.0.0.0/8:8000-8100".parse().unwrap();
        assert!(r.allows(NetDirection::Connect, a("10.9.9.9:8050")));
        assert!(!r.allows(NetDirection::Bind, a("10.9.9.9:8050")));
        assert!(!r.allows(NetDirection::Connect, a("10.9.9.9:8101")));
        assert!(!r.allows(NetDirection::Connect, a("11.0.0.1:8050")));
        let r: NetRule = "bind:127.0.0.1".parse().unwrap();
        assert!(r.allows(NetDirection::Bind, a("127.0.0.1:0")));
        let r: NetRule = "[::1]:80".parse().unwrap();
        assert!(r.allows(NetDirection::Connect, a("[::1]:80")));
        let r: NetRule = "[fd00::/8]:*".parse().unwrap();
        assert!(r.allows(NetDirection::Connect, a("[fd12::1]:9")));
        let r: NetRule = "::1".parse().unwrap();
        assert!(r.allows(NetDirection::Connect, a("[::1]:9")));
        assert_eq!(r.to_string(), "[::1]:*");
        assert!("1.2.3.4:99999".parse::<NetRule>().is_err());
        assert!("1.2.3:80".parse::<NetRule>().is_err());
        assert!("1.2.3.4:90-80".parse::<NetRule>().is_err());
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
            .dir("/tmp/a::/data")
            .unwrap()
            .dir("/tmp/b::/data/sub:ro")
            .unwrap()
            .dir("rel")
            .unwrap();
        assert!(c.dirs[1].read_only);
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
        assert!("/x::/a/../b".parse::<DirGrant>().is_err());
    }

    #[test]
    fn signals_and_spec() {
        let c = Capabilities::new().allow_signals("HUP,sigusr1").unwrap();
        assert_eq!(c.signals, vec![Signal::SIGHUP, Signal::SIGUSR1]);
        assert!(parse_signal("KILL").is_err());
        let spec = CapabilitySpec {
            allow_net: vec!["127.0.0.1:7000".into()],
            stdin: true,
            allow_signal: vec!["HUP".into()],
            ..CapabilitySpec::default()
        };
        let caps = spec.build().unwrap();
        assert!(caps.stdin && caps.check_bind(a("127.0.0.1:7000")).is_ok());
        assert_eq!(caps.signals, vec![Signal::SIGHUP]);
    }
}
