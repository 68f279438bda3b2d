//! Scopes and the claims they release (OIDC Core §5.4), the `claims` request parameter
//! (§5.5), and the user claims themselves.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::error::Error;

pub const OPENID: &str = "openid";
/// OIDC Core §11: a refresh token that outlives the browser session.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Scopes oxidp knows, with the text the consent page shows.
pub const STANDARD_SCOPES: [(&str, &str); 5] = [
    (OPENID, "Sign you in and know who you are"),
    (OFFLINE_ACCESS, "Keep access while you are signed out"),
    ("profile", "Your name, username, picture and locale"),
    ("email", "Your e-mail address"),
    ("roles", "Your roles"),
];

pub fn describe_scope(scope: &str) -> String {
    STANDARD_SCOPES
        .iter()
        .find(|(name, _)| *name == scope)
        .map_or_else(
            || format!("Use the “{scope}” permission"),
            |(_, text)| (*text).to_string(),
        )
}

/// What the consent page says for a claim asked for by name (OIDC Core §5.5).
pub fn describe_claim(claim: &str) -> String {
    let text = match claim {
        "name" => "Your full name",
        "given_name" => "Your given name",
        "family_name" => "Your family name",
        "preferred_username" => "Your username",
        "picture" => "Your picture",
        "locale" => "Your language",
        "updated_at" => "When your profile last changed",
        "email" => "Your e-mail address",
        "email_verified" => "Whether your e-mail address is verified",
        "roles" => "Your roles",
        other => return format!("Your “{other}”"),
    };
    text.to_string()
}

/// OIDC Core §5.4: the claims each scope releases.
pub fn claims_of_scope(scope: &str) -> &'static [&'static str] {
    match scope {
        "profile" => &[
            "name",
            "given_name",
            "family_name",
            "preferred_username",
            "picture",
            "locale",
            "updated_at",
        ],
        "email" => &["email", "email_verified"],
        "roles" => &["roles"],
        _ => &[],
    }
}

/// Every user claim oxidp can release (for discovery and the `claims` parameter).
pub const USER_CLAIMS: [&str; 10] = [
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "picture",
    "locale",
    "updated_at",
    "email",
    "email_verified",
    "roles",
];

/// Keeps the scopes oxidp supports (standard ones plus the client's extra scopes), in
/// request order, once each; unknown scopes are dropped, not fatal (RFC 6749 §3.3
/// lets the server grant less than asked).
pub fn filter_scopes(requested: &str, client_extra: &[String], first_party: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        // The admin API's scope goes only to first-party clients, whatever a client's
        // own list says (the API also requires the user's `admin` role).
        let known = if scope == ADMIN_SCOPE {
            first_party
        } else {
            STANDARD_SCOPES.iter().any(|(name, _)| *name == scope)
                || client_extra.iter().any(|s| s == scope)
        };
        if known && !out.iter().any(|s| s == scope) {
            out.push(scope.to_string());
        }
    }
    out
}

/// The scope an access token needs at `/api/v1/admin/*` (with the user's role `admin`).
pub const ADMIN_SCOPE: &str = "oxidp:admin";

/// A scope set in a canonical form, for remembering consent.
pub fn canonical_scope(scopes: &[String]) -> String {
    scopes
        .iter()
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The parts of the `claims` parameter oxidp honours: which user claims were asked for
/// in the ID token and at UserInfo (essential or voluntary alike).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimsRequest {
    #[serde(default)]
    pub id_token: Vec<String>,
    #[serde(default)]
    pub userinfo: Vec<String>,
}

impl ClaimsRequest {
    /// Parses the JSON of OIDC Core §5.5. Claims oxidp does not have are ignored (§5.5:
    /// "not an error"); a value that is not the documented shape is `invalid_request`.
    pub fn parse(json: &str) -> Result<Self, Error> {
        let bad =
            || Error::invalid_request("claims is not a valid claims request (OIDC Core §5.5)");
        let value: Value = serde_json::from_str(json).map_err(|_| bad())?;
        let object = value.as_object().ok_or_else(bad)?;
        let mut out = Self::default();
        for (member, target) in [
            ("id_token", &mut out.id_token),
            ("userinfo", &mut out.userinfo),
        ] {
            match object.get(member) {
                None | Some(Value::Null) => {}
                Some(Value::Object(claims)) => {
                    for (name, spec) in claims {
                        if !(spec.is_null() || spec.is_object()) {
                            return Err(bad());
                        }
                        if USER_CLAIMS.contains(&name.as_str()) && !target.contains(name) {
                            target.push(name.clone());
                        }
                    }
                }
                Some(_) => return Err(bad()),
            }
        }
        Ok(out)
    }
}

