//! JWK helpers: RFC 7638 thumbprints (our `kid`) and the JWKS document (RFC 7517 §5).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jwk::KeyPair;
use josekit::jwk::alg::rsa::RsaKeyPair;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// RFC 7638 §3.2: SHA-256 over the required members in lexicographic order, no
/// whitespace: `{"e":…,"kty":"RSA","n":…}`, base64url without padding.
pub fn rfc7638_thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The public members only (RFC 7518 §6.3.1) plus kid, use and alg.
pub fn public_jwk(key_pair: &RsaKeyPair) -> Option<(String, Value)> {
    let jwk = key_pair.to_jwk_public_key();
    let n = jwk.parameter("n")?.as_str()?.to_string();
    let e = jwk.parameter("e")?.as_str()?.to_string();
    let kid = rfc7638_thumbprint(&n, &e);
    let value = json!({
        "kty": "RSA",
        "use": "sig",
        "alg": super::ALG,
        "kid": kid,
        "n": n,
        "e": e,
    });
    Some((kid, value))
}

pub fn jwks_document<'a>(keys: impl Iterator<Item = &'a Value>) -> bytes::Bytes {
    let doc = json!({ "keys": keys.collect::<Vec<_>>() });
    bytes::Bytes::from(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of RFC 7638 §3.1.
    #[test]
    fn rfc7638_example() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            rfc7638_thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
