//! Server settings from, in order of precedence: command-line flags, `PALAVER_*` environment variables, a TOML
//! config file, and defaults.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use palaver_api::sid::AccountSid;
use serde::Deserialize;

/// How log lines are written (`--log-format`, `log_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `palaver serve`. Every flag also reads its `PALAVER_*` variable.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "PALAVER_LISTEN")]
    listen: Option<String>,
    /// Directory for the embedded database and generated credentials.
    #[arg(long, env = "PALAVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TOML file with any of the settings, by their flag names with underscores (listen, data_dir, smtp_url, …).
    #[arg(long, env = "PALAVER_CONFIG")]
    config: Option<PathBuf>,
    /// Account SID (AC…) used as the REST user name; generated on first start when not given.
    #[arg(long, env = "PALAVER_ACCOUNT_SID", hide_env_values = true)]
    account_sid: Option<String>,
    /// Auth token used as the REST password and webhook signing key; generated on first start when not given.
    #[arg(long, env = "PALAVER_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// Enforce Twilio's minimum conversation timers (1 minute inactive, 10 minutes closed).
    #[arg(long, env = "PALAVER_ENFORCE_TIMER_MINIMUMS")]
    enforce_timer_minimums: Option<bool>,
    /// The URL the messaging gateway and mail relays reach this server at (for status callbacks and signature
    /// checks), e.g. https://chat.example.com.
    #[arg(long, env = "PALAVER_PUBLIC_URL")]
    public_url: Option<String>,
    /// SMS/WhatsApp gateway speaking Twilio's Messaging API, e.g. https://api.twilio.com.
    #[arg(long, env = "PALAVER_MESSAGING_GATEWAY_URL")]
    messaging_gateway_url: Option<String>,
    /// The gateway account SID (HTTP Basic user).
    #[arg(long, env = "PALAVER_MESSAGING_GATEWAY_ACCOUNT_SID")]
    messaging_gateway_account_sid: Option<String>,
    /// The gateway auth token (HTTP Basic password; it also signs the gateway's callbacks).
    #[arg(long, env = "PALAVER_MESSAGING_GATEWAY_AUTH_TOKEN", hide_env_values = true)]
    messaging_gateway_auth_token: Option<String>,
    /// SMTP relay for email participants: smtp://host:port, smtp://host:port?tls=required or smtps://host:port.
    #[arg(long, env = "PALAVER_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// Email sender for conversations without an email address of their own.
    #[arg(long, env = "PALAVER_EMAIL_FROM")]
    email_from: Option<String>,
    /// APNs base URL for every APNs credential (default: Apple's production or sandbox host, by the credential).
    #[arg(long, env = "PALAVER_PUSH_APNS_URL")]
    push_apns_url: Option<String>,
    /// FCM base URL (default https://fcm.googleapis.com).
    #[arg(long, env = "PALAVER_PUSH_FCM_URL")]
    push_fcm_url: Option<String>,
    /// Google's OAuth2 token endpoint for every FCM credential (default: the service account's token_uri).
    #[arg(long, env = "PALAVER_PUSH_FCM_TOKEN_URL")]
    push_fcm_token_url: Option<String>,
    /// A PEM file of certificates to trust for push services besides the public roots (a private CA, a test's).
    #[arg(long, env = "PALAVER_PUSH_CA_FILE")]
    push_ca_file: Option<PathBuf>,
    /// Also send web pushes to http:// endpoints (for tests; browsers' push services are https://).
    #[arg(long, env = "PALAVER_PUSH_ALLOW_HTTP_ENDPOINTS")]
    push_allow_http_endpoints: Option<bool>,
    /// Hosts web pushes may go to, comma-separated (`.example.com` for subdomains; `*` for any); default: the
    /// browsers' push services (FCM, Mozilla, Apple, Windows).
    #[arg(long, env = "PALAVER_PUSH_WEBPUSH_HOSTS")]
    push_webpush_hosts: Option<String>,
    /// Where media files go: file:///path, or s3://bucket/prefix in builds with the `s3` feature (default: the
    /// data directory's `media` folder).
    #[arg(long, env = "PALAVER_MEDIA_STORE_URL")]
    media_store_url: Option<String>,
    /// PostgreSQL instead of the embedded database: postgres://user@host:5432/dbname (migrated at start).
    #[arg(long, env = "PALAVER_DATABASE_URL", hide_env_values = true)]
    database: Option<String>,
    /// Cluster mode: the NATS server(s) the nodes sharing the --database talk through, nats://host:4222
    /// (comma-separated for a NATS cluster). Needs --database postgres://….
    #[arg(long, env = "PALAVER_NATS_URL")]
    nats: Option<String>,
    /// First token of every NATS subject this cluster uses, so several clusters can share one NATS.
    #[arg(long, env = "PALAVER_NATS_SUBJECT_PREFIX")]
    nats_subject_prefix: Option<String>,
    /// On SIGTERM, keep serving this many seconds with /readyz answering 503 (so the load balancer stops
    /// sending traffic) before closing realtime sessions and finishing in-flight requests.
    #[arg(long, env = "PALAVER_DRAIN_SECONDS")]
    drain_seconds: Option<f64>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// The limits of `palaver serve` (README, "Limits"); in a TOML config they go in a `[limits]` table. A rate or
