//! Rules for client metadata, shared by `[[clients]]`, the CLI and (later) the admin API.
//! Pure functions: no I/O.

use serde::Deserialize;
use url::{Host, Url};

/// RFC 7591 §2 `token_endpoint_auth_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

/// Whether a URL's host is a loopback name or address (RFC 8252 §7.3, §8.3).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    Password,
}

impl GrantType {
    pub const ALL: [GrantType; 4] = [
        Self::AuthorizationCode,
        Self::RefreshToken,
        Self::ClientCredentials,
        Self::Password,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::Password => "password",
        }
    }

    /// Accepts the RFC 6749 names and `code` (the CLI's short form).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" | "code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            "client_credentials" => Some(Self::ClientCredentials),
            "password" => Some(Self::Password),
            _ => None,
        }
    }
}

/// A rule a client definition breaks: which field, the value, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value} ({allowed})")]
pub struct RuleError {
    pub field: String,
    pub value: String,
    pub allowed: String,
}

fn rule(field: impl Into<String>, value: impl std::fmt::Debug, allowed: &str) -> RuleError {
    RuleError {
        field: field.into(),
        value: format!("{value:?}"),
        allowed: allowed.to_string(),
    }
}

/// Client metadata before it is stored; secrets are handled by the caller.
#[derive(Debug, Clone)]
pub struct ClientMetadata<'a> {
    pub id: &'a str,
    pub name: Option<&'a str>,
    pub redirect_uris: &'a [String],
    pub post_logout_redirect_uris: &'a [String],
    pub grant_types: &'a [String],
    pub auth_method: AuthMethod,
    pub first_party: bool,
    pub scopes: &'a [String],
    pub backchannel_logout_uri: Option<&'a str>,
}

/// Checks every rule and returns the grant types, de-duplicated and in canonical order.
pub fn check_client(c: &ClientMetadata<'_>) -> Result<Vec<GrantType>, RuleError> {
    check_client_id(c.id)?;
    if let Some(name) = c.name
        && (name.trim().is_empty() || name.chars().count() > 100)
    {
        return Err(rule("name", name, "1 to 100 characters"));
    }
    if c.grant_types.is_empty() {
        return Err(rule(
            "grant_types",
            c.grant_types,
            "at least one of authorization_code, refresh_token, client_credentials, password",
        ));
    }
    let mut grants = Vec::new();
    for (i, g) in c.grant_types.iter().enumerate() {
        let grant = GrantType::parse(g).ok_or_else(|| {
            rule(
                format!("grant_types[{i}]"),
                g,
                "authorization_code (or code), refresh_token, client_credentials, password",
            )
        })?;
        if !grants.contains(&grant) {
            grants.push(grant);
        }
    }
    grants.sort();
    let public = c.auth_method == AuthMethod::None;
    let has = |g| grants.contains(&g);
    // RFC 6749 §4.4: client credentials need an authenticated (confidential) client.
    if public && has(GrantType::ClientCredentials) {
        return Err(rule(
            "grant_types",
            "client_credentials",
            "client_credentials only for a confidential client (one with a secret)",
        ));
    }
    // RFC 6749 §4.3.2 and DESIGN.md "Password grant and rate limits": the password
    // grant's caller asserts the end user's IP and is trusted with every password it
    // relays, which needs a client that can keep a secret; a public client cannot.
    if public_password_grant(public, &grants) {
        return Err(rule(
            "grant_types",
            "password",
            "password only for a confidential client: a public client (token_endpoint_auth_method = none) may not use the password grant, first_party or not",
        ));
    }
    if has(GrantType::Password) && !c.first_party {
        return Err(rule(
            "grant_types",
            "password",
            "password only for a first_party client",
        ));
    }
    if has(GrantType::RefreshToken)
        && !has(GrantType::AuthorizationCode)
        && !has(GrantType::Password)
    {
        return Err(rule(
            "grant_types",
            "refresh_token",
            "refresh_token together with authorization_code or password",
        ));
    }
    if has(GrantType::AuthorizationCode) && c.redirect_uris.is_empty() {
        return Err(RuleError {
            field: "redirect_uris".into(),
            value: "(none)".into(),
            allowed: "at least one redirect URI for the authorization_code grant".into(),
        });
    }
    for (i, uri) in c.redirect_uris.iter().enumerate() {
        check_redirect_uri(uri, public)
            .map_err(|allowed| rule(format!("redirect_uris[{i}]"), uri, allowed))?;
    }
    for (i, uri) in c.post_logout_redirect_uris.iter().enumerate() {
        check_redirect_uri(uri, public)
            .map_err(|allowed| rule(format!("post_logout_redirect_uris[{i}]"), uri, allowed))?;
    }
    // Back-Channel Logout 1.0 §2.2: an absolute URI, no fragment; the same transport
    // rules as a confidential client's redirect URI (https, or http on loopback).
    if let Some(uri) = c.backchannel_logout_uri {
        check_redirect_uri(uri, false)
            .map_err(|allowed| rule("backchannel_logout_uri".to_string(), uri, allowed))?;
    }
    for (i, scope) in c.scopes.iter().enumerate() {
        if !is_scope_token(scope) {
            return Err(rule(
                format!("scopes[{i}]"),
                scope,
                "a scope token: printable ASCII without spaces, '\"' or '\\'",
            ));
        }
        // The admin scope is for a user's token from a first-party client (granted by
        // that rule alone); listed here it would reach client-credentials tokens.
        if scope == super::claims::ADMIN_SCOPE {
            return Err(rule(
                format!("scopes[{i}]"),
                scope,
                "any scope but oxidp:admin (first-party clients get it for their users without listing it)",
            ));
        }
    }
    Ok(grants)
}

