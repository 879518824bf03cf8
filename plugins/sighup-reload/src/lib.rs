//! `sighup-reload`: reads a configuration file from a granted directory and
//! re-reads it on every SIGHUP.
//!
//! Args: `--config PATH` (guest path, default `/config/app.conf`).
//! Needs `--dir HOST::/config` (read-only is enough) and
//! `--allow-signal HUP`. Prints `sighup-reload: loaded generation N: <first
//! line>` at start and after each SIGHUP; ends on SIGINT/SIGTERM through the
//! host's shutdown.

use callop_guest::signals::{Signal, Signals};
use callop_guest::{fs, LoopHandle, Plugin, PostAction};

struct SighupReload;

/// Plugin state.
pub struct State {
    path: String,
    generation: u64,
    config: String,
}

fn load(st: &mut State) {
    match fs::read_to_string(&st.path) {
        Ok(text) => {
            st.generation += 1;
            st.config = text;
            let first = st.config.lines().next().unwrap_or("");
            println!(
                "sighup-reload: loaded generation {}: {first}",
                st.generation
            );
        }
        Err(e) => callop_guest::error!("sighup-reload: cannot read {}: {e}", st.path),
    }
}

impl Plugin for SighupReload {
    type State = State;

    fn init(handle: &LoopHandle<State>, args: Vec<String>) -> Result<State, String> {
        let mut path = "/config/app.conf".to_string();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--config" => path = it.next().cloned().ok_or("--config needs a value")?,
                other => {
                    return Err(format!(
                        "unknown argument {other:?} (usage: [--config PATH])"
                    ))
                }
            }
        }
        let mut st = State {
            path,
            generation: 0,
            config: String::new(),
        };
        load(&mut st);
        if st.generation == 0 {
            return Err(format!("cannot read the configuration {}", st.path));
        }
        let signals = Signals::new(&[Signal::SIGHUP]).map_err(|e| e.to_string())?;
        handle
            .insert_source(signals, |event, _: &mut (), st: &mut State| {
                callop_guest::info!("received {:?}", event.signal());
                load(st);
                PostAction::Continue
            })
            .map_err(|e| format!("cannot subscribe to SIGHUP: {e}"))?;
        Ok(st)
    }
}

callop_guest::export_plugin!(SighupReload);
