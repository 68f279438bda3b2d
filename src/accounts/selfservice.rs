//! What users do to their own accounts: sign up, verify their address, reset or change
//! their password, edit their profile. The hosted pages and the JSON account API both
//! call these, so they behave the same.
//!
//! Mailed tokens are 256 random bits, stored only as SHA-256 and looked up by that hash
//! (so no comparison ever runs over the secret), single-use, and short-lived: 24 h for
//! verification, 1 h for a reset.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};

use super::{
    Accounts, PasswordError, ROLE_USER, check_password, new_subject, normalize_email,
    validate_username,
};
use crate::email::{Mail, Mailer};
use crate::sessions::{hash_opaque, new_opaque};
use crate::storage::{
    AccountToken, NewUser, ProfileChange, Store, StoreError, TokenPurpose, UserRecord, unix_now,
};

pub const VERIFY_EMAIL_SECONDS: i64 = 24 * 3600;
pub const RESET_PASSWORD_SECONDS: i64 = 3600;

/// Per-field messages, keyed by the field's name in the form and in the JSON API.
pub type FieldErrors = BTreeMap<&'static str, String>;

#[derive(Debug, thiserror::Error)]
pub enum SelfServiceError {
    #[error("some fields are not valid")]
    Invalid(FieldErrors),
    #[error("the username is taken")]
    UsernameTaken,
    #[error("the e-mail address is in use by another account")]
    EmailTaken,
    /// A mailed token that is unknown, used or expired.
    #[error("the link is invalid or has expired")]
    InvalidToken,
    #[error("the account no longer exists")]
    NoAccount,
    #[error("too many passwords are being checked")]
    Busy,
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for SelfServiceError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<PasswordError> for SelfServiceError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Busy => Self::Busy,
            other => Self::Internal(other.to_string()),
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> SelfServiceError {
    SelfServiceError::Invalid(BTreeMap::from([(field, message.into())]))
}

/// A sign-up as typed on the page or sent to the API.
#[derive(Debug, Clone)]
pub struct Registration {
    pub username: String,
    pub email: String,
    pub password: SecretString,
    pub name: Option<String>,
}

/// What a sign-up answers. For an address that already has an account the answer has
/// the same shape (a fresh, unused `sub`), and the mail goes to the owner instead.
#[derive(Debug, Clone)]
pub struct Registered {
    pub sub: String,
    pub username: String,
    pub email: String,
    /// The account that was created; `None` when the address was already in use.
    pub user: Option<UserRecord>,
}

/// A profile edit: `None` leaves a field, `Some("")` clears it.
#[derive(Debug, Clone, Default)]
pub struct ProfileEdit {
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub picture: Option<String>,
    pub locale: Option<String>,
    pub email: Option<String>,
}

const MAX_NAME: usize = 128;
const MAX_URL: usize = 2048;

/// Checks a registration field by field; every problem is reported at once.
pub fn check_registration(r: &Registration) -> Result<(String, String), FieldErrors> {
    let mut errors = FieldErrors::new();
    let username = r.username.trim().to_string();
    if let Err(m) = validate_username(&username) {
        errors.insert("username", format!("Use {m}."));
    }
    let email = normalize_email(&r.email);
    if email.is_none() {
        errors.insert("email", "Enter a valid e-mail address.".into());
    }
    if let Err(m) = check_password(
        r.password.expose_secret(),
        &username,
        email.as_deref().unwrap_or(""),
    ) {
        errors.insert("password", password_message(m));
    }
    if let Some(name) = &r.name
        && let Err(m) = check_text(name, MAX_NAME)
    {
        errors.insert("name", m.into());
    }
    match (errors.is_empty(), email) {
        (true, Some(email)) => Ok((username, email)),
        _ => Err(errors),
    }
}

/// A password rule as a sentence for the field: "The password must be at least 8
/// characters.", "The password must differ from the username and e-mail address."
fn password_message(rule: &str) -> String {
    if rule.starts_with("must ") {
        format!("The password {rule}.")
    } else {
        format!("The password must be {rule}.")
    }
}

/// Free text for names: no control characters, bounded length.
fn check_text(value: &str, max: usize) -> Result<(), &'static str> {
    if value.chars().count() > max {
        return Err("Too long.");
    }
    if value.chars().any(char::is_control) {
        return Err("Contains characters that are not allowed.");
    }
    Ok(())
}

/// A picture must be an absolute https (or, for development, http) URL.
fn check_picture(value: &str) -> Result<(), &'static str> {
    if value.len() > MAX_URL {
        return Err("Too long.");
    }
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => Ok(()),
        _ => Err("Enter an absolute https:// URL."),
    }
}

