//! Delivery of conversation messages to non-chat participants: SMS and WhatsApp through an HTTP messaging
//! gateway that speaks Twilio's Messaging API (so a Twilio account, or any provider with the same shape, can
//! carry them), and email over SMTP.
//!
//! The outbox is the table of queued delivery receipts, written with each message: the dispatcher sends what is
//! due, records the outcome on the receipt (which announces it as `delivery.updated`), and retries failures with
//! backoff. A receipt leaves the queue only once the channel accepted the message, so a restart resends
//! whatever was not yet accepted. (A crash between the channel's acceptance and its recording can resend
//! one message: channels have no idempotency key to prevent that.)
//!
//! On several nodes, each claims the receipts it sends for [`CHANNEL_LEASE`], so no two nodes send one receipt
//! at once; every attempt ends within [`ATTEMPT_DEADLINE`], well inside the lease, and the receipts of a node
//! that died are claimed by another when their lease ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MessageBuilder, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use palaver_api::sid::MediaSid;
use palaver_core::channel::*;
use palaver_core::model::BindingKind;
use palaver_core::{Palaver, Store};
use serde_json::Value;
use time::OffsetDateTime;

use crate::webhooks::backoff;

/// Attempts before a receipt is given up as failed.
pub const MAX_ATTEMPTS: u32 = 8;
/// The longest one attempt may take, on any channel. The gateway's HTTP timeout bounds its whole request,
/// but SMTP's bounds each command, not the conversation with the server, and attachments are read first:
/// so the attempt as a whole is bounded here, well inside the [`CHANNEL_LEASE`] its receipt is claimed for.
pub const ATTEMPT_DEADLINE: Duration = Duration::from_secs(30);
/// How long a claimed receipt belongs to the node that claimed it: other nodes' claims skip it until then and
/// take it over after, as the job of a node that died. It must outlast an attempt.
pub const CHANNEL_LEASE: Duration = Duration::from_secs(60);
const _: () = assert!(2 * ATTEMPT_DEADLINE.as_secs() <= CHANNEL_LEASE.as_secs(), "a lease outlasts two attempts");
/// The gateway's answer to one message.
const GATEWAY_TIMEOUT: Duration = Duration::from_secs(15);
/// One SMTP command's answer.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);
/// Receipts sent per round.
const BATCH: u32 = 64;
/// Twilio's error code for a message that could not be handed to the carrier ("queue overflow" is 30001;
/// 30008 is "unknown error", which is what an exhausted retry budget is).
const GAVE_UP_ERROR_CODE: i64 = 30008;

/// An HTTP messaging gateway in the shape of Twilio's Messaging API.
#[derive(Debug, Clone)]
pub struct MessagingGatewayConfig {
    /// Base URL, e.g. `https://api.twilio.com`; messages are posted to
    /// `{url}/2010-04-01/Accounts/{account_sid}/Messages.json`.
    pub url: String,
    /// The gateway account (HTTP Basic user).
    pub account_sid: String,
    /// The gateway secret (HTTP Basic password); also what the gateway signs its callbacks with.
    pub auth_token: String,
}

/// An SMTP relay for email participants.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// `smtp://host:port` (plain), `smtp://host:port?tls=required` (STARTTLS) or `smtps://host:port`, with
    /// optional `user:password@`.
    pub url: String,
    /// Sender when the conversation has no email address of its own.
    pub default_from: Option<String>,
}

/// How the server reaches non-chat participants.
#[derive(Debug, Clone, Default)]
pub struct ChannelSettings {
    /// SMS and WhatsApp.
    pub messaging_gateway: Option<MessagingGatewayConfig>,
    /// Email.
    pub smtp: Option<SmtpConfig>,
    /// The URL the gateway can reach this server at, for status callbacks (`{public_url}/v1/Channels/…`).
    pub public_url: Option<String>,
}

impl ChannelSettings {
    /// The channels this server can send on.
    pub fn enabled(&self) -> Vec<BindingKind> {
        let mut channels = Vec::new();
        if self.messaging_gateway.is_some() {
            channels.extend([BindingKind::Sms, BindingKind::Whatsapp]);
        }
        if self.smtp.is_some() {
            channels.push(BindingKind::Email);
        }
        channels
    }
}

/// Why a channel did not take a message.
#[derive(Debug, thiserror::Error)]
enum ChannelError {
    /// Worth another try later (no answer, 5xx, 429).
    #[error("{0}")]
    Transient(String),
    /// Will not work however often it is tried (a 4xx with the channel's error code).
    #[error("{message}")]
    Permanent { code: Option<i64>, message: String },
}

