//! callop: a calloop-0.14-compatible callback event loop, plus (feature
//! `plugin`, on by default) a wasmtime component host that lets sandboxed
//! wasm plugins register sources in that loop: see [`plugin`].
//!
//! In this branch the loop itself is calloop 0.14, re-exported: the plugin
//! host only uses `crate::` paths, so it compiles unchanged against callop's
//! own loop once that replaces the re-export.

// TEMP: replaced by our own loop on merge
pub use calloop::*;

#[cfg(feature = "plugin")]
pub mod plugin;
