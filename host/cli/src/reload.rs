//! Operator reloads of `callop-host` (see "Reload" in the README):
//!
//! * `--watch`: a timer polls each plugin file's modification time and size
//!   every [`POLL`]; a change that stayed the same for one more poll (an
//!   editor's or a compiler's writes are over) reloads that plugin;
//! * SIGHUP, when no plugin was granted it: reloads every plugin from its
//!   path. (A plugin granted SIGHUP gets it as a signal event instead; the
//!   host then never reloads on SIGHUP.)
//!
//! The loop never waits for a file: the poll is a `stat` per plugin, the
//! read and compile run on a thread of their own and hand the checked
//! component back through a channel of the loop, and only then is the
//! plugin reloaded ([`Host::reload`]; a file that does not load, or a new
//! version that fails to start, leaves the old version running, and the
//! failure is logged). During a SIGINT/SIGTERM shutdown reloads are refused
//! (logged, nothing changes).

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use callop::LoopHandle;
use callop::channel::{Channel, Event, Sender};
use callop::signals::Signal;
use callop::timer::{TimeoutAction, Timer};
use callop_plugin_host::{Host, PluginComponent, PluginEngine, PluginId, ShutdownPhase};

/// How often `--watch` looks at the files.
pub const POLL: Duration = Duration::from_millis(200);

/// A file's modification time and size.
type Stamp = (Option<SystemTime>, u64);

fn stamp(path: &PathBuf) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok(), m.len()))
}

/// One plugin of the command line.
struct Entry {
    id: PluginId,
    name: String,
    path: PathBuf,
    /// The file as it was when last loaded (or tried).
    loaded: Option<Stamp>,
    /// The file at the previous poll (a change is acted on once stable).
    seen: Option<Stamp>,
    /// A compile of it is running.
    compiling: bool,
}

/// A compiled file coming back from the compile thread.
type Compiled = (usize, Result<PluginComponent, String>);

struct State {
    entries: Vec<Entry>,
    /// Plugins to reload (indexes), asked for by the watch or SIGHUP.
    requests: Vec<usize>,
    /// Components compiled, to reload with.
    compiled: Vec<Compiled>,
}

/// The reload controls of one run; see the module docs.
pub struct Reloader {
    state: Rc<RefCell<State>>,
    engine: PluginEngine,
    tx: Sender<Compiled>,
    sighup: bool,
}

impl Reloader {
    /// Sets up the sources on `handle`: the compile results' channel and,
    /// with `watch`, the poll timer. `sighup`: reload every plugin on an
    /// unclaimed SIGHUP.
    pub fn new(
        handle: &LoopHandle<'static, ()>,
        engine: PluginEngine,
        plugins: Vec<(PluginId, String, PathBuf)>,
        watch: bool,
        sighup: bool,
    ) -> Result<Reloader, String> {
        let entries = plugins
            .into_iter()
            .map(|(id, name, path)| {
                let s = stamp(&path);
                Entry {
                    id,
                    name,
                    path,
                    loaded: s,
                    seen: s,
                    compiling: false,
                }
            })
            .collect();
        let state = Rc::new(RefCell::new(State {
            entries,
            requests: Vec::new(),
            compiled: Vec::new(),
        }));
        let (tx, rx): (Sender<Compiled>, Channel<Compiled>) = callop::channel::channel();
        let st = Rc::clone(&state);
        handle
            .insert_source(rx, move |ev, _, _| {
                if let Event::Msg(c) = ev {
                    st.borrow_mut().compiled.push(c);
                }
            })
            .map_err(|e| format!("cannot watch compiles: {}", e.error))?;
        if watch {
            let st = Rc::clone(&state);
            handle
                .insert_source(Timer::from_duration(POLL), move |deadline, _, _| {
                    st.borrow_mut().poll();
                    TimeoutAction::ToInstant(deadline + POLL)
                })
                .map_err(|e| format!("cannot watch the plugin files: {}", e.error))?;
            tracing::info!("watching the plugin files (every {POLL:?})");
        }
        Ok(Reloader {
            state,
            engine,
            tx,
            sighup,
        })
    }

