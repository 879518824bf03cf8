//! The host's table of per-instance counters (see [`crate::stats`]): one
//! entry per instance id, kept across its restarts and (a bounded number
//! of them) after it ended, and the snapshot [`Host::stats`] returns.
//!
//! [`Host::stats`]: super::Host::stats

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use callop::timer::{TimeoutAction, Timer};

use super::{HostError, HostInner, Live, PluginId};
use crate::stats::{Counters, Gauges, HostStats, KEPT_ENDED, RunTotals};

/// The counters of every instance, by id (ids grow: load order).
#[derive(Default)]
pub(super) struct StatsTable {
    entries: BTreeMap<PluginId, Entry>,
    /// How many entries are of ended instances.
    ended: usize,
}

struct Entry {
    name: Arc<str>,
    counters: Rc<Counters>,
    ended: bool,
}

impl StatsTable {
    /// The counters of instance `id` named `name`: its existing ones (a
    /// restart, a reload), or new ones.
    pub(super) fn track(
        &mut self,
        id: PluginId,
        name: &Arc<str>,
        c: &Rc<Counters>,
    ) -> Rc<Counters> {
        if let Some(e) = self.entries.get_mut(&id) {
            if e.ended {
                e.ended = false;
                self.ended -= 1;
            }
            return e.counters.clone();
        }
        self.entries.insert(
            id,
            Entry {
                name: name.clone(),
                counters: c.clone(),
                ended: false,
            },
        );
        c.clone()
    }

    /// The counters of `id`, if it is tracked.
    pub(super) fn counters(&self, id: PluginId) -> Option<Rc<Counters>> {
        self.entries.get(&id).map(|e| e.counters.clone())
    }

    /// Instance `id` ended (it may still be restarted: then it is tracked
    /// again under the same counters). Forgets the oldest ended instances
    /// past [`KEPT_ENDED`].
    pub(super) fn ended(&mut self, id: PluginId) {
        if let Some(e) = self.entries.get_mut(&id)
            && !e.ended
        {
            e.ended = true;
            self.ended += 1;
        }
        while self.ended > KEPT_ENDED {
            let oldest = self
                .entries
                .iter()
                .find(|(_, e)| e.ended)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => {
                    self.entries.remove(&id);
                    self.ended -= 1;
                }
                None => break,
            }
        }
    }
}

impl Live {
    /// What this run measured outside the counters.
    pub(super) fn run_totals(&self) -> RunTotals {
        RunTotals {
            cpu_ns: self.deadline.cpu_ns(),
            blocked_ns: self.deadline.blocked_ns(),
        }
    }

    /// This run's gauges now.
    fn gauges(&self) -> Gauges {
        let st = self.store.data();
        let (sources, queued_messages, queued_bytes) = st.sources.census();
        Gauges {
            memory_bytes: st.store_limits.memory_bytes as u64,
            table_elements: st.store_limits.table_elements as u64,
            sources,
            queued_messages,
            queued_bytes,
            io_objects: st.run_stats.io_objects,
        }
    }

    /// Adds this run's measures to its counters (the run ends).
    pub(super) fn fold_stats(&self) {
        self.counters.fold(self.run_totals());
    }
}

impl<'l, Data: 'l> HostInner<'l, Data> {
    /// See [`Host::stats`](super::Host::stats).
    pub(super) fn stats(&self) -> HostStats {
        let cpu_measured = self.ticker.is_some();
        let table = self.stats.borrow();
        let plugins = self.plugins.borrow();
        let out: Vec<_> = table
            .entries
            .iter()
            .map(|(id, e)| {
                // A plugin inside its own call (stats asked for from a host
                // call) shows its counters without the gauges.
                let live = plugins.get(id).and_then(|p| {
                    let l = p.live.try_borrow().ok()?;
                    l.as_ref().map(|l| (l.run_totals(), l.gauges()))
                });
                e.counters.snapshot(*id, &e.name, live, cpu_measured)
            })
            .collect();
        let mut plugins: Vec<_> = out;
        if self.is_threaded() {
            // The other loop threads' instances (ids are host-wide).
            for s in self.ask_all(|h| h.stats()) {
                plugins.extend(s.plugins);
            }
            plugins.sort_by_key(|p| p.id);
        }
        HostStats {
            plugins,
            cpu_measured,
        }
    }

    /// See [`Host::publish_stats`](super::Host::publish_stats).
    pub(super) fn publish_stats(
        self: &Rc<Self>,
        period: Duration,
        mut publish: impl FnMut(HostStats) + 'l,
    ) -> Result<(), HostError> {
        let period = period.max(Duration::from_millis(1));
        publish(self.stats());
        let w = Rc::downgrade(self);
        let t = self
            .handle
            .insert_source(Timer::from_duration(period), move |_, _, _| {
                match w.upgrade() {
                    Some(inner) => {
                        publish(inner.stats());
                        TimeoutAction::ToDuration(period)
                    }
                    None => TimeoutAction::Drop,
                }
            })
            .map_err(|e| HostError::Loop(e.error.to_string()))?;
        self.aux_tokens.borrow_mut().push(t);
        Ok(())
    }

    /// Counts a reload of instance `id` (for [`PluginStats::reloads`]; the
    /// hook of the reload, which keeps the instance's id and counters).
    ///
    /// [`PluginStats::reloads`]: crate::stats::PluginStats::reloads
    pub(crate) fn note_reload(&self, id: PluginId) {
        if let Some(c) = self.stats.borrow().counters(id) {
            c.count_reload();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_keeps_its_counters_across_runs_and_ended_ones_are_bounded() {
        let mut t = StatsTable::default();
        let name: Arc<str> = Arc::from("p");
        let first = t.track(PluginId(1), &name, &Rc::default());
        first.count_restart();
        t.ended(PluginId(1));
        // A restart: the same counters.
        let again = t.track(PluginId(1), &name, &Rc::default());
        assert!(Rc::ptr_eq(&first, &again));
        for i in 2..(KEPT_ENDED as u64 + 10) {
            t.track(PluginId(i), &name, &Rc::default());
            t.ended(PluginId(i));
        }
        assert_eq!(t.ended, KEPT_ENDED);
        // The live one is kept, the oldest ended ones went.
        assert!(t.counters(PluginId(1)).is_some());
        assert!(t.counters(PluginId(2)).is_none());
        assert_eq!(t.entries.len(), KEPT_ENDED + 1);
    }
}
