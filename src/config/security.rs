//! The API's and the peers' security settings: tokens, TLS files and the cluster secret.
//!
//! Invariant: nothing is off unless an `--insecure-…` setting says so, and no credential is
//! blank; every file is read and checked at start, named when it is wrong.

use std::path::Path;

use super::args::ServerArgs;
use super::file::FileSecurity;
use super::{invalid, ConfigError};
use crate::raft::peer_auth::{ClusterSecret, PeerAuth};

/// PEM material for TLS, read at start-up.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub ca: Vec<u8>,
}

/// The API's and the peers' security settings.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// `None`: authentication explicitly off.
    pub tokens: Option<crate::api::auth::Tokens>,
    /// `None`: TLS explicitly off.
    pub tls: Option<TlsFiles>,
    /// Sent with and demanded of every peer call. `None` with TLS off: peer authentication
    /// explicitly off (`--insecure-no-peer-auth`).
    pub cluster_secret: Option<ClusterSecret>,
}

impl Security {
    /// What an incoming peer call must present.
    pub fn peer_auth(&self) -> PeerAuth {
        PeerAuth {
            require_certificate: self.tls.is_some(),
            secret: self.cluster_secret.clone(),
        }
    }
}

/// Reads tokens or secrets, one per line (blank lines and `#` comments ignored). A file that
/// holds none is refused: it would configure nothing, or worse, an empty credential.
fn read_tokens(setting: &'static str, path: &Path) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(setting, format!("{}: {e}", path.display())))?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if tokens.is_empty() {
        return Err(invalid(
            setting,
            format!(
                "{} is empty (or only blank lines and comments)",
                path.display()
            ),
        ));
    }
    Ok(tokens)
}

/// A token given directly (flag or variable): set but blank is refused, never an empty token
/// that `authorization: Bearer ` would match.
fn direct_token(
    setting: &'static str,
    token: Option<&String>,
) -> Result<Option<String>, ConfigError> {
    match token.map(|t| t.trim()) {
        Some("") => Err(invalid(
            setting,
            "is set but empty or only whitespace; unset it or give a token",
        )),
        Some(token) => Ok(Some(token.to_string())),
        None => Ok(None),
    }
}

/// What a PEM file must hold.
#[derive(Clone, Copy)]
enum Pem {
    Certificates,
    PrivateKey,
}

/// Reads a PEM file and checks that it holds what `kind` says, so a wrong or damaged file is
/// named at start rather than reported as a bare "transport error" later.
fn read_pem(setting: &'static str, path: &Path, kind: Pem) -> Result<Vec<u8>, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| invalid(setting, format!("{shown}: {e}")))?;
    match kind {
        Pem::Certificates => {
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(setting, format!("{shown}: not a PEM certificate: {e}")))?;
            if certs.is_empty() {
                return Err(invalid(
                    setting,
                    format!("{shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
                ));
            }
        }
        Pem::PrivateKey => {
            PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| invalid(setting, format!("{shown}: no PEM private key found: {e}")))?;
        }
    }
    Ok(pem)
}

pub(super) fn security(args: &ServerArgs, file: &FileSecurity) -> Result<Security, ConfigError> {
    let tokens = if args.insecure_no_auth || file.insecure_no_auth {
        None
    } else {
        let mut tokens = crate::api::auth::Tokens::default();
        if let Some(path) = args
            .admin_token_file
            .as_ref()
            .or(file.admin_token_file.as_ref())
        {
            tokens.admin = read_tokens("admin_token_file", path)?;
        }
        tokens
            .admin
            .extend(direct_token("admin_token", args.admin_token.as_ref())?);
        if let Some(path) = args
            .readonly_token_file
            .as_ref()
            .or(file.readonly_token_file.as_ref())
        {
            tokens.readonly = read_tokens("readonly_token_file", path)?;
        }
        tokens.readonly.extend(direct_token(
            "readonly_token",
            args.readonly_token.as_ref(),
        )?);
        if tokens.admin.is_empty() {
            return Err(invalid(
                "admin_token",
                "no admin token configured (--admin-token-file or BELFRY_ADMIN_TOKEN); \
                 --insecure-no-auth turns authentication off",
            ));
        }
        Some(tokens)
    };
    let tls = if args.insecure_no_tls || file.insecure_no_tls {
        None
    } else {
        let cert = args.tls_cert.as_ref().or(file.tls_cert.as_ref());
        let key = args.tls_key.as_ref().or(file.tls_key.as_ref());
        let ca = args.tls_client_ca.as_ref().or(file.tls_client_ca.as_ref());
        match (cert, key, ca) {
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles {
                cert: read_pem("tls_cert", cert, Pem::Certificates)?,
                key: read_pem("tls_key", key, Pem::PrivateKey)?,
                ca: read_pem("tls_client_ca", ca, Pem::Certificates)?,
            }),
            _ => {
                return Err(invalid(
                    "tls_cert",
                    "TLS needs --tls-cert, --tls-key and --tls-client-ca; \
                     --insecure-no-tls turns it off",
                ))
            }
        }
    };
    let cluster_secret = cluster_secret(args, file, tls.is_some())?;
    Ok(Security {
        tokens,
        tls,
        cluster_secret,
    })
}

/// The cluster secret: from the flag or variable, or from a file, never both. Without TLS a
/// node needs one, or an explicit `--insecure-no-peer-auth`.
fn cluster_secret(
    args: &ServerArgs,
    file: &FileSecurity,
    tls: bool,
) -> Result<Option<ClusterSecret>, ConfigError> {
    let path = args
        .cluster_secret_file
        .as_ref()
        .or(file.cluster_secret_file.as_ref());
    let secret = match (&args.cluster_secret, path) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "cluster_secret",
                "given both directly (--cluster-secret or BELFRY_CLUSTER_SECRET) and as a \
                 file (cluster_secret_file); give one",
            ))
        }
        (Some(secret), None) => Some(
            ClusterSecret::new(std::slice::from_ref(secret))
                .map_err(|e| invalid("cluster_secret", format!("the cluster secret {e}")))?,
        ),
        (None, Some(path)) => {
            let secrets = read_tokens("cluster_secret_file", path)?;
            Some(ClusterSecret::new(&secrets).map_err(|e| {
                invalid(
                    "cluster_secret_file",
                    format!("{}: a secret in it {e}", path.display()),
                )
            })?)
        }
        (None, None) => None,
    };
    let no_peer_auth = args.insecure_no_peer_auth || file.insecure_no_peer_auth;
    match (&secret, no_peer_auth) {
        (Some(_), true) => Err(invalid(
            "insecure_no_peer_auth",
            "contradicts the cluster secret that is also given; drop one of them",
        )),
        (None, false) if !tls => Err(invalid(
            "cluster_secret",
            "peer calls would be unauthenticated: without TLS every node needs the same \
             cluster secret (--cluster-secret-file, BELFRY_CLUSTER_SECRET_FILE or \
             BELFRY_CLUSTER_SECRET); --insecure-no-peer-auth lets anyone who reaches the port \
             move leadership and write schedules",
        )),
        _ => Ok(secret),
    }
}
