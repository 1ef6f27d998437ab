//! Making and checking secrets: random tokens, their SHA-256 for storage, argon2 password
//! hashes, and comparisons that take the same time wherever the inputs differ.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Error, Result};

/// API keys start with this, so that secret scanners and people recognise them.
pub const API_KEY_PREFIX: &str = "kk_";
/// Refresh tokens start with this.
pub const REFRESH_TOKEN_PREFIX: &str = "kkr_";
/// Characters of an API key shown in lists (the `kk_` and a few random ones).
pub const API_KEY_VISIBLE_CHARS: usize = 10;

/// `prefix` followed by 32 random bytes, URL-safe base64 without padding (256 bits).
pub fn random_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A short random id (64 bits, hex) for API keys.
pub fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Lower-case hex SHA-256: how tokens and keys are stored and looked up.
pub fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write as _;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Argon2id with the crate's default (OWASP) parameters, as a PHC string.
pub fn hash_password(password: &str) -> Result<String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|error| Error::Internal(format!("password salt: {error}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| Error::Internal(format!("password hashing: {error}")))
}

/// Whether `password` matches the PHC string (argon2 compares in constant time). An
/// unreadable hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash no password is known for, checked when the user does not exist.
pub static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let password = random_token("");
    hash_password(&password).unwrap_or_default()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes_verify_only_the_right_password() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse battery!", &hash));
        assert!(!verify_password("anything", "not a phc string"));
        assert_ne!(hash, hash_password("correct horse battery").unwrap(), "salts differ");
    }

    #[test]
    fn tokens_are_prefixed_random_and_hash_to_hex() {
        let a = random_token(API_KEY_PREFIX);
        let b = random_token(API_KEY_PREFIX);
        assert!(a.starts_with("kk_") && a.len() == 3 + 43, "{a}");
        assert_ne!(a, b);
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(constant_time_eq("same", "same"));
        assert!(!constant_time_eq("same", "sane"));
        assert!(!constant_time_eq("same", "same-longer"));
    }
}
