//! Clients kept in memory for a few seconds after they are read.
//!
//! Every token, introspection and authorization request starts by looking its client
//! up; clients change rarely (CLI, config at start, admin API), so reading them from
//! the database each time only costs throughput. A client is reused for
//! `database.client_cache_seconds`; a change made by another process (the CLI) reaches
//! a running server within that time. Unknown ids are never cached, so a new client is
//! seen at once and random ids sent by an attacker cannot fill the map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::storage::{ClientRecord, Store, StoreError};

/// Above this many cached clients, expired entries are dropped; if none have expired,
/// the new one is simply not cached. Deployments have far fewer clients than this.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
pub struct ClientCache {
    store: Store,
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<ClientRecord>)>>,
}

impl ClientCache {
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The client with this id, from memory while it is fresh, else from the database.
    pub async fn get(&self, id: &str) -> Result<Option<Arc<ClientRecord>>, StoreError> {
        if let Some(client) = self.fresh(id, Instant::now()) {
            return Ok(Some(client));
        }
        let Some(client) = self.store.get_client(id).await? else {
            self.forget(id);
            return Ok(None);
        };
        let client = Arc::new(client);
        self.remember(&client, Instant::now());
        Ok(Some(client))
    }

    /// Drops a client, so this process sees its change or removal at once.
    pub fn forget(&self, id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(id);
        }
    }

    fn fresh(&self, id: &str, now: Instant) -> Option<Arc<ClientRecord>> {
        let entries = self.entries.lock().ok()?;
        let (read_at, client) = entries.get(id)?;
        (now.duration_since(*read_at) < self.ttl).then(|| client.clone())
    }

    fn remember(&self, client: &Arc<ClientRecord>, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&client.id) {
            let ttl = self.ttl;
            entries.retain(|_, (read_at, _)| now.duration_since(*read_at) < ttl);
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(client.id.clone(), (now, client.clone()));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> ClientRecord {
        ClientRecord {
            id: id.into(),
            name: None,
            secret_hash: None,
            token_endpoint_auth_method: "none".into(),
            grant_types: vec![],
            scopes: vec![],
            first_party: false,
            introspect_any: false,
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            source: "cli".into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    async fn cache(ttl: u64) -> (tempfile::TempDir, ClientCache) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = Store::connect(&url.into(), 2).await.unwrap();
        store.migrate().await.unwrap();
        (dir, ClientCache::new(store, Duration::from_secs(ttl)))
    }

    #[tokio::test]
    async fn fresh_entries_are_served_from_memory_until_they_expire() {
        let (_dir, cache) = cache(5).await;
        let t0 = Instant::now();
        cache.remember(&Arc::new(record("a")), t0);
        assert!(cache.fresh("a", t0 + Duration::from_secs(4)).is_some());
        assert!(cache.fresh("a", t0 + Duration::from_secs(5)).is_none());
        assert!(cache.fresh("b", t0).is_none());
        cache.forget("a");
        assert!(cache.fresh("a", t0).is_none());
    }

    #[tokio::test]
    async fn a_zero_ttl_caches_nothing_and_the_map_stays_bounded() {
        let (_dir, off) = cache(0).await;
        off.remember(&Arc::new(record("a")), Instant::now());
        assert_eq!(off.len(), 0);

        let (_dir, cache) = cache(5).await;
        let t0 = Instant::now();
        for i in 0..MAX_ENTRIES + 10 {
            cache.remember(&Arc::new(record(&format!("c{i}"))), t0);
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        // Once they have expired, room is made for new ones.
        let later = t0 + Duration::from_secs(6);
        cache.remember(&Arc::new(record("new")), later);
        assert_eq!(cache.len(), 1);
        assert!(cache.fresh("new", later).is_some());
    }

    #[tokio::test]
    async fn unknown_ids_are_not_cached_and_new_clients_are_seen_at_once() {
        let (_dir, cache) = cache(5).await;
        assert!(cache.get("later").await.unwrap().is_none());
        assert_eq!(cache.len(), 0);
        let mut c = record("later");
        c.token_endpoint_auth_method = "none".into();
        cache.store.insert_client(&c).await.unwrap();
        assert_eq!(cache.get("later").await.unwrap().unwrap().id, "later");
        assert_eq!(cache.len(), 1);
    }
}
