//! Raw sockets in and out: `as_raw`, `from_raw` and `into_raw` for every socket kind, to mix
//! this crate with C components or with WSK calls it does not wrap.
//!
//! # Ownership
//!
//! - `as_raw` lends the provider's socket (`PWSK_SOCKET`); the socket stays this crate's.
//! - `from_raw` adopts a socket created outside this crate through the same client's
//!   registration (by a C component, by an accept event of a handler written against
//!   `wsk-sys`): it joins its client's socket list exactly like a socket this crate created
//!   — closed when its handle is dropped, closed by the client's teardown if still open,
//!   so unload cannot hang on it. Its event callbacks stay its creator's: the provider calls
//!   the dispatch table and context given when it was created, so `set_events` on an adopted
//!   socket fails with `STATUS_INVALID_DEVICE_STATE` (a handler of this crate would never be
//!   called).
//! - `into_raw` gives the socket up: unlinked from its client, never called or closed by
//!   this crate again. The caller closes it with `WskCloseSocket` and an IRP of its own. It
//!   is refused (the socket handed back) while anything of this crate still uses the socket:
//!   a handler installed (its callbacks would have nobody to run them), conditional accept
//!   asked for (the provider calls the inspect callbacks without one), a request in flight
//!   (including one dropped whose completion has not run), retained indications, a close
//!   requested (by the client's teardown, for instance).
//!
//! All three may be called at IRQL <= DISPATCH_LEVEL; none waits.

use wsk_sys::PWSK_SOCKET;

use crate::addr::AddressFamily;
use crate::client::WskClient;
use crate::socket::{SocketCore, SocketHandle, SocketKind, release_context};
use crate::{ConnectionSocket, DatagramSocket, Error, ListenSocket, Result, StreamSocket};

/// The provider's socket behind a handle, or null once it is closing.
pub(crate) fn as_raw_of(handle: &SocketHandle) -> PWSK_SOCKET {
    match handle.core.enter() {
        // SAFETY: the guard is held for the read.
        Ok(_guard) => unsafe { handle.core.raw() },
        Err(_) => core::ptr::null_mut(),
    }
}

/// Adopts `socket` as a `K`.
///
/// # Safety
/// As for the `from_raw` methods.
unsafe fn from_raw_of<K: SocketKind>(
    client: &WskClient,
    socket: PWSK_SOCKET,
    family: AddressFamily,
) -> Result<K> {
    // SAFETY: forwarded from the caller.
    let core = unsafe { SocketCore::adopt(client.core(), K::CATEGORY, family, socket)? };
    Ok(K::from_handle(SocketHandle { core }))
}

/// Gives up a `K`'s provider socket.
fn into_raw_of<K: SocketKind>(socket: K) -> core::result::Result<PWSK_SOCKET, (Error, K)> {
    match SocketCore::detach(&socket.handle().core) {
        Ok(raw) => {
            let handle = core::mem::ManuallyDrop::new(socket.into_handle());
            // SAFETY: the handle is not dropped (it would request a close); its core is moved
            // out once.
            let core = unsafe { core::ptr::read(&handle.core) };
            // SAFETY: the provider's reference (made with `context_of` when the socket was
            // created or adopted) is given back once: detached, the socket's close will never
            // complete through this crate, and no event callback of this crate's is enabled
            // on it (no handler was installed).
            unsafe { release_context(core.as_ptr().cast_mut().cast()) };
            drop(core);
            Ok(raw)
        }
        Err(error) => Err((error, socket)),
    }
}

