//! `rfserve`: serves a directory to rfmount and rf clients. All logic lives
//! in the `rfmount-server` crate; see `rfserve --help`.

fn main() -> std::process::ExitCode {
    rfmount_server::cli::main()
}
