//! `RelPath`: a path relative to the export root that is valid by
//! construction. It is parsed once, at the edge (decoding a frame, parsing a
//! command line, a FUSE name), and the server accepts nothing else, so no
//! later code has to remember to reject `..`.

use serde::{Deserialize, Serialize};

/// Longest component, in bytes (the Linux `NAME_MAX`).
pub const MAX_NAME: usize = 255;
/// Longest path, in bytes. Far more than Linux's `PATH_MAX`: that limits
/// one system call's path, while a process whose working directory is deep
/// inside a mount reaches paths of any length below the export root; the
/// server resolves such paths in pieces.
pub const MAX_PATH: usize = 65_535;

/// Why a string is not a valid [`RelPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Starts with `/`.
    #[error("absolute path {0:?} not allowed; paths are relative to the export root")]
    Absolute(String),
    /// Contains a `..` component.
    #[error("path {0:?} contains '..'")]
    DotDot(String),
    /// Contains a NUL byte.
    #[error("path contains a NUL byte")]
    Nul,
    /// A component is longer than [`MAX_NAME`], or the path than [`MAX_PATH`].
    #[error("name too long in {0:?}")]
    TooLong(String),
    /// A single name was expected but the string is empty, `.`, `..` or has a `/`.
    #[error("{0:?} is not a valid file name")]
    BadName(String),
}

/// A normalised path beneath the export root: components joined by `/`, none
/// empty, `.` or `..`, no NUL, each at most [`MAX_NAME`] bytes. The empty path
/// is the root itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelPath(String);

impl RelPath {
    /// The export root.
    pub fn root() -> Self {
        RelPath(String::new())
    }

    /// Parses a path. Redundant slashes and `.` components are dropped
    /// (`a//./b/` is `a/b`); a leading `/`, any `..` and NUL bytes are errors.
    ///
    /// # Errors
    /// A [`PathError`] naming the offending input.
    pub fn new(s: &str) -> Result<Self, PathError> {
        if s.contains('\0') {
            return Err(PathError::Nul);
        }
        if s.starts_with('/') {
            return Err(PathError::Absolute(s.to_owned()));
        }
        if s.len() > MAX_PATH {
            return Err(PathError::TooLong(truncated(s)));
        }
        let mut out = String::with_capacity(s.len());
        for comp in s.split('/') {
            match comp {
                "" | "." => continue,
                ".." => return Err(PathError::DotDot(s.to_owned())),
                c if c.len() > MAX_NAME => return Err(PathError::TooLong(truncated(s))),
                c => {
                    if !out.is_empty() {
                        out.push('/');
                    }
                    out.push_str(c);
                }
            }
        }
        Ok(RelPath(out))
    }

    /// Parses a user-typed path where a leading `/` means the export root
    /// (as in `rf ls host /docs`).
    ///
    /// # Errors
    /// As [`RelPath::new`].
    pub fn from_user(s: &str) -> Result<Self, PathError> {
        RelPath::new(s.trim_start_matches('/'))
    }

    /// This path with one more component.
    ///
    /// # Errors
    /// [`PathError::BadName`] unless `name` is a single valid component.
    pub fn join(&self, name: &str) -> Result<Self, PathError> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(PathError::BadName(name.to_owned()));
        }
        if name.contains('\0') {
            return Err(PathError::Nul);
        }
        if name.len() > MAX_NAME || self.0.len() + 1 + name.len() > MAX_PATH {
            return Err(PathError::TooLong(truncated(name)));
        }
        if self.0.is_empty() {
            Ok(RelPath(name.to_owned()))
        } else {
            Ok(RelPath(format!("{}/{}", self.0, name)))
        }
    }

    /// True for the export root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path as a string (empty for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last component, or `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        if self.0.is_empty() {
            None
        } else {
            self.0.rsplit('/').next()
        }
    }

    /// The parent directory, or `None` for the root.
    pub fn parent(&self) -> Option<RelPath> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => RelPath(self.0[..i].to_owned()),
            None => RelPath::root(),
        })
    }

    /// True when `self` is `other` or lies beneath it.
    pub fn starts_with(&self, other: &RelPath) -> bool {
        other.0.is_empty()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes()[other.0.len()] == b'/')
    }

    /// Replaces the prefix `from` (which `self` must start with) by `to`.
    pub fn rebase(&self, from: &RelPath, to: &RelPath) -> Option<RelPath> {
        if !self.starts_with(from) {
            return None;
        }
        let rest = self.0[from.0.len()..].trim_start_matches('/');
        if rest.is_empty() {
            return Some(to.clone());
        }
        if to.0.is_empty() {
            Some(RelPath(rest.to_owned()))
        } else {
            Some(RelPath(format!("{}/{}", to.0, rest)))
        }
    }
}

