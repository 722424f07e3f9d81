/*
 * wsk-sys: socket addresses, address information and socket option values.
 *
 * The project's own reconstruction of the parts of the Windows SDK/WDK shared headers
 * `ws2def.h`, `ws2ipdef.h`, `inaddr.h`, `in6addr.h` and `mstcpip.h` that WSK uses, written
 * from Microsoft's public reference (learn.microsoft.com, "SOCKADDR", "SOCKADDR_IN6",
 * "SOCKADDR_INET", "ADDRINFOEXW", "CMSGHDR", "SOL_SOCKET Socket Options", "IPPROTO_TCP
 * Socket Options"); values cross-checked with mingw-w64's headers. Where the SDK uses an
 * anonymous union this header names it; the layout is unchanged.
 */
#ifndef WSK_SYS_KM_NET_H
#define WSK_SYS_KM_NET_H

#include "km_types.h"

/** Address family of a socket address. WDK: `ADDRESS_FAMILY`. */
typedef USHORT ADDRESS_FAMILY;

/** Unspecified address family. WDK: `AF_UNSPEC`. */
static const ADDRESS_FAMILY AF_UNSPEC = 0;
/** IPv4. WDK: `AF_INET`. */
static const ADDRESS_FAMILY AF_INET = 2;
/** IPv6. WDK: `AF_INET6`. */
static const ADDRESS_FAMILY AF_INET6 = 23;

/** Stream socket type (TCP). WDK: `SOCK_STREAM`. */
static const USHORT SOCK_STREAM = 1;
/** Datagram socket type (UDP). WDK: `SOCK_DGRAM`. */
static const USHORT SOCK_DGRAM = 2;
/** Raw socket type. WDK: `SOCK_RAW`. */
static const USHORT SOCK_RAW = 3;

/** IPv4 protocol level for options. WDK: `IPPROTO_IP`. */
static const ULONG IPPROTO_IP = 0;
/** TCP. WDK: `IPPROTO_TCP`. */
static const ULONG IPPROTO_TCP = 6;
/** UDP. WDK: `IPPROTO_UDP`. */
static const ULONG IPPROTO_UDP = 17;
/** IPv6 protocol level for options. WDK: `IPPROTO_IPV6`. */
static const ULONG IPPROTO_IPV6 = 41;

/** Generic socket address. WDK: `SOCKADDR`. */
typedef struct sockaddr {
    /** Address family. WDK: `sa_family`. */
    ADDRESS_FAMILY sa_family;
    /** Family-specific data. WDK: `sa_data`. */
    CHAR sa_data[14];
} SOCKADDR;
/** Pointer to [`SOCKADDR`]. WDK: `PSOCKADDR`. */
typedef SOCKADDR *PSOCKADDR;

/** Bytes of an IPv4 address. WDK: `S_un_b` of `IN_ADDR`. */
typedef struct _IN_ADDR_BYTES {
    /** First byte. WDK: `s_b1`. */
    UCHAR s_b1;
    /** Second byte. WDK: `s_b2`. */
    UCHAR s_b2;
    /** Third byte. WDK: `s_b3`. */
    UCHAR s_b3;
    /** Fourth byte. WDK: `s_b4`. */
    UCHAR s_b4;
} IN_ADDR_BYTES;

/** Words of an IPv4 address. WDK: `S_un_w` of `IN_ADDR`. */
typedef struct _IN_ADDR_WORDS {
    /** First word. WDK: `s_w1`. */
    USHORT s_w1;
    /** Second word. WDK: `s_w2`. */
    USHORT s_w2;
} IN_ADDR_WORDS;

/** Views of an IPv4 address. WDK: `S_un` of `IN_ADDR`. */
typedef union _IN_ADDR_VIEWS {
    /** As bytes. WDK: `S_un_b`. */
    IN_ADDR_BYTES S_un_b;
    /** As words. WDK: `S_un_w`. */
    IN_ADDR_WORDS S_un_w;
    /** As one 32-bit value in network byte order. WDK: `S_addr`. */
    ULONG S_addr;
} IN_ADDR_VIEWS;

/** IPv4 address, network byte order. WDK: `IN_ADDR`. */
typedef struct in_addr {
    /** The address. WDK: `S_un`. */
    IN_ADDR_VIEWS S_un;
} IN_ADDR;

