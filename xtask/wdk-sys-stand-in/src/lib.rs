//! A stand-in for `wdk-sys` 0.5 (windows-drivers-rs), for compiling `wsk-sys` and `wsk` with
//! their `wdk-sys` feature where the WDK is not installed (see `README.md`).
//!
//! Every item has the name, the path and the type that `wdk-sys` 0.5 gives it: its root holds
//! the WDK's types (`types.rs`) and constants (`constants.rs`, `#define` values as bindgen types
//! them: `u32`), enumerations are modules of constants (`_POOL_TYPE::NonPagedPool`), routines
//! are in `ntddk` and use the `"C"` ABI (bindgen's for the WDK's 64-bit routines), and the
//! WDK's anonymous members are `__bindgen_anon_N`. A structure has the WDK's size and
//! alignment; its members are spelled out where `wsk-sys` or `wsk` touches them, the others are
//! a private filler of the same size. `cargo xtask wdk-sys-check` compares every item with
//! what wdk-sys's generator makes of the same declarations (see `README.md`).
#![no_std]
#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals, missing_docs)]

pub type UCHAR = core::ffi::c_uchar;
pub type CHAR = core::ffi::c_char;
pub type CCHAR = core::ffi::c_char;
pub type USHORT = core::ffi::c_ushort;
pub type CSHORT = core::ffi::c_short;
pub type SHORT = core::ffi::c_short;
pub type ULONG = core::ffi::c_ulong;
pub type LONG = core::ffi::c_long;
pub type LONGLONG = core::ffi::c_longlong;
pub type ULONGLONG = core::ffi::c_ulonglong;
pub type ULONG64 = core::ffi::c_ulonglong;
pub type ULONG_PTR = core::ffi::c_ulonglong;
pub type LONG_PTR = core::ffi::c_longlong;
pub type SIZE_T = ULONG_PTR;
pub type BOOLEAN = UCHAR;
pub type WCHAR = core::ffi::c_ushort;
pub type PVOID = *mut core::ffi::c_void;
pub type HANDLE = PVOID;
pub type PHANDLE = *mut HANDLE;
pub type PUCHAR = *mut UCHAR;
pub type PCHAR = *mut CHAR;
pub type PCSTR = *const CHAR;
pub type PWSTR = *mut WCHAR;
pub type PCWSTR = *const WCHAR;
pub type PULONG = *mut ULONG;
pub type PUSHORT = *mut USHORT;
pub type PLONG = *mut LONG;
pub type PULONG_PTR = *mut ULONG_PTR;
pub type PSIZE_T = *mut ULONG_PTR;
pub type PBOOLEAN = *mut BOOLEAN;
pub type ACCESS_MASK = ULONG;
pub type NTSTATUS = LONG;
pub type KIRQL = UCHAR;
pub type PKIRQL = *mut KIRQL;
pub type KPROCESSOR_MODE = CCHAR;
pub type KPRIORITY = LONG;
pub type KSPIN_LOCK = ULONG_PTR;
pub type PKSPIN_LOCK = *mut KSPIN_LOCK;
pub type POOL_FLAGS = ULONG64;
pub type PFN_NUMBER = ULONG_PTR;
pub type PSECURITY_DESCRIPTOR = PVOID;

pub const PASSIVE_LEVEL: u32 = 0;
pub const APC_LEVEL: u32 = 1;
pub const DISPATCH_LEVEL: u32 = 2;
pub const TRUE: u32 = 1;
pub const FALSE: u32 = 0;
pub const IO_NO_INCREMENT: u32 = 0;
pub const IO_NETWORK_INCREMENT: u32 = 2;
pub const PAGE_SIZE: u32 = 4096;
pub const PAGE_SHIFT: u32 = 12;
pub const MDL_MAPPED_TO_SYSTEM_VA: u32 = 1;
pub const MDL_PAGES_LOCKED: u32 = 2;
pub const MDL_SOURCE_IS_NONPAGED_POOL: u32 = 4;
pub const MDL_ALLOCATED_FIXED_SIZE: u32 = 8;
pub const MDL_PARTIAL: u32 = 16;
pub const MDL_PARTIAL_HAS_BEEN_MAPPED: u32 = 32;
pub const MDL_MAPPING_CAN_FAIL: u32 = 8192;
pub const MdlMappingNoExecute: u32 = 1073741824;
pub const SL_PENDING_RETURNED: u32 = 1;
pub const SL_ERROR_RETURNED: u32 = 2;
pub const SL_INVOKE_ON_CANCEL: u32 = 32;
pub const SL_INVOKE_ON_SUCCESS: u32 = 64;
pub const SL_INVOKE_ON_ERROR: u32 = 128;
pub const OBJ_CASE_INSENSITIVE: u32 = 64;
pub const OBJ_KERNEL_HANDLE: u32 = 512;
pub const KEY_QUERY_VALUE: u32 = 1;
pub const KEY_READ: u32 = 131097;
pub const REG_SZ: u32 = 1;
pub const REG_DWORD: u32 = 4;
pub const REG_MULTI_SZ: u32 = 7;
pub const POOL_FLAG_UNINITIALIZED: POOL_FLAGS = 2;
pub const POOL_FLAG_NON_PAGED: POOL_FLAGS = 64;
pub const POOL_FLAG_PAGED: POOL_FLAGS = 256;

