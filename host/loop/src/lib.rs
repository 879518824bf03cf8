//! callop: a callback-based event loop with calloop 0.14's API and semantics, on its own poller.
//!
//! Code written for [calloop](https://docs.rs/calloop/0.14) compiles and behaves the same with
//! `calloop = { package = "callop", version = "0.1" }` in `Cargo.toml` (calloop's feature names
//! and defaults: `executor`, `block_on`, `signals`, `stream`, `futures-io`, none on by default),
//! or `use callop as calloop;`. Like calloop, the loop reports what it does at trace level
//! through `tracing` (forwarded to `log`).
//!
//! Which crate to pick: this one for the event loop alone (no wasmtime in its tree);
//! `callop-plugin-host` to put sandboxed WebAssembly plugins on such a loop; `callop-host` for
//! the command line that runs plugins. Underneath is our own poller over rustix: epoll (with an eventfd
//! for wake-ups and a timerfd for sub-millisecond timers) on Linux and Android, kqueue on macOS,
//! iOS and the BSDs.
//!
//! Where calloop's users were hurt, callop does better without changing the API: timers live in
//! an indexed heap (O(log n) insert, cancel and re-arm, no growth under churn), timers have
//! nanosecond-precise deadlines, channels drain floods in bounded batches so no source starves,
//! cross-thread wake-ups coalesce into one syscall, and [`Readiness::error`] is set on error and
//! hang-up.
//!
//! # Example
//!
//! ```
//! use callop::{EventLoop, LoopSignal, channel::{channel, Event}, timer::{Timer, TimeoutAction}};
//! use std::time::Duration;
//!
//! struct State { received: Vec<u32>, signal: LoopSignal }
//!
//! let mut event_loop: EventLoop<State> = EventLoop::try_new().unwrap();
//! let handle = event_loop.handle();
//!
//! // A channel fed by another thread.
//! let (sender, receiver) = channel::<u32>();
//! handle
//!     .insert_source(receiver, |event, _, state| match event {
//!         Event::Msg(n) => state.received.push(n),
//!         Event::Closed => state.signal.stop(),
//!     })
//!     .unwrap();
//! std::thread::spawn(move || {
//!     for n in 0..3 {
//!         sender.send(n).unwrap();
//!     }
//! });
//!
//! // A timer, as a safety net.
//! handle
//!     .insert_source(Timer::from_duration(Duration::from_secs(5)), |_, _, state| {
//!         state.signal.stop();
//!         TimeoutAction::Drop
//!     })
//!     .unwrap();
//!
//! let mut state = State { received: Vec::new(), signal: event_loop.get_signal() };
//! event_loop.run(None, &mut state, |_| {}).unwrap();
//! assert_eq!(state.received, vec![0, 1, 2]);
//! ```

#![warn(missing_docs, missing_debug_implementations)]

mod list;
mod loop_logic;
mod macros;
mod poll;
mod sources;
mod sys;
mod token;

#[cfg(test)]
mod loop_tests;

pub mod error;
pub mod io;

pub use error::{Error, InsertError, Result};
pub use loop_logic::{EventLoop, LoopHandle, LoopSignal, RegistrationToken, WeakLoopHandle};
pub use poll::{Interest, Mode, Poll, Readiness, Token, TokenFactory};
pub use sources::*;