/** IPv4 socket address. WDK: `SOCKADDR_IN`. */
typedef struct sockaddr_in {
    /** [`AF_INET`]. WDK: `sin_family`. */
    ADDRESS_FAMILY sin_family;
    /** Port, network byte order. WDK: `sin_port`. */
    USHORT sin_port;
    /** Address. WDK: `sin_addr`. */
    IN_ADDR sin_addr;
    /** Zero padding. WDK: `sin_zero`. */
    CHAR sin_zero[8];
} SOCKADDR_IN;
/** Pointer to [`SOCKADDR_IN`]. WDK: `PSOCKADDR_IN`. */
typedef SOCKADDR_IN *PSOCKADDR_IN;

/** Views of an IPv6 address. WDK: `u` of `IN6_ADDR`. */
typedef union _IN6_ADDR_VIEWS {
    /** As bytes. WDK: `Byte`. */
    UCHAR Byte[16];
    /** As words (network byte order). WDK: `Word`. */
    USHORT Word[8];
} IN6_ADDR_VIEWS;

/** IPv6 address. WDK: `IN6_ADDR`. */
typedef struct in6_addr {
    /** The address. WDK: `u`. */
    IN6_ADDR_VIEWS u;
} IN6_ADDR;

/** IPv6 socket address. WDK: `SOCKADDR_IN6`. */
typedef struct sockaddr_in6 {
    /** [`AF_INET6`]. WDK: `sin6_family`. */
    ADDRESS_FAMILY sin6_family;
    /** Port, network byte order. WDK: `sin6_port`. */
    USHORT sin6_port;
    /** Flow information. WDK: `sin6_flowinfo`. */
    ULONG sin6_flowinfo;
    /** Address. WDK: `sin6_addr`. */
    IN6_ADDR sin6_addr;
    /** Scope (interface) identifier. WDK: `sin6_scope_id` (an anonymous union with
     *  `sin6_scope_struct`). */
    ULONG sin6_scope_id;
} SOCKADDR_IN6;
/** Pointer to [`SOCKADDR_IN6`]. WDK: `PSOCKADDR_IN6`. */
typedef SOCKADDR_IN6 *PSOCKADDR_IN6;

/** An IPv4 or IPv6 socket address. WDK: `SOCKADDR_INET`. */
typedef union _SOCKADDR_INET {
    /** IPv4 view. WDK: `Ipv4`. */
    SOCKADDR_IN Ipv4;
    /** IPv6 view. WDK: `Ipv6`. */
    SOCKADDR_IN6 Ipv6;
    /** The family, which tells the view. WDK: `si_family`. */
    ADDRESS_FAMILY si_family;
} SOCKADDR_INET;
/** Pointer to [`SOCKADDR_INET`]. WDK: `PSOCKADDR_INET`. */
typedef SOCKADDR_INET *PSOCKADDR_INET;

/** Storage large enough and aligned for any socket address. WDK: `SOCKADDR_STORAGE`. */
typedef struct sockaddr_storage {
    /** Address family. WDK: `ss_family`. */
    ADDRESS_FAMILY ss_family;
    /** Padding. WDK: `__ss_pad1`. */
    CHAR __ss_pad1[6];
    /** Forces 8-byte alignment. WDK: `__ss_align`. */
    LONGLONG __ss_align;
    /** Padding. WDK: `__ss_pad2`. */
    CHAR __ss_pad2[112];
} SOCKADDR_STORAGE;
/** Pointer to [`SOCKADDR_STORAGE`]. WDK: `PSOCKADDR_STORAGE`. */
typedef SOCKADDR_STORAGE *PSOCKADDR_STORAGE;

/** Header of one control-information object of a datagram. WDK: `CMSGHDR` (`WSACMSGHDR`). */
typedef struct _WSACMSGHDR {
    /** Length of the object including this header. WDK: `cmsg_len`. */
    SIZE_T cmsg_len;
    /** Protocol level. WDK: `cmsg_level`. */
    int cmsg_level;
    /** Protocol-specific type. WDK: `cmsg_type`. */
    int cmsg_type;
} CMSGHDR;
/** Pointer to [`CMSGHDR`]. WDK: `PCMSGHDR`. */
typedef CMSGHDR *PCMSGHDR;

