//! OpenID Connect Back-Channel Logout 1.0: delivering logout tokens.
//!
//! Ending a session queues one delivery per client that took part in it (in the same
//! transaction, see `storage::backchannel`), so nothing is lost on a crash or restart.
//! This task sends them: a fresh logout token per attempt (§2.4), a short timeout, no
//! redirects followed, and exponential retries for about three hours. Several instances
//! may run it against one database: a delivery is claimed before it is sent.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::keys::KeyRing;
use crate::storage::{Delivery, Store, unix_now};

/// Back-Channel Logout 1.0 §2.4: the `typ` of a logout token.
pub const LOGOUT_TOKEN_TYP: &str = "logout+jwt";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// How long a logout token is valid; a retry signs a new one.
const TOKEN_SECONDS: i64 = 120;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a claimed delivery is left to this process before another may take it.
const CLAIM_SECONDS: i64 = 30;
const BATCH: i64 = 20;
/// Seconds to wait after attempt n (1-based) failed; after the last, the delivery is
/// dropped and logged.
const BACKOFF: [i64; 10] = [1, 5, 30, 60, 300, 600, 1200, 1800, 3600, 3600];

/// The claims of one logout token (§2.4): no `nonce`, an `events` member, `sid` and
/// `sub` both.
pub fn logout_claims(issuer: &str, delivery: &Delivery, now: i64) -> Map<String, Value> {
    let claims = json!({
        "iss": issuer,
        "aud": delivery.client_id,
        "iat": now,
        "exp": now + TOKEN_SECONDS,
        "jti": uuid::Uuid::new_v4().to_string(),
        "events": { EVENT: {} },
        "sub": delivery.sub,
        "sid": delivery.sid,
    });
    match claims {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// When to try again after `attempts` failures; `None` to give up.
pub fn retry_after(attempts: i64) -> Option<i64> {
    usize::try_from(attempts - 1)
        .ok()
        .and_then(|i| BACKOFF.get(i))
        .copied()
}

#[derive(Clone)]
pub struct LogoutSender {
    store: Store,
    keys: KeyRing,
    issuer: String,
    http: reqwest::Client,
    wake: std::sync::Arc<tokio::sync::Notify>,
}

impl LogoutSender {
    pub fn new(
        store: Store,
        keys: KeyRing,
        issuer: &str,
        wake: std::sync::Arc<tokio::sync::Notify>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            // §2.5: the RP answers; a redirect is not an answer to follow.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("oxidp back-channel logout")
            .build()?;
        Ok(Self {
            store,
            keys,
            issuer: issuer.to_string(),
            http,
            wake,
        })
    }

    /// Runs until the process stops: delivers what is due, then waits to be woken (a
    /// session ended here) or for the next poll (another instance, or a retry).
    pub async fn run(self, poll: Duration) {
        loop {
            if let Err(e) = self.deliver_due().await {
                tracing::warn!(error = %e, "back-channel logout deliveries could not be read");
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    async fn deliver_due(&self) -> Result<(), crate::storage::StoreError> {
        loop {
            let now = unix_now();
            let due = self.store.due_deliveries(now, BATCH).await?;
            if due.is_empty() {
                return Ok(());
            }
            // Each client is sent to at once, so one slow receiver delays no other.
            let mut sends = tokio::task::JoinSet::new();
            for delivery in due {
                if self
                    .store
                    .claim_delivery(&delivery, now + CLAIM_SECONDS)
                    .await?
                {
                    let sender = self.clone();
                    sends.spawn(async move { sender.deliver(delivery).await });
                }
            }
            if sends.is_empty() {
                return Ok(());
            }
            while let Some(result) = sends.join_next().await {
                if let Ok(Err(e)) = result {
                    return Err(e);
                }
            }
        }
    }

    async fn deliver(&self, delivery: Delivery) -> Result<(), crate::storage::StoreError> {
        let now = unix_now();
        let outcome = match self.keys.current().sign(
            Some(LOGOUT_TOKEN_TYP),
            logout_claims(&self.issuer, &delivery, now),
        ) {
            Err(e) => Err(format!("signing: {e}")),
            Ok(token) => match self
                .http
                .post(&delivery.uri)
                .form(&[("logout_token", token.as_str())])
                .send()
                .await
            {
                // §2.8: 200 (or 204) means the RP logged the session out.
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                Err(e) => Err(e.without_url().to_string()),
            },
        };
        match outcome {
            Ok(()) => self.store.delivery_done(&delivery.id).await,
            Err(error) => {
                let attempts = delivery.attempts + 1;
                match retry_after(attempts) {
                    Some(wait) => {
                        self.store
                            .delivery_failed(&delivery.id, attempts, now + wait, &error)
                            .await
                    }
                    None => {
                        tracing::warn!(
                            client_id = %delivery.client_id,
                            attempts,
                            error = %error,
                            "back-channel logout given up"
                        );
                        self.store.delivery_done(&delivery.id).await
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logout_tokens_carry_what_section_2_4_asks_and_no_nonce() {
        let d = Delivery {
            id: "s1 app".into(),
            client_id: "app".into(),
            uri: "https://app.example/bc".into(),
            sub: "u1".into(),
            sid: "s1".into(),
            attempts: 0,
            next_attempt_at: 0,
        };
        let c = logout_claims("https://op.example", &d, 1000);
        assert_eq!(c["iss"], "https://op.example");
        assert_eq!(c["aud"], "app");
        assert_eq!(c["sub"], "u1");
        assert_eq!(c["sid"], "s1");
        assert_eq!(c["exp"], 1120);
        assert!(c["events"][EVENT].is_object());
        assert!(!c.contains_key("nonce"));
        assert_ne!(
            c["jti"],
            logout_claims("https://op.example", &d, 1000)["jti"]
        );
    }

    #[test]
    fn retries_back_off_then_stop() {
        assert_eq!(retry_after(1), Some(1));
        assert_eq!(retry_after(2), Some(5));
        assert_eq!(retry_after(10), Some(3600));
        assert_eq!(retry_after(11), None);
        assert_eq!(retry_after(0), None);
    }
}