/// Sends SMS/WhatsApp messages through the gateway.
#[derive(Debug, Clone)]
struct GatewayClient {
    http: reqwest::Client,
    config: MessagingGatewayConfig,
    /// Where the gateway can reach us: status callbacks and media URLs.
    public_url: Option<String>,
    /// Signs media URLs.
    auth_token: String,
}

impl GatewayClient {
    fn new(config: MessagingGatewayConfig, public_url: Option<&str>, auth_token: &str) -> Self {
        let http = reqwest::Client::builder().timeout(GATEWAY_TIMEOUT).build().unwrap_or_default();
        let public_url = public_url.map(|base| base.trim_end_matches('/').to_string());
        Self { http, config, public_url, auth_token: auth_token.to_string() }
    }

    /// Posts one message; returns the gateway's id for it (`SM…`).
    async fn send(&self, job: &ChannelJob) -> Result<String, ChannelError> {
        let from = job.proxy_address.clone().ok_or_else(|| ChannelError::Permanent {
            code: Some(21603),
            message: "the participant has no proxy address to send from".into(),
        })?;
        let mut form: Vec<(&str, String)> = vec![("To", job.to.clone()), ("From", from)];
        let body = job.body.clone().unwrap_or_default();
        let attachments: Vec<&str> = job
            .media
            .iter()
            .filter(|m| m["category"].as_str().is_none_or(|c| c == "media"))
            .filter_map(|m| m["sid"].as_str())
            .collect();
        if !body.is_empty() || attachments.is_empty() {
            form.push(("Body", body));
        }
        if let Some(base) = &self.public_url {
            // Signed URLs the gateway fetches the files from (valid for a few minutes, long enough to send).
            let now = OffsetDateTime::now_utc();
            for sid in attachments {
                form.push(("MediaUrl", crate::media::signed_content_url(base, &self.auth_token, sid, now)));
            }
            form.push(("StatusCallback", format!("{base}/v1/Channels/Messaging/Status")));
        }
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.config.url.trim_end_matches('/'),
            self.config.account_sid
        );
        let response = self
            .http
            .post(&url)
            .basic_auth(&self.config.account_sid, Some(&self.config.auth_token))
            .form(&form)
            .send()
            .await
            .map_err(|e| ChannelError::Transient(format!("gateway unreachable: {e}")))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return answer["sid"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| ChannelError::Transient("the gateway's answer has no message sid".into()));
        }
        let message = answer["message"].as_str().unwrap_or("the gateway refused the message").to_string();
        if status.is_server_error() || status.as_u16() == 429 {
            Err(ChannelError::Transient(format!("gateway answered {status}: {message}")))
        } else {
            Err(ChannelError::Permanent { code: answer["code"].as_i64(), message })
        }
    }
}

/// Sends email through SMTP.
#[derive(Clone)]
struct MailClient {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    default_from: Option<String>,
    /// Where attachments' bytes are read from.
    files: Option<(Arc<dyn Store>, crate::media::MediaStore)>,
}

impl std::fmt::Debug for MailClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailClient").finish_non_exhaustive()
    }
}

impl MailClient {
    fn new(config: &SmtpConfig) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.url)
            .map_err(|e| format!("invalid SMTP URL '{}': {e}", config.url))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(Self { transport, default_from: config.default_from.clone(), files: None })
    }

    /// Sends one email for a message to all of its email recipients (`to` and `cc` levels); returns its
    /// Message-ID.
    async fn send(&self, jobs: &[&ChannelJob]) -> Result<String, ChannelError> {
        let first = jobs[0];
        let from_address = first
            .conversation_email
            .as_ref()
            .map(|(address, _)| address.clone())
            .or_else(|| first.projected_address.clone())
            .or_else(|| self.default_from.clone())
            .ok_or_else(|| ChannelError::Permanent {
                code: None,
                message: "no sender address: set the conversation's email binding or the server's email sender".into(),
            })?;
        let from_name = first
            .conversation_email
            .as_ref()
            .and_then(|(_, name)| name.clone())
            .unwrap_or_else(|| first.author.clone());
        let mailbox = |name: Option<&str>, address: &str| -> Result<Mailbox, ChannelError> {
            let parsed = address.parse().map_err(|e| ChannelError::Permanent {
                code: Some(21211),
                message: format!("'{address}' is not an email address: {e}"),
            })?;
            Ok(Mailbox::new(name.map(str::to_string), parsed))
        };
        let subject =
            first.subject.clone().or_else(|| first.conversation_name.clone()).unwrap_or_else(|| "New message".into());
        let message_id = format!("<{}.{}@palaver>", first.message_sid, first.conversation_sid);
        let mut builder: MessageBuilder = lettre::Message::builder()
            .from(mailbox(Some(&from_name), &from_address)?)
            .subject(subject)
            .message_id(Some(message_id.clone()));
        for job in jobs {
            let recipient = mailbox(job.name.as_deref(), &job.to)?;
            builder = if job.level.as_deref() == Some("cc") { builder.cc(recipient) } else { builder.to(recipient) };
        }
        let built = if first.media.is_empty() {
            builder.singlepart(SinglePart::plain(first.body.clone().unwrap_or_default()))
        } else {
            builder.multipart(self.content(first).await?)
        };
        let email = built
            .map_err(|e| ChannelError::Permanent { code: None, message: format!("cannot build the email: {e}") })?;
        match self.transport.send(email).await {
            Ok(_) => Ok(message_id),
            Err(err) if err.is_permanent() => Err(ChannelError::Permanent { code: None, message: err.to_string() }),
            Err(err) => Err(ChannelError::Transient(err.to_string())),
        }
    }
}

