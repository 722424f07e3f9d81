//! Compile-time checks of the bindings against the ABI of Microsoft's reference, written by
//! hand and independent of the headers bindgen reads.
//!
//! bindgen's own layout assertions only check that Rust agrees with the header; these check
//! that the header agrees with Windows. A member dropped from or moved in a header, a
//! wrong integer width or a wrong function-pointer signature stops the crate from
//! compiling, for whatever target it is compiled for (the test suite builds it for the
//! host, `x86_64-pc-windows-msvc` and `aarch64-pc-windows-msvc`).
//!
//! Offsets are those of the 64-bit Windows ABI (x64 and ARM64 share them: LLP64, 8-byte
//! pointers, natural alignment).

#![allow(clippy::identity_op)]

use core::mem::{align_of, offset_of, size_of};

use crate::*;

const PTR: usize = 8;
const _: () = assert!(
    size_of::<usize>() == PTR,
    "wsk-sys supports 64-bit targets only"
);

/// Asserts that a dispatch table is exactly the listed function pointers, in order.
macro_rules! dispatch_table {
    ($table:ty => [$($member:ident $(. $sub:ident)*),+ $(,)?]) => {
        const _: () = {
            let mut index = 0usize;
            $(
                assert!(
                    offset_of!($table, $member $(. $sub)*) == index * PTR,
                    concat!(stringify!($table), "::", stringify!($member $(. $sub)*),
                            " is not at its WDK offset"),
                );
                index += 1;
            )+
            assert!(
                size_of::<$table>() == index * PTR,
                concat!("size of ", stringify!($table), " differs from the WDK's"),
            );
            assert!(align_of::<$table>() == PTR);
        };
    };
}

/// Asserts a structure's size, alignment and member offsets.
macro_rules! layout {
    ($ty:ty, size $size:expr, align $align:expr $(, $member:ident $(. $sub:ident)* @ $offset:expr)* $(,)?) => {
        const _: () = {
            assert!(size_of::<$ty>() == $size, concat!("size of ", stringify!($ty), " differs from the WDK's"));
            assert!(align_of::<$ty>() == $align, concat!("alignment of ", stringify!($ty), " differs from the WDK's"));
            $(
                assert!(
                    offset_of!($ty, $member $(. $sub)*) == $offset,
                    concat!(stringify!($ty), "::", stringify!($member $(. $sub)*),
                            " is not at its WDK offset"),
                );
            )*
        };
    };
}

/// Asserts that a function-pointer type has exactly the given signature.
macro_rules! signature {
    ($pfn:ty = fn($($arg:ty),* $(,)?) $(-> $ret:ty)?) => {
        const _: $pfn = {
            #[allow(unused_variables, clippy::too_many_arguments)]
            unsafe extern "system" fn probe($(_: $arg),*) $(-> $ret)? {
                loop {}
            }
            Some(probe)
        };
    };
}

// ---- Windows integer widths --------------------------------------------------------------
const _: () = {
    assert!(size_of::<ULONG>() == 4 && size_of::<LONG>() == 4 && size_of::<NTSTATUS>() == 4);
    assert!(size_of::<USHORT>() == 2 && size_of::<UCHAR>() == 1 && size_of::<BOOLEAN>() == 1);
    assert!(size_of::<SIZE_T>() == 8 && size_of::<ULONG_PTR>() == 8);
    assert!(size_of::<ULONGLONG>() == 8 && size_of::<WCHAR>() == 2);
    assert!(size_of::<WSK_CONTROL_SOCKET_TYPE>() == 4 && size_of::<WSK_INSPECT_ACTION>() == 4);
};

