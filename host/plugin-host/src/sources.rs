//! The sources of one plugin instance: a [`SourceTable`] keyed by guest
//! source id, whose entries are a [`Source`] (one variant per kind, holding
//! what that kind needs) in an explicit [`Status`]:
//!
//! ```text
//! add ──► Pending ──(Op::Add applied)──► Live { enabled } ──(remove)──► Removed ──(Op::Remove)──► gone
//!            │                              ▲      │
//!            └──(remove)──► Removed         └──────┘ enable / disable (applied with the ops)
//! ```
//!
//! The table owns every transition and the checks that go with it. Guest
//! calls (`host-loop`, `io`) use the checked ones, which fail with the WIT
//! error the guest gets (unknown or removed ids, the wrong kind, the source
//! limit); they change the table at once only where the guest must see it at
//! once (adding, removing), and otherwise queue an `Op`. The runtime applies
//! the queued ops and the `dispatch` results after the export returns
//! through the apply-time transitions (`registered`, `set_enabled`,
//! `rearm_timer`, `forget`, ...), which hand it the loop tokens to act on.

use std::sync::Arc;
use std::time::Instant;

use callop::RegistrationToken;
use callop::ping::PingSource;
use callop::signals::Signal;
use rustc_hash::FxHashMap;

use crate::bindings::callop::plugin::types::{Error as WitError, ErrorCode, Event, EventKind};
use crate::io::IoReg;
use crate::mailbox::{Mailbox, MailboxSource};
use crate::state::{Shared, wit_err};

/// A source id as seen by the guest.
pub(crate) type SourceId = u64;

/// One source of a plugin: its kind and what that kind needs.
pub(crate) enum Source {
    /// A timer and its next deadline (the one the guest sees when it fires).
    Timer {
        /// When it fires next.
        deadline: Instant,
    },
    /// An idle: it runs once, then is gone.
    Idle,
    /// A ping source.
    Ping {
        /// Registry name (`inst/name`) of a named ping.
        name: Option<String>,
        /// Its loop source, until `Op::Add` registers it. A named ping the
        /// new version of a reloaded plugin adopted has none until the
        /// reload's commit hands the old version's over
        /// ([`adopt_ping_source`](SourceTable::adopt_ping_source)).
        source: Option<PingSource>,
    },
    /// A channel the plugin opened.
    Channel {
        /// Registry name (`inst/name`).
        full_name: String,
        /// Its mailbox slot.
        slot: Arc<Mailbox>,
        /// Its loop source, until `Op::Add` registers it.
        source: Option<MailboxSource>,
    },
    /// A registered I/O object (its object, interest and mode).
    Io(IoReg),
    /// A signal subscription (its signals, each once).
    Signals(Vec<Signal>),
}

impl Source {
    /// The kind's name, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Source::Timer { .. } => "timer",
            Source::Idle => "idle",
            Source::Ping { .. } => "ping",
            Source::Channel { .. } => "channel",
            Source::Io(_) => "I/O registration",
            Source::Signals(_) => "signal subscription",
        }
    }
}

/// Where a source is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Added by the guest; its queued `Op::Add` is not applied yet.
    Pending,
    /// Registered. `token` is its loop source: `None` for the kinds without
    /// one of their own (idles, signal subscriptions), for a channel whose
    /// loop source ended with its `closed` event and for a named ping whose
    /// loop source went to the instance that replaced this one (a reload). `enabled` is `false` after
    /// a disable (its loop source, if any, is disabled too).
    Live {
        /// Its loop registration.
        token: Option<RegistrationToken>,
        /// Whether it is enabled.
        enabled: bool,
    },
    /// Removed by the guest (its names are released at once); its loop
    /// source goes when the queued `Op::Remove` is applied.
    Removed {
        /// The loop registration still to remove.
        token: Option<RegistrationToken>,
    },
}

impl Status {
    fn token(self) -> Option<RegistrationToken> {
        match self {
            Status::Pending => None,
            Status::Live { token, .. } | Status::Removed { token } => token,
        }
    }
}

/// One entry of a [`SourceTable`].
struct Entry {
    status: Status,
    source: Source,
}

