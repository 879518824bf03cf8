//! Resource limits applied to every plugin instance.

use std::time::Duration;

use wasmtime::{StoreLimits, StoreLimitsBuilder};

/// Host-configured limits. Hitting one of the counting limits makes the
/// offending host import return `error-code.limit-exceeded`; hitting the
/// memory limit makes the guest's `memory.grow` fail; exceeding the callback
/// timeout traps the guest (the plugin then fails).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum linear memory of one instance, in bytes.
    pub max_memory_bytes: usize,
    /// Maximum number of live sources (timers, idles, pings, channels) per
    /// plugin instance.
    pub max_sources: usize,
    /// Maximum size of one channel message, in bytes.
    pub max_message_bytes: usize,
    /// Maximum number of messages queued for one channel (sent but not yet
    /// delivered to its owner), including messages buffered before the
    /// channel was opened.
    pub max_queued_messages: usize,
    /// Maximum number of resource handles (pings, senders) a plugin may hold.
    pub max_handles: usize,
    /// Maximum number of events delivered in one `dispatch` call; larger
    /// batches are split into several calls.
    pub max_batch: usize,
    /// Maximum wall time of one guest call (`init`, `dispatch`, `shutdown`),
    /// enforced with epoch interruption. `None` means unlimited.
    pub callback_timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: 256 << 20,
            max_sources: 4096,
            max_message_bytes: 1 << 20,
            max_queued_messages: 4096,
            max_handles: 4096,
            max_batch: 1024,
            callback_timeout: None,
        }
    }
}

impl Limits {
    /// The wasmtime store limiter for these limits.
    pub(crate) fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(self.max_memory_bytes)
            .instances(64)
            .tables(64)
            .memories(16)
            .trap_on_grow_failure(false)
            .build()
    }
}
