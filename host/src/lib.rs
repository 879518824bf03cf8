//! callop: a calloop-compatible callback event loop.
// TEMP: replaced by our own loop on merge
pub use calloop::*;

#[cfg(feature = "plugin")]
pub mod plugin;
