//! The `belfry` binary: every subcommand lives in `belfry::cli`.

fn main() -> std::process::ExitCode {
    belfry::cli::run()
}
