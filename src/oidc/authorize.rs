//! Authorization request validation (RFC 6749 §4.1.1, OIDC Core §3.1.2.1) in the order
//! that decides where errors go: client, then redirect URI (errors are a page), then
//! everything else (errors are redirected to the client).

use serde::{Deserialize, Serialize};
use url::Url;

use super::claims::{ClaimsRequest, OPENID, filter_scopes};
use super::error::{Error, ErrorCode};
use super::params::Params;
use super::pkce;
use super::registration::is_loopback;

/// Why the request cannot be answered with a redirect (RFC 6749 §4.1.2.1: the user
/// agent must not be sent to an unverified URI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    MissingClientId,
    RepeatedParameter(&'static str),
    UnknownClient,
    MissingRedirectUri,
    UnregisteredRedirectUri,
}

impl PageError {
    pub fn message(&self) -> &'static str {
        match self {
            Self::MissingClientId => "The request names no application (client_id is missing).",
            Self::RepeatedParameter(_) => "The request is malformed: a parameter is repeated.",
            Self::UnknownClient => "The application that sent you here is not registered.",
            Self::MissingRedirectUri => {
                "The request does not say where to return (redirect_uri is missing)."
            }
            Self::UnregisteredRedirectUri => {
                "The address to return to (redirect_uri) is not registered for this application."
            }
        }
    }
}

/// The registered facts about a client that validation needs.
#[derive(Debug, Clone)]
pub struct ClientView<'a> {
    pub id: &'a str,
    pub public: bool,
    pub redirect_uris: &'a [String],
    pub extra_scopes: &'a [String],
    pub first_party: bool,
    pub allows_code: bool,
}

/// Where the authorization response goes and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    Query,
    FormPost,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
    /// OpenID Connect "Initiating User Registration" §4: show sign-up first.
    #[serde(default)]
    pub create: bool,
}

/// A request that passed every check, stored while the user signs in and consents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    /// The redirect URI exactly as sent (or the single registered one, when omitted).
    pub redirect_uri: String,
    /// RFC 6749 §4.1.3: the token request must repeat it when it was sent.
    pub redirect_uri_sent: bool,
    pub response_mode: ResponseMode,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub id_token_hint: Option<String>,
    pub login_hint: Option<String>,
    pub claims: ClaimsRequest,
    /// The session the user started on the login page for this very request (it meets
    /// `prompt=login` and `max_age`); none until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_in_sid: Option<String>,
}

impl AuthorizationRequest {
    pub fn is_openid(&self) -> bool {
        self.scopes.iter().any(|s| s == OPENID)
    }
}

/// Phase one: which client, and may we redirect to it at all.
pub fn redirect_target(
    params: &Params,
    client: Option<&ClientView<'_>>,
) -> Result<String, PageError> {
    if params.is_duplicate("client_id") {
        return Err(PageError::RepeatedParameter("client_id"));
    }
    if params.get("client_id").is_none() {
        return Err(PageError::MissingClientId);
    }
    let client = client.ok_or(PageError::UnknownClient)?;
    if params.is_duplicate("redirect_uri") {
        return Err(PageError::RepeatedParameter("redirect_uri"));
    }
    match params.get("redirect_uri") {
        Some(uri)
            if client
                .redirect_uris
                .iter()
                .any(|r| redirect_matches(r, uri)) =>
        {
            Ok(uri.to_string())
        }
        Some(_) => Err(PageError::UnregisteredRedirectUri),
        // RFC 6749 §3.1.2.3: may be omitted when exactly one is registered; OIDC Core
        // §3.1.2.1 requires it for OpenID requests.
        None if client.redirect_uris.len() == 1 && !scope_has_openid(params) => {
            Ok(client.redirect_uris[0].clone())
        }
        None => Err(PageError::MissingRedirectUri),
    }
}

fn scope_has_openid(params: &Params) -> bool {
    params
        .get("scope")
        .is_some_and(|s| s.split(' ').any(|x| x == OPENID))
}

/// Exact string match (OIDC Core §3.1.2.1, RFC 9700 §2.1), except that a loopback IP
/// redirect may use any port (RFC 8252 §7.3): native apps bind an ephemeral port.
pub fn redirect_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(reg), Ok(req)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    let ip_loopback = |u: &Url| {
        matches!(u.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_))) && is_loopback(u)
    };
    reg.scheme() == "http"
        && req.scheme() == "http"
        && ip_loopback(&reg)
        && reg.host() == req.host()
        && reg.path() == req.path()
        && reg.query() == req.query()
        && req.fragment().is_none()
        && req.username().is_empty()
        && req.password().is_none()
}

