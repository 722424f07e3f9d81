//! [`WskClient`]: registration with the WSK subsystem and the captured provider NPI.

use core::cell::UnsafeCell;
use core::net::SocketAddr;

use alloc::vec::Vec;

use wsk_sys::*;

use crate::addr::AddressFamily;
use crate::irql::{Irql, require_at_most};
use crate::shared::Shared;
use crate::socket::SocketCore;
use crate::sync::SpinLock;
use crate::{Error, Result};

/// The client dispatch table given to `WskRegister`: WSK 1.0, no client event callback.
/// It must outlive the registration, hence a static.
static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH = WSK_CLIENT_DISPATCH {
    Version: MAKE_WSK_VERSION(1, 0),
    Reserved: 0,
    WskClientEvent: None,
};

/// A capability of the WSK provider that not every Windows release has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Feature {
    /// `WskGetAddressInfo`, `WskFreeAddressInfo`, `WskGetNameInfo` (Windows 7).
    NameResolution,
    /// `WskSendMessages` (Windows 8).
    SendMessages,
    /// Stream sockets and `WskListen` (Windows 10 1703, build 15063).
    StreamSockets,
    /// `WskConnectEx`, `WskSendEx`, `WskReceiveEx` (Windows 10 1703, build 15063).
    ConnectionEx,
}

/// What the provider and the system offer, read when the client registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The WSK version negotiated (`WSK_PROVIDER_DISPATCH::Version`).
    pub version: u16,
    /// Highest WSK version the provider supports (`WskQueryProviderCharacteristics`).
    pub highest_version: u16,
    /// Lowest WSK version the provider supports.
    pub lowest_version: u16,
    /// Windows major version (`RtlGetVersion`).
    pub os_major: u32,
    /// Windows minor version.
    pub os_minor: u32,
    /// Windows build number.
    pub os_build: u32,
}

impl ProviderInfo {
    /// Whether the running system's provider has `feature`. Provider dispatch tables belong
    /// to the provider: members newer than the running system are never read unless this
    /// says they exist.
    #[must_use]
    pub fn supports(&self, feature: Feature) -> bool {
        let at_least = |major: u32, minor: u32, build: u32| {
            (self.os_major, self.os_minor, self.os_build) >= (major, minor, build)
        };
        match feature {
            Feature::NameResolution => at_least(6, 1, 0),
            Feature::SendMessages => at_least(6, 2, 0),
            Feature::StreamSockets | Feature::ConnectionEx => at_least(10, 0, 15063),
        }
    }
}

/// Options of [`WskClient::register_with`].
#[derive(Clone, Copy, Debug)]
pub struct RegisterOptions {
    /// How long `WskCaptureProviderNPI` waits for the WSK subsystem, in milliseconds
    /// ([`WSK_INFINITE_WAIT`] to wait as long as it takes, 0 not to wait).
    pub capture_timeout_ms: u32,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        RegisterOptions {
            capture_timeout_ms: WSK_INFINITE_WAIT,
        }
    }
}

/// The open sockets of a client, as an intrusive doubly linked list of socket cores, the
/// number of client-level requests in flight, and whether the client is shutting down.
pub(crate) struct SocketList {
    head: *const SocketCore,
    count: usize,
    requests: usize,
    shutting_down: bool,
    deferred_address_info: Vec<usize>,
}

impl SocketList {
    fn quiet(&self) -> bool {
        self.count == 0 && self.requests == 0
    }
}

/// A client-level request (socket creation, name resolution) in flight: the client's
/// shutdown waits for it to be over.
pub(crate) struct ClientRequest {
    client: Shared<ClientCore>,
}

impl Drop for ClientRequest {
    fn drop(&mut self) {
        let mut list = self.client.sockets.lock();
        list.requests -= 1;
        if list.quiet() && list.shutting_down {
            // SAFETY: the event lives in the client core, kept alive by `self.client`.
            unsafe { KeSetEvent(self.client.all_closed.get(), IO_NO_INCREMENT.into(), FALSE) };
        }
    }
}

// SAFETY: the pointers are socket cores kept alive by the provider's reference while linked;
// the list is only touched under the client's spin lock.
unsafe impl Send for SocketList {}

