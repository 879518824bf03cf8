//! Guest-caused log lines, rate-limited per plugin instance: the guest's
//! own `host-loop.log` calls and the host's warnings about what a guest did
//! (bad `dispatch` results, refused registrations).
//!
//! In each [`WINDOW`] (1 s) at most [`PER_MESSAGE`] lines of one message
//! and [`PER_WINDOW`] lines in all are printed for a plugin; "one message"
//! is the same level and text with digits ignored (so `connection 17
//! reset` and `connection 18 reset` are the same). The rest are counted, and
//! when the window is over (checked at the plugin's next log line or guest
//! call, and when the instance ends) one summary line per message says how
//! many were left out:
//!
//! ```text
//! ERROR plugin: … and 8,995 more like "I/O source callback failed, removing the source: read: Connection reset by peer (os error 104)" (a plugin's log lines are limited to 5 a second per message, 20 in all) plugin="echo"
//! ```
//!
//! Each printed message is also cut to
//! [`MAX_GUEST_TEXT`](crate::truncate::MAX_GUEST_TEXT).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Level;

use crate::output::group;
use crate::truncate::{MAX_GUEST_TEXT, truncated};

/// The rate-limit window.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Lines of one message printed per window and plugin.
pub const PER_MESSAGE: u32 = 5;
/// Lines printed per window and plugin, all messages together.
pub const PER_WINDOW: u32 = 20;

/// Distinct messages counted one by one per window (the rest together).
const MAX_KEYS: usize = 16;
/// Bytes of a message that make its key, and of the sample in a summary.
const KEY_LEN: usize = 160;

/// The rate limiter of one plugin instance (in its store data).
pub(crate) struct LogLimiter {
    plugin: Arc<str>,
    window: Instant,
    /// Lines printed in this window.
    passed: u32,
    keys: Vec<KeyCount>,
    /// Lines left out that have no key of their own (more than
    /// [`MAX_KEYS`] messages in the window), and the highest of their levels.
    other: u64,
    other_level: Level,
}

struct KeyCount {
    level: Level,
    key: String,
    sample: String,
    passed: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter for the lines of `plugin`.
    pub(crate) fn new(plugin: Arc<str>) -> Self {
        LogLimiter {
            plugin,
            window: Instant::now(),
            passed: 0,
            keys: Vec::new(),
            other: 0,
            other_level: Level::TRACE,
        }
    }

    /// Whether a line `msg` at `level` may be printed now (otherwise it is
    /// counted for the summary).
    pub(crate) fn admit(&mut self, level: Level, msg: &str) -> bool {
        self.admit_at(level, msg, Instant::now())
    }

    fn admit_at(&mut self, level: Level, msg: &str, now: Instant) -> bool {
        self.roll(now);
        let key = key_of(msg);
        let i = match self
            .keys
            .iter()
            .position(|k| k.level == level && k.key == key)
        {
            Some(i) => Some(i),
            None if self.keys.len() < MAX_KEYS => {
                self.keys.push(KeyCount {
                    level,
                    key,
                    sample: truncated(msg, KEY_LEN).into_owned(),
                    passed: 0,
                    suppressed: 0,
                });
                Some(self.keys.len() - 1)
            }
            None => None,
        };
        let room = self.passed < PER_WINDOW;
        match i {
            Some(i) => {
                let k = &mut self.keys[i];
                if room && k.passed < PER_MESSAGE {
                    k.passed += 1;
                    self.passed += 1;
                    true
                } else {
                    k.suppressed += 1;
                    false
                }
            }
            None if room => {
                self.passed += 1;
                true
            }
            None => {
                self.other += 1;
                self.other_level = self.other_level.min(level); // ERROR is the min
                false
            }
        }
    }

    /// Ends the window if it is over, printing its summaries. Free when the
    /// window counted nothing (the usual case, checked after every guest
    /// call): the next line starts a new window anyway (`admit` rolls first).
    pub(crate) fn tick(&mut self) {
        if self.passed == 0 && self.other == 0 && self.keys.is_empty() {
            return;
        }
        self.roll(Instant::now());
    }

    fn roll(&mut self, now: Instant) {
        if now.saturating_duration_since(self.window) >= WINDOW {
            self.summarize();
            self.window = now;
        }
    }

    /// Prints and clears the summaries of the current window.
    fn summarize(&mut self) {
        for (level, line) in self.take_summaries() {
            emit(level, &self.plugin, &line);
        }
    }

    /// The summary lines of the current window; starts a new one.
    fn take_summaries(&mut self) -> Vec<(Level, String)> {
        let limits = format!(
            "(a plugin's log lines are limited to {PER_MESSAGE} a second per message, {PER_WINDOW} in all)"
        );
        let mut out: Vec<(Level, String)> = self
            .keys
            .drain(..)
            .filter(|k| k.suppressed > 0)
            .map(|k| {
                (
                    k.level,
                    format!(
                        "… and {} more like {:?} {limits}",
                        group(k.suppressed),
                        k.sample
                    ),
                )
            })
            .collect();
        if self.other > 0 {
            out.push((
                self.other_level,
                format!("… and {} more log lines {limits}", group(self.other)),
            ));
        }
        self.other = 0;
        self.other_level = Level::TRACE;
        self.passed = 0;
        out
    }
}

