//! A canary buffer: pool memory a test hands to the provider as an `IoBufMut`, whose drop
//! poisons it and keeps it for a later check — a provider write after the buffer was handed
//! back shows there.

use std::sync::{Arc, Mutex};

use wsk::{IoBuf, IoBufMut};
use wsk_sys::*;

/// The pool tag of canaries.
const TAG: u32 = u32::from_le_bytes(*b"WskC");

/// Memory of dropped canaries: (address, size, MDL), poisoned with 0xEE at the drop, freed only
/// by `Quarantine::check_and_free` — which fails if anyone (the provider) wrote it after.
#[derive(Default)]
pub struct Quarantine(Mutex<Vec<(usize, usize, usize)>>);

impl Quarantine {
    pub fn check_and_free(&self) -> usize {
        let mut list = self.0.lock().unwrap();
        let count = list.len();
        for (data, size, mdl) in list.drain(..) {
            // SAFETY: the canary's memory, quarantined at its drop, freed only here.
            unsafe {
                let bytes = std::slice::from_raw_parts(data as *const u8, size);
                let written = bytes.iter().position(|&b| b != 0xEE);
                assert!(
                    written.is_none(),
                    "a dropped buffer was written after its drop at {written:?}: {:?}",
                    &bytes[..size.min(32)]
                );
                IoFreeMdl(mdl as PMDL);
                ExFreePoolWithTag(data as PVOID, TAG);
            }
        }
        count
    }
}

/// An `IoBufMut` of pool memory (what a driver may write), poisoned and quarantined when
/// dropped. The spare capacity is filled with 0x5A at creation, so writes after a hand-back are
/// visible too.
pub struct Canary {
    data: *mut u8,
    len: usize,
    cap: usize,
    mdl: PMDL,
    quarantine: Option<Arc<Quarantine>>,
}

// SAFETY: pool memory and its MDL, owned.
unsafe impl Send for Canary {}

impl Canary {
    pub fn new(quarantine: &Arc<Quarantine>, prefix: &[u8], cap: usize) -> Canary {
        assert!(prefix.len() <= cap);
        // SAFETY: non-zero size; PASSIVE_LEVEL.
        let data = unsafe { pool::allocate_non_paged_zeroed(cap as SIZE_T, TAG) }.cast::<u8>();
        assert!(!data.is_null());
        // SAFETY: fresh allocation of `cap` bytes.
        unsafe {
            std::ptr::write_bytes(data, 0x5A, cap);
            std::ptr::copy_nonoverlapping(prefix.as_ptr(), data, prefix.len());
        }
        // SAFETY: describes the allocation just made.
        let mdl = unsafe {
            IoAllocateMdl(
                data.cast(),
                cap as ULONG,
                FALSE,
                FALSE,
                std::ptr::null_mut(),
            )
        };
        assert!(!mdl.is_null());
        // SAFETY: non-paged pool.
        unsafe { MmBuildMdlForNonPagedPool(mdl) };
        Canary {
            data,
            len: prefix.len(),
            cap,
            mdl,
            quarantine: Some(Arc::clone(quarantine)),
        }
    }

    pub fn all(&self) -> &[u8] {
        if self.cap == 0 {
            return &[];
        }
        // SAFETY: owned allocation of `cap` bytes (the provider does not hold it: only called
        // on a buffer handed back).
        unsafe { std::slice::from_raw_parts(self.data, self.cap) }
    }

    pub fn data(&self) -> &[u8] {
        &self.all()[..self.len]
    }

    pub fn spare_untouched(&self) -> bool {
        self.all()[self.len..].iter().all(|&b| b == 0x5A)
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        if self.cap == 0 {
            return;
        }
        // SAFETY: owned; poisoned, then handed to the quarantine (freed there).
        unsafe { std::ptr::write_bytes(self.data, 0xEE, self.cap) };
        self.quarantine.as_ref().unwrap().0.lock().unwrap().push((
            self.data as usize,
            self.cap,
            self.mdl as usize,
        ));
    }
}

// SAFETY: the MDL describes `cap` bytes of non-paged pool owned by the value, which do not move
// with it; len <= cap; the stand-in has capacity 0.
unsafe impl IoBuf for Canary {
    fn mdl(&self) -> PMDL {
        self.mdl
    }
    fn mdl_offset(&self) -> usize {
        0
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.cap
    }
    fn stand_in() -> Canary {
        Canary {
            data: std::ptr::null_mut(),
            len: 0,
            cap: 0,
            mdl: std::ptr::null_mut(),
            quarantine: None,
        }
    }
}

// SAFETY: the spare capacity is the value's own.
unsafe impl IoBufMut for Canary {
    unsafe fn set_init(&mut self, count: usize) {
        assert!(count <= self.cap);
        if count > self.len {
            self.len = count;
        }
    }
}
