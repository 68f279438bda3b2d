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
    AccountToken, KeepSession, MailedToken, NewUser, ProfileChange, Store, StoreError,
    TokenPurpose, UserRecord, Verified, unix_now,
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

/// Ties a sign-up's verification link to the browser that signed up, so that opening
/// it there signs in (and resumes `resume_request`) while a link opened anywhere else
/// only verifies.
#[derive(Debug, Clone)]
pub struct SignupBinding {
    /// SHA-256 of a value only that browser can compute again.
    pub browser_hash: Vec<u8>,
    pub resume_request: Option<String>,
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
    /// Resets and password changes end sessions through it.
    sessions: crate::sessions::Sessions,
    mailer: Mailer,
    issuer: String,
}

impl SelfService {
    pub fn new(
        accounts: Accounts,
        store: Store,
        sessions: crate::sessions::Sessions,
        mailer: Mailer,
        issuer: &str,
    ) -> Self {
        Self {
            accounts,
            store,
            sessions,
            mailer,
            issuer: issuer.trim_end_matches('/').to_string(),
        }
    }

    /// Creates an unverified account and mails a verification link. The password is
    /// hashed before the address is looked at, so both outcomes take the same time.
    pub async fn register(
        &self,
        r: Registration,
        binding: Option<SignupBinding>,
    ) -> Result<Registered, SelfServiceError> {
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
                // A taken username is reported whatever the address, so the answer for a
                // known username never depends on whether the address has an account.
                if self.store.find_user_by_username(&username).await?.is_some() {
                    return Err(SelfServiceError::UsernameTaken);
                }
                // Sign-up must not reveal which addresses have accounts: the answer looks
                // the same, and the owner is told by mail.
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
        let this = self.clone();
        let user = created.clone();
        tokio::spawn(async move {
            if let Err(e) = this.send_verification_bound(&user, binding).await {
                tracing::warn!(error = %e, "account mail not sent");
            }
        });
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
        self.send_verification_bound(user, None).await
    }

    async fn send_verification_bound(
        &self,
        user: &UserRecord,
        binding: Option<SignupBinding>,
    ) -> Result<(), SelfServiceError> {
        let mut stored = AccountToken {
            user_id: user.id.clone(),
            email: user.email.clone(),
            ..AccountToken::default()
        };
        if let Some(b) = binding {
            stored.browser_hash = Some(b.browser_hash);
            stored.resume_request = b.resume_request;
        }
        let token = self
            .new_token(&stored, TokenPurpose::VerifyEmail, VERIFY_EMAIL_SECONDS)
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
        stored: &AccountToken,
        purpose: TokenPurpose,
        lifetime: i64,
    ) -> Result<String, SelfServiceError> {
        let token = new_opaque();
        let now = unix_now();
        self.store
            .insert_account_token(&hash_opaque(&token), purpose, stored, now, now + lifetime)
            .await?;
        Ok(token)
    }

    /// Uses a verification token: the address it was mailed to is now verified, or, for
    /// a pending address, becomes the account's address (ASVS 2.2.3). Returns the token
    /// as stored (whose it was, and a sign-up's browser binding).
    pub async fn verify_email(&self, token: &str) -> Result<AccountToken, SelfServiceError> {
        if !plausible_token(token) {
            return Err(SelfServiceError::InvalidToken);
        }
        match self
            .store
            .redeem_verification(&hash_opaque(token), unix_now())
            .await?
        {
            Some(Verified::Address(t)) => Ok(t),
            Some(Verified::Changed { token, previous }) => {
                self.notify(
                    &previous,
                    "Your e-mail address was changed",
                    format!(
                        "The e-mail address of your account is now {new}; this address no \
                         longer belongs to it.\n\n{warning}",
                        new = token.email,
                        warning = self.not_you(),
                    ),
                );
                Ok(token)
            }
            Some(Verified::Taken) => Err(SelfServiceError::EmailTaken),
            None => Err(SelfServiceError::InvalidToken),
        }
    }

    /// A notice to an address: no link in it acts on the account, so a notice that
    /// reaches the wrong reader gives nothing away.
    fn notify(&self, to: &str, subject: &str, body: String) {
        self.mailer.send_later(Mail {
            to: to.to_string(),
            subject: subject.into(),
            body,
        });
    }

    fn not_you(&self) -> String {
        format!(
            "If this was not you, someone may know your password: sign in at \
             {issuer}/login and change it, or ask an administrator for help.\n",
            issuer = self.issuer
        )
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
        // Only ever to the account's current address, never to a pending one: a reset
        // link is a way in, and a pending address is not proven to be the owner's.
        let stored = AccountToken {
            user_id: user.id.clone(),
            email: user.email.clone(),
            ..AccountToken::default()
        };
        let token = self
            .new_token(&stored, TokenPurpose::ResetPassword, RESET_PASSWORD_SECONDS)
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
        let done = self
            .sessions
            .ending(now, |until| {
                self.store
                    .reset_password(&hash, &password_hash, unix_now(), until)
            })
            .await?;
        if done.is_none() {
            return Err(SelfServiceError::InvalidToken);
        }
        self.password_notice(&user);
        Ok(user.id)
    }

