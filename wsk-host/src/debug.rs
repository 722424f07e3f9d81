//! Debug output (`DbgPrint`, through a C shim) and bug checks (`KeBugCheckEx`).

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use wsk_sys::*;

use crate::verifier::{Rule, bug_check};

static OUTPUT: Mutex<String> = Mutex::new(String::new());

/// The default of [`set_output_limit`]: 1 MiB.
pub const DEFAULT_OUTPUT_LIMIT: usize = 1 << 20;

static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_OUTPUT_LIMIT);

/// What the driver printed with `DbgPrint` since the last call (at most the last
/// [`set_output_limit`] bytes of it), and clears it.
pub fn take_output() -> String {
    std::mem::take(&mut *OUTPUT.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Bounds what `DbgPrint` output is kept for [`take_output`] to its last `bytes` bytes (the
/// older text is dropped, a peer that makes a driver print cannot grow the process without
/// bound); `0` keeps nothing. Every line is also written to standard error as it comes,
/// whatever the limit. The default is [`DEFAULT_OUTPUT_LIMIT`].
pub fn set_output_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
    let mut output = OUTPUT.lock().unwrap_or_else(|e| e.into_inner());
    trim(&mut output, bytes);
}

/// Drops the front of `text` so that at most `limit` bytes are left (at a character
/// boundary).
fn trim(text: &mut String, limit: usize) {
    if text.len() <= limit {
        return;
    }
    let mut cut = text.len() - limit;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text.drain(..cut);
}

/// Called by the C `DbgPrint` with the formatted text.
///
/// # Safety
/// `text` must point to `length` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wsk_host_debug_output(text: *const u8, length: u64) {
    // SAFETY: forwarded from the caller.
    let bytes = unsafe { std::slice::from_raw_parts(text, length as usize) };
    let text = String::from_utf8_lossy(bytes);
    // Printed without `eprint!`, which panics when standard error is gone (a closed pipe):
    // a panic here, in a function called from driver code, would abort the whole process.
    let _ = write!(std::io::stderr(), "[DbgPrint] {text}");
    let limit = LIMIT.load(Ordering::Relaxed);
    if limit == 0 {
        return;
    }
    let mut output = OUTPUT.lock().unwrap_or_else(|e| e.into_inner());
    output.push_str(&text);
    // Trimmed in slices of a quarter of the limit, so that a stream of short lines does
    // not move the buffer at every line.
    if output.len() > limit + limit / 4 {
        trim(&mut output, limit);
    }
}

/// `KeBugCheckEx`: reported as a verifier violation, then the calling thread is stopped for
/// good — a bug check does not return. In a test the session reports it.
#[unsafe(no_mangle)]
pub extern "system" fn KeBugCheckEx(
    BugCheckCode: ULONG,
    BugCheckParameter1: ULONG_PTR,
    BugCheckParameter2: ULONG_PTR,
    BugCheckParameter3: ULONG_PTR,
    BugCheckParameter4: ULONG_PTR,
) -> ! {
    bug_check(
        Rule::DriverBugCheck,
        format!(
            "KeBugCheckEx({BugCheckCode:#x}, {BugCheckParameter1:#x}, {BugCheckParameter2:#x}, \
             {BugCheckParameter3:#x}, {BugCheckParameter4:#x})"
        ),
    );
    // A bug check stops the machine; a process abort is the closest honest equivalent.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_output_is_bounded() {
        set_output_limit(1000);
        let line = "0123456789 ünïcode line\n";
        for _ in 0..10_000 {
            // SAFETY: the line's bytes.
            unsafe { wsk_host_debug_output(line.as_ptr(), line.len() as u64) };
        }
        let kept = take_output();
        assert!(kept.len() <= 1250, "{} bytes kept", kept.len());
        assert!(kept.ends_with(line));
        set_output_limit(0);
        // SAFETY: as above.
        unsafe { wsk_host_debug_output(line.as_ptr(), line.len() as u64) };
        assert!(take_output().is_empty());
        set_output_limit(DEFAULT_OUTPUT_LIMIT);
    }
}
