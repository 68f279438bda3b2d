use sqlx::Row;

use super::{Result, Store, StoreError, dispatch, dispatch_write, on_unique};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub id: String,
    pub name: Option<String>,
    /// SHA-256 of the secret; `None` for a public client.
    pub secret_hash: Option<Vec<u8>>,
    pub token_endpoint_auth_method: String,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub first_party: bool,
    pub introspect_any: bool,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// Back-Channel Logout 1.0 §2.2: where logout tokens are POSTed.
    pub backchannel_logout_uri: Option<String>,
    /// `config` for `[[clients]]` entries, `cli` or `api` otherwise.
    pub source: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ClientRecord {
    /// A public client (`token_endpoint_auth_method = none`): it holds no secret, so it
    /// proves nothing about itself (RFC 6749 §2.1). A record with either mark counts.
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none() || self.token_endpoint_auth_method == "none"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    Login,
    PostLogout,
}

impl RedirectKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::PostLogout => "post_logout",
        }
    }
}

const CLIENT_COLUMNS: &str = "SELECT id, name, secret_hash, token_endpoint_auth_method, \
     grant_types, scopes, first_party, introspect_any, backchannel_logout_uri, source, created_at, \
     updated_at FROM clients";

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

macro_rules! client_from_row {
    ($row:expr) => {{
        let row = $row;
        ClientRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            secret_hash: row.try_get("secret_hash")?,
            token_endpoint_auth_method: row.try_get("token_endpoint_auth_method")?,
            grant_types: words(&row.try_get::<String, _>("grant_types")?),
            scopes: words(&row.try_get::<String, _>("scopes")?),
            first_party: row.try_get("first_party")?,
            introspect_any: row.try_get("introspect_any")?,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            backchannel_logout_uri: row.try_get("backchannel_logout_uri")?,
            source: row.try_get("source")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        }
    }};
}

/// Writes the row and its redirect URIs inside the caller's transaction.
macro_rules! write_client {
    ($tx:expr, $c:expr, $now:expr, $upsert:expr) => {{
        let c = $c;
        let sql = if $upsert {
            "INSERT INTO clients (id, name, secret_hash, token_endpoint_auth_method, grant_types, \
             scopes, first_party, introspect_any, source, created_at, updated_at, backchannel_logout_uri) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, secret_hash = excluded.secret_hash, \
             token_endpoint_auth_method = excluded.token_endpoint_auth_method, \
             grant_types = excluded.grant_types, scopes = excluded.scopes, \
             first_party = excluded.first_party, introspect_any = excluded.introspect_any, \
             source = excluded.source, updated_at = excluded.updated_at, \
             backchannel_logout_uri = excluded.backchannel_logout_uri"
        } else {
            "INSERT INTO clients (id, name, secret_hash, token_endpoint_auth_method, grant_types, \
             scopes, first_party, introspect_any, source, created_at, updated_at, backchannel_logout_uri) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)"
        };
        sqlx::query(sql)
            .bind(&c.id)
            .bind(&c.name)
            .bind(&c.secret_hash)
            .bind(&c.token_endpoint_auth_method)
            .bind(c.grant_types.join(" "))
            .bind(c.scopes.join(" "))
            .bind(c.first_party)
            .bind(c.introspect_any)
            .bind(&c.source)
            .bind($now)
            .bind(&c.backchannel_logout_uri)
            .execute(&mut *$tx)
            .await
            .map_err(|e| on_unique(e, |_| "client id"))?;
        sqlx::query("DELETE FROM client_redirect_uris WHERE client_id = $1")
            .bind(&c.id)
            .execute(&mut *$tx)
            .await?;
        for (kind, uris) in [
            (RedirectKind::Login, &c.redirect_uris),
            (RedirectKind::PostLogout, &c.post_logout_redirect_uris),
        ] {
            for (position, uri) in uris.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO client_redirect_uris (client_id, kind, uri, position) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(&c.id)
                .bind(kind.as_str())
                .bind(uri)
                .bind(position as i64)
                .execute(&mut *$tx)
                .await?;
            }
        }
    }};
}

impl Store {
    /// Registers a new client; `Conflict("client id")` when the id exists.
    pub async fn insert_client(&self, client: &ClientRecord) -> Result<()> {
        let now = super::unix_now();
        dispatch_write!(self, pool => {
            let mut tx = pool.begin().await?;
            write_client!(tx, client, now, false);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Creates or replaces clients (the `[[clients]]` of config) in one transaction.
    pub async fn upsert_clients(&self, clients: &[ClientRecord]) -> Result<()> {
        let now = super::unix_now();
        dispatch_write!(self, pool => {
            let mut tx = pool.begin().await?;
            for client in clients {
                write_client!(tx, client, now, true);
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn get_client(&self, id: &str) -> Result<Option<ClientRecord>> {
        if !super::storable(id) {
            return Ok(None);
        }
        let sql = format!("{CLIENT_COLUMNS} WHERE id = $1");
        let client = dispatch!(self, pool => {
            match sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await? {
                Some(row) => Some(client_from_row!(row)),
                None => None,
            }
        });
        let Some(mut client) = client else {
            return Ok(None);
        };
        self.attach_uris(std::slice::from_mut(&mut client)).await?;
        Ok(Some(client))
    }

    pub async fn list_clients(&self) -> Result<Vec<ClientRecord>> {
        let sql = format!("{CLIENT_COLUMNS} ORDER BY id");
        let mut clients = dispatch!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(client_from_row!(row));
            }
            out
        });
        self.attach_uris(&mut clients).await?;
        Ok(clients)
    }

    async fn attach_uris(&self, clients: &mut [ClientRecord]) -> Result<()> {
        let rows: Vec<(String, String, String)> = if clients.len() == 1 {
            dispatch!(self, pool => {
                sqlx::query_as(
                    "SELECT client_id, kind, uri FROM client_redirect_uris WHERE client_id = $1 \
                     ORDER BY position",
                )
                .bind(&clients[0].id)
                .fetch_all(pool)
                .await?
            })
        } else {
            dispatch!(self, pool => {
                sqlx::query_as(
                    "SELECT client_id, kind, uri FROM client_redirect_uris ORDER BY client_id, position",
                )
                .fetch_all(pool)
                .await?
            })
        };
        for client in clients.iter_mut() {
            for (_, kind, uri) in rows.iter().filter(|r| r.0 == client.id) {
                if kind == RedirectKind::Login.as_str() {
                    client.redirect_uris.push(uri.clone());
                } else {
                    client.post_logout_redirect_uris.push(uri.clone());
                }
            }
        }
        Ok(())
    }

    /// Deletes a client and (by cascade) its redirect URIs; `NotFound` when unknown.
    pub async fn remove_client(&self, id: &str) -> Result<()> {
        let done = dispatch_write!(self, pool => {
            sqlx::query("DELETE FROM clients WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