impl Drop for LogLimiter {
    fn drop(&mut self) {
        self.summarize();
    }
}

/// The key of a message: its first [`KEY_LEN`] bytes, every run of digits
/// as one `#`.
fn key_of(msg: &str) -> String {
    let mut key = String::new();
    let mut digits = false;
    for c in truncated(msg, KEY_LEN).chars() {
        if c.is_ascii_digit() {
            if !digits {
                key.push('#');
            }
            digits = true;
        } else {
            key.push(c);
            digits = false;
        }
    }
    key
}

/// Whether a line of a plugin at `level` would be printed at all (lines
/// filtered out by `RUST_LOG` do not use up the rate).
pub(crate) fn enabled(level: Level) -> bool {
    match level {
        Level::TRACE => tracing::enabled!(target: "plugin", Level::TRACE),
        Level::DEBUG => tracing::enabled!(target: "plugin", Level::DEBUG),
        Level::INFO => tracing::enabled!(target: "plugin", Level::INFO),
        Level::WARN => tracing::enabled!(target: "plugin", Level::WARN),
        _ => tracing::enabled!(target: "plugin", Level::ERROR),
    }
}

/// Prints a line of `plugin` at `level` (target `plugin`), cut to
/// [`MAX_GUEST_TEXT`].
pub(crate) fn emit(level: Level, plugin: &str, message: &str) {
    let message = truncated(message, MAX_GUEST_TEXT);
    match level {
        Level::TRACE => tracing::trace!(target: "plugin", plugin, "{message}"),
        Level::DEBUG => tracing::debug!(target: "plugin", plugin, "{message}"),
        Level::INFO => tracing::info!(target: "plugin", plugin, "{message}"),
        Level::WARN => tracing::warn!(target: "plugin", plugin, "{message}"),
        _ => tracing::error!(target: "plugin", plugin, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> LogLimiter {
        LogLimiter::new(Arc::from("t"))
    }

    #[test]
    fn a_repeated_message_passes_five_times_a_window_then_is_counted() {
        let mut l = limiter();
        let t0 = l.window;
        let passed = (0..9000)
            .filter(|i| {
                l.admit_at(
                    Level::ERROR,
                    &format!("connection {i} reset (os error 104)"),
                    t0,
                )
            })
            .count();
        assert_eq!(passed, PER_MESSAGE as usize);
        let s = l.take_summaries();
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].0, Level::ERROR);
        assert!(
            s[0].1
                .starts_with("… and 8,995 more like \"connection 0 reset (os error 104)\""),
            "{}",
            s[0].1
        );
        // A new window: the message passes again.
        assert!(l.admit_at(Level::ERROR, "connection 1 reset", t0 + WINDOW));
        assert!(l.take_summaries().is_empty());
    }

    #[test]
    fn distinct_messages_share_the_window_budget() {
        let mut l = limiter();
        let t0 = l.window;
        let passed = (0..1000)
            .filter(|i| {
                l.admit_at(
                    Level::INFO,
                    &format!("message {}", char::from(b'a' + (i % 26) as u8)),
                    t0,
                )
            })
            .count();
        assert_eq!(passed, PER_WINDOW as usize);
        let s = l.take_summaries();
        // 16 keys of their own, the rest together; every line accounted for.
        let total: u64 = s
            .iter()
            .map(|(_, m)| {
                let n = m.split_whitespace().nth(2).unwrap().replace(',', "");
                n.parse::<u64>().unwrap()
            })
            .sum();
        assert_eq!(total + PER_WINDOW as u64, 1000, "{s:?}");
        assert!(s.last().unwrap().1.starts_with("… and "), "{s:?}");
        assert!(s.iter().any(|(_, m)| m.contains("more log lines")), "{s:?}");
    }

    #[test]
    fn the_window_rolls_on_time() {
        let mut l = limiter();
        let t0 = l.window;
        for _ in 0..10 {
            l.admit_at(Level::WARN, "same", t0);
        }
        // Not over yet: nothing is summarized.
        l.roll(t0 + WINDOW / 2);
        assert_eq!(l.keys[0].suppressed, 5);
        l.roll(t0 + WINDOW);
        assert!(l.keys.is_empty());
        assert_eq!(l.passed, 0);
    }

    #[test]
    fn keys_ignore_digits_and_long_tails() {
        assert_eq!(key_of("fd 12 and 345"), "fd # and #");
        let long = "y".repeat(1 << 20);
        assert!(key_of(&long).len() < KEY_LEN + 32);
    }
}
