//! The one place that knows the byte encoding (bincode 2 through serde).
//!
//! bincode is unmaintained upstream; keeping every call here means swapping
//! the codec is a one-file change. Fixed-width little-endian integers keep
//! the format easy to describe in `docs/PROTOCOL.md` and to decode by hand,
//! and every decode runs under a byte limit so a hostile length inside a
//! frame (a `Vec` claiming 2^60 elements) cannot allocate.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::frame::MAX_FRAME;

/// A message could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode message: {0}")]
pub struct EncodeError(String);

/// A frame's payload is not a valid message.
#[derive(Debug, thiserror::Error)]
#[error("malformed message: {0}")]
pub struct DecodeError(String);

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian()
        .with_limit::<MAX_FRAME>()
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| EncodeError(e.to_string()))
}

/// Decodes a whole payload; trailing bytes are an error so that two peers
/// can never disagree about where a message ends.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| DecodeError(e.to_string()))?;
    if used != bytes.len() {
        return Err(DecodeError(format!(
            "{} trailing bytes after message",
            bytes.len() - used
        )));
    }
    Ok(value)
}
