//! Users: validation rules, password hashing, and the operations the CLI and start-up
//! seeding need. Later issues add sign-up, verification and reset here.

mod password;
pub mod selfservice;

use secrecy::{ExposeSecret, SecretString};

pub use password::{PasswordError, PasswordHasher, verify_in};
pub use selfservice::{
    FieldErrors, ProfileEdit, Registered, Registration, SelfService, SelfServiceError,
    SignupBinding, check_profile,
};

use crate::storage::{NewUser, SeedUserRecord, Store, StoreError, UserRecord};

pub const ROLE_USER: &str = "user";
pub const ROLE_ADMIN: &str = "admin";

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
    #[error("username is already taken")]
    UsernameTaken,
    #[error("e-mail address is already in use")]
    EmailTaken,
    #[error("no such user")]
    NotFound,
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Password(#[from] PasswordError),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict("email") => Self::EmailTaken,
            StoreError::Conflict(_) => Self::UsernameTaken,
            StoreError::NotFound => Self::NotFound,
            other => Self::Store(other),
        }
    }
}

/// 3–32 characters: ASCII letters, digits, `.`, `_`, `-`.
pub fn validate_username(username: &str) -> Result<(), &'static str> {
    let len = username.chars().count();
    if !(3..=32).contains(&len) {
        return Err("3 to 32 characters");
    }
    if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("letters, digits, '.', '_' and '-' only");
    }
    Ok(())
}

/// Trims and lower-cases an address; `None` when it is not a plausible address.
/// Deliverability is proven by the verification mail, not by a grammar.
pub fn normalize_email(email: &str) -> Option<String> {
    let email = email.trim().to_lowercase();
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (local, domain) = email.rsplit_once('@')?;
    let domain_ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && !local.contains(['<', '>', '(', ')', ',', ';', ':', '\\', '"', '[', ']']);
    (domain_ok && local_ok).then_some(email)
}

/// A `From:` value: a bare address or `Display Name <address>`.
pub fn is_valid_mailbox(mailbox: &str) -> bool {
    let mailbox = mailbox.trim();
    match (mailbox.rfind('<'), mailbox.strip_suffix('>')) {
        (Some(open), Some(inner)) => normalize_email(&inner[open + 1..]).is_some(),
        (None, None) => normalize_email(mailbox).is_some(),
        _ => false,
    }
}

/// At least 8 and at most 128 characters (argon2's input is bounded to keep a login
/// cheap to refuse).
pub fn validate_password(password: &str) -> Result<(), &'static str> {
    let len = password.chars().count();
    if len < 8 {
        return Err("at least 8 characters");
    }
    if len > 128 {
        return Err("at most 128 characters");
    }
    Ok(())
}

/// Role names: 1–32 lower-case letters, digits, `_`, `-`, `:`, starting with a letter.
pub fn validate_role(role: &str) -> Result<(), &'static str> {
    let ok = (1..=32).contains(&role.len())
        && role.starts_with(|c: char| c.is_ascii_lowercase())
        && role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | ':'));
    if ok {
        Ok(())
    } else {
        Err("1 to 32 lower-case letters, digits, '_', '-' or ':', starting with a letter")
    }
}

/// A new stable, opaque subject identifier (never derived from username or e-mail).
pub fn new_subject() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The roles a user is stored with, from any source (config, CLI, admin API): each
/// trimmed and kept once, in order, after `user`, which every user has
/// (docs/accounts.md). Validity is `validate_role`'s business, checked by the caller.
pub fn normalize_roles(roles: &[String]) -> Vec<String> {
    let mut out = vec![ROLE_USER.to_string()];
    for role in roles.iter().map(|r| r.trim()) {
        if !out.iter().any(|r| r == role) {
            out.push(role.to_string());
        }
    }
    out
}

/// What an operator supplies to create a user.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub username: String,
    pub email: String,
    pub password: Option<SecretString>,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub email_verified: bool,
}

/// Why a sign-in failed, as far as the caller may know: never which part was wrong.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The reason and the user's id (when there is one) are for the audit trail only;
    /// every answer says the same.
    #[error("incorrect username or password")]
    Rejected(Rejection, Option<String>),
    /// The password workers are saturated; try again shortly.
    #[error("too many sign-ins are being checked")]
    Busy,
    #[error(transparent)]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

