/*
 * wsk-sys: the part of the kernel's I/O, memory, event, pool and registry interface a WSK
 * client uses to drive IRPs.
 *
 * The project's own reconstruction, written from Microsoft's public reference for `wdm.h`
 * (learn.microsoft.com/windows-hardware/drivers/ddi/wdm/), with the x64/ARM64 layouts
 * cross-checked against mingw-w64's `ddk/wdm.h`. Where the WDK uses an anonymous union or
 * struct member (a Microsoft C extension), this header gives the member a name, documented
 * on the member; the layout is unchanged. The Rust layout assertions in `src/abi.rs` pin
 * every offset a WSK client or provider touches.
 */
#ifndef WSK_SYS_KM_IO_H
#define WSK_SYS_KM_IO_H

#include "km_types.h"

/* Forward declarations. */
struct _IRP;
struct _DRIVER_OBJECT;

/** Pointer to an I/O request packet. WDK: `PIRP`. */
typedef struct _IRP *PIRP;
/** Pointer to a driver object. WDK: `PDRIVER_OBJECT`. */
typedef struct _DRIVER_OBJECT *PDRIVER_OBJECT;

/* ------------------------------------------------------------------------------------------
 * Callback types (Source: wdm.h reference: IO_COMPLETION_ROUTINE, DRIVER_CANCEL,
 * DRIVER_UNLOAD, DRIVER_INITIALIZE, DRIVER_DISPATCH, DRIVER_STARTIO)
 * ---------------------------------------------------------------------------------------- */

/** Routine the I/O manager calls when a lower driver completes an IRP. Return
 *  [`STATUS_MORE_PROCESSING_REQUIRED`] for an IRP the caller allocated. Runs at IRQL <=
 *  DISPATCH_LEVEL. WDK: `PIO_COMPLETION_ROUTINE` (`IO_COMPLETION_ROUTINE`). */
typedef NTSTATUS (__stdcall *PIO_COMPLETION_ROUTINE)(PDEVICE_OBJECT DeviceObject, PIRP Irp,
                                                     PVOID Context);
/** Routine that cancels an IRP; called with the cancel spin lock held. WDK: `PDRIVER_CANCEL`
 *  (`DRIVER_CANCEL`). */
typedef void (__stdcall *PDRIVER_CANCEL)(PDEVICE_OBJECT DeviceObject, PIRP Irp);
/** Driver unload routine, called at PASSIVE_LEVEL. WDK: `PDRIVER_UNLOAD` (`DRIVER_UNLOAD`). */
typedef void (__stdcall *PDRIVER_UNLOAD)(PDRIVER_OBJECT DriverObject);
/** Driver entry point. WDK: `PDRIVER_INITIALIZE` (`DRIVER_INITIALIZE`). */
typedef NTSTATUS (__stdcall *PDRIVER_INITIALIZE)(PDRIVER_OBJECT DriverObject,
                                                 PUNICODE_STRING RegistryPath);
/** Driver dispatch routine for one IRP major function. WDK: `PDRIVER_DISPATCH`. */
typedef NTSTATUS (__stdcall *PDRIVER_DISPATCH)(PDEVICE_OBJECT DeviceObject, PIRP Irp);
/** Driver StartIo routine. WDK: `PDRIVER_STARTIO` (`DRIVER_STARTIO`). */
typedef void (__stdcall *PDRIVER_STARTIO)(PDEVICE_OBJECT DeviceObject, PIRP Irp);

/* ------------------------------------------------------------------------------------------
 * MDL (Source: wdm.h reference "MDL structure", "Using MDLs"; layout: mingw-w64 ddk/wdm.h)
 * ---------------------------------------------------------------------------------------- */

/** Memory descriptor list: describes the physical pages behind a virtual buffer. An array
 *  of page frame numbers follows the structure. WDK: `MDL`. */
typedef struct _MDL {
    /** Next MDL of a chain. WDK: `Next`. */
    struct _MDL *Next;
    /** Size of the MDL including its page array, in bytes. WDK: `Size`. */
    CSHORT Size;
    /** `MDL_*` flags. WDK: `MdlFlags`. */
    CSHORT MdlFlags;
    /** Owning process of a user buffer. WDK: `Process`. */
    PEPROCESS Process;
    /** System virtual address of the buffer when mapped. WDK: `MappedSystemVa`. */
    PVOID MappedSystemVa;
    /** Page-aligned start of the buffer. WDK: `StartVa`. */
    PVOID StartVa;
    /** Length of the buffer in bytes. WDK: `ByteCount`. */
    ULONG ByteCount;
    /** Offset of the buffer in its first page. WDK: `ByteOffset`. */
    ULONG ByteOffset;
} MDL;
/** Pointer to [`MDL`]. WDK: `PMDL`. */
typedef MDL *PMDL;

/** The MDL's pages are mapped into system space. WDK: `MDL_MAPPED_TO_SYSTEM_VA`. */
static const CSHORT MDL_MAPPED_TO_SYSTEM_VA = 0x0001;
/** The MDL's pages are locked. WDK: `MDL_PAGES_LOCKED`. */
static const CSHORT MDL_PAGES_LOCKED = 0x0002;
/** The buffer is in non-paged pool. WDK: `MDL_SOURCE_IS_NONPAGED_POOL`. */
static const CSHORT MDL_SOURCE_IS_NONPAGED_POOL = 0x0004;
/** The MDL was allocated with a fixed size. WDK: `MDL_ALLOCATED_FIXED_SIZE`. */
static const CSHORT MDL_ALLOCATED_FIXED_SIZE = 0x0008;
/** The MDL describes part of another MDL's buffer. WDK: `MDL_PARTIAL`. */
static const CSHORT MDL_PARTIAL = 0x0010;
/** A partial MDL that has been mapped. WDK: `MDL_PARTIAL_HAS_BEEN_MAPPED`. */
static const CSHORT MDL_PARTIAL_HAS_BEEN_MAPPED = 0x0020;
/** A mapping of this MDL may fail rather than bug check. WDK: `MDL_MAPPING_CAN_FAIL`. */
static const CSHORT MDL_MAPPING_CAN_FAIL = 0x2000;

/** Access for which pages are locked. WDK: `LOCK_OPERATION`. */
typedef enum _LOCK_OPERATION {
    /** Pages will be read. WDK: `IoReadAccess`. */
    IoReadAccess = 0,
    /** Pages will be written. WDK: `IoWriteAccess`. */
    IoWriteAccess = 1,
    /** Pages will be read and written. WDK: `IoModifyAccess`. */
    IoModifyAccess = 2
} LOCK_OPERATION;

/** Cache type of a mapping. WDK: `MEMORY_CACHING_TYPE`. */
typedef enum _MEMORY_CACHING_TYPE {
    /** Uncached. WDK: `MmNonCached`. */
    MmNonCached = 0,
    /** Cached (the normal choice for data buffers). WDK: `MmCached`. */
    MmCached = 1,
    /** Write-combined. WDK: `MmWriteCombined`. */
    MmWriteCombined = 2
} MEMORY_CACHING_TYPE;

