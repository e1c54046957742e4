//! Credentials of simulated users: dev tokens (`<userId>:<userType>`) or HS256 JWTs.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// A simulated user's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct User {
    /// Positive user id.
    pub id: u64,
    /// `true` = `brand`, `false` = `influencer` (users alternate, so 1:1 rooms pair both kinds).
    pub brand: bool,
}

impl User {
    /// The user at `index` (0-based) of a range starting at `first_id`.
    pub fn at(first_id: u64, index: u64) -> Self {
        Self {
            id: first_id + index,
            brand: index.is_multiple_of(2),
        }
    }

    /// The contract's `userType`.
    pub fn kind(self) -> &'static str {
        if self.brand { "brand" } else { "influencer" }
    }
}

/// How users authenticate.
#[derive(Clone)]
pub enum Credentials {
    /// `<userId>:<userType>` (the server must have dev tokens on).
    Dev,
    /// HS256 JWT signed with this secret, valid for `ttl_secs`.
    Jwt {
        /// Signing key.
        key: EncodingKey,
        /// Token lifetime from now.
        ttl_secs: u64,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dev => f.write_str("Dev"),
            Self::Jwt { ttl_secs, .. } => write!(f, "Jwt {{ ttl_secs: {ttl_secs} }}"),
        }
    }
}

/// JWT claims the server reads.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Claims<'a> {
    /// User id.
    sub: String,
    /// `brand` / `influencer`.
    user_type: &'a str,
    /// Expiry (Unix seconds).
    exp: u64,
    /// Display name.
    username: String,
}

impl Credentials {
    /// HS256 credentials from a shared secret.
    pub fn jwt(secret: &str, ttl_secs: u64) -> Self {
        Self::Jwt {
            key: EncodingKey::from_secret(secret.as_bytes()),
            ttl_secs,
        }
    }

    /// The token for `user` (what goes into `auth.token` and `Authorization: Bearer`).
    pub fn token(&self, user: User, now_unix: u64) -> anyhow::Result<String> {
        match self {
            Self::Dev => Ok(format!("{}:{}", user.id, user.kind())),
            Self::Jwt { key, ttl_secs } => {
                let claims = Claims {
                    sub: user.id.to_string(),
                    user_type: user.kind(),
                    exp: now_unix + ttl_secs,
                    username: format!("lg_{}_{}", user.kind(), user.id),
                };
                Ok(jsonwebtoken::encode(
                    &Header::new(Algorithm::HS256),
                    &claims,
                    key,
                )?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dev_tokens_alternate_user_types() {
        let c = Credentials::Dev;
        assert_eq!(c.token(User::at(1, 0), 0).unwrap(), "1:brand");
        assert_eq!(c.token(User::at(1, 1), 0).unwrap(), "2:influencer");
    }

    #[test]
    fn jwt_carries_sub_type_and_expiry() {
        let c = Credentials::jwt("s3cret", 60);
        let t = c.token(User::at(10, 0), 1_000).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &t,
            &jsonwebtoken::DecodingKey::from_secret(b"s3cret"),
            &v,
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "10");
        assert_eq!(data.claims["userType"], "brand");
        assert_eq!(data.claims["exp"], 1_060);
    }
}
