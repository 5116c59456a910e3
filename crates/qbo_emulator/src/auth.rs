//! The Intuit OAuth 2.0 refresh-token grant and access-token checks.
//!
//! One token family per emulator (one realm, one app). Rules, as Intuit's OAuth 2.0 docs give them:
//! * a refresh with the current refresh token returns a new access token; the refresh-token
//!   *value* rotates once it is at least `refresh_rotate_after_secs` old (Intuit: ~24 h), else the
//!   same value comes back with a declining `x_refresh_token_expires_in`;
//! * after a rotation the previous value keeps working for `old_refresh_grace_secs` (default 0:
//!   dies at once), then gives `invalid_grant`;
//! * the rolling lifetime is 101 days (8726400 s) from issue; the hard lifetime 5 years from the
//!   family's start (reported only on request);
//! * access tokens are opaque ~800-char strings valid `access_token_ttl_secs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::Knobs;
use crate::rng::Rng;

/// Rolling refresh-token lifetime reported when freshly issued (101 days).
pub const REFRESH_ROLLING_SECS: u64 = 8_726_400;
/// Hard refresh-token lifetime (5 years).
pub const REFRESH_HARD_SECS: u64 = 5 * 365 * 86_400;

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const JWE_HEADER: &str = "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0";

/// Why an access token was refused (the 401 `detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BearerError {
    Missing,
    Malformed,
    Invalid,
    Expired,
}

impl BearerError {
    pub(crate) fn detail(self) -> &'static str {
        match self {
            BearerError::Missing => "Authorization header missing or not a Bearer token",
            BearerError::Malformed => "Malformed bearer token: too short or too long",
            BearerError::Invalid => "Token invalid: the access token is unknown",
            BearerError::Expired => "Token expired: the access token has expired",
        }
    }
}

/// Outcome of a refresh.
#[derive(Debug)]
pub(crate) struct Refreshed {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    pub refresh_expires_in: u64,
    pub hard_expires_in: u64,
    pub rotated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrantError {
    InvalidGrant,
}

pub(crate) struct Auth {
    pub client_id: String,
    pub client_secret: String,
    current: String,
    issued: Instant,
    family_start: Instant,
    /// Previous refresh tokens and the instant they die.
    previous: Vec<(String, Instant)>,
    /// Access token -> expiry.
    access: HashMap<String, Instant>,
    rng: Rng,
}

impl Auth {
    pub(crate) fn new(seed: u64, client_id: String, client_secret: String, refresh: String) -> Auth {
        let now = Instant::now();
        Auth {
            client_id,
            client_secret,
            current: refresh,
            issued: now,
            family_start: now,
            previous: Vec::new(),
            access: HashMap::new(),
            rng: Rng::derive(seed, 0xA0A0, 1),
        }
    }

    /// A refresh-token value in Intuit's style (`AB11` + ~46 chars).
    pub(crate) fn new_refresh_value(rng: &mut Rng) -> String {
        format!("AB11{}{}", 7_000_000_000u64 + rng.below(1_000_000_000), rng.chars(ALNUM, 36))
    }

    fn new_access_value(&mut self) -> String {
        let r = &mut self.rng;
        format!("{JWE_HEADER}..{}.{}.{}", r.chars(B64URL, 22), r.chars(B64URL, 704), r.chars(B64URL, 22))
    }

    pub(crate) fn current_refresh(&self) -> &str {
        &self.current
    }

    /// Checks client credentials.
    pub(crate) fn client_ok(&self, id: &str, secret: &str) -> bool {
        id == self.client_id && secret == self.client_secret
    }

    /// Issues an access token directly (for tests and tools that skip the token endpoint).
    pub(crate) fn issue_access(&mut self, ttl: u64) -> String {
        let tok = self.new_access_value();
        let now = Instant::now();
        if self.access.len() > 10_000 {
            self.access.retain(|_, exp| *exp > now);
        }
        self.access.insert(tok.clone(), now + Duration::from_secs(ttl));
        tok
    }