/** Mapping priority: may fail under low resources. WDK: `LowPagePriority`. */
static const ULONG LowPagePriority = 0;
/** Mapping priority: normal. WDK: `NormalPagePriority`. */
static const ULONG NormalPagePriority = 16;
/** Mapping priority: high. WDK: `HighPagePriority`. */
static const ULONG HighPagePriority = 32;
/** Mapping flag: map the pages no-execute. WDK: `MdlMappingNoExecute`. */
static const ULONG MdlMappingNoExecute = 0x40000000;

/* ------------------------------------------------------------------------------------------
 * Dispatcher objects and events (Source: wdm.h reference "KEVENT", "KeInitializeEvent";
 * layout: mingw-w64 ddk/wdm.h DISPATCHER_HEADER, reduced to its 24-byte shape)
 * ---------------------------------------------------------------------------------------- */

/** Header shared by all dispatcher objects. Opaque to drivers; only its size and
 *  `SignalState` matter here. WDK: `DISPATCHER_HEADER`. */
typedef struct _DISPATCHER_HEADER {
    /** Object type. WDK: `Type`. */
    UCHAR Type;
    /** Internal. WDK: `Signalling` (part of an anonymous union). */
    UCHAR Signalling;
    /** Object size in longs. WDK: `Size` (part of an anonymous union). */
    UCHAR Size;
    /** Internal. WDK: `Reserved1` (part of an anonymous union). */
    UCHAR Reserved1;
    /** Non-zero when the object is signalled. WDK: `SignalState`. */
    LONG SignalState;
    /** Threads waiting on the object. WDK: `WaitListHead`. */
    LIST_ENTRY WaitListHead;
} DISPATCHER_HEADER;

/** Event object; must live in non-paged memory while in use. WDK: `KEVENT`. */
typedef struct _KEVENT {
    /** Dispatcher header. WDK: `Header`. */
    DISPATCHER_HEADER Header;
} KEVENT;
/** Pointer to [`KEVENT`]. WDK: `PKEVENT`. */
typedef KEVENT *PKEVENT;
/** Pointer to [`KEVENT`]. WDK: `PRKEVENT`. */
typedef KEVENT *PRKEVENT;

/** Kind of event. WDK: `EVENT_TYPE`. */
typedef enum _EVENT_TYPE {
    /** Stays signalled until reset; releases every waiter. WDK: `NotificationEvent`. */
    NotificationEvent = 0,
    /** Resets itself when it releases one waiter. WDK: `SynchronizationEvent`. */
    SynchronizationEvent = 1
} EVENT_TYPE;

/* ------------------------------------------------------------------------------------------
 * Timers and DPCs (Source: wdm.h reference "KTIMER", "KDPC", "KeInitializeTimerEx",
 * "KeSetTimer", "KeCancelTimer", "KeInitializeDpc", "KeFlushQueuedDpcs",
 * "KeQueryUnbiasedInterruptTime"; layout: the WDK's wdm.h for 64-bit targets, x64 and
 * ARM64 sizes 0x40 / 0x40). Everything here is exported since Windows 2000, but
 * KeQueryUnbiasedInterruptTime (Windows 7).
 * ---------------------------------------------------------------------------------------- */

/** Entry of a singly linked list. WDK: `SINGLE_LIST_ENTRY`. */
typedef struct _SINGLE_LIST_ENTRY {
    /** The next entry. WDK: `Next`. */
    struct _SINGLE_LIST_ENTRY *Next;
} SINGLE_LIST_ENTRY;

/** A set of processors, one bit each. WDK: `KAFFINITY`. */
typedef ULONG_PTR KAFFINITY;

struct _KDPC;

/** A DPC's routine: runs at DISPATCH_LEVEL with the context given to [`KeInitializeDpc`]
 *  and, for a timer's DPC, the expiry time in the system arguments. WDK:
 *  `PKDEFERRED_ROUTINE` (`KDEFERRED_ROUTINE`). */
typedef void (__stdcall *PKDEFERRED_ROUTINE)(struct _KDPC *Dpc, PVOID DeferredContext,
                                             PVOID SystemArgument1, PVOID SystemArgument2);

/** Deferred procedure call object; must live in non-paged memory while it may be queued.
 *  Opaque to drivers but for its initialisation. WDK: `KDPC`. */
typedef struct _KDPC {
    /** Object type. WDK: `Type` (part of an anonymous union). */
    UCHAR Type;
    /** Queueing importance. WDK: `Importance` (part of an anonymous union). */
    UCHAR Importance;
    /** Target processor. WDK: `Number` (part of an anonymous union). */
    USHORT Number;
    /** Link in a processor's DPC queue. WDK: `DpcListEntry`. */
    SINGLE_LIST_ENTRY DpcListEntry;
    /** Processors the DPC ran on. WDK: `ProcessorHistory`. */
    KAFFINITY ProcessorHistory;
    /** The routine. WDK: `DeferredRoutine`. */
    PKDEFERRED_ROUTINE DeferredRoutine;
    /** The routine's context. WDK: `DeferredContext`. */
    PVOID DeferredContext;
    /** First system argument. WDK: `SystemArgument1`. */
    PVOID SystemArgument1;
    /** Second system argument. WDK: `SystemArgument2`. */
    PVOID SystemArgument2;
    /** The queue the DPC is in while queued. WDK: `DpcData`. */
    PVOID DpcData;
} KDPC;
/** Pointer to [`KDPC`]. WDK: `PKDPC`. */
typedef KDPC *PKDPC;
/** Pointer to [`KDPC`]. WDK: `PRKDPC`. */
typedef KDPC *PRKDPC;

/** Timer object; must live in non-paged memory while it is set. Opaque to drivers. WDK:
 *  `KTIMER` (64-bit layout: the processor is not encoded in the header). */
typedef struct _KTIMER {
    /** Dispatcher header. WDK: `Header`. */
    DISPATCHER_HEADER Header;
    /** When the timer expires, in interrupt time. WDK: `DueTime` (a `ULARGE_INTEGER`). */
    ULONGLONG DueTime;
    /** Link in the timer table. WDK: `TimerListEntry`. */
    LIST_ENTRY TimerListEntry;
    /** The DPC queued at expiry. WDK: `Dpc`. */
    struct _KDPC *Dpc;
    /** The processor whose table holds the timer. WDK: `Processor`. */
    USHORT Processor;
    /** Internal. WDK: `TimerType`. */
    USHORT TimerType;
    /** Period in milliseconds of a periodic timer (0: one-shot). WDK: `Period`. */
    ULONG Period;
} KTIMER;
/** Pointer to [`KTIMER`]. WDK: `PKTIMER`. */
typedef KTIMER *PKTIMER;

