//! The mode of a new object under `-o acl`, where the kernel hands the
//! umask to the filesystem (FUSE_POSIX_ACL with FUSE_DONT_MASK) instead of
//! applying it.
//!
//! POSIX says: in a directory with a default ACL the umask is ignored and
//! the new object's permission bits are the requested mode masked by that
//! ACL (`posix_acl_create` in Linux); elsewhere the umask applies. The
//! server's kernel inherits the default ACL itself when rfserve creates the
//! object, and rfserve then sets exactly the mode asked for, which on a
//! file with an ACL sets its owner, mask and other entries. So the mount
//! only has to ask for the mode the local rule gives, computed here from
//! the parent's default ACL, and the server ends up with the ACL a local
//! create would have made.

use log::debug;
use rfmount_client::Remote;

use super::RemoteFs;
use crate::error::{FsError, FsResult};

/// The attribute holding a directory's default ACL.
pub(super) const DEFAULT_ACL: &str = "system.posix_acl_default";

/// `POSIX_ACL_XATTR_VERSION`: the first four bytes of an ACL attribute.
const XATTR_VERSION: u32 = 2;

const ACL_USER_OBJ: u16 = 0x01;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;

fn bad_acl() -> FsError {
    FsError::Errno {
        errno: libc::EIO,
        what: "the parent's default ACL is malformed",
    }
}

/// The permission bits of an object created with `mode` under the default
/// ACL `acl` (the attribute's value as the kernel stores it), as Linux's
/// `posix_acl_create_masq` computes them: the owner and other classes are
/// limited by their entries, the group class by the mask entry (by the
/// owning group's entry when there is no mask). Bits beyond the
/// permissions (type, setuid, setgid, sticky) pass unchanged.
///
/// # Errors
/// `EIO` for a value that is not an ACL (as the kernel answers).
pub(super) fn masked_by_default_acl(mode: u32, acl: &[u8]) -> FsResult<u32> {
    let Some((header, entries)) = acl.split_first_chunk::<4>() else {
        return Err(bad_acl());
    };
    if u32::from_le_bytes(*header) != XATTR_VERSION || entries.len() % 8 != 0 {
        return Err(bad_acl());
    }
    let mut mode = mode;
    let (mut owner, mut group, mut mask, mut other) = (None, None, None, None);
    for e in entries.chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u32::from(u16::from_le_bytes([e[2], e[3]]) & 0o7);
        match tag {
            ACL_USER_OBJ => owner = Some(perm),
            ACL_GROUP_OBJ => group = Some(perm),
            ACL_MASK => mask = Some(perm),
            ACL_OTHER => other = Some(perm),
            _ => {}
        }
    }
    let (Some(owner), Some(group), Some(other)) = (owner, group, other) else {
        return Err(bad_acl());
    };
    mode &= (owner << 6) | !0o700;
    mode &= mask.unwrap_or(group) << 3 | !0o070;
    mode &= other | !0o007;
    Ok(mode)
}

/// The mode for a new object, and whether it inherits a default ACL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewMode {
    /// The mode to ask the server for.
    pub mode: u32,
    /// The parent has a default ACL, which the object inherits on the
    /// server (so it has attributes the mount does not know yet).
    pub inherits: bool,
}

impl<R: Remote> RemoteFs<R> {
    /// The mode to create an object with in directory `parent`, given the
    /// caller's `mode` and `umask`: the umask applies unless `-o acl` is on
    /// and the parent has a default ACL, which then masks the mode instead.
    ///
    /// # Errors
    /// `EIO` when the parent's default ACL is malformed.
    pub fn create_mode(&self, parent: u64, mode: u32, umask: u32) -> FsResult<NewMode> {
        let umasked = NewMode {
            mode: mode & !(umask & 0o777),
            inherits: false,
        };
        if !self.cfg.acl {
            return Ok(umasked);
        }
        match self.getxattr(parent, DEFAULT_ACL) {
            Ok(acl) => Ok(NewMode {
                mode: masked_by_default_acl(mode, &acl)?,
                inherits: true,
            }),
            Err(e) if e.errno() == libc::ENODATA => Ok(umasked),
            // Offline, or the parent went away: the create itself will say
            // so if it cannot go on; without an ACL to apply, the umask is
            // what a local filesystem would use.
            Err(e) => {
                debug!("default ACL of inode {parent} unknown ({e}); applying the umask");
                Ok(umasked)
            }
        }
    }

    /// `ino` was just created with an inherited ACL: what the mount noted
    /// of its attribute names (none, for a new file) is not so.
    pub fn inherited_acl(&self, ino: u64) {
        if let Ok(path) = self.path(ino) {
            self.forget_xattrs(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = XATTR_VERSION.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    #[test]
    fn the_mask_limits_the_group_class_and_the_umask_is_ignored() {
        // default: user::rwx, user:65534:rwx, group::r-x, mask::rwx, other::---
        let a = acl(&[
            (ACL_USER_OBJ, 7, u32::MAX),
            (0x02, 7, 65534),
            (ACL_GROUP_OBJ, 5, u32::MAX),
            (ACL_MASK, 7, u32::MAX),
            (ACL_OTHER, 0, u32::MAX),
        ]);
        assert_eq!(masked_by_default_acl(0o666, &a).unwrap(), 0o660);
        assert_eq!(masked_by_default_acl(0o777, &a).unwrap(), 0o770);
        assert_eq!(
            masked_by_default_acl(libc::S_IFDIR | 0o2755, &a).unwrap(),
            libc::S_IFDIR | 0o2750
        );
    }

    #[test]
    fn without_a_mask_the_owning_group_entry_limits_the_group_class() {
        let a = acl(&[
            (ACL_USER_OBJ, 6, u32::MAX),
            (ACL_GROUP_OBJ, 4, u32::MAX),
            (ACL_OTHER, 4, u32::MAX),
        ]);
        assert_eq!(masked_by_default_acl(0o777, &a).unwrap(), 0o644);
    }

    #[test]
    fn a_value_that_is_no_acl_is_eio() {
        for bad in [vec![], vec![1, 0, 0, 0], acl(&[(ACL_USER_OBJ, 7, 0)]), {
            let mut v = acl(&[(ACL_USER_OBJ, 7, 0)]);
            v.push(0);
            v
        }] {
            let e = masked_by_default_acl(0o666, &bad).unwrap_err();
            assert_eq!(e.errno(), libc::EIO, "{bad:?}");
        }
    }
}
