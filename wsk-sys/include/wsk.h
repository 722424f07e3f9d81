/*
 * wsk-sys: the Winsock Kernel interface (the WDK's km/wsk.h).
 *
 * The project's own reconstruction, written from Microsoft's WSK reference
 * (learn.microsoft.com/windows-hardware/drivers/ddi/wsk/, one page per structure,
 * callback and function) and cross-checked, for member order and constant values, against
 * the public reconstructions in ReactOS (include/ddk/wsk.h), Wine (include/ddk/wsk.h) and
 * mingw-w64-ksocket (wsk.h). Each item notes its reference page.
 *
 * Differences from the WDK header, none of which changes the ABI:
 *  - The WDK embeds `WSK_PROVIDER_BASIC_DISPATCH` in every socket dispatch table as an
 *    anonymous member (a Microsoft extension). Here the member is named `Basic`, so the
 *    two basic functions are reached as `Dispatch->Basic.WskCloseSocket`. The offsets are
 *    those of the WDK; `src/abi.rs` asserts each one.
 *  - `PFN_WSK_SEND_EX` and `PFN_WSK_RECEIVE_EX` are declared with the signatures the
 *    reference documents (older headers declare the slots `void *`).
 */
#ifndef WSK_SYS_WSK_H
#define WSK_SYS_WSK_H

#include "km_types.h"
#include "km_io.h"
#include "km_net.h"

/* ------------------------------------------------------------------------------------------
 * Versions and basic constants (Source: "WSK_CLIENT_DISPATCH", "WskCaptureProviderNPI")
 * ---------------------------------------------------------------------------------------- */

/** Identifier of a network programming interface. WDK: `NPIID` (netioddk.h). */
typedef GUID NPIID;
/** Pointer to a constant [`NPIID`]. WDK: `PNPIID` (`const GUID *`). */
typedef const NPIID *PNPIID;

/** Wait forever in [`WskCaptureProviderNPI`]. WDK: `WSK_INFINITE_WAIT`. */
static const ULONG WSK_INFINITE_WAIT = 0xffffffff;
/** Do not wait in [`WskCaptureProviderNPI`]. WDK: `WSK_NO_WAIT`. */
static const ULONG WSK_NO_WAIT = 0;

/* Socket categories (Source: "WskSocket", Flags parameter). */

/** Basic socket: only control and close. WDK: `WSK_FLAG_BASIC_SOCKET`. */
static const ULONG WSK_FLAG_BASIC_SOCKET = 0x00000000;
/** Listening socket. WDK: `WSK_FLAG_LISTEN_SOCKET`. */
static const ULONG WSK_FLAG_LISTEN_SOCKET = 0x00000001;
/** Connection-oriented socket. WDK: `WSK_FLAG_CONNECTION_SOCKET`. */
static const ULONG WSK_FLAG_CONNECTION_SOCKET = 0x00000002;
/** Datagram socket. WDK: `WSK_FLAG_DATAGRAM_SOCKET`. */
static const ULONG WSK_FLAG_DATAGRAM_SOCKET = 0x00000004;
/** Stream socket, listening or connecting (Windows 10 1703). WDK:
 *  `WSK_FLAG_STREAM_SOCKET`. */
static const ULONG WSK_FLAG_STREAM_SOCKET = 0x00000008;

/* Request flags (Source: "WskSend", "WskReceive", "WskDisconnect"). */

/** Send: the data is out-of-band (urgent) data; receive event: the indicated data is
 *  out-of-band. WDK: `WSK_FLAG_OOB`. */
static const ULONG WSK_FLAG_OOB = 0x00000001;
/** Send: transmit at once, without Nagle delay. WDK: `WSK_FLAG_NODELAY`. */
static const ULONG WSK_FLAG_NODELAY = 0x00000002;
/** Receive: complete only when the buffer is full, the peer disconnects or the IRP is
 *  cancelled. WDK: `WSK_FLAG_WAITALL`. */
static const ULONG WSK_FLAG_WAITALL = 0x00000002;
/** Receive: discard data until disconnection (zero-length buffer). WDK: `WSK_FLAG_DRAIN`. */
static const ULONG WSK_FLAG_DRAIN = 0x00000004;
/** Disconnect: abort the connection instead of a graceful close. Also reported to the
 *  disconnect event. WDK: `WSK_FLAG_ABORTIVE`. */
static const ULONG WSK_FLAG_ABORTIVE = 0x00000001;

/* Event callback flags (Source: "WskReceiveEvent", "WskAcceptEvent"). */

/** Release indicated data as soon as possible. WDK: `WSK_FLAG_RELEASE_ASAP`. */
static const ULONG WSK_FLAG_RELEASE_ASAP = 0x00000002;
/** The indicated data ends a message (for TCP: the push bit was set). WDK:
 *  `WSK_FLAG_ENTIRE_MESSAGE`. */
static const ULONG WSK_FLAG_ENTIRE_MESSAGE = 0x00000004;
/** The callback runs at IRQL == DISPATCH_LEVEL. WDK: `WSK_FLAG_AT_DISPATCH_LEVEL`. */
static const ULONG WSK_FLAG_AT_DISPATCH_LEVEL = 0x00000008;

/* Event masks for SO_WSK_EVENT_CALLBACK (Source: "WSK_EVENT_CALLBACK_CONTROL"). */

/** Send-backlog event. WDK: `WSK_EVENT_SEND_BACKLOG`. */
static const ULONG WSK_EVENT_SEND_BACKLOG = 0x00000010;
/** Receive event of a connection socket. WDK: `WSK_EVENT_RECEIVE`. */
static const ULONG WSK_EVENT_RECEIVE = 0x00000040;
/** Disconnect event of a connection socket. WDK: `WSK_EVENT_DISCONNECT`. */
static const ULONG WSK_EVENT_DISCONNECT = 0x00000080;
/** Receive-from event of a datagram socket. WDK: `WSK_EVENT_RECEIVE_FROM`. */
static const ULONG WSK_EVENT_RECEIVE_FROM = 0x00000100;
/** Accept event of a listening socket. WDK: `WSK_EVENT_ACCEPT`. */
static const ULONG WSK_EVENT_ACCEPT = 0x00000200;
/** Combined with other bits: disable the named events instead of enabling them. WDK:
 *  `WSK_EVENT_DISABLE`. */
static const ULONG WSK_EVENT_DISABLE = 0x80000000;

/* Client control codes (Source: "WskControlClient"). */

/** Query the list of available transports. WDK: `WSK_TRANSPORT_LIST_QUERY`. */
static const ULONG WSK_TRANSPORT_LIST_QUERY = 2;
/** Be notified when the transport list changes. WDK: `WSK_TRANSPORT_LIST_CHANGE`. */
static const ULONG WSK_TRANSPORT_LIST_CHANGE = 3;
/** Cache a security descriptor. WDK: `WSK_CACHE_SD`. */
static const ULONG WSK_CACHE_SD = 4;
/** Release a cached security descriptor. WDK: `WSK_RELEASE_SD`. */
static const ULONG WSK_RELEASE_SD = 5;
/** Set the TDI device name mapping. WDK: `WSK_TDI_DEVICENAME_MAPPING`. */
static const ULONG WSK_TDI_DEVICENAME_MAPPING = 6;
/** Enable event callbacks on every socket the client creates from now on. WDK:
 *  `WSK_SET_STATIC_EVENT_CALLBACKS`. */
