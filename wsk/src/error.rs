//! The crate's error type: an `NTSTATUS` with a name.

use core::fmt;

use wsk_sys::*;

/// The result of a WSK operation.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// A failed operation: the `NTSTATUS` the kernel, the WSK provider or this crate's own
/// checks produced, classified by [`Error::kind`].
///
/// Errors found by this crate before anything reaches the provider (a zero-length buffer,
/// an address of the wrong family, a closed socket, a call at too high an IRQL) carry the
/// status a C driver would have received for the same mistake, or the closest one, and a
/// specific [`ErrorKind`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Error {
    status: NTSTATUS,
    kind: ErrorKind,
    /// The buffer size the request needed, when a buffer was too small and the size is
    /// known (0: not known, or not that kind of failure).
    needed: u32,
}

/// What went wrong, independent of the exact status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Pool, an IRP or an MDL could not be allocated (`STATUS_INSUFFICIENT_RESOURCES`,
    /// `STATUS_NO_MEMORY`).
    InsufficientResources,
    /// The operation was cancelled (`STATUS_CANCELLED`), by dropping it or by a timeout.
    Cancelled,
    /// The remote side refused the connection (`STATUS_CONNECTION_REFUSED`).
    ConnectionRefused,
    /// The connection was reset by the remote side (`STATUS_CONNECTION_RESET`).
    ConnectionReset,
    /// The connection was aborted locally (`STATUS_CONNECTION_ABORTED`).
    ConnectionAborted,
    /// The connection was disconnected (`STATUS_CONNECTION_DISCONNECTED`,
    /// `STATUS_GRACEFUL_DISCONNECT`, `STATUS_REMOTE_DISCONNECT`).
    Disconnected,
    /// The local address is in use (`STATUS_ADDRESS_ALREADY_EXISTS`,
    /// `STATUS_SHARING_VIOLATION`, `STATUS_ADDRESS_ALREADY_ASSOCIATED`).
    AddressInUse,
    /// The address is invalid, or of a family the socket was not created for
    /// (`STATUS_INVALID_ADDRESS`, `STATUS_INVALID_ADDRESS_COMPONENT`).
    InvalidAddress,
    /// The host or network cannot be reached (`STATUS_HOST_UNREACHABLE`,
    /// `STATUS_NETWORK_UNREACHABLE`, `STATUS_PORT_UNREACHABLE`, `STATUS_HOST_DOWN`).
    Unreachable,
    /// The operation timed out (`STATUS_IO_TIMEOUT`, `STATUS_TIMEOUT`).
    TimedOut,
    /// A buffer length is not allowed here: zero where WSK forbids it, or too large
    /// (`STATUS_INVALID_BUFFER_SIZE`, `STATUS_BUFFER_TOO_SMALL`, `STATUS_BUFFER_OVERFLOW`).
    InvalidBufferSize,
    /// A parameter is invalid (`STATUS_INVALID_PARAMETER`).
    InvalidParameter,
    /// The socket is closed or no longer functional (`STATUS_FILE_FORCED_CLOSED`,
    /// `STATUS_INVALID_DEVICE_STATE`, `STATUS_CONNECTION_INVALID`).
    SocketClosed,
    /// The call was made at an IRQL higher than the operation allows. The status is
    /// `STATUS_INVALID_DEVICE_STATE`.
    IrqlTooHigh,
    /// The provider does not support the request or the version asked for
    /// (`STATUS_NOT_SUPPORTED`, `STATUS_NOINTERFACE`, `STATUS_NOT_IMPLEMENTED`).
    NotSupported,
    /// The WSK subsystem is not ready (`STATUS_DEVICE_NOT_READY`).
    NotReady,
    /// The name or object was not found (`STATUS_NOT_FOUND`,
    /// `STATUS_OBJECT_NAME_NOT_FOUND`, `STATUS_BAD_NETWORK_PATH`).
    NotFound,
    /// Access was denied (`STATUS_ACCESS_DENIED`).
    AccessDenied,
    /// Any other failure status.
    Other,
}