/** Kind of timer. WDK: `TIMER_TYPE`. */
typedef enum _TIMER_TYPE {
    /** Stays signalled once expired, until set again. WDK: `NotificationTimer`. */
    NotificationTimer = 0,
    /** Releases one waiter and resets itself. WDK: `SynchronizationTimer`. */
    SynchronizationTimer = 1
} TIMER_TYPE;

/** Why a thread waits. WDK: `KWAIT_REASON`. */
typedef enum _KWAIT_REASON {
    /** Waiting on behalf of the executive (the usual value for drivers). WDK: `Executive`. */
    Executive = 0,
    /** Waiting for a page. WDK: `FreePage`. */
    FreePage = 1,
    /** Waiting for a page in. WDK: `PageIn`. */
    PageIn = 2,
    /** Waiting on a user request. WDK: `UserRequest`. */
    UserRequest = 6
} KWAIT_REASON;

/* ------------------------------------------------------------------------------------------
 * IRP and IO_STACK_LOCATION (Source: wdm.h reference "IRP structure", "IO_STACK_LOCATION
 * structure"; layout: mingw-w64 ddk/wdm.h; x64 size 0xD0 / 0x48)
 * ---------------------------------------------------------------------------------------- */

/** Entry of a device queue. WDK: `KDEVICE_QUEUE_ENTRY`. */
typedef struct _KDEVICE_QUEUE_ENTRY {
    /** Queue links. WDK: `DeviceListEntry`. */
    LIST_ENTRY DeviceListEntry;
    /** Sort key. WDK: `SortKey`. */
    ULONG SortKey;
    /** Whether the entry is queued. WDK: `Inserted`. */
    BOOLEAN Inserted;
} KDEVICE_QUEUE_ENTRY;

/** Asynchronous procedure call object. Opaque to drivers; present for the IRP layout.
 *  WDK: `KAPC`. */
typedef struct _KAPC {
    /** Object type. WDK: `Type`. */
    UCHAR Type;
    /** Reserved. WDK: `SpareByte0`. */
    UCHAR SpareByte0;
    /** Object size. WDK: `Size`. */
    UCHAR Size;
    /** Reserved. WDK: `SpareByte1`. */
    UCHAR SpareByte1;
    /** Reserved. WDK: `SpareLong0`. */
    ULONG SpareLong0;
    /** Target thread. WDK: `Thread`. */
    PKTHREAD Thread;
    /** Queue links. WDK: `ApcListEntry`. */
    LIST_ENTRY ApcListEntry;
    /** Kernel routine, rundown routine and normal routine. WDK: `KernelRoutine`,
     *  `RundownRoutine`, `NormalRoutine` (here untyped). */
    PVOID Reserved[3];
    /** Context of the normal routine. WDK: `NormalContext`. */
    PVOID NormalContext;
    /** First system argument. WDK: `SystemArgument1`. */
    PVOID SystemArgument1;
    /** Second system argument. WDK: `SystemArgument2`. */
    PVOID SystemArgument2;
    /** APC state index. WDK: `ApcStateIndex`. */
    CCHAR ApcStateIndex;
    /** Processor mode of the APC. WDK: `ApcMode`. */
    KPROCESSOR_MODE ApcMode;
    /** Whether the APC is queued. WDK: `Inserted`. */
    BOOLEAN Inserted;
} KAPC;

/** What `IRP.AssociatedIrp` holds. WDK: the union type of `IRP::AssociatedIrp`. */
typedef union _IRP_ASSOCIATED {
    /** Master IRP of an associated IRP. WDK: `MasterIrp`. */
    struct _IRP *MasterIrp;
    /** Count of associated IRPs of a master IRP. WDK: `IrpCount`. */
    LONG IrpCount;
    /** System buffer of buffered I/O. WDK: `SystemBuffer`. */
    PVOID SystemBuffer;
} IRP_ASSOCIATED;

/** User APC parameters of an IRP. WDK: the struct type of
 *  `IRP::Overlay::AsynchronousParameters`. */
typedef struct _IRP_ASYNCHRONOUS_PARAMETERS {
    /** User APC routine, or the issuing process. WDK: `UserApcRoutine` / `IssuingProcess`
     *  (an anonymous union). */
    PVOID UserApcRoutine;
    /** User APC context. WDK: `UserApcContext`. */
    PVOID UserApcContext;
} IRP_ASYNCHRONOUS_PARAMETERS;

/** What `IRP.Overlay` holds. WDK: the union type of `IRP::Overlay`. */
typedef union _IRP_OVERLAY {
    /** User APC parameters. WDK: `AsynchronousParameters`. */
    IRP_ASYNCHRONOUS_PARAMETERS AsynchronousParameters;
    /** Allocation size of a create request. WDK: `AllocationSize`. */
    LARGE_INTEGER AllocationSize;
} IRP_OVERLAY;

/** Driver-owned context or device queue entry at the start of `IRP.Tail.Overlay`. WDK: the
 *  anonymous union holding `DeviceQueueEntry` and `DriverContext`. */
typedef union _IRP_DRIVER_CONTEXT {
    /** Device queue entry. WDK: `DeviceQueueEntry`. */
    KDEVICE_QUEUE_ENTRY DeviceQueueEntry;
    /** Four pointers the driver that currently owns the IRP may use. WDK: `DriverContext`. */
    PVOID DriverContext[4];
} IRP_DRIVER_CONTEXT;

/** Current stack location, or the packet type of a mini-packet. WDK: the anonymous union
 *  holding `CurrentStackLocation`. */
typedef union _IRP_STACK_POINTER {
    /** The stack location of the driver that currently processes the IRP. WDK:
     *  `CurrentStackLocation`. */
    struct _IO_STACK_LOCATION *CurrentStackLocation;
    /** Packet type. WDK: `PacketType`. */
    ULONG PacketType;
} IRP_STACK_POINTER;

/** Queue links and current stack location. WDK: the anonymous struct holding `ListEntry`
 *  and `CurrentStackLocation`. */
typedef struct _IRP_PACKET {
    /** Queue links of the owning driver. WDK: `ListEntry`. */
    LIST_ENTRY ListEntry;
    /** Current stack location. WDK: the anonymous union holding `CurrentStackLocation`. */
    IRP_STACK_POINTER Stack;
} IRP_PACKET;

/** The I/O manager's and owning driver's part of `IRP.Tail`. WDK: the struct type of
 *  `IRP::Tail::Overlay`. */
typedef struct _IRP_TAIL_OVERLAY {
    /** Driver context or device queue entry. WDK: anonymous union of `DeviceQueueEntry`
     *  and `DriverContext`. */
    IRP_DRIVER_CONTEXT Context;
    /** Thread that issued the request. WDK: `Thread`. */
    PETHREAD Thread;
    /** Auxiliary buffer. WDK: `AuxiliaryBuffer`. */
    PCHAR AuxiliaryBuffer;
    /** Queue links and current stack location. WDK: anonymous struct of `ListEntry` and
     *  `CurrentStackLocation`. */
    IRP_PACKET Packet;
    /** Original file object. WDK: `OriginalFileObject`. */
    PFILE_OBJECT OriginalFileObject;
} IRP_TAIL_OVERLAY;