// ---- Provider dispatch tables (WSK reference, "WSK_PROVIDER_*_DISPATCH") -----------------
dispatch_table!(WSK_PROVIDER_BASIC_DISPATCH => [WskControlSocket, WskCloseSocket]);
dispatch_table!(WSK_PROVIDER_LISTEN_DISPATCH => [
    Basic.WskControlSocket, Basic.WskCloseSocket,
    WskBind, WskAccept, WskInspectComplete, WskGetLocalAddress,
]);
dispatch_table!(WSK_PROVIDER_DATAGRAM_DISPATCH => [
    Basic.WskControlSocket, Basic.WskCloseSocket,
    WskBind, WskSendTo, WskReceiveFrom, WskRelease, WskGetLocalAddress, WskSendMessages,
]);
dispatch_table!(WSK_PROVIDER_CONNECTION_DISPATCH => [
    Basic.WskControlSocket, Basic.WskCloseSocket,
    WskBind, WskConnect, WskGetLocalAddress, WskGetRemoteAddress, WskSend, WskReceive,
    WskDisconnect, WskRelease, WskConnectEx, WskSendEx, WskReceiveEx,
]);
dispatch_table!(WSK_PROVIDER_STREAM_DISPATCH => [
    Basic.WskControlSocket, Basic.WskCloseSocket,
    WskBind, WskAccept, WskConnect, WskListen, WskSend, WskReceive, WskDisconnect, WskRelease,
    WskGetLocalAddress, WskGetRemoteAddress, WskConnectEx, WskSendEx, WskReceiveEx,
]);
layout!(WSK_PROVIDER_DISPATCH, size 56, align 8,
    Version @ 0, Reserved @ 2, WskSocket @ 8, WskSocketConnect @ 16, WskControlClient @ 24,
    WskGetAddressInfo @ 32, WskFreeAddressInfo @ 40, WskGetNameInfo @ 48);

// ---- Client dispatch tables ------------------------------------------------------------------
layout!(WSK_CLIENT_DISPATCH, size 16, align 8, Version @ 0, Reserved @ 2, WskClientEvent @ 8);
dispatch_table!(WSK_CLIENT_CONNECTION_DISPATCH => [
    WskReceiveEvent, WskDisconnectEvent, WskSendBacklogEvent,
]);
dispatch_table!(WSK_CLIENT_LISTEN_DISPATCH => [WskAcceptEvent, WskInspectEvent, WskAbortEvent]);
dispatch_table!(WSK_CLIENT_DATAGRAM_DISPATCH => [WskReceiveFromEvent]);
dispatch_table!(WSK_CLIENT_STREAM_DISPATCH => [Listen, Connect]);

// ---- WSK structures --------------------------------------------------------------------------
layout!(WSK_CLIENT_NPI, size 16, align 8, ClientContext @ 0, Dispatch @ 8);
layout!(WSK_PROVIDER_NPI, size 16, align 8, Client @ 0, Dispatch @ 8);
layout!(WSK_REGISTRATION, size 24, align 8,
    ReservedRegistrationState @ 0, ReservedRegistrationContext @ 8, ReservedRegistrationLock @ 16);
layout!(WSK_SOCKET, size 8, align 8, Dispatch @ 0);
layout!(WSK_BUF, size 24, align 8, Mdl @ 0, Offset @ 8, Length @ 16);
layout!(WSK_BUF_LIST, size 32, align 8, Next @ 0, Buffer @ 8);
layout!(WSK_DATA_INDICATION, size 32, align 8, Next @ 0, Buffer @ 8);
layout!(WSK_DATAGRAM_INDICATION, size 56, align 8,
    Next @ 0, Buffer @ 8, ControlInfo @ 32, ControlInfoLength @ 40, RemoteAddress @ 48);
layout!(WSK_EVENT_CALLBACK_CONTROL, size 16, align 8, NpiId @ 0, EventMask @ 8);
layout!(WSK_EXTENSION_CONTROL_IN, size 24, align 8, NpiId @ 0, ClientContext @ 8, ClientDispatch @ 16);
layout!(WSK_EXTENSION_CONTROL_OUT, size 16, align 8, ProviderContext @ 0, ProviderDispatch @ 8);
layout!(WSK_TRANSPORT, size 28, align 4,
    Version @ 0, SocketType @ 2, Protocol @ 4, AddressFamily @ 8, ProviderId @ 12);
layout!(WSK_INSPECT_ID, size 16, align 8, Key @ 0, SerialNumber @ 8);
layout!(WSK_PROVIDER_CHARACTERISTICS, size 4, align 2, HighestVersion @ 0, LowestVersion @ 2);
layout!(WSK_TDI_MAP, size 16, align 8, SocketType @ 0, AddressFamily @ 2, Protocol @ 4, TdiDeviceName @ 8);
layout!(WSK_TDI_MAP_INFO, size 16, align 8, ElementCount @ 0, Map @ 8);

