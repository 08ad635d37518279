//! Console sessions: a random session id in the `belfry_session` cookie mapped, on this node, to
//! the role its token carried; CSRF tokens derived from the session id (or, before login, from
//! a pre-session cookie) with an HMAC under a key this node draws at start.
//!
//! Sessions live on the node that created them (the console's origin is one node, so a browser
//! keeps talking to it); a node that restarts forgets them and the user logs in again. No
//! token is kept in a cookie or in the map, only its role.
//!
//! Invariant: the map holds at most `MAX_SESSIONS` sessions, none past its expiry (they are
//! dropped when met and when room is needed); ids are 256 random bits from the OS; tokens are
//! compared in constant time. It must not decide what a role may do (that is `api::auth`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::api::auth::Role;

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "belfry_session";
/// The cookie the login form's CSRF token is tied to.
pub(crate) const PRESESSION_COOKIE: &str = "belfry_presession";
/// The most sessions a node keeps; the one closest to expiry makes room for a new one.
const MAX_SESSIONS: usize = 10_000;
/// How long a session lasts after login.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Why a random value could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed")]
pub(crate) struct RandomError;

struct Session {
    role: Role,
    expires: Instant,
    /// A message for the next page (an action's outcome): (is an error, text).
    flash: Option<(bool, String)>,
}

/// This node's sessions and CSRF key.
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    key: hmac::Key,
    rng: SystemRandom,
}

impl Sessions {
    pub(crate) fn new() -> Result<Sessions, RandomError> {
        let rng = SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| RandomError)?;
        Ok(Sessions {
            map: Mutex::new(HashMap::new()),
            key,
            rng,
        })
    }

    /// 256 random bits, hex.
    pub(crate) fn random_id(&self) -> Result<String, RandomError> {
        let mut bytes = [0u8; 32];
        self.rng.fill(&mut bytes).map_err(|_| RandomError)?;
        Ok(hex(&bytes))
    }

    /// A new session holding `role`; its id.
    pub(crate) fn create(&self, role: Role) -> Result<String, RandomError> {
        let id = self.random_id()?;
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires > now);
        }
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Session {
                role,
                expires: now + SESSION_TTL,
                flash: None,
            },
        );
        Ok(id)
    }

    /// The role of a live session.
    pub(crate) fn role(&self, id: &str) -> Option<Role> {
        let mut map = self.lock();
        let session = map.get(id)?;
        if session.expires <= Instant::now() {
            map.remove(id);
            return None;
        }
        Some(session.role)
    }

    /// Keeps a message for the session's next page.
    pub(crate) fn set_flash(&self, id: &str, error: bool, text: String) {
        if let Some(session) = self.lock().get_mut(id) {
            session.flash = Some((error, text));
        }
    }

    /// The message kept for this page, once.
    pub(crate) fn take_flash(&self, id: &str) -> Option<(bool, String)> {
        self.lock().get_mut(id).and_then(|s| s.flash.take())
    }

    pub(crate) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The CSRF token of a session (or of a pre-session, with `purpose` "login").
    pub(crate) fn csrf(&self, purpose: &str, id: &str) -> String {
        let tag = hmac::sign(&self.key, format!("{purpose}\n{id}").as_bytes());
        hex(tag.as_ref())
    }

    /// Whether `given` is the CSRF token of `id` (constant time).
    pub(crate) fn csrf_ok(&self, purpose: &str, id: &str, given: &str) -> bool {
        let expected = self.csrf(purpose, id);
        crate::raft::peer_auth::constant_time_eq(expected.as_bytes(), given.as_bytes())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock cannot leave the map half-changed in a way that
        // matters: every change is one insert or remove.
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of cookie `name` in a `Cookie` header.
pub(crate) fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, and Secure over TLS.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_carry_roles_and_csrf_is_tied_to_the_id() {
        let sessions = Sessions::new().unwrap();
        let a = sessions.create(Role::Admin).unwrap();
        let r = sessions.create(Role::ReadOnly).unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, r);
        assert_eq!(sessions.role(&a), Some(Role::Admin));
        assert_eq!(sessions.role(&r), Some(Role::ReadOnly));
        assert_eq!(sessions.role("nope"), None);
        let token = sessions.csrf("session", &a);
        assert!(sessions.csrf_ok("session", &a, &token));
        assert!(!sessions.csrf_ok("session", &r, &token));
        assert!(!sessions.csrf_ok("login", &a, &token));
        assert!(!sessions.csrf_ok("session", &a, ""));
        sessions.remove(&a);
        assert_eq!(sessions.role(&a), None);
    }

    #[test]
    fn the_map_stays_bounded() {
        let sessions = Sessions::new().unwrap();
        for _ in 0..MAX_SESSIONS + 5 {
            sessions.create(Role::ReadOnly).unwrap();
        }
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
    }

    #[test]
    fn cookies_are_read_and_written() {
        assert_eq!(
            cookie("a=1; belfry_session=abc; b=2", SESSION_COOKIE),
            Some("abc")
        );
        assert_eq!(cookie("xbelfry_session=abc", SESSION_COOKIE), None);
        let set = set_cookie(SESSION_COOKIE, "v", SESSION_TTL, true);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(set.ends_with("; Secure"));
        assert!(!set_cookie(SESSION_COOKIE, "v", SESSION_TTL, false).contains("Secure"));
    }
}
