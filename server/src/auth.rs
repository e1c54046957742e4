//! Who is connecting: turns a token (Socket.IO `auth.token`, or an `Authorization` header) into
//! an [`Identity`].
//!
//! Accepted forms (contract section 2):
//! - `Bearer <jwt>` or a bare `<jwt>`, verified with the one algorithm the configuration pins
//!   (HS256 with `JWT_SECRET`, RS256/ES256 with `JWT_PUBLIC_KEY`); the token's own `alg` header
//!   only has to match it. `exp` is required and checked against the caller's clock with a small
//!   leeway (`JWT_LEEWAY_SECS`). With `JWT_AUDIENCE` / `JWT_ISSUER` set, `aud` must include the
//!   audience and `iss` must equal the issuer (both then required). Claims: `sub` (positive id, number or numeric string),
//!   `userType` (`brand` | `influencer`), optional `username`, `firstName`, `lastName`,
//!   `profileImage`.
//! - `<userId>:<userType>` or `Bearer <userId>:<userType>` dev tokens, only when enabled
//!   (`DEV_TOKENS`, on by default only when no JWT key is configured; a warning is logged).

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;

use crate::config::{Config, JwtAlgorithm};
use chatwire_store::{Profile, UserKey, UserType};

/// Longest token accepted, in bytes; longer ones are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Longest profile claim accepted (URLs included), in characters.
pub const MAX_CLAIM_CHARS: usize = 2048;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user `(userType, userId)`.
    pub user: UserKey,
    /// Profile claims from a JWT; `None` for dev tokens and JWTs without profile claims (the store
    /// then keeps the known profile or creates `<userType>_<userId>`).
    pub profile: Option<Profile>,
    /// When the token stops being valid (its `exp` plus the leeway, Unix seconds): a socket
    /// authenticated with it is disconnected then. `None` for dev tokens.
    pub expires_at: Option<u64>,
}

/// Why a token was refused. Every variant means "refuse the connection or request" (Socket.IO
/// CONNECT_ERROR with [`AuthError::message`], or HTTP 401 `unauthorized`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, or an empty one.
    #[error("unauthorized")]
    Missing,
    /// A dev token while dev tokens are off, or a JWT while no JWT key is configured.
    #[error("unauthorized")]
    NotAccepted,
    /// Not a JWT, a bad signature, a different algorithm than configured, or too long.
    #[error("invalid token")]
    Invalid,
    /// `exp` is past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The JWT has no (numeric) `exp`.
    #[error("token has no expiry")]
    MissingExpiry,
    /// `JWT_AUDIENCE` is configured and `aud` is missing or does not include it.
    #[error("invalid token audience")]
    BadAudience,
    /// `JWT_ISSUER` is configured and `iss` is missing or different.
    #[error("invalid token issuer")]
    BadIssuer,
    /// `sub` is missing or not a positive integer.
    #[error("invalid user id")]
    BadSubject,
    /// `userType` is missing or not `brand` / `influencer`.
    #[error("invalid user type")]
    BadUserType,
    /// A profile claim is not a string or is too long.
    #[error("invalid profile claims")]
    BadProfile,
}

impl AuthError {
    /// The text for a CONNECT_ERROR `message` / REST error message.
    pub fn message(&self) -> &'static str {
        match self {
            Self::Missing | Self::NotAccepted => "unauthorized",
            Self::Invalid => "invalid token",
            Self::Expired => "token expired",
            Self::NotYetValid => "token not yet valid",
            Self::MissingExpiry => "token has no expiry",
            Self::BadAudience => "invalid token audience",
            Self::BadIssuer => "invalid token issuer",
            Self::BadSubject => "invalid user id",
            Self::BadUserType => "invalid user type",
            Self::BadProfile => "invalid profile claims",
        }
    }

    /// The contract error code (always `unauthorized`; HTTP 401).
    pub fn code(&self) -> &'static str {
        "unauthorized"
    }
}

/// Configuration mistakes found at start; the process should exit with the message.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// HS256 chosen without `JWT_SECRET`.
    #[error("JWT_ALGORITHM=HS256 needs JWT_SECRET")]
    MissingSecret,
    /// RS256/ES256 chosen without `JWT_PUBLIC_KEY`.
    #[error("JWT_ALGORITHM={0:?} needs JWT_PUBLIC_KEY")]
    MissingPublicKey(JwtAlgorithm),
    /// Both a secret and a public key, and no `JWT_ALGORITHM` to say which one to use.
    #[error("both JWT_SECRET and JWT_PUBLIC_KEY are set: set JWT_ALGORITHM to pick one")]
    Ambiguous,
    /// `JWT_PUBLIC_KEY` names a file that cannot be read.
    #[error("cannot read JWT_PUBLIC_KEY file {path}: {error}")]
    KeyFile {
        /// The path as configured.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The key is not a PEM public key of the configured kind.
    #[error("JWT_PUBLIC_KEY is not a valid {0:?} PEM public key")]
    BadKey(JwtAlgorithm),
}