/** One result of name resolution; results are chained through `ai_next`. WDK:
 *  `ADDRINFOEXW`. */
typedef struct addrinfoexW {
    /** `AI_*` flags. WDK: `ai_flags`. */
    int ai_flags;
    /** Address family. WDK: `ai_family`. */
    int ai_family;
    /** Socket type. WDK: `ai_socktype`. */
    int ai_socktype;
    /** Protocol. WDK: `ai_protocol`. */
    int ai_protocol;
    /** Length of `ai_addr` in bytes. WDK: `ai_addrlen`. */
    SIZE_T ai_addrlen;
    /** Canonical name, when requested. WDK: `ai_canonname`. */
    PWSTR ai_canonname;
    /** The address. WDK: `ai_addr`. */
    PSOCKADDR ai_addr;
    /** Provider-specific data. WDK: `ai_blob`. */
    PVOID ai_blob;
    /** Length of `ai_blob`. WDK: `ai_bloblen`. */
    SIZE_T ai_bloblen;
    /** Namespace provider. WDK: `ai_provider`. */
    LPGUID ai_provider;
    /** Next result. WDK: `ai_next`. */
    struct addrinfoexW *ai_next;
} ADDRINFOEXW;
/** Pointer to [`ADDRINFOEXW`]. WDK: `PADDRINFOEXW`. */
typedef ADDRINFOEXW *PADDRINFOEXW;

/** Linger option value. WDK: `LINGER`. */
typedef struct linger {
    /** Non-zero to linger on close. WDK: `l_onoff`. */
    USHORT l_onoff;
    /** Linger time in seconds. WDK: `l_linger`. */
    USHORT l_linger;
} LINGER;

/* ---- name resolution (Source: "ADDRINFOEXW", "GetNameInfoW" reference) ---- */

/** All namespaces. WDK: `NS_ALL`. */
static const ULONG NS_ALL = 0;
/** The DNS namespace. WDK: `NS_DNS`. */
static const ULONG NS_DNS = 12;
/** Resolve for binding a listening socket. WDK: `AI_PASSIVE`. */
static const int AI_PASSIVE = 0x00000001;
/** Return the canonical name. WDK: `AI_CANONNAME`. */
static const int AI_CANONNAME = 0x00000002;
/** The node name is a numeric address; do not resolve. WDK: `AI_NUMERICHOST`. */
static const int AI_NUMERICHOST = 0x00000004;
/** With AI_V4MAPPED: all IPv6 and IPv4-mapped addresses. WDK: `AI_ALL`. */
static const int AI_ALL = 0x00000100;
/** Only families configured on the system. WDK: `AI_ADDRCONFIG`. */
static const int AI_ADDRCONFIG = 0x00000400;
/** Return IPv4-mapped IPv6 addresses when no IPv6 address exists. WDK: `AI_V4MAPPED`. */
static const int AI_V4MAPPED = 0x00000800;
/** Only the host part of a local name. WDK: `NI_NOFQDN`. */
static const ULONG NI_NOFQDN = 0x01;
/** Return the numeric host address. WDK: `NI_NUMERICHOST`. */
static const ULONG NI_NUMERICHOST = 0x02;
/** Fail when the name cannot be found. WDK: `NI_NAMEREQD`. */
static const ULONG NI_NAMEREQD = 0x04;
/** Return the numeric port. WDK: `NI_NUMERICSERV`. */
static const ULONG NI_NUMERICSERV = 0x08;
/** The service is a datagram service. WDK: `NI_DGRAM`. */
static const ULONG NI_DGRAM = 0x10;
/** Maximum length of a host name, in characters. WDK: `NI_MAXHOST`. */
static const ULONG NI_MAXHOST = 1025;
/** Maximum length of a service name, in characters. WDK: `NI_MAXSERV`. */
static const ULONG NI_MAXSERV = 32;

/* ---- socket options (Source: "SOL_SOCKET Socket Options", "IPPROTO_TCP Socket Options",
 *      "IPPROTO_IPV6 Socket Options") ---- */

