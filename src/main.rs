//! The `belfry` binary: every subcommand lives in `belfry::cli`.
//!
//! Invariant: the binary holds no logic of its own: it runs `belfry::cli::run` and exits with
//! the code it returns.

fn main() -> std::process::ExitCode {
    belfry::cli::run()
}