pub mod _MODE {
    pub type Type = core::ffi::c_int;
    pub const KernelMode: Type = 0;
    pub const UserMode: Type = 1;
}
pub use self::_MODE::Type as MODE;
pub mod _POOL_TYPE {
    pub type Type = core::ffi::c_int;
    pub const NonPagedPool: Type = 0;
    pub const PagedPool: Type = 1;
    pub const NonPagedPoolNx: Type = 512;
}
pub use self::_POOL_TYPE::Type as POOL_TYPE;
pub mod _LOCK_OPERATION {
    pub type Type = core::ffi::c_int;
    pub const IoReadAccess: Type = 0;
    pub const IoWriteAccess: Type = 1;
    pub const IoModifyAccess: Type = 2;
}
pub use self::_LOCK_OPERATION::Type as LOCK_OPERATION;
pub mod _MEMORY_CACHING_TYPE {
    pub type Type = core::ffi::c_int;
    pub const MmNonCached: Type = 0;
    pub const MmCached: Type = 1;
    pub const MmWriteCombined: Type = 2;
}
pub use self::_MEMORY_CACHING_TYPE::Type as MEMORY_CACHING_TYPE;
pub mod _MM_PAGE_PRIORITY {
    pub type Type = core::ffi::c_int;
    pub const LowPagePriority: Type = 0;
    pub const NormalPagePriority: Type = 16;
    pub const HighPagePriority: Type = 32;
}
pub use self::_MM_PAGE_PRIORITY::Type as MM_PAGE_PRIORITY;
pub mod _EVENT_TYPE {
    pub type Type = core::ffi::c_int;
    pub const NotificationEvent: Type = 0;
    pub const SynchronizationEvent: Type = 1;
}
pub use self::_EVENT_TYPE::Type as EVENT_TYPE;
pub mod _TIMER_TYPE {
    pub type Type = core::ffi::c_int;
    pub const NotificationTimer: Type = 0;
    pub const SynchronizationTimer: Type = 1;
}
pub use self::_TIMER_TYPE::Type as TIMER_TYPE;
pub mod _KWAIT_REASON {
    pub type Type = core::ffi::c_int;
    pub const Executive: Type = 0;
    pub const FreePage: Type = 1;
    pub const PageIn: Type = 2;
    pub const UserRequest: Type = 6;
}
pub use self::_KWAIT_REASON::Type as KWAIT_REASON;
pub mod _WORK_QUEUE_TYPE {
    pub type Type = core::ffi::c_int;
    pub const CriticalWorkQueue: Type = 0;
    pub const DelayedWorkQueue: Type = 1;
    pub const HyperCriticalWorkQueue: Type = 2;
}
pub use self::_WORK_QUEUE_TYPE::Type as WORK_QUEUE_TYPE;
pub mod _KEY_VALUE_INFORMATION_CLASS {
    pub type Type = core::ffi::c_int;
    pub const KeyValueBasicInformation: Type = 0;
    pub const KeyValueFullInformation: Type = 1;
    pub const KeyValuePartialInformation: Type = 2;
}
pub use self::_KEY_VALUE_INFORMATION_CLASS::Type as KEY_VALUE_INFORMATION_CLASS;

