//! Length-prefixed frames: a `u32` little-endian payload length, then the
//! payload. The length is checked against [`MAX_FRAME`] before anything is
//! allocated.

use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, DecodeError, EncodeError};

/// Hard upper bound of a frame's payload in bytes. A data chunk is 256 KiB
/// and a listing part is cut at 256 KiB of entries, so 2 MiB leaves ample
/// room while keeping a hostile peer's cost small.
pub const MAX_FRAME: usize = 2 * 1024 * 1024;

/// Reading or writing a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended cleanly before the first byte of a frame.
    #[error("connection closed")]
    Closed,
    /// The transport failed (including a frame cut off mid-way).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The peer announced a frame above the limit.
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(u64),
    /// The payload did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The message did not encode (only for values above the limit).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl FrameError {
    /// True when the peer is unreachable or gone, as opposed to having sent
    /// something invalid.
    pub fn is_transport(&self) -> bool {
        matches!(self, FrameError::Closed | FrameError::Io(_))
    }
}

/// Encodes `msg` and writes it as one frame. The frame is assembled in
/// memory first so that it leaves in one `write_all` and concurrent writers
/// holding a lock around this call never interleave partial frames.
///
/// # Errors
/// [`FrameError::Encode`] if the message exceeds [`MAX_FRAME`], otherwise the
/// writer's I/O error.
pub fn write_frame<W: Write + ?Sized, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let payload = codec::encode(msg)?;
    if payload.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(payload.len() as u64));
    }
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&payload);
    w.write_all(&frame)?;
    Ok(())
}

/// Reads one frame and decodes it.
///
/// # Errors
/// [`FrameError::Closed`] on a clean end of stream before a frame,
/// [`FrameError::TooLarge`] before allocating for an oversized length,
/// [`FrameError::Io`] for a truncated frame, [`FrameError::Decode`] for a bad
/// payload.
pub fn read_frame<R: Read + ?Sized, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    decode_payload(&read_payload(r)?)
}

/// Reads one frame's raw payload, with the length checked before
/// allocating; for a peer that must look at bytes before decoding them
/// (the server reads a hello's frozen version prefix this way).
///
/// # Errors
/// Reads a frame's length prefix: `Closed` at a clean end before it,
/// `TooLarge` beyond [`MAX_FRAME`].
pub(crate) fn read_frame_len<R: Read + ?Sized>(r: &mut R) -> Result<usize, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len as u64));
    }
    Ok(len)
}

/// As [`read_frame`], except decoding.
pub fn read_payload<R: Read + ?Sized>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    let len = read_frame_len(r)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(payload)
}

/// Decodes a payload read by [`read_payload`].
///
/// # Errors
/// [`FrameError::Decode`] for a bad payload.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    Ok(codec::decode(payload)?)
}
