//! The dnstap messages (dnstap.proto, <https://dnstap.info>), declared for prost by hand: the
//! fields nxguard reads. Enums are read as their numbers (the wire form is the same); fields
//! left out here (the policy, the HTTP protocol) are skipped by the decoder.

/// `Dnstap.type`: the only type there is.
pub const TYPE_MESSAGE: i32 = 1;

/// `Message.type` values nxguard records.
pub const CLIENT_QUERY: i32 = 5;
pub const CLIENT_RESPONSE: i32 = 6;

/// `SocketProtocol` values.
pub const PROTOCOL_UDP: i32 = 1;
pub const PROTOCOL_TCP: i32 = 2;
pub const PROTOCOL_DOT: i32 = 3;
pub const PROTOCOL_DOH: i32 = 4;
pub const PROTOCOL_DNSCRYPT_UDP: i32 = 5;
pub const PROTOCOL_DNSCRYPT_TCP: i32 = 6;
pub const PROTOCOL_DOQ: i32 = 7;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Dnstap {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub identity: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub version: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub extra: Option<Vec<u8>>,
    #[prost(message, optional, tag = "14")]
    pub message: Option<Message>,
    #[prost(int32, required, tag = "15")]
    pub r#type: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    #[prost(int32, required, tag = "1")]
    pub r#type: i32,
    #[prost(int32, optional, tag = "2")]
    pub socket_family: Option<i32>,
    #[prost(int32, optional, tag = "3")]
    pub socket_protocol: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub query_address: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub response_address: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "6")]
    pub query_port: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    pub response_port: Option<u32>,
    #[prost(uint64, optional, tag = "8")]
    pub query_time_sec: Option<u64>,
    #[prost(fixed32, optional, tag = "9")]
    pub query_time_nsec: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "10")]
    pub query_message: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "11")]
    pub query_zone: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "12")]
    pub response_time_sec: Option<u64>,
    #[prost(fixed32, optional, tag = "13")]
    pub response_time_nsec: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "14")]
    pub response_message: Option<Vec<u8>>,
}
