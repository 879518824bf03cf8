//! The string syntaxes of capability grants, shared by the `callop-host`
//! flags and the `[plugins.NAME]` keys of the `--config` file:
//!
//! | flag / key | syntax | parsed by |
//! |---|---|---|
//! | `--allow-net` / `allow-net` | `[bind:\|connect:]ADDR[/LEN][:PORTS]`, comma-separated | [`parse_net_rules`] |
//! | `--dir` / `dir` | `HOST[::GUEST][:ro\|:rw]` | [`parse_dir_grant`] |
//! | `--fd` / `fd` | `NAME=N` | [`parse_fd_grant`] |
//! | `--allow-signal` / `allow-signal` | `HUP,USR1,...` (`HUP`, `SIGHUP` or `hup`) | [`parse_signals`] |
//!
//! [`GrantFlag::add`] parses a value and adds it to a [`Capabilities`]
//! (for `--fd`, taking the inherited descriptor). Every error names the flag
//! and the value:
//!
//! ```
//! use callop_plugin_host::config::grants::{GrantFlag, parse_net_rule};
//! use callop_plugin_host::{Capabilities, NetDirection};
//!
//! let rule = parse_net_rule("connect:10.0.0.0/8:80-89").unwrap();
//! assert_eq!(rule.direction, NetDirection::Connect);
//! assert_eq!((rule.port_min, rule.port_max), (80, 89));
//! let caps = GrantFlag::Dir.add(Capabilities::new(), "./cfg::/config:ro").unwrap();
//! assert_eq!(caps.dir_grants()[0].guest(), "/config");
//! let e = parse_net_rule("1.2.3:80").unwrap_err();
//! assert_eq!(e.to_string(), "--allow-net `1.2.3:80`: bad address `1.2.3`");
//! ```

use std::fmt;
use std::net::IpAddr;
use std::os::fd::RawFd;

use callop::signals::Signal;

use crate::capabilities::{Capabilities, DirGrant, IpNet, NetDirection, NetRule};
use crate::policy;

/// A grant value (a flag's or a config key's) that could not be parsed or
/// granted. Its message names the flag and the value, e.g.
/// ``--allow-net `1.2.3.4:99999`: bad port `99999` ``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSpecError {
    flag: &'static str,
    spec: Option<String>,
    reason: String,
}

impl GrantSpecError {
    fn new(flag: &'static str, spec: &str, reason: impl fmt::Display) -> Self {
        GrantSpecError {
            flag,
            spec: Some(spec.to_string()),
            reason: reason.to_string(),
        }
    }

    /// The flag whose syntax the value has (`--allow-net`, `--dir`, `--fd`,
    /// `--allow-signal`).
    pub fn flag(&self) -> &'static str {
        self.flag
    }

    /// The value (absent for a signal name, which the message quotes).
    pub fn spec(&self) -> Option<&str> {
        self.spec.as_deref()
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for GrantSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.spec {
            Some(s) => write!(f, "{} `{s}`: {}", self.flag, self.reason),
            None => write!(f, "{}: {}", self.flag, self.reason),
        }
    }
}

impl std::error::Error for GrantSpecError {}

/// The grant flags (and config keys) that take a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantFlag {
    /// `--allow-net` / `allow-net`: [`parse_net_rules`].
    AllowNet,
    /// `--dir` / `dir`: [`parse_dir_grant`].
    Dir,
    /// `--fd` / `fd`: [`parse_fd_grant`], then [`Capabilities::inherited_fd`].
    Fd,
    /// `--allow-signal` / `allow-signal`: [`parse_signals`].
    AllowSignal,
}

impl GrantFlag {
    /// The flag as written on the command line (`--allow-net`).
    pub fn flag(self) -> &'static str {
        match self {
            GrantFlag::AllowNet => "--allow-net",
            GrantFlag::Dir => "--dir",
            GrantFlag::Fd => "--fd",
            GrantFlag::AllowSignal => "--allow-signal",
        }
    }

    /// Parses `spec` with this flag's syntax and adds the grant to `caps`.
    /// For [`GrantFlag::Fd`] this duplicates the inherited descriptor (and
    /// fails if it is not open).
    pub fn add(self, caps: Capabilities, spec: &str) -> Result<Capabilities, GrantSpecError> {
        Ok(match self {
            GrantFlag::AllowNet => parse_net_rules(spec)?
                .into_iter()
                .fold(caps, Capabilities::allow_net),
            GrantFlag::Dir => caps.dir(parse_dir_grant(spec)?),
            GrantFlag::Fd => {
                let (name, fd) = parse_fd_grant(spec)?;
                caps.inherited_fd(&name, fd)
                    .map_err(|e| GrantSpecError::new(self.flag(), spec, e))?
            }
            GrantFlag::AllowSignal => parse_signals(spec)?
                .into_iter()
                .fold(caps, Capabilities::allow_signal),
        })
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
        s.parse::<IpNet>().map_err(|_| format!("bad network `{s}`"))
    } else {
        s.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("bad address `{s}`"))
    }
}

