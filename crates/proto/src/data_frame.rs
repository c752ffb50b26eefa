//! `ServerMsg::Data` frames built and read around the codec: they carry
//! every byte of every download, and going through `encode`/`decode` cost
//! two extra copies of each chunk on each side (the payload, then the
//! frame; the frame, then the decoded `Vec`). The bytes are exactly the
//! codec's (checked by the tests): length `u32`, variant index `u32`
//! (`Data` is 3), request id `u64`, content length `u64`, the content.

use std::io::Read;

use crate::frame::{FrameError, MAX_FRAME, decode_payload};
use crate::messages::ServerMsg;

/// Bytes of a `Data` frame before its content.
pub const DATA_HEADER: usize = 24;

/// `ServerMsg::Data`'s variant index in the codec's encoding.
const DATA_TAG: u32 = 3;

/// The header of a `Data` payload after the frame's length: variant, id,
/// content length.
const PAYLOAD_HEADER: usize = DATA_HEADER - 4;

/// An empty `Data` frame with room for `content` bytes: the header is
/// reserved, the content goes after it, [`seal_data_frame`] fills it in.
pub fn data_frame_buffer(content: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(DATA_HEADER + content);
    frame.resize(DATA_HEADER, 0);
    frame
}

/// Writes the header of `frame` (from [`data_frame_buffer`], its content
/// appended) for request `id`.
///
/// # Errors
/// [`FrameError::TooLarge`] when the content exceeds [`MAX_FRAME`].
pub fn seal_data_frame(frame: &mut [u8], id: u64) -> Result<(), FrameError> {
    let content = frame.len().saturating_sub(DATA_HEADER);
    let payload = PAYLOAD_HEADER + content;
    if frame.len() < DATA_HEADER || payload > MAX_FRAME {
        return Err(FrameError::TooLarge(payload as u64));
    }
    frame[0..4].copy_from_slice(&(payload as u32).to_le_bytes());
    frame[4..8].copy_from_slice(&DATA_TAG.to_le_bytes());
    frame[8..16].copy_from_slice(&id.to_le_bytes());
    frame[16..24].copy_from_slice(&(content as u64).to_le_bytes());
    Ok(())
}

/// Reads one server frame, as [`crate::read_frame`] does; a `Data`
/// frame's content is read straight into the message's own buffer.
///
/// # Errors
/// As [`crate::read_frame`].
pub fn read_server_msg<R: Read + ?Sized>(r: &mut R) -> Result<ServerMsg, FrameError> {
    read_server_msg_with(r, |r, len| {
        let mut data = vec![0u8; len];
        r.read_exact(&mut data)?;
        Ok(data)
    })
}

/// [`read_server_msg`], where `content(r, len)` reads a `Data` frame's
/// `len` content bytes into a buffer of its own (a reader that can fill
/// memory it has not zeroed saves that pass over every chunk).
///
/// # Errors
/// As [`crate::read_frame`].
pub fn read_server_msg_with<R: Read + ?Sized>(
    r: &mut R,
    content: impl FnOnce(&mut R, usize) -> std::io::Result<Vec<u8>>,
) -> Result<ServerMsg, FrameError> {
    let len = crate::frame::read_frame_len(r)?;
    let mut head = [0u8; PAYLOAD_HEADER];
    let first = len.min(PAYLOAD_HEADER);
    r.read_exact(&mut head[..first])?;
    if first == PAYLOAD_HEADER {
        let tag = u32::from_le_bytes(head[0..4].try_into().unwrap_or_default());
        let id = u64::from_le_bytes(head[4..12].try_into().unwrap_or_default());
        let size = u64::from_le_bytes(head[12..20].try_into().unwrap_or_default());
        if tag == DATA_TAG && size == (len - PAYLOAD_HEADER) as u64 {
            let data = content(r, len - PAYLOAD_HEADER)?;
            return Ok(ServerMsg::Data { id, data });
        }
    }
    // Anything else goes through the codec, which checks it whole.
    let mut payload = vec![0u8; len];
    payload[..first].copy_from_slice(&head[..first]);
    r.read_exact(&mut payload[first..])?;
    decode_payload(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::write_frame;
    use crate::messages::Reply;

    fn framed(msg: &ServerMsg) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, msg).unwrap();
        out
    }

    #[test]
    fn a_built_data_frame_is_byte_for_byte_the_codecs() {
        for content in [Vec::new(), b"x".to_vec(), vec![0xa5; 256 * 1024]] {
            let mut frame = data_frame_buffer(content.len());
            frame.extend_from_slice(&content);
            seal_data_frame(&mut frame, 0x0102_0304_0506_0708).unwrap();
            let msg = ServerMsg::Data {
                id: 0x0102_0304_0506_0708,
                data: content,
            };
            assert_eq!(frame, framed(&msg));
        }
    }

    #[test]
    fn every_server_message_reads_back_as_the_codec_wrote_it() {
        let msgs = [
            ServerMsg::Data {
                id: 7,
                data: vec![1, 2, 3],
            },
            ServerMsg::Data {
                id: 8,
                data: Vec::new(),
            },
            ServerMsg::DataHole {
                id: 9,
                len: 1 << 40,
            },
            ServerMsg::Reply {
                id: 10,
                result: Ok(Reply::Done),
            },
        ];
        let mut stream = Vec::new();
        for m in &msgs {
            stream.extend(framed(m));
        }
        let mut r = &stream[..];
        for m in &msgs {
            assert_eq!(&read_server_msg(&mut r).unwrap(), m);
        }
        assert!(matches!(read_server_msg(&mut r), Err(FrameError::Closed)));
    }

    #[test]
    fn a_frame_that_lies_about_its_content_is_refused() {
        let mut frame = framed(&ServerMsg::Data {
            id: 1,
            data: vec![0; 64],
        });
        // The content length says more than the frame holds: not taken as
        // data, and the codec refuses it.
        frame[16] = 65;
        assert!(matches!(
            read_server_msg(&mut &frame[..]),
            Err(FrameError::Decode(_))
        ));
        let mut cut = framed(&ServerMsg::Data {
            id: 1,
            data: vec![0; 64],
        });
        cut.truncate(40);
        assert!(matches!(
            read_server_msg(&mut &cut[..]),
            Err(FrameError::Io(_))
        ));
        let huge = ((MAX_FRAME + 1) as u32).to_le_bytes();
        assert!(matches!(
            read_server_msg(&mut &huge[..]),
            Err(FrameError::TooLarge(_))
        ));
    }
}
