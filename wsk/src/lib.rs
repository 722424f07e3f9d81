//! Safe Rust for the Windows **Winsock Kernel** (WSK).
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The request trait `op::issue::Issue` is sealed (its module is private): its methods, which
// name crate-private types, cannot be reached from outside the crate.
#![allow(private_interfaces, private_bounds)]

extern crate alloc;

mod addr;
mod buf;
mod client;
mod completion;
mod connection;
mod datagram;
mod dns;
mod error;
mod events;
mod heap;
mod indication;
mod irp;
pub mod irql;
mod listen;
mod op;
mod shared;
mod socket;
mod stream;
mod sync;
pub mod task;

pub use addr::AddressFamily;
pub use buf::{BUF_POOL_TAG, Buf, BufList};
pub use client::{Feature, ProviderInfo, RegisterOptions, WskClient};
pub use connection::{ConnectionSocket, SendAll, SendFlags};
pub use datagram::DatagramSocket;
pub use dns::ResolveHints;
pub use error::{Error, ErrorKind, Result};
pub use events::{AcceptDecision, ConnectionEvents, DatagramEvents, Incoming, ListenEvents};
pub use indication::{Datagram, ReceiveDecision, ReceivedData, ReceivedDatagrams, RetainedData};
pub use irp::Irp;
pub use listen::{Bound, ListenSocket};
pub use op::{Op, Request};
pub use socket::{Close, SetOption};
pub use stream::StreamSocket;
pub use sync::{SpinLock, SpinLockGuard};

/// The request types behind each [`Op`]: name them to store an operation in a struct.
pub mod ops {
    pub use crate::connection::{
        Address, Bind, Connect, ConnectRequest, ConnectTo, CreateConnection, Disconnect,
        DisconnectRequest, Receive, ReceiveRequest, Send, SendListRequest, SendRequest,
        SendVectored, SocketConnectRequest,
    };
    pub use crate::datagram::{
        BindDatagram, ReceiveFrom, ReceiveFromRequest, SendMessages, SendMessagesRequest, SendTo,
        SendToRequest,
    };
    pub use crate::dns::{Resolve, ResolveRequest};
    pub use crate::listen::{Accept, AcceptRequest, Listen};
    pub use crate::socket::{AddressRequest, BindRequest, CreateRequest, OptionRequest};
    pub use crate::stream::{CreateStream, ListenRequest, StreamCreateRequest};
}
