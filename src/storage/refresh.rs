//! Refresh-token rows. Rotation is atomic with a conditional update, so of two racing
//! refreshes exactly one rotates (PostgreSQL's row lock, SQLite's single writer).

use sqlx::Row;

use super::users::{USER_COLUMNS, roles_column, roles_from, user_from_row};
use super::{Pool, Result, Store, UserRecord, dispatch, dispatch_write};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub family_id: String,
    pub client_id: String,
    pub user_id: String,
    pub grant_data: String,
    pub session_sid: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub family_expires_at: i64,
    pub used_at: Option<i64>,
    pub successor_sealed: Option<Vec<u8>>,
    pub revoked_at: Option<i64>,
    /// The family has a row in `revocations` (authoritative: a successor committed while
    /// the family was being revoked may lack its own `revoked_at`).
    pub family_revoked: bool,
    /// Not bound to a browser session, or bound to one that is live at `now`.
    pub session_live: bool,
    /// The token's user with roles (None if gone).
    pub user: Option<UserRecord>,
}

#[derive(Debug, Clone)]
pub struct NewRefresh<'a> {
    pub token_hash: &'a [u8],
    pub family_id: &'a str,
    pub client_id: &'a str,
    pub user_id: &'a str,
    pub grant_data: &'a str,
    pub session_sid: Option<&'a str>,
    pub expires_at: i64,
    pub family_expires_at: i64,
}

macro_rules! insert_refresh {
    ($executor:expr, $new:expr, $now:expr) => {{
        let new = $new;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, grant_data, \
             session_sid, created_at, expires_at, family_expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(new.token_hash)
        .bind(new.family_id)
        .bind(new.client_id)
        .bind(new.user_id)
        .bind(new.grant_data)
        .bind(new.session_sid)
        .bind($now)
        .bind(new.expires_at)
        .bind(new.family_expires_at)
        .execute($executor)
        .await?;
    }};
}

/// The rotation statement(s) with their 11 arguments: the rows the successor's INSERT
/// returned (one if the rotation won). `=> raw` gives the sqlx result instead of
/// applying `?`.
macro_rules! rotate {
    ($executor:expr, $sql:expr, $old:expr, $new:expr, $sealed:expr, $now:expr => raw) => {{
        let new = $new;
        sqlx::query($sql)
            .bind($old)
            .bind($now)
            .bind($sealed)
            .bind(new.token_hash)
            .bind(new.family_id)
            .bind(new.client_id)
            .bind(new.user_id)
            .bind(new.grant_data)
            .bind(new.session_sid)
            .bind(new.expires_at)
            .bind(new.family_expires_at)
            .fetch_all($executor)
            .await
    }};
    ($executor:expr, $sql:expr, $old:expr, $new:expr, $sealed:expr, $now:expr) => {
        rotate!($executor, $sql, $old, $new, $sealed, $now => raw)?
    };
}

impl Store {
    pub async fn insert_refresh_token(&self, new: &NewRefresh<'_>, now: i64) -> Result<()> {
        dispatch_write!(self, pool => {
            insert_refresh!(pool, new, now);
        });
        Ok(())
    }

