//! [`AppSender`]: the application's handle to a plugin channel.

use std::fmt;
use std::sync::Arc;

use super::host::HostError;
use super::host_memory::Budget;
use super::mailbox::{Mailbox, SendError};

/// Sends messages from the application to a plugin channel
/// (`instance/name`); made by [`Host::sender`](super::Host::sender).
///
/// Messages go straight into the plugin's channel (no forwarding hop): the
/// owner's next loop iteration delivers them. The channel need not be open
/// yet (messages are then buffered). The handle counts as one sender of the
/// channel: when every sender (plugins' and the application's) is dropped,
/// the owner gets a `closed` event. It can be cloned and sent to other
/// threads.
pub struct AppSender {
    slot: Arc<Mailbox>,
    /// The receiving instance's host-memory budget, which pays for the
    /// messages queued for it.
    budget: Arc<Budget>,
}

impl AppSender {
    pub(crate) fn new(slot: Arc<Mailbox>, budget: Arc<Budget>) -> Self {
        slot.add_sender();
        AppSender { slot, budget }
    }

    /// Queues `msg` for the plugin. Fails with [`HostError::Closed`] once
    /// the channel is closed (its owner removed it or ended); the message is
    /// then dropped. The application is trusted: it is not bound by
    /// `Limits::max_queued_messages`; but what it queues is charged to the
    /// receiving instance's host-memory budget
    /// ([`Limits::max_host_memory_bytes`](crate::Limits::max_host_memory_bytes))
    /// until delivered, and a send past it fails with
    /// [`HostError::LimitExceeded`] (the plugin is not reading fast enough;
    /// the message is dropped).
    pub fn send(&self, msg: Vec<u8>) -> Result<(), HostError> {
        self.slot
            .send(msg, usize::MAX, Some(&self.budget))
            .map_err(|e| match e {
                SendError::Closed | SendError::Full => {
                    HostError::Closed(format!("channel `{}` is closed", self.slot.full_name))
                }
                SendError::OverBudget(o) => HostError::LimitExceeded(format!(
                    "cannot queue for `{}`: {o}",
                    self.slot.full_name
                )),
            })
    }

    /// The channel's full name (`instance/name`).
    pub fn target(&self) -> &str {
        &self.slot.full_name
    }
}

impl Clone for AppSender {
    fn clone(&self) -> Self {
        AppSender::new(self.slot.clone(), self.budget.clone())
    }
}

impl Drop for AppSender {
    fn drop(&mut self) {
        self.slot.drop_sender();
    }
}

impl fmt::Debug for AppSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppSender")
            .field("target", &self.slot.full_name)
            .finish()
    }
}