/** What `IRP.Tail` holds. WDK: the union type of `IRP::Tail`. */
typedef union _IRP_TAIL {
    /** Driver and I/O manager fields. WDK: `Overlay`. */
    IRP_TAIL_OVERLAY Overlay;
    /** APC used to complete the request. WDK: `Apc`. */
    KAPC Apc;
    /** Completion key. WDK: `CompletionKey`. */
    PVOID CompletionKey;
} IRP_TAIL;

/** I/O request packet. A WSK client allocates one per request with [`IoAllocateIrp`],
 *  passes it to a WSK function, and owns it again when its completion routine returns
 *  [`STATUS_MORE_PROCESSING_REQUIRED`]. Stack locations follow the structure. Aligned to
 *  the pool's allocation alignment (16 on x64 and ARM64), as the WDK declares it
 *  (`DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)`). WDK: `IRP`. */
typedef struct __declspec(align(16)) _IRP {
    /** Object type (`IO_TYPE_IRP`). WDK: `Type`. */
    CSHORT Type;
    /** Size of the IRP with its stack locations, in bytes. WDK: `Size`. */
    USHORT Size;
    /** MDL of the request's buffer. WDK: `MdlAddress`. */
    PMDL MdlAddress;
    /** IRP flags. WDK: `Flags`. */
    ULONG Flags;
    /** Associated IRP or system buffer. WDK: `AssociatedIrp`. */
    IRP_ASSOCIATED AssociatedIrp;
    /** Links in the issuing thread's IRP list. WDK: `ThreadListEntry`. */
    LIST_ENTRY ThreadListEntry;
    /** Final status and information, set before completion. WDK: `IoStatus`. */
    IO_STATUS_BLOCK IoStatus;
    /** Mode of the requestor. WDK: `RequestorMode`. */
    KPROCESSOR_MODE RequestorMode;
    /** Set when a lower driver returned STATUS_PENDING. WDK: `PendingReturned`. */
    BOOLEAN PendingReturned;
    /** Number of stack locations. WDK: `StackCount`. */
    CHAR StackCount;
    /** Index (1-based) of the current stack location. WDK: `CurrentLocation`. */
    CHAR CurrentLocation;
    /** Set when the IRP has been cancelled. WDK: `Cancel`. */
    BOOLEAN Cancel;
    /** IRQL saved when the cancel spin lock was taken. WDK: `CancelIrql`. */
    KIRQL CancelIrql;
    /** APC environment. WDK: `ApcEnvironment`. */
    CCHAR ApcEnvironment;
    /** Allocation flags. WDK: `AllocationFlags`. */
    UCHAR AllocationFlags;
    /** User I/O status block. WDK: `UserIosb`. */
    PIO_STATUS_BLOCK UserIosb;
    /** User event. WDK: `UserEvent`. */
    PKEVENT UserEvent;
    /** User APC parameters or allocation size. WDK: `Overlay`. */
    IRP_OVERLAY Overlay;
    /** Cancel routine of the driver that holds the IRP pending; set with
     *  `IoSetCancelRoutine`. WDK: `CancelRoutine`. */
    PDRIVER_CANCEL CancelRoutine;
    /** User buffer. WDK: `UserBuffer`. */
    PVOID UserBuffer;
    /** Driver-owned and I/O manager fields. WDK: `Tail`. */
    IRP_TAIL Tail;
} IRP;

/** The arguments of a request, untyped. WDK: `Parameters.Others` of `IO_STACK_LOCATION`. */
typedef struct _IO_STACK_LOCATION_OTHERS {
    /** First argument. WDK: `Argument1`. */
    PVOID Argument1;
    /** Second argument. WDK: `Argument2`. */
    PVOID Argument2;
    /** Third argument. WDK: `Argument3`. */
    PVOID Argument3;
    /** Fourth argument. WDK: `Argument4`. */
    PVOID Argument4;
} IO_STACK_LOCATION_OTHERS;

/** Request parameters of a stack location; this reconstruction keeps the untyped view.
 *  WDK: the union type of `IO_STACK_LOCATION::Parameters`. */
typedef union _IO_STACK_LOCATION_PARAMETERS {
    /** The parameters as four pointers. WDK: `Others`. */
    IO_STACK_LOCATION_OTHERS Others;
} IO_STACK_LOCATION_PARAMETERS;

/** One driver's view of an IRP: its major function, parameters and the completion routine
 *  the driver above registered. WDK: `IO_STACK_LOCATION`. */
typedef struct _IO_STACK_LOCATION {
    /** `IRP_MJ_*` code. WDK: `MajorFunction`. */
    UCHAR MajorFunction;
    /** `IRP_MN_*` code. WDK: `MinorFunction`. */
    UCHAR MinorFunction;
    /** Request flags. WDK: `Flags`. */
    UCHAR Flags;
    /** `SL_*` control flags, among them when to invoke the completion routine. WDK:
     *  `Control`. */
    UCHAR Control;
    /** Request parameters. WDK: `Parameters`. */
    IO_STACK_LOCATION_PARAMETERS Parameters;
    /** Device object of the driver this location belongs to. WDK: `DeviceObject`. */
    PDEVICE_OBJECT DeviceObject;
    /** File object of the request. WDK: `FileObject`. */
    PFILE_OBJECT FileObject;
    /** Completion routine registered by the driver above. WDK: `CompletionRoutine`. */
    PIO_COMPLETION_ROUTINE CompletionRoutine;
    /** Context passed to `CompletionRoutine`. WDK: `Context`. */
    PVOID Context;
} IO_STACK_LOCATION;
/** Pointer to [`IO_STACK_LOCATION`]. WDK: `PIO_STACK_LOCATION`. */
typedef IO_STACK_LOCATION *PIO_STACK_LOCATION;

/** Stack-location control flag: a lower driver returned STATUS_PENDING. WDK:
 *  `SL_PENDING_RETURNED`. */
static const UCHAR SL_PENDING_RETURNED = 0x01;
/** Stack-location control flag: an error was returned. WDK: `SL_ERROR_RETURNED`. */
static const UCHAR SL_ERROR_RETURNED = 0x02;
/** Call the completion routine when the IRP is cancelled. WDK: `SL_INVOKE_ON_CANCEL`. */
static const UCHAR SL_INVOKE_ON_CANCEL = 0x20;
/** Call the completion routine when the IRP succeeds. WDK: `SL_INVOKE_ON_SUCCESS`. */
static const UCHAR SL_INVOKE_ON_SUCCESS = 0x40;
/** Call the completion routine when the IRP fails. WDK: `SL_INVOKE_ON_ERROR`. */
static const UCHAR SL_INVOKE_ON_ERROR = 0x80;

