/*
 * wsk-sys: kernel base types.
 *
 * The project's own reconstruction of the Windows kernel's basic types (WDK `ntdef.h`,
 * `wdm.h`), written from Microsoft's public reference (learn.microsoft.com, "Windows Data
 * Types" and the `wdm.h` reference pages). Integer widths are those of Windows (LLP64):
 * `ULONG` and `LONG` are 32-bit on every host, which is why the generated Rust uses the
 * crate's own `ctypes` module.
 *
 * Every declaration carries a doc comment: bindgen turns it into the Rust item's
 * documentation.
 */
#ifndef WSK_SYS_KM_TYPES_H
#define WSK_SYS_KM_TYPES_H

/* ---- integers (Source: Windows Data Types reference) ---- */

/** Unsigned 8-bit integer. WDK: `UCHAR`. */
typedef unsigned char UCHAR;
/** Pointer to [`UCHAR`]. WDK: `PUCHAR`. */
typedef UCHAR *PUCHAR;
/** 8-bit character. WDK: `CHAR`. */
typedef char CHAR;
/** Pointer to [`CHAR`]. WDK: `PCHAR`. */
typedef CHAR *PCHAR;
/** Counted 8-bit character. WDK: `CCHAR`. */
typedef char CCHAR;
/** Pointer to a constant NUL-terminated 8-bit string. WDK: `PCSTR`. */
typedef const CHAR *PCSTR;
/** Unsigned 16-bit integer. WDK: `USHORT`. */
typedef unsigned short USHORT;
/** Pointer to [`USHORT`]. WDK: `PUSHORT`. */
typedef USHORT *PUSHORT;
/** Signed 16-bit integer. WDK: `SHORT`. */
typedef short SHORT;
/** Signed 16-bit count used in object headers. WDK: `CSHORT`. */
typedef short CSHORT;
/** Unsigned 32-bit integer (32-bit on every Windows target). WDK: `ULONG`. */
typedef unsigned long ULONG;
/** Pointer to [`ULONG`]. WDK: `PULONG`. */
typedef ULONG *PULONG;
/** Signed 32-bit integer (32-bit on every Windows target). WDK: `LONG`. */
typedef long LONG;
/** Pointer to [`LONG`]. WDK: `PLONG`. */
typedef LONG *PLONG;
/** Signed 64-bit integer. WDK: `LONGLONG`. */
typedef long long LONGLONG;
/** Unsigned 64-bit integer. WDK: `ULONGLONG`. */
typedef unsigned long long ULONGLONG;
/** Unsigned 64-bit integer. WDK: `ULONG64`. */
typedef unsigned long long ULONG64;
/** Unsigned pointer-sized integer. WDK: `ULONG_PTR`. */
typedef unsigned long long ULONG_PTR;
/** Pointer to [`ULONG_PTR`]. WDK: `PULONG_PTR`. */
typedef ULONG_PTR *PULONG_PTR;
/** Signed pointer-sized integer. WDK: `LONG_PTR`. */
typedef long long LONG_PTR;
/** Byte count of a memory block. WDK: `SIZE_T`. */
typedef ULONG_PTR SIZE_T;
/** Pointer to [`SIZE_T`]. WDK: `PSIZE_T`. */
typedef SIZE_T *PSIZE_T;
/** Boolean byte: 0 is FALSE, 1 is TRUE. WDK: `BOOLEAN`. */
typedef UCHAR BOOLEAN;
/** Pointer to [`BOOLEAN`]. WDK: `PBOOLEAN`. */
typedef BOOLEAN *PBOOLEAN;
/** UTF-16 code unit. WDK: `WCHAR`. */
typedef unsigned short WCHAR;
/** Pointer to a UTF-16 string. WDK: `PWSTR`. */
typedef WCHAR *PWSTR;
/** Pointer to a constant NUL-terminated UTF-16 string. WDK: `PCWSTR`. */
typedef const WCHAR *PCWSTR;
/** Untyped pointer. WDK: `PVOID`. */
typedef void *PVOID;
/** Handle to a kernel object. WDK: `HANDLE`. */
typedef void *HANDLE;
/** Pointer to [`HANDLE`]. WDK: `PHANDLE`. */
typedef HANDLE *PHANDLE;
/** Access rights bit mask. WDK: `ACCESS_MASK`. */
typedef ULONG ACCESS_MASK;
/** Status code returned by kernel routines (negative means failure). WDK: `NTSTATUS`. */
typedef LONG NTSTATUS;
/** Interrupt request level of a processor. WDK: `KIRQL`. */
typedef UCHAR KIRQL;
/** Pointer to [`KIRQL`]. WDK: `PKIRQL`. */
typedef KIRQL *PKIRQL;
/** Processor mode, [`KernelMode`] or [`UserMode`]. WDK: `KPROCESSOR_MODE`. */
typedef CCHAR KPROCESSOR_MODE;
/** Thread priority increment. WDK: `KPRIORITY`. */
typedef LONG KPRIORITY;
/** Executive spin lock. WDK: `KSPIN_LOCK`. */
typedef ULONG_PTR KSPIN_LOCK;
/** Pointer to [`KSPIN_LOCK`]. WDK: `PKSPIN_LOCK`. */
typedef KSPIN_LOCK *PKSPIN_LOCK;
/** Pool allocation flags for [`ExAllocatePool2`]. WDK: `POOL_FLAGS`. */
typedef ULONG64 POOL_FLAGS;