static const ULONG WSK_SET_STATIC_EVENT_CALLBACKS = 7;
/** Set TDI behaviour. WDK: `WSK_TDI_BEHAVIOR`. */
static const ULONG WSK_TDI_BEHAVIOR = 8;
/** `WSK_TDI_BEHAVIOR` value: never use TDI transports. WDK: `WSK_TDI_BEHAVIOR_BYPASS_TDI`. */
static const ULONG WSK_TDI_BEHAVIOR_BYPASS_TDI = 0x00000001;

/* Socket options and I/O control codes (Source: "WSK Socket Options",
 * "WSK Socket IOCTL Operations"; WSK_SO_BASE from ws2def.h, IOC_WSK from mswsockdef.h). */

/** Base of the WSK-specific socket options. WDK: `WSK_SO_BASE`. */
static const ULONG WSK_SO_BASE = 0x4000;
/** Set or get a socket's security descriptor. WDK: `SO_WSK_SECURITY` (`WSK_SO_BASE + 1`). */
static const ULONG SO_WSK_SECURITY = 0x4001;
/** Enable or disable event callbacks of a socket; value: [`WSK_EVENT_CALLBACK_CONTROL`].
 *  WDK: `SO_WSK_EVENT_CALLBACK` (`WSK_SO_BASE + 2`). */
static const ULONG SO_WSK_EVENT_CALLBACK = 0x4002;
/** Fix the remote address of a datagram socket. WDK: `SIO_WSK_SET_REMOTE_ADDRESS`
 *  (`_WSAIOW(IOC_WSK, 1)`). */
static const ULONG SIO_WSK_SET_REMOTE_ADDRESS = 0x8F000001;
/** Register an extension interface. WDK: `SIO_WSK_REGISTER_EXTENSION`
 *  (`_WSAIORW(IOC_WSK, 2)`). */
static const ULONG SIO_WSK_REGISTER_EXTENSION = 0xCF000002;
/** Query the ideal send backlog of a connection. WDK: `SIO_WSK_QUERY_IDEAL_SEND_BACKLOG`
 *  (`_WSAIOR(IOC_WSK, 3)`). */
static const ULONG SIO_WSK_QUERY_IDEAL_SEND_BACKLOG = 0x4F000003;
/** Query the receive backlog. WDK: `SIO_WSK_QUERY_RECEIVE_BACKLOG` (`_WSAIOR(IOC_WSK, 4)`). */
static const ULONG SIO_WSK_QUERY_RECEIVE_BACKLOG = 0x4F000004;
/** Query the inspect ID of an accepted connection. WDK: `SIO_WSK_QUERY_INSPECT_ID`
 *  (`_WSAIOR(IOC_WSK, 5)`). */
static const ULONG SIO_WSK_QUERY_INSPECT_ID = 0x4F000005;
/** Fix the destination address of a datagram socket. WDK: `SIO_WSK_SET_SENDTO_ADDRESS`
 *  (`_WSAIOW(IOC_WSK, 6)`). */
static const ULONG SIO_WSK_SET_SENDTO_ADDRESS = 0x8F000006;
/** Put a connected TCP socket into silent mode (Windows 8): it sends no data or control
 *  packet any more, discards what it receives, fails sends and disconnects with
 *  STATUS_INVALID_DEVICE_STATE, and can only be closed. No send or disconnect may be
 *  pending. WDK: `SIO_WSK_SET_TCP_SILENT_MODE` (`_WSAIO(IOC_WSK, 7)`). */
static const ULONG SIO_WSK_SET_TCP_SILENT_MODE = 0x2F000007;
/** Register the receive-with-control-information event of a connection socket; the input
 *  is the [`PFN_WSK_RECEIVE_EX_EVENT`] callback. WDK: `SIO_WSK_SET_RECEIVE_EX_CALLBACK`
 *  (`_WSAIOW(IOC_WSK, 8)`). */
static const ULONG SIO_WSK_SET_RECEIVE_EX_CALLBACK = 0x8F000008;

/* ------------------------------------------------------------------------------------------
 * Enumerations (Source: "WskControlSocket", "WskInspectEvent")
 * ---------------------------------------------------------------------------------------- */

/** Kind of a [`PFN_WSK_CONTROL_SOCKET`] request. WDK: `WSK_CONTROL_SOCKET_TYPE`. */
typedef enum _WSK_CONTROL_SOCKET_TYPE {
    /** Set a socket option. WDK: `WskSetOption`. */
    WskSetOption = 0,
    /** Get a socket option. WDK: `WskGetOption`. */
    WskGetOption = 1,
    /** Perform an I/O control operation. WDK: `WskIoctl`. */
    WskIoctl = 2,
    /** Bound of the enumeration. WDK: `WskControlMax`. */
    WskControlMax = 3
} WSK_CONTROL_SOCKET_TYPE;
/** Pointer to [`WSK_CONTROL_SOCKET_TYPE`]. WDK: `PWSK_CONTROL_SOCKET_TYPE`. */
typedef WSK_CONTROL_SOCKET_TYPE *PWSK_CONTROL_SOCKET_TYPE;

/** Decision on an incoming connection in conditional-accept mode. WDK:
 *  `WSK_INSPECT_ACTION`. */
typedef enum _WSK_INSPECT_ACTION {
    /** Reject the connection. WDK: `WskInspectReject`. */
    WskInspectReject = 0,
    /** Accept the connection. WDK: `WskInspectAccept`. */
    WskInspectAccept = 1,
    /** Decide later with `WskInspectComplete`. WDK: `WskInspectPend`. */
    WskInspectPend = 2,
    /** Bound of the enumeration. WDK: `WskInspectMax`. */
    WskInspectMax = 3
} WSK_INSPECT_ACTION;
/** Pointer to [`WSK_INSPECT_ACTION`]. WDK: `PWSK_INSPECT_ACTION`. */
typedef WSK_INSPECT_ACTION *PWSK_INSPECT_ACTION;

/* ------------------------------------------------------------------------------------------
 * Structures (Source: the "WSK_*" structure pages)
 * ---------------------------------------------------------------------------------------- */

/** The provider's client object, opaque: the `Client` of [`WSK_PROVIDER_NPI`], passed back
 *  to the provider's client-level functions. WDK: `PWSK_CLIENT` (`PVOID`). */
typedef PVOID PWSK_CLIENT;

/** A socket object: the provider's dispatch table for the socket's category, followed by
 *  provider-private state. WDK: `WSK_SOCKET` (page "WSK_SOCKET structure"). */
typedef struct _WSK_SOCKET {
    /** The provider's dispatch table: a `WSK_PROVIDER_*_DISPATCH` of the socket's category.
     *  WDK: `Dispatch`. */
    const void *Dispatch;
} WSK_SOCKET;
/** Pointer to [`WSK_SOCKET`]. WDK: `PWSK_SOCKET`. */
typedef WSK_SOCKET *PWSK_SOCKET;

/** A data buffer described by an MDL chain, an offset into the first MDL and a length.
 *  WDK: `WSK_BUF` (page "WSK_BUF structure"). */
typedef struct _WSK_BUF {
    /** First MDL of the chain. WDK: `Mdl`. */
    PMDL Mdl;
    /** Offset of the data in the first MDL's buffer. WDK: `Offset`. */
    ULONG Offset;
    /** Length of the data in bytes. WDK: `Length`. */
    SIZE_T Length;
} WSK_BUF;
/** Pointer to [`WSK_BUF`]. WDK: `PWSK_BUF`. */
typedef WSK_BUF *PWSK_BUF;