impl MailClient {
    /// The email's parts: the text (and an HTML body when the message has one), then the attachments.
    async fn content(&self, job: &ChannelJob) -> Result<MultiPart, ChannelError> {
        let mut text = SinglePart::plain(job.body.clone().unwrap_or_default());
        let mut html = None;
        let mut attachments = Vec::new();
        for descriptor in &job.media {
            let Some(sid) = descriptor["sid"].as_str().and_then(|s| s.parse::<MediaSid>().ok()) else { continue };
            let content_type = descriptor["content_type"].as_str().unwrap_or("application/octet-stream");
            let category = descriptor["category"].as_str().unwrap_or("media");
            if category == "history" {
                continue;
            }
            let bytes = self.read(&sid).await?;
            match category {
                "body" if content_type.starts_with("text/html") => {
                    html = Some(SinglePart::html(String::from_utf8_lossy(&bytes).into_owned()));
                }
                "body" => text = SinglePart::plain(String::from_utf8_lossy(&bytes).into_owned()),
                _ => {
                    let name = descriptor["filename"].as_str().unwrap_or("attachment").to_string();
                    let kind = ContentType::parse(content_type)
                        .unwrap_or_else(|_| ContentType::parse("application/octet-stream").expect("a valid type"));
                    attachments.push(Attachment::new(name).body(bytes.to_vec(), kind));
                }
            }
        }
        let body = match html {
            Some(html) => MultiPart::alternative().singlepart(text).singlepart(html),
            None => MultiPart::mixed().singlepart(text),
        };
        Ok(attachments.into_iter().fold(MultiPart::mixed().multipart(body), MultiPart::singlepart))
    }

    async fn read(&self, sid: &MediaSid) -> Result<bytes::Bytes, ChannelError> {
        let Some((store, files)) = &self.files else {
            return Err(ChannelError::Permanent { code: None, message: "no media store".into() });
        };
        let media = store.find_media(sid).await.map_err(|e| ChannelError::Transient(e.to_string()))?;
        files.get(&media.sha256).await.map_err(|e| ChannelError::Transient(e.to_string()))
    }
}

/// Sends queued receipts on the enabled channels until `shutdown` completes.
pub async fn run_channel_dispatcher(
    palaver: Palaver,
    settings: ChannelSettings,
    media: crate::media::MediaStore,
    auth_token: String,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut channels = settings.enabled();
    let gateway =
        settings.messaging_gateway.clone().map(|c| GatewayClient::new(c, settings.public_url.as_deref(), &auth_token));
    let mail = match settings.smtp.as_ref().map(MailClient::new).transpose() {
        Ok(mail) => mail.map(|mail| MailClient { files: Some((palaver.store().clone(), media)), ..mail }),
        Err(err) => {
            tracing::error!(%err, "email delivery is off");
            None
        }
    };
    // A node that cannot send email must not claim email receipts: another node may be able to.
    if mail.is_none() {
        channels.retain(|channel| *channel != BindingKind::Email);
    }
    if channels.is_empty() {
        return;
    }
    tokio::pin!(shutdown);
    let store = palaver.store().clone();
    let mut wakeups = crate::webhooks::Wakeups::new(palaver.feed().subscribe());
    loop {
        send_due(&store, &channels, gateway.as_ref(), mail.as_ref(), &metrics).await;
        let wait = match store.next_channel_job_due(&channels).await {
            Ok(Some(due)) => Duration::try_from(due - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO),
            _ => Duration::from_secs(5),
        }
        .min(Duration::from_secs(5));
        if !wakeups.wait(wait, &mut shutdown).await {
            return;
        }
    }
}