/// Parses one `--allow-net` rule: `[bind:|connect:]ADDR[/LEN][:PORTS]`;
/// IPv6 in brackets when a port follows (`[::1]:80`, `[fd00::/8]:*`);
/// PORTS is `N`, `N-M` or `*` (the default: all ports).
pub fn parse_net_rule(spec: &str) -> Result<NetRule, GrantSpecError> {
    let err = |e: String| GrantSpecError::new("--allow-net", spec, e);
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
    Ok(NetRule::new(direction, net, port_min..=port_max))
}

/// Parses an `--allow-net` value: comma-separated rules (empty parts are
/// skipped).
pub fn parse_net_rules(spec: &str) -> Result<Vec<NetRule>, GrantSpecError> {
    spec.split(',')
        .filter(|s| !s.is_empty())
        .map(parse_net_rule)
        .collect()
}

/// Parses a `--dir` value: `HOST[::GUEST][:ro|:rw]` (the guest path
/// defaults to `HOST` as written; read-write by default).
pub fn parse_dir_grant(spec: &str) -> Result<DirGrant, GrantSpecError> {
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
        return Err(GrantSpecError::new(
            "--dir",
            spec,
            "expected HOST[::GUEST][:ro]",
        ));
    }
    DirGrant::new(host, guest)
        .map(|g| g.read_only(read_only))
        .map_err(|e| GrantSpecError::new("--dir", spec, e))
}

/// Parses an `--fd` value: `NAME=N`, the name the plugin opens and the
/// number of an inherited descriptor (not checked here: see
/// [`Capabilities::inherited_fd`]).
pub fn parse_fd_grant(spec: &str) -> Result<(String, RawFd), GrantSpecError> {
    let err = |e: String| GrantSpecError::new("--fd", spec, e);
    let (name, n) = spec
        .split_once('=')
        .ok_or_else(|| err("expected NAME=N".into()))?;
    policy::check_name(name).map_err(|e| err(e.to_string()))?;
    let n: RawFd = n
        .parse()
        .map_err(|_| err(format!("`{n}` is not a descriptor number")))?;
    Ok((name.to_string(), n))
}

/// Parses a signal name: `HUP`, `SIGHUP` or `hup` (the signals a plugin
/// can subscribe to).
pub fn parse_signal(s: &str) -> Result<Signal, GrantSpecError> {
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
            return Err(GrantSpecError {
                flag: "--allow-signal",
                spec: None,
                reason: format!("unknown or unsupported signal `{s}`"),
            });
        }
    })
}