/// The client's shared state: registration, captured NPI, open sockets.
///
/// # Invariants
/// `registration` and `npi` stay in place (the core is heap-allocated and never moved) from
/// `WskRegister` until `WskDeregister`; `npi` is valid from the capture until the release,
/// both done by [`WskClient`] exactly once.
pub(crate) struct ClientCore {
    registration: UnsafeCell<WSK_REGISTRATION>,
    npi: UnsafeCell<WSK_PROVIDER_NPI>,
    info: UnsafeCell<ProviderInfo>,
    sockets: SpinLock<SocketList>,
    all_closed: UnsafeCell<KEVENT>,
}

// SAFETY: the WSK structures are used by the provider from any thread; the mutable parts are
// behind the spin lock or written only before the core is shared.
unsafe impl Send for ClientCore {}
// SAFETY: as above.
unsafe impl Sync for ClientCore {}

impl ClientCore {
    /// What the provider and the system offer.
    pub(crate) fn info(&self) -> ProviderInfo {
        // SAFETY: written before the core was shared, read-only afterwards.
        unsafe { *self.info.get() }
    }

    /// The provider NPI captured at registration.
    pub(crate) fn npi(&self) -> &WSK_PROVIDER_NPI {
        // SAFETY: written before the core was shared, read-only afterwards.
        unsafe { &*self.npi.get() }
    }

    /// The provider's client-level dispatch table.
    pub(crate) fn dispatch(&self) -> &WSK_PROVIDER_DISPATCH {
        // SAFETY: valid while the NPI is captured, which lasts while any socket is open or a
        // client operation is possible (the `WskClient` exists).
        unsafe { &*self.npi().Dispatch }
    }

    /// Counts a client-level request; fails once the client is shutting down.
    pub(crate) fn begin_request(this: &Shared<ClientCore>) -> Result<ClientRequest> {
        let mut list = this.sockets.lock();
        if list.shutting_down {
            return Err(Error::from_status(STATUS_DEVICE_NOT_READY));
        }
        list.requests += 1;
        Ok(ClientRequest {
            client: this.clone(),
        })
    }

    /// Keeps a name-resolution result list to free at PASSIVE_LEVEL later.
    pub(crate) fn defer_address_info(&self, list: PADDRINFOEXW) {
        let mut deferred = self.sockets.lock();
        if deferred.deferred_address_info.try_reserve(1).is_ok() {
            deferred.deferred_address_info.push(list as usize);
        }
    }

    /// Frees the deferred result lists (`WskFreeAddressInfo`). IRQL == PASSIVE_LEVEL.
    pub(crate) fn free_deferred_address_info(&self) {
        loop {
            let next = self.sockets.lock().deferred_address_info.pop();
            let Some(list) = next else { break };
            // SAFETY: a deferred list came from `WskGetAddressInfo` of this client and was
            // not freed; the caller runs at PASSIVE_LEVEL with the NPI captured.
            unsafe {
                if let Some(free) = self.dispatch().WskFreeAddressInfo {
                    free(self.npi().Client, list as PADDRINFOEXW);
                }
            }
        }
    }

    /// Links a new socket into the list; `false` when the client is shutting down (the
    /// caller closes the socket at once).
    pub(crate) fn link(&self, core: &SocketCore) -> bool {
        let mut list = self.sockets.lock();
        if list.shutting_down {
            return false;
        }
        let this = core::ptr::from_ref(core);
        // SAFETY: the list and the links of every linked core are guarded by the lock held.
        unsafe {
            let links = &mut *core.links.get();
            links.prev = core::ptr::null();
            links.next = list.head;
            links.linked = true;
            if let Some(head) = list.head.as_ref() {
                (*head.links.get()).prev = this;
            }
        }
        list.head = this;
        list.count += 1;
        true
    }

    /// Unlinks a socket whose close has completed; signals the shutdown when it was the last.
    pub(crate) fn unlink(&self, core: &SocketCore) {
        let mut list = self.sockets.lock();
        // SAFETY: guarded by the lock held; linked neighbours are alive (linked cores are
        // kept alive by the provider's reference until they unlink here).
        unsafe {
            let links = &mut *core.links.get();
            if !links.linked {
                return;
            }
            links.linked = false;
            match links.prev.as_ref() {
                Some(prev) => (*prev.links.get()).next = links.next,
                None => list.head = links.next,
            }
            if let Some(next) = links.next.as_ref() {
                (*next.links.get()).prev = links.prev;
            }
        }
        list.count -= 1;
        if list.quiet() && list.shutting_down {
            // SAFETY: the event lives in the client core, alive while a socket refers to it.
            unsafe { KeSetEvent(self.all_closed.get(), IO_NO_INCREMENT.into(), FALSE) };
        }
    }
}