/* ---- processor modes and IRQLs (Source: wdm.h reference, "Managing Hardware Priorities") ---- */

/** Processor mode of kernel-mode code. WDK: `KernelMode`. */
static const KPROCESSOR_MODE KernelMode = 0;
/** Processor mode of user-mode code. WDK: `UserMode`. */
static const KPROCESSOR_MODE UserMode = 1;
/** Lowest IRQL: threads run here and may wait. WDK: `PASSIVE_LEVEL`. */
static const KIRQL PASSIVE_LEVEL = 0;
/** IRQL at which APCs are masked. WDK: `APC_LEVEL`. */
static const KIRQL APC_LEVEL = 1;
/** IRQL of DPCs and spin-lock holders: no waiting, no paged memory. WDK: `DISPATCH_LEVEL`. */
static const KIRQL DISPATCH_LEVEL = 2;
/** Boolean true. WDK: `TRUE`. */
static const BOOLEAN TRUE = 1;
/** Boolean false. WDK: `FALSE`. */
static const BOOLEAN FALSE = 0;
/** Priority increment that completes an IRP without boosting the waiter. WDK: `IO_NO_INCREMENT`. */
static const CCHAR IO_NO_INCREMENT = 0;
/** Priority increment used when signalling a network wait. WDK: `IO_NETWORK_INCREMENT`. */
static const KPRIORITY IO_NETWORK_INCREMENT = 2;

/* ---- structures (Source: ntdef.h / wdm.h reference pages) ---- */

/** Low and high halves of a [`LARGE_INTEGER`]. WDK: the anonymous part of `LARGE_INTEGER`. */
typedef struct _LARGE_INTEGER_PARTS {
    /** Low 32 bits. WDK: `LowPart`. */
    ULONG LowPart;
    /** High 32 bits, signed. WDK: `HighPart`. */
    LONG HighPart;
} LARGE_INTEGER_PARTS;

/** Signed 64-bit integer viewed whole or as two halves. WDK: `LARGE_INTEGER`. */
typedef union _LARGE_INTEGER {
    /** The two 32-bit halves. WDK: `u`. */
    LARGE_INTEGER_PARTS u;
    /** The whole value. WDK: `QuadPart`. */
    LONGLONG QuadPart;
} LARGE_INTEGER;
/** Pointer to [`LARGE_INTEGER`]. WDK: `PLARGE_INTEGER`. */
typedef LARGE_INTEGER *PLARGE_INTEGER;

/** A processor, as its group and its number in the group. WDK: `PROCESSOR_NUMBER`. */
typedef struct _PROCESSOR_NUMBER {
    /** The processor group. WDK: `Group`. */
    USHORT Group;
    /** The processor's number in its group. WDK: `Number`. */
    UCHAR Number;
    /** Reserved. WDK: `Reserved`. */
    UCHAR Reserved;
} PROCESSOR_NUMBER;
/** Pointer to [`PROCESSOR_NUMBER`]. WDK: `PPROCESSOR_NUMBER`. */
typedef PROCESSOR_NUMBER *PPROCESSOR_NUMBER;

/** Entry of a doubly linked list. WDK: `LIST_ENTRY`. */
typedef struct _LIST_ENTRY {
    /** Next entry. WDK: `Flink`. */
    struct _LIST_ENTRY *Flink;
    /** Previous entry. WDK: `Blink`. */
    struct _LIST_ENTRY *Blink;
} LIST_ENTRY;
/** Pointer to [`LIST_ENTRY`]. WDK: `PLIST_ENTRY`. */
typedef LIST_ENTRY *PLIST_ENTRY;

/** Counted UTF-16 string; `Length` and `MaximumLength` are in bytes. WDK: `UNICODE_STRING`. */
typedef struct _UNICODE_STRING {
    /** Length of the string in bytes, without any terminating NUL. WDK: `Length`. */
    USHORT Length;
    /** Size of `Buffer` in bytes. WDK: `MaximumLength`. */
    USHORT MaximumLength;
    /** The UTF-16 code units. WDK: `Buffer`. */
    PWSTR Buffer;
} UNICODE_STRING;
/** Pointer to [`UNICODE_STRING`]. WDK: `PUNICODE_STRING`. */
typedef UNICODE_STRING *PUNICODE_STRING;
/** Pointer to a constant [`UNICODE_STRING`]. WDK: `PCUNICODE_STRING`. */
typedef const UNICODE_STRING *PCUNICODE_STRING;