// ---- Socket addresses (ws2def.h, ws2ipdef.h) ---------------------------------------------
layout!(SOCKADDR, size 16, align 2, sa_family @ 0, sa_data @ 2);
layout!(SOCKADDR_IN, size 16, align 4, sin_family @ 0, sin_port @ 2, sin_addr @ 4, sin_zero @ 8);
layout!(SOCKADDR_IN6, size 28, align 4,
    sin6_family @ 0, sin6_port @ 2, sin6_flowinfo @ 4, sin6_addr @ 8, sin6_scope_id @ 24);
layout!(SOCKADDR_INET, size 28, align 4);
layout!(SOCKADDR_STORAGE, size 128, align 8, ss_family @ 0);
layout!(CMSGHDR, size 16, align 8, cmsg_len @ 0, cmsg_level @ 8, cmsg_type @ 12);
layout!(ADDRINFOEXW, size 72, align 8,
    ai_flags @ 0, ai_family @ 4, ai_socktype @ 8, ai_protocol @ 12, ai_addrlen @ 16,
    ai_canonname @ 24, ai_addr @ 32, ai_blob @ 40, ai_bloblen @ 48, ai_provider @ 56,
    ai_next @ 64);

// ---- Kernel base (wdm.h), as far as a WSK client or provider touches it -------------------
#[cfg(not(all(windows, feature = "wdk-sys")))]
mod kernel_base {
    use super::*;

    layout!(IO_STATUS_BLOCK, size 16, align 8, u.Status @ 0, Information @ 8);
    layout!(UNICODE_STRING, size 16, align 8, Length @ 0, MaximumLength @ 2, Buffer @ 8);
    layout!(LIST_ENTRY, size 16, align 8, Flink @ 0, Blink @ 8);
    layout!(PROCESSOR_NUMBER, size 4, align 2, Group @ 0, Number @ 2, Reserved @ 3);
    layout!(GUID, size 16, align 4, Data1 @ 0, Data2 @ 4, Data3 @ 6, Data4 @ 8);
    layout!(MDL, size 0x30, align 8,
        Next @ 0x00, Size @ 0x08, MdlFlags @ 0x0a, Process @ 0x10, MappedSystemVa @ 0x18,
        StartVa @ 0x20, ByteCount @ 0x28, ByteOffset @ 0x2c);
    layout!(KEVENT, size 0x18, align 8, Header.SignalState @ 0x04);
    layout!(KDPC, size 0x40, align 8,
        DpcListEntry @ 0x08, ProcessorHistory @ 0x10, DeferredRoutine @ 0x18,
        DeferredContext @ 0x20, SystemArgument1 @ 0x28, SystemArgument2 @ 0x30, DpcData @ 0x38);
    layout!(KTIMER, size 0x40, align 8,
        Header @ 0x00, DueTime @ 0x18, TimerListEntry @ 0x20, Dpc @ 0x30, Processor @ 0x38,
        TimerType @ 0x3a, Period @ 0x3c);
    layout!(IRP, size 0xd0, align 16,
        Type @ 0x00, Size @ 0x02, MdlAddress @ 0x08, Flags @ 0x10, AssociatedIrp @ 0x18,
        ThreadListEntry @ 0x20, IoStatus @ 0x30, RequestorMode @ 0x40, PendingReturned @ 0x41,
        StackCount @ 0x42, CurrentLocation @ 0x43, Cancel @ 0x44, CancelIrql @ 0x45,
        ApcEnvironment @ 0x46, AllocationFlags @ 0x47, UserIosb @ 0x48, UserEvent @ 0x50,
        Overlay @ 0x58, CancelRoutine @ 0x68, UserBuffer @ 0x70,
        Tail.Overlay.Context.DriverContext @ 0x78, Tail.Overlay.Thread @ 0x98,
        Tail.Overlay.AuxiliaryBuffer @ 0xa0, Tail.Overlay.Packet.ListEntry @ 0xa8,
        Tail.Overlay.Packet.Stack.CurrentStackLocation @ 0xb8,
        Tail.Overlay.OriginalFileObject @ 0xc0);
    layout!(IO_STACK_LOCATION, size 0x48, align 8,
        MajorFunction @ 0x00, MinorFunction @ 0x01, Flags @ 0x02, Control @ 0x03,
        Parameters @ 0x08, DeviceObject @ 0x28, FileObject @ 0x30, CompletionRoutine @ 0x38,
        Context @ 0x40);
    layout!(DRIVER_OBJECT, size 0x150, align 8,
        Type @ 0x00, Size @ 0x02, DeviceObject @ 0x08, Flags @ 0x10, DriverStart @ 0x18,
        DriverSize @ 0x20, DriverSection @ 0x28, DriverExtension @ 0x30, DriverName @ 0x38,
        HardwareDatabase @ 0x48, FastIoDispatch @ 0x50, DriverInit @ 0x58,
        DriverStartIo @ 0x60, DriverUnload @ 0x68, MajorFunction @ 0x70);
    layout!(OBJECT_ATTRIBUTES, size 0x30, align 8,
        Length @ 0x00, RootDirectory @ 0x08, ObjectName @ 0x10, Attributes @ 0x18,
        SecurityDescriptor @ 0x20, SecurityQualityOfService @ 0x28);
    layout!(RTL_OSVERSIONINFOW, size 276, align 4,
        dwOSVersionInfoSize @ 0, dwMajorVersion @ 4, dwMinorVersion @ 8, dwBuildNumber @ 12,
        dwPlatformId @ 16, szCSDVersion @ 20);
    layout!(KEY_VALUE_PARTIAL_INFORMATION, size 16, align 4,
        TitleIndex @ 0, Type @ 4, DataLength @ 8, Data @ 12);

