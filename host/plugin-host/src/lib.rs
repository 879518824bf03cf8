//! callop-plugin-host: sandboxed WebAssembly component plugins living on a
//! [`callop`] event loop — the library an application embeds.
//!
//! Which crate to pick: [`callop`] alone is the event loop (a calloop 0.14
//! drop-in, no wasmtime in its tree); this crate puts wasm plugins on such a
//! loop (wasmtime, WASI p2, capabilities, limits, restarts, a compile
//! cache); `callop-host` is the command line over this crate.
//!
//! A plugin is a WebAssembly component targeting the world
//! `callop:plugin/plugin@0.3.0` (see `wit/`; components built for 0.2.0 keep
//! loading, see [`SUPPORTED_VERSIONS`]). A [`Host`] lives inside an
//! application's [`EventLoop`](callop::EventLoop): each timer, idle, ping or
//! channel a plugin registers becomes a real source of that loop, whose
//! events are delivered to the plugin in batches through its `dispatch`
//! export. Plugins get no ambient authority: WASI p2 is linked with no
//! environment, stdout/stderr forwarded line by line with an
//! `[instance-name]` prefix, and preopened directories, sockets and stdin
//! only as the plugin's [`Capabilities`] grant them ([`wasi_grants`]: the
//! same grants as the `io` interface).
//!
//! Module layout:
//! * [`engine`] — wasmtime engine + linker, loading and load-time checks;
//! * `versions` — the versions of `callop:plugin` linked side by side, and
//!   the guest's exports (`guest`, the optional `state` of
//!   [`STATE_EXPORT`] called by a reload, [`Host::reload`]) of the version
//!   a component was built for;
//! * [`cache`] — precompiled-component cache;
//! * [`app_api`] — the application's own WIT interfaces ([`AppApi`]),
//!   granted per plugin, with typed per-plugin state;
//! * [`host`] — the embedding API ([`Host`]), the loop bridge, and
//!   [`SignalShutdown`] (graceful shutdown on SIGINT/SIGTERM, as
//!   `callop-host` does it);
//! * [`capabilities`] — what a plugin may do through `io`
//!   ([`Capabilities`], built from typed grants such as [`NetRule`] and
//!   [`DirGrant`]);
//! * `host_loop`, `types` — the host side of the WIT interfaces
//!   `callop:plugin/host-loop` and `callop:plugin/types` (the guest side,
//!   `callop:plugin/guest`, is called from [`host`]);
//! * `io` — the host side of `callop:plugin/io`: one module per resource
//!   family (tcp, udp, unix, fd, file, dir) over the concrete types the
//!   resource table holds;
//! * [`wasi_grants`] — the same capabilities for WASI p2 (`std::fs`,
//!   `std::net`, stdin): preopens, the socket address check, stdin;
//! * [`policy`], [`limits`] — naming rules, permissions and limits;
//! * `log_limit`, [`truncate`] — guest-caused log lines rate-limited per
//!   plugin, guest-provided text cut to a stated bound;
//! * [`fault`], [`restart`] — classifying plugin failures and restarting
//!   failed plugins (see "Isolation" in the README);
//! * [`stats`], [`metrics`] — what each plugin costs ([`Host::stats`]), and
//!   those figures in the Prometheus text format, served over HTTP;
//! * `mailbox` — the host side of a channel: messages packed as they are
//!   sent, delivered one batch per loop iteration;
//! * `host_memory` — the host-memory budget of each instance
//!   ([`Limits::max_host_memory_bytes`]) and the charges of what the host
//!   holds for it, released when the buffer is dropped;
//! * `ticker` — the epoch ticker (one per engine) and the CPU-time budget
//!   each guest call of a loop thread is checked against at every tick.
//! * [`output`] — the host's stdout/stderr through bounded queues drained
//!   by writer threads: a slow reader costs dropped (and counted) lines,
//!   never a blocked loop;
//! * [`config`] — the TOML file of `callop-host --config`:
//!   limits, restart policies and capabilities; [`config::grants`] parses
//!   the string syntaxes of the grants (`--allow-net`, `--dir`, `--fd`,
//!   `--allow-signal`), for the file and the flags alike.