/// True when a public client would hold the password grant: refused when a client is
/// defined (config, CLI, admin API) and again at the token endpoint, for clients stored
/// before the rule.
pub fn public_password_grant(public: bool, grants: &[GrantType]) -> bool {
    public && grants.contains(&GrantType::Password)
}

/// Client ids appear in URLs, logs and tokens: 1–128 unreserved URL characters.
pub fn check_client_id(id: &str) -> Result<(), RuleError> {
    let ok = (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'));
    if ok {
        Ok(())
    } else {
        Err(rule(
            "id",
            id,
            "1 to 128 characters: letters, digits, '-', '.', '_', '~'",
        ))
    }
}

/// RFC 6749 §3.1.2: an absolute URI without a fragment. https anywhere; http only on a
/// loopback host (RFC 8252 §7.3, §8.3); a private-use scheme with a dot, e.g.
/// `com.example.app:/cb`, only for public (native) clients (RFC 8252 §7.1).
pub fn check_redirect_uri(uri: &str, public: bool) -> Result<(), &'static str> {
    const ALLOWED: &str = "an absolute https URI without fragment or wildcard; http only on \
                           localhost/127.0.0.1/[::1]; a reverse-DNS scheme only for public clients";
    if uri.contains('*') || uri.len() > 2000 || uri.chars().any(|c| c.is_whitespace()) {
        return Err(ALLOWED);
    }
    let url = Url::parse(uri).map_err(|_| ALLOWED)?;
    if url.fragment().is_some() || uri.contains('#') {
        return Err(ALLOWED);
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" | "https" => Err(ALLOWED),
        scheme if public && scheme.contains('.') => Ok(()),
        _ => Err(ALLOWED),
    }
}

/// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta<'a>(
        grants: &'a [String],
        redirects: &'a [String],
        method: AuthMethod,
        first_party: bool,
    ) -> ClientMetadata<'a> {
        ClientMetadata {
            id: "app",
            name: None,
            redirect_uris: redirects,
            post_logout_redirect_uris: &[],
            grant_types: grants,
            auth_method: method,
            first_party,
            scopes: &[],
            backchannel_logout_uri: None,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn redirect_uris() {
        for ok in [
            "https://app.example/cb",
            "http://localhost:3000/api/auth/callback/oxidp",
            "http://127.0.0.1/cb",
            "http://[::1]:8080/",
        ] {
            assert!(check_redirect_uri(ok, false).is_ok(), "{ok}");
        }
        assert!(check_redirect_uri("com.example.app:/cb", true).is_ok());
        for bad in [
            "com.example.app:/cb",
            "http://app.example/cb",
            "https://app.example/cb#x",
            "https://*.example/cb",
            "/cb",
            "javascript:alert(1)",
            "https://a.example/c b",
            "",
        ] {
            assert!(check_redirect_uri(bad, false).is_err(), "{bad}");
        }
        assert!(check_redirect_uri("javascript:alert(1)", true).is_err());
    }

    #[test]
    fn grant_rules() {
        let cb = strings(&["https://app.example/cb"]);
        let none: Vec<String> = Vec::new();
        let ok = |g: &[&str], r: &[String], m, fp| check_client(&meta(&strings(g), r, m, fp));
        assert_eq!(
            ok(
                &["refresh_token", "code", "code"],
                &cb,
                AuthMethod::ClientSecretBasic,
                false
            )
            .unwrap(),
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
        assert!(
            ok(
                &["client_credentials"],
                &none,
                AuthMethod::ClientSecretBasic,
                false
            )
            .is_ok()
        );
        assert!(ok(&["client_credentials"], &none, AuthMethod::None, false).is_err());
        assert!(ok(&["password"], &none, AuthMethod::ClientSecretBasic, false).is_err());
        let public_password = ok(&["password"], &none, AuthMethod::None, true).unwrap_err();
        assert_eq!(public_password.field, "grant_types");
        assert!(public_password.allowed.contains("public client"));
        assert!(
            ok(
                &["password", "refresh_token"],
                &none,
                AuthMethod::ClientSecretBasic,
                true
            )
            .is_ok()
        );
        assert!(
            ok(
                &["refresh_token"],
                &cb,
                AuthMethod::ClientSecretBasic,
                false
            )
            .is_err()
        );
        assert!(
            ok(
                &["authorization_code"],
                &none,
                AuthMethod::ClientSecretBasic,
                false
            )
            .is_err()
        );
        assert!(ok(&["implicit"], &cb, AuthMethod::ClientSecretBasic, false).is_err());
        assert!(ok(&[], &cb, AuthMethod::ClientSecretBasic, false).is_err());
    }

    #[test]
    fn ids_and_scopes() {
        assert!(check_client_id("nextjs-demo").is_ok());
        assert!(check_client_id("").is_err());
        assert!(check_client_id("a b").is_err());
        assert!(check_client_id(&"a".repeat(129)).is_err());
        assert!(is_scope_token("oxidp:admin"));
        assert!(!is_scope_token("a b"));
        assert!(!is_scope_token("a\"b"));
        assert!(!is_scope_token(""));
    }
}
