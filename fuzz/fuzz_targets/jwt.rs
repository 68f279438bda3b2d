//! JWT/JWS parsing as oxidp meets it: `id_token_hint` (at /authorize and /logout) and
//! bearer access tokens all go through `KeySet::verify`, then the claim rules
//! (`Hint::from_claims`). Arbitrary strings must be refused without a panic; a JSON object
//! signed with our key must come back unchanged; any changed byte must be refused.
#![no_main]

use std::sync::OnceLock;

use josekit::jwk::KeyPair;
use libfuzzer_sys::fuzz_target;
use oxidp::keys::KeySet;
use oxidp::oidc::logout::{Hint, LogoutParams};
use oxidp::oidc::params::Params;
use serde_json::Value;

const ISSUER: &str = "https://id.example";

/// Ours, and a stranger's key (its tokens must never verify against ours).
fn keys() -> &'static (KeySet, KeySet) {
    static KEYS: OnceLock<(KeySet, KeySet)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let make = || {
            let pem = josekit::jws::RS256
                .generate_key_pair(2048)
                .expect("generate")
                .to_pem_private_key();
            KeySet::from_private_pem(&pem).expect("key set")
        };
        (make(), make())
    })
}

fuzz_target!(|data: &[u8]| {
    let (ours, theirs) = keys();
    if let Ok(token) = std::str::from_utf8(data) {
        if let Ok((claims, typ)) = ours.verify(token) {
            // Only reachable with a token we signed (e.g. from the corpus of the branch
            // below); the claim rules must cope with whatever it carries.
            let _ = Hint::from_claims(&claims, typ.as_deref(), ISSUER);
        }
        // The same bytes as a logout request (`id_token_hint=…&client_id=…`).
        if let Ok(request) = LogoutParams::parse(&Params::parse(data))
            && let Some(hint) = request.id_token_hint
        {
            let _ = ours.verify(&hint);
        }
    }
    // Structured: sign a JSON object (as claims) and check the round trip and tampering.
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let typ = if data.len() % 2 == 0 {
        Some("at+jwt")
    } else {
        None
    };
    let Ok(token) = ours.sign(typ, claims.clone()) else {
        return;
    };
    if token.len() > 16 * 1024 {
        assert!(ours.verify(&token).is_err(), "oversized token accepted");
        return;
    }
    let (verified, verified_typ) = ours.verify(&token).expect("our own token verifies");
    // Found by this target: serde_json's default float parser may be 1 ULP off
    // (2.2222222222222222e33 came back as ...25e33), so a float claim does not survive
    // text and back exactly. oxidp issues and reads only integer and string claims; the
    // expectation is the same text round trip the token goes through.
    let expected: Value =
        serde_json::from_str(&Value::Object(claims).to_string()).expect("JSON round trip");
    assert_eq!(Value::Object(verified.clone()), expected);
    assert_eq!(verified_typ.as_deref(), typ);
    let _ = Hint::from_claims(&verified, verified_typ.as_deref(), ISSUER);
    assert!(
        theirs.verify(&token).is_err(),
        "verified with a stranger's key"
    );
    // Flip one character (chosen by the input) to another base64url character: the
    // JWS signing input is the encoded text, so any change must be refused.
    let bytes = token.as_bytes();
    let at = data.iter().map(|&b| b as usize).sum::<usize>() % bytes.len();
    if bytes[at] != b'.' {
        let mut forged = bytes.to_vec();
        forged[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).expect("ASCII");
        assert!(
            ours.verify(&forged).is_err(),
            "tampered token accepted at {at}"
        );
    }
});