impl Error {
    /// `STATUS_INSUFFICIENT_RESOURCES`.
    pub const INSUFFICIENT_RESOURCES: Error = Error::from_status(STATUS_INSUFFICIENT_RESOURCES);
    /// `STATUS_CANCELLED`.
    pub const CANCELLED: Error = Error::from_status(STATUS_CANCELLED);
    /// `STATUS_CONNECTION_REFUSED`.
    pub const CONNECTION_REFUSED: Error = Error::from_status(STATUS_CONNECTION_REFUSED);
    /// `STATUS_CONNECTION_RESET`.
    pub const CONNECTION_RESET: Error = Error::from_status(STATUS_CONNECTION_RESET);
    /// `STATUS_INVALID_PARAMETER`.
    pub const INVALID_PARAMETER: Error = Error::from_status(STATUS_INVALID_PARAMETER);
    /// `STATUS_INVALID_BUFFER_SIZE`: a zero-length buffer where WSK forbids one, or a
    /// buffer larger than the operation accepts.
    pub const INVALID_BUFFER_SIZE: Error = Error::from_status(STATUS_INVALID_BUFFER_SIZE);
    /// `STATUS_INVALID_ADDRESS_COMPONENT`: an address of a family the socket was not
    /// created for.
    pub const ADDRESS_FAMILY_MISMATCH: Error = Error::from_status(STATUS_INVALID_ADDRESS_COMPONENT);
    /// `STATUS_FILE_FORCED_CLOSED`: the socket is closed.
    pub const SOCKET_CLOSED: Error = Error::from_status(STATUS_FILE_FORCED_CLOSED);
    /// `STATUS_NOT_SUPPORTED`.
    pub const NOT_SUPPORTED: Error = Error::from_status(STATUS_NOT_SUPPORTED);
    /// `STATUS_IO_TIMEOUT`: a wait with a timeout expired and the operation was cancelled.
    pub const TIMED_OUT: Error = Error::from_status(STATUS_IO_TIMEOUT);
    /// The operation was attempted at an IRQL above the one it allows
    /// (`STATUS_INVALID_DEVICE_STATE`, kind [`ErrorKind::IrqlTooHigh`]).
    pub const IRQL_TOO_HIGH: Error = Error {
        status: STATUS_INVALID_DEVICE_STATE,
        kind: ErrorKind::IrqlTooHigh,
        needed: 0,
    };

    /// The error for a failure status, classified by its value.
    #[must_use]
    pub const fn from_status(status: NTSTATUS) -> Error {
        Error {
            status,
            kind: kind_of(status),
            needed: 0,
        }
    }

    /// `STATUS_BUFFER_TOO_SMALL` for a buffer that needed `needed` bytes (kind
    /// [`ErrorKind::InvalidBufferSize`]); read the size back with [`Error::needed_size`].
    #[must_use]
    pub const fn buffer_too_small(needed: usize) -> Error {
        Error {
            status: STATUS_BUFFER_TOO_SMALL,
            kind: ErrorKind::InvalidBufferSize,
            needed: if needed > u32::MAX as usize {
                u32::MAX
            } else {
                needed as u32
            },
        }
    }

    /// The size in bytes an output buffer needed, for an error of kind
    /// [`ErrorKind::InvalidBufferSize`] whose request reported it (a socket option or
    /// control read into too small a buffer, when the provider or this crate knows the
    /// size); `None` otherwise.
    #[must_use]
    pub const fn needed_size(&self) -> Option<usize> {
        if self.needed == 0 {
            None
        } else {
            Some(self.needed as usize)
        }
    }

    /// `Ok(())` for a success status, the error otherwise.
    #[inline]
    pub const fn check(status: NTSTATUS) -> Result<()> {
        if NT_SUCCESS(status) {
            Ok(())
        } else {
            Err(Error::from_status(status))
        }
    }

    /// The result of a stream transfer (a send, or a receive that need not fill its range)
    /// that completed with `status` after moving `moved` bytes: their count whenever any
    /// moved — a request cancelled (a deadline) or failed part way still moved them, the
    /// caller must learn how many, and a lasting failure shows again at the next request —
    /// else the status's error.
    #[inline]
    pub(crate) const fn check_transfer(status: NTSTATUS, moved: usize) -> Result<usize> {
        if NT_SUCCESS(status) || moved > 0 {
            Ok(moved)
        } else {
            Err(Error::from_status(status))
        }
    }

