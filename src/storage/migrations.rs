//! Migrations are compiled into the binary: one file per step for each dialect, with the
//! same version numbers. A unit test checks that this list matches the directories.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

type Step = (i64, &'static str, &'static str);

const SQLITE: &[Step] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "authorization",
        include_str!("../../migrations/sqlite/0002_authorization.sql"),
    ),
    (
        3,
        "refresh_tokens",
        include_str!("../../migrations/sqlite/0003_refresh_tokens.sql"),
    ),
    (
        4,
        "login_failures",
        include_str!("../../migrations/sqlite/0004_login_failures.sql"),
    ),
    (
        5,
        "account_tokens",
        include_str!("../../migrations/sqlite/0005_account_tokens.sql"),
    ),
    (
        6,
        "session_details",
        include_str!("../../migrations/sqlite/0006_session_details.sql"),
    ),
    (
        7,
        "backchannel_logout",
        include_str!("../../migrations/sqlite/0007_backchannel_logout.sql"),
    ),
    (
        8,
        "audit_events",
        include_str!("../../migrations/sqlite/0008_audit_events.sql"),
    ),
    (
        9,
        "pending_email",
        include_str!("../../migrations/sqlite/0009_pending_email.sql"),
    ),
];

const POSTGRES: &[Step] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "authorization",
        include_str!("../../migrations/postgres/0002_authorization.sql"),
    ),
    (
        3,
        "refresh_tokens",
        include_str!("../../migrations/postgres/0003_refresh_tokens.sql"),
    ),
    (
        4,
        "login_failures",
        include_str!("../../migrations/postgres/0004_login_failures.sql"),
    ),
    (
        5,
        "account_tokens",
        include_str!("../../migrations/postgres/0005_account_tokens.sql"),
    ),
    (
        6,
        "session_details",
        include_str!("../../migrations/postgres/0006_session_details.sql"),
    ),
    (
        7,
        "backchannel_logout",
        include_str!("../../migrations/postgres/0007_backchannel_logout.sql"),
    ),
    (
        8,
        "audit_events",
        include_str!("../../migrations/postgres/0008_audit_events.sql"),
    ),
    (
        9,
        "pending_email",
        include_str!("../../migrations/postgres/0009_pending_email.sql"),
    ),
];

fn migrator(steps: &'static [Step]) -> Migrator {
    Migrator::with_migrations(
        steps
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

pub(super) fn sqlite() -> Migrator {
    migrator(SQLITE)
}

pub(super) fn postgres() -> Migrator {
    migrator(POSTGRES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &str) -> Vec<(i64, String)> {
        let mut out: Vec<(i64, String)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .map(|n| {
                let (v, rest) = n.split_once('_').unwrap();
                (
                    v.parse().unwrap(),
                    rest.trim_end_matches(".sql").to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn every_migration_file_is_compiled_in_and_both_dialects_have_the_same_steps() {
        let listed = |steps: &[Step]| -> Vec<(i64, String)> {
            steps.iter().map(|s| (s.0, s.1.to_string())).collect()
        };
        let sqlite = files(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"));
        let postgres = files(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"));
        assert_eq!(sqlite, listed(SQLITE));
        assert_eq!(postgres, listed(POSTGRES));
        assert_eq!(sqlite, postgres);
    }
}