/// Phase two: everything else. Errors from here on are redirected to `redirect_uri`.
pub fn validate(
    params: &Params,
    client: &ClientView<'_>,
    redirect_uri: String,
) -> Result<AuthorizationRequest, Error> {
    params.check_well_formed()?;
    // OIDC Core §6: request objects are not supported (and so advertised).
    if params.get("request").is_some() {
        return Err(Error::new(
            ErrorCode::RequestNotSupported,
            "request objects are not supported",
        ));
    }
    if params.get("request_uri").is_some() {
        return Err(Error::new(
            ErrorCode::RequestUriNotSupported,
            "request_uri is not supported",
        ));
    }
    if params.get("registration").is_some() {
        return Err(Error::new(
            ErrorCode::RegistrationNotSupported,
            "registration is not supported",
        ));
    }
    match params.get("response_type") {
        None => return Err(Error::invalid_request("response_type is missing")),
        Some("code") => {}
        Some(_) => {
            return Err(Error::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            ));
        }
    }
    if !client.allows_code {
        return Err(Error::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the authorization code grant",
        ));
    }
    let response_mode = match params.get("response_mode") {
        None | Some("query") => ResponseMode::Query,
        Some("form_post") => ResponseMode::FormPost,
        Some(_) => {
            return Err(Error::invalid_request(
                "response_mode must be query or form_post",
            ));
        }
    };
    let scopes = filter_scopes(
        params.get("scope").unwrap_or_default(),
        client.extra_scopes,
        client.first_party,
    );
    if scopes.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidScope,
            "no supported scope was requested",
        ));
    }

    // RFC 7636 §4.3, §4.4.1; RFC 9700 §2.1.1: S256 only; required for public clients.
    let code_challenge = match (
        params.get("code_challenge"),
        params.get("code_challenge_method"),
    ) {
        (Some(c), None | Some("S256")) => {
            if params.get("code_challenge_method").is_none() {
                return Err(Error::invalid_request(
                    "code_challenge_method must be S256 (plain is not supported)",
                ));
            }
            if c.len() != 43 || !pkce::is_valid_verifier_syntax(c) {
                return Err(Error::invalid_request(
                    "code_challenge is not a S256 challenge",
                ));
            }
            Some(c.to_string())
        }
        (Some(_), Some(_)) => {
            return Err(Error::invalid_request(
                "code_challenge_method must be S256 (plain is not supported)",
            ));
        }
        (None, Some(_)) => return Err(Error::invalid_request("code_challenge is missing")),
        (None, None) if client.public => {
            return Err(Error::invalid_request(
                "PKCE (code_challenge, S256) is required for public clients",
            ));
        }
        (None, None) => None,
    };

    let mut prompt = Prompt::default();
    if let Some(values) = params.get("prompt") {
        for value in values.split(' ').filter(|v| !v.is_empty()) {
            match value {
                "none" => prompt.none = true,
                "login" | "select_account" => prompt.login = true,
                "consent" => prompt.consent = true,
                "create" => prompt.create = true,
                // OIDC Core §3.1.2.1: other values may be ignored.
                _ => {}
            }
        }
        if prompt.none && (prompt.login || prompt.consent || prompt.create) {
            return Err(Error::invalid_request(
                "prompt=none cannot be combined with other values",
            ));
        }
    }
    let max_age = match params.get("max_age") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                return Err(Error::invalid_request(
                    "max_age must be a non-negative integer",
                ));
            }
        },
    };
    let claims = match params.get("claims") {
        Some(json) => ClaimsRequest::parse(json)?,
        None => ClaimsRequest::default(),
    };

    Ok(AuthorizationRequest {
        client_id: client.id.to_string(),
        redirect_uri_sent: params.get("redirect_uri").is_some(),
        redirect_uri,
        response_mode,
        scopes,
        state: params.get("state").map(str::to_string),
        nonce: params.get("nonce").map(str::to_string),
        code_challenge,
        prompt,
        max_age,
        id_token_hint: params.get("id_token_hint").map(str::to_string),
        login_hint: params.get("login_hint").map(str::to_string),
        claims,
        signed_in_sid: None,
    })
}

