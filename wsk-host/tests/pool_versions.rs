//! Pool on every Windows release from Windows 7: `MmGetSystemRoutineAddress` finds
//! `ExAllocatePool2` only where the emulated system exports it, `wsk_sys::pool` falls back to
//! `ExAllocatePoolWithTag` (`NonPagedPoolNx` from Windows 8, `NonPagedPool` before) and zeroes,
//! and calling what an older system lacks is a finding.

use std::collections::BTreeSet;

use wsk_host::{ProviderConfig, Rule, Session, Violation};
use wsk_sys::pool::Strategy;
use wsk_sys::*;

const TAG: ULONG = u32::from_le_bytes(*b"Test");

fn on(os_version: (u32, u32, u32)) -> ProviderConfig {
    ProviderConfig {
        os_version,
        ..ProviderConfig::default()
    }
}

/// Runs `code` in a session on `os_version`; returns every finding.
fn findings(os_version: (u32, u32, u32), code: impl FnOnce()) -> Vec<Violation> {
    let session = Session::with_config(on(os_version));
    code();
    session.conclude().1
}

fn routine_address(name: &str) -> PVOID {
    let mut wide: Vec<u16> = name.encode_utf16().collect();
    let mut string = UNICODE_STRING {
        Length: (wide.len() * 2) as u16,
        MaximumLength: (wide.len() * 2) as u16,
        Buffer: wide.as_mut_ptr(),
    };
    // SAFETY: PASSIVE_LEVEL; a valid counted string.
    unsafe { MmGetSystemRoutineAddress(&mut string) }
}

/// Allocates through `wsk_sys::pool` after looking up the routines, checks the block is
/// zeroed (or not, when uninitialised memory was asked for), and frees it.
fn allocate_and_free(zeroed: bool) -> Vec<u8> {
    // SAFETY: PASSIVE_LEVEL, a non-zero size and tag.
    let block = unsafe {
        if zeroed {
            pool::allocate_non_paged_zeroed(64, TAG)
        } else {
            pool::allocate_non_paged_uninitialized(64, TAG)
        }
    };
    assert!(!block.is_null());
    // SAFETY: a live block of 64 bytes.
    let bytes = unsafe { std::slice::from_raw_parts(block.cast::<u8>(), 64) }.to_vec();
    // SAFETY: allocated above with this tag.
    unsafe { ExFreePoolWithTag(block, TAG) };
    bytes
}

#[test]
fn the_lookup_finds_allocate_pool2_from_windows_10_2004_only() {
    for (version, exported) in [
        ((6, 1, 7601), false),
        ((6, 3, 9600), false),
        ((10, 0, 18363), false),
        ((10, 0, 19041), true),
        ((10, 0, 26100), true),
    ] {
        let found = findings(version, || {
            assert_eq!(!routine_address("ExAllocatePool2").is_null(), exported);
            assert!(!routine_address("ExAllocatePoolWithTag").is_null());
            assert!(routine_address("NoSuchRoutine").is_null());
        });
        assert_eq!(found, Vec::new(), "{version:?}");
    }
}

#[test]
fn each_release_gets_its_strategy_and_zeroed_memory() {
    for (version, strategy) in [
        ((6, 1, 7601), Strategy::WithTagExecutable),
        ((6, 2, 9200), Strategy::WithTagNoExecute),
        ((10, 0, 18363), Strategy::WithTagNoExecute),
        ((10, 0, 19041), Strategy::AllocatePool2),
    ] {
        let found = findings(version, || {
            assert_eq!(pool::initialize(), Some(strategy), "{version:?}");
            assert_eq!(pool::strategy(), Some(strategy));
            assert!(
                allocate_and_free(true).iter().all(|&b| b == 0),
                "{version:?}"
            );
            // Uninitialised blocks from ExAllocatePoolWithTag keep wsk-host's fill pattern.
            let uninitialized = allocate_and_free(false);
            if strategy != Strategy::AllocatePool2 {
                assert!(uninitialized.iter().all(|&b| b == 0xcd), "{version:?}");
            }
        });
        assert_eq!(found, Vec::new(), "{version:?}");
    }
}

#[test]
fn the_lookup_needs_passive_level() {
    let found = findings((10, 0, 22631), || {
        let old = KeRaiseIrqlToDpcLevel();
        assert_eq!(pool::initialize(), None);
        // SAFETY: back to the IRQL the raise returned.
        unsafe { KeLowerIrql(old) };
    });
    assert_eq!(found, Vec::new());
}

fn rules(found: &[Violation]) -> BTreeSet<&'static str> {
    found.iter().map(|v| v.rule.name()).collect()
}

#[test]
fn allocate_pool2_before_windows_10_2004_is_a_finding() {
    let found = findings((6, 3, 9600), || {
        // SAFETY: PASSIVE_LEVEL, a non-zero size and tag; the call is the finding.
        let block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, 16, TAG) };
        assert!(block.is_null());
    });
    assert_eq!(
        rules(&found),
        BTreeSet::from([Rule::InvalidParameter.name()])
    );
    assert!(found[0].details.contains("ExAllocatePool2"), "{found:#?}");
}

#[test]
fn no_execute_pool_before_windows_8_is_a_finding() {
    let found = findings((6, 1, 7601), || {
        // SAFETY: PASSIVE_LEVEL, a non-zero size and tag; the pool type is the finding.
        let block = unsafe { ExAllocatePoolWithTag(NonPagedPoolNx, 16, TAG) };
        assert!(block.is_null());
    });
    assert_eq!(
        rules(&found),
        BTreeSet::from([Rule::InvalidParameter.name()])
    );
    assert!(found[0].details.contains("BAD_POOL_CALLER"), "{found:#?}");
}
