//! Authorization request parsing and validation (RFC 6749 §4.1.1, OIDC Core §3.1.2.1):
//! the raw query string or form body goes through `Params::parse`, phase one
//! (`redirect_target`: may we redirect at all) and phase two (`validate`), then the
//! response is built as the handler builds it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxidp::oidc::authorize::{
    ClientView, redirect_matches, redirect_target, redirect_url, response_params, validate,
};
use oxidp::oidc::params::Params;
use url::Url;

const ISSUER: &str = "https://id.example";

fuzz_target!(|data: &[u8]| {
    let params = Params::parse(data);
    let registered = vec![
        "https://rp.example/cb".to_string(),
        "http://127.0.0.1/native".to_string(),
        "https://rp.example/cb?tenant=1".to_string(),
    ];
    let extra = vec!["api:read".to_string()];
    // An unknown client is never redirected to (RFC 6749 §4.1.2.1).
    assert!(redirect_target(&params, None).is_err());
    for (public, first_party, uris) in [
        (false, false, &registered[..]),
        (true, true, &registered[..1]),
    ] {
        let client = ClientView {
            id: "rp",
            public,
            redirect_uris: uris,
            extra_scopes: &extra,
            first_party,
            allows_code: true,
        };
        let Ok(uri) = redirect_target(&params, Some(&client)) else {
            continue;
        };
        // Only a registered URI (or its loopback any-port variant, RFC 8252 §7.3) may
        // receive the browser.
        assert!(
            uris.iter().any(|r| redirect_matches(r, &uri)),
            "redirect to unregistered {uri:?}"
        );
        let outcome = validate(&params, &client, uri.clone());
        let state = params.get("state");
        let response = match &outcome {
            Ok(_) => response_params(ISSUER, state, Ok("code")),
            Err(e) => response_params(ISSUER, state, Err(e)),
        };
        // RFC 9207: `iss` in every response, success or error.
        assert!(response.iter().any(|(k, v)| *k == "iss" && v == ISSUER));
        // A URI that passed phase one can always carry the response.
        let url = redirect_url(&uri, &response).expect("registered URI takes a response");
        // The response goes to that same place (the URL may be normalised: default
        // port dropped, scheme lower-cased).
        let (sent, target) = (Url::parse(&url).unwrap(), Url::parse(&uri).unwrap());
        assert_eq!(
            (
                sent.scheme(),
                sent.host(),
                sent.port_or_known_default(),
                sent.path()
            ),
            (
                target.scheme(),
                target.host(),
                target.port_or_known_default(),
                target.path()
            )
        );
        if let Ok(request) = outcome {
            assert!(!request.scopes.is_empty());
            assert_eq!(request.client_id, "rp");
            // RFC 7636 / RFC 9700 §2.1.1: PKCE is required for public clients.
            if public {
                assert!(request.code_challenge.is_some());
            }
            if let Some(challenge) = &request.code_challenge {
                assert_eq!(challenge.len(), 43);
            }
            assert!(request.max_age.is_none_or(|m| m >= 0));
            assert!(!(request.prompt.none && request.prompt.login));
        }
    }
    // Exact matching is reflexive for any string, registered or not.
    if let Ok(s) = std::str::from_utf8(data)
        && s.len() < 512
    {
        assert!(redirect_matches(s, s));
    }
});