/** List of buffers, one datagram each, for [`PFN_WSK_SEND_MESSAGES`] (Windows 8). WDK:
 *  `WSK_BUF_LIST` (page "WSK_BUF_LIST structure"). */
typedef struct _WSK_BUF_LIST {
    /** Next element, or NULL. WDK: `Next`. */
    struct _WSK_BUF_LIST *Next;
    /** The buffer. WDK: `Buffer`. */
    WSK_BUF Buffer;
} WSK_BUF_LIST;
/** Pointer to [`WSK_BUF_LIST`]. WDK: `PWSK_BUF_LIST`. */
typedef WSK_BUF_LIST *PWSK_BUF_LIST;

/** Received data indicated to a receive event callback; elements are chained. WDK:
 *  `WSK_DATA_INDICATION` (page "WSK_DATA_INDICATION structure"). */
typedef struct _WSK_DATA_INDICATION {
    /** Next element, or NULL. WDK: `Next`. */
    struct _WSK_DATA_INDICATION *Next;
    /** The data. WDK: `Buffer`. */
    WSK_BUF Buffer;
} WSK_DATA_INDICATION;
/** Pointer to [`WSK_DATA_INDICATION`]. WDK: `PWSK_DATA_INDICATION`. */
typedef WSK_DATA_INDICATION *PWSK_DATA_INDICATION;

/** A received datagram indicated to a receive-from event callback; elements are chained.
 *  WDK: `WSK_DATAGRAM_INDICATION` (page "WSK_DATAGRAM_INDICATION structure"). */
typedef struct _WSK_DATAGRAM_INDICATION {
    /** Next datagram, or NULL. WDK: `Next`. */
    struct _WSK_DATAGRAM_INDICATION *Next;
    /** The datagram's data. WDK: `Buffer`. */
    WSK_BUF Buffer;
    /** Control information, or NULL. WDK: `ControlInfo`. */
    PCMSGHDR ControlInfo;
    /** Length of `ControlInfo` in bytes. WDK: `ControlInfoLength`. */
    ULONG ControlInfoLength;
    /** Address the datagram came from. WDK: `RemoteAddress`. */
    PSOCKADDR RemoteAddress;
} WSK_DATAGRAM_INDICATION;
/** Pointer to [`WSK_DATAGRAM_INDICATION`]. WDK: `PWSK_DATAGRAM_INDICATION`. */
typedef WSK_DATAGRAM_INDICATION *PWSK_DATAGRAM_INDICATION;

/** Identifies a pending incoming connection in conditional-accept mode. WDK:
 *  `WSK_INSPECT_ID` (page "WSK_INSPECT_ID structure"). */
typedef struct _WSK_INSPECT_ID {
    /** Key. WDK: `Key`. */
    ULONG_PTR Key;
    /** Serial number. WDK: `SerialNumber`. */
    ULONG SerialNumber;
} WSK_INSPECT_ID;
/** Pointer to [`WSK_INSPECT_ID`]. WDK: `PWSK_INSPECT_ID`. */
typedef WSK_INSPECT_ID *PWSK_INSPECT_ID;

/** Value of the [`SO_WSK_EVENT_CALLBACK`] option: which events to enable or disable. WDK:
 *  `WSK_EVENT_CALLBACK_CONTROL` (page "WSK_EVENT_CALLBACK_CONTROL structure"). */
typedef struct _WSK_EVENT_CALLBACK_CONTROL {
    /** Must point to `NPI_WSK_INTERFACE_ID`. WDK: `NpiId`. */
    PNPIID NpiId;
    /** `WSK_EVENT_*` bits. WDK: `EventMask`. */
    ULONG EventMask;
} WSK_EVENT_CALLBACK_CONTROL;
/** Pointer to [`WSK_EVENT_CALLBACK_CONTROL`]. WDK: `PWSK_EVENT_CALLBACK_CONTROL`. */
typedef WSK_EVENT_CALLBACK_CONTROL *PWSK_EVENT_CALLBACK_CONTROL;

/** Input of [`SIO_WSK_REGISTER_EXTENSION`]. WDK: `WSK_EXTENSION_CONTROL_IN` (page
 *  "WSK_EXTENSION_CONTROL_IN structure"). */
typedef struct _WSK_EXTENSION_CONTROL_IN {
    /** Identifier of the extension interface. WDK: `NpiId`. */
    PNPIID NpiId;
    /** Client context of the extension. WDK: `ClientContext`. */
    PVOID ClientContext;
    /** Client dispatch table of the extension. WDK: `ClientDispatch`. */
    const void *ClientDispatch;
} WSK_EXTENSION_CONTROL_IN;
/** Pointer to [`WSK_EXTENSION_CONTROL_IN`]. WDK: `PWSK_EXTENSION_CONTROL_IN`. */
typedef WSK_EXTENSION_CONTROL_IN *PWSK_EXTENSION_CONTROL_IN;

/** Output of [`SIO_WSK_REGISTER_EXTENSION`]. WDK: `WSK_EXTENSION_CONTROL_OUT` (page
 *  "WSK_EXTENSION_CONTROL_OUT structure"). */
typedef struct _WSK_EXTENSION_CONTROL_OUT {
    /** Provider context of the extension. WDK: `ProviderContext`. */
    PVOID ProviderContext;
    /** Provider dispatch table of the extension. WDK: `ProviderDispatch`. */
    const void *ProviderDispatch;
} WSK_EXTENSION_CONTROL_OUT;
/** Pointer to [`WSK_EXTENSION_CONTROL_OUT`]. WDK: `PWSK_EXTENSION_CONTROL_OUT`. */
typedef WSK_EXTENSION_CONTROL_OUT *PWSK_EXTENSION_CONTROL_OUT;

/** A transport the provider offers, as returned by [`WSK_TRANSPORT_LIST_QUERY`]. WDK:
 *  `WSK_TRANSPORT` (page "WSK_TRANSPORT structure"). */
typedef struct _WSK_TRANSPORT {
    /** WSK version of the transport. WDK: `Version`. */
    USHORT Version;
    /** Socket type. WDK: `SocketType`. */
    USHORT SocketType;
    /** Protocol. WDK: `Protocol`. */
    ULONG Protocol;
    /** Address family. WDK: `AddressFamily`. */
    ADDRESS_FAMILY AddressFamily;
    /** Identifier of the transport provider. WDK: `ProviderId`. */
    GUID ProviderId;
} WSK_TRANSPORT;
/** Pointer to [`WSK_TRANSPORT`]. WDK: `PWSK_TRANSPORT`. */
typedef WSK_TRANSPORT *PWSK_TRANSPORT;

/** Range of WSK versions a provider supports. WDK: `WSK_PROVIDER_CHARACTERISTICS` (page
 *  "WSK_PROVIDER_CHARACTERISTICS structure"). */
typedef struct _WSK_PROVIDER_CHARACTERISTICS {
    /** Highest version supported. WDK: `HighestVersion`. */
    USHORT HighestVersion;
    /** Lowest version supported. WDK: `LowestVersion`. */
    USHORT LowestVersion;
} WSK_PROVIDER_CHARACTERISTICS;
/** Pointer to [`WSK_PROVIDER_CHARACTERISTICS`]. WDK: `PWSK_PROVIDER_CHARACTERISTICS`. */
typedef WSK_PROVIDER_CHARACTERISTICS *PWSK_PROVIDER_CHARACTERISTICS;

