//! What the API-backed subcommands share: how to reach the cluster (flags and `BELFRY_*`
//! variables), the output format, and turning a gRPC status into one line and an exit code.
//!
//! Invariant: each gRPC status maps to one documented exit code (usage 2, not found 3, conflict
//! 4, unavailable 5, denied 6, anything else 1). It must not hold what a subcommand does.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tonic::Code;

use crate::api::client::{ApiClient, ClientConfig};

/// Exit codes a script can branch on.
pub(super) const EXIT_FAILED: u8 = 1;
pub(super) const EXIT_NOT_FOUND: u8 = 3;
pub(super) const EXIT_CONFLICT: u8 = 4;
pub(super) const EXIT_UNAVAILABLE: u8 = 5;
pub(super) const EXIT_DENIED: u8 = 6;

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub(super) enum Output {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document for scripts.
    Json,
}

#[derive(Args, Debug, Clone)]
pub(super) struct Connection {
    /// API address of any node: host:port, http://host:port or https://host:port.
    #[arg(
        long,
        global = true,
        env = "BELFRY_ENDPOINT",
        default_value = "127.0.0.1:7400"
    )]
    pub endpoint: String,
    /// Bearer token.
    #[arg(long, global = true, env = "BELFRY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the bearer token.
    #[arg(long, global = true, env = "BELFRY_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA to verify the server with (turns TLS on for host:port endpoints).
    #[arg(long, global = true, env = "BELFRY_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Seconds to wait for an answer.
    #[arg(long, global = true, env = "BELFRY_TIMEOUT", default_value_t = 30)]
    pub timeout: u64,
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        env = "BELFRY_OUTPUT",
        default_value = "table"
    )]
    pub output: Output,
}

/// A failed command: the line to print and the exit code.
pub(super) struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    pub(super) fn usage(message: impl std::fmt::Display) -> Failure {
        Failure {
            message: message.to_string(),
            code: super::EXIT_USAGE,
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Failure {
        let code = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => super::EXIT_USAGE,
            Code::NotFound => EXIT_NOT_FOUND,
            Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => EXIT_CONFLICT,
            Code::Unavailable | Code::DeadlineExceeded => EXIT_UNAVAILABLE,
            Code::Unauthenticated | Code::PermissionDenied => EXIT_DENIED,
            _ => EXIT_FAILED,
        };
        let what = code_name(status.code());
        let message = status.message().lines().next().unwrap_or("").to_string();
        Failure {
            message: format!("{what}: {message}"),
            code,
        }
    }
}

/// The code as gRPC spells it (`NOT_FOUND`), so errors read the same as in other tools.
fn code_name(code: Code) -> String {
    let camel = format!("{code:?}");
    let mut name = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

impl Connection {
    pub(super) fn client(&self) -> Result<ApiClient, Failure> {
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| Failure::usage(format!("--token-file {}: {e}", path.display())))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        let tls_ca = self
            .tls_ca
            .as_ref()
            .map(|path| {
                std::fs::read(path)
                    .map_err(|e| Failure::usage(format!("--tls-ca {}: {e}", path.display())))
            })
            .transpose()?;
        ApiClient::new(&ClientConfig {
            endpoint: self.endpoint.clone(),
            token,
            tls_ca,
            timeout: Some(Duration::from_secs(self.timeout.max(1))),
        })
        .map_err(Failure::usage)
    }
}

/// Runs an async command on a small runtime and maps its outcome to an exit code.
pub(super) fn run_remote<F>(command: F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), Failure>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Parses `key=value`.
pub(super) fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}