async fn send_due(
    store: &Arc<dyn Store>,
    channels: &[BindingKind],
    gateway: Option<&GatewayClient>,
    mail: Option<&MailClient>,
    metrics: &crate::metrics::Metrics,
) {
    let jobs = match store.due_channel_jobs(channels, OffsetDateTime::now_utc(), CHANNEL_LEASE, BATCH).await {
        Ok(jobs) => jobs,
        Err(err) => {
            tracing::warn!(%err, "could not read queued deliveries");
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
    };
    // One email per message carries all of its email recipients; SMS and WhatsApp go one by one.
    let mut emails: BTreeMap<String, Vec<&ChannelJob>> = BTreeMap::new();
    let mut sends = Vec::new();
    for job in &jobs {
        if job.channel == BindingKind::Email {
            emails.entry(job.message_sid.to_string()).or_default().push(job);
        } else if let Some(gateway) = gateway {
            sends.push(async move {
                let outcome = within_deadline(gateway.send(job)).await;
                record(store, &[job], outcome, metrics).await;
            });
        }
    }
    let mail_sends = emails.into_values().filter_map(|group| {
        mail.map(|mail| async move {
            let outcome = within_deadline(mail.send(&group)).await;
            record(store, &group, outcome, metrics).await;
        })
    });
    futures_util::future::join(futures_util::future::join_all(sends), futures_util::future::join_all(mail_sends)).await;
}

/// `attempt`'s outcome, or a transient failure when it takes longer than [`ATTEMPT_DEADLINE`].
async fn within_deadline(
    attempt: impl std::future::Future<Output = Result<String, ChannelError>>,
) -> Result<String, ChannelError> {
    tokio::time::timeout(ATTEMPT_DEADLINE, attempt)
        .await
        .unwrap_or_else(|_| Err(ChannelError::Transient(format!("no answer within {} s", ATTEMPT_DEADLINE.as_secs()))))
}

async fn record(
    store: &Arc<dyn Store>,
    jobs: &[&ChannelJob],
    outcome: Result<String, ChannelError>,
    metrics: &crate::metrics::Metrics,
) {
    use crate::metrics::ChannelOutcome;
    let now = OffsetDateTime::now_utc();
    for job in jobs {
        let counted = match &outcome {
            Ok(_) => ChannelOutcome::Sent,
            Err(ChannelError::Transient(_)) if job.attempts + 1 < MAX_ATTEMPTS => ChannelOutcome::Retry,
            Err(_) => ChannelOutcome::Failed,
        };
        metrics.channel_attempted(job.channel.as_str(), counted);
        let update = match &outcome {
            Ok(channel_id) => DeliveryUpdate {
                status: DeliveryStatus::Sent,
                channel_message_sid: Some(channel_id.clone()),
                error_code: None,
                retry_at: None,
                last_error: None,
                now,
            },
            Err(ChannelError::Transient(reason)) if job.attempts + 1 < MAX_ATTEMPTS => {
                tracing::info!(receipt = %job.receipt_sid, attempts = job.attempts + 1, %reason, "delivery failed; will retry");
                DeliveryUpdate {
                    status: DeliveryStatus::Queued,
                    channel_message_sid: None,
                    error_code: None,
                    retry_at: Some(now + backoff(job.attempts + 1)),
                    last_error: Some(reason.clone()),
                    now,
                }
            }
            Err(err) => {
                tracing::warn!(receipt = %job.receipt_sid, %err, "delivery failed for good");
                let code = match err {
                    ChannelError::Permanent { code, .. } => *code,
                    ChannelError::Transient(_) => Some(GAVE_UP_ERROR_CODE),
                };
                DeliveryUpdate {
                    status: DeliveryStatus::Failed,
                    channel_message_sid: None,
                    error_code: code.or(Some(GAVE_UP_ERROR_CODE)),
                    retry_at: None,
                    last_error: Some(err.to_string()),
                    now,
                }
            }
        };
        if let Err(err) = store.update_delivery(&ReceiptRef::Sid(job.receipt_sid.clone()), update).await {
            tracing::warn!(%err, receipt = %job.receipt_sid, "could not record a delivery");
        }
    }
}
