//! Access tokens: HS256 JWTs signed with a key every control plane on one store shares
//! (from `auth.jwt_secret`, or generated once and kept in the store).

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::store::{AuthStore, Role};
use crate::{Error, Result};

/// The `iss` of every access token.
pub const ISSUER: &str = "killkrill";
/// Shortest configured signing secret accepted, in bytes (HS256 wants at least 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;
/// Clock difference between control planes tolerated when checking `exp`.
const LEEWAY_S: u64 = 5;

/// What an access token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The username.
    pub sub: String,
    pub role: Role,
    pub iss: String,
    /// Issued at and expiry, Unix seconds.
    pub iat: u64,
    pub exp: u64,
}

/// The signing and checking halves of the shared secret.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_S;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// The configured secret, or the one in the store (made by whichever control plane
    /// started first).
    pub async fn load(configured: Option<&str>, store: &dyn AuthStore) -> Result<Self> {
        if let Some(secret) = configured {
            if secret.len() < MIN_SECRET_BYTES {
                return Err(Error::Config(format!(
                    "auth.jwt_secret must be at least {MIN_SECRET_BYTES} bytes"
                )));
            }
            return Ok(Self::from_secret(secret.as_bytes()));
        }
        let fresh: [u8; 32] = rand::random();
        let fresh = base64::engine::general_purpose::STANDARD.encode(fresh);
        let kept = store.put_secret_if_absent(super::JWT_SECRET_NAME, &fresh).await?;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(kept.as_bytes())
            .map_err(|error| Error::Internal(format!("stored JWT secret is not base64: {error}")))?;
        Ok(Self::from_secret(&secret))
    }

    /// Signs a token for `username` valid for `ttl_s` seconds from `now_s`.
    pub fn issue(&self, username: &str, role: Role, now_s: u64, ttl_s: u64) -> Result<String> {
        let claims = AccessClaims {
            sub: username.to_owned(),
            role,
            iss: ISSUER.to_owned(),
            iat: now_s,
            exp: now_s.saturating_add(ttl_s),
        };
        self.sign(&claims)
    }

    /// Signs any claims (tests use it for expired tokens).
    pub fn sign(&self, claims: &AccessClaims) -> Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|error| Error::Internal(format!("signing an access token: {error}")))
    }

    /// The claims of a valid, unexpired token signed with this key; None otherwise.
    pub fn verify(&self, token: &str) -> Option<AccessClaims> {
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// Now, in Unix seconds.
pub fn now_s() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_with_their_key_only_and_not_after_expiry() {
        let keys = JwtKeys::from_secret(&[7; 32]);
        let other = JwtKeys::from_secret(&[8; 32]);
        let now = now_s();
        let token = keys.issue("ada", Role::Maintainer, now, 900).unwrap();
        let claims = keys.verify(&token).expect("valid token");
        assert_eq!((claims.sub.as_str(), claims.role, claims.exp), ("ada", Role::Maintainer, now + 900));
        assert!(other.verify(&token).is_none(), "another key must not accept it");
        let expired = keys.issue("ada", Role::Admin, now - 3600, 60).unwrap();
        assert!(keys.verify(&expired).is_none());
        assert!(keys.verify("not.a.jwt").is_none());
        let mut tampered = token.clone();
        tampered.push('x');
        assert!(keys.verify(&tampered).is_none());
    }
}