/** A mapping of a socket triple to a TDI device name. WDK: `WSK_TDI_MAP` (page
 *  "WSK_TDI_MAP structure"). */
typedef struct _WSK_TDI_MAP {
    /** Socket type. WDK: `SocketType`. */
    USHORT SocketType;
    /** Address family. WDK: `AddressFamily`. */
    ADDRESS_FAMILY AddressFamily;
    /** Protocol. WDK: `Protocol`. */
    ULONG Protocol;
    /** Name of the TDI device. WDK: `TdiDeviceName`. */
    PCWSTR TdiDeviceName;
} WSK_TDI_MAP;
/** Pointer to [`WSK_TDI_MAP`]. WDK: `PWSK_TDI_MAP`. */
typedef WSK_TDI_MAP *PWSK_TDI_MAP;

/** Input of [`WSK_TDI_DEVICENAME_MAPPING`]: an array of mappings. WDK: `WSK_TDI_MAP_INFO`
 *  (page "WSK_TDI_MAP_INFO structure"). */
typedef struct _WSK_TDI_MAP_INFO {
    /** Number of elements of `Map`. WDK: `ElementCount`. */
    ULONG ElementCount;
    /** The mappings. WDK: `Map`. */
    const WSK_TDI_MAP *Map;
} WSK_TDI_MAP_INFO;
/** Pointer to [`WSK_TDI_MAP_INFO`]. WDK: `PWSK_TDI_MAP_INFO`. */
typedef WSK_TDI_MAP_INFO *PWSK_TDI_MAP_INFO;

/** Opaque registration state a client keeps for the provider between [`WskRegister`] and
 *  [`WskDeregister`]; must stay in place and in non-paged memory. WDK: `WSK_REGISTRATION`
 *  (page "WSK_REGISTRATION structure"). */
typedef struct _WSK_REGISTRATION {
    /** Reserved for the WSK subsystem. WDK: `ReservedRegistrationState`. */
    ULONGLONG ReservedRegistrationState;
    /** Reserved for the WSK subsystem. WDK: `ReservedRegistrationContext`. */
    PVOID ReservedRegistrationContext;
    /** Reserved for the WSK subsystem. WDK: `ReservedRegistrationLock`. */
    KSPIN_LOCK ReservedRegistrationLock;
} WSK_REGISTRATION;
/** Pointer to [`WSK_REGISTRATION`]. WDK: `PWSK_REGISTRATION`. */
typedef WSK_REGISTRATION *PWSK_REGISTRATION;

/* ------------------------------------------------------------------------------------------
 * Client event callbacks (Source: "PFN_WSK_*_EVENT" pages). All run at IRQL <=
 * DISPATCH_LEVEL and must not wait.
 * ---------------------------------------------------------------------------------------- */

struct _WSK_CLIENT_CONNECTION_DISPATCH;

/** Notifies the client of a client-level event. WDK: `PFN_WSK_CLIENT_EVENT`. */
typedef NTSTATUS (__stdcall *PFN_WSK_CLIENT_EVENT)(PVOID ClientContext, ULONG EventType,
                                                   PVOID Information,
                                                   SIZE_T InformationLength);
/** Data arrived on a connection socket. Return STATUS_SUCCESS (data taken, possibly part
 *  of it through `BytesAccepted`), STATUS_PENDING (indications retained until
 *  `WskRelease`) or STATUS_DATA_NOT_ACCEPTED. A NULL `DataIndication` means the socket is
 *  no longer functional. WDK: `PFN_WSK_RECEIVE_EVENT`. */
typedef NTSTATUS (__stdcall *PFN_WSK_RECEIVE_EVENT)(PVOID SocketContext, ULONG Flags,
                                                    PWSK_DATA_INDICATION DataIndication,
                                                    SIZE_T BytesIndicated,
                                                    SIZE_T *BytesAccepted);
/** Data with control information arrived on a connection socket (registered with
 *  [`SIO_WSK_SET_RECEIVE_EX_CALLBACK`]). WDK: `PFN_WSK_RECEIVE_EX_EVENT`. */
typedef NTSTATUS (__stdcall *PFN_WSK_RECEIVE_EX_EVENT)(PVOID SocketContext, ULONG Flags,
                                                       PWSK_DATA_INDICATION DataIndication,
                                                       PCMSGHDR ControlInfo,
                                                       ULONG ControlInfoLength,
                                                       SIZE_T BytesIndicated,
                                                       SIZE_T *BytesAccepted);
/** The remote side disconnected (`WSK_FLAG_ABORTIVE` in `Flags` for an abortive
 *  disconnect). WDK: `PFN_WSK_DISCONNECT_EVENT`. */
typedef NTSTATUS (__stdcall *PFN_WSK_DISCONNECT_EVENT)(PVOID SocketContext, ULONG Flags);
/** The ideal send backlog of a connection changed. WDK: `PFN_WSK_SEND_BACKLOG_EVENT`. */
typedef NTSTATUS (__stdcall *PFN_WSK_SEND_BACKLOG_EVENT)(PVOID SocketContext,
                                                         SIZE_T IdealBacklogSize);
/** A connection was accepted on a listening socket. Return STATUS_SUCCESS and set
 *  `AcceptSocketContext`/`AcceptSocketDispatch` to take it, or STATUS_REQUEST_NOT_ACCEPTED.
 *  A NULL `AcceptSocket` means the listening socket is no longer functional. WDK:
 *  `PFN_WSK_ACCEPT_EVENT`. */
typedef NTSTATUS (__stdcall *PFN_WSK_ACCEPT_EVENT)(
    PVOID SocketContext, ULONG Flags, PSOCKADDR LocalAddress, PSOCKADDR RemoteAddress,
    PWSK_SOCKET AcceptSocket, PVOID *AcceptSocketContext,
    const struct _WSK_CLIENT_CONNECTION_DISPATCH **AcceptSocketDispatch);
/** Conditional accept: decide on an incoming connection. WDK: `PFN_WSK_INSPECT_EVENT`. */
typedef WSK_INSPECT_ACTION (__stdcall *PFN_WSK_INSPECT_EVENT)(PVOID SocketContext,
                                                              PSOCKADDR LocalAddress,
                                                              PSOCKADDR RemoteAddress,
                                                              PWSK_INSPECT_ID InspectID);
/** Conditional accept: a pending incoming connection was dropped. WDK:
 *  `PFN_WSK_ABORT_EVENT`. */
typedef NTSTATUS (__stdcall *PFN_WSK_ABORT_EVENT)(PVOID SocketContext,
                                                  PWSK_INSPECT_ID InspectID);
/** Datagrams arrived on a datagram socket. Return STATUS_SUCCESS, STATUS_PENDING
 *  (indications retained until `WskRelease`) or STATUS_DATA_NOT_ACCEPTED. WDK:
 *  `PFN_WSK_RECEIVE_FROM_EVENT`. */
typedef NTSTATUS (__stdcall *PFN_WSK_RECEIVE_FROM_EVENT)(
    PVOID SocketContext, ULONG Flags, PWSK_DATAGRAM_INDICATION DataIndication);

/* ------------------------------------------------------------------------------------------
 * Client dispatch tables (Source: "WSK_CLIENT_*_DISPATCH" pages). They belong to the client
 * and must stay valid while any socket uses them.
 * ---------------------------------------------------------------------------------------- */

