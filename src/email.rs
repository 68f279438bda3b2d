//! Outgoing mail: verification and password-reset links. `[email] transport = "file"`
//! writes each message as one `.eml` file into `outbox_dir` (development, tests);
//! `"smtp"` sends it through `smtp_url` (STARTTLS on `smtp://`, TLS on `smtps://`).
//!
//! Mail is sent from a background task: a request that mails and one that does not
//! (an unknown address asking for a reset) must answer in the same time, and a slow
//! mail server must not hold a request open.

use std::path::PathBuf;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::config::{EmailConfig, EmailTransport};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid e-mail address: {0}")]
    Address(String),
    #[error("building the message: {0}")]
    Build(String),
    #[error("sending the message: {0}")]
    Send(String),
}

/// One plain-text message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Plain 7-bit text whenever the body is ASCII with lines within RFC 5322's 998
/// characters, so each link stays whole on its line and scripts reading the outbox can
/// take it as it is (lettre would switch to quoted-printable past 76 characters, which
/// every issuer plus a token exceeds); quoted-printable otherwise.
fn body(text: String) -> Body {
    let plain = text.is_ascii()
        && !text.contains(['\0', '\r'])
        && text.lines().all(|line| line.len() <= 998);
    if plain {
        Body::dangerous_pre_encoded(
            text.replace('\n', "\r\n").into_bytes(),
            ContentTransferEncoding::SevenBit,
        )
    } else {
        Body::new(text)
    }
}

#[derive(Clone)]
enum Transport {
    /// The outbox directory. Files are written here rather than by lettre's file
    /// transport, which creates them with the umask's mode (0644): a mail holds a live
    /// reset link, so it is 0600, in a 0700 directory.
    File(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// From validated config; creates the outbox directory for the file transport.
    pub fn from_config(config: &EmailConfig) -> Result<Self, MailError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| MailError::Address(format!("email.from: {e}")))?;
        let transport = match (config.transport, &config.smtp_url) {
            (EmailTransport::Smtp, Some(url)) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|e| MailError::Send(format!("email.smtp_url: {e}")))?
                    .build(),
            ),
            (EmailTransport::Smtp, None) => {
                return Err(MailError::Send("email.smtp_url is not set".into()));
            }
            (EmailTransport::File, _) => {
                let dir = PathBuf::from(&config.outbox_dir);
                crate::private_files::create_dir(&dir).map_err(|e| {
                    MailError::Send(format!("email.outbox_dir {}: {e}", dir.display()))
                })?;
                Transport::File(dir)
            }
        };
        Ok(Self { from, transport })
    }

    pub async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e| MailError::Address(format!("{}: {e}", mail.to)))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body(mail.body))
            .map_err(|e| MailError::Build(e.to_string()))?;
        match &self.transport {
            Transport::File(dir) => {
                // The same `<uuid>.eml` layout and bytes as lettre's file transport.
                let path = dir.join(format!("{}.eml", uuid::Uuid::new_v4()));
                crate::private_files::write_new(&path, &message.formatted())
                    .await
                    .map_err(|e| MailError::Send(format!("{}: {e}", path.display())))
            }
            Transport::Smtp(t) => t
                .send(message)
                .await
                .map(drop)
                .map_err(|e| MailError::Send(e.to_string())),
        }
    }

    /// Sends in the background; a failure is logged (the link can be requested again).
    pub fn send_later(&self, mail: Mail) {
        let mailer = self.clone();
        tokio::spawn(async move {
            let subject = mail.subject.clone();
            if let Err(e) = mailer.send(mail).await {
                tracing::warn!(error = %e, subject = %subject, "mail not sent");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_stay_on_one_line_in_seven_bit_text() {
        let link = format!(
            "https://id.example.com/verify-email?token={}",
            "a".repeat(43)
        );
        let body = body(format!("Open this link:\n\n{link}\n"));
        assert_eq!(body.encoding(), ContentTransferEncoding::SevenBit);
        let text = String::from_utf8(body.into_vec()).unwrap();
        assert!(text.contains(&format!("\r\n{link}\r\n")), "{text}");
        // Non-ASCII text is encoded by lettre's rules.
        let other = super::body("Grüße\n".to_string());
        assert_ne!(other.encoding(), ContentTransferEncoding::SevenBit);
    }
}
