//! `privnet`: see `privnet --help` and docs/CONFIG.md.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    privnet_sidecar::cli::main()
}
