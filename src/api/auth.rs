//! Bearer-token authentication for the API: an `authorization: Bearer <token>` header checked
//! against the configured read-only and admin tokens.
//!
//! Invariant: with tokens configured, a call goes on only with a known token, compared in
//! constant time against every candidate, and carries its role; each handler then demands the
//! role it needs (`require`). It must not load tokens (that is `config`).

use std::sync::Arc;

use tonic::{Request, Status};

use super::error::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
    /// Reads only: get, list, preview, runs, status.
    ReadOnly,
    /// Everything.
    Admin,
}

/// The accepted tokens. Several per role allow rotation.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    pub admin: Vec<String>,
    pub readonly: Vec<String>,
}

impl Tokens {
    pub fn is_empty(&self) -> bool {
        self.admin.is_empty() && self.readonly.is_empty()
    }

    /// The role `token` carries, if it is known.
    pub(crate) fn role_of(&self, token: &str) -> Option<Role> {
        // Every candidate is compared (in constant time), so timing tells nothing.
        let admin = self.admin.iter().fold(false, |hit, t| hit | same(t, token));
        let readonly = self
            .readonly
            .iter()
            .fold(false, |hit, t| hit | same(t, token));
        if admin {
            Some(Role::Admin)
        } else if readonly {
            Some(Role::ReadOnly)
        } else {
            None
        }
    }
}

/// Constant-time comparison of two tokens (their lengths are not secret).
fn same(a: &str, b: &str) -> bool {
    crate::raft::peer_auth::constant_time_eq(a.as_bytes(), b.as_bytes())
}

/// The interceptor: `None` means authentication is off (every caller is an admin).
#[derive(Clone)]
pub struct Authenticator {
    tokens: Option<Arc<Tokens>>,
}

impl Authenticator {
    pub fn new(tokens: Option<Tokens>) -> Self {
        Authenticator {
            tokens: tokens.map(Arc::new),
        }
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let role = match &self.tokens {
            None => Role::Admin,
            Some(tokens) => {
                let header = request
                    .metadata()
                    .get("authorization")
                    .ok_or_else(|| {
                        Status::unauthenticated("missing authorization: Bearer <token>")
                    })?
                    .to_str()
                    .map_err(|_| Status::unauthenticated("malformed authorization header"))?;
                let token = header
                    .strip_prefix("Bearer ")
                    .or_else(|| header.strip_prefix("bearer "))
                    .ok_or_else(|| {
                        Status::unauthenticated("authorization must be `Bearer <token>`")
                    })?;
                tokens
                    .role_of(token.trim())
                    .ok_or_else(|| Status::unauthenticated("unknown token"))?
            }
        };
        request.extensions_mut().insert(role);
        Ok(request)
    }
}

/// Refuses the request unless its caller holds `needed`.
pub(crate) fn require<T>(request: &Request<T>, needed: Role) -> Result<(), ApiError> {
    match request.extensions().get::<Role>() {
        Some(role) if *role >= needed => Ok(()),
        Some(_) => Err(ApiError::PermissionDenied(
            "this token is read-only; the operation needs an admin token".into(),
        )),
        None => Err(ApiError::Unauthenticated("no credentials".into())),
    }
}

#[cfg(test)]
mod tests {
    use tonic::service::Interceptor;

    use super::*;

    fn call(auth: &mut Authenticator, header: Option<&str>) -> Result<Role, Code> {
        let mut request = Request::new(());
        if let Some(h) = header {
            request
                .metadata_mut()
                .insert("authorization", h.parse().unwrap());
        }
        auth.call(request)
            .map(|r| *r.extensions().get::<Role>().unwrap())
            .map_err(|s| s.code())
    }

    use tonic::Code;

    #[test]
    fn tokens_map_to_roles() {
        let mut auth = Authenticator::new(Some(Tokens {
            admin: vec!["adm".into()],
            readonly: vec!["ro1".into(), "ro2".into()],
        }));
        assert_eq!(call(&mut auth, Some("Bearer adm")), Ok(Role::Admin));
        assert_eq!(call(&mut auth, Some("Bearer ro2")), Ok(Role::ReadOnly));
        assert_eq!(
            call(&mut auth, Some("Bearer nope")),
            Err(Code::Unauthenticated)
        );
        assert_eq!(call(&mut auth, Some("adm")), Err(Code::Unauthenticated));
        assert_eq!(call(&mut auth, None), Err(Code::Unauthenticated));
        let mut open = Authenticator::new(None);
        assert_eq!(call(&mut open, None), Ok(Role::Admin));
    }

    #[test]
    fn a_read_only_caller_cannot_write() {
        let mut request = Request::new(());
        request.extensions_mut().insert(Role::ReadOnly);
        assert!(require(&request, Role::ReadOnly).is_ok());
        assert!(matches!(
            require(&request, Role::Admin),
            Err(ApiError::PermissionDenied(_))
        ));
    }
}