/* ------------------------------------------------------------------------------------------
 * Driver object (Source: wdm.h reference "DRIVER_OBJECT structure"; layout: mingw-w64
 * ddk/wdm.h; x64 size 0x150, DriverUnload at 0x68)
 * ---------------------------------------------------------------------------------------- */

/** A loaded driver, as passed to `DriverEntry`. WDK: `DRIVER_OBJECT`. */
typedef struct _DRIVER_OBJECT {
    /** Object type. WDK: `Type`. */
    CSHORT Type;
    /** Object size. WDK: `Size`. */
    CSHORT Size;
    /** First device object the driver created. WDK: `DeviceObject`. */
    PDEVICE_OBJECT DeviceObject;
    /** Driver flags. WDK: `Flags`. */
    ULONG Flags;
    /** Base address of the driver image. WDK: `DriverStart`. */
    PVOID DriverStart;
    /** Size of the driver image. WDK: `DriverSize`. */
    ULONG DriverSize;
    /** Internal. WDK: `DriverSection`. */
    PVOID DriverSection;
    /** Driver extension. WDK: `DriverExtension`. */
    PDRIVER_EXTENSION DriverExtension;
    /** Name of the driver object. WDK: `DriverName`. */
    UNICODE_STRING DriverName;
    /** Hardware configuration path in the registry. WDK: `HardwareDatabase`. */
    PUNICODE_STRING HardwareDatabase;
    /** Fast I/O table. WDK: `FastIoDispatch`. */
    PFAST_IO_DISPATCH FastIoDispatch;
    /** The driver's entry point. WDK: `DriverInit`. */
    PDRIVER_INITIALIZE DriverInit;
    /** StartIo routine. WDK: `DriverStartIo`. */
    PDRIVER_STARTIO DriverStartIo;
    /** Unload routine; a driver that can be unloaded sets it in `DriverEntry`. WDK:
     *  `DriverUnload`. */
    PDRIVER_UNLOAD DriverUnload;
    /** Dispatch routines indexed by `IRP_MJ_*` (IRP_MJ_MAXIMUM_FUNCTION + 1 = 28 entries).
     *  WDK: `MajorFunction`. */
    PDRIVER_DISPATCH MajorFunction[28];
} DRIVER_OBJECT;

/* ------------------------------------------------------------------------------------------
 * Pool (Source: wdm.h reference "ExAllocatePool2", "POOL_TYPE", "ExFreePoolWithTag")
 * ---------------------------------------------------------------------------------------- */

/** Kind of pool for [`ExAllocatePoolWithTag`]. WDK: `POOL_TYPE`. */
typedef enum _POOL_TYPE {
    /** Non-paged, executable pool. WDK: `NonPagedPool`. */
    NonPagedPool = 0,
    /** Paged pool: never touch it at DISPATCH_LEVEL. WDK: `PagedPool`. */
    PagedPool = 1,
    /** Non-paged, no-execute pool (Windows 8 and later). WDK: `NonPagedPoolNx`. */
    NonPagedPoolNx = 512
} POOL_TYPE;

/** [`ExAllocatePool2`] flag: do not zero the allocation. WDK: `POOL_FLAG_UNINITIALIZED`. */
static const POOL_FLAGS POOL_FLAG_UNINITIALIZED = 0x0000000000000002ULL;
/** [`ExAllocatePool2`] flag: non-paged, no-execute pool. WDK: `POOL_FLAG_NON_PAGED`. */
static const POOL_FLAGS POOL_FLAG_NON_PAGED = 0x0000000000000040ULL;
/** [`ExAllocatePool2`] flag: paged pool. WDK: `POOL_FLAG_PAGED`. */
static const POOL_FLAGS POOL_FLAG_PAGED = 0x0000000000000100ULL;

/* ------------------------------------------------------------------------------------------
 * Registry access (Source: wdm.h reference "ZwOpenKey", "ZwQueryValueKey",
 * "OBJECT_ATTRIBUTES", "KEY_VALUE_PARTIAL_INFORMATION")
 * ---------------------------------------------------------------------------------------- */

/** Names an object to open. Initialise it as the `InitializeObjectAttributes` macro does.
 *  WDK: `OBJECT_ATTRIBUTES`. */
typedef struct _OBJECT_ATTRIBUTES {
    /** Size of the structure in bytes. WDK: `Length`. */
    ULONG Length;
    /** Directory `ObjectName` is relative to, or NULL. WDK: `RootDirectory`. */
    HANDLE RootDirectory;
    /** Name of the object. WDK: `ObjectName`. */
    PUNICODE_STRING ObjectName;
    /** `OBJ_*` flags. WDK: `Attributes`. */
    ULONG Attributes;
    /** Security descriptor, or NULL. WDK: `SecurityDescriptor`. */
    PVOID SecurityDescriptor;
    /** Security quality of service, or NULL. WDK: `SecurityQualityOfService`. */
    PVOID SecurityQualityOfService;
} OBJECT_ATTRIBUTES;
/** Pointer to [`OBJECT_ATTRIBUTES`]. WDK: `POBJECT_ATTRIBUTES`. */
typedef OBJECT_ATTRIBUTES *POBJECT_ATTRIBUTES;

/** Object attribute: names are compared case-insensitively. WDK: `OBJ_CASE_INSENSITIVE`. */
static const ULONG OBJ_CASE_INSENSITIVE = 0x00000040;
/** Object attribute: the handle is a kernel handle. WDK: `OBJ_KERNEL_HANDLE`. */
static const ULONG OBJ_KERNEL_HANDLE = 0x00000200;
/** Right to read a registry key's values. WDK: `KEY_QUERY_VALUE`. */
static const ACCESS_MASK KEY_QUERY_VALUE = 0x0001;
/** Read rights on a registry key. WDK: `KEY_READ`. */
static const ACCESS_MASK KEY_READ = 0x00020019;
/** Registry value type: NUL-terminated UTF-16 string. WDK: `REG_SZ`. */
static const ULONG REG_SZ = 1;
/** Registry value type: 32-bit number. WDK: `REG_DWORD`. */
static const ULONG REG_DWORD = 4;
/** Registry value type: list of NUL-terminated UTF-16 strings. WDK: `REG_MULTI_SZ`. */
static const ULONG REG_MULTI_SZ = 7;

/** What [`ZwQueryValueKey`] returns. WDK: `KEY_VALUE_INFORMATION_CLASS`. */
typedef enum _KEY_VALUE_INFORMATION_CLASS {
    /** `KEY_VALUE_BASIC_INFORMATION`. WDK: `KeyValueBasicInformation`. */
    KeyValueBasicInformation = 0,
    /** `KEY_VALUE_FULL_INFORMATION`. WDK: `KeyValueFullInformation`. */
    KeyValueFullInformation = 1,
    /** [`KEY_VALUE_PARTIAL_INFORMATION`]. WDK: `KeyValuePartialInformation`. */
    KeyValuePartialInformation = 2
} KEY_VALUE_INFORMATION_CLASS;