pub const STATUS_SUCCESS: NTSTATUS = 0_i32;
pub const STATUS_PENDING: NTSTATUS = 259_i32;
pub const STATUS_TIMEOUT: NTSTATUS = 258_i32;
pub const STATUS_ALERTED: NTSTATUS = 257_i32;
pub const STATUS_USER_APC: NTSTATUS = 192_i32;
pub const STATUS_EVENT_PENDING: NTSTATUS = 1073741843_i32;
pub const STATUS_MORE_PROCESSING_REQUIRED: NTSTATUS = -1073741802_i32;
pub const STATUS_BUFFER_OVERFLOW: NTSTATUS = -2147483643_i32;
pub const STATUS_UNSUCCESSFUL: NTSTATUS = -1073741823_i32;
pub const STATUS_NOT_IMPLEMENTED: NTSTATUS = -1073741822_i32;
pub const STATUS_INVALID_HANDLE: NTSTATUS = -1073741816_i32;
pub const STATUS_NO_SUCH_DEVICE: NTSTATUS = -1073741810_i32;
pub const STATUS_INVALID_PARAMETER: NTSTATUS = -1073741811_i32;
pub const STATUS_INVALID_DEVICE_REQUEST: NTSTATUS = -1073741808_i32;
pub const STATUS_END_OF_FILE: NTSTATUS = -1073741807_i32;
pub const STATUS_NO_MEMORY: NTSTATUS = -1073741801_i32;
pub const STATUS_ACCESS_DENIED: NTSTATUS = -1073741790_i32;
pub const STATUS_BUFFER_TOO_SMALL: NTSTATUS = -1073741789_i32;
pub const STATUS_OBJECT_TYPE_MISMATCH: NTSTATUS = -1073741788_i32;
pub const STATUS_INVALID_PARAMETER_MIX: NTSTATUS = -1073741776_i32;
pub const STATUS_OBJECT_NAME_INVALID: NTSTATUS = -1073741773_i32;
pub const STATUS_OBJECT_NAME_NOT_FOUND: NTSTATUS = -1073741772_i32;
pub const STATUS_SHARING_VIOLATION: NTSTATUS = -1073741757_i32;
pub const STATUS_DELETE_PENDING: NTSTATUS = -1073741738_i32;
pub const STATUS_INTEGER_OVERFLOW: NTSTATUS = -1073741675_i32;
pub const STATUS_INSUFFICIENT_RESOURCES: NTSTATUS = -1073741670_i32;
pub const STATUS_DEVICE_NOT_READY: NTSTATUS = -1073741661_i32;
pub const STATUS_IO_TIMEOUT: NTSTATUS = -1073741643_i32;
pub const STATUS_FILE_FORCED_CLOSED: NTSTATUS = -1073741642_i32;
pub const STATUS_NOT_SUPPORTED: NTSTATUS = -1073741637_i32;
pub const STATUS_BAD_NETWORK_PATH: NTSTATUS = -1073741634_i32;
pub const STATUS_NETWORK_BUSY: NTSTATUS = -1073741633_i32;
pub const STATUS_INVALID_NETWORK_RESPONSE: NTSTATUS = -1073741629_i32;
pub const STATUS_REQUEST_NOT_ACCEPTED: NTSTATUS = -1073741616_i32;
pub const STATUS_CANCELLED: NTSTATUS = -1073741536_i32;
pub const STATUS_REMOTE_DISCONNECT: NTSTATUS = -1073741508_i32;
pub const STATUS_INVALID_CONNECTION: NTSTATUS = -1073741504_i32;
pub const STATUS_INVALID_ADDRESS: NTSTATUS = -1073741503_i32;
pub const STATUS_INVALID_DEVICE_STATE: NTSTATUS = -1073741436_i32;
pub const STATUS_INVALID_BUFFER_SIZE: NTSTATUS = -1073741306_i32;
pub const STATUS_INVALID_ADDRESS_COMPONENT: NTSTATUS = -1073741305_i32;
pub const STATUS_TOO_MANY_ADDRESSES: NTSTATUS = -1073741303_i32;
pub const STATUS_ADDRESS_ALREADY_EXISTS: NTSTATUS = -1073741302_i32;
pub const STATUS_ADDRESS_CLOSED: NTSTATUS = -1073741301_i32;
pub const STATUS_CONNECTION_DISCONNECTED: NTSTATUS = -1073741300_i32;
pub const STATUS_CONNECTION_RESET: NTSTATUS = -1073741299_i32;
pub const STATUS_TRANSACTION_ABORTED: NTSTATUS = -1073741297_i32;
pub const STATUS_DATA_NOT_ACCEPTED: NTSTATUS = -1073741285_i32;
pub const STATUS_NOT_FOUND: NTSTATUS = -1073741275_i32;
pub const STATUS_RETRY: NTSTATUS = -1073741267_i32;
pub const STATUS_CONNECTION_REFUSED: NTSTATUS = -1073741258_i32;
pub const STATUS_GRACEFUL_DISCONNECT: NTSTATUS = -1073741257_i32;
pub const STATUS_ADDRESS_ALREADY_ASSOCIATED: NTSTATUS = -1073741256_i32;
pub const STATUS_CONNECTION_INVALID: NTSTATUS = -1073741254_i32;
pub const STATUS_CONNECTION_ACTIVE: NTSTATUS = -1073741253_i32;
pub const STATUS_NETWORK_UNREACHABLE: NTSTATUS = -1073741252_i32;
pub const STATUS_HOST_UNREACHABLE: NTSTATUS = -1073741251_i32;
pub const STATUS_PROTOCOL_UNREACHABLE: NTSTATUS = -1073741250_i32;
pub const STATUS_PORT_UNREACHABLE: NTSTATUS = -1073741249_i32;
pub const STATUS_REQUEST_ABORTED: NTSTATUS = -1073741248_i32;
pub const STATUS_CONNECTION_ABORTED: NTSTATUS = -1073741247_i32;
pub const STATUS_NOINTERFACE: NTSTATUS = -1073741127_i32;
pub const STATUS_HOST_DOWN: NTSTATUS = -1073740976_i32;

#[must_use]
pub const fn NT_SUCCESS(nt_status: NTSTATUS) -> bool {
    nt_status >= 0
}
#[must_use]
pub const fn NT_INFORMATION(nt_status: NTSTATUS) -> bool {
    (nt_status as u32 >> 30) == 1
}
#[must_use]
pub const fn NT_WARNING(nt_status: NTSTATUS) -> bool {
    (nt_status as u32 >> 30) == 2
}
#[must_use]
pub const fn NT_ERROR(nt_status: NTSTATUS) -> bool {
    (nt_status as u32 >> 30) == 3
}

