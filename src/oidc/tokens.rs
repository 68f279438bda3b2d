//! Claims of the tokens oxidp signs: ID tokens (OIDC Core §2, §3.1.3.6) and JWT access
//! tokens (RFC 9068 §2.2). Pure: time and ids come in as arguments.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::claims::UserClaims;

/// RFC 9068 §2.1: the `typ` header of a JWT access token.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// A private claim carrying the UserInfo claims asked for with the `claims` parameter,
/// so UserInfo can honour them without a database row per token.
pub const USERINFO_CLAIMS: &str = "oxidp_userinfo_claims";

/// OIDC Core §3.1.3.6: base64url of the left half of SHA-256 over the access token.
pub fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// What an issued grant is about; shared by both tokens.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub scopes: &'a [String],
    /// None for client credentials (no user authenticated).
    pub auth_time: Option<i64>,
    pub sid: Option<&'a str>,
    /// The grant (code exchange and its refresh family) the token belongs to; revoking
    /// it revokes the token.
    pub grant_id: Option<&'a str>,
    /// `aud` of the access token: the issuer unless a resource was named (RFC 8707).
    pub audience: &'a str,
    /// OIDC Core §2 `amr`: how the user authenticated (`pwd`), when a user did.
    pub amr: &'a [&'a str],
    pub now: i64,
}

/// RFC 9068 §2.2 access token claims. `aud` is the issuer (the token is for oxidp's own
/// APIs: UserInfo, the account API) unless a resource was named (RFC 8707). A client
/// credentials token has the client as `sub` (RFC 9068 §2.2) and no `auth_time`.
pub fn access_token_claims(
    grant: &Grant<'_>,
    sub: &str,
    jti: &str,
    lifetime: i64,
    userinfo_claims: &[String],
) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(grant.issuer));
    claims.insert("sub".into(), json!(sub));
    claims.insert("aud".into(), json!(grant.audience));
    claims.insert("client_id".into(), json!(grant.client_id));
    claims.insert("scope".into(), json!(grant.scopes.join(" ")));
    claims.insert("iat".into(), json!(grant.now));
    claims.insert("exp".into(), json!(grant.now + lifetime));
    claims.insert("jti".into(), json!(jti));
    if let Some(auth_time) = grant.auth_time {
        claims.insert("auth_time".into(), json!(auth_time));
    }
    if let Some(sid) = grant.sid {
        claims.insert("sid".into(), json!(sid));
    }
    if let Some(gid) = grant.grant_id {
        claims.insert("gid".into(), json!(gid));
    }
    if !userinfo_claims.is_empty() {
        claims.insert(USERINFO_CLAIMS.into(), json!(userinfo_claims));
    }
    claims
}

/// ID token claims. `nonce` only when the request had one (OIDC Core §3.1.2.1); the
/// scope's user claims and any explicitly requested ones (§5.4, §5.5).
pub fn id_token_claims(
    grant: &Grant<'_>,
    user: &UserClaims<'_>,
    nonce: Option<&str>,
    access_token: Option<&str>,
    lifetime: i64,
    requested: &[String],
) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(grant.issuer));
    claims.insert("sub".into(), json!(user.sub));
    claims.insert("aud".into(), json!(grant.client_id));
    claims.insert("exp".into(), json!(grant.now + lifetime));
    claims.insert("iat".into(), json!(grant.now));
    claims.insert(
        "auth_time".into(),
        json!(grant.auth_time.unwrap_or(grant.now)),
    );
    claims.insert("azp".into(), json!(grant.client_id));
    if let Some(nonce) = nonce {
        claims.insert("nonce".into(), json!(nonce));
    }
    if let Some(token) = access_token {
        claims.insert("at_hash".into(), json!(at_hash(token)));
    }
    if let Some(sid) = grant.sid {
        claims.insert("sid".into(), json!(sid));
    }
    if !grant.amr.is_empty() {
        claims.insert("amr".into(), json!(grant.amr));
    }
    user.release_into(&mut claims, grant.scopes, requested);
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_the_oidc_example() {
        // OIDC Core Appendix A.3: at_hash of "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y".
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    #[test]
    fn id_token_has_the_required_claims_and_nonce_only_when_sent() {
        let scopes = vec!["openid".to_string(), "profile".to_string()];
        let roles: Vec<String> = vec![];
        let grant = Grant {
            issuer: "https://id.example",
            client_id: "app",
            scopes: &scopes,
            auth_time: Some(90),
            sid: Some("sid1"),
            grant_id: Some("g1"),
            audience: "https://id.example",
            amr: &["pwd"],
            now: 100,
        };
        let user = UserClaims {
            sub: "u1",
            username: "alice",
            email: "a@x.example",
            email_verified: false,
            name: None,
            given_name: None,
            family_name: None,
            picture: None,
            locale: None,
            roles: &roles,
            updated_at: 1,
        };
        let c = id_token_claims(&grant, &user, None, Some("tok"), 3600, &[]);
        for k in [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "azp",
            "at_hash",
            "sid",
            "preferred_username",
        ] {
            assert!(c.contains_key(k), "{k}");
        }
        assert!(!c.contains_key("nonce"));
        assert_eq!(c["amr"], json!(["pwd"]));
        assert!(!c.contains_key("email"));
        assert_eq!(c["exp"], 3700);
        let c = id_token_claims(&grant, &user, Some("n"), None, 3600, &["email".into()]);
        assert_eq!(c["nonce"], "n");
        assert_eq!(c["email"], "a@x.example");
        assert!(!c.contains_key("at_hash"));
        let a = access_token_claims(&grant, "u1", "j1", 60, &[]);
        assert_eq!(a["scope"], "openid profile");
        assert_eq!(a["exp"], 160);
        assert_eq!(a["client_id"], "app");
        assert_eq!(a["gid"], "g1");
        assert_eq!(a["aud"], "https://id.example");
    }
}