/** Globally unique identifier. WDK: `GUID`. */
typedef struct _GUID {
    /** First 32 bits. WDK: `Data1`. */
    ULONG Data1;
    /** Next 16 bits. WDK: `Data2`. */
    USHORT Data2;
    /** Next 16 bits. WDK: `Data3`. */
    USHORT Data3;
    /** Last 64 bits, as bytes. WDK: `Data4`. */
    UCHAR Data4[8];
} GUID;
/** Pointer to [`GUID`]. WDK: `LPGUID`. */
typedef GUID *LPGUID;

/** Final status and information of an I/O request. WDK: the union in `IO_STATUS_BLOCK`. */
typedef union _IO_STATUS_BLOCK_STATUS {
    /** Completion status. WDK: `Status`. */
    NTSTATUS Status;
    /** Reserved for internal use. WDK: `Pointer`. */
    PVOID Pointer;
} IO_STATUS_BLOCK_STATUS;

/** Final status of an I/O request and a request-dependent value (for WSK: bytes transferred,
 *  or a pointer such as the new socket). WDK: `IO_STATUS_BLOCK`. */
typedef struct _IO_STATUS_BLOCK {
    /** The status (or reserved pointer). WDK: the anonymous union holding `Status`. */
    IO_STATUS_BLOCK_STATUS u;
    /** Request-dependent information. WDK: `Information`. */
    ULONG_PTR Information;
} IO_STATUS_BLOCK;
/** Pointer to [`IO_STATUS_BLOCK`]. WDK: `PIO_STATUS_BLOCK`. */
typedef IO_STATUS_BLOCK *PIO_STATUS_BLOCK;

/* Opaque kernel objects: WSK clients only pass pointers to them. */

/** Opaque process object. WDK: `EPROCESS`. */
struct _EPROCESS;
/** Opaque process object. WDK: `EPROCESS`. */
typedef struct _EPROCESS EPROCESS;
/** Pointer to an opaque process object. WDK: `PEPROCESS`. */
typedef EPROCESS *PEPROCESS;
/** Opaque thread object. WDK: `ETHREAD`. */
struct _ETHREAD;
/** Opaque thread object. WDK: `ETHREAD`. */
typedef struct _ETHREAD ETHREAD;
/** Pointer to an opaque thread object. WDK: `PETHREAD`. */
typedef ETHREAD *PETHREAD;
/** Opaque kernel thread object. WDK: `KTHREAD`. */
struct _KTHREAD;
/** Opaque kernel thread object. WDK: `KTHREAD`. */
typedef struct _KTHREAD KTHREAD;
/** Pointer to an opaque kernel thread object. WDK: `PKTHREAD`. */
typedef KTHREAD *PKTHREAD;
/** A security descriptor, opaque to drivers. WDK: `PSECURITY_DESCRIPTOR` (`PVOID` in
 *  wdm.h). */
typedef PVOID PSECURITY_DESCRIPTOR;
/** Opaque device object. WDK: `DEVICE_OBJECT`. */
struct _DEVICE_OBJECT;
/** Opaque device object. WDK: `DEVICE_OBJECT`. */
typedef struct _DEVICE_OBJECT DEVICE_OBJECT;
/** Pointer to an opaque device object. WDK: `PDEVICE_OBJECT`. */
typedef DEVICE_OBJECT *PDEVICE_OBJECT;
/** Opaque file object. WDK: `FILE_OBJECT`. */
struct _FILE_OBJECT;
/** Opaque file object. WDK: `FILE_OBJECT`. */
typedef struct _FILE_OBJECT FILE_OBJECT;
/** Pointer to an opaque file object. WDK: `PFILE_OBJECT`. */
typedef FILE_OBJECT *PFILE_OBJECT;
/** Opaque driver extension. WDK: `DRIVER_EXTENSION`. */
struct _DRIVER_EXTENSION;
/** Opaque driver extension. WDK: `DRIVER_EXTENSION`. */
typedef struct _DRIVER_EXTENSION DRIVER_EXTENSION;
/** Pointer to an opaque driver extension. WDK: `PDRIVER_EXTENSION`. */
typedef DRIVER_EXTENSION *PDRIVER_EXTENSION;
/** Opaque fast I/O dispatch table. WDK: `FAST_IO_DISPATCH`. */
struct _FAST_IO_DISPATCH;
/** Opaque fast I/O dispatch table. WDK: `FAST_IO_DISPATCH`. */
typedef struct _FAST_IO_DISPATCH FAST_IO_DISPATCH;
/** Pointer to an opaque fast I/O dispatch table. WDK: `PFAST_IO_DISPATCH`. */
typedef FAST_IO_DISPATCH *PFAST_IO_DISPATCH;

#endif /* WSK_SYS_KM_TYPES_H */