/** The client's table given to [`WskRegister`]. WDK: `WSK_CLIENT_DISPATCH`. */
typedef struct _WSK_CLIENT_DISPATCH {
    /** Requested WSK version (`MAKE_WSK_VERSION`). WDK: `Version`. */
    USHORT Version;
    /** Reserved, must be zero. WDK: `Reserved`. */
    USHORT Reserved;
    /** Client event callback, or NULL. WDK: `WskClientEvent`. */
    PFN_WSK_CLIENT_EVENT WskClientEvent;
} WSK_CLIENT_DISPATCH;
/** Pointer to [`WSK_CLIENT_DISPATCH`]. WDK: `PWSK_CLIENT_DISPATCH`. */
typedef WSK_CLIENT_DISPATCH *PWSK_CLIENT_DISPATCH;

/** Event callbacks of a listening socket. WDK: `WSK_CLIENT_LISTEN_DISPATCH`. */
typedef struct _WSK_CLIENT_LISTEN_DISPATCH {
    /** Accept event, or NULL. WDK: `WskAcceptEvent`. */
    PFN_WSK_ACCEPT_EVENT WskAcceptEvent;
    /** Inspect event (conditional accept), or NULL. WDK: `WskInspectEvent`. */
    PFN_WSK_INSPECT_EVENT WskInspectEvent;
    /** Abort event (conditional accept), or NULL. WDK: `WskAbortEvent`. */
    PFN_WSK_ABORT_EVENT WskAbortEvent;
} WSK_CLIENT_LISTEN_DISPATCH;
/** Pointer to [`WSK_CLIENT_LISTEN_DISPATCH`]. WDK: `PWSK_CLIENT_LISTEN_DISPATCH`. */
typedef WSK_CLIENT_LISTEN_DISPATCH *PWSK_CLIENT_LISTEN_DISPATCH;

/** Event callbacks of a datagram socket. WDK: `WSK_CLIENT_DATAGRAM_DISPATCH`. */
typedef struct _WSK_CLIENT_DATAGRAM_DISPATCH {
    /** Receive-from event, or NULL. WDK: `WskReceiveFromEvent`. */
    PFN_WSK_RECEIVE_FROM_EVENT WskReceiveFromEvent;
} WSK_CLIENT_DATAGRAM_DISPATCH;
/** Pointer to [`WSK_CLIENT_DATAGRAM_DISPATCH`]. WDK: `PWSK_CLIENT_DATAGRAM_DISPATCH`. */
typedef WSK_CLIENT_DATAGRAM_DISPATCH *PWSK_CLIENT_DATAGRAM_DISPATCH;

/** Event callbacks of a connection socket. WDK: `WSK_CLIENT_CONNECTION_DISPATCH`. */
typedef struct _WSK_CLIENT_CONNECTION_DISPATCH {
    /** Receive event, or NULL. WDK: `WskReceiveEvent`. */
    PFN_WSK_RECEIVE_EVENT WskReceiveEvent;
    /** Disconnect event, or NULL. WDK: `WskDisconnectEvent`. */
    PFN_WSK_DISCONNECT_EVENT WskDisconnectEvent;
    /** Send-backlog event, or NULL. WDK: `WskSendBacklogEvent`. */
    PFN_WSK_SEND_BACKLOG_EVENT WskSendBacklogEvent;
} WSK_CLIENT_CONNECTION_DISPATCH;
/** Pointer to [`WSK_CLIENT_CONNECTION_DISPATCH`]. WDK: `PWSK_CLIENT_CONNECTION_DISPATCH`. */
typedef WSK_CLIENT_CONNECTION_DISPATCH *PWSK_CLIENT_CONNECTION_DISPATCH;

/** Event callbacks of a stream socket, which may listen or connect (Windows 10 1703). WDK:
 *  `WSK_CLIENT_STREAM_DISPATCH`. */
typedef struct _WSK_CLIENT_STREAM_DISPATCH {
    /** Callbacks while listening. WDK: `Listen`. */
    const WSK_CLIENT_LISTEN_DISPATCH *Listen;
    /** Callbacks while connected. WDK: `Connect`. */
    const WSK_CLIENT_CONNECTION_DISPATCH *Connect;
} WSK_CLIENT_STREAM_DISPATCH;
/** Pointer to [`WSK_CLIENT_STREAM_DISPATCH`]. WDK: `PWSK_CLIENT_STREAM_DISPATCH`. */
typedef WSK_CLIENT_STREAM_DISPATCH *PWSK_CLIENT_STREAM_DISPATCH;

/* ------------------------------------------------------------------------------------------
 * Provider functions (Source: the "PFN_WSK_*" callback pages). Unless noted, each takes an
 * IRP the client allocated, returns STATUS_PENDING or the final status, and completes the
 * IRP in every case; each may be called at IRQL <= DISPATCH_LEVEL.
 * ---------------------------------------------------------------------------------------- */

/** Creates a socket of a category (`WSK_FLAG_*_SOCKET`); the new `PWSK_SOCKET` is returned in
 *  `Irp->IoStatus.Information`. `Dispatch` is the client table of the category. WDK:
 *  `PFN_WSK_SOCKET`. */
typedef NTSTATUS (__stdcall *PFN_WSK_SOCKET)(PWSK_CLIENT Client, ADDRESS_FAMILY AddressFamily,
                                             USHORT SocketType, ULONG Protocol, ULONG Flags,
                                             PVOID SocketContext, const void *Dispatch,
                                             PEPROCESS OwningProcess, PETHREAD OwningThread,
                                             PSECURITY_DESCRIPTOR SecurityDescriptor,
                                             PIRP Irp);
/** Creates, binds and connects a connection socket in one call; the socket is returned in
 *  `Irp->IoStatus.Information`. WDK: `PFN_WSK_SOCKET_CONNECT`. */
typedef NTSTATUS (__stdcall *PFN_WSK_SOCKET_CONNECT)(
    PWSK_CLIENT Client, USHORT SocketType, ULONG Protocol, PSOCKADDR LocalAddress,
    PSOCKADDR RemoteAddress, ULONG Flags, PVOID SocketContext,
    const WSK_CLIENT_CONNECTION_DISPATCH *Dispatch, PEPROCESS OwningProcess,
    PETHREAD OwningThread, PSECURITY_DESCRIPTOR SecurityDescriptor, PIRP Irp);
/** Performs a client-level control operation (`WSK_*` control codes). The IRP may be NULL
 *  for some codes. WDK: `PFN_WSK_CONTROL_CLIENT`. */
typedef NTSTATUS (__stdcall *PFN_WSK_CONTROL_CLIENT)(PWSK_CLIENT Client, ULONG ControlCode,
                                                     SIZE_T InputSize, PVOID InputBuffer,
                                                     SIZE_T OutputSize, PVOID OutputBuffer,
                                                     SIZE_T *OutputSizeReturned, PIRP Irp);
/** Resolves a host and/or service name (Windows 7). `*Result` receives a list the client
 *  frees with [`PFN_WSK_FREE_ADDRESS_INFO`]. IRQL == PASSIVE_LEVEL. WDK:
 *  `PFN_WSK_GET_ADDRESS_INFO`. */
typedef NTSTATUS (__stdcall *PFN_WSK_GET_ADDRESS_INFO)(
    PWSK_CLIENT Client, PUNICODE_STRING NodeName, PUNICODE_STRING ServiceName,
    ULONG NameSpace, GUID *Provider, PADDRINFOEXW Hints, PADDRINFOEXW *Result,
    PEPROCESS OwningProcess, PETHREAD OwningThread, PIRP Irp);