/// BCP 47-ish: letters, digits and `-`, 2 to 35 characters (`en`, `pt-BR`, `zh-Hant-TW`).
fn check_locale(value: &str) -> Result<(), &'static str> {
    let ok = (2..=35).contains(&value.len())
        && value.split('-').all(|part| {
            !part.is_empty() && part.len() <= 8 && part.chars().all(|c| c.is_ascii_alphanumeric())
        })
        && value.starts_with(|c: char| c.is_ascii_alphabetic());
    if ok {
        Ok(())
    } else {
        Err("Use a language tag such as en or pt-BR.")
    }
}

/// Empty after trimming means "clear the field".
fn optional(value: &str) -> Option<String> {
    let v = value.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// Checks a profile edit field by field and turns it into a storage change.
pub fn check_profile(edit: &ProfileEdit) -> Result<ProfileChange, FieldErrors> {
    let mut errors = FieldErrors::new();
    let mut text = |field: &'static str, value: &Option<String>| -> Option<Option<String>> {
        let value = value.as_deref()?;
        if let Err(m) = check_text(value, MAX_NAME) {
            errors.insert(field, m.into());
        }
        Some(optional(value))
    };
    let mut change = ProfileChange {
        name: text("name", &edit.name),
        given_name: text("given_name", &edit.given_name),
        family_name: text("family_name", &edit.family_name),
        ..ProfileChange::default()
    };
    if let Some(picture) = &edit.picture {
        let picture = optional(picture);
        if let Some(p) = &picture
            && let Err(m) = check_picture(p)
        {
            errors.insert("picture", m.into());
        }
        change.picture = Some(picture);
    }
    if let Some(locale) = &edit.locale {
        let locale = optional(locale);
        if let Some(l) = &locale
            && let Err(m) = check_locale(l)
        {
            errors.insert("locale", m.into());
        }
        change.locale = Some(locale);
    }
    if let Some(email) = &edit.email {
        match normalize_email(email) {
            Some(e) => change.email = Some(e),
            None => {
                errors.insert("email", "Enter a valid e-mail address.".into());
            }
        }
    }
    if errors.is_empty() {
        Ok(change)
    } else {
        Err(errors)
    }
}

#[derive(Clone, Debug)]
pub struct SelfService {
    accounts: Accounts,
    store: Store,
    mailer: Mailer,
    issuer: String,
}

impl SelfService {
    pub fn new(accounts: Accounts, store: Store, mailer: Mailer, issuer: &str) -> Self {
        Self {
            accounts,
            store,
            mailer,
            issuer: issuer.trim_end_matches('/').to_string(),
        }
    }

    /// Creates an unverified account and mails a verification link. The password is
    /// hashed before the address is looked at, so both outcomes take the same time.
    pub async fn register(&self, r: Registration) -> Result<Registered, SelfServiceError> {
        let (username, email) = check_registration(&r).map_err(SelfServiceError::Invalid)?;
        let password_hash = self.accounts.hasher.hash(&r.password).await?;
        let user = NewUser {
            id: new_subject(),
            username: username.clone(),
            email: email.clone(),
            email_verified: false,
            password_hash: Some(password_hash),
            name: r.name.as_deref().and_then(optional),
            given_name: None,
            family_name: None,
            roles: vec![ROLE_USER.to_string()],
        };
        match self.store.insert_user(&user).await {
            Ok(()) => {}
            Err(StoreError::Conflict("email")) => {
                // Sign-up must not reveal which addresses have accounts (issue 7): the
                // answer looks the same, and the owner is told by mail.
                self.mail_existing_account(&email);
                return Ok(Registered {
                    sub: new_subject(),
                    username,
                    email,
                    user: None,
                });
            }
            Err(StoreError::Conflict(_)) => return Err(SelfServiceError::UsernameTaken),
            Err(e) => return Err(e.into()),
        }
        let created = self
            .store
            .find_user_by_id(&user.id)
            .await?
            .ok_or(SelfServiceError::NoAccount)?;
        // In the background, like the mail for an address in use: both answers take the
        // same time.
        self.in_background(created.clone(), TokenPurpose::VerifyEmail);
        Ok(Registered {
            sub: created.id.clone(),
            username: created.username.clone(),
            email: created.email.clone(),
            user: Some(created),
        })
    }

    fn mail_existing_account(&self, email: &str) {
        self.mailer.send_later(Mail {
            to: email.to_string(),
            subject: "You already have an account".into(),
            body: format!(
                "Someone (perhaps you) tried to sign up with this address, but it already \
                 belongs to an account.\n\nSign in at {issuer}/login, or reset your password \
                 at {issuer}/forgot-password.\n\nIf this was not you, you can ignore this mail.\n",
                issuer = self.issuer
            ),
        });
    }

