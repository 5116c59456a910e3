//! OAuth 2.0 refresh-token grant against Intuit's token endpoint, done the way Intuit asks
//! (Intuit's OAuth 2.0 docs: access tokens live an hour, refresh tokens rotate): refresh ahead of expiry, refresh once on a 401, keep every rotated
//! refresh token, and never let two refreshes race. Tokens never reach a log line or an
//! error message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::credentials::Credentials;
use crate::error::Error;
use crate::token_store::{FileTokenStore, SavedTokens};

/// Refresh tokens closer than this to their rolling expiry trigger a warning on each run.
const EXPIRY_WARNING: chrono::Duration = chrono::Duration::days(14);

/// Told about every new refresh token value, e.g. to write it back to Mage Secrets.
pub type RotationHook = Arc<dyn Fn(&RotatedToken) -> Result<(), String> + Send + Sync>;

pub struct RotatedToken {
    pub realm_id: String,
    pub refresh_token: SecretString,
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
}

/// An access token and the refresh that produced it (so a 401 on an old token does not
/// trigger a second refresh when another task already replaced it).
#[derive(Clone)]
pub struct AccessToken {
    value: SecretString,
    fresh_until: Instant,
    generation: u64,
}

impl AccessToken {
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.value.expose_secret())
    }

    fn is_fresh(&self) -> bool {
        Instant::now() < self.fresh_until
    }
}

struct TokenState {
    access: Option<AccessToken>,
    refresh: SecretString,
    generation: u64,
}

pub struct TokenManager {
    creds: Credentials,
    http: Arc<crate::http::Http>,
    store: Option<FileTokenStore>,
    on_rotate: Option<RotationHook>,
    state: Mutex<TokenState>,
    /// Calls made to the token endpoint (each attempt).
    requests: std::sync::atomic::AtomicU64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: String,
    #[serde(deserialize_with = "number_or_string")]
    expires_in: u64,
    #[serde(default, deserialize_with = "opt_number_or_string")]
    x_refresh_token_expires_in: Option<u64>,
    #[serde(default, deserialize_with = "opt_number_or_string")]
    x_refresh_token_hard_expires_in: Option<u64>,
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    opt_number_or_string(d)?.ok_or_else(|| serde::de::Error::custom("missing number"))
}

/// Intuit sends numbers; one SDK was seen parsing `"3600"`. Accept both.
fn opt_number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => Ok(n.as_u64()),
        serde_json::Value::String(s) => Ok(s.trim().parse().ok()),
        _ => Ok(None),
    }
}

enum ExchangeError {
    InvalidGrant,
    Fatal(Error),
}

/// Refresh a little before expiry: 5 minutes for Intuit's hour-long tokens, a quarter of
/// the lifetime for the short ones the emulator hands out in tests.
fn refresh_margin(expires_in: u64) -> Duration {
    Duration::from_secs(300).min(Duration::from_secs_f64(expires_in as f64 / 4.0))
}

