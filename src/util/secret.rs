//! Random secrets and their digests: the secret a joined worker gets at its
//! first join (and shows again to take its id back), and the id an
//! orchestrator's data folder keeps. Only digests are stored by the side
//! that checks, and they are compared in constant time.

use sha2::{Digest, Sha256};

/// 32 bytes from the operating system's generator, as 64 hex digits.
/// `None` only if the system has no generator to give (never on the
/// platforms we build for).
pub fn new_secret() -> Option<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(hex(&bytes))
}

/// The SHA-256 of `secret`, as 64 hex digits: what is kept in place of it.
pub fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` is the one `expected_digest` was made from; false for
/// an empty secret or digest. The comparison takes the same time wherever
/// the digests differ.
pub fn matches(secret: &str, expected_digest: &str) -> bool {
    if secret.is_empty() || expected_digest.is_empty() {
        return false;
    }
    let found = digest(secret);
    found.len() == expected_digest.len()
        && found
            .bytes()
            .zip(expected_digest.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_matches_its_digest_only() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(matches(&a, &digest(&a)));
        assert!(!matches(&b, &digest(&a)));
        assert!(!matches("", &digest("")));
        assert!(!matches(&a, ""));
    }
}
