//! `Reply::Changed`: the answer to a request that changed the tree, with
//! the attributes a client would otherwise fetch with a STAT right after
//! (the object, and the parent directories whose listing and mtime moved).

use rfmount_proto::{Meta, RelPath, Reply};

use crate::store::Store;

/// The answer to a change of `paths` (in the request's order) that left the
/// object with `meta` (`None`: it is gone).
///
/// The parents are stat'ed after the change, so another change landing in
/// between is reported too; that is never older than what the change
/// itself did. A parent that cannot be stat'ed (removed meanwhile) is left
/// out rather than failing a change that is done.
pub(crate) fn changed(store: &dyn Store, meta: Option<Meta>, paths: &[&RelPath]) -> Reply {
    let parents = paths
        .iter()
        .filter_map(|p| p.parent())
        .filter_map(|dir| store.stat(&dir).ok())
        .collect();
    Reply::Changed { meta, parents }
}
