/*
 * wsk-sys: NTSTATUS values a WSK client meets.
 *
 * Source: Microsoft's "NTSTATUS Values" reference ([MS-ERREF] 2.3.1) and the WSK reference
 * pages, which name the codes each function returns. Values cross-checked with mingw-w64's
 * ntstatus.h.
 */
#ifndef WSK_SYS_NTSTATUS_H
#define WSK_SYS_NTSTATUS_H

/** The operation completed successfully. WDK: `STATUS_SUCCESS`. */
static const NTSTATUS STATUS_SUCCESS = (NTSTATUS)0x00000000L;
/** The operation will complete later: the IRP's completion routine will be called. WDK: `STATUS_PENDING`. */
static const NTSTATUS STATUS_PENDING = (NTSTATUS)0x00000103L;
/** A wait ended because its timeout elapsed. WDK: `STATUS_TIMEOUT`. */
static const NTSTATUS STATUS_TIMEOUT = (NTSTATUS)0x00000102L;
/** A wait ended because the thread was alerted. WDK: `STATUS_ALERTED`. */
static const NTSTATUS STATUS_ALERTED = (NTSTATUS)0x00000101L;
/** A wait ended because a user-mode APC was delivered. WDK: `STATUS_USER_APC`. */
static const NTSTATUS STATUS_USER_APC = (NTSTATUS)0x000000C0L;
/** Disabling an event callback waits for calls in progress to return. WDK:
 *  `STATUS_EVENT_PENDING`. */
