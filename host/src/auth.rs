//! Who may call the HTTP API.
//!
//! - The operator's token (given at start, never stored by the host) may do everything: ingest
//!   for every tenant, admin every tenant, issue tenant tokens.
//! - A tenant token (issued by the operator; shown once; stored only as a SHA-256 digest) may
//!   use the admin routes of its own tenant and nothing else.
//!
//! Tokens travel as `Authorization: Bearer <token>`. Without an operator token configured the
//! API is open; `pbx-host serve` refuses that unless `--no-auth` is given explicitly.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// What a request is allowed to touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Operator,
    Tenant(String),
}

impl Principal {
    /// May this principal act on `tenant`'s resources?
    pub fn may_access(&self, tenant: &str) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Tenant(t) => t == tenant,
        }
    }
}

/// The digest a token is stored and compared under.
pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (256 bits, URL-safe).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("pbxt_{}", hex::encode(bytes))
}

/// Compare digests in constant time (digests are public-length hex strings).
pub fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