/// A registered WSK client: `WskRegister` plus `WskCaptureProviderNPI`.
///
/// Sockets are created through it and keep a reference to its shared state, so they can be
/// owned anywhere (in tasks, in a device extension). Dropping the client — or
/// [`shutdown`](WskClient::shutdown) — closes every socket still open (their handles then
/// fail with [`Error::SOCKET_CLOSED`]), waits for the closes to complete, releases the NPI
/// once and deregisters once, so `WskDeregister` cannot hang the driver's unload.
///
/// Registration and shutdown need IRQL == PASSIVE_LEVEL. The client is `Send + Sync`:
/// sockets may be created from any thread, at IRQL <= DISPATCH_LEVEL.
pub struct WskClient {
    core: Shared<ClientCore>,
    shut_down: bool,
}

impl WskClient {
    /// Registers with the WSK subsystem and captures its NPI, waiting as long as needed.
    /// IRQL == PASSIVE_LEVEL.
    pub fn register() -> Result<WskClient> {
        WskClient::register_with(RegisterOptions::default())
    }

    /// Registers with the given options. IRQL == PASSIVE_LEVEL.
    pub fn register_with(options: RegisterOptions) -> Result<WskClient> {
        require_at_most(Irql::PASSIVE)?;
        let core = Shared::try_new(ClientCore {
            registration: UnsafeCell::new(WSK_REGISTRATION::default()),
            npi: UnsafeCell::new(WSK_PROVIDER_NPI::default()),
            info: UnsafeCell::new(ProviderInfo {
                version: 0,
                highest_version: 0,
                lowest_version: 0,
                os_major: 0,
                os_minor: 0,
                os_build: 0,
            }),
            sockets: SpinLock::new(SocketList {
                head: core::ptr::null(),
                count: 0,
                requests: 0,
                shutting_down: false,
                deferred_address_info: Vec::new(),
            }),
            all_closed: UnsafeCell::new(KEVENT::default()),
        })?;
        let mut client_npi = WSK_CLIENT_NPI {
            ClientContext: core::ptr::null_mut(),
            Dispatch: &raw const CLIENT_DISPATCH,
        };
        // SAFETY: the registration lives in the heap-allocated core until deregistration; the
        // client dispatch table is static; the IRQL is PASSIVE (checked).
        let status = unsafe { WskRegister(&raw mut client_npi, core.registration.get()) };
        Error::check(status)?;
        // SAFETY: registered above; the NPI is written into the core before it is shared.
        let status = unsafe {
            WskCaptureProviderNPI(
                core.registration.get(),
                options.capture_timeout_ms,
                core.npi.get(),
            )
        };
        if let Err(error) = Error::check(status) {
            // SAFETY: one deregistration for the registration above, nothing captured.
            unsafe { WskDeregister(core.registration.get()) };
            return Err(error);
        }
        let mut info = query_info(&core);
        // SAFETY: the core is not shared yet (only this function holds it): the cells are
        // written before any reader exists. The NPI's dispatch table was just captured.
        unsafe {
            info.version = (*(*core.npi.get()).Dispatch).Version;
            *core.info.get() = info;
            KeInitializeEvent(core.all_closed.get(), NotificationEvent, FALSE);
        }
        Ok(WskClient {
            core,
            shut_down: false,
        })
    }

    /// What the provider and the system offer.
    #[must_use]
    pub fn info(&self) -> ProviderInfo {
        self.core.info()
    }

    /// Whether the provider has `feature` (see [`ProviderInfo::supports`]).
    #[must_use]
    pub fn supports(&self, feature: Feature) -> bool {
        self.core.info().supports(feature)
    }

    /// Number of sockets of this client whose close has not completed.
    #[must_use]
    pub fn open_sockets(&self) -> usize {
        self.core.sockets.lock().count
    }

    /// Closes every open socket, waits for the closes, releases the provider NPI and
    /// deregisters. IRQL == PASSIVE_LEVEL ([`Error::IRQL_TOO_HIGH`] otherwise, and the client
    /// stays registered). Dropping the client does the same.
    pub fn shutdown(mut self) -> Result<()> {
        self.shutdown_in_place()
    }

