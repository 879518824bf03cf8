//! `line-counter`: counts lines, words and bytes of the host's stdin (like
//! `wc`) and prints `lines=L words=W bytes=B` at end-of-file.
//!
//! Needs `--stdin`. Registers stdin in edge mode and drains it on every
//! event with `read_available`. Args: `--level` (level mode instead).

use callop_guest::generic::{Generic, Interest, Mode};
use callop_guest::io::read_available;
use callop_guest::{fs, LoopHandle, Plugin, PostAction};

struct LineCounter;

/// Plugin state: the counts so far.
#[derive(Default)]
pub struct State {
    lines: u64,
    words: u64,
    bytes: u64,
    in_word: bool,
}

impl State {
    fn count(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        for &b in data {
            if b == b'\n' {
                self.lines += 1;
            }
            let space = b.is_ascii_whitespace();
            if !space && !self.in_word {
                self.words += 1;
            }
            self.in_word = !space;
        }
    }
}

impl Plugin for LineCounter {
    type State = State;

    fn init(handle: &LoopHandle<State>, args: Vec<String>) -> Result<State, String> {
        let mode = match args.first().map(String::as_str) {
            None => Mode::Edge,
            Some("--level") => Mode::Level,
            Some(other) => return Err(format!("unknown argument {other:?} (usage: [--level])")),
        };
        let stdin = fs::stdin().map_err(|e| format!("line-counter: {e}"))?;
        let mut buf = Vec::new();
        handle
            .insert_source(
                Generic::new(stdin, Interest::READ, mode),
                move |_r, stdin, st: &mut State| {
                    let limit = if mode == Mode::Edge {
                        usize::MAX
                    } else {
                        1 << 20
                    };
                    let r = read_available(&**stdin, &mut buf, limit)?;
                    st.count(&buf);
                    buf.clear();
                    if r.eof {
                        println!("lines={} words={} bytes={}", st.lines, st.words, st.bytes);
                        return Ok(PostAction::Remove);
                    }
                    Ok(PostAction::Continue)
                },
            )
            .map_err(|e| e.to_string())?;
        Ok(State::default())
    }
}

callop_guest::export_plugin!(LineCounter);