    /// The refresh-token grant.
    pub(crate) fn refresh(&mut self, token: &str, knobs: &Knobs) -> Result<Refreshed, GrantError> {
        let now = Instant::now();
        self.previous.retain(|(_, dies)| *dies > now);
        let mut rotated = false;
        if token == self.current {
            let age = now.duration_since(self.issued).as_secs();
            if age >= REFRESH_ROLLING_SECS {
                return Err(GrantError::InvalidGrant);
            }
            if age >= knobs.refresh_rotate_after_secs {
                let old = std::mem::replace(&mut self.current, Auth::new_refresh_value(&mut self.rng));
                let dies = now + Duration::from_secs(knobs.old_refresh_grace_secs);
                if knobs.old_refresh_grace_secs > 0 {
                    self.previous.push((old, dies));
                }
                self.issued = now;
                rotated = true;
            }
        } else if !self.previous.iter().any(|(t, _)| t == token) {
            return Err(GrantError::InvalidGrant);
        }
        let access_token = self.issue_access(knobs.access_token_ttl_secs);
        Ok(Refreshed {
            access_token,
            refresh_token: self.current.clone(),
            expires_in: knobs.access_token_ttl_secs,
            refresh_expires_in: REFRESH_ROLLING_SECS.saturating_sub(now.duration_since(self.issued).as_secs()),
            hard_expires_in: REFRESH_HARD_SECS.saturating_sub(now.duration_since(self.family_start).as_secs()),
            rotated,
        })
    }

    /// Validates an `Authorization` header value.
    pub(crate) fn check_bearer(&self, header: Option<&str>) -> Result<(), BearerError> {
        let h = header.ok_or(BearerError::Missing)?.trim();
        let (scheme, tok) = h.split_once(' ').ok_or(BearerError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(BearerError::Missing);
        }
        let tok = tok.trim();
        if tok.len() < 20 || tok.len() > 4096 {
            return Err(BearerError::Malformed);
        }
        match self.access.get(tok) {
            None => Err(BearerError::Invalid),
            Some(exp) if *exp <= Instant::now() => Err(BearerError::Expired),
            Some(_) => Ok(()),
        }
    }

    /// Makes every issued access token invalid (the next API call gets 401).
    pub(crate) fn expire_all(&mut self) -> usize {
        let now = Instant::now();
        let n = self.access.values().filter(|e| **e > now).count();
        for e in self.access.values_mut() {
            *e = now;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knobs(rotate: u64, grace: u64) -> Knobs {
        Knobs { refresh_rotate_after_secs: rotate, old_refresh_grace_secs: grace, ..Knobs::default() }
    }

    #[test]
    fn same_value_until_old_then_rotates() {
        let mut a = Auth::new(1, "id".into(), "secret".into(), "AB11first".into());
        let r = a.refresh("AB11first", &knobs(86_400, 0)).unwrap();
        assert_eq!(r.refresh_token, "AB11first");
        assert!(!r.rotated);
        assert!(r.access_token.starts_with("eyJlbmMi") && (700..=1000).contains(&r.access_token.len()));
        assert!(a.check_bearer(Some(&format!("Bearer {}", r.access_token))).is_ok());
        let r2 = a.refresh("AB11first", &knobs(0, 0)).unwrap();
        assert!(r2.rotated);
        assert_ne!(r2.refresh_token, "AB11first");
        assert_eq!(a.refresh("AB11first", &knobs(0, 0)).unwrap_err(), GrantError::InvalidGrant);
        assert!(a.refresh(&r2.refresh_token, &knobs(86_400, 0)).is_ok());
        assert_eq!(a.refresh("nonsense", &knobs(0, 0)).unwrap_err(), GrantError::InvalidGrant);
    }

    #[test]
    fn grace_keeps_the_old_token_alive() {
        let mut a = Auth::new(1, "id".into(), "secret".into(), "AB11first".into());
        let r = a.refresh("AB11first", &knobs(0, 3600)).unwrap();
        assert!(r.rotated);
        let again = a.refresh("AB11first", &knobs(86_400, 3600)).unwrap();
        assert_eq!(again.refresh_token, r.refresh_token, "old token answers with the newest one");
    }

    #[test]
    fn bearer_checks() {
        let mut a = Auth::new(1, "id".into(), "secret".into(), "AB11first".into());
        assert_eq!(a.check_bearer(None), Err(BearerError::Missing));
        assert_eq!(a.check_bearer(Some("Basic abc")), Err(BearerError::Missing));
        assert_eq!(a.check_bearer(Some("Bearer short")), Err(BearerError::Malformed));
        assert_eq!(a.check_bearer(Some("Bearer aaaaaaaaaaaaaaaaaaaaaaaaa")), Err(BearerError::Invalid));
        let t = a.issue_access(3600);
        assert!(a.check_bearer(Some(&format!("Bearer {t}"))).is_ok());
        assert_eq!(a.expire_all(), 1);
        assert_eq!(a.check_bearer(Some(&format!("Bearer {t}"))), Err(BearerError::Expired));
    }
}
