//! Integration tests: a real server on 127.0.0.1:0 and real WebSocket clients.

mod binary;
mod common;
mod compat;
mod http;
mod limits;
mod protocol;
mod proxy;
mod shutdown;