/** Frees a list returned by [`PFN_WSK_GET_ADDRESS_INFO`] (Windows 7). IRQL ==
 *  PASSIVE_LEVEL. WDK: `PFN_WSK_FREE_ADDRESS_INFO`. */
typedef void (__stdcall *PFN_WSK_FREE_ADDRESS_INFO)(PWSK_CLIENT Client,
                                                    PADDRINFOEXW AddrInfo);
/** Resolves an address to host and service names (Windows 7). IRQL == PASSIVE_LEVEL. WDK:
 *  `PFN_WSK_GET_NAME_INFO`. */
typedef NTSTATUS (__stdcall *PFN_WSK_GET_NAME_INFO)(
    PWSK_CLIENT Client, PSOCKADDR SockAddr, ULONG SockAddrLength, PUNICODE_STRING NodeName,
    PUNICODE_STRING ServiceName, ULONG Flags, PEPROCESS OwningProcess,
    PETHREAD OwningThread, PIRP Irp);

/** Sets or gets a socket option or performs an IOCTL. Some requests (for example
 *  `SO_WSK_EVENT_CALLBACK`) take a NULL IRP and complete synchronously. WDK:
 *  `PFN_WSK_CONTROL_SOCKET`. */
typedef NTSTATUS (__stdcall *PFN_WSK_CONTROL_SOCKET)(
    PWSK_SOCKET Socket, WSK_CONTROL_SOCKET_TYPE RequestType, ULONG ControlCode, ULONG Level,
    SIZE_T InputSize, PVOID InputBuffer, SIZE_T OutputSize, PVOID OutputBuffer,
    SIZE_T *OutputSizeReturned, PIRP Irp);
/** Closes a socket: cancels its pending requests, frees it; no event callback runs after
 *  the IRP completes. WDK: `PFN_WSK_CLOSE_SOCKET`. */
typedef NTSTATUS (__stdcall *PFN_WSK_CLOSE_SOCKET)(PWSK_SOCKET Socket, PIRP Irp);
/** Binds a socket to a local address. WDK: `PFN_WSK_BIND`. */
typedef NTSTATUS (__stdcall *PFN_WSK_BIND)(PWSK_SOCKET Socket, PSOCKADDR LocalAddress,
                                           ULONG Flags, PIRP Irp);
/** Accepts an incoming connection on a listening socket; the new socket is returned in
 *  `Irp->IoStatus.Information`. WDK: `PFN_WSK_ACCEPT`. */
typedef NTSTATUS (__stdcall *PFN_WSK_ACCEPT)(
    PWSK_SOCKET ListenSocket, ULONG Flags, PVOID AcceptSocketContext,
    const WSK_CLIENT_CONNECTION_DISPATCH *AcceptSocketDispatch, PSOCKADDR LocalAddress,
    PSOCKADDR RemoteAddress, PIRP Irp);
/** Completes a pended inspect decision (conditional accept). WDK:
 *  `PFN_WSK_INSPECT_COMPLETE`. */
typedef NTSTATUS (__stdcall *PFN_WSK_INSPECT_COMPLETE)(PWSK_SOCKET ListenSocket,
                                                       PWSK_INSPECT_ID InspectID,
                                                       WSK_INSPECT_ACTION Action, PIRP Irp);
/** Returns the local address of a socket. WDK: `PFN_WSK_GET_LOCAL_ADDRESS`. */
typedef NTSTATUS (__stdcall *PFN_WSK_GET_LOCAL_ADDRESS)(PWSK_SOCKET Socket,
                                                        PSOCKADDR LocalAddress, PIRP Irp);
/** Returns the remote address of a connected socket. WDK: `PFN_WSK_GET_REMOTE_ADDRESS`. */
typedef NTSTATUS (__stdcall *PFN_WSK_GET_REMOTE_ADDRESS)(PWSK_SOCKET Socket,
                                                         PSOCKADDR RemoteAddress, PIRP Irp);
/** Connects a bound connection or stream socket. WDK: `PFN_WSK_CONNECT`. */
typedef NTSTATUS (__stdcall *PFN_WSK_CONNECT)(PWSK_SOCKET Socket, PSOCKADDR RemoteAddress,
                                              ULONG Flags, PIRP Irp);
/** Connects and optionally sends up to 65,535 bytes (Windows 10 1703). WDK:
 *  `PFN_WSK_CONNECT_EX`. */
typedef NTSTATUS (__stdcall *PFN_WSK_CONNECT_EX)(PWSK_SOCKET Socket, PSOCKADDR RemoteAddress,
                                                 PWSK_BUF Buffer, ULONG Flags, PIRP Irp);
/** Puts a bound stream socket into the listening state (Windows 10 1703). WDK:
 *  `PFN_WSK_LISTEN`. */
typedef NTSTATUS (__stdcall *PFN_WSK_LISTEN)(PWSK_SOCKET Socket, PIRP Irp);
/** Sends data; the MDLs must stay locked until the IRP completes. The bytes sent are in
 *  `Irp->IoStatus.Information`. WDK: `PFN_WSK_SEND`. */
typedef NTSTATUS (__stdcall *PFN_WSK_SEND)(PWSK_SOCKET Socket, PWSK_BUF Buffer, ULONG Flags,
                                           PIRP Irp);
/** Receives data; the bytes received are in `Irp->IoStatus.Information` (0 when the peer
 *  closed gracefully). WDK: `PFN_WSK_RECEIVE`. */
typedef NTSTATUS (__stdcall *PFN_WSK_RECEIVE)(PWSK_SOCKET Socket, PWSK_BUF Buffer,
                                              ULONG Flags, PIRP Irp);
/** Disconnects, gracefully (optionally sending a final buffer) or abortively. WDK:
 *  `PFN_WSK_DISCONNECT`. */
typedef NTSTATUS (__stdcall *PFN_WSK_DISCONNECT)(PWSK_SOCKET Socket, PWSK_BUF Buffer,
                                                 ULONG Flags, PIRP Irp);
/** Releases data indications retained by a receive event callback; takes no IRP. WDK:
 *  `PFN_WSK_RELEASE_DATA_INDICATION_LIST`. */
typedef NTSTATUS (__stdcall *PFN_WSK_RELEASE_DATA_INDICATION_LIST)(
    PWSK_SOCKET Socket, PWSK_DATA_INDICATION DataIndication);
/** Sends with control information (Windows 10 1803). WDK: `PFN_WSK_SEND_EX`. */
typedef NTSTATUS (__stdcall *PFN_WSK_SEND_EX)(PWSK_SOCKET Socket, PWSK_BUF Buffer, ULONG Flags,
                                              ULONG ControlInfoLength, PCMSGHDR ControlInfo,
                                              PIRP Irp);
/** Receives with control information (Windows 10 1803). WDK: `PFN_WSK_RECEIVE_EX`. */
typedef NTSTATUS (__stdcall *PFN_WSK_RECEIVE_EX)(PWSK_SOCKET Socket, PWSK_BUF Buffer,
                                                 ULONG Flags, PULONG ControlInfoLength,
                                                 PCMSGHDR ControlInfo, PULONG ControlFlags,
                                                 PIRP Irp);
/** Sends one datagram. WDK: `PFN_WSK_SEND_TO`. */
typedef NTSTATUS (__stdcall *PFN_WSK_SEND_TO)(PWSK_SOCKET Socket, PWSK_BUF Buffer, ULONG Flags,
                                              PSOCKADDR RemoteAddress,
                                              ULONG ControlInfoLength, PCMSGHDR ControlInfo,
                                              PIRP Irp);