    /// ASVS 2.2.3: the account's address hears of every password change and reset.
    fn password_notice(&self, user: &UserRecord) {
        self.notify(
            &user.email,
            "Your password was changed",
            format!(
                "The password of the account {username} was just changed.\n\n{warning}",
                username = user.username,
                warning = self.not_you(),
            ),
        );
    }

    /// Changes the password of a signed-in user who proves the current one; with
    /// `sign_out`, the user's other sessions end and their refresh tokens are revoked in
    /// the same transaction (ASVS 3.3.3). The address is told (ASVS 2.2.3).
    pub async fn change_password(
        &self,
        user: &UserRecord,
        current: &SecretString,
        new: &SecretString,
        sign_out: Option<&KeepSession>,
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
        let now = unix_now();
        match self
            .sessions
            .ending(now, |until| {
                self.store
                    .change_password_by_id(&user.id, &hash, sign_out, now, until)
            })
            .await
        {
            Err(StoreError::NotFound) => Err(SelfServiceError::NoAccount),
            Err(e) => Err(e.into()),
            Ok(()) => {
                self.password_notice(user);
                Ok(())
            }
        }
    }

    /// Whether `edit` asks for an address other than the user's current one (then it
    /// needs the current password).
    pub fn changes_email(user: &UserRecord, edit: &ProfileEdit) -> bool {
        // An address that is not one is only a validation error, not a change.
        edit.email
            .as_deref()
            .and_then(normalize_email)
            .is_some_and(|e| e != user.email)
    }

    /// Applies a profile edit. A new address needs the current password and is only
    /// pending: it becomes the account's address when the link mailed to it is opened,
    /// and the current address is told (ASVS 2.2.3: a stolen session alone cannot move
    /// the account, nor its reset links, to another mailbox). Everything else applies at
    /// once, in the same transaction.
    pub async fn update_profile(
        &self,
        user: &UserRecord,
        edit: &ProfileEdit,
        current_password: Option<&SecretString>,
    ) -> Result<UserRecord, SelfServiceError> {
        let checked = check_profile(edit);
        let new_email = match &checked {
            Ok(change) => change.email.as_ref().filter(|e| **e != user.email).cloned(),
            Err(_) => None,
        };
        let mut errors = checked.as_ref().err().cloned().unwrap_or_default();
        if Self::changes_email(user, edit) {
            let proven = match current_password {
                Some(p) => {
                    super::validate_password(p.expose_secret()).is_ok()
                        && self
                            .accounts
                            .hasher
                            .verify(p, user.password_hash.as_deref())
                            .await?
                }
                None => false,
            };
            if !proven {
                errors.insert(
                    "current_password",
                    "Enter your current password to change the e-mail address.".into(),
                );
            }
        }
        let mut change = match checked {
            Ok(change) if errors.is_empty() => change,
            _ => return Err(SelfServiceError::Invalid(errors)),
        };
        // The address itself never changes here; it waits in `pending_email`.
        change.email = None;
        let token = new_opaque();
        let token_hash = hash_opaque(&token);
        let now = unix_now();
        let mailed = new_email.as_ref().map(|email| MailedToken {
            hash: &token_hash,
            purpose: TokenPurpose::VerifyEmail,
            email: email.clone(),
            expires_at: now + VERIFY_EMAIL_SECONDS,
        });
        change.pending_email = new_email.clone();
        match self
            .store
            .update_profile(&user.id, &change, mailed.as_ref(), now)
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(SelfServiceError::NoAccount),
            Err(e) => return Err(e.into()),
        }
        if let Some(email) = &new_email {
            self.mail_email_change(user, email, &token).await?;
        }
        self.store
            .find_user_by_id(&user.id)
            .await?
            .ok_or(SelfServiceError::NoAccount)
    }

    /// The mails of a change request: the link to the new address (or, when another
    /// account has it, a notice without a link, so the answer tells nothing about that
    /// address), and a notice to the current one.
    async fn mail_email_change(
        &self,
        user: &UserRecord,
        new: &str,
        token: &str,
    ) -> Result<(), SelfServiceError> {
        let owned = self
            .store
            .find_user_by_email(new)
            .await?
            .is_some_and(|other| other.id != user.id);
        if owned {
            self.notify(
                new,
                "Someone tried to use your address",
                format!(
                    "Someone asked to move another account to this address, but it already \
                     belongs to an account. Nothing changed.\n\nIf this was you, sign in at \
                     {issuer}/login with your existing account.\n",
                    issuer = self.issuer
                ),
            );
        } else {
            self.notify(
                new,
                "Verify your new e-mail address",
                format!(
                    "Someone (perhaps you) asked to use {new} for the account {username}. Open \
                     this link within 24 hours to confirm:\n\n{issuer}/verify-email?token={token}\n\n\
                     If this was not you, ignore this mail: nothing changes.\n",
                    username = user.username,
                    issuer = self.issuer,
                ),
            );
        }
        self.notify(
            &user.email,
            "A change of your e-mail address was requested",
            format!(
                "Someone signed in to the account {username} asked to change its e-mail \
                 address to {new}. The change happens only when the link mailed to that \
                 address is opened; until then this address stays the account's.\n\n{warning}",
                username = user.username,
                warning = self.not_you(),
            ),
        );
        Ok(())
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
