//! OpenID Connect RP-Initiated Logout 1.0: which client asks, where the browser may be
//! sent afterwards, and whether the request proves which session it means. Pure rules;
//! `http::logout` verifies the hint's signature and looks clients up.

use serde_json::{Map, Value};

use super::params::Params;

/// What a verified `id_token_hint` says (§2: an expired ID token is still a good hint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub sub: String,
    pub sid: Option<String>,
    pub audiences: Vec<String>,
}

impl Hint {
    /// From verified claims: our issuer, and an ID token (not an access token: those
    /// carry `typ: at+jwt`), with a subject and an audience.
    pub fn from_claims(
        claims: &Map<String, Value>,
        typ: Option<&str>,
        issuer: &str,
    ) -> Option<Self> {
        if typ.is_some_and(|t| !t.eq_ignore_ascii_case("JWT")) {
            return None;
        }
        if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return None;
        }
        let audiences = match claims.get("aud")? {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => return None,
        };
        if audiences.is_empty() {
            return None;
        }
        Some(Self {
            sub: claims.get("sub")?.as_str()?.to_string(),
            sid: claims
                .get("sid")
                .and_then(Value::as_str)
                .map(str::to_string),
            audiences,
        })
    }
}

/// The parameters of §2, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogoutParams {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutError {
    #[error("a parameter is malformed, too long or sent more than once")]
    Duplicate,
    #[error("id_token_hint is not an ID token issued by this provider")]
    BadHint,
    #[error("client_id does not match the audience of id_token_hint")]
    ClientMismatch,
    #[error("the application is not registered")]
    UnknownClient,
    #[error("post_logout_redirect_uri needs id_token_hint or client_id to name the application")]
    NoClient,
    #[error("post_logout_redirect_uri is not registered for this application")]
    UnregisteredUri,
}

impl LogoutParams {
    pub fn parse(params: &Params) -> Result<Self, LogoutError> {
        params
            .check_well_formed()
            .map_err(|_| LogoutError::Duplicate)?;
        let get = |k: &str| params.get(k).filter(|v| !v.is_empty()).map(str::to_string);
        Ok(Self {
            id_token_hint: get("id_token_hint"),
            client_id: get("client_id"),
            post_logout_redirect_uri: get("post_logout_redirect_uri"),
            state: get("state"),
        })
    }
}

/// The client the request is about: `client_id`, else the hint's audience (§2: when both
/// are present they must agree). `None` when neither names one.
pub fn client_of(
    params: &LogoutParams,
    hint: Option<&Hint>,
) -> Result<Option<String>, LogoutError> {
    match (&params.client_id, hint) {
        (Some(id), Some(h)) if !h.audiences.contains(id) => Err(LogoutError::ClientMismatch),
        (Some(id), _) => Ok(Some(id.clone())),
        (None, Some(h)) => Ok(h.audiences.first().cloned()),
        (None, None) => Ok(None),
    }
}

/// Where to send the browser after logout (§3): the `post_logout_redirect_uri`, which
/// must exactly match one registered for the client, with `state` added to its query.
/// `None` when none was asked for. Never a redirect to an unchecked URI.
pub fn redirect_target(
    params: &LogoutParams,
    registered: Option<&[String]>,
) -> Result<Option<String>, LogoutError> {
    let Some(uri) = &params.post_logout_redirect_uri else {
        return Ok(None);
    };
    let registered = registered.ok_or(LogoutError::NoClient)?;
    if !registered.iter().any(|r| r == uri) {
        return Err(LogoutError::UnregisteredUri);
    }
    // The registered string itself, byte for byte (a URL parser would normalise it,
    // e.g. add a "/" path), with `state` appended to its query (§3).
    let mut target = uri.clone();
    if let Some(state) = &params.state {
        let encoded: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("state", state)
            .finish();
        target.push(if uri.contains('?') { '&' } else { '?' });
        target.push_str(&encoded);
    }
    Ok(Some(target))
}