/// Verifies tokens; built once at start, shared by every shard (`Arc<Authenticator>`).
pub struct Authenticator {
    /// The JWT key and validation rules; `None` when no JWT key is configured.
    jwt: Option<(DecodingKey, Validation)>,
    /// Whether `<userId>:<userType>` tokens are accepted.
    dev_tokens: bool,
    /// Leeway on `exp` / `nbf`, in seconds.
    leeway: u64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "jwt_algorithm",
                &self.jwt.as_ref().map(|(_, v)| &v.algorithms),
            )
            .field("dev_tokens", &self.dev_tokens)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds the verifier from `JWT_*` and `DEV_TOKENS`; logs a warning when dev tokens are on.
    pub fn from_config(config: &Config) -> Result<Self, AuthConfigError> {
        let secret = config.jwt_secret.as_deref().filter(|s| !s.is_empty());
        let public = config.jwt_public_key.as_deref().filter(|s| !s.is_empty());
        let jwt = match (config.jwt_algorithm, secret, public) {
            (None, None, None) => None,
            (None, Some(_), Some(_)) => return Err(AuthConfigError::Ambiguous),
            (None | Some(JwtAlgorithm::HS256), Some(secret), _) => Some((
                DecodingKey::from_secret(secret.as_bytes()),
                Algorithm::HS256,
            )),
            (Some(JwtAlgorithm::HS256), None, _) => return Err(AuthConfigError::MissingSecret),
            (Some(alg), _, None) => return Err(AuthConfigError::MissingPublicKey(alg)),
            (alg, _, Some(public)) => Some(public_key(alg, public)?),
        };
        if let Some(secret) = secret
            && secret.len() < 32
            && matches!(jwt, Some((_, Algorithm::HS256)))
        {
            tracing::warn!("JWT_SECRET is shorter than 32 bytes; use a longer random secret");
        }
        let dev_tokens = config.dev_tokens_enabled();
        if dev_tokens {
            tracing::warn!(
                "dev tokens are ON: anyone can connect as any user with `<userId>:<userType>`; \
                 configure JWT_SECRET or JWT_PUBLIC_KEY (or DEV_TOKENS=false) in production"
            );
        }
        let leeway = config.jwt_leeway_secs;
        let claims = ExpectedClaims {
            audience: config.jwt_audience.as_deref().filter(|s| !s.is_empty()),
            issuer: config.jwt_issuer.as_deref().filter(|s| !s.is_empty()),
        };
        Ok(Self {
            jwt: jwt.map(|(key, alg)| (key, validation(alg, leeway, claims))),
            dev_tokens,
            leeway,
        })
    }

    /// Whether dev tokens are accepted.
    pub fn dev_tokens_enabled(&self) -> bool {
        self.dev_tokens
    }

    /// Verifies `token` at `now_unix_secs` (seconds since the Unix epoch).
    pub fn authenticate(&self, token: &str, now_unix_secs: u64) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid);
        }
        let token = strip_bearer(token.trim_start()).trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if let Some((id, user_type)) = token.split_once(':') {
            if !self.dev_tokens {
                return Err(AuthError::NotAccepted);
            }
            let id = parse_positive_id(id).ok_or(AuthError::BadSubject)?;
            let user_type = UserType::parse(user_type).ok_or(AuthError::BadUserType)?;
            return Ok(Identity {
                user: UserKey::new(user_type, id),
                profile: None,
                expires_at: None,
            });
        }
        let Some((key, validation)) = &self.jwt else {
            return Err(AuthError::NotAccepted);
        };
        let claims = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|e| match e.kind() {
                ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::BadAudience,
                ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::BadIssuer,
                ErrorKind::MissingRequiredClaim(_) => AuthError::MissingExpiry,
                ErrorKind::InvalidAudience => AuthError::BadAudience,
                ErrorKind::InvalidIssuer => AuthError::BadIssuer,
                _ => AuthError::Invalid,
            })?
            .claims;
        let exp = claims.exp.ok_or(AuthError::MissingExpiry)?;
        if exp.saturating_add(self.leeway) < now_unix_secs {
            return Err(AuthError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now_unix_secs.saturating_add(self.leeway))
        {
            return Err(AuthError::NotYetValid);
        }
        let mut identity = claims.into_identity()?;
        identity.expires_at = Some(exp.saturating_add(self.leeway));
        Ok(identity)
    }
}

/// The `aud` / `iss` values a JWT must carry, when configured.
#[derive(Debug, Clone, Copy)]
struct ExpectedClaims<'a> {
    /// `JWT_AUDIENCE`.
    audience: Option<&'a str>,
    /// `JWT_ISSUER`.
    issuer: Option<&'a str>,
}