    /// The `NTSTATUS` of the failure.
    #[must_use]
    pub const fn status(&self) -> NTSTATUS {
        self.status
    }

    /// The class of the failure.
    #[must_use]
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The WDK name of the status, when it is one WSK clients meet.
    #[must_use]
    pub fn status_name(&self) -> Option<&'static str> {
        status_name(self.status)
    }
}

const fn kind_of(status: NTSTATUS) -> ErrorKind {
    match status {
        STATUS_INSUFFICIENT_RESOURCES | STATUS_NO_MEMORY => ErrorKind::InsufficientResources,
        STATUS_CANCELLED => ErrorKind::Cancelled,
        STATUS_CONNECTION_REFUSED => ErrorKind::ConnectionRefused,
        STATUS_CONNECTION_RESET => ErrorKind::ConnectionReset,
        STATUS_CONNECTION_ABORTED | STATUS_REQUEST_ABORTED => ErrorKind::ConnectionAborted,
        STATUS_CONNECTION_DISCONNECTED | STATUS_GRACEFUL_DISCONNECT | STATUS_REMOTE_DISCONNECT => {
            ErrorKind::Disconnected
        }
        STATUS_ADDRESS_ALREADY_EXISTS
        | STATUS_SHARING_VIOLATION
        | STATUS_ADDRESS_ALREADY_ASSOCIATED
        | STATUS_TOO_MANY_ADDRESSES => ErrorKind::AddressInUse,
        STATUS_INVALID_ADDRESS | STATUS_INVALID_ADDRESS_COMPONENT => ErrorKind::InvalidAddress,
        STATUS_HOST_UNREACHABLE
        | STATUS_NETWORK_UNREACHABLE
        | STATUS_PORT_UNREACHABLE
        | STATUS_PROTOCOL_UNREACHABLE
        | STATUS_HOST_DOWN => ErrorKind::Unreachable,
        STATUS_IO_TIMEOUT | STATUS_TIMEOUT => ErrorKind::TimedOut,
        STATUS_INVALID_BUFFER_SIZE | STATUS_BUFFER_TOO_SMALL | STATUS_BUFFER_OVERFLOW => {
            ErrorKind::InvalidBufferSize
        }
        STATUS_INVALID_PARAMETER | STATUS_INVALID_PARAMETER_MIX => ErrorKind::InvalidParameter,
        STATUS_FILE_FORCED_CLOSED
        | STATUS_INVALID_DEVICE_STATE
        | STATUS_CONNECTION_INVALID
        | STATUS_INVALID_CONNECTION
        | STATUS_ADDRESS_CLOSED => ErrorKind::SocketClosed,
        STATUS_NOT_SUPPORTED | STATUS_NOINTERFACE | STATUS_NOT_IMPLEMENTED => {
            ErrorKind::NotSupported
        }
        STATUS_DEVICE_NOT_READY => ErrorKind::NotReady,
        STATUS_NOT_FOUND | STATUS_OBJECT_NAME_NOT_FOUND | STATUS_BAD_NETWORK_PATH => {
            ErrorKind::NotFound
        }
        STATUS_ACCESS_DENIED => ErrorKind::AccessDenied,
        _ => ErrorKind::Other,
    }
}

