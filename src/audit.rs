//! The audit trail: who signed in or failed to, which tokens were issued, what was
//! revoked, changed or refused. Handlers `record` an event and go on; a writer task
//! appends queued events in batches (one statement per batch), so the trail costs a
//! request a channel send rather than a database write. Events are never updated;
//! `[audit] retention_days` bounds how long they are kept.
//!
//! What never goes in: passwords, tokens, codes, secrets. Only `detail` keys written
//! here (reason codes, grant types, scopes, field names and non-secret values).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::storage::{AuditRecord, Store, unix_now};

/// Events waiting for the writer; beyond this, events are dropped (and counted) rather
/// than slowing sign-ins down when the database lags.
const QUEUE: usize = 10_000;
/// Events per INSERT.
const BATCH: usize = 500;
/// How long the writer lets events gather after the first one before it writes. Under
/// load this turns thousands of one-row transactions (each a wake-up of the writer and
/// of the database's worker thread) into a few large ones; an event reaches the table
/// at most this much later.
const LINGER: Duration = Duration::from_millis(100);
const USER_AGENT_MAX: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// What happened; the request's context (IP, user agent, request id) is added by
/// [`Audit::record`].
#[derive(Debug, Clone)]
pub struct Event {
    kind: &'static str,
    outcome: Outcome,
    actor: Option<String>,
    subject: Option<String>,
    client_id: Option<String>,
    detail: Map<String, Value>,
}

impl Event {
    pub fn success(kind: &'static str) -> Self {
        Self::new(kind, Outcome::Success)
    }

    pub fn failure(kind: &'static str) -> Self {
        Self::new(kind, Outcome::Failure)
    }

    fn new(kind: &'static str, outcome: Outcome) -> Self {
        Self {
            kind,
            outcome,
            actor: None,
            subject: None,
            client_id: None,
            detail: Map::new(),
        }
    }

    /// Who acted: a user's `sub`, `client:<id>`, or `cli`.
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Whom or what it concerns: a user's `sub`, `client:<id>`, `key:<kid>`.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The user acting on themselves (sign-in, password change).
    pub fn user(self, sub: &str) -> Self {
        self.actor(sub).subject(sub)
    }

    pub fn client(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.detail.insert(key.to_string(), value.into());
        self
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    fn into_record(self, context: &Context, time: i64) -> AuditRecord {
        AuditRecord {
            id: 0,
            time,
            kind: self.kind.to_string(),
            outcome: self.outcome.as_str().to_string(),
            actor: self.actor,
            subject: self.subject,
            client_id: self.client_id,
            ip: context.ip.clone(),
            user_agent: context.user_agent.clone(),
            request_id: context.request_id.clone(),
            detail: Value::Object(self.detail).to_string(),
        }
    }
}

/// Where a request came from, as far as the audit trail cares.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl Context {
    pub fn new(
        ip: Option<std::net::IpAddr>,
        user_agent: Option<&str>,
        request_id: Option<&str>,
    ) -> Self {
        Self {
            ip: ip.map(|ip| ip.to_string()),
            user_agent: user_agent.map(|ua| truncate(ua, USER_AGENT_MAX)),
            request_id: request_id.map(|id| truncate(id, 64)),
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[derive(Clone)]
pub struct Audit {
    inner: Arc<Inner>,
}

struct Inner {
    tx: flume::Sender<AuditRecord>,
    rx: flume::Receiver<AuditRecord>,
    dropped: AtomicU64,
    recorded: AtomicU64,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("queued", &self.inner.rx.len())
            .finish_non_exhaustive()
    }
}

impl Default for Audit {
    fn default() -> Self {
        Self::new()
    }
}

impl Audit {
    pub fn new() -> Self {
        let (tx, rx) = flume::bounded(QUEUE);
        Self {
            inner: Arc::new(Inner {
                tx,
                rx,
                dropped: AtomicU64::new(0),
                recorded: AtomicU64::new(0),
            }),
        }
    }

    /// Queues an event; never waits. A full queue drops it with a warning.
    pub fn record(&self, context: &Context, event: Event) {
        let kind = event.kind;
        match self
            .inner
            .tx
            .try_send(event.into_record(context, unix_now()))
        {
            Ok(()) => {
                self.inner.recorded.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(event = kind, "audit queue full: event dropped");
            }
        }
    }

    /// Events dropped because the queue was full (a metric).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Events waiting to be written (a metric).
    pub fn queued(&self) -> usize {
        self.inner.rx.len()
    }

    /// Appends queued events until `stop` is notified, then writes what is left.
    pub async fn run_writer(self, store: Store, stop: Arc<tokio::sync::Notify>) {
        loop {
            let first = tokio::select! {
                first = self.inner.rx.recv_async() => match first {
                    Ok(first) => first,
                    Err(_) => return,
                },
                () = stop.notified() => break,
            };
            // While the writer sleeps here no sender has to wake it.
            let mut stopping = false;
            if self.inner.rx.len() + 1 < BATCH {
                tokio::select! {
                    () = tokio::time::sleep(LINGER) => {}
                    () = stop.notified() => stopping = true,
                }
            }
            let mut batch = vec![first];
            batch.extend(self.inner.rx.try_iter().take(BATCH - 1));
            write(&store, &batch).await;
            if stopping {
                break;
            }
        }
        self.flush(&store).await;
    }

    /// Writes everything queued now (shutdown, and the CLI).
    pub async fn flush(&self, store: &Store) {
        loop {
            let batch: Vec<AuditRecord> = self.inner.rx.try_iter().take(BATCH).collect();
            if batch.is_empty() {
                return;
            }
            write(store, &batch).await;
        }
    }
}

async fn write(store: &Store, batch: &[AuditRecord]) {
    // One retry: a busy SQLite writer or a PostgreSQL failover should not cost events.
    for attempt in 0..2 {
        match store.insert_audit_events(batch).await {
            Ok(()) => return,
            Err(e) if attempt == 0 => {
                tracing::warn!(error = %e, events = batch.len(), "audit events not written; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "audit events lost");
            }
        }
    }
}

/// Writes one event at once (the CLI, which has no writer task).
pub async fn write_now(store: &Store, event: Event) -> Result<(), crate::storage::StoreError> {
    store
        .insert_audit_events(&[event.into_record(&Context::default(), unix_now())])
        .await
}

/// An event as the admin API and `audit tail --json` show it.
pub fn to_json(event: &AuditRecord) -> Value {
    let detail: Value =
        serde_json::from_str(&event.detail).unwrap_or_else(|_| Value::Object(Map::new()));
    serde_json::json!({
        "id": event.id.to_string(),
        "time": rfc3339(event.time),
        "type": event.kind,
        "outcome": event.outcome,
        "actor": event.actor,
        "subject": event.subject,
        "client_id": event.client_id,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "detail": detail,
    })
}

/// Seconds since the epoch as RFC 3339 (UTC), for `audit tail` and the admin API.
pub fn rfc3339(time: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(time)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| time.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn records_carry_context_and_json_detail() {
        let ctx = Context::new(
            Some("203.0.113.9".parse().unwrap()),
            Some("curl/8"),
            Some("req-1"),
        );
        let r = Event::failure("login.failed")
            .detail("reason", "bad_password")
            .detail("username", "alice")
            .into_record(&ctx, 1_700_000_000);
        assert_eq!(r.outcome, "failure");
        assert_eq!(r.ip.as_deref(), Some("203.0.113.9"));
        let detail: Value = serde_json::from_str(&r.detail).unwrap();
        assert_eq!(detail["reason"], "bad_password");
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