macro_rules! raw_socket_methods {
    ($kind:ident, $what:literal, $category_flag:literal) => {
        impl $kind {
            #[doc = concat!("Adopts a ", $what, " socket created outside this crate (`", $category_flag, "`),")]
            /// by a C component or an accept event written against `wsk-sys`. The socket
            /// joins `client`'s socket list like one this crate created: it is closed when
            /// the returned handle is dropped, or by the client's teardown, so unload
            /// cannot hang on it. Its event callbacks stay those its creator
            /// registered (`set_events` fails with `STATUS_INVALID_DEVICE_STATE`).
            ///
            /// Fails with [`Error::INVALID_PARAMETER`] for a null pointer and
            /// [`Error::INSUFFICIENT_RESOURCES`] when memory is short; the socket is then
            /// still the caller's. If the client is shutting down the socket is adopted and
            /// closed at once. IRQL <= DISPATCH_LEVEL.
            ///
            /// # Safety
            #[doc = concat!("`socket` must be an open ", $what, " socket (created with `", $category_flag, "`,")]
            /// or accepted, for a connection) of the address family `family`, created
            /// through `client`'s registration (`WskSocket`, `WskSocketConnect`,
            /// `WskAccept` or an accept event on one of its sockets); owned by nobody
            /// else from now on — no other party calls, closes or frees it; with no
            /// request in flight on it.
            pub unsafe fn from_raw(
                client: &WskClient,
                socket: PWSK_SOCKET,
                family: AddressFamily,
            ) -> Result<$kind> {
                // SAFETY: forwarded from the caller.
                unsafe { from_raw_of(client, socket, family) }
            }

            /// Gives the provider's socket up to the caller, who now owns closing it
            /// (`WskCloseSocket` with an IRP of its own, IRQL <= DISPATCH_LEVEL). The
            /// socket leaves its client's list: the client's teardown no longer closes it.
            ///
            /// Refused — the socket handed back with the error — while this crate still
            /// uses it: [`Error::SOCKET_CLOSED`] once its close was requested (by the
            /// client's teardown, say), `STATUS_INVALID_DEVICE_STATE` with an event handler
            /// installed, conditional accept ever asked for (`SO_CONDITIONAL_ACCEPT`: the
            /// provider may call the socket's inspect callbacks), a request in flight (a
            /// dropped one whose completion has not run counts), or retained indications.
            /// IRQL <= DISPATCH_LEVEL.
            ///
            /// Giving a socket up is `unsafe`: a raw socket nobody closes would hang the
            /// driver's unload.
            ///
            /// ```compile_fail,E0133
            #[doc = concat!("fn give_up(socket: wsk::", stringify!($kind), ") {")]
            ///     let _ = socket.into_raw();
            /// }
            /// ```
            ///
            /// # Safety
            /// The caller must close the socket before the client that created (or adopted)
            /// it is dropped: `WskDeregister`, in the client's teardown, waits until every
            /// socket of the registration is closed, so a socket given up and never closed
            /// hangs the driver's unload. No static event callbacks may be set on the client
            /// (`WSK_SET_STATIC_EVENT_CALLBACKS` through
            /// [`WskClient::control_client`](crate::WskClient::control_client)), nor events
            /// enabled through [`SocketOptions::control`](crate::SocketOptions::control) or
            /// through `as_raw`: the provider would call this crate's callbacks with the
            /// context this frees.
            pub unsafe fn into_raw(self) -> core::result::Result<PWSK_SOCKET, (Error, $kind)> {
                into_raw_of(self)
            }
        }
    };
}

raw_socket_methods!(ConnectionSocket, "connection", "WSK_FLAG_CONNECTION_SOCKET");
raw_socket_methods!(ListenSocket, "listening", "WSK_FLAG_LISTEN_SOCKET");
raw_socket_methods!(DatagramSocket, "datagram", "WSK_FLAG_DATAGRAM_SOCKET");
raw_socket_methods!(StreamSocket, "stream", "WSK_FLAG_STREAM_SOCKET");

macro_rules! as_raw_method {
    ($kind:ident) => {
        impl $kind {
            /// The provider's socket (`PWSK_SOCKET`), for calls this crate does not wrap;
            /// null once the socket is closing. The socket stays this crate's: the pointer
            /// is valid until the socket is closed (by `close`, drop, or the client's
            /// teardown); calling through it is `unsafe` and must not overlap the close,
            /// nor leave a request in flight when the socket is dropped. IRQL <=
            /// DISPATCH_LEVEL.
            pub fn as_raw(&self) -> PWSK_SOCKET {
                as_raw_of(self.handle())
            }
        }
    };
}

as_raw_method!(ListenSocket);
as_raw_method!(DatagramSocket);
as_raw_method!(StreamSocket);