static const NTSTATUS STATUS_EVENT_PENDING = (NTSTATUS)0x40000013L;
/** Returned by a completion routine: the IRP belongs to the caller again; the I/O manager stops completing it. WDK: `STATUS_MORE_PROCESSING_REQUIRED`. */
static const NTSTATUS STATUS_MORE_PROCESSING_REQUIRED = (NTSTATUS)0xC0000016L;
/** The data did not fit in the buffer; what fitted was returned. WDK: `STATUS_BUFFER_OVERFLOW`. */
static const NTSTATUS STATUS_BUFFER_OVERFLOW = (NTSTATUS)0x80000005L;
/** The operation failed for an unspecified reason. WDK: `STATUS_UNSUCCESSFUL`. */
static const NTSTATUS STATUS_UNSUCCESSFUL = (NTSTATUS)0xC0000001L;
/** The requested operation is not implemented. WDK: `STATUS_NOT_IMPLEMENTED`. */
static const NTSTATUS STATUS_NOT_IMPLEMENTED = (NTSTATUS)0xC0000002L;
/** An invalid handle was given. WDK: `STATUS_INVALID_HANDLE`. */
static const NTSTATUS STATUS_INVALID_HANDLE = (NTSTATUS)0xC0000008L;
/** The device does not exist. WDK: `STATUS_NO_SUCH_DEVICE`. */
static const NTSTATUS STATUS_NO_SUCH_DEVICE = (NTSTATUS)0xC000000EL;
/** A parameter was invalid. WDK: `STATUS_INVALID_PARAMETER`. */
static const NTSTATUS STATUS_INVALID_PARAMETER = (NTSTATUS)0xC000000DL;
/** The request is not valid for this device or object. WDK: `STATUS_INVALID_DEVICE_REQUEST`. */
static const NTSTATUS STATUS_INVALID_DEVICE_REQUEST = (NTSTATUS)0xC0000010L;
/** The end of the data was reached. WDK: `STATUS_END_OF_FILE`. */
static const NTSTATUS STATUS_END_OF_FILE = (NTSTATUS)0xC0000011L;
/** Not enough virtual memory or paging file quota. WDK: `STATUS_NO_MEMORY`. */
static const NTSTATUS STATUS_NO_MEMORY = (NTSTATUS)0xC0000017L;
/** The caller lacks the access needed. WDK: `STATUS_ACCESS_DENIED`. */
static const NTSTATUS STATUS_ACCESS_DENIED = (NTSTATUS)0xC0000022L;
/** The buffer is too small; nothing was written. WDK: `STATUS_BUFFER_TOO_SMALL`. */
static const NTSTATUS STATUS_BUFFER_TOO_SMALL = (NTSTATUS)0xC0000023L;
/** The object is of the wrong type for the request. WDK: `STATUS_OBJECT_TYPE_MISMATCH`. */
static const NTSTATUS STATUS_OBJECT_TYPE_MISMATCH = (NTSTATUS)0xC0000024L;
/** The combination of parameters is invalid. WDK: `STATUS_INVALID_PARAMETER_MIX`. */
static const NTSTATUS STATUS_INVALID_PARAMETER_MIX = (NTSTATUS)0xC0000030L;
/** The object name is invalid. WDK: `STATUS_OBJECT_NAME_INVALID`. */
static const NTSTATUS STATUS_OBJECT_NAME_INVALID = (NTSTATUS)0xC0000033L;
/** The object name (for example a registry value) was not found. WDK: `STATUS_OBJECT_NAME_NOT_FOUND`. */
static const NTSTATUS STATUS_OBJECT_NAME_NOT_FOUND = (NTSTATUS)0xC0000034L;
/** The resource is in use; for sockets, the address is used by another socket. WDK: `STATUS_SHARING_VIOLATION`. */
static const NTSTATUS STATUS_SHARING_VIOLATION = (NTSTATUS)0xC0000043L;
/** The object is being deleted. WDK: `STATUS_DELETE_PENDING`. */
static const NTSTATUS STATUS_DELETE_PENDING = (NTSTATUS)0xC0000056L;
/** An integer computation overflowed. WDK: `STATUS_INTEGER_OVERFLOW`. */
static const NTSTATUS STATUS_INTEGER_OVERFLOW = (NTSTATUS)0xC0000095L;
/** Not enough system resources (for example pool, an IRP or an MDL could not be allocated). WDK: `STATUS_INSUFFICIENT_RESOURCES`. */
static const NTSTATUS STATUS_INSUFFICIENT_RESOURCES = (NTSTATUS)0xC000009AL;
/** The device (for WSK: the provider) is not ready. WDK: `STATUS_DEVICE_NOT_READY`. */
static const NTSTATUS STATUS_DEVICE_NOT_READY = (NTSTATUS)0xC00000A3L;
/** The operation timed out. WDK: `STATUS_IO_TIMEOUT`. */
static const NTSTATUS STATUS_IO_TIMEOUT = (NTSTATUS)0xC00000B5L;
/** The socket is no longer functional and must be closed. WDK: `STATUS_FILE_FORCED_CLOSED`. */
static const NTSTATUS STATUS_FILE_FORCED_CLOSED = (NTSTATUS)0xC00000B6L;
/** The request is not supported. WDK: `STATUS_NOT_SUPPORTED`. */
static const NTSTATUS STATUS_NOT_SUPPORTED = (NTSTATUS)0xC00000BBL;
/** The network path was not found. WDK: `STATUS_BAD_NETWORK_PATH`. */
static const NTSTATUS STATUS_BAD_NETWORK_PATH = (NTSTATUS)0xC00000BEL;
/** The network is busy. WDK: `STATUS_NETWORK_BUSY`. */
static const NTSTATUS STATUS_NETWORK_BUSY = (NTSTATUS)0xC00000BFL;
/** The network returned an invalid response. WDK: `STATUS_INVALID_NETWORK_RESPONSE`. */
static const NTSTATUS STATUS_INVALID_NETWORK_RESPONSE = (NTSTATUS)0xC00000C3L;
/** The request was not accepted (for WSK: an incoming connection the client rejects). WDK: `STATUS_REQUEST_NOT_ACCEPTED`. */
static const NTSTATUS STATUS_REQUEST_NOT_ACCEPTED = (NTSTATUS)0xC00000D0L;
/** The I/O request was cancelled. WDK: `STATUS_CANCELLED`. */
static const NTSTATUS STATUS_CANCELLED = (NTSTATUS)0xC0000120L;
/** The remote side disconnected. WDK: `STATUS_REMOTE_DISCONNECT`. */
static const NTSTATUS STATUS_REMOTE_DISCONNECT = (NTSTATUS)0xC000013CL;
/** The connection is invalid. WDK: `STATUS_INVALID_CONNECTION`. */
static const NTSTATUS STATUS_INVALID_CONNECTION = (NTSTATUS)0xC0000140L;
/** The address is invalid. WDK: `STATUS_INVALID_ADDRESS`. */
static const NTSTATUS STATUS_INVALID_ADDRESS = (NTSTATUS)0xC0000141L;
/** The object is not in a state that allows the request. WDK: `STATUS_INVALID_DEVICE_STATE`. */
static const NTSTATUS STATUS_INVALID_DEVICE_STATE = (NTSTATUS)0xC0000184L;
/** The buffer size is invalid for the request. WDK: `STATUS_INVALID_BUFFER_SIZE`. */
static const NTSTATUS STATUS_INVALID_BUFFER_SIZE = (NTSTATUS)0xC0000206L;
/** A component of the address is invalid. WDK: `STATUS_INVALID_ADDRESS_COMPONENT`. */
static const NTSTATUS STATUS_INVALID_ADDRESS_COMPONENT = (NTSTATUS)0xC0000207L;
/** No more local addresses (ports) are available. WDK: `STATUS_TOO_MANY_ADDRESSES`. */
static const NTSTATUS STATUS_TOO_MANY_ADDRESSES = (NTSTATUS)0xC0000209L;
/** The address is already in use. WDK: `STATUS_ADDRESS_ALREADY_EXISTS`. */
static const NTSTATUS STATUS_ADDRESS_ALREADY_EXISTS = (NTSTATUS)0xC000020AL;
/** The address handle was closed. WDK: `STATUS_ADDRESS_CLOSED`. */
static const NTSTATUS STATUS_ADDRESS_CLOSED = (NTSTATUS)0xC000020BL;
/** The connection was disconnected. WDK: `STATUS_CONNECTION_DISCONNECTED`. */
static const NTSTATUS STATUS_CONNECTION_DISCONNECTED = (NTSTATUS)0xC000020CL;
/** The connection was reset by the remote side. WDK: `STATUS_CONNECTION_RESET`. */
static const NTSTATUS STATUS_CONNECTION_RESET = (NTSTATUS)0xC000020DL;
/** The transaction was aborted. WDK: `STATUS_TRANSACTION_ABORTED`. */
static const NTSTATUS STATUS_TRANSACTION_ABORTED = (NTSTATUS)0xC000020FL;
/** Returned by a receive event callback: the client did not take the indicated data. WDK: `STATUS_DATA_NOT_ACCEPTED`. */
static const NTSTATUS STATUS_DATA_NOT_ACCEPTED = (NTSTATUS)0xC000021BL;
/** The object was not found (for WSK name resolution: no such name). WDK: `STATUS_NOT_FOUND`. */
static const NTSTATUS STATUS_NOT_FOUND = (NTSTATUS)0xC0000225L;
/** The request should be retried. WDK: `STATUS_RETRY`. */
static const NTSTATUS STATUS_RETRY = (NTSTATUS)0xC000022DL;
/** The remote side refused the connection. WDK: `STATUS_CONNECTION_REFUSED`. */
static const NTSTATUS STATUS_CONNECTION_REFUSED = (NTSTATUS)0xC0000236L;
/** The connection was closed gracefully by the remote side. WDK: `STATUS_GRACEFUL_DISCONNECT`. */
static const NTSTATUS STATUS_GRACEFUL_DISCONNECT = (NTSTATUS)0xC0000237L;
/** The socket is already bound to an address. WDK: `STATUS_ADDRESS_ALREADY_ASSOCIATED`. */
static const NTSTATUS STATUS_ADDRESS_ALREADY_ASSOCIATED = (NTSTATUS)0xC0000238L;
/** The connection is not in a valid state. WDK: `STATUS_CONNECTION_INVALID`. */
static const NTSTATUS STATUS_CONNECTION_INVALID = (NTSTATUS)0xC000023AL;
/** The socket is already connected. WDK: `STATUS_CONNECTION_ACTIVE`. */
static const NTSTATUS STATUS_CONNECTION_ACTIVE = (NTSTATUS)0xC000023BL;
/** The network cannot be reached. WDK: `STATUS_NETWORK_UNREACHABLE`. */
static const NTSTATUS STATUS_NETWORK_UNREACHABLE = (NTSTATUS)0xC000023CL;
/** The host cannot be reached. WDK: `STATUS_HOST_UNREACHABLE`. */
static const NTSTATUS STATUS_HOST_UNREACHABLE = (NTSTATUS)0xC000023DL;
/** The protocol is not reachable on the remote host. WDK: `STATUS_PROTOCOL_UNREACHABLE`. */
static const NTSTATUS STATUS_PROTOCOL_UNREACHABLE = (NTSTATUS)0xC000023EL;
/** No one listens on the remote port. WDK: `STATUS_PORT_UNREACHABLE`. */
static const NTSTATUS STATUS_PORT_UNREACHABLE = (NTSTATUS)0xC000023FL;
/** The request was aborted. WDK: `STATUS_REQUEST_ABORTED`. */
static const NTSTATUS STATUS_REQUEST_ABORTED = (NTSTATUS)0xC0000240L;
/** The connection was aborted by the local system. WDK: `STATUS_CONNECTION_ABORTED`. */
static const NTSTATUS STATUS_CONNECTION_ABORTED = (NTSTATUS)0xC0000241L;
/** The requested interface (for WSK: NPI version) is not supported. WDK: `STATUS_NOINTERFACE`. */
static const NTSTATUS STATUS_NOINTERFACE = (NTSTATUS)0xC00002B9L;
/** The remote host is down. WDK: `STATUS_HOST_DOWN`. */
static const NTSTATUS STATUS_HOST_DOWN = (NTSTATUS)0xC0000350L;

#endif /* WSK_SYS_NTSTATUS_H */
