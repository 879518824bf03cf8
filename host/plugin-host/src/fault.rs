//! Classifying why a plugin failed: a trap, a guest panic, the callback
//! deadline, running out of memory or stack.

use std::fmt;
use std::time::Duration;

use super::error::chain;
use super::truncate::{MAX_BACKTRACE, MAX_GUEST_TEXT, truncate};

/// The category of a plugin failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// A wasm trap (e.g. `unreachable`, out-of-bounds access, division by
    /// zero) that is none of the more specific kinds below.
    Trap,
    /// The guest panicked (its panic message is in [`Fault::message`]).
    Panic,
    /// A guest call ran longer than [`Limits::callback_timeout`](super::Limits::callback_timeout).
    Timeout,
    /// The guest hit [`Limits::max_memory_bytes`](super::Limits::max_memory_bytes)
    /// and aborted.
    OutOfMemory,
    /// The guest exhausted its wasm stack (e.g. unbounded recursion).
    StackOverflow,
    /// The guest waited in a blocking WASI call (a sleep, `poll`, a
    /// `blocking-*` stream call) longer than what was left of its call's
    /// deadline. Plugins must not block: they register a timer or the
    /// object with the loop instead.
    Blocked,
    /// A host-side error while calling the guest (e.g. a malformed value
    /// crossing the component boundary).
    Host,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Trap => "trap",
            FaultKind::Panic => "panic",
            FaultKind::Timeout => "callback timeout",
            FaultKind::OutOfMemory => "out of memory",
            FaultKind::StackOverflow => "stack overflow",
            FaultKind::Blocked => "blocked in a host call",
            FaultKind::Host => "host error",
        })
    }
}

/// Why a plugin failed, with the wasm backtrace when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The category.
    pub kind: FaultKind,
    /// One-line cause: the trap message, the panic message, or the limit that
    /// was hit (naming its option, e.g. `--max-memory`).
    pub message: String,
    /// The guest's wasm backtrace (`WasmBacktrace`, one frame per line), if
    /// wasmtime captured one.
    pub backtrace: Option<String>,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(bt) = &self.backtrace {
            write!(f, "\n{}", bt.trim_end())?;
        }
        Ok(())
    }
}

/// What the host knows besides the error itself.
pub(crate) struct Context<'a> {
    /// The deadline of the failed call, and the name of its limit.
    pub timeout: Option<(Duration, &'static str)>,
    /// The memory cap, and the size of a refused `memory.grow` if any.
    pub max_memory: usize,
    pub memory_denied: Option<usize>,
    /// The last bytes of the guest's stderr.
    pub stderr_tail: &'a [u8],
}

/// Classifies a failed guest call.
pub(crate) fn classify(e: &wasmtime::Error, cx: &Context<'_>) -> Fault {
    let trap = e.downcast_ref::<wasmtime::Trap>().copied();
    let backtrace = e
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map(|bt| bt.to_string())
        .filter(|s| !s.trim().is_empty());
    // The message without the backtrace (which is kept separately).
    let message = e
        .chain()
        .map(|c| c.to_string())
        .filter(|c| backtrace.as_deref() != Some(c.as_str()))
        .fold(String::new(), |mut acc, c| {
            if !acc.contains(&c) {
                if !acc.is_empty() {
                    acc.push_str(": ");
                }
                acc.push_str(&c);
            }
            acc
        });
    let message = if message.is_empty() {
        chain(e)
    } else {
        message
    };
    if let Some(b) = e.downcast_ref::<crate::wasi_blocking::BlockedCall>() {
        let message = match cx.timeout {
            Some((t, what)) => format!("{b} (the {what} is {t:?})"),
            None => b.to_string(),
        };
        return Fault {
            kind: FaultKind::Blocked,
            message,
            backtrace: backtrace.map(|b| truncate(b, MAX_BACKTRACE)),
        };
    }
    let (kind, message) = match trap {
        Some(wasmtime::Trap::Interrupt) => (
            FaultKind::Timeout,
            match cx.timeout {
                Some((t, what)) => {
                    format!("a guest call ran longer than the {what} of {t:?}: {message}")
                }
                None => message,
            },
        ),
        Some(wasmtime::Trap::StackOverflow) => (FaultKind::StackOverflow, message),
        Some(_) => {
            if let Some(p) = panic_message(cx.stderr_tail) {
                (FaultKind::Panic, format!("{p} ({message})"))
            } else if let Some(want) = cx.memory_denied {
                (
                    FaultKind::OutOfMemory,
                    format!(
                        "memory limit of {} bytes (--max-memory / limits.max_memory_bytes) \
                         exceeded: growing to {want} bytes was refused ({message})",
                        cx.max_memory
                    ),
                )
            } else {
                (FaultKind::Trap, message)
            }
        }
        None => (FaultKind::Host, message),
    };
    // Both may carry guest text (a trap or panic message, a deep stack):
    // they are printed and kept, so they are cut to a bound.
    Fault {
        kind,
        message: truncate(message, MAX_GUEST_TEXT),
        backtrace: backtrace.map(|b| truncate(b, MAX_BACKTRACE)),
    }
}

