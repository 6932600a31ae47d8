//! Sending mail: one message type (a plain-text and an HTML part, `Message-ID`, `Date`, a subject
//! naming the product) over one of three transports: `smtp` (lettre on tokio with rustls,
//! pooled, bounded in time; STARTTLS required off loopback unless the URL says otherwise),
//! `file` (one `.eml` per message) and `log` (the embedded default, so the quick start works
//! without a mail server: the message goes to the log).
//!
//! Templates are built in and may be overridden, file by file, from `email.templates_dir`.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use minijinja::Environment;

use crate::model::Email;

/// How long one SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The built-in templates: `(name, text)`.
const TEMPLATES: [(&str, &str); 10] = [
    ("magic_link.txt", include_str!("templates/magic_link.txt")),
    ("magic_link.html", include_str!("templates/magic_link.html")),
    ("verify_email.txt", include_str!("templates/verify_email.txt")),
    ("verify_email.html", include_str!("templates/verify_email.html")),
    ("reset_password.txt", include_str!("templates/reset_password.txt")),
    ("reset_password.html", include_str!("templates/reset_password.html")),
    ("org_invite.txt", include_str!("templates/org_invite.txt")),
    ("org_invite.html", include_str!("templates/org_invite.html")),
    ("confirm_signup.txt", include_str!("templates/confirm_signup.txt")),
    ("confirm_signup.html", include_str!("templates/confirm_signup.html")),
];

/// Why mail cannot be set up or sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// A template does not render.
    #[error("mail template: {0}")]
    Template(#[from] minijinja::Error),
    /// The message cannot be built.
    #[error("mail message: {0}")]
    Message(String),
    /// The transport refused or failed.
    #[error("mail transport: {0}")]
    Transport(String),
}

enum Transport {
    Log,
    File(AsyncFileTransport<Tokio1Executor>),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// Which message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// A sign-in link and code.
    MagicLink,
    /// A link confirming the address.
    VerifyEmail,
    /// A password reset link.
    ResetPassword,
    /// An invite to join an organization.
    OrgInvite,
    /// The link and code that finish a password sign-up, or, for a taken address, sign its
    /// owner in (`existing`).
    ConfirmSignup,
}

impl Template {
    fn name(self) -> &'static str {
        match self {
            Self::MagicLink => "magic_link",
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
            Self::OrgInvite => "org_invite",
            Self::ConfirmSignup => "confirm_signup",
        }
    }

    fn subject(self, product: &str) -> String {
        match self {
            Self::MagicLink => format!("Sign in to {product}"),
            Self::VerifyEmail => format!("Confirm your email address for {product}"),
            Self::ResetPassword => format!("Reset your {product} password"),
            Self::OrgInvite => format!("You are invited to an organization on {product}"),
            Self::ConfirmSignup => format!("Your {product} sign-up"),
        }
    }
}

/// Renders and sends mail.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    product_name: String,
    templates: Environment<'static>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let transport = match self.transport {
            Transport::Log => "log",
            Transport::File(_) => "file",
            Transport::Smtp(_) => "smtp",
        };
        f.debug_struct("Mailer").field("transport", &transport).field("from", &self.from).finish()
    }
}

/// What [`Mailer::new`] needs.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `log`, `file` or `smtp`.
    pub transport: String,
    /// The `From` mailbox.
    pub from: String,
    /// Named in subjects and bodies.
    pub product_name: String,
    /// Templates that replace the built-in ones.
    pub templates_dir: Option<PathBuf>,
    /// Where the `file` transport writes.
    pub file_dir: Option<PathBuf>,
    /// The `smtp` transport's URL.
    pub smtp_url: Option<String>,
}

