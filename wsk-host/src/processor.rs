//! Processors: `KeGetCurrentProcessorNumberEx`.
//!
//! Every thread of the process is a processor of its own, numbered while it lives: a thread
//! keeps its number from its first call to its end, so what a kernel guarantees to code
//! running at DISPATCH_LEVEL or above — the number does not change until the IRQL is lowered,
//! and no other thread runs on that processor meanwhile — holds whatever the host's scheduler
//! does (this kernel's IRQL is the thread's, and host threads move between cores at will).
//! The numbers of ended threads go to new ones, so they stay below the number of threads
//! alive at once.

use std::sync::Mutex;

use wsk_sys::{PPROCESSOR_NUMBER, ULONG};

/// The most processors Windows runs on (32 groups of 64): the system-wide indexes callers
/// size per-processor tables by. More threads than this calling at once is a test's fault.
pub const MAX_PROCESSORS: u32 = 2048;

/// Processors in a group (`MAXIMUM_PROC_PER_GROUP`).
const PER_GROUP: u32 = 64;

/// Numbers given back by ended threads, and the next never given.
static NUMBERS: Mutex<(Vec<u32>, u32)> = Mutex::new((Vec::new(), 0));

/// A thread's processor number, given back when the thread ends.
struct Number(u32);

impl Number {
    fn claim() -> Number {
        let mut numbers = NUMBERS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(number) = numbers.0.pop() {
            return Number(number);
        }
        let number = numbers.1;
        assert!(
            number < MAX_PROCESSORS,
            "wsk-host: more than {MAX_PROCESSORS} threads alive at once asked for their \
             processor (KeGetCurrentProcessorNumberEx)"
        );
        numbers.1 += 1;
        Number(number)
    }
}

impl Drop for Number {
    fn drop(&mut self) {
        NUMBERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .push(self.0);
    }
}

thread_local! {
    static NUMBER: Number = Number::claim();
}

/// `KeGetCurrentProcessorNumberEx`: the calling thread's processor (see the module
/// documentation), as a system-wide index and, unless `ProcNumber` is null, its group and
/// number. Any IRQL.
///
/// # Safety
/// `ProcNumber` is null or points to a writable `PROCESSOR_NUMBER`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeGetCurrentProcessorNumberEx(
    ProcNumber: PPROCESSOR_NUMBER,
) -> ULONG {
    // A thread asking while its thread-locals are being destroyed gets a number of its own
    // that is never given back.
    let index = NUMBER
        .try_with(|number| number.0)
        .unwrap_or_else(|_| core::mem::ManuallyDrop::new(Number::claim()).0);
    if !ProcNumber.is_null() {
        // SAFETY: the caller's pointer, writable (checked non-null).
        unsafe {
            (*ProcNumber).Group = (index / PER_GROUP) as u16;
            (*ProcNumber).Number = (index % PER_GROUP) as u8;
            (*ProcNumber).Reserved = 0;
        }
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_processor_and_ended_threads_give_theirs_back() {
        let mut number = wsk_sys::PROCESSOR_NUMBER::default();
        // SAFETY: a writable PROCESSOR_NUMBER.
        let mine = unsafe { KeGetCurrentProcessorNumberEx(&mut number) };
        assert_eq!(
            u32::from(number.Group) * PER_GROUP + u32::from(number.Number),
            mine
        );
        // SAFETY: null is allowed.
        let again = unsafe { KeGetCurrentProcessorNumberEx(core::ptr::null_mut()) };
        assert_eq!(again, mine);
        // Threads alive at once have distinct numbers.
        let barrier = std::sync::Barrier::new(4);
        let others: Vec<u32> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        // SAFETY: null is allowed.
                        let n = unsafe { KeGetCurrentProcessorNumberEx(core::ptr::null_mut()) };
                        barrier.wait();
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all = others.clone();
        all.push(mine);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 5);
        // Ended threads' numbers are given again: a hundred threads one after the other
        // share a few (other tests' threads may take some meanwhile).
        let sequential: std::collections::BTreeSet<u32> = (0..100)
            .map(|_| {
                // SAFETY: null is allowed.
                std::thread::spawn(|| unsafe {
                    KeGetCurrentProcessorNumberEx(core::ptr::null_mut())
                })
                .join()
                .unwrap()
            })
            .collect();
        assert!(sequential.len() < 50, "{sequential:?}");
    }
}
