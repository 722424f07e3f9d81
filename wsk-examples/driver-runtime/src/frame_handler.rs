//! The C++ frame handler the precompiled `core` and `alloc` name in their unwind tables.
//!
//! The standard library for `*-pc-windows-msvc` is built with `panic = "unwind"`, so the
//! unwind information of its functions names `__CxxFrameHandler3` as their personality
//! routine, even in an image built with `panic = "abort"`. The kernel does not export it and
//! a driver links no C runtime, so the image defines it.
//!
//! It is reached only if a structured exception unwinds through a frame of those functions,
//! and a panic never does (it bug-checks). A frame of such a function catches nothing, so the
//! routine's answer is `ExceptionContinueSearch`: keep looking in the callers, as a frame with
//! no handler would.

/// `EXCEPTION_DISPOSITION::ExceptionContinueSearch`.
const EXCEPTION_CONTINUE_SEARCH: i32 = 1;

/// The personality routine of the standard library's landing pads: continues the search.
#[unsafe(no_mangle)]
pub extern "system" fn __CxxFrameHandler3() -> i32 {
    EXCEPTION_CONTINUE_SEARCH
}
