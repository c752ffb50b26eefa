//! The frozen prefix of both hellos, read from raw bytes before anything is
//! decoded, so that peers of different protocol versions can always tell each
//! other which version they speak instead of calling each other garbage.
//!
//! The first 12 bytes of a hello payload, in either direction and in every
//! version, are `00 00 00 00` (variant 0, `Hello`), `52 46 4d 54` (`MAGIC`)
//! and the sender's version as a little-endian `u32`.

use crate::messages::MAGIC;

/// Largest client hello payload a server need accept before authentication:
/// variant, magic, version, nonce, and a `subdir` of `MAX_PATH` bytes
/// (4 + 4 + 4 + 32 + 1 + 8 + 4095 = 4148), rounded up.
pub const MAX_HELLO: usize = 8 * 1024;

/// The version in a hello payload's frozen prefix, or `None` when the payload
/// is not a hello at all (wrong variant, wrong magic, too short).
pub fn hello_version(payload: &[u8]) -> Option<u32> {
    let variant = payload.get(0..4)?;
    let magic = payload.get(4..8)?;
    let version = payload.get(8..12)?;
    if variant != [0, 0, 0, 0] || magic != MAGIC {
        return None;
    }
    Some(u32::from_le_bytes(version.try_into().ok()?))
}

/// A version-1 `ServerHello` frame announcing `version`, for answering a
/// version-1 client: such a client decodes the whole hello before it looks
/// at the version, so only the old layout lets it report the mismatch. It
/// reveals nothing: the export id is empty, the limits are zero and there is
/// no challenge.
pub fn v1_layout_server_hello(version: u32) -> Vec<u8> {
    let mut payload = Vec::with_capacity(38);
    payload.extend_from_slice(&0u32.to_le_bytes()); // ServerMsg::Hello
    payload.extend_from_slice(&MAGIC);
    payload.extend_from_slice(&version.to_le_bytes());
    payload.extend_from_slice(&0u64.to_le_bytes()); // export_id ""
    payload.push(0); // read_only false
    payload.extend_from_slice(&[0; 16]); // limits, all zero
    payload.push(0); // auth_challenge None
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&payload);
    frame
}
