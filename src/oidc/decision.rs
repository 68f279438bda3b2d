//! The authorization decision: what a pending request still needs (sign-up, sign-in,
//! consent) or whether a code may be issued. One pure function of the request, the
//! session, the consent on record and `now`, called by every step of the flow (the
//! authorization endpoint, the login page, the consent page and its form), so that no
//! page can skip a rule another page enforces.

use std::collections::BTreeSet;

use super::authorize::{AuthorizationRequest, too_old};
use super::claims::claims_of_scope;
use super::error::{Error, ErrorCode};

/// The session behind the browser's cookie, as the decision needs it.
#[derive(Debug, Clone, Copy)]
pub struct SessionFacts<'a> {
    pub sid: &'a str,
    pub user_id: &'a str,
    pub auth_time: i64,
}

/// Everything the decision depends on.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub request: &'a AuthorizationRequest,
    pub session: Option<SessionFacts<'a>>,
    /// The subject of a verified `id_token_hint`.
    pub hint_sub: Option<&'a str>,
    pub first_party: bool,
    pub registration_open: bool,
    /// The consent items (see [`consent_items`]) this user granted this client so far.
    pub consented: &'a [String],
    /// The user has just allowed this very request on the consent page.
    pub consent_given_now: bool,
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Register,
    Login,
    Consent,
    Issue,
    Refuse(Error),
}

/// The prefix of a consent item that names a claim asked for by name (OIDC Core §5.5).
pub const CLAIM_ITEM: &str = "claim:";

/// What consent must cover for `request`: its scopes, and every claim requested by name
/// in the `claims` parameter that none of its scopes releases (OIDC Core §5.5: a
/// claim asked for by name is released only with the user's consent to it).
pub fn consent_items(request: &AuthorizationRequest) -> Vec<String> {
    let by_scope: BTreeSet<&str> = request
        .scopes
        .iter()
        .flat_map(|s| claims_of_scope(s).iter().copied())
        .collect();
    let mut items: BTreeSet<String> = request.scopes.iter().cloned().collect();
    for claim in request
        .claims
        .id_token
        .iter()
        .chain(request.claims.userinfo.iter())
    {
        if !by_scope.contains(claim.as_str()) {
            items.insert(format!("{CLAIM_ITEM}{claim}"));
        }
    }
    items.into_iter().collect()
}

/// Whether the consent on record (each entry a space-separated item set) covers every
/// item the request needs.
pub fn covered(needed: &[String], consented: &[String]) -> bool {
    let granted: BTreeSet<&str> = consented
        .iter()
        .flat_map(|g| g.split(' ').filter(|s| !s.is_empty()))
        .collect();
    needed.iter().all(|item| granted.contains(item.as_str()))
}

