//! The share of a callgrind run's instructions that is the client's — the code measured,
//! `wsk` or the raw `wsk-sys` path — as opposed to the emulated provider's, read from the
//! call graph callgrind records (`cfn=`/`calls=` lines: the inclusive cost of each call).
//!
//! Why: both sides of a benchmark run the same provider (`wsk-host`) on the same requests,
//! but the provider's own count is not a function of the client's code. Which of its paths a
//! request takes — the provider's thread woken for it, or finding it queued in a pass already
//! running; progressed from the queue or from socket readiness — depends on how valgrind
//! interleaves the client's thread with the provider's, and settles into one pattern or
//! another for a whole run: the runs of one binary differ (the table's "range" columns),
//! the difference in the provider's share. The client's share moves with the client's code
//! only.
//!
//! The client's share of a run is:
//! - on the main thread (the one that runs the benchmark loop): everything, except the
//!   calls the client's code makes into the provider (`wsk_host::provider::*` called from
//!   `wsk` or `wsk-bench` code) — the kernel services the client calls (`IoReuseIrp`,
//!   `KeWaitForSingleObject`, ...) stay the client's: it chose to call them;
//! - on every thread: the client's code the host calls (completion routines, callbacks:
//!   `wsk` or `wsk-bench` code called from `wsk-host`'s or from the kernel exports it
//!   implements), less the provider calls made from inside it.
//!
//! Along with it, the provider calls per function, so that a client that made more provider
//! calls than the other (whose cost would then be the provider's) shows.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::Result;

/// A run's instructions split by [`split`].
#[derive(Debug, Default, Clone)]
pub struct Split {
    /// The client's instructions (see the module documentation).
    pub client: u64,
    /// All the instructions of the run, every thread.
    pub total: u64,
    /// The client's calls into the provider, by the provider's function.
    pub provider_calls: BTreeMap<String, u64>,
}

/// Whether a function is `wsk-host`'s: its own paths, or a kernel or NETIO export it
/// implements under its C name (no path).
fn is_host(name: &str) -> bool {
    name.starts_with("wsk_host::") || !(name.contains("::") || name.contains('<'))
}

/// Whether a function is the emulated WSK provider's.
fn is_provider(name: &str) -> bool {
    name.starts_with("wsk_host::provider::")
}

/// Whether a function is the client's code: the safe layer's or the benchmark's, methods of
/// their types (`<wsk::... as Trait>::...`), and generic code instantiated for them
/// (`core::ptr::drop_in_place<wsk::...>`). `wsk_host::` and `wsk_sys::` do not contain
/// `wsk::`.
fn is_client(name: &str) -> bool {
    !is_host(name) && (name.contains("wsk::") || name.contains("wsk_bench::"))
}

