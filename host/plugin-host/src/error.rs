//! Errors of the plugin host.

use std::fmt;
use std::path::PathBuf;

/// Why a plugin could not be loaded or started.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read (missing, unreadable, ...).
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The path is not a regular file (a directory, a FIFO, a device, a
    /// socket): refused without reading it.
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead (`"a FIFO"`, `"a device"`, ...).
        kind: &'static str,
    },
    /// The file is larger than the engine's cap
    /// ([`EngineOptions::max_component_size`](crate::EngineOptions::max_component_size)).
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size, or how much was read before the cap was passed.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// The bytes are not a WebAssembly binary at all.
    NotWasm {
        /// What was found instead.
        detail: String,
    },
    /// A core wasm module was given where a component is required.
    CoreModule,
    /// A precompiled wasmtime artifact (`.cwasm`) was given; plugins are
    /// loaded from `.wasm` components (the CLI's cache precompiles them).
    Precompiled,
    /// The component failed to validate or compile.
    Compile(String),
    /// The component targets another world or another version of
    /// `callop:plugin`; each entry names one missing or mismatched
    /// import/export.
    World(Vec<String>),
    /// The component's imports cannot be satisfied by this host.
    Link(String),
    /// Creating the instance failed (including a trap in its start code).
    Instantiate(String),
    /// The instance name is invalid or already used by a live plugin.
    Name(String),
    /// The plugin's `init` returned an error.
    Init(String),
    /// The plugin trapped in `init`.
    Trap(String),
    /// The component imports an application interface
    /// ([`AppApi`](crate::AppApi)) that was not granted to this instance
    /// ([`Capabilities::allow_app_interface`](crate::Capabilities::allow_app_interface)).
    NotGranted {
        /// The interface, as the component imports it.
        interface: String,
        /// The instance name.
        plugin: String,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, source } => {
                write!(f, "cannot read `{}`: {source}", path.display())
            }
            LoadError::NotAFile { path, kind } => write!(
                f,
                "cannot load `{}`: it is {kind}, not a regular file",
                path.display()
            ),
            LoadError::TooLarge { path, size, max } => write!(
                f,
                "cannot load `{}`: {size} bytes is more than the {max}-byte cap on component files",
                path.display()
            ),
            LoadError::NotWasm { detail } => write!(f, "not a WebAssembly binary: {detail}"),
            LoadError::CoreModule => f.write_str(
                "this is a core WebAssembly module, not a component; build the plugin for \
                 `wasm32-wasip2` (or wrap it with `wasm-tools component new`)",
            ),
            LoadError::Precompiled => f.write_str(
                "this is a precompiled wasmtime artifact (.cwasm); pass the plugin's .wasm file \
                 instead (precompiled artifacts are cached and used automatically)",
            ),
            LoadError::Compile(e) => write!(f, "invalid component: {e}"),
            LoadError::World(problems) => {
                write!(
                    f,
                    "not a `callop:plugin/plugin@{}` component: {}",
                    super::PACKAGE_VERSION,
                    problems.join("; ")
                )
            }
            LoadError::Link(e) => write!(f, "cannot link plugin: {e}"),
            LoadError::Instantiate(e) => write!(f, "cannot instantiate plugin: {e}"),
            LoadError::Name(e) => write!(f, "bad instance name: {e}"),
            LoadError::Init(e) => write!(f, "plugin init failed: {e}"),
            LoadError::Trap(e) => write!(f, "plugin trapped in init: {e}"),
            LoadError::NotGranted { interface, plugin } => write!(
                f,
                "plugin `{plugin}` imports the application interface `{interface}`, which is not \
                 granted to it (the application grants it with \
                 Capabilities::allow_app_interface(\"{interface}\"))"
            ),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Formats a wasmtime error with its whole cause chain on one line.
pub(crate) fn chain(e: &wasmtime::Error) -> String {
    let mut s = String::new();
    for c in e.chain() {
        let cs = c.to_string();
        if s.contains(&cs) {
            continue;
        }
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(&cs);
    }
    s
}