/// A guest change of a source that is checked at once and applied later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// `host-loop.enable`.
    Enable,
    /// `host-loop.disable`.
    Disable,
    /// `host-loop.update`.
    Update,
}

/// The sources of one plugin instance, keyed by guest source id.
pub(crate) struct SourceTable {
    shared: Arc<Shared>,
    /// Most sources not (being) removed (`Limits::max_sources`).
    max: usize,
    entries: FxHashMap<SourceId, Entry>,
    next_id: SourceId,
    /// Entries in [`Status::Removed`] (so that counting live sources is
    /// O(1): a registration storm must not cost O(n) per call).
    removed: usize,
    /// The instance's channel and ping names went to its successor (a
    /// reload): removing its sources no longer releases them.
    handed_over: bool,
}

fn no_source(id: SourceId) -> WitError {
    wit_err(
        ErrorCode::InvalidSource,
        format!("no source {id} in this plugin"),
    )
}

impl SourceTable {
    /// An empty table of at most `max` live sources, whose names live in
    /// `shared`'s registry.
    pub fn new(shared: Arc<Shared>, max: usize) -> Self {
        SourceTable {
            shared,
            max,
            entries: FxHashMap::default(),
            next_id: 1,
            removed: 0,
            handed_over: false,
        }
    }

    /// A reload committed: the names of this instance's channels and named
    /// pings now belong to the new instance, so removing this instance's
    /// sources (e.g. in its `shutdown`) leaves them alone.
    pub fn hand_over_names(&mut self) {
        self.handed_over = true;
    }

    /// Number of sources that are not (being) removed.
    pub fn live_count(&self) -> usize {
        self.entries.len() - self.removed
    }

    // ------------------------------------------------- checked (guest calls)

    /// Checks that one more source is within the source limit.
    pub fn check_room(&self) -> Result<(), WitError> {
        if self.live_count() >= self.max {
            return Err(wit_err(
                ErrorCode::LimitExceeded,
                format!(
                    "at most {} sources per plugin (--max-sources / limits.max_sources)",
                    self.max
                ),
            ));
        }
        Ok(())
    }

    /// Adds a pending source after checking the source limit.
    pub fn add(&mut self, source: Source) -> Result<SourceId, WitError> {
        self.check_room()?;
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(
            id,
            Entry {
                status: Status::Pending,
                source,
            },
        );
        Ok(id)
    }

    /// Undoes an [`add`](Self::add) whose set-up failed before anything of
    /// it was published (its names are left alone).
    pub fn discard(&mut self, id: SourceId) {
        if let Some(e) = self.entries.remove(&id)
            && matches!(e.status, Status::Removed { .. })
        {
            self.removed -= 1;
        }
    }

    /// A source that is not (being) removed.
    fn live_entry(&mut self, id: SourceId) -> Result<&mut Entry, WitError> {
        live_entry(&mut self.entries, id)
    }

    /// Checks a guest `enable`/`disable`/`update` of `id` (the change itself
    /// is queued and applied later).
    pub fn check(&mut self, id: SourceId, change: Change) -> Result<(), WitError> {
        let e = self.live_entry(id)?;
        if matches!(e.source, Source::Idle) {
            let message = match change {
                Change::Enable => "idles cannot be enabled or disabled",
                Change::Disable => "an idle cannot be disabled; remove it instead",
                Change::Update => "idles cannot be updated",
            };
            return Err(wit_err(ErrorCode::WrongKind, message));
        }
        Ok(())
    }

    /// The I/O registration of source `id`, to change its interest.
    pub fn io_mut(&mut self, id: SourceId) -> Result<&mut IoReg, WitError> {
        match &mut self.live_entry(id)?.source {
            Source::Io(reg) => Ok(reg),
            _ => Err(wit_err(
                ErrorCode::WrongKind,
                format!("source {id} is not an I/O registration"),
            )),
        }
    }

    /// A guest removal: marks `id` removed and releases its ping or channel
    /// name at once (a new one of the same name may then be created). Its
    /// loop source goes when the queued `Op::Remove` is applied
    /// ([`forget`](Self::forget)).
    pub fn remove(&mut self, id: SourceId) -> Result<(), WitError> {
        let e = live_entry(&mut self.entries, id)?;
        e.status = Status::Removed {
            token: e.status.token(),
        };
        if !self.handed_over {
            release(&self.shared, &e.source);
        }
        self.removed += 1;
        Ok(())
    }