/// Why a sign-in was refused, for the audit trail (never shown to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Empty, or longer than any username or password can be.
    Malformed,
    UnknownUser,
    BadPassword,
    Disabled,
    EmailUnverified,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::UnknownUser => "unknown_user",
            Rejection::BadPassword => "bad_password",
            Rejection::Disabled => "disabled",
            Rejection::EmailUnverified => "email_unverified",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Accounts {
    store: Store,
    hasher: PasswordHasher,
    require_verified_email: bool,
}

impl Accounts {
    pub fn new(store: Store, hasher: PasswordHasher) -> Self {
        Self {
            store,
            hasher,
            require_verified_email: false,
        }
    }

    /// Password checks waiting for an argon2 worker.
    pub fn password_queue(&self) -> usize {
        self.hasher.queued()
    }

    /// `accounts.require_verified_email`: unverified users cannot sign in.
    pub fn requiring_verified_email(mut self, required: bool) -> Self {
        self.require_verified_email = required;
        self
    }

    /// Checks a username-or-e-mail and password. Unknown users, users without a
    /// password, disabled or unverified users all cost one argon2 verification and get
    /// the same answer, so neither the response nor its timing tells them apart.
    pub async fn authenticate(
        &self,
        login: &str,
        password: &SecretString,
    ) -> Result<UserRecord, LoginError> {
        let internal = |e: Box<dyn std::error::Error + Send + Sync>| LoginError::Internal(e);
        // The account is looked up even for a password no account can have, so the
        // failure is attributed to it (audit trail); it still costs one verification.
        let named = !login.is_empty() && login.len() <= 254;
        let plausible = named && validate_password(password.expose_secret()).is_ok();
        let user = if named {
            self.store
                .find_user_by_login(login)
                .await
                .map_err(|e| internal(Box::new(e)))?
        } else {
            None
        };
        let hash = user.as_ref().and_then(|u| u.password_hash.as_deref());
        // A password over the length bound is never hashed (bounded cost); the dummy
        // verification below runs on a fixed short input instead.
        let probe = if plausible {
            password.clone()
        } else {
            SecretString::from("x".repeat(12))
        };
        let matches = match self.hasher.verify(&probe, hash).await {
            Ok(m) => m,
            Err(PasswordError::Busy) => return Err(LoginError::Busy),
            Err(e) => return Err(internal(Box::new(e))),
        };
        let rejected = |why, u: &UserRecord| Err(LoginError::Rejected(why, Some(u.id.clone())));
        match user {
            None if !named => Err(LoginError::Rejected(Rejection::Malformed, None)),
            None => Err(LoginError::Rejected(Rejection::UnknownUser, None)),
            Some(u) if !plausible => rejected(Rejection::Malformed, &u),
            Some(u) if !matches => rejected(Rejection::BadPassword, &u),
            Some(u) if u.disabled => rejected(Rejection::Disabled, &u),
            Some(u) if !u.email_verified && self.require_verified_email => {
                rejected(Rejection::EmailUnverified, &u)
            }
            Some(u) => Ok(u),
        }
    }

    /// Validates everything before hashing, so bad input costs nothing and stores nothing.
    pub async fn create(&self, account: NewAccount) -> Result<UserRecord, AccountError> {
        check_account(&account)?;
        let email = normalize_email(&account.email).ok_or(AccountError::Invalid {
            field: "email",
            message: "not a valid e-mail address",
        })?;
        let password_hash = match &account.password {
            Some(p) => Some(self.hasher.hash(p).await?),
            None => None,
        };
        let user = NewUser {
            id: new_subject(),
            username: account.username.clone(),
            email,
            email_verified: account.email_verified,
            password_hash,
            name: account.name.filter(|n| !n.trim().is_empty()),
            given_name: None,
            family_name: None,
            roles: normalize_roles(&account.roles),
        };
        self.store.insert_user(&user).await?;
        self.store
            .find_user_by_username(&user.username)
            .await?
            .ok_or(AccountError::NotFound)
    }