    signature!(PIO_COMPLETION_ROUTINE = fn(*mut DEVICE_OBJECT, *mut IRP, *mut c_void) -> i32);
    signature!(PDRIVER_CANCEL = fn(*mut DEVICE_OBJECT, *mut IRP));
    signature!(PDRIVER_UNLOAD = fn(*mut DRIVER_OBJECT));
    signature!(PIO_WORKITEM_ROUTINE_EX = fn(*mut c_void, *mut c_void, *mut IO_WORKITEM));
    signature!(PKDEFERRED_ROUTINE = fn(*mut KDPC, *mut c_void, *mut c_void, *mut c_void));
    const _: () = assert!(size_of::<TIMER_TYPE>() == 4 && NotificationTimer == 0);
    const _: () = assert!(size_of::<WORK_QUEUE_TYPE>() == 4 && DelayedWorkQueue == 1);
}

/// With `wdk-sys`, its types must have the layout the WSK part was generated against.
#[cfg(all(windows, feature = "wdk-sys"))]
const _: () = {
    use crate::bindings::own_base;
    assert!(size_of::<wdk_sys::IRP>() == size_of::<own_base::IRP>());
    assert!(size_of::<wdk_sys::MDL>() == size_of::<own_base::MDL>());
    assert!(size_of::<wdk_sys::UNICODE_STRING>() == size_of::<own_base::UNICODE_STRING>());
    assert!(size_of::<wdk_sys::GUID>() == size_of::<own_base::GUID>());
    assert!(size_of::<wdk_sys::NTSTATUS>() == size_of::<own_base::NTSTATUS>());
    assert!(size_of::<wdk_sys::KTIMER>() == size_of::<own_base::KTIMER>());
    assert!(size_of::<wdk_sys::KDPC>() == size_of::<own_base::KDPC>());
    assert!(size_of::<wdk_sys::PROCESSOR_NUMBER>() == size_of::<own_base::PROCESSOR_NUMBER>());
};

use core::ffi::c_void;

// ---- Function-pointer signatures (WSK reference, "PFN_WSK_*") -------------------------------
type Socket = *mut WSK_SOCKET;
type Buf = *mut WSK_BUF;
type Addr = *mut SOCKADDR;
type Irp = PIRP;
type Client = *mut c_void;