/// The user as claims see it.
#[derive(Debug, Clone)]
pub struct UserClaims<'a> {
    pub sub: &'a str,
    pub username: &'a str,
    pub email: &'a str,
    pub email_verified: bool,
    pub name: Option<&'a str>,
    pub given_name: Option<&'a str>,
    pub family_name: Option<&'a str>,
    pub picture: Option<&'a str>,
    pub locale: Option<&'a str>,
    pub roles: &'a [String],
    pub updated_at: i64,
}

impl UserClaims<'_> {
    fn value(&self, claim: &str) -> Option<Value> {
        let text = |v: Option<&str>| v.map(|s| json!(s));
        match claim {
            "name" => text(self.name),
            "given_name" => text(self.given_name),
            "family_name" => text(self.family_name),
            "preferred_username" => Some(json!(self.username)),
            "picture" => text(self.picture),
            "locale" => text(self.locale),
            "updated_at" => Some(json!(self.updated_at)),
            "email" => Some(json!(self.email)),
            "email_verified" => Some(json!(self.email_verified)),
            "roles" => Some(json!(self.roles)),
            _ => None,
        }
    }

    /// Adds the claims released by `scopes` plus the `extra` claims explicitly requested.
    /// Claims the user does not have are left out rather than sent as null.
    pub fn release_into(&self, out: &mut Map<String, Value>, scopes: &[String], extra: &[String]) {
        let names = scopes
            .iter()
            .flat_map(|s| claims_of_scope(s).iter().copied())
            .chain(extra.iter().map(String::as_str));
        for name in names {
            if let Some(v) = self.value(name) {
                out.insert(name.to_string(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_scopes_are_dropped_and_duplicates_folded() {
        let extra = vec!["api:read".to_string()];
        assert_eq!(
            filter_scopes("openid  email bogus openid api:read", &extra, false),
            vec!["openid", "email", "api:read"]
        );
        assert_eq!(filter_scopes("api:read", &[], false), Vec::<String>::new());
    }

    #[test]
    fn only_first_party_clients_get_the_admin_scope() {
        let listed = vec!["oxidp:admin".to_string()];
        assert_eq!(
            filter_scopes("openid oxidp:admin", &listed, false),
            vec!["openid"]
        );
        assert_eq!(
            filter_scopes("openid oxidp:admin", &[], true),
            vec!["openid", "oxidp:admin"]
        );
        assert_eq!(
            canonical_scope(&["profile".into(), "email".into(), "openid".into()]),
            "email openid profile"
        );
    }

    #[test]
    fn claims_parameter() {
        let c = ClaimsRequest::parse(
            r#"{"userinfo":{"name":{"essential":true},"nickname":null},"id_token":{"email":null,"auth_time":{"essential":true}}}"#,
        )
        .unwrap();
        assert_eq!(c.userinfo, vec!["name"]);
        assert_eq!(c.id_token, vec!["email"]);
        for bad in [
            "",
            "[]",
            "{\"userinfo\":[]}",
            "{\"userinfo\":{\"name\":true}}",
            "not json",
        ] {
            assert!(ClaimsRequest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_release_their_claims_only() {
        let roles = vec!["user".to_string()];
        let user = UserClaims {
            sub: "s",
            username: "alice",
            email: "a@x.example",
            email_verified: true,
            name: Some("Alice"),
            given_name: None,
            family_name: None,
            picture: None,
            locale: None,
            roles: &roles,
            updated_at: 5,
        };
        let mut out = Map::new();
        user.release_into(&mut out, &["openid".into(), "email".into()], &[]);
        assert_eq!(
            Value::Object(out.clone()),
            json!({"email": "a@x.example", "email_verified": true})
        );
        user.release_into(&mut out, &["profile".into()], &["roles".into()]);
        assert_eq!(out["preferred_username"], "alice");
        assert_eq!(out["name"], "Alice");
        assert!(!out.contains_key("given_name"));
        assert_eq!(out["roles"], json!(["user"]));
    }
}
