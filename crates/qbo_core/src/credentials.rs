//! The four things Intuit gives you (client id/secret, refresh token, realm id) plus where
//! to send requests. Secrets are `SecretString`: their Debug output is redacted, so a
//! stray `{:?}` can never print them.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::error::Error;

pub const PRODUCTION_API: &str = "https://quickbooks.api.intuit.com";
pub const SANDBOX_API: &str = "https://sandbox-quickbooks.api.intuit.com";
pub const TOKEN_ENDPOINT: &str = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    #[default]
    Sandbox,
    Production,
}

impl std::str::FromStr for Environment {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sandbox" | "" => Ok(Environment::Sandbox),
            "production" | "prod" | "produccion" | "producción" => Ok(Environment::Production),
            other => Err(Error::config(format!("QBO_ENTORNO = {other:?}: expected sandbox or production"))),
        }
    }
}

#[derive(Clone)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
    pub realm_id: String,
    pub environment: Environment,
    /// Overrides the Intuit API host (the emulator, a proxy). No trailing slash needed.
    pub api_base_url: Option<String>,
    /// Overrides Intuit's token endpoint.
    pub token_url: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &redact_id(&self.client_id))
            .field("client_secret", &"***")
            .field("refresh_token", &"***")
            .field("realm_id", &self.realm_id)
            .field("environment", &self.environment)
            .field("api_base_url", &self.api_base_url)
            .field("token_url", &self.token_url)
            .finish()
    }
}

/// Client ids are not secret, but showing four characters is enough to tell apps apart.
pub fn redact_id(id: &str) -> String {
    let shown: String = id.chars().take(4).collect();
    format!("{shown}***")
}

/// A short, stable tag of an endpoint URL for file names: files of one realm on two servers
/// (sandbox and production, two emulators) must never be the same file. FNV-1a, because it is
/// stable across builds and processes (std's hasher is not promised to be).
pub fn endpoint_tag(url: &str) -> String {
    let hash = url.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{:08x}", hash as u32)
}

/// The environment variables credentials are read from, in this order:
/// client id, client secret, refresh token, realm id, environment, API base URL, token URL.
pub const ENV_NAMES: [&str; 7] = ["QBO_CLIENT_ID", "QBO_CLIENT_SECRET", "QBO_REFRESH_TOKEN", "QBO_REALM_ID", "QBO_ENTORNO", "QBO_BASE_URL", "QBO_TOKEN_URL"];

impl Credentials {
    /// Builds credentials from `QBO_*` variables looked up with `get` (the process
    /// environment, or a mapping a caller passes), naming every missing one at once.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let value = |k: &str| get(k).map(|v| v.trim().to_string()).unwrap_or_default();
        let missing: Vec<&str> = ENV_NAMES[..4].iter().copied().filter(|k| value(k).is_empty()).collect();
        if !missing.is_empty() {
            return Err(Error::config(format!("missing environment variable(s): {}", missing.join(", "))));
        }
        let optional = |k: &str| Some(value(k)).filter(|v| !v.is_empty());
        let creds = Credentials {
            client_id: value(ENV_NAMES[0]),
            client_secret: SecretString::from(value(ENV_NAMES[1])),
            refresh_token: SecretString::from(value(ENV_NAMES[2])),
            realm_id: value(ENV_NAMES[3]),
            environment: value(ENV_NAMES[4]).parse()?,
            api_base_url: optional(ENV_NAMES[5]),
            token_url: optional(ENV_NAMES[6]),
        };
        creds.validate()?;
        Ok(creds)
    }

    /// Checks every field before any request: a missing value is named, as is its env var.
    pub fn validate(&self) -> Result<(), Error> {
        let missing = |name: &str, env: &str| Error::config(format!("missing {name}: set the Mage secret qb_{name} or the environment variable {env}"));
        if self.client_id.trim().is_empty() {
            return Err(missing("client_id", "QBO_CLIENT_ID"));
        }
        if self.client_secret.expose_secret().trim().is_empty() {
            return Err(missing("client_secret", "QBO_CLIENT_SECRET"));
        }
        if self.refresh_token.expose_secret().trim().is_empty() {
            return Err(missing("refresh_token", "QBO_REFRESH_TOKEN"));
        }
        if self.realm_id.trim().is_empty() {
            return Err(missing("realm_id", "QBO_REALM_ID"));
        }
        // The realm id goes into the URL path: only letters and digits are safe there.
        if !self.realm_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::config(format!("realm_id {:?} is not a QBO company id (digits only, e.g. 9130357992221046)", self.realm_id)));
        }
        for (name, url) in [("api_base_url", &self.api_base_url), ("token_url", &self.token_url)] {
            if let Some(url) = url {
                // The URL is not echoed: a user:password in it would be a secret.
                let parsed = reqwest::Url::parse(url).map_err(|e| Error::config(format!("{name} is not a URL ({e}): give http(s)://host[:port][/path]")))?;
                if !parsed.username().is_empty() || parsed.password().is_some() {
                    return Err(Error::config(format!(
                        "{name} must not carry a user name or password (user:pass@host): QuickBooks is authorised by the \
                         client id and secret, never by the URL; remove them"
                    )));
                }
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(Error::config(format!("{name} must be http or https (got {}:)", parsed.scheme())));
                }
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(Error::config(format!(
                        "{name} {}://{} must not have a query string or a fragment: give the base URL only",
                        parsed.scheme(),
                        parsed.host_str().unwrap_or_default()
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn api_base(&self) -> String {
        let base = match (&self.api_base_url, self.environment) {
            (Some(url), _) => url.as_str(),
            (None, Environment::Sandbox) => SANDBOX_API,
            (None, Environment::Production) => PRODUCTION_API,
        };
        base.trim_end_matches('/').to_string()
    }

    pub fn token_endpoint(&self) -> String {
        self.token_url.clone().unwrap_or_else(|| TOKEN_ENDPOINT.to_string())
    }

    pub fn query_url(&self) -> String {
        format!("{}/v3/company/{}/query", self.api_base(), self.realm_id)
    }

    pub fn cdc_url(&self) -> String {
        format!("{}/v3/company/{}/cdc", self.api_base(), self.realm_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            client_id: "ABcdefgh".into(),
            client_secret: SecretString::from("s3cr3t-value"),
            refresh_token: SecretString::from("AB11-refresh-value"),
            realm_id: "9130357992221046".into(),
            environment: Environment::Sandbox,
            api_base_url: None,
            token_url: None,
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let shown = format!("{:?}", creds());
        assert!(!shown.contains("s3cr3t-value"));
        assert!(!shown.contains("AB11-refresh-value"));
        assert!(shown.contains("9130357992221046"));
    }

    #[test]
    fn validation_names_the_missing_value() {
        let mut c = creds();
        c.refresh_token = SecretString::from("");
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("QBO_REFRESH_TOKEN"), "{err}");
        let mut c = creds();
        c.realm_id = "123/../x".into();
        assert!(c.validate().is_err());
        assert_eq!(creds().query_url(), "https://sandbox-quickbooks.api.intuit.com/v3/company/9130357992221046/query");
    }
}