signature!(PFN_WSK_CONTROL_SOCKET = fn(Socket, i32, u32, u32, u64, *mut c_void, u64, *mut c_void, *mut u64, Irp) -> i32);
signature!(PFN_WSK_CLOSE_SOCKET = fn(Socket, Irp) -> i32);
signature!(PFN_WSK_BIND = fn(Socket, Addr, u32, Irp) -> i32);
signature!(PFN_WSK_ACCEPT = fn(Socket, u32, *mut c_void, *const WSK_CLIENT_CONNECTION_DISPATCH, Addr, Addr, Irp) -> i32);
signature!(PFN_WSK_INSPECT_COMPLETE = fn(Socket, *mut WSK_INSPECT_ID, i32, Irp) -> i32);
signature!(PFN_WSK_GET_LOCAL_ADDRESS = fn(Socket, Addr, Irp) -> i32);
signature!(PFN_WSK_GET_REMOTE_ADDRESS = fn(Socket, Addr, Irp) -> i32);
signature!(PFN_WSK_CONNECT = fn(Socket, Addr, u32, Irp) -> i32);
signature!(PFN_WSK_CONNECT_EX = fn(Socket, Addr, Buf, u32, Irp) -> i32);
signature!(PFN_WSK_LISTEN = fn(Socket, Irp) -> i32);
signature!(PFN_WSK_SEND = fn(Socket, Buf, u32, Irp) -> i32);
signature!(PFN_WSK_RECEIVE = fn(Socket, Buf, u32, Irp) -> i32);
signature!(PFN_WSK_DISCONNECT = fn(Socket, Buf, u32, Irp) -> i32);
signature!(PFN_WSK_RELEASE_DATA_INDICATION_LIST = fn(Socket, *mut WSK_DATA_INDICATION) -> i32);
signature!(PFN_WSK_SEND_EX = fn(Socket, Buf, u32, u32, *mut CMSGHDR, Irp) -> i32);
signature!(PFN_WSK_RECEIVE_EX = fn(Socket, Buf, u32, *mut u32, *mut CMSGHDR, *mut u32, Irp) -> i32);
signature!(PFN_WSK_SEND_TO = fn(Socket, Buf, u32, Addr, u32, *mut CMSGHDR, Irp) -> i32);
signature!(PFN_WSK_RECEIVE_FROM = fn(Socket, Buf, u32, Addr, *mut u32, *mut CMSGHDR, *mut u32, Irp) -> i32);
signature!(PFN_WSK_RELEASE_DATAGRAM_INDICATION_LIST = fn(Socket, *mut WSK_DATAGRAM_INDICATION) -> i32);
signature!(PFN_WSK_SEND_MESSAGES = fn(Socket, *mut WSK_BUF_LIST, u32, Addr, u32, *mut CMSGHDR, Irp) -> i32);
signature!(PFN_WSK_SOCKET = fn(Client, u16, u16, u32, u32, *mut c_void, *const c_void, PEPROCESS, PETHREAD, PSECURITY_DESCRIPTOR, Irp) -> i32);
signature!(PFN_WSK_SOCKET_CONNECT = fn(Client, u16, u32, Addr, Addr, u32, *mut c_void, *const WSK_CLIENT_CONNECTION_DISPATCH, PEPROCESS, PETHREAD, PSECURITY_DESCRIPTOR, Irp) -> i32);
signature!(PFN_WSK_CONTROL_CLIENT = fn(Client, u32, u64, *mut c_void, u64, *mut c_void, *mut u64, Irp) -> i32);
signature!(PFN_WSK_GET_ADDRESS_INFO = fn(Client, PUNICODE_STRING, PUNICODE_STRING, u32, *mut GUID, *mut ADDRINFOEXW, *mut *mut ADDRINFOEXW, PEPROCESS, PETHREAD, Irp) -> i32);
signature!(PFN_WSK_FREE_ADDRESS_INFO = fn(Client, *mut ADDRINFOEXW));
signature!(PFN_WSK_GET_NAME_INFO = fn(Client, Addr, u32, PUNICODE_STRING, PUNICODE_STRING, u32, PEPROCESS, PETHREAD, Irp) -> i32);