/** A registry value's type and data. `Data` extends past the structure by
 *  `DataLength - 1` bytes. WDK: `KEY_VALUE_PARTIAL_INFORMATION`. */
typedef struct _KEY_VALUE_PARTIAL_INFORMATION {
    /** Reserved. WDK: `TitleIndex`. */
    ULONG TitleIndex;
    /** `REG_*` type of the value. WDK: `Type`. */
    ULONG Type;
    /** Length of `Data` in bytes. WDK: `DataLength`. */
    ULONG DataLength;
    /** First byte of the value's data. WDK: `Data`. */
    UCHAR Data[1];
} KEY_VALUE_PARTIAL_INFORMATION;
/** Pointer to [`KEY_VALUE_PARTIAL_INFORMATION`]. WDK: `PKEY_VALUE_PARTIAL_INFORMATION`. */
typedef KEY_VALUE_PARTIAL_INFORMATION *PKEY_VALUE_PARTIAL_INFORMATION;

/* ------------------------------------------------------------------------------------------
 * ntoskrnl.exe exports (Source: the wdm.h reference page of each routine; each is a real
 * export of ntoskrnl.exe, listed in xtask's ntoskrnl.def)
 * ---------------------------------------------------------------------------------------- */

/** Allocates an IRP with `StackSize` stack locations from non-paged pool; returns NULL on
 *  failure. IRQL <= DISPATCH_LEVEL. WDK: `IoAllocateIrp`. */
PIRP __stdcall IoAllocateIrp(CCHAR StackSize, BOOLEAN ChargeQuota);
/** Frees an IRP allocated by [`IoAllocateIrp`]. IRQL <= DISPATCH_LEVEL. WDK: `IoFreeIrp`. */
void __stdcall IoFreeIrp(PIRP Irp);
/** Reinitialises a completed IRP for reuse, setting `IoStatus.Status` to `Iostatus`.
 *  IRQL <= DISPATCH_LEVEL. WDK: `IoReuseIrp`. */
void __stdcall IoReuseIrp(PIRP Irp, NTSTATUS Iostatus);
/** Initialises an IRP the caller allocated itself. IRQL <= DISPATCH_LEVEL. WDK:
 *  `IoInitializeIrp`. */
void __stdcall IoInitializeIrp(PIRP Irp, USHORT PacketSize, CCHAR StackSize);
/** Requests cancellation of an IRP; returns TRUE when a cancel routine was called.
 *  IRQL <= DISPATCH_LEVEL. WDK: `IoCancelIrp`. */
BOOLEAN __stdcall IoCancelIrp(PIRP Irp);
/** Completes an IRP: calls the completion routines of the stack locations above the
 *  current one, stopping at one that returns STATUS_MORE_PROCESSING_REQUIRED.
 *  IRQL <= DISPATCH_LEVEL. WDK: `IofCompleteRequest` (the export behind the
 *  `IoCompleteRequest` macro). */
void __fastcall IofCompleteRequest(PIRP Irp, CCHAR PriorityBoost);
/** Registers a completion routine in the next stack location, allocating a context so the
 *  driver cannot unload before the routine runs. IRQL <= DISPATCH_LEVEL. WDK:
 *  `IoSetCompletionRoutineEx`. */
NTSTATUS __stdcall IoSetCompletionRoutineEx(PDEVICE_OBJECT DeviceObject, PIRP Irp,
                                            PIO_COMPLETION_ROUTINE CompletionRoutine,
                                            PVOID Context, BOOLEAN InvokeOnSuccess,
                                            BOOLEAN InvokeOnError, BOOLEAN InvokeOnCancel);
/** Takes the system cancel spin lock. IRQL <= DISPATCH_LEVEL. WDK:
 *  `IoAcquireCancelSpinLock`. */
void __stdcall IoAcquireCancelSpinLock(PKIRQL Irql);
/** Releases the system cancel spin lock. IRQL == DISPATCH_LEVEL. WDK:
 *  `IoReleaseCancelSpinLock`. */
void __stdcall IoReleaseCancelSpinLock(KIRQL Irql);

/** Allocates an MDL for a buffer; optionally links it to an IRP. Returns NULL on failure.
 *  IRQL <= DISPATCH_LEVEL. WDK: `IoAllocateMdl`. */
PMDL __stdcall IoAllocateMdl(PVOID VirtualAddress, ULONG Length, BOOLEAN SecondaryBuffer,
                             BOOLEAN ChargeQuota, PIRP Irp);
/** Frees an MDL allocated by [`IoAllocateMdl`]. IRQL <= DISPATCH_LEVEL. WDK: `IoFreeMdl`. */
void __stdcall IoFreeMdl(PMDL Mdl);
/** Builds a partial MDL describing part of another MDL's buffer. IRQL <= DISPATCH_LEVEL.
 *  WDK: `IoBuildPartialMdl`. */
void __stdcall IoBuildPartialMdl(PMDL SourceMdl, PMDL TargetMdl, PVOID VirtualAddress,
                                 ULONG Length);
/** Fills in an MDL's page array for a buffer in non-paged pool. IRQL <= DISPATCH_LEVEL.
 *  WDK: `MmBuildMdlForNonPagedPool`. */
void __stdcall MmBuildMdlForNonPagedPool(PMDL MemoryDescriptorList);
/** Makes a buffer's pages resident and locks them. IRQL <= APC_LEVEL for pageable
 *  buffers. WDK: `MmProbeAndLockPages`. */
void __stdcall MmProbeAndLockPages(PMDL MemoryDescriptorList, KPROCESSOR_MODE AccessMode,
                                   LOCK_OPERATION Operation);
/** Unlocks pages locked by [`MmProbeAndLockPages`]. IRQL <= DISPATCH_LEVEL. WDK:
 *  `MmUnlockPages`. */
void __stdcall MmUnlockPages(PMDL MemoryDescriptorList);
/** Maps an MDL's locked pages into a virtual address range. IRQL <= DISPATCH_LEVEL for
 *  kernel mappings. WDK: `MmMapLockedPagesSpecifyCache`. */
PVOID __stdcall MmMapLockedPagesSpecifyCache(PMDL MemoryDescriptorList,
                                            KPROCESSOR_MODE AccessMode,
                                            MEMORY_CACHING_TYPE CacheType,
                                            PVOID RequestedAddress, ULONG BugCheckOnFailure,
                                            ULONG Priority);
/** Releases a mapping made by [`MmMapLockedPagesSpecifyCache`]. IRQL <= DISPATCH_LEVEL.
 *  WDK: `MmUnmapLockedPages`. */
