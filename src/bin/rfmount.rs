//! `rfmount`: mount an rfserve export with FUSE.
fn main() -> std::process::ExitCode {
    rfmount_mount::cli::main()
}