#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct _LIST_ENTRY {
    pub Flink: *mut _LIST_ENTRY,
    pub Blink: *mut _LIST_ENTRY,
}
pub type LIST_ENTRY = _LIST_ENTRY;
pub type PLIST_ENTRY = *mut _LIST_ENTRY;

#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct _LARGE_INTEGER__bindgen_ty_1 {
    pub LowPart: ULONG,
    pub HighPart: LONG,
}
#[repr(C)]
#[derive(Copy, Clone)]
pub union _LARGE_INTEGER {
    pub __bindgen_anon_1: _LARGE_INTEGER__bindgen_ty_1,
    pub u: _LARGE_INTEGER__bindgen_ty_1,
    pub QuadPart: LONGLONG,
}
pub type LARGE_INTEGER = _LARGE_INTEGER;
pub type PLARGE_INTEGER = *mut LARGE_INTEGER;

#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct _PROCESSOR_NUMBER {
    pub Group: USHORT,
    pub Number: UCHAR,
    pub Reserved: UCHAR,
}
pub type PROCESSOR_NUMBER = _PROCESSOR_NUMBER;
pub type PPROCESSOR_NUMBER = *mut _PROCESSOR_NUMBER;

#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct _UNICODE_STRING {
    pub Length: USHORT,
    pub MaximumLength: USHORT,
    pub Buffer: PWCH,
}
pub type PWCH = *mut WCHAR;
pub type UNICODE_STRING = _UNICODE_STRING;
pub type PUNICODE_STRING = *mut UNICODE_STRING;
pub type PCUNICODE_STRING = *const UNICODE_STRING;

#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct _GUID {
    pub Data1: core::ffi::c_ulong,
    pub Data2: core::ffi::c_ushort,
    pub Data3: core::ffi::c_ushort,
    pub Data4: [core::ffi::c_uchar; 8usize],
}
pub type GUID = _GUID;
pub type LPGUID = *mut GUID;

#[repr(C)]
#[derive(Copy, Clone)]
pub union _IO_STATUS_BLOCK__bindgen_ty_1 {
    pub Status: NTSTATUS,
    pub Pointer: PVOID,
}
#[repr(C)]
#[derive(Copy, Clone)]
pub struct _IO_STATUS_BLOCK {
    pub __bindgen_anon_1: _IO_STATUS_BLOCK__bindgen_ty_1,
    pub Information: ULONG_PTR,
}
pub type IO_STATUS_BLOCK = _IO_STATUS_BLOCK;
pub type PIO_STATUS_BLOCK = *mut _IO_STATUS_BLOCK;

#[repr(C)]
#[derive(Debug)]
pub struct _EPROCESS {
    _unused: [u8; 0],
}
pub type PEPROCESS = *mut _EPROCESS;
#[repr(C)]
#[derive(Debug)]
pub struct _ETHREAD {
    _unused: [u8; 0],
}
pub type PETHREAD = *mut _ETHREAD;
#[repr(C)]
#[derive(Debug)]
pub struct _KTHREAD {
    _unused: [u8; 0],
}
pub type PKTHREAD = *mut _KTHREAD;
#[repr(C)]
#[derive(Debug)]
pub struct _IO_WORKITEM {
    _unused: [u8; 0],
}
pub type PIO_WORKITEM = *mut _IO_WORKITEM;

/// Members other than those spelled out: a filler of the WDK's size.
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct Filler<const N: usize>([u8; N]);

#[repr(C, align(8))]
#[derive(Copy, Clone)]
pub struct _DEVICE_OBJECT {
    _members: Filler<0x150>,
}
pub type DEVICE_OBJECT = _DEVICE_OBJECT;
pub type PDEVICE_OBJECT = *mut _DEVICE_OBJECT;
#[repr(C, align(8))]
#[derive(Copy, Clone)]
pub struct _FILE_OBJECT {
    _members: Filler<0xd8>,
}
pub type FILE_OBJECT = _FILE_OBJECT;
pub type PFILE_OBJECT = *mut _FILE_OBJECT;
#[repr(C)]
#[derive(Debug)]
pub struct _DRIVER_EXTENSION {
    _unused: [u8; 0],
}
pub type DRIVER_EXTENSION = _DRIVER_EXTENSION;
pub type PDRIVER_EXTENSION = *mut DRIVER_EXTENSION;
#[repr(C)]
#[derive(Debug)]
pub struct _FAST_IO_DISPATCH {
    _unused: [u8; 0],
}
pub type FAST_IO_DISPATCH = _FAST_IO_DISPATCH;
pub type PFAST_IO_DISPATCH = *mut FAST_IO_DISPATCH;
pub type PDRIVER_INITIALIZE = Option<
    unsafe extern "C" fn(DriverObject: *mut _DRIVER_OBJECT, RegistryPath: PUNICODE_STRING) -> NTSTATUS,