/** Socket-level option level. WDK: `SOL_SOCKET`. */
static const ULONG SOL_SOCKET = 0xffff;
/** Allow binding an address in use. WDK: `SO_REUSEADDR`. */
static const ULONG SO_REUSEADDR = 0x0004;
/** Send keep-alive probes. WDK: `SO_KEEPALIVE`. */
static const ULONG SO_KEEPALIVE = 0x0008;
/** Allow sending broadcast datagrams. WDK: `SO_BROADCAST`. */
static const ULONG SO_BROADCAST = 0x0020;
/** Linger on close. WDK: `SO_LINGER`. */
static const ULONG SO_LINGER = 0x0080;
/** Receive out-of-band data inline. WDK: `SO_OOBINLINE`. */
static const ULONG SO_OOBINLINE = 0x0100;
/** Send buffer size. WDK: `SO_SNDBUF`. */
static const ULONG SO_SNDBUF = 0x1001;
/** Receive buffer size. WDK: `SO_RCVBUF`. */
static const ULONG SO_RCVBUF = 0x1002;
/** Pending error. WDK: `SO_ERROR`. */
static const ULONG SO_ERROR = 0x1007;
/** Socket type. WDK: `SO_TYPE`. */
static const ULONG SO_TYPE = 0x1008;
/** Bind the address exclusively. WDK: `SO_EXCLUSIVEADDRUSE` (`~SO_REUSEADDR`). */
static const ULONG SO_EXCLUSIVEADDRUSE = 0xfffffffb;
/** Conditional accept mode of a listening socket. WDK: `SO_CONDITIONAL_ACCEPT`. */
static const ULONG SO_CONDITIONAL_ACCEPT = 0x3002;
/** Disable the Nagle algorithm. WDK: `TCP_NODELAY`. */
static const ULONG TCP_NODELAY = 0x0001;
/** Idle time before keep-alive probes, in seconds. WDK: `TCP_KEEPALIVE`. */
static const ULONG TCP_KEEPALIVE = 3;
/** Number of keep-alive probes. WDK: `TCP_KEEPCNT`. */
static const ULONG TCP_KEEPCNT = 16;
/** Interval between keep-alive probes, in seconds. WDK: `TCP_KEEPINTVL`. */
static const ULONG TCP_KEEPINTVL = 17;
/** IPv4 time to live. WDK: `IP_TTL`. */
static const ULONG IP_TTL = 4;
/** IPv6 hop limit for unicast. WDK: `IPV6_UNICAST_HOPS`. */
static const ULONG IPV6_UNICAST_HOPS = 4;
/** Restrict an IPv6 socket to IPv6 (no IPv4-mapped addresses). WDK: `IPV6_V6ONLY`. */
static const ULONG IPV6_V6ONLY = 27;
/** IPv4 type of service. WDK: `IP_TOS`. */
static const ULONG IP_TOS = 3;
/** IPv4 multicast time to live. WDK: `IP_MULTICAST_TTL`. */
static const ULONG IP_MULTICAST_TTL = 10;
/** IPv4 multicast loopback. WDK: `IP_MULTICAST_LOOP`. */
static const ULONG IP_MULTICAST_LOOP = 11;
/** Join an IPv4 multicast group (an `IP_MREQ`). WDK: `IP_ADD_MEMBERSHIP`. */
static const ULONG IP_ADD_MEMBERSHIP = 12;
/** Leave an IPv4 multicast group (an `IP_MREQ`). WDK: `IP_DROP_MEMBERSHIP`. */
static const ULONG IP_DROP_MEMBERSHIP = 13;
/** IPv6 multicast hop limit. WDK: `IPV6_MULTICAST_HOPS`. */
static const ULONG IPV6_MULTICAST_HOPS = 10;
/** IPv6 multicast loopback. WDK: `IPV6_MULTICAST_LOOP`. */
static const ULONG IPV6_MULTICAST_LOOP = 11;
/** Join an IPv6 multicast group (an `IPV6_MREQ`). WDK: `IPV6_ADD_MEMBERSHIP`. */
static const ULONG IPV6_ADD_MEMBERSHIP = 12;
/** Leave an IPv6 multicast group (an `IPV6_MREQ`). WDK: `IPV6_DROP_MEMBERSHIP`. */
static const ULONG IPV6_DROP_MEMBERSHIP = 13;

#endif /* WSK_SYS_KM_NET_H */
