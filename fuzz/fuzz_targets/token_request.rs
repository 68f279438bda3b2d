//! Token request parsing (RFC 6749 §3.2, §2.3.1): the `Authorization` header (HTTP Basic
//! with form-encoded id and secret, or Bearer), the `Content-Type` check and the form
//! body. Input: header line, `\n`, content-type line, `\n`, body.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use oxidp::http::raw::{bearer_from_header, is_form, parse_basic};
use oxidp::oidc::params::{MAX_VALUE_LEN, Params};
use oxidp::oidc::pkce;
use oxidp::oidc::registration::GrantType;

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let authorization = parts.next().unwrap_or_default();
    let content_type = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();

    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(authorization) {
        if let Some((id, _secret)) = parse_basic(&value) {
            assert!(!id.is_empty());
        }
        headers.insert(header::AUTHORIZATION, value);
        if let Ok(Some(token)) = bearer_from_header(&headers) {
            assert!(!token.is_empty());
            assert_eq!(token, token.trim());
        }
    }
    if let Ok(value) = HeaderValue::from_bytes(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    let _ = is_form(&headers);

    let params = Params::parse(body);
    let well_formed = params.check_well_formed().is_ok();
    if well_formed {
        for key in [
            "grant_type",
            "code",
            "client_id",
            "refresh_token",
            "code_verifier",
        ] {
            assert!(!params.is_duplicate(key));
            assert!(
                params
                    .get(key)
                    .is_none_or(|v| !v.is_empty() && v.len() <= MAX_VALUE_LEN)
            );
        }
    }
    if let Some(grant) = params.get("grant_type") {
        let _ = GrantType::parse(grant);
    }
    if let Some(verifier) = params.get("code_verifier") {
        let syntax = pkce::is_valid_verifier_syntax(verifier);
        let challenge = params.get("code_challenge").unwrap_or_default();
        if pkce::verify_s256(verifier, challenge) {
            assert!(syntax, "a malformed verifier matched");
        }
    }
    // RFC 6749 §2.3.1: what a client form-encodes into Basic comes back unchanged.
    if let (Some(id), Some(secret)) = (params.get("client_id"), params.get("client_secret")) {
        let value = format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
        );
        let value = HeaderValue::from_str(&value).expect("base64 is a valid header");
        assert_eq!(
            parse_basic(&value),
            Some((id.to_string(), secret.to_string()))
        );
    }
});