    pub async fn set_password(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<(), AccountError> {
        let user = self
            .store
            .find_user_by_username(username)
            .await?
            .ok_or(AccountError::NotFound)?;
        check_password(password.expose_secret(), &user.username, &user.email)
            .map_err(invalid_password)?;
        let hash = self.hasher.hash(password).await?;
        self.store.set_password_hash(username, &hash).await?;
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<UserRecord>, AccountError> {
        Ok(self.store.list_users().await?)
    }

    /// Upserts seed users (the `[[users]]` of config, already validated). A password
    /// that still matches the stored hash is not re-hashed.
    pub async fn seed(&self, users: &[Seed]) -> Result<(), AccountError> {
        for seed in users {
            let email = normalize_email(&seed.email).ok_or(AccountError::Invalid {
                field: "email",
                message: "not a valid e-mail address",
            })?;
            let existing = self.store.find_user_by_username(&seed.username).await?;
            let password_hash = match &seed.password {
                Some(p) => {
                    let stored = existing.as_ref().and_then(|u| u.password_hash.as_deref());
                    if stored.is_some() && self.hasher.verify(p, stored).await? {
                        None
                    } else {
                        Some(self.hasher.hash(p).await?)
                    }
                }
                None => None,
            };
            let record = SeedUserRecord {
                new_id: new_subject(),
                username: seed.username.clone(),
                email,
                password_hash,
                name: seed.name.clone(),
                given_name: seed.given_name.clone(),
                family_name: seed.family_name.clone(),
                roles: normalize_roles(&seed.roles),
            };
            self.store.upsert_seed_user(&record).await?;
        }
        Ok(())
    }
}

/// A user upserted at start-up (development and tests); counted as e-mail-verified.
#[derive(Debug, Clone)]
pub struct Seed {
    pub username: String,
    pub email: String,
    pub password: Option<SecretString>,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub roles: Vec<String>,
}

/// Every rule for a new account that needs no storage: callers run it before opening
/// anything, so bad input changes nothing.
pub fn check_account(account: &NewAccount) -> Result<(), AccountError> {
    let invalid = |field, message| AccountError::Invalid { field, message };
    validate_username(&account.username).map_err(|m| invalid("username", m))?;
    let email = normalize_email(&account.email)
        .ok_or_else(|| invalid("email", "not a valid e-mail address"))?;
    for role in &account.roles {
        validate_role(role).map_err(|m| invalid("role", m))?;
    }
    if let Some(p) = &account.password {
        check_password(p.expose_secret(), &account.username, &email).map_err(invalid_password)?;
    }
    Ok(())
}

/// Length rules plus: not the username or the e-mail address, and not a common or
/// easily guessed password (zxcvbn's estimate below 10^6 guesses, which covers its
/// lists of common passwords, names and words, keyboard patterns and repeats).
pub fn check_password(password: &str, username: &str, email: &str) -> Result<(), &'static str> {
    validate_password(password)?;
    let lower = password.to_lowercase();
    if lower == username.to_lowercase() || lower == email.trim().to_lowercase() {
        return Err("must differ from the username and e-mail address");
    }
    if zxcvbn::zxcvbn(password, &[username, email]).score() < zxcvbn::Score::Two {
        return Err("harder to guess: it is a common password or too close to one");
    }
    Ok(())
}

fn invalid_password(message: &'static str) -> AccountError {
    AccountError::Invalid {
        field: "password",
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in [
            "bob",
            "alice.example",
            "a_b-c",
            "x23456789012345678901234567890yz",
        ] {
            assert!(validate_username(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "",
            "has space",
            "üser",
            "a/b",
            "x234567890123456789012345678901yz",
        ] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email(" Alice@Example.COM ").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(
            normalize_email("a@localhost").as_deref(),
            Some("a@localhost")
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "a@",
            "a b@example.com",
            "a@exa mple.com",
            "a@-x.com",
            "a@x..com",
            "<a>@x.com",
        ] {
            assert!(normalize_email(bad).is_none(), "{bad}");
        }
        assert!(is_valid_mailbox("oxidp <no-reply@localhost>"));
        assert!(is_valid_mailbox("no-reply@example.com"));
        assert!(!is_valid_mailbox("oxidp <no-reply@localhost"));
        assert!(!is_valid_mailbox("nobody"));
    }

    #[test]
    fn passwords() {
        assert!(validate_password("short").is_err());
        assert!(validate_password("long enough").is_ok());
        assert!(validate_password(&"x".repeat(129)).is_err());
        assert!(check_password("alice.example", "Alice.Example", "a@x.com").is_err());
        assert!(check_password("a@x.com", "alice", "a@x.com").is_err());
    }

    #[test]
    fn roles() {
        assert!(validate_role("admin").is_ok());
        assert!(validate_role("oxidp:admin").is_ok());
        for bad in ["", "Admin", "1x", "a b", &"a".repeat(33)] {
            assert!(validate_role(bad).is_err(), "{bad}");
        }
        assert_eq!(
            normalize_roles(&["admin".into(), "user".into()]),
            vec!["user", "admin"]
        );
    }
}