>;
pub type PDRIVER_STARTIO =
    Option<unsafe extern "C" fn(DeviceObject: *mut _DEVICE_OBJECT, Irp: *mut _IRP)>;
/// Spelled out (the windows-drivers-rs example sets `DriverUnload`).
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _DRIVER_OBJECT {
    pub Type: CSHORT,
    pub Size: CSHORT,
    pub DeviceObject: PDEVICE_OBJECT,
    pub Flags: ULONG,
    pub DriverStart: PVOID,
    pub DriverSize: ULONG,
    pub DriverSection: PVOID,
    pub DriverExtension: PDRIVER_EXTENSION,
    pub DriverName: UNICODE_STRING,
    pub HardwareDatabase: PUNICODE_STRING,
    pub FastIoDispatch: PFAST_IO_DISPATCH,
    pub DriverInit: PDRIVER_INITIALIZE,
    pub DriverStartIo: PDRIVER_STARTIO,
    pub DriverUnload: PDRIVER_UNLOAD,
    pub MajorFunction: [PDRIVER_DISPATCH; 28usize],
}
pub type DRIVER_OBJECT = _DRIVER_OBJECT;
pub type PDRIVER_OBJECT = *mut _DRIVER_OBJECT;

#[repr(C)]
#[derive(Copy, Clone)]
pub struct _DISPATCHER_HEADER {
    pub __bindgen_anon_1: _DISPATCHER_HEADER__bindgen_ty_1,
    pub SignalState: LONG,
    pub WaitListHead: LIST_ENTRY,
}
#[repr(C)]
#[derive(Copy, Clone)]
pub union _DISPATCHER_HEADER__bindgen_ty_1 {
    pub Lock: LONG,
    pub LockNV: LONG,
}
pub type DISPATCHER_HEADER = _DISPATCHER_HEADER;
#[repr(C)]
#[derive(Copy, Clone)]
pub struct _KEVENT {
    pub Header: DISPATCHER_HEADER,
}
pub type KEVENT = _KEVENT;
pub type PKEVENT = *mut _KEVENT;
pub type PRKEVENT = *mut _KEVENT;

pub type KAFFINITY = ULONG_PTR;
#[repr(C)]
#[derive(Copy, Clone)]
pub struct _SINGLE_LIST_ENTRY {
    pub Next: *mut _SINGLE_LIST_ENTRY,
}
pub type SINGLE_LIST_ENTRY = _SINGLE_LIST_ENTRY;
pub type PKDEFERRED_ROUTINE = Option<
    unsafe extern "C" fn(
        Dpc: *mut _KDPC,
        DeferredContext: PVOID,
        SystemArgument1: PVOID,
        SystemArgument2: PVOID,
    ),
>;
#[repr(C)]
#[derive(Copy, Clone)]
pub struct _KDPC {
    pub __bindgen_anon_1: _KDPC__bindgen_ty_1,
    pub DpcListEntry: SINGLE_LIST_ENTRY,
    pub ProcessorHistory: KAFFINITY,
    pub DeferredRoutine: PKDEFERRED_ROUTINE,
    pub DeferredContext: PVOID,
    pub SystemArgument1: PVOID,
    pub SystemArgument2: PVOID,
    pub DpcData: PVOID,
}
#[repr(C)]
#[derive(Copy, Clone)]
pub union _KDPC__bindgen_ty_1 {
    pub TargetInfoAsUlong: ULONG,
}
pub type KDPC = _KDPC;
pub type PKDPC = *mut _KDPC;
pub type PRKDPC = *mut _KDPC;
#[repr(C)]
#[derive(Copy, Clone)]
pub struct _KTIMER {
    pub Header: DISPATCHER_HEADER,
    pub DueTime: ULONGLONG,
    pub TimerListEntry: LIST_ENTRY,
    pub Dpc: *mut _KDPC,
    pub Processor: USHORT,
    pub TimerType: USHORT,
    pub Period: ULONG,
}
pub type KTIMER = _KTIMER;
pub type PKTIMER = *mut _KTIMER;

#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _MDL {
    pub Next: *mut _MDL,
    pub Size: CSHORT,
    pub MdlFlags: CSHORT,
    pub Process: *mut _EPROCESS,
    pub MappedSystemVa: PVOID,
    pub StartVa: PVOID,
    pub ByteCount: ULONG,
    pub ByteOffset: ULONG,
}
pub type MDL = _MDL;
pub type PMDL = *mut MDL;

pub type PIO_COMPLETION_ROUTINE = Option<
    unsafe extern "C" fn(DeviceObject: *mut _DEVICE_OBJECT, Irp: *mut _IRP, Context: PVOID) -> NTSTATUS,
>;
pub type PDRIVER_CANCEL =
    Option<unsafe extern "C" fn(DeviceObject: *mut _DEVICE_OBJECT, Irp: *mut _IRP)>;