    // ----------------------------------------------------------- apply time

    /// Whether `id` exists and is not (being) removed.
    pub fn is_live(&self, id: SourceId) -> bool {
        self.entries
            .get(&id)
            .is_some_and(|e| !matches!(e.status, Status::Removed { .. }))
    }

    /// The source of a pending `id`, to register it (`None` if it was
    /// removed meanwhile, or is not pending).
    pub fn pending_mut(&mut self, id: SourceId) -> Option<&mut Source> {
        self.entries
            .get_mut(&id)
            .filter(|e| e.status == Status::Pending)
            .map(|e| &mut e.source)
    }

    /// The I/O registration of a pending or live `id`, to (re-)register it
    /// in the loop, with the loop registration it replaces, now taken out.
    pub fn io_to_register(
        &mut self,
        id: SourceId,
    ) -> Option<(&mut IoReg, Option<RegistrationToken>)> {
        let e = self.entries.get_mut(&id)?;
        let old = match &mut e.status {
            Status::Pending => None,
            Status::Live { token, .. } => token.take(),
            Status::Removed { .. } => return None,
        };
        match &mut e.source {
            Source::Io(reg) => Some((reg, old)),
            _ => None,
        }
    }

    /// Records that `id` is registered (in the loop as `token`, or without
    /// a loop source of its own). Returns whether the guest had disabled it
    /// (a re-registration): the new registration is then to be disabled.
    pub fn registered(&mut self, id: SourceId, token: Option<RegistrationToken>) -> bool {
        let Some(e) = self.entries.get_mut(&id) else {
            return false;
        };
        let was_enabled = match e.status {
            Status::Live { enabled, .. } => enabled,
            Status::Pending => true,
            Status::Removed { .. } => return false,
        };
        e.status = Status::Live {
            token,
            enabled: true,
        };
        !was_enabled
    }

    /// Enables or disables a live `id`, calling `in_loop` on its loop
    /// registration first if it has one; a failure there leaves it as it
    /// was. Nothing happens to a source already so, pending or removed.
    pub fn set_enabled(
        &mut self,
        id: SourceId,
        on: bool,
        in_loop: impl FnOnce(&RegistrationToken) -> callop::Result<()>,
    ) -> callop::Result<()> {
        if let Some(Entry {
            status: Status::Live { token, enabled },
            ..
        }) = self.entries.get_mut(&id)
            && *enabled != on
        {
            if let Some(t) = token {
                in_loop(t)?;
            }
            *enabled = on;
        }
        Ok(())
    }

    /// The loop registration of a live, enabled `id` and its source (to
    /// update or re-arm it).
    pub fn armed(&self, id: SourceId) -> Option<(RegistrationToken, &Source)> {
        match self.entries.get(&id)? {
            Entry {
                status:
                    Status::Live {
                        token: Some(t),
                        enabled: true,
                    },
                source,
            } => Some((*t, source)),
            _ => None,
        }
    }

    /// Sets the next deadline of the live timer `id` (after it fired).
    /// Returns its loop registration, to re-arm in place, and whether it is
    /// enabled (a disabled timer keeps the deadline for its next enable).
    pub fn rearm_timer(&mut self, id: SourceId, at: Instant) -> Option<(RegistrationToken, bool)> {
        match self.entries.get_mut(&id)? {
            Entry {
                status:
                    Status::Live {
                        token: Some(t),
                        enabled,
                    },
                source: Source::Timer { deadline },
            } => {
                *deadline = at;
                Some((*t, *enabled))
            }
            _ => None,
        }
    }

    /// Drops `id` (whatever its status), releasing its names if the guest
    /// did not remove it first. Returns its loop registration, to remove.
    pub fn forget(&mut self, id: SourceId) -> Option<RegistrationToken> {
        let e = self.entries.remove(&id)?;
        if matches!(e.status, Status::Removed { .. }) {
            self.removed -= 1;
        } else if !self.handed_over {
            release(&self.shared, &e.source);
        }
        e.status.token()
    }

