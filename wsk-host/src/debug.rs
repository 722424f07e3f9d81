//! Debug output (`DbgPrint`, through a C shim) and bug checks (`KeBugCheckEx`).

use std::sync::Mutex;

use wsk_sys::*;

use crate::verifier::{Rule, bug_check};

static OUTPUT: Mutex<String> = Mutex::new(String::new());

/// What the driver printed with `DbgPrint` since the last call, and clears it.
pub fn take_output() -> String {
    std::mem::take(&mut *OUTPUT.lock().unwrap_or_else(|e| e.into_inner()))
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
    eprint!("[DbgPrint] {text}");
    OUTPUT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push_str(&text);
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
