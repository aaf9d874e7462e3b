//! The HTTP contract, which depends on no domain: the error type every handler answers
//! with (`error`), the JSON body extractor (`json`), the wire types of every request and
//! answer (`wire`), the OpenAPI document (`openapi`), metrics, the client's address
//! (`client`) and TLS for the listener (`tls`).

pub mod client;
pub mod error;
pub mod json;
pub mod metrics;
pub mod openapi;
pub mod tls;
pub mod wire;