#![warn(missing_docs)]

mod alarm;
pub mod app_api;
pub mod app_channel;
pub mod app_sender;
pub mod cache;
pub mod capabilities;
pub mod component_file;

pub mod config;
pub mod engine;
mod error;
pub mod fault;
#[cfg(test)]
mod fuzz_tests;
pub mod host;
mod host_loop;
mod host_memory;
mod io;
pub mod limits;
mod log_limit;
mod mailbox;
pub mod metrics;
pub mod output;
pub mod policy;
pub mod pooling;
pub mod restart;
mod sources;
mod state;
pub mod stats;
mod stdio;
mod ticker;
pub mod truncate;
mod types;
mod versions;
mod wasi_blocking;
pub mod wasi_grants;

pub use app_api::{AppApi, AppContext, AppData, app_data};
pub use app_channel::AppChannel;
pub use app_sender::AppSender;
pub use capabilities::{Capabilities, DirGrant, GrantError, IpNet, NetDirection, NetRule};
pub use engine::{ComponentInfo, EngineOptions, PluginComponent, PluginEngine};
pub use error::LoadError;
pub use fault::{Fault, FaultKind};
pub use host::{
    ExitReason, Host, HostConfig, HostError, PluginExit, PluginId, PluginSpec, ReloadError, RunEnd,
    ShutdownPhase, SignalShutdown, SignalShutdownError, exit_status,
};
pub use limits::Limits;
pub use policy::Policy;
pub use pooling::Allocator;
pub use restart::RestartPolicy;
pub use state::PluginState;
pub use stats::{HostStats, PluginStats};

/// The WIT package this host implements.
pub const PACKAGE: &str = "callop:plugin";
/// The newest version of [`PACKAGE`] this host implements (the one `wit/`
/// describes); see [`SUPPORTED_VERSIONS`] for all it loads.
pub const PACKAGE_VERSION: &str = "0.3.0";
/// Every version of [`PACKAGE`] this host loads, newest first: components
/// built for an older one keep loading (see the "Versions" section of the
/// WIT).
pub const SUPPORTED_VERSIONS: &[&str] = versions::SUPPORTED;
/// The world plugins target (newest version).
pub const WORLD: &str = "callop:plugin/plugin@0.3.0";
/// The interface plugins must export (newest version).
pub const GUEST_EXPORT: &str = "callop:plugin/guest@0.3.0";
/// The optional interface a plugin may export to carry its state over a
/// reload (`snapshot` / `restore`, see [`Host::reload`]), newest version; a
/// component's own version of it is used (see [`SUPPORTED_VERSIONS`]).
pub const STATE_EXPORT: &str = "callop:plugin/state@0.3.0";
/// The shared-types interface plugins may import (newest version).
pub const TYPES_IMPORT: &str = "callop:plugin/types@0.3.0";
/// The I/O interface this host provides to plugins (newest version).
pub const IO_IMPORT: &str = "callop:plugin/io@0.3.0";
/// The interface this host provides to plugins (newest version).
pub const HOST_LOOP_IMPORT: &str = "callop:plugin/host-loop@0.3.0";

/// Bindings generated from `wit/` (package `callop:plugin`, newest version,
/// world `plugin`); older versions reuse them (see `versions`).
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "wit",
        with: {
            "callop:plugin/host-loop.ping": super::state::PingHandle,
            "callop:plugin/host-loop.sender": super::state::SenderHandle,
            "callop:plugin/io.tcp-listener": super::io::TcpListenerRes,
            "callop:plugin/io.tcp-stream": super::io::TcpStreamRes,
            "callop:plugin/io.udp-socket": super::io::UdpSocketRes,
            "callop:plugin/io.unix-listener": super::io::UnixListenerRes,
            "callop:plugin/io.unix-stream": super::io::UnixStreamRes,
            "callop:plugin/io.fd": super::io::FdRes,
            "callop:plugin/io.file": super::io::FileRes,
            "callop:plugin/io.dir": super::io::DirRes,
        },
    });
}
