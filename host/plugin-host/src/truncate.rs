//! Guest-provided text the host prints or keeps (an `init` error, a log
//! message, a panic or trap message, a backtrace) is cut to a stated bound,
//! so a plugin cannot make the host print or hold megabytes per line.

use std::borrow::Cow;

/// Bound on one guest-provided message (an `init` error, a log line, a
/// fault message): 4 KiB.
pub const MAX_GUEST_TEXT: usize = 4096;

/// Bound on a guest's wasm backtrace kept in a fault report: 16 KiB.
pub const MAX_BACKTRACE: usize = 16 * 1024;

/// Where to cut `s` to keep at most `max` bytes: `None` if it fits.
fn cut_at(s: &str, max: usize) -> Option<usize> {
    if s.len() <= max {
        return None;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Some(end)
}

/// The marker appended to a cut text.
fn marker(cut: usize) -> String {
    format!("… ({cut} bytes cut)")
}

/// `s` cut to at most `max` bytes (at a character boundary), followed by
/// `… (N bytes cut)` when something was cut.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if let Some(end) = cut_at(&s, max) {
        let cut = s.len() - end;
        s.truncate(end);
        s.push_str(&marker(cut));
        s.shrink_to_fit();
    }
    s
}

/// Like [`truncate`], borrowing when nothing is cut.
pub(crate) fn truncated(s: &str, max: usize) -> Cow<'_, str> {
    match cut_at(s, max) {
        None => Cow::Borrowed(s),
        Some(end) => Cow::Owned(format!("{}{}", &s[..end], marker(s.len() - end))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept() {
        assert_eq!(truncate("abc".into(), 3), "abc");
        assert!(matches!(truncated("abc", 3), Cow::Borrowed("abc")));
    }

    #[test]
    fn long_text_is_cut_and_says_how_much() {
        let big = "x".repeat(50 << 20);
        let t = truncate(big.clone(), MAX_GUEST_TEXT);
        assert!(t.starts_with(&"x".repeat(MAX_GUEST_TEXT)));
        assert!(
            t.ends_with(&format!("… ({} bytes cut)", (50 << 20) - MAX_GUEST_TEXT)),
            "{}",
            &t[MAX_GUEST_TEXT..]
        );
        assert!(t.len() < MAX_GUEST_TEXT + 64);
        assert_eq!(truncated(&big, MAX_GUEST_TEXT), t);
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // 'é' is two bytes: a cut at 3 would split the second one.
        let t = truncate("éé".into(), 3);
        assert_eq!(t, "é… (2 bytes cut)");
        assert_eq!(truncated("éé", 3), "é… (2 bytes cut)");
    }
}
