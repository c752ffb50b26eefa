//! Long paths through a real mount: a process whose working directory is
//! 200 levels deep creates, writes, lists and removes a path of 4,000 more
//! bytes, although the whole path below the export root is longer than
//! PATH_MAX.

use crate::mount_common::*;
use crate::util::*;

/// Bash that walks down 200 levels of `d`, then 16 levels of a 250-byte
/// name: 400 + 4016 bytes below where it starts.
const DOWN: &str = r#"n=$(printf 'n%.0s' $(seq 250))
down() { for _ in $(seq 200); do $1 d; done; for _ in $(seq 16); do $1 "$n"; done; }
"#;

#[test]
fn paths_longer_than_path_max_below_the_root_work() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let out = sh(
        &m,
        &srv,
        &format!(
            "{DOWN}
            mkcd() {{ mkdir \"$1\" && cd \"$1\"; }}
            down mkcd
            echo deep > f
            cat f
            ls
            pwd | wc -c"
        ),
    )
    .stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["deep", "f"], "{out}");
    let depth: usize = lines[2].trim().parse().unwrap();
    assert!(
        depth > s(m.path()).len() + 4096,
        "the path should pass PATH_MAX below the mount: {depth}"
    );
    // On the server, the same walk finds the file.
    let mut c = TestCommand::sh(&format!("{DOWN}\ndown cd\ncat f"));
    c.current_dir(root.path());
    assert_eq!(c.stdout(), "deep\n");
    // And everything can be removed again through the mount.
    sh(&m, &srv, "rm -r d").ok();
    assert_eq!(names_with_prefix(root.path(), ""), Vec::<String>::new());
}
