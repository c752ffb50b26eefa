//! Owner ids between the server and this machine, as sshfs maps them:
//! `-o idmap=none` (the default) shows the server's ids as they are;
//! `-o idmap=user` shows the export's owner as the mounting user (and maps
//! the mounting user back to it on chown and create); `-o uid=N,gid=N`
//! show every file as owned by N.
//!
//! rfserve does not say which user it runs as, so `idmap=user` takes the
//! owner of the export root as "the remote user": on a typical export that
//! user runs rfserve and owns the tree.

use rfmount_proto::Owner;

/// How ids are mapped (`-o idmap=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdMapMode {
    /// The server's ids, unchanged.
    #[default]
    None,
    /// The export root's owner appears as the mounting user.
    User,
}

/// The ids of this mount's translation, fixed at mount time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdMap {
    /// Remote ids that appear as `local` (idmap=user), if any.
    swap: Option<(Owner, Owner)>,
    /// `-o uid=`: every file appears owned by this user.
    force_uid: Option<u32>,
    /// `-o gid=`: every file appears owned by this group.
    force_gid: Option<u32>,
}

impl IdMap {
    /// A map that shows `remote` (the export owner) as `local` when
    /// `mode` is `User`, and forces ids given by `-o uid=,gid=`.
    pub fn new(
        mode: IdMapMode,
        remote: Owner,
        local: Owner,
        force_uid: Option<u32>,
        force_gid: Option<u32>,
    ) -> IdMap {
        IdMap {
            swap: (mode == IdMapMode::User).then_some((remote, local)),
            force_uid,
            force_gid,
        }
    }

    /// The ids to show for an object the server says `uid`/`gid` own.
    pub fn to_local(&self, uid: u32, gid: u32) -> (u32, u32) {
        let (mut u, mut g) = (uid, gid);
        if let Some((remote, local)) = self.swap {
            if u == remote.uid {
                u = local.uid;
            }
            if g == remote.gid {
                g = local.gid;
            }
        }
        (self.force_uid.unwrap_or(u), self.force_gid.unwrap_or(g))
    }

    /// The server's user id for a local one (chown, creates).
    pub fn uid_to_remote(&self, uid: u32) -> u32 {
        match self.swap {
            Some((remote, local)) if uid == local.uid => remote.uid,
            _ => uid,
        }
    }

    /// The server's group id for a local one.
    pub fn gid_to_remote(&self, gid: u32) -> u32 {
        match self.swap {
            Some((remote, local)) if gid == local.gid => remote.gid,
            _ => gid,
        }
    }

    /// The server's owner for a local caller.
    pub fn owner_to_remote(&self, uid: u32, gid: u32) -> Owner {
        Owner {
            uid: self.uid_to_remote(uid),
            gid: self.gid_to_remote(gid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_is_identity_and_forced_ids_win() {
        let o = |uid, gid| Owner { uid, gid };
        let m = IdMap::new(IdMapMode::None, o(1000, 100), o(0, 0), None, None);
        assert_eq!(m.to_local(1000, 100), (1000, 100));
        assert_eq!(m.uid_to_remote(0), 0);
        let m = IdMap::new(IdMapMode::None, o(1, 1), o(0, 0), Some(7), None);
        assert_eq!(m.to_local(1000, 100), (7, 100));
    }

    #[test]
    fn user_swaps_the_export_owner_and_the_mounting_user() {
        let o = |uid, gid| Owner { uid, gid };
        let m = IdMap::new(IdMapMode::User, o(1000, 100), o(500, 50), None, None);
        assert_eq!(m.to_local(1000, 100), (500, 50));
        assert_eq!(m.to_local(2000, 100), (2000, 50));
        assert_eq!(m.owner_to_remote(500, 50), o(1000, 100));
        assert_eq!(m.owner_to_remote(3, 4), o(3, 4));
    }
}