pub type PDRIVER_UNLOAD = Option<unsafe extern "C" fn(DriverObject: *mut _DRIVER_OBJECT)>;
pub type PDRIVER_DISPATCH =
    Option<unsafe extern "C" fn(DeviceObject: *mut _DEVICE_OBJECT, Irp: *mut _IRP) -> NTSTATUS>;
pub type PIO_WORKITEM_ROUTINE_EX = Option<
    unsafe extern "C" fn(IoObject: PVOID, Context: PVOID, IoWorkItem: PIO_WORKITEM),
>;

#[repr(C)]
#[derive(Copy, Clone)]
pub union _IRP__bindgen_ty_4__bindgen_ty_1__bindgen_ty_2__bindgen_ty_1 {
    pub CurrentStackLocation: *mut _IO_STACK_LOCATION,
    pub PacketType: ULONG,
}
#[repr(C)]
#[derive(Copy, Clone)]
pub struct _IRP__bindgen_ty_4__bindgen_ty_1__bindgen_ty_2 {
    pub ListEntry: LIST_ENTRY,
    pub __bindgen_anon_1: _IRP__bindgen_ty_4__bindgen_ty_1__bindgen_ty_2__bindgen_ty_1,
}
#[repr(C)]
#[derive(Copy, Clone)]
pub struct _IRP__bindgen_ty_4__bindgen_ty_1 {
    pub __bindgen_anon_1: Filler<0x20>,
    pub Thread: PETHREAD,
    pub AuxiliaryBuffer: PCHAR,
    pub __bindgen_anon_2: _IRP__bindgen_ty_4__bindgen_ty_1__bindgen_ty_2,
    pub OriginalFileObject: PFILE_OBJECT,
}
#[repr(C)]
#[derive(Copy, Clone)]
pub union _IRP__bindgen_ty_4 {
    pub Overlay: _IRP__bindgen_ty_4__bindgen_ty_1,
    pub CompletionKey: PVOID,
}
#[repr(C, align(16))]
#[derive(Copy, Clone)]
pub struct _IRP {
    pub Type: CSHORT,
    pub Size: USHORT,
    pub MdlAddress: PMDL,
    pub Flags: ULONG,
    pub AssociatedIrp: Filler<8>,
    pub ThreadListEntry: LIST_ENTRY,
    pub IoStatus: IO_STATUS_BLOCK,
    pub RequestorMode: KPROCESSOR_MODE,
    pub PendingReturned: BOOLEAN,
    pub StackCount: CHAR,
    pub CurrentLocation: CHAR,
    pub Cancel: BOOLEAN,
    pub CancelIrql: KIRQL,
    pub ApcEnvironment: CCHAR,
    pub AllocationFlags: UCHAR,
    pub __bindgen_anon_1: Filler<8>,
    pub UserEvent: PKEVENT,
    pub Overlay: Filler<16>,
    pub CancelRoutine: PDRIVER_CANCEL,
    pub UserBuffer: PVOID,
    pub Tail: _IRP__bindgen_ty_4,
}
pub type IRP = _IRP;
pub type PIRP = *mut IRP;

#[repr(C)]
#[derive(Copy, Clone)]
pub union _IO_STACK_LOCATION__bindgen_ty_1 {
    pub Others: _IO_STACK_LOCATION__bindgen_ty_1__bindgen_ty_1,
}
#[repr(C)]
#[derive(Copy, Clone)]
pub struct _IO_STACK_LOCATION__bindgen_ty_1__bindgen_ty_1 {
    pub Argument1: PVOID,
    pub Argument2: PVOID,
    pub Argument3: PVOID,
    pub Argument4: PVOID,
}
#[repr(C)]
#[derive(Copy, Clone)]
pub struct _IO_STACK_LOCATION {
    pub MajorFunction: UCHAR,
    pub MinorFunction: UCHAR,
    pub Flags: UCHAR,
    pub Control: UCHAR,
    pub Parameters: _IO_STACK_LOCATION__bindgen_ty_1,
    pub DeviceObject: PDEVICE_OBJECT,
    pub FileObject: PFILE_OBJECT,
    pub CompletionRoutine: PIO_COMPLETION_ROUTINE,
    pub Context: PVOID,
}
pub type IO_STACK_LOCATION = _IO_STACK_LOCATION;
pub type PIO_STACK_LOCATION = *mut _IO_STACK_LOCATION;

#[repr(C)]
#[derive(Copy, Clone)]
pub struct _OBJECT_ATTRIBUTES {
    pub Length: ULONG,
    pub RootDirectory: HANDLE,
    pub ObjectName: PUNICODE_STRING,
    pub Attributes: ULONG,
    pub SecurityDescriptor: PVOID,
    pub SecurityQualityOfService: PVOID,
}
pub type OBJECT_ATTRIBUTES = _OBJECT_ATTRIBUTES;
pub type POBJECT_ATTRIBUTES = *mut OBJECT_ATTRIBUTES;