/// Splits the instructions of one run (`files`: callgrind's outputs, one per thread, of one
/// process).
pub fn split(files: &[PathBuf]) -> Result<Split> {
    let texts: Vec<String> = files
        .iter()
        .map(std::fs::read_to_string)
        .collect::<std::io::Result<_>>()?;
    // Function names are compressed (`(id) name` once, `(id)` after), with ids shared by
    // the whole process: gather them from every file first.
    let mut names: HashMap<&str, &str> = HashMap::new();
    for text in &texts {
        for line in text.lines() {
            let Some(rest) = line
                .strip_prefix("fn=")
                .or_else(|| line.strip_prefix("cfn="))
            else {
                continue;
            };
            if let Some((id, name)) = rest.split_once(' ') {
                names.insert(id, name);
            }
        }
    }
    let resolve = |rest: &str| -> String {
        match rest.split_once(' ') {
            Some((_, name)) => name.to_string(),
            None => names.get(rest).map_or(rest, |n| n).to_string(),
        }
    };
    let mut split = Split::default();
    for (text, file) in texts.iter().zip(files) {
        let mut main = false;
        let mut total = None;
        let (mut provider, mut called_client) = (0u64, 0u64);
        let mut caller = String::new();
        let mut callee = String::new();
        // The calls of the last `calls=` line, whose cost is on the next line.
        let mut call: Option<u64> = None;
        for line in text.lines() {
            if let Some(count) = call.take() {
                // `<position> <inclusive cost>`
                let cost = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse::<u64>().ok())
                    .ok_or_else(|| {
                        format!("bench: bad call cost `{line}` in {}", file.display())
                    })?;
                if is_provider(&callee) && is_client(&caller) {
                    provider += cost;
                    *split.provider_calls.entry(callee.clone()).or_insert(0) += count;
                } else if is_client(&callee) && is_host(&caller) {
                    called_client += cost;
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("fn=") {
                caller = resolve(rest);
            } else if let Some(rest) = line.strip_prefix("cfn=") {
                callee = resolve(rest);
            } else if let Some(rest) = line.strip_prefix("calls=") {
                let count = rest
                    .split_whitespace()
                    .next()
                    .and_then(|c| c.parse::<u64>().ok())
                    .ok_or_else(|| {
                        format!("bench: bad calls line `{line}` in {}", file.display())
                    })?;
                call = Some(count);
            } else if let Some(rest) = line.strip_prefix("thread:") {
                main = rest.trim() == "1";
            } else if let Some(rest) = line
                .strip_prefix("totals:")
                .or_else(|| line.strip_prefix("summary:"))
            {
                total = rest.trim().parse::<u64>().ok();
            }
        }
        let total = total.ok_or_else(|| format!("bench: no totals in {}", file.display()))?;
        split.total += total;
        // Elsewhere than on the main thread, the provider calls counted were made by the
        // client's code the host called (a routine reissuing a request): inside
        // `called_client`.
        let base = if main { total } else { 0 };
        split.client += (base + called_client)
            .checked_sub(provider)
            .ok_or_else(|| {
                format!(
                    "bench: {}: the client's provider calls outweigh its code",
                    file.display()
                )
            })?;
    }
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A main thread that calls the provider, which completes the request inline through the
    /// client's routine; and the provider's thread, which completes another through it.
    #[test]
    fn the_client_share_leaves_out_the_provider_but_not_the_routines_it_calls() {
        let dir = std::env::temp_dir().join(format!("client-share-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let main = "\
thread: 1
fn=(1) wsk_bench::Fixture::run_wsk
10 100
cfn=(2) wsk_host::provider::dispatch::send
calls=3 20
10 400
cfn=(3) KeWaitForSingleObject
calls=3 30
10 50
fn=(2)
20 330
cfn=(4) IofCompleteRequest
calls=3 5
20 70
fn=(4)
5 30
cfn=(5) wsk::lifecycle::completion::complete
calls=3 7
5 40
fn=(5)
7 40
fn=(3)
30 50
totals: 1000
";
        // The provider's loop, inlined into the thread's start (a std frame), calls both
        // the provider's internals and the kernel, which calls the routine.
        let provider = "\
thread: 2
fn=(6) std::sys::backtrace::__rust_begin_short_backtrace<wsk_host::provider::reactor::Reactor::start::{{closure}}>
1 500
cfn=(7) wsk_host::provider::socket::HostSocket::progress
calls=4 9
1 200
cfn=(4)
calls=2 5
1 90
fn=(4)
5 60
cfn=(5)
calls=2 7
5 30
totals: 790
";
        let files = [dir.join("out-01"), dir.join("out-02")];
        std::fs::write(&files[0], main).unwrap();
        std::fs::write(&files[1], provider).unwrap();
        let split = split(&files).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // Main: 1000 - 400 (the provider call) + 40 (the routine inside it); provider's
        // thread: the routine's 30.
        assert_eq!(split.client, 1000 - 400 + 40 + 30);
        assert_eq!(split.total, 1790);
        assert_eq!(
            split
                .provider_calls
                .get("wsk_host::provider::dispatch::send"),
            Some(&3)
        );
        // The provider's internal calls are not the client's calls.
        assert_eq!(split.provider_calls.len(), 1);
    }
}