/// cap of 0 turns it off.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitArgs {
    /// Changes per second to one conversation by REST callers and SDK users (Twilio's 30), answered 429 beyond.
    #[arg(long, env = "PALAVER_CONVERSATION_RATE")]
    conversation_rate: Option<f64>,
    /// Conversation, user and role creations/deletions per second in one service (Twilio's 30).
    #[arg(long, env = "PALAVER_SERVICE_RATE")]
    service_rate: Option<f64>,
    /// Requests per second on one HTTP connection or realtime socket (bursts of five seconds' worth allowed).
    #[arg(long, env = "PALAVER_CONNECTION_RATE")]
    connection_rate: Option<f64>,
    /// Open connections from one IP address (behind a load balancer: raise it, or 0).
    #[arg(long, env = "PALAVER_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// Open realtime sessions of one identity in one service.
    #[arg(long, env = "PALAVER_MAX_SESSIONS_PER_IDENTITY")]
    max_sessions_per_identity: Option<usize>,
    /// Request body bytes (media uploads have the media limits instead).
    #[arg(long, env = "PALAVER_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Fields in one form body or query string.
    #[arg(long, env = "PALAVER_MAX_FORM_FIELDS")]
    max_form_fields: Option<usize>,
    /// Bytes of a request's line and headers.
    #[arg(long, env = "PALAVER_MAX_HEADER_BYTES")]
    max_header_bytes: Option<usize>,
    /// Bytes of one WebSocket message from a client.
    #[arg(long, env = "PALAVER_MAX_FRAME_BYTES")]
    max_frame_bytes: Option<usize>,
    /// Seconds a client has to send a request's headers; also how long an idle keep-alive connection stays.
    #[arg(long, env = "PALAVER_HEADER_READ_TIMEOUT")]
    header_read_timeout: Option<f64>,
    /// Seconds a request, body included, may take before it is answered 408.
    #[arg(long, env = "PALAVER_REQUEST_TIMEOUT")]
    request_timeout: Option<f64>,
}