void __stdcall MmUnmapLockedPages(PVOID BaseAddress, PMDL MemoryDescriptorList);

/** Allocates pool memory (Windows 10 2004 and later); returns NULL on failure. IRQL <=
 *  DISPATCH_LEVEL for non-paged pool. A driver that imports it does not load on earlier
 *  systems: resolve it with [`MmGetSystemRoutineAddress`] instead (as the `pool` module
 *  does). WDK: `ExAllocatePool2`. */
PVOID __stdcall ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag);
/** Allocates pool memory of the given type with a four-byte tag; returns NULL on failure.
 *  IRQL <= DISPATCH_LEVEL for non-paged pool. WDK: `ExAllocatePoolWithTag`. */
PVOID __stdcall ExAllocatePoolWithTag(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag);
/** Frees pool memory allocated with `Tag`. IRQL <= DISPATCH_LEVEL. WDK:
 *  `ExFreePoolWithTag`. */
void __stdcall ExFreePoolWithTag(PVOID P, ULONG Tag);

/** Returns the address of a routine ntoskrnl.exe or the HAL exports, or NULL when the
 *  running system does not export it: how a driver calls a routine newer than the oldest
 *  system it supports without importing it (an image whose imports the loader cannot
 *  resolve does not load). `SystemRoutineName` is the routine's name. IRQL ==
 *  PASSIVE_LEVEL. WDK: `MmGetSystemRoutineAddress`. */
PVOID __stdcall MmGetSystemRoutineAddress(PUNICODE_STRING SystemRoutineName);

/** Initialises an event object in non-paged memory. IRQL <= DISPATCH_LEVEL. WDK:
 *  `KeInitializeEvent`. */
void __stdcall KeInitializeEvent(PRKEVENT Event, EVENT_TYPE Type, BOOLEAN State);
/** Signals an event; returns its previous state. IRQL <= DISPATCH_LEVEL. WDK: `KeSetEvent`. */
LONG __stdcall KeSetEvent(PRKEVENT Event, KPRIORITY Increment, BOOLEAN Wait);
/** Resets an event to not-signalled; returns its previous state. IRQL <= DISPATCH_LEVEL.
 *  WDK: `KeResetEvent`. */
LONG __stdcall KeResetEvent(PRKEVENT Event);
/** Resets an event to not-signalled. IRQL <= DISPATCH_LEVEL. WDK: `KeClearEvent`. */
void __stdcall KeClearEvent(PRKEVENT Event);
/** Returns the current state of an event (non-zero when signalled). IRQL <=
 *  DISPATCH_LEVEL. WDK: `KeReadStateEvent`. */
LONG __stdcall KeReadStateEvent(PRKEVENT Event);
/** Waits for a dispatcher object. A non-zero or NULL (infinite) timeout needs IRQL <=
 *  APC_LEVEL; a zero timeout may be used at DISPATCH_LEVEL. Timeouts are in 100 ns units,
 *  negative for relative. Returns STATUS_SUCCESS or STATUS_TIMEOUT. WDK:
 *  `KeWaitForSingleObject`. */
NTSTATUS __stdcall KeWaitForSingleObject(PVOID Object, KWAIT_REASON WaitReason,
                                         KPROCESSOR_MODE WaitMode, BOOLEAN Alertable,
                                         PLARGE_INTEGER Timeout);
/** Puts the current thread to sleep for an interval (100 ns units, negative for relative).
 *  IRQL <= APC_LEVEL. WDK: `KeDelayExecutionThread`. */
NTSTATUS __stdcall KeDelayExecutionThread(KPROCESSOR_MODE WaitMode, BOOLEAN Alertable,
                                          PLARGE_INTEGER Interval);
/** The identifier of the current thread, unique among live threads. Any IRQL. WDK:
 *  `PsGetCurrentThreadId`. */
HANDLE __stdcall PsGetCurrentThreadId(void);
/** The system-wide index of the processor the caller runs on (unique across processor
 *  groups, below `KeQueryMaximumProcessorCountEx(ALL_PROCESSOR_GROUPS)`), and, unless
 *  `ProcNumber` is null, its group and number. Stable while the caller runs at
 *  DISPATCH_LEVEL or above. Any IRQL. WDK: `KeGetCurrentProcessorNumberEx`. */
ULONG __stdcall KeGetCurrentProcessorNumberEx(PPROCESSOR_NUMBER ProcNumber);
/** Returns the performance counter and, optionally, its frequency. Any IRQL. WDK:
 *  `KeQueryPerformanceCounter`. */
LARGE_INTEGER __stdcall KeQueryPerformanceCounter(PLARGE_INTEGER PerformanceFrequency);

/** Initialises a DPC object in non-paged memory with its routine and context. IRQL any.
 *  WDK: `KeInitializeDpc`. */
void __stdcall KeInitializeDpc(PRKDPC Dpc, PKDEFERRED_ROUTINE DeferredRoutine,
                               PVOID DeferredContext);
/** Returns once every DPC queued on any processor when it was called has run. IRQL ==
 *  PASSIVE_LEVEL (the WDK header allows APC_LEVEL). WDK: `KeFlushQueuedDpcs`. */
void __stdcall KeFlushQueuedDpcs(void);
/** Initialises a timer object in non-paged memory, not set. IRQL <= DISPATCH_LEVEL. WDK:
 *  `KeInitializeTimerEx`. */
void __stdcall KeInitializeTimerEx(PKTIMER Timer, TIMER_TYPE Type);
/** Sets a timer to expire at `DueTime` (100 ns units; negative: relative to now, in
 *  interrupt time; positive: absolute system time) and to queue `Dpc` then (NULL: none).
 *  A set timer is cancelled first; returns whether it was set. IRQL <= DISPATCH_LEVEL. WDK:
 *  `KeSetTimer`. */
BOOLEAN __stdcall KeSetTimer(PKTIMER Timer, LARGE_INTEGER DueTime, PKDPC Dpc);
/** Cancels a set timer; returns whether it was set (its DPC then will not be queued for
 *  this expiry). FALSE means it had expired: its DPC is queued, running or has run. IRQL <=
 *  DISPATCH_LEVEL. WDK: `KeCancelTimer`. */
BOOLEAN __stdcall KeCancelTimer(PKTIMER); /* unnamed in the WDK's wdm.h */
/** The interrupt time, in 100 ns units, without the time the system spent asleep or
 *  hibernating (Windows 7 and later). Any IRQL. WDK: `KeQueryUnbiasedInterruptTime`. */
ULONGLONG __stdcall KeQueryUnbiasedInterruptTime(void);
/** Brings the system down with a bug check code and four parameters; never returns. WDK:
 *  `KeBugCheckEx`. */
__declspec(noreturn) void __stdcall KeBugCheckEx(ULONG BugCheckCode,
                                                 ULONG_PTR BugCheckParameter1,
                                                 ULONG_PTR BugCheckParameter2,
                                                 ULONG_PTR BugCheckParameter3,
                                                 ULONG_PTR BugCheckParameter4);

