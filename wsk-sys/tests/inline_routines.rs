//! The Rust versions of the WDK's inline routines and macros, checked against what the WDK's
//! definitions compute, on IRPs and MDLs laid out in ordinary memory.

use core::mem::size_of;

use wsk_sys::*;

/// Memory for an IRP with `N` stack locations, initialised as `IoInitializeIrp` leaves it:
/// the current location is one past the last.
#[repr(C, align(16))]
struct IrpMemory<const N: usize> {
    irp: IRP,
    stack: [IO_STACK_LOCATION; N],
}

impl<const N: usize> IrpMemory<N> {
    fn new() -> Box<Self> {
        let mut memory = Box::new(IrpMemory {
            irp: IRP::default(),
            stack: [IO_STACK_LOCATION::default(); N],
        });
        memory.irp.StackCount = N as CHAR;
        memory.irp.CurrentLocation = N as CHAR + 1;
        // SAFETY: one past the end of the stack array, as the I/O manager sets it.
        memory.irp.Tail.Overlay.Packet.Stack.CurrentStackLocation =
            unsafe { memory.stack.as_mut_ptr().add(N) };
        memory
    }
}

unsafe extern "system" fn routine(_: PDEVICE_OBJECT, _: PIRP, _: PVOID) -> NTSTATUS {
    STATUS_MORE_PROCESSING_REQUIRED
}

unsafe extern "system" fn cancel(_: PDEVICE_OBJECT, _: PIRP) {}

#[test]
fn irp_size_counts_stack_locations() {
    assert_eq!(IoSizeOfIrp(1) as usize, 0xd0 + 0x48);
    assert_eq!(IoSizeOfIrp(3) as usize, 0xd0 + 3 * 0x48);
}

#[test]
fn completion_routine_goes_into_the_next_location() {
    let mut memory = IrpMemory::<2>::new();
    let irp: PIRP = &mut memory.irp;
    let context = 0x1234usize as PVOID;
    // SAFETY: the IRP has two stack locations below its current one.
    unsafe {
        assert_eq!(IoGetNextIrpStackLocation(irp), &raw mut memory.stack[1]);
        IoSetCompletionRoutine(irp, Some(routine), context, true, false, true);
    }
    let location = &memory.stack[1];
    assert_eq!(location.Context, context);
    assert_eq!(location.Control, SL_INVOKE_ON_SUCCESS | SL_INVOKE_ON_CANCEL);
    assert!(location.CompletionRoutine.is_some());
}

#[test]
fn stack_location_moves_like_io_call_driver() {
    let mut memory = IrpMemory::<2>::new();
    let irp: PIRP = &mut memory.irp;
    // SAFETY: the IRP has stack locations to move through.
    unsafe {
        IoSetNextIrpStackLocation(irp);
        assert_eq!((*irp).CurrentLocation, 2);
        assert_eq!(IoGetCurrentIrpStackLocation(irp), &raw mut memory.stack[1]);
        IoMarkIrpPending(irp);
        assert_eq!(
            memory.stack[1].Control & SL_PENDING_RETURNED,
            SL_PENDING_RETURNED
        );
        memory.stack[1].MajorFunction = 0x0e;
        IoCopyCurrentIrpStackLocationToNext(irp);
        assert_eq!(memory.stack[0].MajorFunction, 0x0e);
        assert_eq!(memory.stack[0].Control, 0);
        IoSkipCurrentIrpStackLocation(irp);
        assert_eq!((*irp).CurrentLocation, 3);
    }
}

#[test]
fn cancel_routine_exchange_returns_the_previous_one() {
    let mut memory = IrpMemory::<1>::new();
    let irp: PIRP = &mut memory.irp;
    // SAFETY: a valid IRP.
    unsafe {
        assert!(IoSetCancelRoutine(irp, Some(cancel)).is_none());
        assert!(IoSetCancelRoutine(irp, None).is_some());
        assert!((*irp).CancelRoutine.is_none());
    }
}

#[test]
fn mdl_geometry_follows_pages() {
    let va = 0x1000_0ff0usize as *const core::ffi::c_void;
    assert_eq!(BYTE_OFFSET(va), 0xff0);
    assert_eq!(PAGE_ALIGN(va) as usize, 0x1000_0000);
    assert_eq!(ADDRESS_AND_SIZE_TO_SPAN_PAGES(va, 0x10), 1);
    assert_eq!(ADDRESS_AND_SIZE_TO_SPAN_PAGES(va, 0x11), 2);
    assert_eq!(
        MmSizeOfMdl(va, 0x11),
        size_of::<MDL>() + 2 * size_of::<PFN_NUMBER>()
    );
}