impl LimitArgs {
    /// These limits, each falling back to `file`'s, then to the default.
    fn resolve(self, file: Option<LimitArgs>) -> Result<palaver_server::limits::ServerLimits> {
        use palaver_core::limits::RateLimit;
        let file = file.unwrap_or_default();
        let defaults = palaver_server::limits::ServerLimits::default();
        let rate = |name: &str, given: Option<f64>, default: Option<RateLimit>, shape: fn(f64) -> RateLimit| match given
        {
            None => Ok(default),
            Some(0.0) => Ok(None),
            Some(r) if r.is_finite() && r > 0.0 && r <= 1e9 => Ok(Some(shape(r))),
            Some(r) => bail!("--{name} must be a number of actions per second, or 0 for none (got {r})"),
        };
        let cap = |given: Option<usize>, default: Option<usize>| match given {
            None => default,
            Some(0) => None,
            Some(n) => Some(n),
        };
        let size = |name: &str, given: Option<usize>, default: usize, min: usize| match given {
            None => Ok(default),
            Some(n) if n >= min => Ok(n),
            Some(n) => bail!("--{name} must be at least {min} (got {n})"),
        };
        let seconds = |name: &str, given: Option<f64>, default: std::time::Duration| match given {
            None => Ok(default),
            Some(s) => std::time::Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| *d >= std::time::Duration::from_millis(100) && d.as_secs() <= 86_400)
                .ok_or_else(|| anyhow::anyhow!("--{name} must be between 0.1 and 86400 seconds (got {s})")),
        };
        Ok(palaver_server::limits::ServerLimits {
            conversation_rate: rate(
                "conversation-rate",
                self.conversation_rate.or(file.conversation_rate),
                defaults.conversation_rate,
                RateLimit::per_second,
            )?,
            service_rate: rate(
                "service-rate",
                self.service_rate.or(file.service_rate),
                defaults.service_rate,
                RateLimit::per_second,
            )?,
            connection_rate: rate(
                "connection-rate",
                self.connection_rate.or(file.connection_rate),
                defaults.connection_rate,
                palaver_server::limits::connection_rate,
            )?,
            max_connections_per_ip: cap(
                self.max_connections_per_ip.or(file.max_connections_per_ip),
                defaults.max_connections_per_ip,
            ),
            max_sessions_per_identity: cap(
                self.max_sessions_per_identity.or(file.max_sessions_per_identity),
                defaults.max_sessions_per_identity,
            ),
            max_body_bytes: size(
                "max-body-bytes",
                self.max_body_bytes.or(file.max_body_bytes),
                defaults.max_body_bytes,
                1024,
            )?,
            max_form_fields: size(
                "max-form-fields",
                self.max_form_fields.or(file.max_form_fields),
                defaults.max_form_fields,
                16,
            )?,
            max_header_bytes: size(
                "max-header-bytes",
                self.max_header_bytes.or(file.max_header_bytes),
                defaults.max_header_bytes,
                8192,
            )?,
            max_frame_bytes: size(
                "max-frame-bytes",
                self.max_frame_bytes.or(file.max_frame_bytes),
                defaults.max_frame_bytes,
                16 * 1024,
            )?,
            header_read_timeout: seconds(
                "header-read-timeout",
                self.header_read_timeout.or(file.header_read_timeout),
                defaults.header_read_timeout,
            )?,
            request_timeout: seconds(
                "request-timeout",
                self.request_timeout.or(file.request_timeout),
                defaults.request_timeout,
            )?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    account_sid: Option<String>,
    auth_token: Option<String>,
    enforce_timer_minimums: Option<bool>,
    public_url: Option<String>,
    messaging_gateway_url: Option<String>,
    messaging_gateway_account_sid: Option<String>,
    messaging_gateway_auth_token: Option<String>,
    smtp_url: Option<String>,
    email_from: Option<String>,
    push_apns_url: Option<String>,
    push_fcm_url: Option<String>,
    push_fcm_token_url: Option<String>,
    push_ca_file: Option<PathBuf>,
    push_allow_http_endpoints: Option<bool>,
    push_webpush_hosts: Option<String>,
    media_store_url: Option<String>,
    database: Option<String>,
    nats: Option<String>,
    nats_subject_prefix: Option<String>,
    drain_seconds: Option<f64>,
    limits: Option<LimitArgs>,
    /// Read before the rest, by [`ServeArgs::log_format_in_config_file`]: logging starts first.
    log_format: Option<LogFormat>,
}

/// The resolved settings.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) listen: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) account_sid: Option<String>,
    pub(crate) auth_token: Option<String>,
    pub(crate) domain: palaver_core::service::Settings,
    pub(crate) channels: palaver_server::channels::ChannelSettings,
    pub(crate) push: palaver_server::push::PushSettings,
    pub(crate) media_store_url: Option<String>,
    pub(crate) database: Option<String>,
    pub(crate) nats: Option<String>,
    pub(crate) nats_subject_prefix: String,
    pub(crate) drain_delay: std::time::Duration,
    pub(crate) limits: palaver_server::limits::ServerLimits,
}

impl ServeArgs {
    /// The config file's `log_format`, if it has one.
    pub(crate) fn log_format_in_config_file(&self) -> Result<Option<LogFormat>> {
        Ok(self.config_file()?.log_format)
    }