fn status_name(status: NTSTATUS) -> Option<&'static str> {
    Some(match status {
        STATUS_INSUFFICIENT_RESOURCES => "STATUS_INSUFFICIENT_RESOURCES",
        STATUS_NO_MEMORY => "STATUS_NO_MEMORY",
        STATUS_CANCELLED => "STATUS_CANCELLED",
        STATUS_CONNECTION_REFUSED => "STATUS_CONNECTION_REFUSED",
        STATUS_CONNECTION_RESET => "STATUS_CONNECTION_RESET",
        STATUS_CONNECTION_ABORTED => "STATUS_CONNECTION_ABORTED",
        STATUS_REQUEST_ABORTED => "STATUS_REQUEST_ABORTED",
        STATUS_CONNECTION_DISCONNECTED => "STATUS_CONNECTION_DISCONNECTED",
        STATUS_GRACEFUL_DISCONNECT => "STATUS_GRACEFUL_DISCONNECT",
        STATUS_REMOTE_DISCONNECT => "STATUS_REMOTE_DISCONNECT",
        STATUS_ADDRESS_ALREADY_EXISTS => "STATUS_ADDRESS_ALREADY_EXISTS",
        STATUS_SHARING_VIOLATION => "STATUS_SHARING_VIOLATION",
        STATUS_ADDRESS_ALREADY_ASSOCIATED => "STATUS_ADDRESS_ALREADY_ASSOCIATED",
        STATUS_TOO_MANY_ADDRESSES => "STATUS_TOO_MANY_ADDRESSES",
        STATUS_INVALID_ADDRESS => "STATUS_INVALID_ADDRESS",
        STATUS_INVALID_ADDRESS_COMPONENT => "STATUS_INVALID_ADDRESS_COMPONENT",
        STATUS_HOST_UNREACHABLE => "STATUS_HOST_UNREACHABLE",
        STATUS_NETWORK_UNREACHABLE => "STATUS_NETWORK_UNREACHABLE",
        STATUS_PORT_UNREACHABLE => "STATUS_PORT_UNREACHABLE",
        STATUS_PROTOCOL_UNREACHABLE => "STATUS_PROTOCOL_UNREACHABLE",
        STATUS_HOST_DOWN => "STATUS_HOST_DOWN",
        STATUS_IO_TIMEOUT => "STATUS_IO_TIMEOUT",
        STATUS_TIMEOUT => "STATUS_TIMEOUT",
        STATUS_INVALID_BUFFER_SIZE => "STATUS_INVALID_BUFFER_SIZE",
        STATUS_BUFFER_TOO_SMALL => "STATUS_BUFFER_TOO_SMALL",
        STATUS_BUFFER_OVERFLOW => "STATUS_BUFFER_OVERFLOW",
        STATUS_INVALID_PARAMETER => "STATUS_INVALID_PARAMETER",
        STATUS_INVALID_PARAMETER_MIX => "STATUS_INVALID_PARAMETER_MIX",
        STATUS_FILE_FORCED_CLOSED => "STATUS_FILE_FORCED_CLOSED",
        STATUS_INVALID_DEVICE_STATE => "STATUS_INVALID_DEVICE_STATE",
        STATUS_CONNECTION_INVALID => "STATUS_CONNECTION_INVALID",
        STATUS_INVALID_CONNECTION => "STATUS_INVALID_CONNECTION",
        STATUS_ADDRESS_CLOSED => "STATUS_ADDRESS_CLOSED",
        STATUS_NOT_SUPPORTED => "STATUS_NOT_SUPPORTED",
        STATUS_NOINTERFACE => "STATUS_NOINTERFACE",
        STATUS_NOT_IMPLEMENTED => "STATUS_NOT_IMPLEMENTED",
        STATUS_DEVICE_NOT_READY => "STATUS_DEVICE_NOT_READY",
        STATUS_NOT_FOUND => "STATUS_NOT_FOUND",
        STATUS_OBJECT_NAME_NOT_FOUND => "STATUS_OBJECT_NAME_NOT_FOUND",
        STATUS_BAD_NETWORK_PATH => "STATUS_BAD_NETWORK_PATH",
        STATUS_ACCESS_DENIED => "STATUS_ACCESS_DENIED",
        STATUS_UNSUCCESSFUL => "STATUS_UNSUCCESSFUL",
        STATUS_CONNECTION_ACTIVE => "STATUS_CONNECTION_ACTIVE",
        _ => return None,
    })
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("status", &format_args!("{:#010X}", self.status as u32))
            .field("name", &self.status_name().unwrap_or("?"))
            .field("kind", &self.kind)
            .field("needed_size", &self.needed_size())
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status_name() {
            Some(name) => write!(f, "{name} ({:#010X}, {:?})", self.status as u32, self.kind)?,
            None => write!(f, "NTSTATUS {:#010X} ({:?})", self.status as u32, self.kind)?,
        }
        match self.needed_size() {
            Some(needed) => write!(f, ", {needed} bytes needed"),
            None => Ok(()),
        }
    }
}

impl core::error::Error for Error {}