/// Validation rules for the pinned algorithm: signature, `exp` presence and the configured
/// `aud` / `iss` here; time checks are done by [`Authenticator::authenticate`] against the
/// caller's clock.
fn validation(alg: Algorithm, leeway: u64, expected: ExpectedClaims<'_>) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = leeway;
    v.validate_exp = false;
    v.validate_nbf = false;
    let mut required = vec!["exp"];
    match expected.audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            required.push("aud");
        }
        None => v.validate_aud = false,
    }
    if let Some(iss) = expected.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    v.set_required_spec_claims(&required);
    v
}

/// Loads `JWT_PUBLIC_KEY` (inline PEM, possibly with `\n` escapes, or a file path) for `alg`, or
/// for whichever of RSA / EC the key is when no algorithm is configured.
fn public_key(
    alg: Option<JwtAlgorithm>,
    value: &str,
) -> Result<(DecodingKey, Algorithm), AuthConfigError> {
    let pem = if value.trim_start().starts_with("-----BEGIN") {
        value.replace("\\n", "\n")
    } else {
        std::fs::read_to_string(Path::new(value)).map_err(|error| AuthConfigError::KeyFile {
            path: value.to_owned(),
            error,
        })?
    };
    let rsa = || DecodingKey::from_rsa_pem(pem.as_bytes()).ok();
    let ec = || DecodingKey::from_ec_pem(pem.as_bytes()).ok();
    match alg {
        Some(JwtAlgorithm::RS256) => rsa()
            .map(|k| (k, Algorithm::RS256))
            .ok_or(AuthConfigError::BadKey(JwtAlgorithm::RS256)),
        Some(JwtAlgorithm::ES256) => ec()
            .map(|k| (k, Algorithm::ES256))
            .ok_or(AuthConfigError::BadKey(JwtAlgorithm::ES256)),
        Some(JwtAlgorithm::HS256) => Err(AuthConfigError::MissingSecret),
        None => rsa()
            .map(|k| (k, Algorithm::RS256))
            .or_else(|| ec().map(|k| (k, Algorithm::ES256)))
            .ok_or(AuthConfigError::BadKey(JwtAlgorithm::RS256)),
    }
}

/// `Bearer <token>` -> `<token>` (scheme case-insensitive); anything else unchanged.
fn strip_bearer(token: &str) -> &str {
    match (token.get(..7), token.get(7..)) {
        (Some(scheme), Some(rest)) if scheme.eq_ignore_ascii_case("bearer ") => rest.trim_start(),
        _ => token,
    }
}

/// A token's subject id, by the one id rule ([`chatwire_chat::id`]).
fn parse_positive_id(s: &str) -> Option<i64> {
    chatwire_chat::id::parse(s)
}

/// The JWT claims chatwire reads; others are ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    /// The user id: a JSON number or a numeric string.
    sub: Option<serde_json::Value>,
    /// `brand` or `influencer`.
    #[serde(rename = "userType")]
    user_type: Option<serde_json::Value>,
    /// Expiry, seconds since the epoch.
    exp: Option<u64>,
    /// Not-before, seconds since the epoch.
    nbf: Option<u64>,
    /// Display handle.
    username: Option<serde_json::Value>,
    /// Given name.
    #[serde(rename = "firstName")]
    first_name: Option<serde_json::Value>,
    /// Family name.
    #[serde(rename = "lastName")]
    last_name: Option<serde_json::Value>,
    /// Avatar URL.
    #[serde(rename = "profileImage")]
    profile_image: Option<serde_json::Value>,
}

impl Claims {
    /// Checks `sub` / `userType` and collects the profile claims.
    fn into_identity(self) -> Result<Identity, AuthError> {
        let id = match self.sub {
            Some(serde_json::Value::Number(n)) => n.as_i64().filter(|id| *id > 0),
            Some(serde_json::Value::String(s)) => parse_positive_id(&s),
            _ => None,
        }
        .ok_or(AuthError::BadSubject)?;
        let user_type = match &self.user_type {
            Some(serde_json::Value::String(s)) => UserType::parse(s),
            _ => None,
        }
        .ok_or(AuthError::BadUserType)?;
        let user = UserKey::new(user_type, id);
        let username = profile_claim(self.username)?;
        let first_name = profile_claim(self.first_name)?;
        let last_name = profile_claim(self.last_name)?;
        let profile_image = profile_claim(self.profile_image)?;
        let any = username.is_some()
            || first_name.is_some()
            || last_name.is_some()
            || profile_image.is_some();
        let profile = any.then(|| Profile {
            username: username.unwrap_or_else(|| Profile::default_for(user).username),
            first_name,
            last_name,
            profile_image,
        });
        Ok(Identity {
            user,
            profile,
            expires_at: None,
        })
    }
}

/// An optional string claim: absent, null and "" are `None`; other types or over-long is an error.
fn profile_claim(value: Option<serde_json::Value>) -> Result<Option<String>, AuthError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) if s.chars().count() <= MAX_CLAIM_CHARS => Ok(Some(s)),
        Some(_) => Err(AuthError::BadProfile),
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