#[repr(C)]
#[derive(Copy, Clone)]
pub struct _OSVERSIONINFOW {
    pub dwOSVersionInfoSize: ULONG,
    pub dwMajorVersion: ULONG,
    pub dwMinorVersion: ULONG,
    pub dwBuildNumber: ULONG,
    pub dwPlatformId: ULONG,
    pub szCSDVersion: [WCHAR; 128usize],
}
impl Default for _OSVERSIONINFOW {
    fn default() -> Self {
        Self {
            dwOSVersionInfoSize: 0,
            dwMajorVersion: 0,
            dwMinorVersion: 0,
            dwBuildNumber: 0,
            dwPlatformId: 0,
            szCSDVersion: [0; 128],
        }
    }
}
pub type RTL_OSVERSIONINFOW = _OSVERSIONINFOW;
pub type PRTL_OSVERSIONINFOW = *mut _OSVERSIONINFOW;

#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct _KEY_VALUE_PARTIAL_INFORMATION {
    pub TitleIndex: ULONG,
    pub Type: ULONG,
    pub DataLength: ULONG,
    pub Data: [UCHAR; 1usize],
}
pub type KEY_VALUE_PARTIAL_INFORMATION = _KEY_VALUE_PARTIAL_INFORMATION;
pub type PKEY_VALUE_PARTIAL_INFORMATION = *mut _KEY_VALUE_PARTIAL_INFORMATION;

/// `derive_default(true)`: bindgen gives every structure and union it generates a `Default`,
/// a zero-filled value where the members cannot derive one (unions, pointers, fillers).
macro_rules! zeroed_default {
    ($($name:ident),* $(,)?) => {$(
        impl Default for $name {
            fn default() -> Self {
                // SAFETY: every member of these C structures is an integer, a raw pointer, an
                // `Option` of a function pointer, or a union or array of them: all zero is a
                // valid value of each.
                unsafe { core::mem::zeroed() }
            }
        }
    )*};
}
zeroed_default!(
    _LARGE_INTEGER,
    _IO_STATUS_BLOCK__bindgen_ty_1,
    _IO_STATUS_BLOCK,
    _DEVICE_OBJECT,
    _FILE_OBJECT,
    _DRIVER_OBJECT,
    _DISPATCHER_HEADER,
    _DISPATCHER_HEADER__bindgen_ty_1,
    _KEVENT,
    _MDL,
    _IRP__bindgen_ty_4__bindgen_ty_1__bindgen_ty_2__bindgen_ty_1,
    _IRP__bindgen_ty_4__bindgen_ty_1__bindgen_ty_2,
    _IRP__bindgen_ty_4__bindgen_ty_1,
    _IRP__bindgen_ty_4,
    _IRP,
    _IO_STACK_LOCATION__bindgen_ty_1,
    _IO_STACK_LOCATION__bindgen_ty_1__bindgen_ty_1,
    _IO_STACK_LOCATION,
    _OBJECT_ATTRIBUTES,
    _SINGLE_LIST_ENTRY,
    _KDPC__bindgen_ty_1,
    _KDPC,
    _KTIMER,
);

pub mod ntddk {
    use super::*;