    /// The hook for [`SignalShutdown::on_pending`](callop_plugin_host::SignalShutdown::on_pending).
    pub fn hook(self) -> impl FnMut(&Host<'static, ()>, &[Signal], ShutdownPhase) {
        move |host, unclaimed, phase| self.pending(host, unclaimed, phase)
    }

    fn pending(&self, host: &Host<'static, ()>, unclaimed: &[Signal], phase: ShutdownPhase) {
        let mut st = self.state.borrow_mut();
        if self.sighup && unclaimed.contains(&Signal::SIGHUP) {
            tracing::info!("SIGHUP: reloading every plugin");
            let all = 0..st.entries.len();
            st.requests.extend(all);
        }
        let requests = std::mem::take(&mut st.requests);
        let compiled = std::mem::take(&mut st.compiled);
        if phase != ShutdownPhase::Running {
            for i in requests {
                let e = &st.entries[i];
                tracing::warn!(plugin = %e.name, "reload refused: the host is shutting down");
            }
        } else {
            for i in requests {
                self.compile(&mut st.entries[i], i);
            }
        }
        for (i, c) in compiled {
            let e = &mut st.entries[i];
            e.compiling = false;
            let r = match c {
                Ok(c) => host.reload(e.id, &c).map_err(|e| e.to_string()),
                Err(m) => Err(m),
            };
            match r {
                Ok(()) => tracing::info!(plugin = %e.name, "reloaded from {}", e.path.display()),
                Err(m) => tracing::warn!(
                    plugin = %e.name,
                    "reload failed, the running version keeps running: {m}"
                ),
            }
        }
    }

    /// Reads and compiles `e`'s file on a thread of its own.
    fn compile(&self, e: &mut Entry, i: usize) {
        if e.compiling {
            return;
        }
        e.compiling = true;
        e.loaded = stamp(&e.path);
        e.seen = e.loaded;
        let (engine, path, tx) = (self.engine.clone(), e.path.clone(), self.tx.clone());
        let r = std::thread::Builder::new()
            .name("callop-reload".into())
            .spawn(move || {
                let c = engine
                    .read_file(&path)
                    .and_then(|b| engine.load_bytes_named(&b, path.display().to_string()))
                    .map_err(|e| format!("{}: {e}", path.display()));
                let _ = tx.send((i, c));
            });
        if let Err(err) = r {
            e.compiling = false;
            tracing::warn!(plugin = %e.name, "cannot start the compile for a reload: {err}");
        }
    }
}

impl State {
    /// One `--watch` poll: a file whose stamp changed and then stayed the
    /// same for one poll is asked to be reloaded.
    fn poll(&mut self) {
        for (i, e) in self.entries.iter_mut().enumerate() {
            let now = stamp(&e.path);
            if now.is_none() || now == e.loaded || e.compiling {
                e.seen = now;
                continue;
            }
            if now == e.seen {
                tracing::info!(plugin = %e.name, "{} changed", e.path.display());
                self.requests.push(i);
            }
            e.seen = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_acted_on_once_it_is_stable() {
        let dir = std::env::temp_dir().join(format!("callop-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("p.wasm");
        std::fs::write(&f, b"one").unwrap();
        let s = stamp(&f);
        let mut st = State {
            entries: vec![Entry {
                id: PluginId(1),
                name: "p".into(),
                path: f.clone(),
                loaded: s,
                seen: s,
                compiling: false,
            }],
            requests: Vec::new(),
            compiled: Vec::new(),
        };
        st.poll();
        assert!(st.requests.is_empty(), "unchanged");
        std::fs::write(&f, b"two, longer").unwrap();
        st.poll();
        assert!(st.requests.is_empty(), "changed, not yet stable");
        st.poll();
        assert_eq!(st.requests, vec![0], "stable for one poll");
        st.requests.clear();
        std::fs::remove_file(&f).unwrap();
        st.poll();
        st.poll();
        assert!(st.requests.is_empty(), "a missing file is not reloaded");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