/// Parses an `--allow-signal` value: comma-separated signal names (empty
/// parts are skipped, repeated ones kept once).
pub fn parse_signals(spec: &str) -> Result<Vec<Signal>, GrantSpecError> {
    let mut out = Vec::new();
    for s in spec.split(',').filter(|s| !s.trim().is_empty()) {
        let sig = parse_signal(s)?;
        if !out.contains(&sig) {
            out.push(sig);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::path::Path;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn rule(s: &str) -> NetRule {
        parse_net_rule(s).unwrap()
    }

    #[test]
    fn net_rule_syntax() {
        let r = rule("127.0.0.1:7000");
        assert_eq!(r, NetRule::socket(NetDirection::Both, a("127.0.0.1:7000")));
        let r = rule("connect:10.0.0.0/8:8000-8100");
        assert_eq!(r.direction, NetDirection::Connect);
        assert!(r.allows(NetDirection::Connect, a("10.9.9.9:8050")));
        assert!(!r.allows(NetDirection::Connect, a("10.9.9.9:8101")));
        let r = rule("bind:127.0.0.1");
        assert!(r.allows(NetDirection::Bind, a("127.0.0.1:0")));
        assert!(!r.allows(NetDirection::Connect, a("127.0.0.1:0")));
        assert!(rule("[::1]:80").allows(NetDirection::Connect, a("[::1]:80")));
        assert!(rule("[fd00::/8]:*").allows(NetDirection::Connect, a("[fd12::1]:9")));
        let r = rule("::1");
        assert!(r.allows(NetDirection::Connect, a("[::1]:9")));
        assert_eq!(r.to_string(), "[::1]:*");
        // Display writes what the parser reads.
        for s in [
            "bind:10.0.0.0/8:80-89",
            "connect:[fd00::/8]:*",
            "127.0.0.1:7000",
        ] {
            assert_eq!(rule(s).to_string(), s);
        }
    }

    #[test]
    fn net_rule_errors_name_the_flag_and_value() {
        let msg = |s: &str| parse_net_rule(s).unwrap_err().to_string();
        assert_eq!(
            msg("1.2.3.4:99999"),
            "--allow-net `1.2.3.4:99999`: bad port `99999`"
        );
        assert_eq!(
            msg("1.2.3:80"),
            "--allow-net `1.2.3:80`: bad address `1.2.3`"
        );
        assert_eq!(
            msg("1.2.3.4:90-80"),
            "--allow-net `1.2.3.4:90-80`: empty port range `90-80`"
        );
        assert_eq!(msg("[::1"), "--allow-net `[::1`: missing `]`");
        assert_eq!(
            msg("1.2.3.0/99"),
            "--allow-net `1.2.3.0/99`: bad network `1.2.3.0/99`"
        );
        let e = parse_net_rule("[::1]x").unwrap_err();
        assert_eq!(
            (e.flag(), e.spec(), e.reason()),
            ("--allow-net", Some("[::1]x"), "unexpected `x`")
        );
    }

    #[test]
    fn net_rules_are_comma_separated() {
        let v = parse_net_rules("127.0.0.1:80,,connect:10.0.0.0/8:*").unwrap();
        assert_eq!(v.len(), 2);
        let e = parse_net_rules("127.0.0.1:80,bad").unwrap_err();
        assert_eq!(e.spec(), Some("bad"));
    }

    #[test]
    fn dir_grant_syntax() {
        let g = parse_dir_grant("./cfg::/config:ro").unwrap();
        assert_eq!(
            (g.host(), g.guest(), g.is_read_only()),
            (Path::new("./cfg"), "/config", true)
        );
        let g = parse_dir_grant("/tmp/x:rw").unwrap();
        assert_eq!((g.guest(), g.is_read_only()), ("/tmp/x", false));
        assert_eq!(parse_dir_grant("rel").unwrap().guest(), "rel");
        assert_eq!(
            parse_dir_grant("::/x").unwrap_err().to_string(),
            "--dir `::/x`: expected HOST[::GUEST][:ro]"
        );
        assert_eq!(
            parse_dir_grant("/x::/a/../b").unwrap_err().to_string(),
            "--dir `/x::/a/../b`: the guest path must not contain `..`"
        );
    }

    #[test]
    fn fd_grant_syntax() {
        assert_eq!(parse_fd_grant("db=3").unwrap(), ("db".to_string(), 3));
        let msg = |s: &str| parse_fd_grant(s).unwrap_err().to_string();
        assert_eq!(msg("db"), "--fd `db`: expected NAME=N");
        assert_eq!(msg("db=x"), "--fd `db=x`: `x` is not a descriptor number");
        assert!(msg("a b=3").starts_with("--fd `a b=3`: name `a b` contains"));
        let e = GrantFlag::Fd
            .add(Capabilities::new(), "db=987654")
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--fd `db=987654`: descriptor 987654: "),
            "{e}"
        );
        let caps = GrantFlag::Fd.add(Capabilities::new(), "err=2").unwrap();
        assert_eq!(caps.fd_names().collect::<Vec<_>>(), ["err"]);
    }

    #[test]
    fn signal_syntax() {
        assert_eq!(
            parse_signals("HUP,sigusr1,,SIGHUP").unwrap(),
            vec![Signal::SIGHUP, Signal::SIGUSR1]
        );
        assert_eq!(parse_signal(" term ").unwrap(), Signal::SIGTERM);
        assert_eq!(
            parse_signal("KILL").unwrap_err().to_string(),
            "--allow-signal: unknown or unsupported signal `KILL`"
        );
        let caps = GrantFlag::AllowSignal
            .add(Capabilities::new().allow_signal(Signal::SIGHUP), "HUP,USR2")
            .unwrap();
        assert_eq!(caps.signals(), &[Signal::SIGHUP, Signal::SIGUSR2]);
    }

    #[test]
    fn grant_flags_add_to_capabilities() {
        let caps = GrantFlag::AllowNet
            .add(
                Capabilities::new(),
                "bind:127.0.0.1:7000,connect:10.0.0.0/8:*",
            )
            .unwrap();
        assert!(caps.check_bind(a("127.0.0.1:7000")).is_ok());
        assert!(caps.check_connect(a("127.0.0.1:7000")).is_err());
        assert!(caps.check_connect(a("10.1.2.3:80")).is_ok());
        let caps = GrantFlag::Dir.add(caps, "/tmp::/t:ro").unwrap();
        assert_eq!(caps.dir_grants().len(), 1);
        assert_eq!(GrantFlag::Dir.flag(), "--dir");
    }
}
