//! The Python and JavaScript example plugins (`plugins/polyglot.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use callop_plugin_host::{EngineOptions, PluginEngine};

use crate::{cache_dir, repo_root};

/// A guest language with a plugin toolchain in `plugins/<lang>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// `plugins/python` (componentize-py).
    Python,
    /// `plugins/js` (componentize-js).
    Js,
}

impl Lang {
    /// Both languages.
    pub const ALL: [Lang; 2] = [Lang::Python, Lang::Js];

    /// The directory / file prefix: `python` or `js`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

/// The example plugins every language has.
pub const PLUGINS: [&str; 3] = ["ticker", "relay", "selftest"];

/// Builds every Python and JavaScript plugin with `plugins/polyglot.sh`
/// (once per test binary; the script skips what is up to date) and
/// precompiles them into the shared compile cache ([`cache_dir`]), so the
/// tests, which run in parallel, do not each compile the 12-19 MB
/// components. Returns the output directory.
///
/// Panics with the script's output if a toolchain cannot be installed or a
/// build fails: these tests never pass by skipping.
pub fn polyglot_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = repo_root();
        let out = root.join("target/polyglot");
        let t0 = Instant::now();
        let o = Command::new("bash")
            .arg(root.join("plugins/polyglot.sh"))
            .env("CALLOP_POLYGLOT_OUT", &out)
            .output()
            .expect("cannot run `bash plugins/polyglot.sh`");
        assert!(
            o.status.success(),
            "plugins/polyglot.sh failed, so the Python/JS plugin tests cannot run.\n\
             It installs componentize-py (PyPI, into plugins/python/.venv) and \
             componentize-js (npm, into plugins/js/node_modules): python3 with venv, \
             Node.js >= 18 with npm and network access to both registries are needed \
             on the first run.\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        eprintln!("plugins/polyglot.sh: {:.1?}", t0.elapsed());
        let t1 = Instant::now();
        let engine = PluginEngine::new(&EngineOptions {
            cache_dir: Some(cache_dir()),
            ..Default::default()
        })
        .expect("cannot create a plugin engine");
        for lang in Lang::ALL {
            for name in PLUGINS {
                let f = out.join(format!("{}-{name}.wasm", lang.as_str()));
                if let Err(e) = engine.load_file(&f) {
                    panic!("{}: {e}", f.display());
                }
            }
        }
        eprintln!(
            "polyglot plugins compiled or loaded from the cache in {:.1?}",
            t1.elapsed()
        );
        out
    })
}

/// Path of the component of the `lang` plugin `name` (e.g. `ticker`),
/// built and precompiled by [`polyglot_dir`].
pub fn polyglot_plugin(lang: Lang, name: &str) -> PathBuf {
    let p = polyglot_dir().join(format!("{}-{name}.wasm", lang.as_str()));
    assert!(p.exists(), "missing plugin {}", p.display());
    p
}