    /// Keeps the events of sources that are still live (a removal queued
    /// meanwhile wins), noting that the loop dropped a channel's source
    /// after its `closed` event.
    pub fn retain_deliverable(&mut self, events: &mut Vec<Event>) {
        events.retain(|e| self.is_live(e.source));
        for e in events.iter() {
            if matches!(e.kind, EventKind::Closed)
                && let Some(Entry {
                    status: Status::Live { token, .. },
                    ..
                }) = self.entries.get_mut(&e.source)
            {
                *token = None;
            }
        }
    }

    /// The kind name of `id`, for messages.
    pub fn kind_name(&self, id: SourceId) -> &'static str {
        self.entries
            .get(&id)
            .map_or("source", |e| e.source.kind_name())
    }

    /// The pending named ping `full` that still waits for its loop source:
    /// this instance, the new version of a plugin being reloaded, adopted
    /// the old version's ping of that name.
    pub fn awaiting_ping_source(&self, full: &str) -> Option<SourceId> {
        self.entries.iter().find_map(|(id, e)| match e {
            Entry {
                status: Status::Pending,
                source:
                    Source::Ping {
                        name: Some(n),
                        source: None,
                    },
            } if n == full => Some(*id),
            _ => None,
        })
    }

    /// Gives the pending ping `id` the loop source handed over to it (see
    /// [`awaiting_ping_source`](Self::awaiting_ping_source)); gives the
    /// source back if `id` does not wait for one.
    pub fn adopt_ping_source(
        &mut self,
        id: SourceId,
        source: PingSource,
    ) -> Result<(), PingSource> {
        match self.entries.get_mut(&id) {
            Some(Entry {
                status: Status::Pending,
                source:
                    Source::Ping {
                        source: slot @ None,
                        ..
                    },
            }) => {
                *slot = Some(source);
                Ok(())
            }
            _ => Err(source),
        }
    }

    /// A reload committed and the new instance adopted named ping `full`:
    /// takes the loop registration of this (old) instance's ping of that
    /// name, to hand it over. The ping stays live here without one, so
    /// that removing it (e.g. in the old instance's `shutdown`) leaves the
    /// registration alone.
    pub fn give_up_ping(&mut self, full: &str) -> Option<RegistrationToken> {
        self.entries.values_mut().find_map(|e| match e {
            Entry {
                status: Status::Live { token, .. },
                source: Source::Ping { name: Some(n), .. },
            } if n == full => token.take(),
            _ => None,
        })
    }

    /// Live, enabled signal subscriptions to `signal`.
    pub fn subscribers(&self, signal: Signal) -> impl Iterator<Item = SourceId> + '_ {
        self.entries.iter().filter_map(move |(id, e)| match e {
            Entry {
                status: Status::Live { enabled: true, .. },
                source: Source::Signals(list),
            } if list.contains(&signal) => Some(*id),
            _ => None,
        })
    }

    /// Every loop registration the table holds (to remove them all).
    pub fn tokens(&self) -> impl Iterator<Item = RegistrationToken> + '_ {
        self.entries.values().filter_map(|e| e.status.token())
    }

    /// The sources not (being) removed, by kind, and the messages (and their
    /// bytes) waiting in the channels among them (for [`crate::stats`]).
    pub fn census(&self) -> (crate::stats::SourceCounts, u64, u64) {
        let mut c = crate::stats::SourceCounts::default();
        let (mut msgs, mut bytes) = (0, 0);
        for e in self.entries.values() {
            if matches!(e.status, Status::Removed { .. }) {
                continue;
            }
            match &e.source {
                Source::Timer { .. } => c.timer += 1,
                Source::Idle => c.idle += 1,
                Source::Ping { .. } => c.ping += 1,
                Source::Channel { slot, .. } => {
                    c.channel += 1;
                    let (m, b) = slot.queued_totals();
                    msgs += m;
                    bytes += b;
                }
                Source::Io(_) => c.io += 1,
                Source::Signals(_) => c.signals += 1,
            }
        }
        (c, msgs, bytes)
    }

    /// The loop registrations of the live sources, by source id.
    pub fn registrations(&self) -> Vec<(SourceId, RegistrationToken)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .filter_map(|(id, e)| match e.status {
                Status::Live { token: Some(t), .. } => Some((*id, t)),
                _ => None,
            })
            .collect();
        v.sort_unstable_by_key(|(id, _)| *id);
        v
    }

    /// Counts the sources not (being) removed the slow way (to check
    /// [`live_count`](Self::live_count)).
    #[cfg(test)]
    pub fn recount(&self) -> usize {
        self.entries
            .values()
            .filter(|e| !matches!(e.status, Status::Removed { .. }))
            .count()
    }

    /// The status of `id`.
    #[cfg(test)]
    pub fn status(&self, id: SourceId) -> Option<Status> {
        self.entries.get(&id).map(|e| e.status)
    }
}

