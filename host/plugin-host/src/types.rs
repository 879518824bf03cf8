//! Host side of WIT interface `callop:plugin/types`: it only defines data
//! types, so there is nothing to implement beyond the (empty) `Host` trait,
//! plus small helpers used across the host.

use super::bindings::callop::plugin::types::{EventKind, Host, LogLevel};
use super::state::PluginState;

impl Host for PluginState {}

/// Short name of an event kind, for logs.
pub(crate) fn kind_name(k: &EventKind) -> &'static str {
    match k {
        EventKind::Timer(_) => "timer",
        EventKind::Idle => "idle",
        EventKind::Ping => "ping",
        EventKind::Messages(_) => "messages",
        EventKind::Closed => "closed",
        EventKind::Readiness(_) => "readiness",
        EventKind::Signal(_) => "signal",
    }
}

/// Maps a guest log level to a `tracing` level.
pub(crate) fn tracing_level(l: LogLevel) -> tracing::Level {
    match l {
        LogLevel::Trace => tracing::Level::TRACE,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    }
}
