//! Wire protocol of rfmount: message types, framing, the codec, limits and
//! error codes. See `docs/PROTOCOL.md` for the byte-level description.
//!
//! This crate does no networking and holds no policy: it turns messages into
//! frames on any [`std::io::Write`] and frames from any [`std::io::Read`] back
//! into messages, checking every length against [`MAX_FRAME`] before it
//! allocates.
//!
//! ```
//! use rfmount_proto::{ClientMsg, Op, RelPath, read_frame, write_frame};
//! let msg = ClientMsg::Request { id: 7, op: Op::Stat { path: RelPath::new("a/b.txt").unwrap() } };
//! let mut wire = Vec::new();
//! write_frame(&mut wire, &msg).unwrap();
//! let back: ClientMsg = read_frame(&mut wire.as_slice()).unwrap();
//! assert_eq!(back, msg);
//! ```
#![deny(missing_docs)]

mod auth;
mod checksum;
mod codec;
mod data_frame;
mod error;
mod frame;
mod messages;
mod path;
mod version;

pub use auth::{AuthKey, Nonce, new_nonce};
pub use checksum::{Checksum, Hasher};
pub use codec::{DecodeError, EncodeError};
pub use data_frame::{
    DATA_HEADER, data_frame_buffer, read_server_msg, read_server_msg_with, seal_data_frame,
};
pub use error::{ErrorCode, WireError};
pub use frame::{FrameError, MAX_FRAME, decode_payload, read_frame, read_payload, write_frame};
pub use messages::{
    Change, ClientHello, ClientMsg, DirEntry, Extent, FileId, FileKind, Invalidation, Limits,
    LockFlavor, LockHolder, LockKind, MAGIC, Meta, Op, Owner, PROTOCOL_VERSION, PutExpect, PutExt,
    PutLayout, RENAME_EXCHANGE, RENAME_NOREPLACE, Reply, ServerHello, ServerMsg, SetAttr, SetTime,
    StatFs, Timestamp, Version, Welcome, XATTR_CREATE, XATTR_REPLACE, XattrValue,
};
pub use path::{MAX_NAME, MAX_PATH, PathError, RelPath};
pub use version::{MAX_HELLO, hello_version, v1_layout_server_hello};

/// Default TCP port of `rfserve`, inherited from the classic file server.
pub const DEFAULT_PORT: u16 = 9500;
/// Size of one data chunk in `GET` and `PUT` streams.
pub const CHUNK_SIZE: usize = 256 * 1024;