/// The next step for a validated, pending request.
pub fn next_step(f: &Facts<'_>) -> Step {
    let request = f.request;
    // The user authenticated on the login page for this very request: that meets
    // `prompt=login` and `max_age` however long the remaining steps take.
    let fresh = f
        .session
        .is_some_and(|s| request.signed_in_sid.as_deref() == Some(s.sid));
    // prompt=create: sign-up first, whoever is signed in.
    if request.prompt.create && !fresh && f.registration_open {
        return Step::Register;
    }
    if let (Some(s), Some(hint)) = (f.session, f.hint_sub)
        && fresh
        && s.user_id != hint
    {
        // OIDC Core §3.1.2.1 id_token_hint: the end-user who signed in is not the one
        // the client expects; answer an error, never a code for another user.
        return Step::Refuse(Error::new(
            ErrorCode::LoginRequired,
            "the user who signed in is not the one id_token_hint names",
        ));
    }
    // OIDC Core §3.1.2.1 prompt=login, max_age; §3.1.2.2: a session of another user
    // than id_token_hint names cannot answer the request.
    let usable = f.session.filter(|s| {
        fresh
            || !(request.prompt.login
                || too_old(s.auth_time, request.max_age, f.now)
                || f.hint_sub.is_some_and(|h| h != s.user_id))
    });
    if usable.is_none() {
        if request.prompt.none {
            // OIDC Core §3.1.2.6: no UI may be shown.
            return Step::Refuse(Error::new(
                ErrorCode::LoginRequired,
                "the user must sign in",
            ));
        }
        return Step::Login;
    }
    if f.first_party || f.consent_given_now {
        return Step::Issue;
    }
    // OIDC Core §3.1.2.4; prompt=consent asks again even with consent on record.
    if request.prompt.consent || !covered(&consent_items(request), f.consented) {
        if request.prompt.none {
            return Step::Refuse(Error::new(
                ErrorCode::ConsentRequired,
                "the user must consent",
            ));
        }
        return Step::Consent;
    }
    Step::Issue
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::authorize::{Prompt, ResponseMode};
    use crate::oidc::claims::ClaimsRequest;

    fn request() -> AuthorizationRequest {
        AuthorizationRequest {
            client_id: "app".into(),
            redirect_uri: "https://a.example/cb".into(),
            redirect_uri_sent: true,
            response_mode: ResponseMode::Query,
            scopes: vec!["openid".into()],
            state: None,
            nonce: None,
            code_challenge: None,
            prompt: Prompt::default(),
            max_age: None,
            id_token_hint: None,
            login_hint: None,
            claims: ClaimsRequest::default(),
            signed_in_sid: None,
        }
    }

    const ALICE: SessionFacts<'static> = SessionFacts {
        sid: "s1",
        user_id: "alice",
        auth_time: 1000,
    };

    fn facts<'a>(request: &'a AuthorizationRequest, consented: &'a [String]) -> Facts<'a> {
        Facts {
            request,
            session: Some(ALICE),
            hint_sub: None,
            first_party: false,
            registration_open: true,
            consented,
            consent_given_now: false,
            now: 2000,
        }
    }

    #[test]
    fn claims_asked_by_name_need_their_own_consent() {
        let mut r = request();
        let on_record = vec!["openid".to_string()];
        assert_eq!(next_step(&facts(&r, &on_record)), Step::Issue);
        r.claims.id_token = vec!["email".into()];
        r.claims.userinfo = vec!["roles".into()];
        assert_eq!(consent_items(&r), ["claim:email", "claim:roles", "openid"]);
        assert_eq!(next_step(&facts(&r, &on_record)), Step::Consent);
        r.prompt.none = true;
        assert!(matches!(
            next_step(&facts(&r, &on_record)),
            Step::Refuse(e) if e.code == ErrorCode::ConsentRequired
        ));
        // A claim its scope carries needs no separate item.
        r.scopes.push("email".into());
        assert_eq!(consent_items(&r), ["claim:roles", "email", "openid"]);
        let granted = vec!["openid".to_string(), "claim:roles email".to_string()];
        assert_eq!(next_step(&facts(&r, &granted)), Step::Issue);
    }

    #[test]
    fn first_party_and_just_given_consent_skip_the_page() {
        let mut r = request();
        r.prompt.consent = true;
        let mut f = facts(&r, &[]);
        assert_eq!(next_step(&f), Step::Consent);
        f.consent_given_now = true;
        assert_eq!(next_step(&f), Step::Issue);
        f.consent_given_now = false;
        f.first_party = true;
        assert_eq!(next_step(&f), Step::Issue);
    }

    #[test]
    fn consent_never_stands_in_for_a_needed_login() {
        let mut r = request();
        r.prompt.login = true;
        let mut f = facts(&r, &[]);
        f.consent_given_now = true;
        assert_eq!(next_step(&f), Step::Login);
        r.prompt.login = false;
        r.max_age = Some(60);
        let mut f = facts(&r, &[]);
        f.consent_given_now = true;
        assert_eq!(next_step(&f), Step::Login);
        // Signed in for this request: met, however long consent takes.
        r.signed_in_sid = Some("s1".into());
        let mut f = facts(&r, &[]);
        f.consent_given_now = true;
        assert_eq!(next_step(&f), Step::Issue);
        // ...but only by that session.
        let mut f = facts(&r, &[]);
        f.session = Some(SessionFacts { sid: "s2", ..ALICE });
        assert_eq!(next_step(&f), Step::Login);
        f.session = None;
        assert_eq!(next_step(&f), Step::Login);
    }

    #[test]
    fn id_token_hint_names_the_user() {
        let r = request();
        let mut f = facts(&r, &[]);
        f.first_party = true;
        f.hint_sub = Some("bob");
        assert_eq!(next_step(&f), Step::Login);
        let mut r = request();
        r.signed_in_sid = Some("s1".into());
        let mut f = facts(&r, &[]);
        f.first_party = true;
        f.hint_sub = Some("bob");
        assert!(matches!(
            next_step(&f),
            Step::Refuse(e) if e.code == ErrorCode::LoginRequired
        ));
        f.hint_sub = Some("alice");
        assert_eq!(next_step(&f), Step::Issue);
    }

    #[test]
    fn prompt_none_and_create() {
        let mut r = request();
        r.prompt.none = true;
        let mut f = facts(&r, &[]);
        f.session = None;
        assert!(matches!(
            next_step(&f),
            Step::Refuse(e) if e.code == ErrorCode::LoginRequired
        ));
        let mut r = request();
        r.prompt.create = true;
        let mut f = facts(&r, &[]);
        assert_eq!(next_step(&f), Step::Register);
        f.registration_open = false;
        assert_eq!(next_step(&f), Step::Consent);
    }
}