    unsafe extern "C" {
        pub fn DbgPrint(Format: PCSTR, ...) -> ULONG;
        pub fn IoAllocateIrp(StackSize: CCHAR, ChargeQuota: BOOLEAN) -> PIRP;
        pub fn IoFreeIrp(Irp: PIRP);
        pub fn IoReuseIrp(Irp: PIRP, Iostatus: NTSTATUS);
        pub fn IoInitializeIrp(Irp: PIRP, PacketSize: USHORT, StackSize: CCHAR);
        pub fn IoCancelIrp(Irp: PIRP) -> BOOLEAN;
        pub fn IofCompleteRequest(Irp: PIRP, PriorityBoost: CCHAR);
        pub fn IoSetCompletionRoutineEx(
            DeviceObject: PDEVICE_OBJECT,
            Irp: PIRP,
            CompletionRoutine: PIO_COMPLETION_ROUTINE,
            Context: PVOID,
            InvokeOnSuccess: BOOLEAN,
            InvokeOnError: BOOLEAN,
            InvokeOnCancel: BOOLEAN,
        ) -> NTSTATUS;
        pub fn IoAcquireCancelSpinLock(Irql: PKIRQL);
        pub fn IoReleaseCancelSpinLock(Irql: KIRQL);
        pub fn IoAllocateMdl(
            VirtualAddress: PVOID,
            Length: ULONG,
            SecondaryBuffer: BOOLEAN,
            ChargeQuota: BOOLEAN,
            Irp: PIRP,
        ) -> PMDL;
        pub fn IoFreeMdl(Mdl: PMDL);
        pub fn IoBuildPartialMdl(SourceMdl: PMDL, TargetMdl: PMDL, VirtualAddress: PVOID, Length: ULONG);
        pub fn MmBuildMdlForNonPagedPool(MemoryDescriptorList: PMDL);
        pub fn MmProbeAndLockPages(
            MemoryDescriptorList: PMDL,
            AccessMode: KPROCESSOR_MODE,
            Operation: LOCK_OPERATION,
        );
        pub fn MmUnlockPages(MemoryDescriptorList: PMDL);
        pub fn MmMapLockedPagesSpecifyCache(
            MemoryDescriptorList: PMDL,
            AccessMode: KPROCESSOR_MODE,
            CacheType: MEMORY_CACHING_TYPE,
            RequestedAddress: PVOID,
            BugCheckOnFailure: ULONG,
            Priority: ULONG,
        ) -> PVOID;
        pub fn MmUnmapLockedPages(BaseAddress: PVOID, MemoryDescriptorList: PMDL);
        pub fn MmSizeOfMdl(Base: PVOID, Length: SIZE_T) -> SIZE_T;
        pub fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;
        pub fn ExFreePoolWithTag(P: PVOID, Tag: ULONG);
        pub fn MmGetSystemRoutineAddress(SystemRoutineName: PUNICODE_STRING) -> PVOID;
        pub fn KeInitializeEvent(Event: PRKEVENT, Type: EVENT_TYPE, State: BOOLEAN);
        pub fn KeSetEvent(Event: PRKEVENT, Increment: KPRIORITY, Wait: BOOLEAN) -> LONG;
        pub fn KeResetEvent(Event: PRKEVENT) -> LONG;
        pub fn KeClearEvent(Event: PRKEVENT);
        pub fn KeReadStateEvent(Event: PRKEVENT) -> LONG;
        pub fn KeInitializeDpc(
            Dpc: PRKDPC,
            DeferredRoutine: PKDEFERRED_ROUTINE,
            DeferredContext: PVOID,
        );
        pub fn KeFlushQueuedDpcs();
        pub fn KeInitializeTimerEx(Timer: PKTIMER, Type: TIMER_TYPE);
        pub fn KeSetTimer(Timer: PKTIMER, DueTime: LARGE_INTEGER, Dpc: PKDPC) -> BOOLEAN;
        pub fn KeCancelTimer(arg1: PKTIMER) -> BOOLEAN;
        pub fn KeQueryUnbiasedInterruptTime() -> ULONGLONG;
        pub fn KeWaitForSingleObject(
            Object: PVOID,
            WaitReason: KWAIT_REASON,
            WaitMode: KPROCESSOR_MODE,
            Alertable: BOOLEAN,
            Timeout: PLARGE_INTEGER,
        ) -> NTSTATUS;
        pub fn KeDelayExecutionThread(
            WaitMode: KPROCESSOR_MODE,
            Alertable: BOOLEAN,
            Interval: PLARGE_INTEGER,
        ) -> NTSTATUS;
        pub fn PsGetCurrentThreadId() -> HANDLE;
        pub fn KeGetCurrentProcessorNumberEx(ProcNumber: PPROCESSOR_NUMBER) -> ULONG;
        pub fn KeQueryPerformanceCounter(PerformanceFrequency: PLARGE_INTEGER) -> LARGE_INTEGER;
        pub fn KeBugCheckEx(
            BugCheckCode: ULONG,
            BugCheckParameter1: ULONG_PTR,
            BugCheckParameter2: ULONG_PTR,
            BugCheckParameter3: ULONG_PTR,
            BugCheckParameter4: ULONG_PTR,
        ) -> !;
        pub fn KeAcquireSpinLockRaiseToDpc(SpinLock: PKSPIN_LOCK) -> KIRQL;
        pub fn KeReleaseSpinLock(SpinLock: PKSPIN_LOCK, NewIrql: KIRQL);
        pub fn IoAllocateWorkItem(DeviceObject: PDEVICE_OBJECT) -> PIO_WORKITEM;
        pub fn IoFreeWorkItem(IoWorkItem: PIO_WORKITEM);
        pub fn IoQueueWorkItemEx(
            IoWorkItem: PIO_WORKITEM,
            WorkerRoutine: PIO_WORKITEM_ROUTINE_EX,
            QueueType: WORK_QUEUE_TYPE,
            Context: PVOID,
        );
        pub fn RtlGetVersion(lpVersionInformation: PRTL_OSVERSIONINFOW) -> NTSTATUS;
        pub fn RtlInitUnicodeString(DestinationString: PUNICODE_STRING, SourceString: PCWSTR);
        pub fn ZwOpenKey(
            KeyHandle: PHANDLE,
            DesiredAccess: ACCESS_MASK,
            ObjectAttributes: POBJECT_ATTRIBUTES,
        ) -> NTSTATUS;
        pub fn ZwQueryValueKey(
            KeyHandle: HANDLE,
            ValueName: PUNICODE_STRING,
            KeyValueInformationClass: KEY_VALUE_INFORMATION_CLASS,
            KeyValueInformation: PVOID,
            Length: ULONG,
            ResultLength: PULONG,
        ) -> NTSTATUS;
        pub fn ZwClose(Handle: HANDLE) -> NTSTATUS;
    }
}