/** Takes a spin lock, raising the IRQL to DISPATCH_LEVEL; returns the previous IRQL for
 *  [`KeReleaseSpinLock`]. IRQL <= DISPATCH_LEVEL. WDK: `KeAcquireSpinLockRaiseToDpc`. */
KIRQL __stdcall KeAcquireSpinLockRaiseToDpc(PKSPIN_LOCK SpinLock);
/** Releases a spin lock and restores the IRQL returned by
 *  [`KeAcquireSpinLockRaiseToDpc`]. IRQL == DISPATCH_LEVEL. WDK: `KeReleaseSpinLock`. */
void __stdcall KeReleaseSpinLock(PKSPIN_LOCK SpinLock, KIRQL NewIrql);

/* ------------------------------------------------------------------------------------------
 * Work items (Source: wdm.h reference "IoAllocateWorkItem", "IoQueueWorkItemEx",
 * "IoFreeWorkItem", "IO_WORKITEM_ROUTINE_EX", "WORK_QUEUE_TYPE")
 * ---------------------------------------------------------------------------------------- */

/** A work item of the I/O manager, opaque: allocated by [`IoAllocateWorkItem`]. WDK:
 *  `IO_WORKITEM`. */
struct _IO_WORKITEM;
/** A work item of the I/O manager, opaque. WDK: `IO_WORKITEM`. */
typedef struct _IO_WORKITEM IO_WORKITEM;
/** Pointer to an opaque work item. WDK: `PIO_WORKITEM`. */
typedef struct _IO_WORKITEM *PIO_WORKITEM;

/** The system worker queue a work item runs from. The WDK's enumeration continues with
 *  values [`IoQueueWorkItemEx`] does not accept. WDK: `WORK_QUEUE_TYPE`. */
typedef enum _WORK_QUEUE_TYPE {
    /** Time-critical work; the worker threads run at a real-time priority. WDK:
     *  `CriticalWorkQueue`. */
    CriticalWorkQueue = 0,
    /** Ordinary work: what drivers should use. WDK: `DelayedWorkQueue`. */
    DelayedWorkQueue = 1,
    /** Reserved for the system. WDK: `HyperCriticalWorkQueue`. */
    HyperCriticalWorkQueue = 2
} WORK_QUEUE_TYPE;

/** Routine a system worker thread calls for a work item queued with [`IoQueueWorkItemEx`]:
 *  `IoObject` is the object the item was allocated for, `Context` the caller's and
 *  `IoWorkItem` the item, which the routine may queue again or free. Runs at PASSIVE_LEVEL and
 *  must return at PASSIVE_LEVEL. WDK: `PIO_WORKITEM_ROUTINE_EX` (`IO_WORKITEM_ROUTINE_EX`). */
typedef void (__stdcall *PIO_WORKITEM_ROUTINE_EX)(PVOID IoObject, PVOID Context,
                                                  PIO_WORKITEM IoWorkItem);

/** Allocates a work item for a device object, or for the caller's driver object cast to
 *  `PDEVICE_OBJECT`; returns NULL on failure. While the item is queued or running, the I/O
 *  manager holds a reference on the object, so the driver cannot unload. IRQL <=
 *  DISPATCH_LEVEL. WDK: `IoAllocateWorkItem`. */
PIO_WORKITEM __stdcall IoAllocateWorkItem(PDEVICE_OBJECT DeviceObject);
/** Frees a work item allocated by [`IoAllocateWorkItem`] that is not queued (its own routine
 *  may free it). IRQL <= DISPATCH_LEVEL. WDK: `IoFreeWorkItem`. */
void __stdcall IoFreeWorkItem(PIO_WORKITEM IoWorkItem);
/** Queues a work item: a system worker thread calls `WorkerRoutine` at PASSIVE_LEVEL. An
 *  item must not be queued again before its routine has started. IRQL <= DISPATCH_LEVEL.
 *  WDK: `IoQueueWorkItemEx`. */
void __stdcall IoQueueWorkItemEx(PIO_WORKITEM IoWorkItem, PIO_WORKITEM_ROUTINE_EX WorkerRoutine,
                                 WORK_QUEUE_TYPE QueueType, PVOID Context);

/** Operating system version information. WDK: `RTL_OSVERSIONINFOW`. */
typedef struct _OSVERSIONINFOW {
    /** Size of the structure in bytes; set by the caller. WDK: `dwOSVersionInfoSize`. */
    ULONG dwOSVersionInfoSize;
    /** Major version (10 for Windows 10 and 11). WDK: `dwMajorVersion`. */
    ULONG dwMajorVersion;
    /** Minor version. WDK: `dwMinorVersion`. */
    ULONG dwMinorVersion;
    /** Build number (15063 is Windows 10 1703). WDK: `dwBuildNumber`. */
    ULONG dwBuildNumber;
    /** Platform identifier. WDK: `dwPlatformId`. */
    ULONG dwPlatformId;
    /** Service pack string. WDK: `szCSDVersion`. */
    WCHAR szCSDVersion[128];
} RTL_OSVERSIONINFOW;
/** Pointer to [`RTL_OSVERSIONINFOW`]. WDK: `PRTL_OSVERSIONINFOW`. */
typedef RTL_OSVERSIONINFOW *PRTL_OSVERSIONINFOW;
/** Returns the version of the running system. IRQL == PASSIVE_LEVEL. WDK: `RtlGetVersion`. */
NTSTATUS __stdcall RtlGetVersion(PRTL_OSVERSIONINFOW lpVersionInformation);

/** Initialises a counted string to point at a NUL-terminated UTF-16 string. WDK:
 *  `RtlInitUnicodeString`. */
void __stdcall RtlInitUnicodeString(PUNICODE_STRING DestinationString, PCWSTR SourceString);
/** Opens a registry key. IRQL == PASSIVE_LEVEL. WDK: `ZwOpenKey`. */
NTSTATUS __stdcall ZwOpenKey(PHANDLE KeyHandle, ACCESS_MASK DesiredAccess,
                             POBJECT_ATTRIBUTES ObjectAttributes);
/** Reads a value of an open registry key. IRQL == PASSIVE_LEVEL. WDK: `ZwQueryValueKey`. */
NTSTATUS __stdcall ZwQueryValueKey(HANDLE KeyHandle, PUNICODE_STRING ValueName,
                                   KEY_VALUE_INFORMATION_CLASS KeyValueInformationClass,
                                   PVOID KeyValueInformation, ULONG Length,
                                   PULONG ResultLength);
/** Closes a kernel handle. IRQL == PASSIVE_LEVEL. WDK: `ZwClose`. */
NTSTATUS __stdcall ZwClose(HANDLE Handle);

#endif /* WSK_SYS_KM_IO_H */
