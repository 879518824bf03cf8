//! The same grants for WASI: what a plugin's [`Capabilities`] allow through
//! the `io` interface is also reachable through WASI p2 (Rust's `std::fs`,
//! `std::net` and `std::io::stdin`, Python's `open` and `socket`), and
//! nothing else.
//!
//! | grant | WASI |
//! |---|---|
//! | `--dir HOST[::GUEST][:ro]` | `HOST` preopened as `GUEST`; `:ro` makes it read-only ([`FsPerms::ReadOnly`]: every change refused). Paths are resolved by cap-std: `..`, absolute paths and symbolic links cannot lead out of it |
//! | `--allow-net RULE` | `wasi:sockets` TCP and UDP, each address checked by the rules' own matcher ([`NetRule::allows`]); name lookup stays off |
//! | `--stdin` | WASI stdin reads the host's stdin (wasmtime-wasi's shared reader thread: reads never block the loop) |
//!
//! Socket addresses map to the grant directions as the `io` interface does
//! it ([`wasi_net_allows`]): a connect (TCP) or a datagram sent (UDP) needs
//! a connect grant, a bind or listen a bind grant. The OS's implicit bind
//! before a connect or send (the unspecified address with port 0) is
//! admitted when a connect grant exists. Accepted clients and received
//! datagrams are not filtered, as in the `io` interface.
//!
//! Through WASI a refusal reaches the guest only as an error code
//! (`access-denied` for a socket, `not-permitted` for a path leaving its
//! directory, `no-entry` for a path outside every grant); a refused socket
//! use is also logged, naming the flag (`WASI socket: connect to
//! 127.0.0.1:9 denied: grant it with --allow-net connect:127.0.0.1:9`),
//! under a per-plugin rate limit as other guest-caused lines.
//!
//! A blocking WASI read (of stdin, a socket) is bounded by the call's
//! budget (the host's bounded blocking calls): a plugin that waits for
//! stdin with `std::io::stdin().read_line` fails once the budget is spent.
//! Plugins that wait for input register it with the loop through the `io`
//! interface (`callop_guest::fs::stdin`, `callop_guest::net`).
//!
//! ```
//! use std::net::SocketAddr;
//! use callop_plugin_host::{NetDirection, NetRule};
//! use callop_plugin_host::wasi_grants::{WasiUse, wasi_net_allows};
//!
//! let rules = [NetRule::socket(NetDirection::Connect, "127.0.0.1:7000".parse().unwrap())];
//! let a = |s: &str| -> SocketAddr { s.parse().unwrap() };
//! assert!(wasi_net_allows(&rules, a("127.0.0.1:7000"), WasiUse::Connect));
//! assert!(!wasi_net_allows(&rules, a("127.0.0.1:7001"), WasiUse::Connect));
//! // The implicit bind before a connect.
//! assert!(wasi_net_allows(&rules, a("0.0.0.0:0"), WasiUse::Bind));
//! assert!(!wasi_net_allows(&rules, a("127.0.0.1:7000"), WasiUse::Bind));
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::capabilities::{Capabilities, NetDirection, NetRule};
use crate::log_limit::LogLimiter;

/// What a WASI socket call uses an address for, in the terms of the grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasiUse {
    /// Binding a local address (TCP or UDP `bind`, implicit binds included).
    Bind,
    /// Listening on a bound local address.
    Listen,
    /// Connecting to a remote address (TCP `connect`, UDP `connect` or a
    /// datagram sent).
    Connect,
    /// An incoming peer (a TCP client accepted, a UDP datagram received).
    Incoming,
}

impl From<SocketAddrUse> for WasiUse {
    fn from(u: SocketAddrUse) -> WasiUse {
        match u {
            SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => WasiUse::Bind,
            SocketAddrUse::TcpListen => WasiUse::Listen,
            SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend => WasiUse::Connect,
            SocketAddrUse::TcpAccept | SocketAddrUse::UdpReceive => WasiUse::Incoming,
        }
    }
}

/// Whether the network grants `rules` admit `addr` for the WASI use `u`
/// (see the [module docs](self)).
pub fn wasi_net_allows(rules: &[NetRule], addr: SocketAddr, u: WasiUse) -> bool {
    let any = |dir: NetDirection| rules.iter().any(|r| r.allows(dir, addr));
    match u {
        WasiUse::Bind if addr.ip().is_unspecified() && addr.port() == 0 => {
            // The OS's implicit bind before a connect or send (an ephemeral
            // port), or the same asked explicitly: a connect grant is
            // needed to use it; a listen on it is checked by `Listen`.
            any(NetDirection::Bind)
                || rules
                    .iter()
                    .any(|r| matches!(r.direction, NetDirection::Connect | NetDirection::Both))
        }
        WasiUse::Bind | WasiUse::Listen => any(NetDirection::Bind),
        WasiUse::Connect => any(NetDirection::Connect),
        WasiUse::Incoming => true,
    }
}

/// The log line of a refused WASI socket use, naming the flag that would
/// grant it.
fn refusal(addr: SocketAddr, u: WasiUse) -> String {
    match u {
        WasiUse::Bind if addr.ip().is_unspecified() && addr.port() == 0 => format!(
            "WASI socket: ephemeral bind of {addr} denied: a connect needs \
             --allow-net connect:ADDR, a listen --allow-net bind:ADDR"
        ),
        WasiUse::Bind | WasiUse::Listen => {
            format!("WASI socket: bind to {addr} denied: grant it with --allow-net bind:{addr}")
        }
        WasiUse::Connect => format!(
            "WASI socket: connect to {addr} denied: grant it with --allow-net connect:{addr}"
        ),
        WasiUse::Incoming => format!("WASI socket: {addr} denied"),
    }
}

