//! The provider metadata document (OpenID Connect Discovery 1.0 §3, RFC 8414 §2).
//! It lists only what oxidp implements; later features add their fields here.

use serde::Serialize;

use super::claims::{STANDARD_SCOPES, USER_CLAIMS};

/// Endpoint paths, relative to the issuer.
pub const JWKS_PATH: &str = "/jwks.json";
pub const AUTHORIZATION_PATH: &str = "/authorize";
pub const TOKEN_PATH: &str = "/token";
pub const USERINFO_PATH: &str = "/userinfo";
pub const INTROSPECTION_PATH: &str = "/introspect";
pub const REVOCATION_PATH: &str = "/revoke";
pub const END_SESSION_PATH: &str = "/logout";

#[derive(Debug, Serialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    pub jwks_uri: String,
    /// RP-Initiated Logout 1.0 §2.1.
    pub end_session_endpoint: String,
    /// Front-Channel Logout is not offered; Back-Channel Logout 1.0 §2.1 is, with `sid`.
    pub frontchannel_logout_supported: bool,
    pub backchannel_logout_supported: bool,
    pub backchannel_logout_session_supported: bool,
    pub response_types_supported: Vec<&'static str>,
    pub response_modes_supported: Vec<&'static str>,
    pub grant_types_supported: Vec<&'static str>,
    pub subject_types_supported: Vec<&'static str>,
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    pub scopes_supported: Vec<&'static str>,
    pub claims_supported: Vec<&'static str>,
    pub claims_parameter_supported: bool,
    pub request_parameter_supported: bool,
    pub request_uri_parameter_supported: bool,
    pub prompt_values_supported: Vec<&'static str>,
    pub code_challenge_methods_supported: Vec<&'static str>,
    pub authorization_response_iss_parameter_supported: bool,
}

/// Builds the document for `issuer`, which must already be validated (no trailing slash).
/// `registration`: sign-up is open, so `prompt=create` is offered.
pub fn provider_metadata(issuer: &str, registration: bool) -> ProviderMetadata {
    let url = |path: &str| format!("{issuer}{path}");
    ProviderMetadata {
        issuer: issuer.to_string(),
        authorization_endpoint: url(AUTHORIZATION_PATH),
        token_endpoint: url(TOKEN_PATH),
        userinfo_endpoint: url(USERINFO_PATH),
        introspection_endpoint: url(INTROSPECTION_PATH),
        revocation_endpoint: url(REVOCATION_PATH),
        jwks_uri: url(JWKS_PATH),
        end_session_endpoint: url(END_SESSION_PATH),
        frontchannel_logout_supported: false,
        backchannel_logout_supported: true,
        backchannel_logout_session_supported: true,
        response_types_supported: vec!["code"],
        response_modes_supported: vec!["query", "form_post"],
        grant_types_supported: vec![
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "password",
        ],
        // OIDC Core §8: public subject identifiers (one stable `sub` per user).
        subject_types_supported: vec!["public"],
        id_token_signing_alg_values_supported: vec!["RS256"],
        token_endpoint_auth_methods_supported: vec![
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        // RFC 7662 §2.1: only authenticated clients introspect.
        introspection_endpoint_auth_methods_supported: vec![
            "client_secret_basic",
            "client_secret_post",
        ],
        // RFC 7009 §2.1 (§5: public clients may revoke their own tokens).
        revocation_endpoint_auth_methods_supported: vec![
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        scopes_supported: STANDARD_SCOPES.iter().map(|(s, _)| *s).collect(),
        claims_supported: [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "at_hash",
            "azp",
            "sid",
        ]
        .into_iter()
        .chain(USER_CLAIMS)
        .collect(),
        // OIDC Core §5.5, §6.
        claims_parameter_supported: true,
        request_parameter_supported: false,
        request_uri_parameter_supported: false,
        prompt_values_supported: ["none", "login", "consent", "select_account"]
            .into_iter()
            .chain(registration.then_some("create"))
            .collect(),
        // RFC 7636 §4.2: only S256; `plain` is not offered.
        code_challenge_methods_supported: vec!["S256"],
        // RFC 9207 §3.
        authorization_response_iss_parameter_supported: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_under_the_exact_issuer() {
        let m = provider_metadata("https://id.example.com/tenant", true);
        assert_eq!(m.issuer, "https://id.example.com/tenant");
        assert_eq!(m.jwks_uri, "https://id.example.com/tenant/jwks.json");
        assert_eq!(
            m.authorization_endpoint,
            "https://id.example.com/tenant/authorize"
        );
        assert!(!m.code_challenge_methods_supported.contains(&"plain"));
    }
}
