//! The frame layer: `resocket-proto`'s codec, in the client role, with the client's limits.

pub(crate) use resocket_proto::{Incoming, WsStream};

use crate::config::ClientConfig;

impl From<&ClientConfig> for resocket_proto::Config {
    fn from(config: &ClientConfig) -> resocket_proto::Config {
        resocket_proto::Config {
            max_message_size: config.max_message_size,
            max_frame_size: config.max_frame_size,
            read_buffer_size: config.read_buffer_size,
            write_buffer_size: config.write_buffer_size,
            ..resocket_proto::Config::client()
        }
    }
}