/// Applies `caps` to the WASI context of a new instance named `plugin`:
/// preopens the granted directories, admits the granted socket addresses
/// and wires stdin if granted. A granted directory that cannot be opened
/// now is left out of WASI (logged; the `io` interface reports it when
/// used).
pub(crate) fn apply(wasi: &mut WasiCtxBuilder, caps: &Capabilities, plugin: &str) {
    for g in caps.dir_grants() {
        let perms = if g.is_read_only() {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        if let Err(e) = wasi.preopened_dir(g.host(), g.guest(), perms) {
            tracing::warn!(
                plugin,
                "granted directory {} ({}) is not preopened for WASI: {e:#}",
                g.guest(),
                g.host().display()
            );
        }
    }
    let rules: Arc<[NetRule]> = caps.net_rules().into();
    if !rules.is_empty() {
        wasi.allow_tcp(true).allow_udp(true);
        // Refusals are logged under a rate limit of their own (summarised
        // when the instance's WASI context is dropped).
        let limiter = Mutex::new(LogLimiter::new(plugin.into()));
        let plugin: Arc<str> = plugin.into();
        wasi.socket_addr_check(move |addr, u| {
            let u = WasiUse::from(u);
            let ok = wasi_net_allows(&rules, addr, u);
            if !ok {
                let msg = refusal(addr, u);
                if limiter
                    .lock()
                    .is_ok_and(|mut l| l.admit(tracing::Level::WARN, &msg))
                {
                    tracing::warn!(plugin = &*plugin, "{msg}");
                }
            }
            Box::pin(async move { ok })
        });
    }
    if caps.grants_stdin() {
        wasi.stdin(wasmtime_wasi::cli::stdin());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn wasi_uses_follow_the_grant_directions() {
        let both = [NetRule::socket(NetDirection::Both, a("127.0.0.1:7000"))];
        let bind = [NetRule::socket(NetDirection::Bind, a("127.0.0.1:7000"))];
        let conn = [NetRule::socket(NetDirection::Connect, a("127.0.0.1:7000"))];
        for (rules, b, c) in [
            (&both, true, true),
            (&bind, true, false),
            (&conn, false, true),
        ] {
            assert_eq!(
                wasi_net_allows(rules, a("127.0.0.1:7000"), WasiUse::Bind),
                b
            );
            assert_eq!(
                wasi_net_allows(rules, a("127.0.0.1:7000"), WasiUse::Listen),
                b
            );
            assert_eq!(
                wasi_net_allows(rules, a("127.0.0.1:7000"), WasiUse::Connect),
                c
            );
            // Other addresses and ports: never.
            for other in ["127.0.0.1:7001", "127.0.0.2:7000", "[::1]:7000"] {
                for u in [WasiUse::Bind, WasiUse::Listen, WasiUse::Connect] {
                    assert!(!wasi_net_allows(rules, a(other), u), "{other} {u:?}");
                }
            }
        }
    }

    #[test]
    fn implicit_binds_need_a_connect_grant_and_listening_on_them_a_bind_grant() {
        let conn = [NetRule::socket(NetDirection::Connect, a("127.0.0.1:7000"))];
        let bind = [NetRule::socket(NetDirection::Bind, a("127.0.0.1:7000"))];
        for w in ["0.0.0.0:0", "[::]:0"] {
            assert!(wasi_net_allows(&conn, a(w), WasiUse::Bind));
            assert!(!wasi_net_allows(&conn, a(w), WasiUse::Listen));
            assert!(!wasi_net_allows(&bind, a(w), WasiUse::Bind));
            assert!(!wasi_net_allows(&[], a(w), WasiUse::Bind));
        }
        // A wildcard bind with a port is an ordinary bind.
        assert!(!wasi_net_allows(&conn, a("0.0.0.0:7000"), WasiUse::Bind));
    }

    #[test]
    fn incoming_peers_are_not_filtered_and_socket_uses_map() {
        assert!(wasi_net_allows(&[], a("10.0.0.1:5"), WasiUse::Incoming));
        assert_eq!(WasiUse::from(SocketAddrUse::UdpSend), WasiUse::Connect);
        assert_eq!(WasiUse::from(SocketAddrUse::TcpListen), WasiUse::Listen);
        assert_eq!(WasiUse::from(SocketAddrUse::UdpBind), WasiUse::Bind);
        assert_eq!(WasiUse::from(SocketAddrUse::TcpAccept), WasiUse::Incoming);
    }

    #[test]
    fn refusals_name_the_flag() {
        assert_eq!(
            refusal(a("127.0.0.1:9"), WasiUse::Connect),
            "WASI socket: connect to 127.0.0.1:9 denied: grant it with --allow-net connect:127.0.0.1:9"
        );
        assert_eq!(
            refusal(a("[::1]:80"), WasiUse::Listen),
            "WASI socket: bind to [::1]:80 denied: grant it with --allow-net bind:[::1]:80"
        );
        assert!(refusal(a("0.0.0.0:0"), WasiUse::Bind).contains("ephemeral bind"));
    }
}