/** Receives one datagram and its source address. WDK: `PFN_WSK_RECEIVE_FROM`. */
typedef NTSTATUS (__stdcall *PFN_WSK_RECEIVE_FROM)(PWSK_SOCKET Socket, PWSK_BUF Buffer,
                                                   ULONG Flags, PSOCKADDR RemoteAddress,
                                                   PULONG ControlLength, PCMSGHDR ControlInfo,
                                                   PULONG ControlFlags, PIRP Irp);
/** Releases datagram indications retained by a receive-from event callback; takes no IRP.
 *  WDK: `PFN_WSK_RELEASE_DATAGRAM_INDICATION_LIST`. */
typedef NTSTATUS (__stdcall *PFN_WSK_RELEASE_DATAGRAM_INDICATION_LIST)(
    PWSK_SOCKET Socket, PWSK_DATAGRAM_INDICATION DatagramIndication);
/** Sends several datagrams (Windows 8). WDK: `PFN_WSK_SEND_MESSAGES`. */
typedef NTSTATUS (__stdcall *PFN_WSK_SEND_MESSAGES)(PWSK_SOCKET Socket,
                                                    PWSK_BUF_LIST BufferList, ULONG Flags,
                                                    PSOCKADDR RemoteAddress,
                                                    ULONG ControlInfoLength,
                                                    PCMSGHDR ControlInfo, PIRP Irp);

/* ------------------------------------------------------------------------------------------
 * Provider dispatch tables (Source: "WSK_PROVIDER_*_DISPATCH" pages). They belong to the
 * provider: a member newer than the provider's version must not be read.
 * ---------------------------------------------------------------------------------------- */

/** Functions every socket has. WDK: `WSK_PROVIDER_BASIC_DISPATCH`. */
typedef struct _WSK_PROVIDER_BASIC_DISPATCH {
    /** Socket option / IOCTL function. WDK: `WskControlSocket`. */
    PFN_WSK_CONTROL_SOCKET WskControlSocket;
    /** Close function. WDK: `WskCloseSocket`. */
    PFN_WSK_CLOSE_SOCKET WskCloseSocket;
} WSK_PROVIDER_BASIC_DISPATCH;
/** Pointer to [`WSK_PROVIDER_BASIC_DISPATCH`]. WDK: `PWSK_PROVIDER_BASIC_DISPATCH`. */
typedef WSK_PROVIDER_BASIC_DISPATCH *PWSK_PROVIDER_BASIC_DISPATCH;

/** Functions of a listening socket. WDK: `WSK_PROVIDER_LISTEN_DISPATCH`. */
typedef struct _WSK_PROVIDER_LISTEN_DISPATCH {
    /** The basic functions. WDK: an anonymous `WSK_PROVIDER_BASIC_DISPATCH` member. */
    WSK_PROVIDER_BASIC_DISPATCH Basic;
    /** WDK: `WskBind`. */
    PFN_WSK_BIND WskBind;
    /** WDK: `WskAccept`. */
    PFN_WSK_ACCEPT WskAccept;
    /** WDK: `WskInspectComplete`. */
    PFN_WSK_INSPECT_COMPLETE WskInspectComplete;
    /** WDK: `WskGetLocalAddress`. */
    PFN_WSK_GET_LOCAL_ADDRESS WskGetLocalAddress;
} WSK_PROVIDER_LISTEN_DISPATCH;
/** Pointer to [`WSK_PROVIDER_LISTEN_DISPATCH`]. WDK: `PWSK_PROVIDER_LISTEN_DISPATCH`. */
typedef WSK_PROVIDER_LISTEN_DISPATCH *PWSK_PROVIDER_LISTEN_DISPATCH;

/** Functions of a datagram socket. WDK: `WSK_PROVIDER_DATAGRAM_DISPATCH`. */
typedef struct _WSK_PROVIDER_DATAGRAM_DISPATCH {
    /** The basic functions. WDK: an anonymous `WSK_PROVIDER_BASIC_DISPATCH` member. */
    WSK_PROVIDER_BASIC_DISPATCH Basic;
    /** WDK: `WskBind`. */
    PFN_WSK_BIND WskBind;
    /** WDK: `WskSendTo`. */
    PFN_WSK_SEND_TO WskSendTo;
    /** WDK: `WskReceiveFrom`. */
    PFN_WSK_RECEIVE_FROM WskReceiveFrom;
    /** WDK: `WskRelease`. */
    PFN_WSK_RELEASE_DATAGRAM_INDICATION_LIST WskRelease;
    /** WDK: `WskGetLocalAddress`. */
    PFN_WSK_GET_LOCAL_ADDRESS WskGetLocalAddress;
    /** Windows 8 and later. WDK: `WskSendMessages`. */
    PFN_WSK_SEND_MESSAGES WskSendMessages;
} WSK_PROVIDER_DATAGRAM_DISPATCH;
/** Pointer to [`WSK_PROVIDER_DATAGRAM_DISPATCH`]. WDK: `PWSK_PROVIDER_DATAGRAM_DISPATCH`. */
typedef WSK_PROVIDER_DATAGRAM_DISPATCH *PWSK_PROVIDER_DATAGRAM_DISPATCH;

/** Functions of a connection-oriented socket. WDK: `WSK_PROVIDER_CONNECTION_DISPATCH`. */
typedef struct _WSK_PROVIDER_CONNECTION_DISPATCH {
    /** The basic functions. WDK: an anonymous `WSK_PROVIDER_BASIC_DISPATCH` member. */
    WSK_PROVIDER_BASIC_DISPATCH Basic;
    /** WDK: `WskBind`. */
    PFN_WSK_BIND WskBind;
    /** WDK: `WskConnect`. */
    PFN_WSK_CONNECT WskConnect;
    /** WDK: `WskGetLocalAddress`. */
    PFN_WSK_GET_LOCAL_ADDRESS WskGetLocalAddress;
    /** WDK: `WskGetRemoteAddress`. */
    PFN_WSK_GET_REMOTE_ADDRESS WskGetRemoteAddress;
    /** WDK: `WskSend`. */
    PFN_WSK_SEND WskSend;
    /** WDK: `WskReceive`. */
    PFN_WSK_RECEIVE WskReceive;
    /** WDK: `WskDisconnect`. */
    PFN_WSK_DISCONNECT WskDisconnect;
    /** WDK: `WskRelease`. */
    PFN_WSK_RELEASE_DATA_INDICATION_LIST WskRelease;
    /** Windows 10 1703 (build 15063) and later. WDK: `WskConnectEx`. */
    PFN_WSK_CONNECT_EX WskConnectEx;
    /** Windows 10 1803 (build 17134) and later; the 1703 and 1709 tables end before it.
     *  WDK: `WskSendEx`. */
    PFN_WSK_SEND_EX WskSendEx;
    /** Windows 10 1803 (build 17134) and later. WDK: `WskReceiveEx`. */
    PFN_WSK_RECEIVE_EX WskReceiveEx;
} WSK_PROVIDER_CONNECTION_DISPATCH;
/** Pointer to [`WSK_PROVIDER_CONNECTION_DISPATCH`]. WDK:
 *  `PWSK_PROVIDER_CONNECTION_DISPATCH`. */
typedef WSK_PROVIDER_CONNECTION_DISPATCH *PWSK_PROVIDER_CONNECTION_DISPATCH;

