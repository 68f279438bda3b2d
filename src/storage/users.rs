use sqlx::Row;

use super::{Result, Store, StoreError, dispatch, dispatch_write, on_unique};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    pub email: String,
    pub email_verified: bool,
    /// A new address the user asked for; it replaces `email` only once the link mailed
    /// to it is opened (ASVS 2.2.3).
    pub pending_email: Option<String>,
    pub password_hash: Option<String>,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub picture: Option<String>,
    pub locale: Option<String>,
    pub disabled: bool,
    pub roles: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: String,
    pub username: String,
    pub email: String,
    pub email_verified: bool,
    pub password_hash: Option<String>,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub roles: Vec<String>,
}

/// A `[[users]]` entry after validation and hashing, as the start-up upsert needs it.
#[derive(Debug, Clone)]
pub struct SeedUserRecord {
    pub new_id: String,
    pub username: String,
    pub email: String,
    /// `None` keeps whatever password is stored.
    pub password_hash: Option<String>,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub roles: Vec<String>,
}

pub(super) const USER_COLUMNS: &str = "id, username, email, email_verified, pending_email, password_hash, name, given_name, \
     family_name, picture, locale, disabled, created_at, updated_at";

/// A user's roles as one column, space-separated (role names have no spaces:
/// `accounts::validate_role`), so that a user with roles is one query, not two: on
/// SQLite every query is a hand-off to the connection's thread and back. Needs the
/// user table in scope as `users`.
pub(super) fn roles_column(kind: super::DatabaseKind) -> &'static str {
    match kind {
        super::DatabaseKind::Sqlite => {
            "(SELECT group_concat(role, ' ') FROM user_roles WHERE user_id = users.id) AS roles"
        }
        super::DatabaseKind::Postgres => {
            "(SELECT string_agg(role, ' ') FROM user_roles WHERE user_id = users.id) AS roles"
        }
    }
}

/// The `roles` column of `roles_column`, sorted (neither aggregate promises an order).
pub(super) fn roles_from(column: Option<String>) -> Vec<String> {
    let mut roles: Vec<String> = column
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    roles.sort();
    roles
}

fn conflict_target(detail: &str) -> &'static str {
    if detail.contains("email") {
        "email"
    } else {
        "username"
    }
}

macro_rules! user_from_row {
    ($row:expr) => {{
        let row = $row;
        UserRecord {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            email: row.try_get("email")?,
            email_verified: row.try_get("email_verified")?,
            pending_email: row.try_get("pending_email")?,
            password_hash: row.try_get("password_hash")?,
            name: row.try_get("name")?,
            given_name: row.try_get("given_name")?,
            family_name: row.try_get("family_name")?,
            picture: row.try_get("picture")?,
            locale: row.try_get("locale")?,
            disabled: row.try_get("disabled")?,
            roles: Vec::new(),
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        }
    }};
}
pub(super) use user_from_row;