/// The parameters of an authorization response, success or error; `iss` always
/// (RFC 9207 §2), `state` whenever the request had one.
pub fn response_params(
    issuer: &str,
    state: Option<&str>,
    outcome: Result<&str, &Error>,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(4);
    match outcome {
        Ok(code) => out.push(("code", code.to_string())),
        Err(e) => {
            out.push(("error", e.code.as_str().to_string()));
            out.push(("error_description", e.description.to_string()));
        }
    }
    if let Some(state) = state {
        out.push(("state", state.to_string()));
    }
    out.push(("iss", issuer.to_string()));
    out
}

/// `redirect_uri` with the response parameters added to its query (RFC 6749 §4.1.2:
/// keep any query component the registered URI has).
pub fn redirect_url(redirect_uri: &str, params: &[(&'static str, String)]) -> Option<String> {
    let mut url = Url::parse(redirect_uri).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in params {
            query.append_pair(k, v);
        }
    }
    Some(url.to_string())
}

/// Whether the session is too old for `max_age` (OIDC Core §3.1.2.1).
pub fn too_old(auth_time: i64, max_age: Option<i64>, now: i64) -> bool {
    max_age.is_some_and(|m| now.saturating_sub(auth_time) > m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client<'a>(uris: &'a [String], public: bool) -> ClientView<'a> {
        ClientView {
            id: "app",
            public,
            redirect_uris: uris,
            extra_scopes: &[],
            first_party: false,
            allows_code: true,
        }
    }

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn redirect_matching() {
        assert!(redirect_matches(
            "https://a.example/cb",
            "https://a.example/cb"
        ));
        assert!(!redirect_matches(
            "https://a.example/cb",
            "https://a.example/cb/"
        ));
        assert!(!redirect_matches(
            "https://a.example/cb",
            "https://a.example/cb?x=1"
        ));
        assert!(!redirect_matches(
            "https://a.example/cb",
            "https://A.example/cb"
        ));
        assert!(redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:51234/cb"
        ));
        assert!(redirect_matches("http://[::1]:80/cb", "http://[::1]:9/cb"));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5/other"
        ));
        // Port freedom is for loopback IP literals only, not for names.
        assert!(!redirect_matches(
            "http://localhost:3000/cb",
            "http://localhost:3001/cb"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.2/cb"
        ));
    }

    #[test]
    fn phase_one_never_redirects_to_an_unverified_uri() {
        let uris = vec!["https://a.example/cb".to_string()];
        let c = client(&uris, false);
        let p = |q: &str| Params::parse(q.as_bytes());
        assert_eq!(
            redirect_target(&p("redirect_uri=https://a.example/cb"), Some(&c)),
            Err(PageError::MissingClientId)
        );
        assert_eq!(
            redirect_target(&p("client_id=x"), None),
            Err(PageError::UnknownClient)
        );
        assert_eq!(
            redirect_target(
                &p("client_id=app&redirect_uri=https://evil.example/cb"),
                Some(&c)
            ),
            Err(PageError::UnregisteredRedirectUri)
        );
        assert_eq!(
            redirect_target(&p("client_id=app&scope=openid"), Some(&c)),
            Err(PageError::MissingRedirectUri)
        );
        assert_eq!(
            redirect_target(&p("client_id=app&scope=email"), Some(&c)).unwrap(),
            "https://a.example/cb"
        );
        assert_eq!(
            redirect_target(
                &p("client_id=app&client_id=app&redirect_uri=https://a.example/cb"),
                Some(&c)
            ),
            Err(PageError::RepeatedParameter("client_id"))
        );
    }

    #[test]
    fn phase_two_errors() {
        let uris = vec!["https://a.example/cb".to_string()];
        let confidential = client(&uris, false);
        let public = client(&uris, true);
        let base = "client_id=app&redirect_uri=https://a.example/cb";
        let cases: Vec<(&str, String, &ClientView<'_>, ErrorCode)> = vec![
            (
                "no response_type",
                format!("{base}&scope=openid"),
                &confidential,
                ErrorCode::InvalidRequest,
            ),
            (
                "token",
                format!("{base}&scope=openid&response_type=token"),
                &confidential,
                ErrorCode::UnsupportedResponseType,
            ),
            (
                "id_token",
                format!("{base}&scope=openid&response_type=code%20id_token"),
                &confidential,
                ErrorCode::UnsupportedResponseType,
            ),
            (
                "no scope",
                format!("{base}&response_type=code"),
                &confidential,
                ErrorCode::InvalidScope,
            ),
            (
                "only unknown scopes",
                format!("{base}&response_type=code&scope=foo"),
                &confidential,
                ErrorCode::InvalidScope,
            ),
            (
                "plain pkce",
                format!(
                    "{base}&response_type=code&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=plain"
                ),
                &confidential,
                ErrorCode::InvalidRequest,
            ),
            (
                "pkce without method",
                format!("{base}&response_type=code&scope=openid&code_challenge={CHALLENGE}"),
                &confidential,
                ErrorCode::InvalidRequest,
            ),
            (
                "short challenge",
                format!(
                    "{base}&response_type=code&scope=openid&code_challenge=abc&code_challenge_method=S256"
                ),
                &confidential,
                ErrorCode::InvalidRequest,
            ),
            (
                "public without pkce",
                format!("{base}&response_type=code&scope=openid"),
                &public,
                ErrorCode::InvalidRequest,
            ),
            (
                "request object",
                format!("{base}&response_type=code&scope=openid&request=eyJ"),
                &confidential,
                ErrorCode::RequestNotSupported,
            ),
            (
                "request_uri",
                format!("{base}&response_type=code&scope=openid&request_uri=https://x"),
                &confidential,
                ErrorCode::RequestUriNotSupported,
            ),
            (
                "prompt none+login",
                format!("{base}&response_type=code&scope=openid&prompt=none%20login"),
                &confidential,
                ErrorCode::InvalidRequest,
            ),
            (
                "bad max_age",
                format!("{base}&response_type=code&scope=openid&max_age=-1"),
                &confidential,
                ErrorCode::InvalidRequest,
            ),
            (
                "bad claims",
                format!("{base}&response_type=code&scope=openid&claims=nope"),
                &confidential,
                ErrorCode::InvalidRequest,
            ),
            (
                "fragment mode",
                format!("{base}&response_type=code&scope=openid&response_mode=fragment"),
                &confidential,
                ErrorCode::InvalidRequest,
            ),
            (
                "repeated state",
                format!("{base}&response_type=code&scope=openid&state=a&state=b"),
                &confidential,
                ErrorCode::InvalidRequest,
            ),
        ];
        for (case, query, c, want) in cases {
            let params = Params::parse(query.as_bytes());
            let err = validate(&params, c, "https://a.example/cb".into()).unwrap_err();
            assert_eq!(err.code, want, "{case}: {err}");
        }
    }

    #[test]
    fn a_good_request() {
        let uris = vec!["https://a.example/cb".to_string()];
        let c = client(&uris, true);
        let q = format!(
            "client_id=app&redirect_uri=https://a.example/cb&response_type=code&scope=openid%20email%20bogus&state=s&nonce=n&code_challenge={CHALLENGE}&code_challenge_method=S256&prompt=consent&max_age=0&response_mode=form_post"
        );
        let r = validate(
            &Params::parse(q.as_bytes()),
            &c,
            "https://a.example/cb".into(),
        )
        .unwrap();
        assert_eq!(r.scopes, vec!["openid", "email"]);
        assert_eq!(r.state.as_deref(), Some("s"));
        assert_eq!(r.nonce.as_deref(), Some("n"));
        assert_eq!(r.code_challenge.as_deref(), Some(CHALLENGE));
        assert!(r.prompt.consent && !r.prompt.none);
        assert_eq!(r.max_age, Some(0));
        assert_eq!(r.response_mode, ResponseMode::FormPost);
        assert!(r.is_openid());
    }

    #[test]
    fn responses_carry_iss_and_state_and_keep_the_redirect_query() {
        let params = response_params("https://id.example", Some("xyz"), Ok("c0de"));
        let url = redirect_url("https://a.example/cb?app=1", &params).unwrap();
        assert_eq!(
            url,
            "https://a.example/cb?app=1&code=c0de&state=xyz&iss=https%3A%2F%2Fid.example"
        );
        let err = Error::new(ErrorCode::AccessDenied, "no");
        let params = response_params("https://id.example", None, Err(&err));
        assert_eq!(params[0], ("error", "access_denied".to_string()));
        assert!(params.iter().any(|(k, _)| *k == "iss"));
        assert!(!params.iter().any(|(k, _)| *k == "state"));
    }

    #[test]
    fn max_age() {
        assert!(!too_old(100, None, 10_000));
        assert!(!too_old(100, Some(60), 160));
        assert!(too_old(100, Some(60), 161));
        assert!(too_old(100, Some(0), 101));
    }
}