signature!(PFN_WSK_CLIENT_EVENT = fn(*mut c_void, u32, *mut c_void, u64) -> i32);
signature!(PFN_WSK_RECEIVE_EVENT = fn(*mut c_void, u32, *mut WSK_DATA_INDICATION, u64, *mut u64) -> i32);
signature!(PFN_WSK_RECEIVE_EX_EVENT = fn(*mut c_void, u32, *mut WSK_DATA_INDICATION, *mut CMSGHDR, u32, u64, *mut u64) -> i32);
signature!(PFN_WSK_DISCONNECT_EVENT = fn(*mut c_void, u32) -> i32);
signature!(PFN_WSK_SEND_BACKLOG_EVENT = fn(*mut c_void, u64) -> i32);
signature!(PFN_WSK_ACCEPT_EVENT = fn(*mut c_void, u32, Addr, Addr, Socket, *mut *mut c_void, *mut *const WSK_CLIENT_CONNECTION_DISPATCH) -> i32);
signature!(PFN_WSK_INSPECT_EVENT = fn(*mut c_void, Addr, Addr, *mut WSK_INSPECT_ID) -> i32);
signature!(PFN_WSK_ABORT_EVENT = fn(*mut c_void, *mut WSK_INSPECT_ID) -> i32);
signature!(PFN_WSK_RECEIVE_FROM_EVENT = fn(*mut c_void, u32, *mut WSK_DATAGRAM_INDICATION) -> i32);

// ---- NETIO exports ----------------------------------------------------------------------------
const _: unsafe extern "system" fn(*mut WSK_CLIENT_NPI, *mut WSK_REGISTRATION) -> i32 = WskRegister;
const _: unsafe extern "system" fn(*mut WSK_REGISTRATION) = WskDeregister;
const _: unsafe extern "system" fn(*mut WSK_REGISTRATION, u32, *mut WSK_PROVIDER_NPI) -> i32 =
    WskCaptureProviderNPI;
const _: unsafe extern "system" fn(*mut WSK_REGISTRATION) = WskReleaseProviderNPI;
const _: unsafe extern "system" fn(
    *mut WSK_REGISTRATION,
    *mut WSK_PROVIDER_CHARACTERISTICS,
) -> i32 = WskQueryProviderCharacteristics;

// ---- Constants whose values are part of the ABI ------------------------------------------
const _: () = {
    assert!(WSK_FLAG_LISTEN_SOCKET == 1 && WSK_FLAG_CONNECTION_SOCKET == 2);
    assert!(WSK_FLAG_DATAGRAM_SOCKET == 4 && WSK_FLAG_STREAM_SOCKET == 8);
    assert!(WSK_EVENT_RECEIVE == 0x40 && WSK_EVENT_DISCONNECT == 0x80);
    assert!(WSK_EVENT_RECEIVE_FROM == 0x100 && WSK_EVENT_ACCEPT == 0x200);
    assert!(WSK_EVENT_DISABLE == 0x8000_0000 && WSK_EVENT_SEND_BACKLOG == 0x10);
    assert!(SO_WSK_EVENT_CALLBACK == 0x4002 && SO_WSK_SECURITY == 0x4001);
    assert!(WSK_SET_STATIC_EVENT_CALLBACKS == 7 && WSK_TRANSPORT_LIST_QUERY == 2);
    assert!(MAKE_WSK_VERSION(1, 0) == 0x0100);
    assert!(STATUS_PENDING == 0x103 && STATUS_MORE_PROCESSING_REQUIRED == 0xC000_0016_u32 as i32);
    assert!(AF_INET == 2 && AF_INET6 == 23 && SOL_SOCKET == 0xffff);
    assert!(WSK_FLAG_OOB == 1 && WSK_FLAG_NODELAY == 2);
    assert!(SIO_WSK_SET_TCP_SILENT_MODE == 0x2F00_0007);
    assert!(SIO_WSK_SET_RECEIVE_EX_CALLBACK == 0x8F00_0008);
};

// ---- Types whose definition is the WDK's, for C ports and `wdk-sys` -------------------------
const _: PWSK_CLIENT = core::ptr::null_mut::<c_void>();
const _: PNPIID = core::ptr::null::<GUID>();
const _: PSECURITY_DESCRIPTOR = core::ptr::null_mut::<c_void>();
const _: PWSK_CONTROL_SOCKET_TYPE = core::ptr::null_mut::<WSK_CONTROL_SOCKET_TYPE>();
const _: PWSK_INSPECT_ACTION = core::ptr::null_mut::<WSK_INSPECT_ACTION>();