    fn shutdown_in_place(&mut self) -> Result<()> {
        if self.shut_down {
            return Ok(());
        }
        require_at_most(Irql::PASSIVE)?;
        self.shut_down = true;
        let core = &self.core;
        // Mark the shutdown (no socket links any more) and close every linked socket. A core
        // unlinks itself when its close completes, so each round takes, under the lock, a
        // reference to one linked socket whose close was not requested yet, and requests the
        // close outside the lock.
        {
            let mut list = core.sockets.lock();
            list.shutting_down = true;
            if list.quiet() {
                // SAFETY: the event lives in the core.
                unsafe { KeSetEvent(core.all_closed.get(), IO_NO_INCREMENT.into(), FALSE) };
            }
        }
        loop {
            let next = {
                let list = core.sockets.lock();
                let mut cursor = list.head;
                let mut found = None;
                // SAFETY: linked cores are alive (the provider's reference) and their links
                // are guarded by the lock held; a reference taken here keeps one alive after.
                unsafe {
                    while let Some(socket) = cursor.as_ref() {
                        if !socket.close_requested() {
                            found = Some(Shared::clone_from_raw(cursor));
                            break;
                        }
                        cursor = (*socket.links.get()).next;
                    }
                }
                found
            };
            match next {
                Some(socket) => socket.request_close(),
                None => break,
            }
        }
        // SAFETY: waiting at PASSIVE_LEVEL (checked) on the core's event.
        unsafe {
            KeWaitForSingleObject(
                core.all_closed.get().cast(),
                Executive,
                KernelMode,
                FALSE,
                core::ptr::null_mut(),
            );
        }
        core.free_deferred_address_info();
        // SAFETY: every socket is closed and no client request is in flight: the NPI is
        // released once and the client deregistered once.
        unsafe {
            WskReleaseProviderNPI(core.registration.get());
            WskDeregister(core.registration.get());
        }
        Ok(())
    }

    pub(crate) fn core(&self) -> &Shared<ClientCore> {
        &self.core
    }

    /// Creates a listening socket bound to `local`: see [`ListenSocket`](crate::ListenSocket).
    pub fn listen(&self, local: SocketAddr) -> crate::listen::Listen {
        crate::listen::ListenSocket::bind(self, local)
    }

    /// Connects to `remote` in one call (`WskSocketConnect`), from any local address:
    /// see [`ConnectionSocket`](crate::ConnectionSocket).
    pub fn connect(&self, remote: SocketAddr) -> crate::connection::Connect {
        crate::connection::ConnectionSocket::socket_connect(
            self,
            remote,
            AddressFamily::of(&remote).unspecified(),
        )
    }

    /// Creates a datagram socket bound to `local`: see [`DatagramSocket`](crate::DatagramSocket).
    pub fn bind_datagram(&self, local: SocketAddr) -> crate::datagram::BindDatagram {
        crate::datagram::DatagramSocket::bind(self, local)
    }
}

impl Drop for WskClient {
    fn drop(&mut self) {
        // At an IRQL above PASSIVE_LEVEL nothing can be waited for: the registration is
        // leaked rather than torn down incorrectly (a driver bug that debug builds report).
        let result = self.shutdown_in_place();
        debug_assert!(
            result.is_ok(),
            "WskClient dropped at IRQL above PASSIVE_LEVEL"
        );
    }
}

impl core::fmt::Debug for WskClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WskClient")
            .field("info", &self.core.info())
            .finish()
    }
}

/// Reads the provider's version range and the system's version.
fn query_info(core: &ClientCore) -> ProviderInfo {
    let mut characteristics = WSK_PROVIDER_CHARACTERISTICS::default();
    // SAFETY: the client is registered; PASSIVE_LEVEL (checked by the caller).
    let status = unsafe {
        WskQueryProviderCharacteristics(core.registration.get(), &raw mut characteristics)
    };
    if !NT_SUCCESS(status) {
        characteristics = WSK_PROVIDER_CHARACTERISTICS::default();
    }
    let mut version = RTL_OSVERSIONINFOW {
        dwOSVersionInfoSize: core::mem::size_of::<RTL_OSVERSIONINFOW>() as ULONG,
        ..Default::default()
    };
    // SAFETY: the structure is initialised with its size; PASSIVE_LEVEL.
    let status = unsafe { RtlGetVersion(&raw mut version) };
    if !NT_SUCCESS(status) {
        version = RTL_OSVERSIONINFOW::default();
    }
    ProviderInfo {
        version: 0,
        highest_version: characteristics.HighestVersion,
        lowest_version: characteristics.LowestVersion,
        os_major: version.dwMajorVersion,
        os_minor: version.dwMinorVersion,
        os_build: version.dwBuildNumber,
    }
}
