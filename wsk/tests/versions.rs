//! Which Windows release provides each `Feature`: the provider's dispatch tables end at the
//! members its release has, so a feature is reported only from the build that added it.

use wsk::{Feature, ProviderInfo};

/// A provider of WSK 1.0 on Windows `major.minor.build`.
fn on(major: u32, minor: u32, build: u32) -> ProviderInfo {
    ProviderInfo {
        version: 0x0100,
        highest_version: 0,
        lowest_version: 0,
        os_major: major,
        os_minor: minor,
        os_build: build,
    }
}

#[test]
fn each_feature_starts_at_the_release_that_added_its_members() {
    // (release, [name resolution, send messages, stream sockets, connect ex, send/receive ex])
    let releases = [
        ((6, 0, 6002), [false, false, false, false, false]),
        ((6, 1, 7601), [true, false, false, false, false]),
        ((6, 2, 9200), [true, true, false, false, false]),
        ((6, 3, 9600), [true, true, false, false, false]),
        ((10, 0, 14393), [true, true, false, false, false]),
        ((10, 0, 15063), [true, true, true, true, false]),
        ((10, 0, 16299), [true, true, true, true, false]),
        ((10, 0, 17134), [true, true, true, true, true]),
        ((10, 0, 26100), [true, true, true, true, true]),
    ];
    let features = [
        Feature::NameResolution,
        Feature::SendMessages,
        Feature::StreamSockets,
        Feature::ConnectEx,
        Feature::SendReceiveEx,
    ];
    for ((major, minor, build), expected) in releases {
        let info = on(major, minor, build);
        for (feature, expected) in features.iter().zip(expected) {
            assert_eq!(
                info.supports(*feature),
                expected,
                "{feature:?} on {major}.{minor}.{build}"
            );
        }
    }
}

#[test]
fn the_1703_and_1709_tables_end_at_wsk_connect_ex() {
    for build in [15063, 16299] {
        let info = on(10, 0, build);
        assert!(info.supports(Feature::ConnectEx));
        assert!(!info.supports(Feature::SendReceiveEx), "build {build}");
    }
}

/// `Buf::with_capacity` on each release: pool the system has (no `ExAllocatePool2` before
/// Windows 10 2004, no `NonPagedPoolNx` before Windows 8 — wsk-host reports either), zeroed.
#[test]
fn buffers_come_from_pool_each_release_has() {
    use wsk::Buf;
    use wsk_host::{ProviderConfig, Session};
    use wsk_sys::pool::{self, Strategy};

    for (os_version, strategy) in [
        ((6, 1, 7601), Strategy::WithTagExecutable),
        ((6, 3, 9600), Strategy::WithTagNoExecute),
        ((10, 0, 19041), Strategy::AllocatePool2),
    ] {
        let session = Session::with_config(ProviderConfig {
            os_version,
            ..ProviderConfig::default()
        });
        // What a driver's DriverEntry does.
        assert_eq!(pool::initialize(), Some(strategy));
        let mut buf = Buf::with_capacity(256).unwrap();
        // SAFETY: the pool memory was zeroed on allocation, which is what is checked.
        unsafe { buf.set_len(256) };
        assert!(buf.iter().all(|&b| b == 0), "{os_version:?}");
        drop(buf);
        let (_, findings) = session.conclude();
        assert_eq!(findings, Vec::new(), "{os_version:?}");
    }
}