impl TokenManager {
    pub fn new(creds: Credentials, http: Arc<crate::http::Http>, store: Option<FileTokenStore>, on_rotate: Option<RotationHook>) -> Self {
        let refresh = creds.refresh_token.clone();
        TokenManager {
            creds,
            http,
            store,
            on_rotate,
            state: Mutex::new(TokenState { access: None, refresh, generation: 0 }),
            requests: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A usable access token, refreshing first if the current one is about to expire.
    pub async fn access_token(&self) -> Result<AccessToken, Error> {
        let mut state = self.state.lock().await;
        if let Some(token) = state.access.as_ref().filter(|t| t.is_fresh()) {
            return Ok(token.clone());
        }
        self.refresh_locked(&mut state, None).await
    }

    /// Called after a 401 with the token that was rejected: refreshes unless another task
    /// already did.
    pub async fn after_unauthorized(&self, rejected: &AccessToken) -> Result<AccessToken, Error> {
        let mut state = self.state.lock().await;
        if let Some(token) = state.access.as_ref().filter(|t| t.generation != rejected.generation && t.is_fresh()) {
            return Ok(token.clone());
        }
        state.access = None;
        self.refresh_locked(&mut state, Some(rejected)).await
    }

    async fn refresh_locked(&self, state: &mut TokenState, rejected: Option<&AccessToken>) -> Result<AccessToken, Error> {
        let guard = match &self.store {
            Some(store) => {
                let store = store.clone();
                Some(
                    tokio::task::spawn_blocking(move || store.lock_blocking())
                        .await
                        .map_err(|e| Error::TokenStore(format!("token store lock task failed: {e}")))??,
                )
            }
            None => None,
        };
        // Tokens of another realm, app or token endpoint are not ours: an access token issued
        // elsewhere only earns a 401, and a refresh token must not be sent to another server.
        let endpoint = self.creds.token_endpoint();
        let saved = match &self.store {
            Some(store) => store
                .load()?
                .filter(|s| s.realm_id == self.creds.realm_id && s.client_id == self.creds.client_id && s.token_url.as_ref().is_none_or(|u| *u == endpoint)),
            None => None,
        };

        // Another process may have refreshed while we waited for the lock: use its token.
        if let Some(saved) = &saved {
            if let (Some(access), Some(expires_at)) = (&saved.access_token, saved.access_token_expires_at) {
                let left = (expires_at - Utc::now()).to_std().unwrap_or_default();
                let rejected_value = rejected.map(|r| r.value.expose_secret().to_string());
                if left > Duration::from_secs(60) && rejected_value.as_deref() != Some(access.as_str()) {
                    state.generation += 1;
                    state.refresh = SecretString::from(saved.refresh_token.clone());
                    let token = AccessToken {
                        value: SecretString::from(access.clone()),
                        fresh_until: Instant::now() + left.saturating_sub(refresh_margin(left.as_secs())),
                        generation: state.generation,
                    };
                    state.access = Some(token.clone());
                    return Ok(token);
                }
            }
        }

        // Newest first: the store (rotated by any process), this process's, then the one
        // the user configured (which wins again if they re-authorised since).
        let mut candidates: Vec<SecretString> = Vec::new();
        for c in saved.iter().map(|s| SecretString::from(s.refresh_token.clone())).chain([state.refresh.clone(), self.creds.refresh_token.clone()]) {
            if !candidates.iter().any(|k| k.expose_secret() == c.expose_secret()) {
                candidates.push(c);
            }
        }

        // Intuit may rotate the refresh token: room to save its successor is set aside before
        // the current one is spent (a full disk must not cost the company its authorisation).
        if let Some(store) = &self.store {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.reserve()).await.map_err(|e| Error::TokenStore(format!("token store task failed: {e}")))??;
        }
        let mut outcome = None;
        for (i, candidate) in candidates.iter().enumerate() {
            match self.exchange(candidate).await {
                Ok(resp) => {
                    outcome = Some((candidate.clone(), resp));
                    break;
                }
                Err(ExchangeError::InvalidGrant) => {
                    tracing::warn!(target: "qbo_rs", "refresh token {} of {} rejected (invalid_grant)", i + 1, candidates.len());
                }
                Err(ExchangeError::Fatal(e)) => return Err(e),
            }
        }
        let Some((used, resp)) = outcome else {
            return Err(Error::Auth {
                message: "Intuit rejected the refresh token (invalid_grant): it was rotated away, revoked, \
                          or unused for 100 days. Get a new one (Intuit OAuth Playground) and update the \
                          qb_refresh_token secret / QBO_REFRESH_TOKEN"
                    .into(),
                intuit_tid: None,
            });
        };

        let now = Utc::now();
        let rotated = resp.refresh_token != used.expose_secret();
        let refresh_expires_at = resp.x_refresh_token_expires_in.map(|s| now + chrono::Duration::seconds(s as i64));
        let hard_expires_at = resp.x_refresh_token_hard_expires_in.map(|s| now + chrono::Duration::seconds(s as i64));
        let access_expires_at = now + chrono::Duration::seconds(resp.expires_in as i64);

        // The new token lives in memory first, whatever the store does next.
        state.generation += 1;
        state.refresh = SecretString::from(resp.refresh_token.clone());
        let saved = match &self.store {
            None => Ok(()),
            Some(store) => store.save(&SavedTokens {
                realm_id: self.creds.realm_id.clone(),
                client_id: self.creds.client_id.clone(),
                token_url: Some(self.creds.token_endpoint()),
                refresh_token: resp.refresh_token.clone(),
                refresh_token_expires_at: refresh_expires_at,
                refresh_token_hard_expires_at: hard_expires_at,
                access_token: Some(resp.access_token.clone()),
                access_token_expires_at: Some(access_expires_at),
                updated_at: now,
            }),
        };
        drop(guard);

        let token = AccessToken {
            value: SecretString::from(resp.access_token),
            fresh_until: Instant::now() + Duration::from_secs(resp.expires_in).saturating_sub(refresh_margin(resp.expires_in)),
            generation: state.generation,
        };
        state.access = Some(token.clone());
        tracing::info!(target: "qbo_rs", "access token refreshed for realm {} (valid {} s)", self.creds.realm_id, resp.expires_in);

        if rotated {
            let hooked = if self.on_rotate.is_some() { "handed to the rotation hook and " } else { "" };
            match (&self.store, &saved) {
                (Some(store), Ok(())) => tracing::info!(target: "qbo_rs", "Intuit rotated the refresh token; saved to {}", store.path().display()),
                (Some(store), Err(e)) => tracing::error!(target: "qbo_rs",
                    "Intuit rotated the refresh token but it could not be saved to {} ({e}); it was {hooked}kept by this process, \
                     which goes on: fix the store (free space, permissions) before this process ends, or the company must be \
                     re-authorised", store.path().display()),
                (None, _) => {
                    tracing::warn!(target: "qbo_rs", "Intuit rotated the refresh token and no token store is configured: persist it through the rotation hook or it is lost")
                }
            }
            if let Some(hook) = &self.on_rotate {
                let hook = Arc::clone(hook);
                let rotated =
                    RotatedToken { realm_id: self.creds.realm_id.clone(), refresh_token: state.refresh.clone(), refresh_token_expires_at: refresh_expires_at };
                let result = tokio::task::spawn_blocking(move || hook(&rotated)).await;
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(msg)) => tracing::error!(target: "qbo_rs", "refresh-token rotation hook failed: {msg}"),
                    Err(e) => tracing::error!(target: "qbo_rs", "refresh-token rotation hook panicked: {e}"),
                }
            }
        }
        for (what, at) in [("rolling", refresh_expires_at), ("hard (5-year)", hard_expires_at)] {
            if let Some(at) = at.filter(|at| *at - now < EXPIRY_WARNING) {
                tracing::warn!(target: "qbo_rs", "the refresh token's {what} expiry is {}: re-authorise the app before then", at.format("%Y-%m-%d"));
            }
        }
        Ok(token)
    }

    /// Calls made to the token endpoint so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn exchange(&self, refresh_token: &SecretString) -> Result<TokenResponse, ExchangeError> {
        let url = self.creds.token_endpoint();
        let mut last_error = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let http = self.http.client().map_err(ExchangeError::Fatal)?;
            let sent = http
                .post(&url)
                .basic_auth(&self.creds.client_id, Some(self.creds.client_secret.expose_secret()))
                .header(reqwest::header::ACCEPT, "application/json")
                .header("x-include-refresh-token-hard-expires-in", "true")
                .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose_secret())])
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    last_error = format!("cannot reach the token endpoint {url}: {}", without_url(&e));
                    continue;
                }
            };
            let status = resp.status();
            let tid = crate::http::intuit_tid(resp.headers());
            let body = resp.bytes().await.unwrap_or_default();
            if status.is_success() {
                return serde_json::from_slice(&body)
                    .map_err(|e| ExchangeError::Fatal(Error::Decode(format!("token endpoint answered 200 with an unexpected body: {e}"))));
            }
            let error_code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_default();
            if error_code == "invalid_grant" {
                return Err(ExchangeError::InvalidGrant);
            }
            if status.as_u16() == 401 || error_code == "invalid_client" {
                return Err(ExchangeError::Fatal(Error::Auth {
                    message: "Intuit rejected the client id/secret (invalid_client): check qb_client_id and \
                              qb_client_secret, and that they belong to the same environment (sandbox or production) \
                              as the refresh token"
                        .into(),
                    intuit_tid: tid,
                }));
            }
            if status.is_server_error() || status.as_u16() == 429 {
                last_error = format!("token endpoint answered HTTP {status}");
                continue;
            }
            return Err(ExchangeError::Fatal(Error::Auth { message: format!("token endpoint answered HTTP {status} ({error_code})"), intuit_tid: tid }));
        }
        Err(ExchangeError::Fatal(Error::Auth { message: last_error, intuit_tid: None }))
    }
}

/// reqwest errors print the URL; ours has no secrets in it, but keep messages short.
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(&format!(" ({url})"), "");
    }
    msg
}