fn truncated(s: &str) -> String {
    s.chars().take(40).collect::<String>() + "..."
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}", self.0)
    }
}

impl TryFrom<String> for RelPath {
    type Error = PathError;

    /// Decoding is strict: a peer must send the normalised form.
    fn try_from(s: String) -> Result<Self, PathError> {
        let p = RelPath::new(&s)?;
        if p.0 != s {
            return Err(PathError::BadName(s));
        }
        Ok(p)
    }
}

impl From<RelPath> for String {
    fn from(p: RelPath) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_normalises() {
        for (input, want) in [
            ("", ""),
            (".", ""),
            ("a", "a"),
            ("a/b", "a/b"),
            ("a//b/", "a/b"),
            ("./a/./b", "a/b"),
            ("..a/b..", "..a/b.."),
            ("a b/ü", "a b/ü"),
        ] {
            assert_eq!(
                RelPath::new(input).unwrap().as_str(),
                want,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn rejects_escapes() {
        for input in ["/etc/passwd", "..", "../x", "a/../../x", "a/..", "a\0b"] {
            assert!(RelPath::new(input).is_err(), "accepted {input:?}");
        }
        assert!(RelPath::new(&"x".repeat(256)).is_err());
        assert!(RelPath::new(&"x/".repeat(2100)).is_ok());
        assert!(RelPath::new(&"x/".repeat(33_000)).is_err());
    }

    #[test]
    fn join_rejects_non_names() {
        let r = RelPath::root();
        for bad in ["", ".", "..", "a/b", "a\0"] {
            assert!(r.join(bad).is_err(), "joined {bad:?}");
        }
        assert_eq!(r.join("a").unwrap().join("b").unwrap().as_str(), "a/b");
    }

    #[test]
    fn parent_file_name_and_rebase() {
        let p = RelPath::new("a/b/c").unwrap();
        assert_eq!(p.parent().unwrap().as_str(), "a/b");
        assert_eq!(p.file_name(), Some("c"));
        assert_eq!(
            RelPath::new("a").unwrap().parent().unwrap(),
            RelPath::root()
        );
        let from = RelPath::new("a/b").unwrap();
        let to = RelPath::new("x").unwrap();
        assert_eq!(p.rebase(&from, &to).unwrap().as_str(), "x/c");
        assert!(RelPath::new("a/bc").unwrap().rebase(&from, &to).is_none());
    }

    #[test]
    fn decode_requires_normal_form() {
        assert!(RelPath::try_from("a//b".to_owned()).is_err());
        assert!(RelPath::try_from("../a".to_owned()).is_err());
        assert!(RelPath::try_from("a/b".to_owned()).is_ok());
    }

    proptest! {
        #[test]
        fn parsed_paths_never_escape(s in "[a-z./\\x00]{0,40}") {
            if let Ok(p) = RelPath::new(&s) {
                prop_assert!(!p.as_str().starts_with('/'));
                prop_assert!(!p.as_str().contains('\0'));
                for c in p.as_str().split('/') {
                    prop_assert!(c != ".." && c != "." && (p.is_root() || !c.is_empty()));
                }
                prop_assert_eq!(RelPath::try_from(p.as_str().to_owned()).unwrap(), p);
            }
        }
    }
}
