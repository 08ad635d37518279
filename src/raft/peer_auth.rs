//! Authentication of peer calls: the cluster secret that every peer call carries in its
//! metadata, and the check every incoming peer call passes before its body is read.
//!
//! Invariant: an incoming call is let through only with the required certificate and/or one of
//! the accepted secrets, compared in constant time; the check is a tonic interceptor that sees
//! headers and certificates only, so a stranger is refused before a message is buffered. It
//! must not read files (that is `config`) nor look at what a call asks for.

use std::fmt;
use std::sync::Arc;

use tonic::metadata::AsciiMetadataValue;
use tonic::{Request, Status};

/// The metadata key a peer call carries the cluster secret in.
pub const SECRET_METADATA: &str = "x-belfry-cluster-secret";
/// The shortest secret accepted: a shorter one can be guessed.
pub const MIN_SECRET_LEN: usize = 16;

/// Why a cluster secret was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("is empty or only whitespace")]
    Blank,
    #[error("is {0} characters long; use at least {MIN_SECRET_LEN} (e.g. `openssl rand -hex 32`)")]
    TooShort(usize),
    #[error("may hold only printable ASCII characters, without spaces")]
    BadCharacter,
}

/// The cluster secret. The first is sent; any of them is accepted, so a secret can be rotated
/// node by node (add the new one second, then first, then drop the old one).
#[derive(Clone)]
pub struct ClusterSecret {
    sent: AsciiMetadataValue,
    accepted: Arc<Vec<Vec<u8>>>,
}

impl fmt::Debug for ClusterSecret {
    /// Never prints the secret itself: configurations are logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ClusterSecret({} accepted, redacted)",
            self.accepted.len()
        )
    }
}

impl ClusterSecret {
    /// Checks the secrets (surrounding whitespace is ignored) and keeps them.
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Result<ClusterSecret, SecretError> {
        let mut accepted = Vec::with_capacity(secrets.len());
        for secret in secrets {
            accepted.push(check_secret(secret.as_ref().trim())?.as_bytes().to_vec());
        }
        let first = secrets.first().ok_or(SecretError::Blank)?.as_ref().trim();
        let sent = AsciiMetadataValue::try_from(first).map_err(|_| SecretError::BadCharacter)?;
        Ok(ClusterSecret {
            sent,
            accepted: Arc::new(accepted),
        })
    }

    /// Adds the secret to an outgoing peer call.
    pub fn stamp<T>(&self, request: &mut Request<T>) {
        request
            .metadata_mut()
            .insert(SECRET_METADATA, self.sent.clone());
    }

    /// Whether `presented` is one of the accepted secrets. Every candidate is compared in
    /// constant time, so timing tells nothing about how close a guess came.
    fn accepts(&self, presented: &[u8]) -> bool {
        self.accepted.iter().fold(false, |hit, secret| {
            hit | constant_time_eq(secret, presented)
        })
    }
}

fn check_secret(secret: &str) -> Result<&str, SecretError> {
    if secret.is_empty() {
        return Err(SecretError::Blank);
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SecretError::BadCharacter);
    }
    if secret.len() < MIN_SECRET_LEN {
        return Err(SecretError::TooShort(secret.len()));
    }
    Ok(secret)
}

/// Compares two byte strings in time that depends on their lengths only (which are not
/// secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// What an incoming peer call must present. The default demands nothing: only for a node
/// started with `--insecure-no-peer-auth`, and for in-process test clusters.
#[derive(Clone, Debug, Default)]
pub struct PeerAuth {
    /// A client certificate the TLS layer verified against the cluster CA (mutual TLS). API
    /// clients connect without one and must not reach the peer protocol.
    pub require_certificate: bool,
    /// The cluster secret, in `x-belfry-cluster-secret`.
    pub secret: Option<ClusterSecret>,
}

impl tonic::service::Interceptor for PeerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if self.require_certificate && request.peer_certs().is_none_or(|certs| certs.is_empty()) {
            return Err(Status::permission_denied(
                "peer calls need a certificate signed by the cluster CA",
            ));
        }
        if let Some(secret) = &self.secret {
            let presented = request
                .metadata()
                .get(SECRET_METADATA)
                .ok_or_else(|| Status::unauthenticated("peer calls need the cluster secret"))?;
            if !secret.accepts(presented.as_bytes()) {
                return Err(Status::unauthenticated("wrong cluster secret"));
            }
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use tonic::service::Interceptor;
    use tonic::Code;

    use super::*;

    const GOOD: &str = "0123456789abcdef0123";

    fn call(auth: &mut PeerAuth, secret: Option<&str>) -> Result<(), Code> {
        let mut request = Request::new(());
        if let Some(s) = secret {
            request
                .metadata_mut()
                .insert(SECRET_METADATA, s.parse().unwrap());
        }
        auth.call(request).map(|_| ()).map_err(|s| s.code())
    }

    #[test]
    fn blank_short_or_odd_secrets_are_refused() {
        assert_eq!(ClusterSecret::new(&[""]).unwrap_err(), SecretError::Blank);
        assert_eq!(
            ClusterSecret::new(&[" \t "]).unwrap_err(),
            SecretError::Blank
        );
        assert_eq!(
            ClusterSecret::new::<&str>(&[]).unwrap_err(),
            SecretError::Blank
        );
        assert_eq!(
            ClusterSecret::new(&["short"]).unwrap_err(),
            SecretError::TooShort(5)
        );
        assert_eq!(
            ClusterSecret::new(&["0123456789 abcdef0123"]).unwrap_err(),
            SecretError::BadCharacter
        );
        assert_eq!(
            ClusterSecret::new(&["0123456789abcdéf0123"]).unwrap_err(),
            SecretError::BadCharacter
        );
        assert!(ClusterSecret::new(&[format!(" {GOOD}\n")]).is_ok());
    }

    #[test]
    fn only_an_accepted_secret_gets_through() {
        let secret = ClusterSecret::new(&[GOOD, "fedcba9876543210fedc"]).unwrap();
        let mut auth = PeerAuth {
            require_certificate: false,
            secret: Some(secret.clone()),
        };
        assert_eq!(call(&mut auth, Some(GOOD)), Ok(()));
        assert_eq!(call(&mut auth, Some("fedcba9876543210fedc")), Ok(()));
        assert_eq!(call(&mut auth, None), Err(Code::Unauthenticated));
        assert_eq!(call(&mut auth, Some("")), Err(Code::Unauthenticated));
        assert_eq!(
            call(&mut auth, Some("0123456789abcdef012")),
            Err(Code::Unauthenticated)
        );
        // What a node sends is what its peers accept.
        let mut sent = Request::new(());
        secret.stamp(&mut sent);
        assert_eq!(auth.call(sent).map(|_| ()).map_err(|s| s.code()), Ok(()));
        // Without a secret or TLS nothing is demanded (--insecure-no-peer-auth).
        assert_eq!(call(&mut PeerAuth::default(), None), Ok(()));
    }

    #[test]
    fn mutual_tls_demands_a_certificate() {
        let mut auth = PeerAuth {
            require_certificate: true,
            secret: None,
        };
        assert_eq!(call(&mut auth, Some(GOOD)), Err(Code::PermissionDenied));
    }

    #[test]
    fn the_secret_never_appears_in_debug_output() {
        let secret = ClusterSecret::new(&[GOOD]).unwrap();
        assert!(!format!("{secret:?}").contains(GOOD));
    }
}