#[test]
fn initialised_mdl_describes_the_buffer() {
    let mut data = vec![0u8; 10_000];
    let base = data.as_mut_ptr().cast::<core::ffi::c_void>();
    let size = MmSizeOfMdl(base, data.len());
    let mut storage = vec![0u64; size.div_ceil(8)];
    let mdl = storage.as_mut_ptr().cast::<MDL>();
    // SAFETY: `storage` has room for the MDL and its page array.
    unsafe {
        MmInitializeMdl(mdl, base, data.len());
        assert_eq!(MmGetMdlVirtualAddress(mdl), base);
        assert_eq!(MmGetMdlByteCount(mdl) as usize, data.len());
        assert_eq!(MmGetMdlByteOffset(mdl), BYTE_OFFSET(base));
        assert_eq!(
            MmGetMdlPfnArray(mdl).cast::<u8>(),
            mdl.cast::<u8>().add(size_of::<MDL>())
        );
        (*mdl).MdlFlags = MDL_SOURCE_IS_NONPAGED_POOL;
        (*mdl).MappedSystemVa = base;
        assert_eq!(MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority), base);
    }
}

/// What the kernel's `MmMapLockedPagesSpecifyCache` was last asked: this test binary supplies
/// the export (as a user-mode kernel would) to observe how `MmGetSystemAddressForMdlSafe`
/// calls it.
static MAPPING_REQUESTS: std::sync::Mutex<Vec<(usize, i8, i32, u32)>> =
    std::sync::Mutex::new(Vec::new());

#[unsafe(no_mangle)]
extern "system" fn MmMapLockedPagesSpecifyCache(
    mdl: PMDL,
    mode: KPROCESSOR_MODE,
    cache: MEMORY_CACHING_TYPE,
    _requested: PVOID,
    _bug_check: ULONG,
    priority: ULONG,
) -> PVOID {
    MAPPING_REQUESTS
        .lock()
        .unwrap()
        .push((mdl as usize, mode, cache, priority));
    // SAFETY: the test's MDLs describe live buffers.
    unsafe { MmGetMdlVirtualAddress(mdl) }
}

#[test]
fn unmapped_mdl_is_mapped_through_the_kernel() {
    let mut data = vec![0u8; 64];
    let base = data.as_mut_ptr().cast::<core::ffi::c_void>();
    let mut storage = vec![0u64; MmSizeOfMdl(base, data.len()).div_ceil(8)];
    let mdl = storage.as_mut_ptr().cast::<MDL>();
    // SAFETY: `storage` has room for the MDL; the MDL describes `data`, which is alive.
    let mapped = unsafe {
        MmInitializeMdl(mdl, base, data.len());
        (*mdl).MdlFlags = MDL_PAGES_LOCKED;
        MmGetSystemAddressForMdlSafe(mdl, HighPagePriority | MdlMappingNoExecute)
    };
    assert_eq!(mapped, base);
    let requests = MAPPING_REQUESTS.lock().unwrap();
    assert!(requests.contains(&(
        mdl as usize,
        KernelMode,
        MmCached,
        HighPagePriority | MdlMappingNoExecute
    )));
}

#[test]
fn versions_and_statuses() {
    assert_eq!(MAKE_WSK_VERSION(1, 0), 0x0100);
    assert_eq!(WSK_MAJOR_VERSION(MAKE_WSK_VERSION(2, 7)), 2);
    assert_eq!(WSK_MINOR_VERSION(MAKE_WSK_VERSION(2, 7)), 7);
    assert!(NT_SUCCESS(STATUS_SUCCESS) && NT_SUCCESS(STATUS_PENDING));
    assert!(NT_ERROR(STATUS_CANCELLED) && !NT_SUCCESS(STATUS_CANCELLED));
    assert!(NT_WARNING(STATUS_BUFFER_OVERFLOW));
    assert!(NT_INFORMATION(STATUS_EVENT_PENDING));
    assert_eq!(STATUS_MORE_PROCESSING_REQUIRED as u32, 0xC000_0016);
    assert_eq!(NPI_WSK_INTERFACE_ID.Data1, 0x2227_E803);
}

#[test]
fn object_attributes_match_the_macro() {
    let mut name = UNICODE_STRING::default();
    let mut attributes = OBJECT_ATTRIBUTES::default();
    // SAFETY: both structures are valid for the call and outlive the use.
    unsafe {
        InitializeObjectAttributes(
            &mut attributes,
            &mut name,
            OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        );
    }
    assert_eq!(attributes.Length as usize, size_of::<OBJECT_ATTRIBUTES>());
    assert_eq!(attributes.ObjectName, &raw mut name);
    assert_eq!(attributes.Attributes, 0x240);
}

#[test]
fn spin_lock_initialises_to_released() {
    let mut lock: KSPIN_LOCK = 7;
    // SAFETY: a writable, unheld lock.
    unsafe { KeInitializeSpinLock(&mut lock) };
    assert_eq!(lock, 0);
}

#[test]
fn windows_widths_on_every_host() {
    assert_eq!(size_of::<ULONG>(), 4);
    assert_eq!(size_of::<LONG>(), 4);
    assert_eq!(size_of::<SIZE_T>(), 8);
    assert_eq!(size_of::<WSK_BUF>(), 24);
    assert_eq!(size_of::<WSK_PROVIDER_CONNECTION_DISPATCH>(), 13 * 8);
    assert_eq!(size_of::<WSK_PROVIDER_STREAM_DISPATCH>(), 15 * 8);
}
