//! Resource limits applied to every plugin instance, and the store's
//! [`ResourceLimiter`] enforcing the memory/table/instance caps.

use std::time::Duration;

use wasmtime::ResourceLimiter;

/// Host-configured limits. Hitting one of the counting limits makes the
/// offending host import return `error-code.limit-exceeded`; hitting the
/// memory limit makes the guest's `memory.grow` fail (a Rust guest then
/// aborts, and the plugin fails with [`FaultKind::OutOfMemory`]);
/// exceeding the callback timeout interrupts the guest (the plugin fails with
/// [`FaultKind::Timeout`]).
///
/// [`FaultKind::OutOfMemory`]: super::FaultKind::OutOfMemory
/// [`FaultKind::Timeout`]: super::FaultKind::Timeout
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum linear memory of one instance, in bytes (`--max-memory`).
    pub max_memory_bytes: usize,
    /// Maximum number of live sources (timers, idles, pings, channels) per
    /// plugin instance (`--max-sources`).
    pub max_sources: usize,
    /// Maximum size of one channel message, in bytes (`--max-message-size`).
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
    /// Maximum number of core wasm instances in one plugin's store.
    pub max_instances: usize,
    /// Maximum number of wasm tables in one plugin's store.
    pub max_tables: usize,
    /// Maximum number of elements of one wasm table.
    pub max_table_elements: usize,
    /// Maximum CPU time of one guest call (`dispatch`, `shutdown`),
    /// enforced with epoch interruption (`--callback-timeout`, default
    /// 100 ms). It counts the CPU time of the loop's thread, checked at each
    /// 5 ms epoch tick, so a spinning guest is stopped after its budget while a
    /// guest that is merely not scheduled (a loaded machine) is not; where
    /// no per-thread CPU clock exists (macOS) it is wall time. Epochs are
    /// checked in wasm code only: a guest blocked inside a host call (a WASI
    /// sleep) fails when the call returns. `None` means unlimited.
    pub callback_timeout: Option<Duration>,
    /// Maximum CPU time of a plugin's `init` call (and of its instantiation),
    /// default 1 s: initialisation may legitimately take longer than one
    /// callback (e.g. an interpreter-based plugin). Enforced only when
    /// `callback_timeout` is set (the host then holds the engine's epoch
    /// ticker).
    pub init_timeout: Option<Duration>,
    /// Maximum host memory held for one plugin instance, in bytes
    /// (`--max-host-memory`, default [`DEFAULT_MAX_HOST_MEMORY`], 64 MiB):
    /// the buffers the host keeps for it outside its own linear memory.
    /// Channel messages are charged to their *sender* from the send until
    /// the `dispatch` call delivering them returns (or their queue is
    /// dropped), whether the channel is open or not yet opened; messages of
    /// the application ([`AppSender`](crate::AppSender)) are charged to the
    /// receiving instance. A send that would take the budget past this fails
    /// with `error-code.limit-exceeded`; the plugin keeps running. The
    /// budget belongs to the instance name: a restarted instance starts with
    /// what its previous run still has in flight to others.
    ///
    /// It is separate from [`max_memory_bytes`](Self::max_memory_bytes),
    /// which caps the guest's own linear memory: one plugin can make the
    /// process hold at most about `max_memory_bytes + max_host_memory_bytes`
    /// (plus its compiled code and fixed per-instance structures).
    pub max_host_memory_bytes: usize,
}

/// Default [`Limits::max_host_memory_bytes`]: 64 MiB.
pub const DEFAULT_MAX_HOST_MEMORY: usize = 64 << 20;

/// Default [`Limits::init_timeout`].
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(1);

/// Default [`Limits::callback_timeout`].
pub const DEFAULT_CALLBACK_TIMEOUT: Duration = Duration::from_millis(100);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: 256 << 20,
            max_sources: 4096,
            max_message_bytes: 1 << 20,
            max_queued_messages: 4096,
            max_handles: 4096,
            max_batch: 1024,
            max_instances: 64,
            max_tables: 64,
            max_table_elements: 1 << 20,
            callback_timeout: Some(DEFAULT_CALLBACK_TIMEOUT),
            init_timeout: Some(DEFAULT_INIT_TIMEOUT),
            max_host_memory_bytes: DEFAULT_MAX_HOST_MEMORY,
        }
    }
}

impl Limits {
    /// The wasmtime store limiter for these limits.
    pub(crate) fn limiter(&self) -> PluginLimiter {
        PluginLimiter {
            max_memory: self.max_memory_bytes,
            max_table_elements: self.max_table_elements,
            instances: self.max_instances,
            tables: self.max_tables,
            memories: self.max_instances,
            memory_denied: None,
            memory_bytes: 0,
            table_elements: 0,
        }
    }
}

/// The per-store [`ResourceLimiter`]: denies growth beyond the limits and
/// remembers a denied memory growth, so that the trap that usually follows
/// (a Rust guest aborts when allocation fails) is reported as running out of
/// memory rather than as a bare `unreachable`.
#[derive(Debug)]
pub(crate) struct PluginLimiter {
    max_memory: usize,
    max_table_elements: usize,
    instances: usize,
    tables: usize,
    memories: usize,
    /// Set when a `memory.grow` was refused: the size asked for, in bytes.
    pub(crate) memory_denied: Option<usize>,
    /// The bytes of every linear memory of the store (their creation and
    /// each allowed growth), for [`crate::stats`].
    pub(crate) memory_bytes: usize,
    /// The elements of every table of the store, likewise.
    pub(crate) table_elements: usize,
}

impl ResourceLimiter for PluginLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allow = desired <= self.max_memory && maximum.is_none_or(|m| desired <= m);
        if allow {
            self.memory_bytes = self
                .memory_bytes
                .saturating_add(desired.saturating_sub(current));
        } else {
            self.memory_denied = Some(desired);
        }
        Ok(allow)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allow = desired <= self.max_table_elements && maximum.is_none_or(|m| desired <= m);
        if allow {
            self.table_elements = self
                .table_elements
                .saturating_add(desired.saturating_sub(current));
        }
        Ok(allow)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_refuses_growth_past_the_memory_cap_and_remembers_it() {
        let mut l = Limits {
            max_memory_bytes: 1 << 20,
            ..Limits::default()
        }
        .limiter();
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert_eq!(l.memory_denied, None);
        assert!(!l.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert_eq!(l.memory_denied, Some(2 << 20));
        // Only allowed growth counts, summed over the memories.
        assert_eq!(l.memory_bytes, 1 << 20);
        assert!(l.memory_growing(0, 4096, None).unwrap());
        assert_eq!(l.memory_bytes, (1 << 20) + 4096);
    }

    #[test]
    fn limiter_respects_the_table_cap_and_the_module_maximum() {
        let mut l = Limits {
            max_table_elements: 10,
            ..Limits::default()
        }
        .limiter();
        assert!(l.table_growing(0, 10, None).unwrap());
        assert!(!l.table_growing(0, 11, None).unwrap());
        assert!(!l.table_growing(0, 5, Some(4)).unwrap());
        assert_eq!(l.table_elements, 10);
    }

    #[test]
    fn default_callback_timeout_is_100ms() {
        assert_eq!(
            Limits::default().callback_timeout,
            Some(Duration::from_millis(100))
        );
    }
}