/// Whether the hint names the browser's current session, so logout may proceed without
/// asking (§2: otherwise the OP asks the user). A hint with `sid` must match it; one
/// without must at least name the same user.
pub fn hint_matches(hint: &Hint, session_sid: &str, session_user: &str) -> bool {
    hint.sub == session_user && hint.sid.as_deref().is_none_or(|sid| sid == session_sid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hint(aud: &[&str]) -> Hint {
        Hint {
            sub: "u1".into(),
            sid: Some("s1".into()),
            audiences: aud.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn hints_must_be_our_id_tokens() {
        let claims = |v: Value| v.as_object().unwrap().clone();
        let good = claims(json!({"iss": "https://op", "sub": "u1", "aud": "app", "sid": "s1"}));
        assert_eq!(
            Hint::from_claims(&good, None, "https://op"),
            Some(hint(&["app"]))
        );
        assert!(Hint::from_claims(&good, Some("at+jwt"), "https://op").is_none());
        assert!(Hint::from_claims(&good, None, "https://other").is_none());
        let no_aud = claims(json!({"iss": "https://op", "sub": "u1"}));
        assert!(Hint::from_claims(&no_aud, None, "https://op").is_none());
        let many = claims(json!({"iss": "https://op", "sub": "u1", "aud": ["a", "b"]}));
        assert_eq!(
            Hint::from_claims(&many, None, "https://op")
                .unwrap()
                .audiences,
            ["a", "b"]
        );
    }

    #[test]
    fn the_client_comes_from_client_id_or_the_hint_and_they_must_agree() {
        let p = |client: Option<&str>| LogoutParams {
            client_id: client.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(client_of(&p(None), None), Ok(None));
        assert_eq!(client_of(&p(Some("app")), None), Ok(Some("app".into())));
        assert_eq!(
            client_of(&p(None), Some(&hint(&["app"]))),
            Ok(Some("app".into()))
        );
        assert_eq!(
            client_of(&p(Some("app")), Some(&hint(&["app"]))),
            Ok(Some("app".into()))
        );
        assert_eq!(
            client_of(&p(Some("other")), Some(&hint(&["app"]))),
            Err(LogoutError::ClientMismatch)
        );
    }

    #[test]
    fn only_registered_uris_are_redirected_to_with_state_appended() {
        let registered = vec![
            "https://app.example/bye".to_string(),
            "https://app.example/out?x=1".to_string(),
            "http://localhost:3000".to_string(),
        ];
        let p = |uri: Option<&str>, state: Option<&str>| LogoutParams {
            post_logout_redirect_uri: uri.map(str::to_string),
            state: state.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(
            redirect_target(&p(None, Some("s")), Some(&registered)),
            Ok(None)
        );
        assert_eq!(
            redirect_target(
                &p(Some("https://app.example/bye"), Some("a b&c")),
                Some(&registered)
            )
            .unwrap()
            .unwrap()
            .as_str(),
            "https://app.example/bye?state=a+b%26c"
        );
        assert_eq!(
            redirect_target(
                &p(Some("https://app.example/out?x=1"), None),
                Some(&registered)
            )
            .unwrap()
            .unwrap()
            .as_str(),
            "https://app.example/out?x=1"
        );
        assert_eq!(
            redirect_target(
                &p(Some("https://app.example/out?x=1"), Some("s")),
                Some(&registered)
            )
            .unwrap()
            .unwrap()
            .as_str(),
            "https://app.example/out?x=1&state=s"
        );
        // An origin-only URI comes back as registered, without a "/" added.
        assert_eq!(
            redirect_target(
                &p(Some("http://localhost:3000"), Some("s")),
                Some(&registered)
            )
            .unwrap()
            .unwrap(),
            "http://localhost:3000?state=s"
        );
        for bad in [
            "https://app.example/bye/",
            "https://evil.example/bye",
            "https://app.example/out",
        ] {
            assert_eq!(
                redirect_target(&p(Some(bad), None), Some(&registered)),
                Err(LogoutError::UnregisteredUri),
                "{bad}"
            );
        }
        assert_eq!(
            redirect_target(&p(Some("https://app.example/bye"), None), None),
            Err(LogoutError::NoClient)
        );
    }

    #[test]
    fn a_hint_matches_the_session_it_names() {
        let h = hint(&["app"]);
        assert!(hint_matches(&h, "s1", "u1"));
        assert!(!hint_matches(&h, "s2", "u1"));
        assert!(!hint_matches(&h, "s1", "u2"));
        let no_sid = Hint { sid: None, ..h };
        assert!(hint_matches(&no_sid, "s9", "u1"));
    }
}