    fn config_file(&self) -> Result<FileConfig> {
        let Some(path) = &self.config else { return Ok(FileConfig::default()) };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str::<FileConfig>(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

impl Settings {
    pub(crate) fn resolve(args: ServeArgs) -> Result<Self> {
        let file = args.config_file()?;
        let gateway = match (
            args.messaging_gateway_url.or(file.messaging_gateway_url),
            args.messaging_gateway_account_sid.or(file.messaging_gateway_account_sid),
            args.messaging_gateway_auth_token.or(file.messaging_gateway_auth_token),
        ) {
            (Some(url), Some(account_sid), Some(auth_token)) => {
                Some(palaver_server::channels::MessagingGatewayConfig { url, account_sid, auth_token })
            }
            (None, None, None) => None,
            _ => bail!("the messaging gateway needs its URL, account SID and auth token together"),
        };
        let channels = palaver_server::channels::ChannelSettings {
            messaging_gateway: gateway,
            smtp: args.smtp_url.or(file.smtp_url).map(|url| palaver_server::channels::SmtpConfig {
                url,
                default_from: args.email_from.clone().or(file.email_from.clone()),
            }),
            public_url: args.public_url.or(file.public_url),
        };
        let defaults = palaver_server::push::PushSettings::default();
        let push = palaver_server::push::PushSettings {
            apns_url: args.push_apns_url.or(file.push_apns_url),
            fcm_url: args.push_fcm_url.or(file.push_fcm_url).unwrap_or(defaults.fcm_url),
            fcm_token_url: args.push_fcm_token_url.or(file.push_fcm_token_url),
            extra_root_certificates: match args.push_ca_file.or(file.push_ca_file) {
                Some(path) => vec![std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?],
                None => Vec::new(),
            },
            allow_http_endpoints: args.push_allow_http_endpoints.or(file.push_allow_http_endpoints).unwrap_or(false),
            webpush_hosts: match args.push_webpush_hosts.or(file.push_webpush_hosts) {
                Some(list) if list.trim() == "*" => Vec::new(),
                Some(list) => list.split(',').map(str::trim).filter(|h| !h.is_empty()).map(str::to_string).collect(),
                None => defaults.webpush_hosts,
            },
            request_timeout: defaults.request_timeout,
        };
        Ok(Self {
            limits: args.limits.resolve(file.limits)?,
            channels,
            push,
            media_store_url: args.media_store_url.or(file.media_store_url),
            database: args.database.or(file.database),
            nats: args.nats.or(file.nats),
            nats_subject_prefix: match args.nats_subject_prefix.or(file.nats_subject_prefix) {
                Some(prefix) => {
                    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    {
                        bail!("the NATS subject prefix must be letters, digits, '_' or '-' (got {prefix:?})");
                    }
                    prefix
                }
                None => "palaver".to_string(),
            },
            drain_delay: match args.drain_seconds.or(file.drain_seconds) {
                Some(seconds) => {
                    std::time::Duration::try_from_secs_f64(seconds)
                        .ok()
                        .filter(|d| d.as_secs() <= 3600)
                        .ok_or_else(|| anyhow::anyhow!("--drain-seconds must be between 0 and 3600 (got {seconds})"))?
                }
                None => std::time::Duration::ZERO,
            },
            listen: args.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:8088".into()),
            data_dir: args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./palaver-data")),
            account_sid: args.account_sid.or(file.account_sid),
            auth_token: args.auth_token.or(file.auth_token),
            domain: palaver_core::service::Settings {
                enforce_timer_minimums: args.enforce_timer_minimums.or(file.enforce_timer_minimums).unwrap_or(true),
                ..Default::default()
            },
        })
    }
}

#[derive(Debug, serde::Serialize, Deserialize)]
struct StoredCredentials {
    account_sid: String,
    auth_token: String,
}

const CREDENTIALS_FILE: &str = "credentials.toml";

/// The account credentials: given ones, else those stored in the data directory, else new ones that are stored
/// and printed once.
pub(crate) fn credentials(settings: &Settings) -> Result<palaver_server::Credentials> {
    let (sid, token) = match (&settings.account_sid, &settings.auth_token) {
        (Some(sid), Some(token)) => (sid.clone(), token.clone()),
        (None, None) => stored_or_generated(&settings.data_dir)?,
        _ => bail!("set both PALAVER_ACCOUNT_SID and PALAVER_AUTH_TOKEN, or neither"),
    };
    if token.len() < 8 {
        bail!("the auth token must be at least 8 characters");
    }
    let account_sid = AccountSid::parse(&sid).context("the account SID")?;
    Ok(palaver_server::Credentials { account_sid, auth_token: token })
}

fn stored_or_generated(data_dir: &Path) -> Result<(String, String)> {
    let path = data_dir.join(CREDENTIALS_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let stored: StoredCredentials = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        return Ok((stored.account_sid, stored.auth_token));
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let account_sid = AccountSid::generate().to_string();
    let auth_token = palaver_api::sid::random_secret();
    let stored = StoredCredentials { account_sid: account_sid.clone(), auth_token: auth_token.clone() };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(toml::to_string(&stored)?.as_bytes())?;
    file.sync_all()?;
    println!("Generated credentials (stored in {}):", path.display());
    println!("  account SID: {account_sid}");
    println!("  auth token:  {auth_token}");
    Ok((account_sid, auth_token))
}

/// The account credentials stored in `data_dir` by the server's first start (for commands that log in to it).
pub(crate) fn stored_credentials(data_dir: &Path) -> Result<(String, String)> {
    let path = data_dir.join(CREDENTIALS_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (or pass --account-sid and --auth-token)", path.display()))?;
    let stored: StoredCredentials = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok((stored.account_sid, stored.auth_token))
}

/// The account SID for commands that work on a data directory without serving: the given one, else the one
/// stored there.
pub(crate) fn account_sid_for(data_dir: &Path, given: Option<String>) -> Result<AccountSid> {
    let raw = match given {
        Some(raw) => raw,
        None => {
            let path = data_dir.join(CREDENTIALS_FILE);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "reading {} (start the server once, or pass --account-sid / PALAVER_ACCOUNT_SID)",
                    path.display()
                )
            })?;
            toml::from_str::<StoredCredentials>(&text)
                .with_context(|| format!("parsing {}", path.display()))?
                .account_sid
        }
    };
    AccountSid::parse(&raw).context("the account SID")
}