    /// The token with its family's revocation, its session's liveness at `now` and its
    /// user with roles, in one statement: every query is a round trip (on SQLite a
    /// hand-off to the connection's thread and back), and a refresh needs all of it.
    pub async fn find_refresh_token(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<RefreshRecord>> {
        let user_columns = USER_COLUMNS
            .split(", ")
            .map(|c| format!("users.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT r.family_id, r.client_id, r.user_id, r.grant_data, r.session_sid, \
             r.created_at AS token_created_at, r.expires_at, r.family_expires_at, r.used_at, \
             r.successor_sealed, r.revoked_at, \
             EXISTS (SELECT 1 FROM revocations v WHERE v.id = r.family_id) AS family_revoked, \
             (r.session_sid IS NULL OR EXISTS (SELECT 1 FROM browser_sessions s \
               WHERE s.sid = r.session_sid AND s.ended_at IS NULL AND s.expires_at > $2)) AS session_live, \
             {user_columns}, {} \
             FROM refresh_tokens r LEFT JOIN users ON users.id = r.user_id WHERE r.token_hash = $1",
            roles_column(self.kind())
        );
        Ok(dispatch!(self, pool => {
            match sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?
            {
                Some(row) => {
                    let user = match row.try_get::<Option<String>, _>("id")? {
                        Some(_) => {
                            let mut user = user_from_row!(&row);
                            user.roles = roles_from(row.try_get("roles")?);
                            Some(user)
                        }
                        None => None,
                    };
                    Some(RefreshRecord {
                        family_id: row.try_get("family_id")?,
                        client_id: row.try_get("client_id")?,
                        user_id: row.try_get("user_id")?,
                        grant_data: row.try_get("grant_data")?,
                        session_sid: row.try_get("session_sid")?,
                        created_at: row.try_get("token_created_at")?,
                        expires_at: row.try_get("expires_at")?,
                        family_expires_at: row.try_get("family_expires_at")?,
                        used_at: row.try_get("used_at")?,
                        successor_sealed: row.try_get("successor_sealed")?,
                        revoked_at: row.try_get("revoked_at")?,
                        family_revoked: row.try_get("family_revoked")?,
                        session_live: row.try_get("session_live")?,
                        user,
                    })
                }
                None => None,
            }
        }))
    }

    /// Marks `old_hash` used (keeping its sealed successor for the grace window) and
    /// inserts the successor, atomically and in one round trip. False when the old
    /// token was already used or revoked: a concurrent refresh won, and the caller
    /// takes the grace path.
    ///
    /// One round trip, not four (BEGIN, UPDATE, INSERT, COMMIT): the rotation holds
    /// SQLite's one writer, and every hand-off to the connection's thread while
    /// holding it is time no other request can write (docs/performance.md).
    pub async fn rotate_refresh_token(
        &self,
        old_hash: &[u8],
        successor: &NewRefresh<'_>,
        sealed: &[u8],
        now: i64,
    ) -> Result<bool> {
        match &self.pool {
            // PostgreSQL: one statement is atomic. Of two racing rotations the second
            // UPDATE waits for the first's row lock, then re-checks `used_at IS NULL`
            // against the committed row and updates nothing, so it inserts nothing.
            Pool::Postgres(pool) => Ok(rotate!(
                pool,
                "WITH used AS (UPDATE refresh_tokens SET used_at = $2, successor_sealed = $3 \
                 WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL RETURNING 1) \
                 INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, grant_data, \
                 session_sid, created_at, expires_at, family_expires_at) \
                 SELECT $4, $5, $6, $7, $8, $9, $2, $10, $11 FROM used RETURNING 1",
                old_hash, successor, sealed, now
            )
            .len()
                == 1),
            // SQLite has no UPDATE inside WITH: a script, sent as one command to the
            // connection's thread; `changes()` is the UPDATE's row count. Only the
            // INSERT returns rows. (Not the summed rows_affected: SQLite reports the
            // previous statement's count again for BEGIN IMMEDIATE.)
            Pool::Sqlite { write, .. } => {
                self.sqlite_guard()?;
                let mut conn = write.acquire().await?;
                let result = rotate!(
                    &mut *conn,
                    "BEGIN IMMEDIATE; \
                     UPDATE refresh_tokens SET used_at = $2, successor_sealed = $3 \
                     WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL; \
                     INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, grant_data, \
                     session_sid, created_at, expires_at, family_expires_at) \
                     SELECT $4, $5, $6, $7, $8, $9, $2, $10, $11 WHERE changes() = 1 RETURNING 1; \
                     COMMIT",
                    old_hash, successor, sealed, now
                    => raw
                );
                match result {
                    Ok(inserted) => Ok(inserted.len() == 1),
                    Err(e) => {
                        // A statement failed after BEGIN: the script stopped before
                        // COMMIT. End the transaction here, or the connection goes back
                        // to the pool inside it; if even that fails, discard it.
                        if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                            conn.close_on_drop();
                        }
                        Err(e.into())
                    }
                }
            }
        }
    }

    /// Revokes every token of a family and, through the grant id, every access token
    /// issued in it. One transaction.
    pub async fn revoke_family(&self, family_id: &str, until: i64, now: i64) -> Result<()> {
        dispatch_write!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL")
                .bind(family_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO revocations (id, expires_at, revoked_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(family_id)
            .bind(until)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store_with_token(hash: &[u8]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let store = Store::connect(&url.into(), 2).await.unwrap();
        store.migrate().await.unwrap();
        let Pool::Sqlite { write, .. } = &store.pool else {
            unreachable!()
        };
        sqlx::query(
            "INSERT INTO users (id, username, email, created_at, updated_at) \
             VALUES ('u', 'u', 'u@example.com', 0, 0); \
             INSERT INTO user_roles (user_id, role) VALUES ('u', 'user'), ('u', 'admin'); \
             INSERT INTO clients (id, token_endpoint_auth_method, grant_types, source, created_at, updated_at) \
             VALUES ('c', 'none', 'refresh_token', 'cli', 0, 0)",
        )
        .execute(write)
        .await
        .unwrap();
        store
            .insert_refresh_token(&new(hash, "f"), 10)
            .await
            .unwrap();
        (dir, store)
    }

    fn new<'a>(hash: &'a [u8], family: &'a str) -> NewRefresh<'a> {
        NewRefresh {
            token_hash: hash,
            family_id: family,
            client_id: "c",
            user_id: "u",
            grant_data: "{}",
            session_sid: None,
            expires_at: 1000,
            family_expires_at: 2000,
        }
    }

    #[tokio::test]
    async fn the_token_row_carries_its_user_with_sorted_roles() {
        let (_dir, store) = store_with_token(b"a").await;
        let row = store.find_refresh_token(b"a", 20).await.unwrap().unwrap();
        assert_eq!(row.created_at, 10);
        assert!(row.session_live && !row.family_revoked);
        let user = row.user.unwrap();
        assert_eq!(user.id, "u");
        assert_eq!(user.created_at, 0);
        assert_eq!(user.roles, ["admin", "user"]);
    }

    #[tokio::test]
    async fn a_rotation_wins_once_and_inserts_one_successor() {
        let (_dir, store) = store_with_token(b"a").await;
        assert!(
            store
                .rotate_refresh_token(b"a", &new(b"b", "f"), b"sealed", 30)
                .await
                .unwrap()
        );
        assert!(
            !store
                .rotate_refresh_token(b"a", &new(b"c", "f"), b"sealed", 31)
                .await
                .unwrap()
        );
        let old = store.find_refresh_token(b"a", 40).await.unwrap().unwrap();
        assert_eq!(old.used_at, Some(30));
        assert_eq!(old.successor_sealed.as_deref(), Some(&b"sealed"[..]));
        assert_eq!(
            store
                .find_refresh_token(b"b", 40)
                .await
                .unwrap()
                .unwrap()
                .created_at,
            30
        );
        assert!(store.find_refresh_token(b"c", 40).await.unwrap().is_none());
    }

    /// The SQLite script stops at a failing statement, after its BEGIN: the old token
    /// must stay unused, and the writer connection must come back usable (not inside
    /// an open transaction).
    #[tokio::test]
    async fn a_failed_rotation_changes_nothing_and_leaves_the_writer_usable() {
        let (_dir, store) = store_with_token(b"a").await;
        store
            .insert_refresh_token(&new(b"taken", "g"), 10)
            .await
            .unwrap();
        // The successor's hash is already a token's: the INSERT fails after the UPDATE.
        assert!(
            store
                .rotate_refresh_token(b"a", &new(b"taken", "f"), b"s", 30)
                .await
                .is_err()
        );
        let old = store.find_refresh_token(b"a", 40).await.unwrap().unwrap();
        assert_eq!(old.used_at, None);
        assert_eq!(old.successor_sealed, None);
        assert!(
            store
                .rotate_refresh_token(b"a", &new(b"b", "f"), b"s", 50)
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .find_refresh_token(b"a", 60)
                .await
                .unwrap()
                .unwrap()
                .used_at,
            Some(50)
        );
    }
}