    /// Mails a new verification link for the user's current address.
    pub async fn send_verification(&self, user: &UserRecord) -> Result<(), SelfServiceError> {
        let token = self
            .new_token(user, TokenPurpose::VerifyEmail, VERIFY_EMAIL_SECONDS)
            .await?;
        self.mailer.send_later(Mail {
            to: user.email.clone(),
            subject: "Verify your e-mail address".into(),
            body: format!(
                "Confirm that {email} is your address by opening this link within 24 hours:\n\n\
                 {issuer}/verify-email?token={token}\n\nIf you did not sign up, ignore this mail.\n",
                email = user.email,
                issuer = self.issuer,
            ),
        });
        Ok(())
    }

    async fn new_token(
        &self,
        user: &UserRecord,
        purpose: TokenPurpose,
        lifetime: i64,
    ) -> Result<String, SelfServiceError> {
        let token = new_opaque();
        let now = unix_now();
        self.store
            .insert_account_token(
                &hash_opaque(&token),
                purpose,
                &AccountToken {
                    user_id: user.id.clone(),
                    email: user.email.clone(),
                },
                now,
                now + lifetime,
            )
            .await?;
        Ok(token)
    }

    /// Uses a verification token: the address it was mailed to is now verified.
    /// Returns the user's id.
    pub async fn verify_email(&self, token: &str) -> Result<String, SelfServiceError> {
        if !plausible_token(token) {
            return Err(SelfServiceError::InvalidToken);
        }
        self.store
            .redeem_verification(&hash_opaque(token), unix_now())
            .await?
            .map(|t| t.user_id)
            .ok_or(SelfServiceError::InvalidToken)
    }

    /// Mails a reset link when an enabled account has this address; answers the same
    /// either way (the mail is sent in the background).
    pub async fn request_reset(&self, email: &str) -> Result<(), SelfServiceError> {
        let Some(email) = normalize_email(email) else {
            return Err(invalid("email", "Enter a valid e-mail address."));
        };
        let Some(user) = self.store.find_user_by_email(&email).await? else {
            return Ok(());
        };
        if !user.disabled {
            // The token is stored and mailed in the background, so an existing address
            // is not told apart from an unknown one by the time the answer takes.
            self.in_background(user, TokenPurpose::ResetPassword);
        }
        Ok(())
    }

    /// Stores a new token and mails it, from a background task; a failure is logged
    /// (the user can ask again).
    fn in_background(&self, user: UserRecord, purpose: TokenPurpose) {
        let this = self.clone();
        tokio::spawn(async move {
            let sent = match purpose {
                TokenPurpose::VerifyEmail => this.send_verification(&user).await,
                TokenPurpose::ResetPassword => this.send_reset(&user).await,
            };
            if let Err(e) = sent {
                tracing::warn!(error = %e, "account mail not sent");
            }
        });
    }

    async fn send_reset(&self, user: &UserRecord) -> Result<(), SelfServiceError> {
        let token = self
            .new_token(user, TokenPurpose::ResetPassword, RESET_PASSWORD_SECONDS)
            .await?;
        self.mailer.send_later(Mail {
            to: user.email.clone(),
            subject: "Reset your password".into(),
            body: format!(
                "Someone (perhaps you) asked to reset the password of the account {username}.\n\n\
                 Choose a new password within an hour at:\n\n{issuer}/reset-password?token={token}\n\n\
                 If this was not you, ignore this mail: your password stays as it is.\n",
                username = user.username,
                issuer = self.issuer,
            ),
        });
        Ok(())
    }

    /// Whether a reset token is live (the page shows the form only then).
    pub async fn reset_token_is_live(&self, token: &str) -> Result<bool, SelfServiceError> {
        if !plausible_token(token) {
            return Ok(false);
        }
        Ok(self
            .store
            .find_account_token(&hash_opaque(token), TokenPurpose::ResetPassword, unix_now())
            .await?
            .is_some())
    }

    /// Sets a new password with a reset token; every session and refresh token of the
    /// user ends with it. Returns the user's id.
    pub async fn confirm_reset(
        &self,
        token: &str,
        password: &SecretString,
        refresh_lifetime: i64,
    ) -> Result<String, SelfServiceError> {
        if !plausible_token(token) {
            return Err(SelfServiceError::InvalidToken);
        }
        let hash = hash_opaque(token);
        let now = unix_now();
        let found = self
            .store
            .find_account_token(&hash, TokenPurpose::ResetPassword, now)
            .await?
            .ok_or(SelfServiceError::InvalidToken)?;
        let user = self
            .store
            .find_user_by_id(&found.user_id)
            .await?
            .ok_or(SelfServiceError::InvalidToken)?;
        check_password(password.expose_secret(), &user.username, &user.email)
            .map_err(|m| invalid("password", password_message(m)))?;
        let password_hash = self.accounts.hasher.hash(password).await?;
        self.store
            .reset_password(&hash, &password_hash, unix_now(), now + refresh_lifetime)
            .await?
            .map(|_| user.id)
            .ok_or(SelfServiceError::InvalidToken)
    }