/// Extracts a Rust panic message (`thread '..' panicked at FILE:LINE:COL:`
/// followed by the message line) from a stderr tail.
fn panic_message(tail: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(tail);
    let start = text.rfind("panicked at")?;
    let rest = &text[start..];
    let mut lines = rest.lines();
    let head = lines.next().unwrap_or_default().trim_end_matches(':');
    let msg = lines.next().unwrap_or_default().trim();
    Some(if msg.is_empty() || msg.starts_with("note:") {
        format!("guest {head}")
    } else {
        format!("guest {head}: {msg}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_is_found_in_the_stderr_tail() {
        let tail = b"tick\nthread '<unnamed>' panicked at src/lib.rs:3:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(tail).unwrap(),
            "guest panicked at src/lib.rs:3:5: boom"
        );
        assert_eq!(panic_message(b"no panic here\n"), None);
    }

    #[test]
    fn an_interrupt_is_a_timeout_naming_the_option() {
        let e = wasmtime::Error::new(wasmtime::Trap::Interrupt);
        let f = classify(
            &e,
            &Context {
                timeout: Some((
                    Duration::from_millis(100),
                    "callback timeout (--callback-timeout)",
                )),
                max_memory: 1,
                memory_denied: None,
                stderr_tail: b"",
            },
        );
        assert_eq!(f.kind, FaultKind::Timeout);
        assert!(f.message.contains("--callback-timeout"), "{}", f.message);
    }

    #[test]
    fn a_blocked_wait_is_its_own_kind_naming_the_budget() {
        let e = wasmtime::Error::new(crate::wasi_blocking::BlockedCall {
            call: "wasi:io/poll.poll",
            waited: Duration::from_millis(100),
        })
        .context("error while executing at wasm backtrace");
        let f = classify(
            &e,
            &Context {
                timeout: Some((
                    Duration::from_millis(100),
                    "callback timeout (--callback-timeout)",
                )),
                max_memory: 1,
                memory_denied: None,
                stderr_tail: b"",
            },
        );
        assert_eq!(f.kind, FaultKind::Blocked);
        assert!(f.message.contains("wasi:io/poll.poll"), "{}", f.message);
        assert!(f.message.contains("use a Timer"), "{}", f.message);
        assert!(f.message.contains("--callback-timeout"), "{}", f.message);
    }

    #[test]
    fn a_huge_message_is_cut_to_its_bound() {
        let e = wasmtime::Error::msg("y".repeat(1 << 20));
        let f = classify(
            &e,
            &Context {
                timeout: None,
                max_memory: 1,
                memory_denied: None,
                stderr_tail: b"",
            },
        );
        assert_eq!(f.kind, FaultKind::Host);
        assert!(f.message.len() < MAX_GUEST_TEXT + 64, "{}", f.message.len());
        assert!(f.message.ends_with(" bytes cut)"), "{}", &f.message[4000..]);
    }

    #[test]
    fn a_trap_after_a_refused_grow_is_out_of_memory() {
        let e = wasmtime::Error::new(wasmtime::Trap::UnreachableCodeReached);
        let f = classify(
            &e,
            &Context {
                timeout: None,
                max_memory: 1 << 20,
                memory_denied: Some(2 << 20),
                stderr_tail: b"memory allocation of 1048576 bytes failed\n",
            },
        );
        assert_eq!(f.kind, FaultKind::OutOfMemory);
        assert!(f.message.contains("--max-memory"), "{}", f.message);
    }
}
