//! Access tokens: HS256-signed JWTs with `sub`, `role`, `iat`, `exp`, `iss` and `aud`.
//!
//! Exactly one algorithm is accepted, so `alg: none` and algorithm-confusion tokens fail
//! before any signature check. Issuing uses the context's clock; expiry is checked against
//! the wall clock with no leeway.

use std::fmt;
use std::time::Duration;

use auth_api::{AuthError, Principal, Role};
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use kernel::UserId;
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};

const ALGORITHM: Algorithm = Algorithm::HS256;

/// The HMAC key tokens are signed with. Never printed.
#[derive(Clone)]
pub struct SigningKey(SecretSlice<u8>);

impl SigningKey {
    /// HS256 keys shorter than the hash output weaken the signature.
    pub const MIN_BYTES: usize = 32;

    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < Self::MIN_BYTES {
            return Err(format!(
                "the token signing key must be at least {} bytes long",
                Self::MIN_BYTES
            ));
        }
        Ok(Self(SecretSlice::from(bytes)))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub key: SigningKey,
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: UserId,
    role: Role,
    iat: i64,
    exp: i64,
    iss: String,
    aud: String,
}

pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    pub fn new(config: TokenConfig) -> Self {
        let secret = config.key.0.expose_secret();
        let mut validation = Validation::new(ALGORITHM);
        validation.algorithms = vec![ALGORITHM];
        validation.set_audience(&[&config.audience]);
        validation.set_issuer(&[&config.issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: config.issuer,
            audience: config.audience,
            ttl: config.ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(
        &self,
        user_id: UserId,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<String, AuthError> {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            sub: user_id,
            role,
            iat: now.timestamp(),
            exp: now.timestamp().saturating_add(ttl),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        encode(&Header::new(ALGORITHM), &claims, &self.encoding).map_err(|error| {
            tracing::error!(error = %error, "cannot sign an access token");
            AuthError::Internal
        })
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        match decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(Principal {
                user_id: data.claims.sub,
                role: data.claims.role,
            }),
            Err(error) if matches!(error.kind(), JwtErrorKind::ExpiredSignature) => {
                Err(AuthError::TokenExpired)
            }
            Err(error) => {
                tracing::debug!(error = %error, "rejected an access token");
                Err(AuthError::InvalidToken)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration as Span;

    use super::*;

    fn tokens(audience: &str) -> Tokens {
        Tokens::new(TokenConfig {
            key: SigningKey::new(vec![7; 32]).expect("long enough"),
            issuer: "shop".into(),
            audience: audience.into(),
            ttl: Duration::from_secs(900),
        })
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn a_fresh_token_verifies_to_its_principal() {
        let tokens = tokens("shop-api");
        let user = UserId::new();
        let token = tokens.issue(user, Role::Admin, Utc::now()).expect("issue");
        assert_eq!(
            tokens.verify(&token),
            Ok(Principal {
                user_id: user,
                role: Role::Admin
            })
        );
    }

    #[test]
    fn expired_tampered_foreign_and_unsigned_tokens_are_refused() {
        let tokens = tokens("shop-api");
        let user = UserId::new();

        let old = tokens
            .issue(user, Role::Customer, Utc::now() - Span::hours(2))
            .expect("issue");
        assert_eq!(tokens.verify(&old), Err(AuthError::TokenExpired));

        let good = tokens
            .issue(user, Role::Customer, Utc::now())
            .expect("issue");
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_claims = b64(serde_json::json!({
            "sub": user, "role": "admin", "iat": Utc::now().timestamp(),
            "exp": Utc::now().timestamp() + 900, "iss": "shop", "aud": "shop-api"
        })
        .to_string()
        .as_bytes());
        parts[1] = &forged_claims;
        assert_eq!(
            tokens.verify(&parts.join(".")),
            Err(AuthError::InvalidToken)
        );

        let unsigned = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            forged_claims
        );
        assert_eq!(tokens.verify(&unsigned), Err(AuthError::InvalidToken));

        let other_audience = self::tokens("another-api")
            .issue(user, Role::Customer, Utc::now())
            .expect("issue");
        assert_eq!(tokens.verify(&other_audience), Err(AuthError::InvalidToken));

        assert_eq!(tokens.verify("garbage"), Err(AuthError::InvalidToken));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(SigningKey::new(vec![1; 31]).is_err());
    }
}