    /// Changes the password of a signed-in user who proves the current one.
    pub async fn change_password(
        &self,
        user: &UserRecord,
        current: &SecretString,
        new: &SecretString,
    ) -> Result<(), SelfServiceError> {
        let mut errors = FieldErrors::new();
        if let Err(m) = check_password(new.expose_secret(), &user.username, &user.email) {
            errors.insert("new_password", password_message(m));
        }
        let current_ok = super::validate_password(current.expose_secret()).is_ok()
            && self
                .accounts
                .hasher
                .verify(current, user.password_hash.as_deref())
                .await?;
        if !current_ok {
            errors.insert(
                "current_password",
                "The current password is not correct.".into(),
            );
        }
        if !errors.is_empty() {
            return Err(SelfServiceError::Invalid(errors));
        }
        let hash = self.accounts.hasher.hash(new).await?;
        match self
            .store
            .set_password_hash_by_id(&user.id, &hash, unix_now())
            .await
        {
            Err(StoreError::NotFound) => Err(SelfServiceError::NoAccount),
            other => Ok(other?),
        }
    }

    /// Applies a profile edit; a new address is unverified and gets a verification mail.
    pub async fn update_profile(
        &self,
        user: &UserRecord,
        edit: &ProfileEdit,
    ) -> Result<UserRecord, SelfServiceError> {
        let change = check_profile(edit).map_err(SelfServiceError::Invalid)?;
        let new_email = change.email.as_ref().filter(|e| **e != user.email).cloned();
        match self
            .store
            .update_profile(&user.id, &change, unix_now())
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Err(SelfServiceError::EmailTaken),
            Err(StoreError::NotFound) => return Err(SelfServiceError::NoAccount),
            Err(e) => return Err(e.into()),
        }
        let updated = self
            .store
            .find_user_by_id(&user.id)
            .await?
            .ok_or(SelfServiceError::NoAccount)?;
        if new_email.is_some() {
            self.send_verification(&updated).await?;
        }
        Ok(updated)
    }
}

/// Tokens are 43 base64url characters; anything else cannot be one and is not looked up.
fn plausible_token(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(username: &str, email: &str, password: &str) -> Registration {
        Registration {
            username: username.into(),
            email: email.into(),
            password: SecretString::from(password.to_string()),
            name: None,
        }
    }

    #[test]
    fn registration_reports_every_bad_field_at_once() {
        let errors = check_registration(&reg("a", "nope", "short")).unwrap_err();
        assert_eq!(
            errors.keys().copied().collect::<Vec<_>>(),
            ["email", "password", "username"]
        );
        assert_eq!(
            errors["password"],
            "The password must be at least 8 characters."
        );
        let same = check_registration(&reg("bobby", "b@example.com", "BOBBY")).unwrap_err();
        assert!(
            same["password"].starts_with("The password must be at least"),
            "{same:?}"
        );
        let same =
            check_registration(&reg("bobby.tables", "b@example.com", "Bobby.Tables")).unwrap_err();
        assert_eq!(
            same["password"],
            "The password must differ from the username and e-mail address."
        );
        let ok = check_registration(&reg(" bob ", "Bob@Example.com", "quiet meadow lantern 42"));
        assert_eq!(ok.unwrap(), ("bob".into(), "bob@example.com".into()));
        let common = check_registration(&reg("bob", "bob@example.com", "password123")).unwrap_err();
        assert!(common.contains_key("password"), "{common:?}");
    }

    #[test]
    fn profile_edits_are_checked_and_empty_clears() {
        let edit = ProfileEdit {
            name: Some(" Bob ".into()),
            given_name: Some("".into()),
            picture: Some("https://img.example/b.png".into()),
            locale: Some("pt-BR".into()),
            ..Default::default()
        };
        let change = check_profile(&edit).unwrap();
        assert_eq!(change.name, Some(Some("Bob".into())));
        assert_eq!(change.given_name, Some(None));
        assert_eq!(change.family_name, None);
        assert_eq!(change.locale, Some(Some("pt-BR".into())));
        let bad = ProfileEdit {
            name: Some("x".repeat(200)),
            picture: Some("javascript:alert(1)".into()),
            locale: Some("not a locale".into()),
            email: Some("nope".into()),
            family_name: Some("a\u{0}b".into()),
            ..Default::default()
        };
        let errors = check_profile(&bad).unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
    }

    #[test]
    fn only_well_formed_tokens_are_looked_up() {
        assert!(plausible_token(&new_opaque()));
        for bad in ["", "abc", &"a".repeat(44), &format!("{}=", "a".repeat(42))] {
            assert!(!plausible_token(bad), "{bad}");
        }
    }
}
