//! `rf`: command-line client for an rfserve export.
fn main() -> std::process::ExitCode {
    rfmount_client::cli::main()
}