impl Store {
    /// Inserts a user and its roles in one transaction.
    pub async fn insert_user(&self, user: &NewUser) -> Result<()> {
        let now = super::unix_now();
        dispatch_write!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO users (id, username, email, email_verified, password_hash, name, \
                 given_name, family_name, disabled, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, FALSE, $9, $9)",
            )
            .bind(&user.id)
            .bind(&user.username)
            .bind(&user.email)
            .bind(user.email_verified)
            .bind(&user.password_hash)
            .bind(&user.name)
            .bind(&user.given_name)
            .bind(&user.family_name)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| on_unique(e, conflict_target))?;
            for role in &user.roles {
                sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(&user.id)
                    .bind(role)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Creates or updates a seeded user by username (case-insensitive), replacing its
    /// roles. Seeded users count as e-mail-verified. One transaction.
    pub async fn upsert_seed_user(&self, user: &SeedUserRecord) -> Result<()> {
        let now = super::unix_now();
        dispatch_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let existing: Option<String> =
                sqlx::query_scalar("SELECT id FROM users WHERE lower(username) = lower($1)")
                    .bind(&user.username)
                    .fetch_optional(&mut *tx)
                    .await?;
            let id = match existing {
                Some(id) => {
                    sqlx::query(
                        "UPDATE users SET email = $2, email_verified = TRUE, \
                         password_hash = COALESCE($3, password_hash), name = $4, given_name = $5, \
                         family_name = $6, updated_at = $7 WHERE id = $1",
                    )
                    .bind(&id)
                    .bind(&user.email)
                    .bind(&user.password_hash)
                    .bind(&user.name)
                    .bind(&user.given_name)
                    .bind(&user.family_name)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| on_unique(e, conflict_target))?;
                    sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                    id
                }
                None => {
                    sqlx::query(
                        "INSERT INTO users (id, username, email, email_verified, password_hash, \
                         name, given_name, family_name, disabled, created_at, updated_at) \
                         VALUES ($1, $2, $3, TRUE, $4, $5, $6, $7, FALSE, $8, $8)",
                    )
                    .bind(&user.new_id)
                    .bind(&user.username)
                    .bind(&user.email)
                    .bind(&user.password_hash)
                    .bind(&user.name)
                    .bind(&user.given_name)
                    .bind(&user.family_name)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| on_unique(e, conflict_target))?;
                    user.new_id.clone()
                }
            };
            for role in &user.roles {
                sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(&id)
                    .bind(role)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Finds a user by username (case-insensitive), with roles.
    pub async fn find_user_by_username(&self, username: &str) -> Result<Option<UserRecord>> {
        self.find_user_where("lower(username) = lower($1)", username)
            .await
    }

    /// A user by `sub`, with roles.
    pub async fn find_user_by_id(&self, id: &str) -> Result<Option<UserRecord>> {
        self.find_user_where("id = $1", id).await
    }

    /// A user by username or e-mail address (the login form takes either).
    pub async fn find_user_by_login(&self, login: &str) -> Result<Option<UserRecord>> {
        if let Some(user) = self.find_user_by_username(login).await? {
            return Ok(Some(user));
        }
        self.find_user_where("email = $1", &login.trim().to_lowercase())
            .await
    }

    /// One user matching `condition` (a fixed SQL predicate on `$1`), with roles.
    pub(super) async fn find_user_where(
        &self,
        condition: &'static str,
        value: &str,
    ) -> Result<Option<UserRecord>> {
        if !super::storable(value) {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {USER_COLUMNS}, {} FROM users WHERE {condition}",
            roles_column(self.kind())
        );
        Ok(dispatch!(self, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(value)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(row) => {
                    let mut user = user_from_row!(&row);
                    user.roles = roles_from(row.try_get("roles")?);
                    Some(user)
                }
                None => None,
            }
        }))
    }

    /// All users ordered by username, with roles.
    pub async fn list_users(&self) -> Result<Vec<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY lower(username)");
        let mut users = dispatch!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?;
            let mut users = Vec::with_capacity(rows.len());
            for row in rows {
                users.push(user_from_row!(row));
            }
            users
        });
        let pairs: Vec<(String, String)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT user_id, role FROM user_roles ORDER BY role")
                .fetch_all(pool)
                .await?
        });
        for user in &mut users {
            user.roles = pairs
                .iter()
                .filter(|(id, _)| *id == user.id)
                .map(|(_, role)| role.clone())
                .collect();
        }
        Ok(users)
    }

    pub(super) async fn roles_of(&self, user_id: &str) -> Result<Vec<String>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
                .bind(user_id)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Replaces a user's password hash; `NotFound` when no such username.
    pub async fn set_password_hash(&self, username: &str, hash: &str) -> Result<()> {
        let now = super::unix_now();
        let done = dispatch_write!(self, pool => {
            sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE lower(username) = lower($1)")
                .bind(username)
                .bind(hash)
                .bind(now)
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
