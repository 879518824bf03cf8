//! `idle-worker`: cooperative background work in idle callbacks.
//!
//! Args: `--n <N>` (default `1000000`) and `--chunk <C>` (default `10000`).
//! Sums `1..=N` in chunks of `C` numbers, one chunk per idle callback; each
//! callback re-inserts the next idle, so the host loop stays responsive
//! between chunks. Prints `sum 1..=N = S (K chunks)` and ends (no source
//! left). Exits with code 1 if the sum does not match `N(N+1)/2`.

use callop_guest::{LoopHandle, Plugin};

struct IdleWorker;

/// Plugin state.
struct State {
    n: u64,
    chunk: u64,
    next: u64,
    sum: u128,
    chunks: u64,
}

fn parse_args(args: &[String]) -> Result<(u64, u64), String> {
    let (mut n, mut chunk) = (1_000_000u64, 10_000u64);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))?
                .parse()
                .map_err(|e| format!("bad {name}: {e}"))
        };
        match arg.as_str() {
            "--n" => n = num("--n")?,
            "--chunk" => chunk = num("--chunk")?,
            other => {
                return Err(format!(
                    "unknown argument {other:?} (usage: --n 1000000 --chunk 10000)"
                ))
            }
        }
    }
    if chunk == 0 {
        return Err("--chunk must be > 0".into());
    }
    Ok((n, chunk))
}

/// Processes one chunk, then schedules the next one (or reports).
fn step(handle: LoopHandle<State>, st: &mut State) {
    let end = st.n.min(st.next.saturating_add(st.chunk - 1));
    if st.next <= end {
        st.sum += (st.next..=end).map(u128::from).sum::<u128>();
        st.chunks += 1;
        st.next = end + 1;
    }
    if st.next <= st.n {
        handle.insert_idle(move |st: &mut State| step(handle, st));
    } else {
        let expected = u128::from(st.n) * (u128::from(st.n) + 1) / 2;
        println!("sum 1..={} = {} ({} chunks)", st.n, st.sum, st.chunks);
        if st.sum != expected {
            callop_guest::error!("wrong sum: expected {expected}");
            handle.get_signal().stop_with_code(1);
        }
    }
}

impl Plugin for IdleWorker {
    type State = State;

    fn init(handle: &LoopHandle<State>, args: Vec<String>) -> Result<State, String> {
        let (n, chunk) = parse_args(&args)?;
        let h = *handle;
        handle
            .try_insert_idle(move |st: &mut State| step(h, st))
            .map_err(|e| e.to_string())?;
        Ok(State {
            n,
            chunk,
            next: 1,
            sum: 0,
            chunks: 0,
        })
    }
}

callop_guest::export_plugin!(IdleWorker);
