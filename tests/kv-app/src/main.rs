//! The key-value example application: runs the plugins given on the
//! command line with the application API granted, prints their
//! notifications as they come and the store at the end.
//!
//! ```sh
//! plugins/build.sh kv-plugin && plugins/polyglot.sh python/kv js/kv
//! cargo run -p callop-kv-app -- plugins/target/wasm32-wasip2/release/kv_plugin.wasm@rust \
//!     target/polyglot/python-kv.wasm@python target/polyglot/js-kv.wasm@js
//! ```
//!
//! Each argument is `PATH[@NAME]` (default name: the file stem).

use callop::EventLoop;
use callop_plugin_host::{Host, HostConfig};
use kv_app::KvApp;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = KvApp::new();
    app.print_notes(true);
    let mut event_loop: EventLoop<()> = EventLoop::try_new()?;
    let host = Host::new(
        event_loop.handle(),
        HostConfig::default().with_app_api(app.api()),
    )?;
    let mut loaded = 0;
    for arg in std::env::args().skip(1) {
        let (path, name) = match arg.rsplit_once('@') {
            Some((p, n)) => (p.to_string(), n.to_string()),
            None => {
                let stem = std::path::Path::new(&arg)
                    .file_stem()
                    .map(|s| s.to_string_lossy().replace('_', "-"))
                    .unwrap_or_else(|| "plugin".into());
                (arg.clone(), stem)
            }
        };
        host.grant(&name, kv_app::grants());
        match host.load_file(&path, &name, &[]) {
            Ok(_) => loaded += 1,
            Err(e) => eprintln!("kv-app: {name}: {e}"),
        }
    }
    if loaded == 0 {
        eprintln!("usage: kv-app PLUGIN.wasm[@NAME]...");
        std::process::exit(2);
    }
    while !host.is_empty() {
        event_loop.dispatch(None, &mut ())?;
    }
    for exit in host.exits() {
        println!("{}: {}", exit.name, exit.reason);
    }
    for (k, v) in app.contents() {
        println!("{k} = {v}");
    }
    Ok(())
}