impl Mailer {
    /// Sets up the transport and loads the templates.
    ///
    /// # Errors
    /// A bad `From`, SMTP URL, directory or template.
    pub fn new(settings: &MailSettings) -> Result<Self, MailError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|error| MailError::Config(format!("email.from: {error}")))?;
        let transport = match settings.transport.as_str() {
            "file" => {
                let dir = settings.file_dir.clone().ok_or_else(|| {
                    MailError::Config("email.file_dir is required for the file transport".into())
                })?;
                std::fs::create_dir_all(&dir)
                    .map_err(|error| MailError::Config(format!("email.file_dir: {error}")))?;
                Transport::File(AsyncFileTransport::new(dir))
            }
            "smtp" => Transport::Smtp(smtp_transport(settings.smtp_url.as_deref().unwrap_or(""))?),
            _ => Transport::Log,
        };
        let mut templates = Environment::new();
        for (name, text) in TEMPLATES {
            let text = match &settings.templates_dir {
                Some(dir) if dir.join(name).exists() => std::fs::read_to_string(dir.join(name))
                    .map_err(|error| MailError::Config(format!("email.templates_dir: {error}")))?,
                _ => text.to_owned(),
            };
            templates.add_template_owned(name.to_owned(), text)?;
        }
        Ok(Self { transport, from, product_name: settings.product_name.clone(), templates })
    }

    /// Renders `template` with `context` (plus `product_name`) and sends it to `to`.
    ///
    /// # Errors
    /// Rendering, building or sending fails.
    pub async fn send(
        &self,
        template: Template,
        to: &Email,
        context: minijinja::Value,
    ) -> Result<(), MailError> {
        let context = minijinja::context! { product_name => &self.product_name, ..context };
        let render = |suffix: &str| {
            self.templates.get_template(&format!("{}.{suffix}", template.name()))?.render(&context)
        };
        let (text, html) = (render("txt")?, render("html")?);
        let recipient = to.as_str().to_owned();
        // `Email` refuses anything that could inject a header.
        let to: Mailbox = to
            .as_str()
            .parse()
            .map_err(|error| MailError::Message(format!("recipient: {error}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(template.subject(&self.product_name))
            .date_now()
            .message_id(None)
            .multipart(MultiPart::alternative_plain_html(text.clone(), html))
            .map_err(|error| MailError::Message(error.to_string()))?;
        match &self.transport {
            Transport::Log => {
                tracing::info!(
                    target: "portcullis::mail",
                    to = recipient,
                    subject = template.subject(&self.product_name),
                    "mail (log transport; configure email.transport to deliver it):\n{text}"
                );
                Ok(())
            }
            Transport::File(transport) => transport
                .send(message)
                .await
                .map(drop)
                .map_err(|error| MailError::Transport(error.to_string())),
            Transport::Smtp(transport) => transport
                .send(message)
                .await
                .map(drop)
                .map_err(|error| MailError::Transport(error.to_string())),
        }
    }
}

/// An SMTP transport for `url` (`smtp://user:pass@host:port`, `smtps://…` for implicit TLS).
fn smtp_transport(url: &str) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    Ok(AsyncSmtpTransport::<Tokio1Executor>::from_url(&with_tls_policy(url)?)
        .map_err(|error| MailError::Config(format!("email.smtp_url: {error}")))?
        .timeout(Some(SMTP_TIMEOUT))
        .build())
}

/// A plain `smtp://` URL to anything but loopback requires STARTTLS unless it names `tls=`:
/// credentials and sign-in links must not cross a network in clear text by default.
fn with_tls_policy(url: &str) -> Result<String, MailError> {
    let parsed = url::Url::parse(url)
        .map_err(|error| MailError::Config(format!("email.smtp_url: {error}")))?;
    let loopback = parsed.host_str().is_some_and(|host| {
        host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    let names_tls = parsed.query_pairs().any(|(name, _)| name == "tls");
    Ok(if parsed.scheme() == "smtp" && !loopback && !names_tls {
        let separator = if parsed.query().is_some() { '&' } else { '?' };
        format!("{url}{separator}tls=required")
    } else {
        url.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starttls_is_required_off_loopback_unless_the_url_says_otherwise() {
        let policy = |url: &str| with_tls_policy(url).unwrap();
        assert_eq!(
            policy("smtp://u:p@mail.example.com:587"),
            "smtp://u:p@mail.example.com:587?tls=required"
        );
        assert_eq!(
            policy("smtp://mail.example.com?tls=opportunistic"),
            "smtp://mail.example.com?tls=opportunistic"
        );
        assert_eq!(policy("smtp://127.0.0.1:2525"), "smtp://127.0.0.1:2525");
        assert_eq!(policy("smtp://localhost:25"), "smtp://localhost:25");
        assert_eq!(policy("smtps://mail.example.com:465"), "smtps://mail.example.com:465");
        assert!(with_tls_policy("not a url").is_err());
        for url in
            ["smtp://mail.example.com:587", "smtps://mail.example.com:465", "smtp://127.0.0.1:25"]
        {
            assert!(smtp_transport(url).is_ok(), "{url}");
        }
    }
}
