use super::{Result, Store, StoreError, dispatch, dispatch_write};

/// Metadata of one signing key; the private key itself lives in `keys.dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: String,
    pub created_at: i64,
    pub activated_at: i64,
    pub retired_at: Option<i64>,
}

impl Store {
    /// Every key, newest activation first (the first non-retired one signs).
    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>> {
        let rows: Vec<(String, String, i64, i64, Option<i64>)> = dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT kid, alg, created_at, activated_at, retired_at FROM signing_keys \
                 ORDER BY activated_at DESC, kid",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(kid, alg, created_at, activated_at, retired_at)| KeyRecord {
                    kid,
                    alg,
                    created_at,
                    activated_at,
                    retired_at,
                },
            )
            .collect())
    }

    /// Records a key; a key another instance already recorded is left as it is.
    pub async fn insert_key(&self, key: &KeyRecord) -> Result<()> {
        dispatch_write!(self, pool => {
            sqlx::query(
                "INSERT INTO signing_keys (kid, alg, created_at, activated_at, retired_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kid) DO NOTHING",
            )
            .bind(&key.kid)
            .bind(&key.alg)
            .bind(key.created_at)
            .bind(key.activated_at)
            .bind(key.retired_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Marks a key retired. Refuses the key that currently signs, in the same transaction
    /// that reads which one that is, so a concurrent rotate cannot slip between.
    pub async fn retire_key(&self, kid: &str, now: i64) -> Result<()> {
        dispatch_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let active: Option<String> = sqlx::query_scalar(
                "SELECT kid FROM signing_keys WHERE retired_at IS NULL \
                 ORDER BY activated_at DESC, kid LIMIT 1",
            )
            .fetch_optional(&mut *tx)
            .await?;
            let retired: Option<Option<i64>> =
                sqlx::query_scalar("SELECT retired_at FROM signing_keys WHERE kid = $1")
                    .bind(kid)
                    .fetch_optional(&mut *tx)
                    .await?;
            match retired {
                None => return Err(StoreError::NotFound),
                Some(Some(_)) => return Err(StoreError::Refused("the key is already retired")),
                Some(None) if active.as_deref() == Some(kid) => {
                    return Err(StoreError::Refused(
                        "the key is the active signing key; run `oxidp keys rotate` first",
                    ));
                }
                Some(None) => {}
            }
            sqlx::query("UPDATE signing_keys SET retired_at = $2 WHERE kid = $1")
                .bind(kid)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}
