//! TLS between real processes: `rfserve --tls` with a self-signed pair or a
//! CA-signed one; `rf` and `rfmount` trusting it on first use, by pinned
//! fingerprint or by CA; refusals of a changed or wrong certificate; plain
//! and TLS peers that meet; and a relay that records the wire to show that
//! file content does not cross it in the clear.

use std::path::Path;

use crate::util::*;

/// Asserts that a command failed with exactly one stderr line containing
/// every one of `parts`; returns the line.
fn one_line_error(out: &std::process::Output, parts: &[&str]) -> String {
    let err = text(&out.stderr);
    assert!(!out.status.success(), "expected a failure; stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got:\n{err}");
    for p in parts {
        assert!(lines[0].contains(p), "{:?} does not say {p:?}", lines[0]);
    }
    lines[0].to_owned()
}

fn known_servers_lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn trust_on_first_use_records_then_refuses_a_changed_certificate() {
    let t = TestDir::new("tls-tofu");
    t.write("export/hello.txt", "hello over TLS\n");
    let state = t.mkdir("state");
    let mut server = tls_server(t.join("export"), &state, &[]);
    let fp = printed_fingerprint(&server);
    assert_eq!(fp.len(), 64, "{fp}");
    let known = t.join("known/known_servers");
    let known_arg = known.to_str().unwrap();

    // First use: accepted and recorded, with a note on stderr.
    let out = server
        .rf(
            "get",
            ["hello.txt", "-", "--tls", "--tls-known-servers", known_arg],
        )
        .ok();
    assert_eq!(text(&out.stdout), "hello over TLS\n");
    assert!(
        text(&out.stderr).contains("first use"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        known_servers_lines(&known),
        vec![format!("{} {fp}", server.addr())]
    );
    // Second use: accepted silently, nothing appended.
    let out = server
        .rf("ls", ["--tls", "--tls-known-servers", known_arg])
        .ok();
    assert!(text(&out.stdout).contains("hello.txt"));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert_eq!(known_servers_lines(&known).len(), 1);

    // A restart keeps the certificate (it lives in the state directory).
    server.restart();
    assert_eq!(nth_fingerprint(&server, 2), fp);
    server
        .rf("ls", ["--tls", "--tls-known-servers", known_arg])
        .ok();

    // A new key: refused, with the file and line to edit, and the record
    // is left as it was.
    server.kill();
    for f in ["tls-cert.pem", "tls-key.pem"] {
        std::fs::remove_file(state.join(f)).unwrap();
    }
    server.restart();
    let new_fp = nth_fingerprint(&server, 3);
    assert_ne!(new_fp, fp);
    let out = server
        .rf("ls", ["--tls", "--tls-known-servers", known_arg])
        .code(1);
    one_line_error(
        &out,
        &["has changed", &new_fp, &fp, "delete line 1 of", known_arg],
    );
    assert_eq!(
        known_servers_lines(&known),
        vec![format!("{} {fp}", server.addr())]
    );
    // After the user deletes the line, the new certificate is learnt.
    std::fs::write(&known, "# edited by hand\n").unwrap();
    server
        .rf("ls", ["--tls", "--tls-known-servers", known_arg])
        .ok();
    assert_eq!(
        known_servers_lines(&known)[1],
        format!("{} {new_fp}", server.addr())
    );
}

#[test]
fn known_servers_defaults_to_xdg_config_home() {
    let t = TestDir::new("tls-xdg");
    t.write("export/a", "a");
    let server = tls_server(t.join("export"), &t.mkdir("state"), &[]);
    let fp = printed_fingerprint(&server);
    let config = t.mkdir("config");
    server
        .rf("ls", ["--tls"])
        .env("XDG_CONFIG_HOME", &config)
        .ok();
    assert_eq!(
        known_servers_lines(&config.join("rfmount/known_servers")),
        vec![format!("{} {fp}", server.addr())]
    );
}

#[test]
fn pinned_fingerprint_accepts_the_right_one_and_refuses_another() {
    let t = TestDir::new("tls-pin");
    t.write("export/pinned.txt", "pinned\n");
    t.write("token", "s3cret token\n");
    let server = tls_server(
        t.join("export"),
        &t.mkdir("state"),
        &["--token-file", t.join("token").to_str().unwrap()],
    );
    let fp = printed_fingerprint(&server);
    let config = t.mkdir("config");
    let token = t.join("token");
    let token = token.to_str().unwrap();

    // Token authentication runs inside TLS, unchanged.
    let out = server
        .rf(
            "get",
            [
                "pinned.txt",
                "-",
                "--tls-fingerprint",
                &fp,
                "--token-file",
                token,
            ],
        )
        .env("XDG_CONFIG_HOME", &config)
        .ok();
    assert_eq!(text(&out.stdout), "pinned\n");
    let out = server
        .rf("ls", ["--tls-fingerprint", &fp])
        .env("XDG_CONFIG_HOME", &config)
        .code(1);
    one_line_error(&out, &["requires a token"]);

    // openssl's notation (upper case, colons) names the same certificate.
    let openssl_style = fp
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    server
        .rf(
            "ls",
            [
                "--tls-fingerprint",
                &format!("sha256:{openssl_style}"),
                "--token-file",
                token,
            ],
        )
        .ok();

    // Any other fingerprint is refused before the token is ever sent.
    let wrong: String = fp
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let out = server
        .rf("ls", ["--tls-fingerprint", &wrong, "--token-file", token])
        .code(1);
    one_line_error(&out, &[&fp, &wrong, "--tls-fingerprint"]);
    assert!(server.wait_count("TLS handshake failed", 1, STARTUP_TIMEOUT) >= 1);
    // Pinning never writes the known-servers file.
    assert!(!config.join("rfmount/known_servers").exists());

    let out = server.rf("ls", ["--tls-fingerprint", "abc"]).code(1);
    one_line_error(&out, &["--tls-fingerprint", "not a SHA-256 fingerprint"]);
}

#[test]
fn ca_mode_checks_the_chain_and_the_host_name() {
    let t = TestDir::new("tls-ca");
    t.write("export/ca.txt", "signed\n");
    let pki = Pki::generate(t.path(), "good", &["localhost"]);
    let other = Pki::generate(t.path(), "other", &["localhost"]);
    let server = Server::start_os(
        t.join("export"),
        vec![
            "--tls-cert".into(),
            pki.cert.clone().into(),
            "--tls-key".into(),
            pki.key.clone().into(),
        ],
    );
    let localhost = format!("localhost:{}", server.port());
    let ca = pki.ca.to_str().unwrap();

    let out = TestCommand::rf()
        .args(["get", &localhost, "ca.txt", "-", "--tls-ca", ca])
        .with_server(&server)
        .ok();
    assert_eq!(text(&out.stdout), "signed\n");

    // The certificate names localhost, not 127.0.0.1.
    let out = server.rf("ls", ["--tls-ca", ca]).code(1);
    one_line_error(&out, &["not trusted by --tls-ca", "127.0.0.1"]);
    // Another authority's root does not vouch for it.
    let out = TestCommand::rf()
        .args(["ls", &localhost, "--tls-ca", other.ca.to_str().unwrap()])
        .with_server(&server)
        .code(1);
    one_line_error(&out, &["not trusted by --tls-ca", "other-ca.pem"]);
    // An unreadable CA file is named.
    let out = TestCommand::rf()
        .args([
            "ls",
            &localhost,
            "--tls-ca",
            t.join("missing.pem").to_str().unwrap(),
        ])
        .code(1);
    one_line_error(&out, &["--tls-ca", "missing.pem"]);

    // A key that does not belong to the certificate stops rfserve at once.
    let out = TestCommand::rfserve()
        .args([
            "--root",
            t.join("export").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--tls-cert", pki.cert.to_str().unwrap()])
        .args(["--tls-key", other.key.to_str().unwrap()])
        .code(2);
    assert!(
        text(&out.stderr).contains("does not fit the certificate"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn plain_and_tls_peers_get_one_clear_line() {
    let t = TestDir::new("tls-mismatch");
    t.write("export/x", "x");
    let tls = tls_server(t.join("export"), &t.mkdir("state"), &[]);
    let out = tls.rf("ls", Vec::<&str>::new()).code(1);
    one_line_error(&out, &["requires TLS", "--tls"]);
    assert!(tls.wait_count("client does not speak TLS", 1, STARTUP_TIMEOUT) >= 1);

    let plain = Server::start(t.join("export"), &[]);
    let known = t.join("known_servers");
    let out = plain
        .rf(
            "ls",
            ["--tls", "--tls-known-servers", known.to_str().unwrap()],
        )
        .code(1);
    one_line_error(&out, &["does not speak TLS", &plain.addr()]);
    assert!(!known.exists(), "nothing was learnt from a plain server");

    // The mount reports the same, and exits.
    if require_fuse("plain_and_tls_peers_get_one_clear_line") {
        let mnt = t.mkdir("mnt");
        let out = TestCommand::new(rfmount_bin())
            .arg(tls.addr())
            .arg(&mnt)
            .args(["-f", "--cache-dir"])
            .arg(t.join("cache"))
            .code(1);
        assert!(
            text(&out.stderr).contains("requires TLS"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_mount_over_tls_copies_in_and_reads_out() {
    if !require_fuse("a_mount_over_tls_copies_in_and_reads_out") {
        return;
    }
    let t = TestDir::new("tls-mount");
    let server = tls_server(t.join("export"), &t.mkdir("state"), &[]);
    let fp = printed_fingerprint(&server);
    let src = t.write_random("src.bin", 5 * 1024 * 1024 + 17, 9);

    let mut m = Mount::start(&server, &["--tls-fingerprint", &fp]);
    m.cmd("cp").arg(&src).arg("in.bin").ok();
    assert_same_file(&src, &server.root().join("in.bin"));
    m.unmount_and_wait();

    // A fresh cache, trust on first use: the file comes back over TLS.
    let known = t.join("known_servers");
    let known_arg = known.to_str().unwrap();
    let mut m2 = Mount::start(&server, &["--tls", "--tls-known-servers", known_arg]);
    let out = m2.cmd("cat").arg("in.bin").ok();
    assert!(out.stdout == std::fs::read(&src).unwrap(), "cat differs");
    assert_eq!(known_servers_lines(&known).len(), 1);
    m2.unmount_and_wait();
}

/// 1 MiB of text no cipher output would contain.
fn distinctive(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(format!("<rfmount secret line {i:09} in the clear>").as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

/// Slices of the pattern away from 256 KiB chunk boundaries, where a plain
/// stream interleaves frame headers.
fn needles(data: &[u8]) -> Vec<&[u8]> {
    [1_000, 300_000, 700_000, 1_000_000]
        .iter()
        .map(|&at| &data[at..at + 40])
        .collect()
}

/// `rf put` then `rf get` through a relay that records the wire; returns
/// what it recorded each way.
fn through_relay(server: &Server, tls: &[&str], t: &TestDir, name: &str) -> (Vec<u8>, Vec<u8>) {
    let relay = Relay::start(&server.addr());
    let data = distinctive(1 << 20);
    let src = t.write(format!("{name}.src"), &data);
    let back = t.join(format!("{name}.back"));
    let mut put = TestCommand::rf();
    put.args(["put", relay.addr()])
        .arg(&src)
        .arg(format!("{name}.txt"))
        .args(tls)
        .with_server(server)
        .ok();
    let mut get = TestCommand::rf();
    get.args(["get", relay.addr(), &format!("{name}.txt")])
        .arg(&back)
        .args(tls)
        .with_server(server)
        .ok();
    assert!(
        std::fs::read(&back).unwrap() == data,
        "{name}: get returned other bytes"
    );
    let rec = relay.recorded();
    let up: Vec<u8> = rec.iter().flat_map(|(u, _)| u.clone()).collect();
    let down: Vec<u8> = rec.iter().flat_map(|(_, d)| d.clone()).collect();
    (up, down)
}

#[test]
fn file_content_does_not_cross_the_wire_in_the_clear() {
    let t = TestDir::new("tls-wire");
    let data = distinctive(1 << 20);

    // Control: without TLS, the relay sees the content both ways.
    let plain = Server::start(t.join("plain-export"), &[]);
    let (up, down) = through_relay(&plain, &[], &t, "plain");
    for n in needles(&data) {
        assert!(contains(&up, n), "control: upload not seen in the clear");
        assert!(
            contains(&down, n),
            "control: download not seen in the clear"
        );
    }

    let server = tls_server(t.join("tls-export"), &t.mkdir("state"), &[]);
    let fp = printed_fingerprint(&server);
    let (up, down) = through_relay(&server, &["--tls-fingerprint", &fp], &t, "tls");
    // All of it went through the relay, encrypted.
    assert!(up.len() > 1 << 20, "only {} bytes went up", up.len());
    assert!(down.len() > 1 << 20, "only {} bytes came down", down.len());
    for n in needles(&data) {
        assert!(!contains(&up, n), "upload readable on the wire");
        assert!(!contains(&down, n), "download readable on the wire");
    }
    assert!(
        !contains(&up, b"tls.txt"),
        "file names readable on the wire"
    );
    assert_same_file(&t.join("tls.src"), &server.root().join("tls.txt"));
}

#[test]
fn keep_alive_holds_a_quiet_tls_mount_open() {
    if !require_fuse("keep_alive_holds_a_quiet_tls_mount_open") {
        return;
    }
    // Idle timeout 1 s: the mount pings every third of it, and its reader
    // gives up after three silent intervals. Both rely on socket read
    // timeouts, which must work through TLS as on a plain socket.
    let t = TestDir::new("tls-keepalive");
    let server = tls_server(
        t.join("export"),
        &t.mkdir("state"),
        &["--idle-timeout", "1"],
    );
    let fp = printed_fingerprint(&server);
    let mut m = Mount::start(&server, &["--tls-fingerprint", &fp]);
    m.cmd("sh").args(["-c", "echo before > quiet.txt"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let out = m.cmd("cat").arg("quiet.txt").ok();
    assert_eq!(text(&out.stdout), "before\n");
    assert_eq!(
        server.count("idle for"),
        0,
        "the server closed a pinged connection"
    );
    assert!(
        !m.log().contains("reconnected"),
        "the connection had to be reopened"
    );
    assert_eq!(
        server.count("connection from"),
        1,
        "one connection, opened and never closed:\n{}",
        server.log()
    );
    m.unmount_and_wait();
}

#[test]
fn a_trickled_tls_hello_is_cut_off_by_the_deadline_counted_from_the_accept() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let t = TestDir::new("tls-deadline");
    t.write("export/x", "x");
    let server = tls_server(
        t.join("export"),
        &t.mkdir("state"),
        &["--handshake-timeout", "3"],
    );
    let mut sock = std::net::TcpStream::connect(server.addr()).unwrap();
    let accepted = Instant::now();
    // Quiet for most of the handshake's 3 s, then the start of a TLS
    // record, one byte at a time: TLS gets what is left of the deadline,
    // not a fresh one (which would end at 5.5 s or later).
    std::thread::sleep(Duration::from_millis(2500));
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    let mut closed = false;
    for b in [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]
        .iter()
        .cycle()
        .take(60)
    {
        if sock.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        match sock.read(&mut buf) {
            Ok(_) => {
                closed = true;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let took = accepted.elapsed();
    assert!(closed, "the server kept a trickling TLS hello open");
    assert!(
        took < Duration::from_millis(4800),
        "closed after {took:?}: the TLS handshake got a deadline of its own"
    );
    assert!(server.wait_count("TLS handshake failed", 1, STARTUP_TIMEOUT) >= 1);
}