/// Entry `id` of `entries` if it is not (being) removed.
fn live_entry(
    entries: &mut FxHashMap<SourceId, Entry>,
    id: SourceId,
) -> Result<&mut Entry, WitError> {
    entries
        .get_mut(&id)
        .filter(|e| !matches!(e.status, Status::Removed { .. }))
        .ok_or_else(|| no_source(id))
}

/// Releases the registry name of a ping or channel and closes a channel's
/// slot.
fn release(shared: &Shared, source: &Source) {
    match source {
        Source::Ping {
            name: Some(full), ..
        } => {
            shared.registry().pings.remove(full);
        }
        Source::Channel {
            full_name, slot, ..
        } => {
            let mut reg = shared.registry();
            if reg
                .channels
                .get(full_name)
                .is_some_and(|cur| Arc::ptr_eq(cur, slot))
            {
                reg.channels.remove(full_name);
            }
            drop(reg);
            slot.mark_closed();
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::policy::Policy;
    use callop::EventLoop;
    use callop::timer::{TimeoutAction, Timer};

    fn table(max: usize) -> SourceTable {
        let shared = Arc::new(Shared::new(Policy::default(), Limits::default()));
        SourceTable::new(shared, max)
    }

    /// A table holding the channel `p/in` and the named ping `p/go`, both
    /// in the registry: (table, the channel's mailbox, channel id, ping id).
    fn table_with_named_channel_and_ping() -> (SourceTable, Arc<Mailbox>, SourceId, SourceId) {
        let mut t = table(8);
        let slot = Mailbox::new("p/in".into());
        t.shared
            .registry()
            .channels
            .insert("p/in".into(), slot.clone());
        t.shared
            .registry()
            .pings
            .insert("p/go".into(), callop::ping::make_ping().unwrap().0);
        let ch = t
            .add(Source::Channel {
                full_name: "p/in".into(),
                slot: slot.clone(),
                source: None,
            })
            .unwrap();
        let ping = t
            .add(Source::Ping {
                name: Some("p/go".into()),
                source: None,
            })
            .unwrap();
        (t, slot, ch, ping)
    }

    /// A real loop registration (a timer that never fires).
    fn token(ev: &EventLoop<'static, ()>) -> RegistrationToken {
        ev.handle()
            .insert_source(
                Timer::from_duration(Duration::from_secs(3600)),
                |_, _, _| TimeoutAction::Drop,
            )
            .unwrap()
    }

    use std::time::Duration;

    /// Adds a (pending) timer.
    fn add_timer(t: &mut SourceTable) -> SourceId {
        t.add(Source::Timer {
            deadline: Instant::now(),
        })
        .unwrap()
    }

    #[test]
    fn add_is_pending_until_registered_then_live_and_enabled() {
        let ev = EventLoop::try_new().unwrap();
        let mut t = table(8);
        let id = add_timer(&mut t);
        assert_eq!(t.status(id), Some(Status::Pending));
        assert!(t.pending_mut(id).is_some());
        let tok = token(&ev);
        assert!(!t.registered(id, Some(tok)), "a new source is enabled");
        assert_eq!(
            t.status(id),
            Some(Status::Live {
                token: Some(tok),
                enabled: true
            })
        );
        assert!(t.pending_mut(id).is_none(), "registered only once");
        assert_eq!(t.registrations(), vec![(id, tok)]);
    }

    #[test]
    fn the_source_limit_counts_sources_not_removed() {
        let mut t = table(2);
        let a = t.add(Source::Idle).unwrap();
        t.add(Source::Idle).unwrap();
        let e = t.add(Source::Idle).unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        t.remove(a).unwrap();
        assert_eq!(t.live_count(), 1);
        assert_eq!(t.recount(), 1);
        t.add(Source::Idle).unwrap();
        assert_eq!(t.forget(a), None);
        assert_eq!(t.live_count(), 2);
        assert_eq!(t.recount(), 2);
    }

    #[test]
    fn unknown_removed_and_idle_ids_get_the_wit_errors() {
        let mut t = table(8);
        assert_eq!(
            t.check(42, Change::Enable).unwrap_err().code,
            ErrorCode::InvalidSource
        );
        let idle = t.add(Source::Idle).unwrap();
        for c in [Change::Enable, Change::Disable, Change::Update] {
            assert_eq!(t.check(idle, c).unwrap_err().code, ErrorCode::WrongKind);
        }
        assert!(matches!(t.io_mut(idle), Err(e) if e.code == ErrorCode::WrongKind));
        t.remove(idle).unwrap();
        assert_eq!(t.remove(idle).unwrap_err().code, ErrorCode::InvalidSource);
        assert_eq!(
            t.check(idle, Change::Disable).unwrap_err().code,
            ErrorCode::InvalidSource
        );
        assert!(!t.is_live(idle));
        assert!(
            t.pending_mut(idle).is_none(),
            "a removed source is not registered"
        );
    }

    #[test]
    fn disabling_acts_on_the_loop_first_and_only_on_a_change() {
        let ev = EventLoop::try_new().unwrap();
        let mut t = table(8);
        let id = add_timer(&mut t);
        let tok = token(&ev);
        t.registered(id, Some(tok));
        let mut calls = 0;
        t.set_enabled(id, false, |_| {
            calls += 1;
            Ok(())
        })
        .unwrap();
        t.set_enabled(id, false, |_| {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, 1, "disabling a disabled source does nothing");
        assert!(t.armed(id).is_none(), "a disabled source is not armed");
        let failed = t.set_enabled(id, true, |_| Err(callop::Error::InvalidToken));
        assert!(failed.is_err());
        assert!(t.armed(id).is_none(), "a failed enable leaves it disabled");
        // Re-registered while disabled: the new registration is to be disabled.
        assert!(t.registered(id, Some(tok)));
    }

    #[test]
    fn a_fired_timer_is_rearmed_on_its_registration() {
        let ev = EventLoop::try_new().unwrap();
        let mut t = table(8);
        let id = add_timer(&mut t);
        assert_eq!(t.rearm_timer(id, Instant::now()), None, "pending");
        let tok = token(&ev);
        t.registered(id, Some(tok));
        let next = Instant::now() + Duration::from_secs(1);
        assert_eq!(t.rearm_timer(id, next), Some((tok, true)));
        assert!(matches!(t.armed(id), Some((_, Source::Timer { deadline })) if *deadline == next));
        t.set_enabled(id, false, |_| Ok(())).unwrap();
        assert_eq!(t.rearm_timer(id, next), Some((tok, false)));
    }

    #[test]
    fn removing_releases_names_at_once_and_forget_hands_back_the_token() {
        let ev = EventLoop::try_new().unwrap();
        let (mut t, slot, ch, ping) = table_with_named_channel_and_ping();
        let tok = token(&ev);
        t.registered(ch, Some(tok));
        t.remove(ch).unwrap();
        assert!(slot.is_closed());
        assert!(!t.shared.registry().channels.contains_key("p/in"));
        assert_eq!(t.tokens().collect::<Vec<_>>(), vec![tok], "still to remove");
        assert!(t.registrations().is_empty(), "no live registration");
        assert_eq!(t.forget(ch), Some(tok));
        assert_eq!(t.tokens().count(), 0);
        // Forgetting a source the guest did not remove releases it too.
        assert_eq!(t.forget(ping), None);
        assert!(!t.shared.registry().pings.contains_key("p/go"));
    }

    #[test]
    fn after_a_hand_over_removing_leaves_the_names_alone() {
        let ev = EventLoop::try_new().unwrap();
        let (mut t, slot, ch, ping) = table_with_named_channel_and_ping();
        t.registered(ch, Some(token(&ev)));
        t.hand_over_names();
        // The old instance of a reload removes everything in its shutdown:
        // the new instance's channel and ping stay.
        t.remove(ch).unwrap();
        assert!(t.forget(ch).is_some());
        assert_eq!(t.forget(ping), None);
        assert!(!slot.is_closed());
        let reg = t.shared.registry();
        assert!(reg.channels.contains_key("p/in"));
        assert!(reg.pings.contains_key("p/go"));
    }

    #[test]
    fn a_named_ping_is_handed_over_from_the_old_table_to_the_new() {
        let ev = EventLoop::try_new().unwrap();
        let (mut old, _slot, _ch, ping) = table_with_named_channel_and_ping();
        let tok = token(&ev);
        old.registered(ping, Some(tok));
        let mut new = SourceTable::new(old.shared.clone(), 8);
        let named = |source| Source::Ping {
            name: Some("p/go".into()),
            source,
        };
        // A ping made afresh does not wait for a source.
        let fresh = new
            .add(named(Some(callop::ping::make_ping().unwrap().1)))
            .unwrap();
        assert_eq!(new.awaiting_ping_source("p/go"), None);
        new.discard(fresh);
        // One that adopted the old instance's ping does.
        let id = new.add(named(None)).unwrap();
        assert_eq!(new.awaiting_ping_source("p/go"), Some(id));
        assert_eq!(new.awaiting_ping_source("p/other"), None);
        old.hand_over_names();
        assert_eq!(old.give_up_ping("p/go"), Some(tok));
        assert_eq!(old.give_up_ping("p/go"), None, "given up once");
        assert!(old.is_live(ping), "the old ping stays, unregistered");
        assert_eq!(old.tokens().count(), 0, "nothing of it to remove");
        assert_eq!(old.forget(ping), None);
        let (_, source) = callop::ping::make_ping().unwrap();
        assert!(new.adopt_ping_source(id, source).is_ok());
        assert_eq!(new.awaiting_ping_source("p/go"), None);
        let (_, source) = callop::ping::make_ping().unwrap();
        assert!(new.adopt_ping_source(id, source).is_err(), "it has one");
        assert!(matches!(
            new.pending_mut(id),
            Some(Source::Ping {
                source: Some(_),
                ..
            })
        ));
        assert!(new.shared.registry().pings.contains_key("p/go"));
    }

    #[test]
    fn a_closed_channel_loses_its_registration_and_removed_events_are_dropped() {
        use crate::bindings::callop::plugin::types::Event;
        let ev = EventLoop::try_new().unwrap();
        let mut t = table(8);
        let slot = Mailbox::new("p/c".into());
        let ch = t
            .add(Source::Channel {
                full_name: "p/c".into(),
                slot,
                source: None,
            })
            .unwrap();
        let idle = t.add(Source::Idle).unwrap();
        t.registered(ch, Some(token(&ev)));
        t.registered(idle, None);
        t.remove(idle).unwrap();
        let mut events = vec![
            Event {
                source: idle,
                kind: EventKind::Idle,
            },
            Event {
                source: ch,
                kind: EventKind::Closed,
            },
        ];
        t.retain_deliverable(&mut events);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].source, ch);
        assert_eq!(t.forget(ch), None, "the loop dropped it already");
    }

    #[test]
    fn subscribers_are_live_enabled_subscriptions_to_the_signal() {
        let mut t = table(8);
        let a = t.add(Source::Signals(vec![Signal::SIGHUP])).unwrap();
        let b = t
            .add(Source::Signals(vec![Signal::SIGHUP, Signal::SIGUSR1]))
            .unwrap();
        let pending = t.add(Source::Signals(vec![Signal::SIGHUP])).unwrap();
        t.registered(a, None);
        t.registered(b, None);
        let mut ids: Vec<_> = t.subscribers(Signal::SIGHUP).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![a, b], "not the pending {pending}");
        t.set_enabled(a, false, |_| unreachable!("no loop source"))
            .unwrap();
        assert_eq!(t.subscribers(Signal::SIGHUP).collect::<Vec<_>>(), vec![b]);
        assert_eq!(t.subscribers(Signal::SIGUSR1).collect::<Vec<_>>(), vec![b]);
    }
}