/** Functions of a stream socket (Windows 10 1703 and later). WDK:
 *  `WSK_PROVIDER_STREAM_DISPATCH`. */
typedef struct _WSK_PROVIDER_STREAM_DISPATCH {
    /** The basic functions. WDK: an anonymous `WSK_PROVIDER_BASIC_DISPATCH` member. */
    WSK_PROVIDER_BASIC_DISPATCH Basic;
    /** WDK: `WskBind`. */
    PFN_WSK_BIND WskBind;
    /** WDK: `WskAccept`. */
    PFN_WSK_ACCEPT WskAccept;
    /** WDK: `WskConnect`. */
    PFN_WSK_CONNECT WskConnect;
    /** WDK: `WskListen`. */
    PFN_WSK_LISTEN WskListen;
    /** WDK: `WskSend`. */
    PFN_WSK_SEND WskSend;
    /** WDK: `WskReceive`. */
    PFN_WSK_RECEIVE WskReceive;
    /** WDK: `WskDisconnect`. */
    PFN_WSK_DISCONNECT WskDisconnect;
    /** WDK: `WskRelease`. */
    PFN_WSK_RELEASE_DATA_INDICATION_LIST WskRelease;
    /** WDK: `WskGetLocalAddress`. */
    PFN_WSK_GET_LOCAL_ADDRESS WskGetLocalAddress;
    /** WDK: `WskGetRemoteAddress`. */
    PFN_WSK_GET_REMOTE_ADDRESS WskGetRemoteAddress;
    /** WDK: `WskConnectEx`. */
    PFN_WSK_CONNECT_EX WskConnectEx;
    /** Windows 10 1803 (build 17134) and later; the 1703 and 1709 tables end before it.
     *  WDK: `WskSendEx`. */
    PFN_WSK_SEND_EX WskSendEx;
    /** Windows 10 1803 (build 17134) and later. WDK: `WskReceiveEx`. */
    PFN_WSK_RECEIVE_EX WskReceiveEx;
} WSK_PROVIDER_STREAM_DISPATCH;
/** Pointer to [`WSK_PROVIDER_STREAM_DISPATCH`]. WDK: `PWSK_PROVIDER_STREAM_DISPATCH`. */
typedef WSK_PROVIDER_STREAM_DISPATCH *PWSK_PROVIDER_STREAM_DISPATCH;

/** The provider's client-level functions, returned by [`WskCaptureProviderNPI`]. WDK:
 *  `WSK_PROVIDER_DISPATCH`. */
typedef struct _WSK_PROVIDER_DISPATCH {
    /** Negotiated WSK version. WDK: `Version`. */
    USHORT Version;
    /** Reserved. WDK: `Reserved`. */
    USHORT Reserved;
    /** WDK: `WskSocket`. */
    PFN_WSK_SOCKET WskSocket;
    /** WDK: `WskSocketConnect`. */
    PFN_WSK_SOCKET_CONNECT WskSocketConnect;
    /** WDK: `WskControlClient`. */
    PFN_WSK_CONTROL_CLIENT WskControlClient;
    /** Windows 7 and later. WDK: `WskGetAddressInfo`. */
    PFN_WSK_GET_ADDRESS_INFO WskGetAddressInfo;
    /** Windows 7 and later. WDK: `WskFreeAddressInfo`. */
    PFN_WSK_FREE_ADDRESS_INFO WskFreeAddressInfo;
    /** Windows 7 and later. WDK: `WskGetNameInfo`. */
    PFN_WSK_GET_NAME_INFO WskGetNameInfo;
} WSK_PROVIDER_DISPATCH;
/** Pointer to [`WSK_PROVIDER_DISPATCH`]. WDK: `PWSK_PROVIDER_DISPATCH`. */
typedef WSK_PROVIDER_DISPATCH *PWSK_PROVIDER_DISPATCH;

/* ------------------------------------------------------------------------------------------
 * NPIs and registration (Source: "WSK_CLIENT_NPI", "WSK_PROVIDER_NPI", "WskRegister",
 * "WskCaptureProviderNPI", "WskReleaseProviderNPI", "WskDeregister",
 * "WskQueryProviderCharacteristics"). NETIO.SYS exports.
 * ---------------------------------------------------------------------------------------- */

/** The client's network programming interface, given to [`WskRegister`]. WDK:
 *  `WSK_CLIENT_NPI`. */
typedef struct _WSK_CLIENT_NPI {
    /** Context passed to the client event callback. WDK: `ClientContext`. */
    PVOID ClientContext;
    /** The client's dispatch table. WDK: `Dispatch`. */
    const WSK_CLIENT_DISPATCH *Dispatch;
} WSK_CLIENT_NPI;
/** Pointer to [`WSK_CLIENT_NPI`]. WDK: `PWSK_CLIENT_NPI`. */
typedef WSK_CLIENT_NPI *PWSK_CLIENT_NPI;

/** The provider's network programming interface, filled in by [`WskCaptureProviderNPI`].
 *  WDK: `WSK_PROVIDER_NPI`. */
typedef struct _WSK_PROVIDER_NPI {
    /** The client object to pass to the provider's client-level functions. WDK: `Client`. */
    PWSK_CLIENT Client;
    /** The provider's client-level functions. WDK: `Dispatch`. */
    const WSK_PROVIDER_DISPATCH *Dispatch;
} WSK_PROVIDER_NPI;
/** Pointer to [`WSK_PROVIDER_NPI`]. WDK: `PWSK_PROVIDER_NPI`. */
typedef WSK_PROVIDER_NPI *PWSK_PROVIDER_NPI;

/** Registers a WSK client; `WskRegistration` must stay valid until [`WskDeregister`].
 *  IRQL == PASSIVE_LEVEL. WDK: `WskRegister`. */
NTSTATUS __stdcall WskRegister(PWSK_CLIENT_NPI WskClientNpi,
                               PWSK_REGISTRATION WskRegistration);
/** Deregisters a client; blocks until every captured provider NPI is released and every
 *  socket is closed. IRQL == PASSIVE_LEVEL. WDK: `WskDeregister`. */
void __stdcall WskDeregister(PWSK_REGISTRATION WskRegistration);
/** Captures the provider NPI, waiting up to `WaitTimeout` milliseconds for the provider
 *  ([`WSK_NO_WAIT`], [`WSK_INFINITE_WAIT`]); a wait needs IRQL == PASSIVE_LEVEL. Fails
 *  with STATUS_NOINTERFACE when the provider lacks the requested version and with
 *  STATUS_DEVICE_NOT_READY when it is not ready in time. WDK: `WskCaptureProviderNPI`. */
NTSTATUS __stdcall WskCaptureProviderNPI(PWSK_REGISTRATION WskRegistration,
                                         ULONG WaitTimeout,
                                         PWSK_PROVIDER_NPI WskProviderNpi);
/** Releases a captured provider NPI; exactly once per successful capture. IRQL <=
 *  DISPATCH_LEVEL. WDK: `WskReleaseProviderNPI`. */
void __stdcall WskReleaseProviderNPI(PWSK_REGISTRATION WskRegistration);
/** Queries the range of WSK versions the provider supports. IRQL == PASSIVE_LEVEL. WDK:
 *  `WskQueryProviderCharacteristics`. */
NTSTATUS __stdcall WskQueryProviderCharacteristics(
    PWSK_REGISTRATION WskRegistration,
    PWSK_PROVIDER_CHARACTERISTICS WskProviderCharacteristics);

#endif /* WSK_SYS_WSK_H */
