//! The `palaver` command: run the server, manage API keys.

mod backups;
mod chat;
mod config;
mod status;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use palaver_core::input::FriendlyName;

use config::{LogFormat, ServeArgs, Settings};

/// Palaver: a self-hosted conversations server with a Twilio-compatible REST API.
#[derive(Debug, Parser)]
#[command(name = "palaver", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written to stderr: text for people, json (one object per line, with the request id of
    /// the request being served) for log collectors. PALAVER_LOG sets the levels (e.g. info,palaver_server=debug).
    /// For `serve`, also the `log_format` key of its config file. Text when none is given.
    #[arg(long, global = true, env = "PALAVER_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Mint an access token for the realtime API (for development and scripts).
    Token {
        /// The user the token is for.
        #[arg(long)]
        identity: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        /// Conversation service (IS…); the default service when omitted.
        #[arg(long)]
        service: Option<String>,
        /// Data directory of the server (its credentials and API keys).
        #[arg(long, env = "PALAVER_DATA_DIR", default_value = "./palaver-data")]
        data_dir: PathBuf,
        /// Account SID, when not stored in the data directory.
        #[arg(long, env = "PALAVER_ACCOUNT_SID", hide_env_values = true)]
        account_sid: Option<String>,
        /// The server's PostgreSQL database, when it has one (its API keys live there).
        #[arg(long, env = "PALAVER_DATABASE_URL", hide_env_values = true)]
        database: Option<String>,
    },
    /// Chat from the terminal: live messages, typing, unread counts, /commands.
    Chat {
        /// Who you are.
        #[arg(long)]
        identity: String,
        /// Conversation SID or unique name (created when the name is new).
        #[arg(long)]
        conversation: Option<String>,
        /// The server's realtime URL.
        #[arg(long, env = "PALAVER_URL", default_value = "ws://127.0.0.1:8088/v1/realtime")]
        url: String,
        /// An access token; minted from the data directory's API key when omitted.
        #[arg(long, env = "PALAVER_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Data directory of the server (to mint a token).
        #[arg(long, env = "PALAVER_DATA_DIR", default_value = "./palaver-data")]
        data_dir: PathBuf,
    },
    /// Create or upgrade the database schema and exit (`palaver serve` also does this at start).
    Migrate {
        /// The PostgreSQL database to migrate; the data directory's embedded database when omitted.
        #[arg(long, env = "PALAVER_DATABASE_URL", hide_env_values = true)]
        database: Option<String>,
        /// Data directory holding the embedded database.
        #[arg(long, env = "PALAVER_DATA_DIR", default_value = "./palaver-data")]
        data_dir: PathBuf,
    },
    /// Read an export (`palaver export`) into an empty deployment, or copy a data directory into PostgreSQL.
    ///
    /// `palaver import FILE` reads the JSON lines of `palaver export` into the data directory's embedded
    /// database, or into --database postgres://…, which must hold no data yet (a new data directory or database,
    /// or one only a first start prepared); SIDs, indices, dates and attributes are kept. Stop the server on
    /// the target first. Copy the media folder of the source's data directory beside it: media bytes are not in
    /// the export.
    ///
    /// `palaver import --from DATA_DIR --database postgres://…` copies every row of <DATA_DIR>/palaver.sqlite3
    /// (services, conversations, participants, messages, users, roles, API keys, webhook settings, delivery
    /// receipts, the event log, …) into the PostgreSQL database, after migrating it, in one transaction: all of
    /// it or nothing. SIDs, message indices, sequence numbers and dates are kept, and new writes continue after
    /// them. Stop `palaver serve` on the data directory first (the file is read, never changed). The PostgreSQL
    /// database must hold no data yet: a new one, or one that only `palaver migrate` or a node's first start
    /// prepared; anything else is refused and left as it was. Media files and the generated credentials are not
    /// in the database: they stay in the data directory. Start the PostgreSQL node with the same --data-dir
    /// (`palaver serve --data-dir <DATA_DIR> --database …`), or copy <DATA_DIR>/media and
    /// <DATA_DIR>/credentials.toml to the nodes' data directories (or keep media in a shared --media-store-url).
    Import {
        /// An export file written by `palaver export`.
        #[arg(value_name = "FILE", required_unless_present = "from", conflicts_with = "from")]
        file: Option<PathBuf>,
        /// Data directory whose embedded database to copy into --database (a one-time move to PostgreSQL).
        #[arg(long, value_name = "DATA_DIR")]
        from: Option<PathBuf>,
        /// The PostgreSQL database to import into (postgres://…); required with --from. With FILE and without
        /// it, the data directory's embedded database.
        #[arg(long, env = "PALAVER_DATABASE_URL", hide_env_values = true)]
        database: Option<String>,
        /// Data directory to import FILE into (its embedded database), when no --database is given.
        #[arg(long, env = "PALAVER_DATA_DIR", default_value = "./palaver-data")]
        data_dir: PathBuf,
    },
    /// Write a consistent copy of the embedded database to FILE, while the server runs.
    ///
    /// Reads <DATA_DIR>/palaver.sqlite3 beside a running `palaver serve` (or a stopped one) in one snapshot
    /// with SQLite's online backup API, in steps that leave the server's writes alone; FILE is replaced only
    /// by a whole copy that passed `PRAGMA integrity_check`. It holds everything in the database (API keys and
    /// the event log too), but not the media files (<DATA_DIR>/media) nor credentials.toml: copy those too.
    /// For PostgreSQL deployments use pg_dump (or `palaver export`).
    Backup {
        /// Where to write the backup.
        file: PathBuf,
        /// Data directory of the server.
        #[arg(long, env = "PALAVER_DATA_DIR", default_value = "./palaver-data")]
        data_dir: PathBuf,
    },
    /// Put a backup (`palaver backup`) in place of the data directory's database; the server must be stopped.
    ///
    /// Checks FILE with `PRAGMA integrity_check` first, refuses while a process has the database open, keeps
    /// the database that was there as palaver.sqlite3.before-restore-<unix time>, then copies FILE in.
    Restore {
        /// The backup to restore.
        file: PathBuf,
        /// Data directory of the (stopped) server.
        #[arg(long, env = "PALAVER_DATA_DIR", default_value = "./palaver-data")]
        data_dir: PathBuf,
    },
    /// Write services, users, conversations, participants and messages as JSON lines, for `palaver import FILE`.
    ///
    /// Works on the embedded database (read from a consistent snapshot, so a running server may go on) and on
    /// --database postgres://… alike. Media bytes are not in the file: copy <DATA_DIR>/media (or the media
    /// bucket) along. API keys, the event log and delivery receipt SIDs are not carried (docs/deploy.md, Backups).
    Export {
        /// Where to write the export; `-` for standard output.
        file: PathBuf,
        /// Data directory of the server (its embedded database).
        #[arg(long, env = "PALAVER_DATA_DIR", default_value = "./palaver-data")]
        data_dir: PathBuf,
        /// The server's PostgreSQL database, when it has one.
        #[arg(long, env = "PALAVER_DATABASE_URL", hide_env_values = true)]
        database: Option<String>,
    },
    /// Run a benchmark scenario and print a table and one JSON line.
    Bench(BenchArgs),
    /// Watch a running server: connections, sessions, requests/s, events/s, outboxes, database latency, health.
    ///
    /// Reads the server's /metrics (with the account's credentials, or an API key's) and /readyz every
    /// --interval seconds and prints rates and percentiles over each interval, redrawn in place on a terminal.
    Status {
        /// The server (http://host:port).
        #[arg(long, default_value = "http://127.0.0.1:8088")]
        url: String,
        /// Account SID, or an API key SID (SK…); read from the data directory when omitted.
        #[arg(long, env = "PALAVER_ACCOUNT_SID", hide_env_values = true)]
        account_sid: Option<String>,
        /// Auth token, or the API key's secret.
        #[arg(long, env = "PALAVER_AUTH_TOKEN", hide_env_values = true)]
        auth_token: Option<String>,
        /// Data directory holding the server's credentials.toml, when no credentials are given.
        #[arg(long, env = "PALAVER_DATA_DIR", default_value = "./palaver-data")]
        data_dir: PathBuf,
        /// Seconds between two readings (rates are taken over this).
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
        /// Print one summary (after one interval) and exit, without redrawing.
        #[arg(long)]
        once: bool,
    },
    /// Manage API keys (SK… SID + secret), accepted by the REST API like the account's auth token.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        /// Data directory of the server whose keys to manage.
        #[arg(long, env = "PALAVER_DATA_DIR", default_value = "./palaver-data", global = true)]
        data_dir: PathBuf,
        /// The server's PostgreSQL database, when it has one.
        #[arg(long, env = "PALAVER_DATABASE_URL", hide_env_values = true, global = true)]
        database: Option<String>,
    },
}

/// `palaver bench` options.
#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// ingest, fanout, connections, history, rest or unread.
    scenario: String,
    /// A running server to measure (http://host:port); repeat it, or give a comma-separated list, for the
    /// nodes of one cluster (they share a database, so one account and API key serve all). By default the
    /// benchmark starts its own server(s).
    #[arg(long, value_delimiter = ',', value_name = "URL")]
    url: Vec<String>,
    /// Start the server(s) on this PostgreSQL database instead of a temporary SQLite one. Each run gets a
    /// fresh schema t_<unix seconds>_<hex>, dropped at the end, unless the URL selects one (search_path).
    #[arg(long, value_name = "POSTGRES_URL")]
    database: Option<String>,
    /// How many servers to start on --database; more than one needs --nats. Scenarios spread over them.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Join the started servers over this NATS (nats://host:4222), with a subject prefix of their own.
    #[arg(long, value_name = "NATS_URL")]
    nats: Option<String>,
    /// API key SID of the server at --url (to mint access tokens).
    #[arg(long, env = "PALAVER_BENCH_KEY_SID")]
    key_sid: Option<String>,
    /// That key's secret.
    #[arg(long, env = "PALAVER_BENCH_KEY_SECRET", hide_env_values = true)]
    key_secret: Option<String>,
    /// Account SID of the server at --url.
    #[arg(long, env = "PALAVER_ACCOUNT_SID", hide_env_values = true)]
    account_sid: Option<String>,
    /// Auth token of the server at --url.
    #[arg(long, env = "PALAVER_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// Messages to send or to fill with (default per scenario).
    #[arg(long)]
    messages: Option<u64>,
    /// Concurrent senders / REST clients.
    #[arg(long, default_value_t = 32)]
    senders: usize,
    /// Conversations for ingest.
    #[arg(long, default_value_t = 16)]
    conversations: usize,
    /// Requests in flight per sender.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Listeners (fanout) or connections (connections; default 10000 there).
    #[arg(long)]
    listeners: Option<usize>,
    /// Fanout send rate, messages per second.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Length of timed phases, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[cfg(test)]
mod bench_args_tests {
    use clap::Parser;

    use super::{Cli, Command};

    #[test]
    fn several_urls_repeated_or_listed() {
        let cli = Cli::try_parse_from([
            "palaver",
            "bench",
            "ingest",
            "--url",
            "http://127.0.0.1:1",
            "--url",
            "http://127.0.0.1:2,http://127.0.0.1:3",
        ])
        .unwrap();
        let Command::Bench(args) = cli.command else { panic!("not bench") };
        assert_eq!(args.url, ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"]);
        assert_eq!((args.nodes, args.database, args.nats), (1, None, None), "defaults: one SQLite child");
    }
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Create a key and print its SID and secret (the secret is shown only here).
    Create {
        /// A name to recognise the key by.
        #[arg(long, default_value = "palaver key")]
        name: String,
    },
    /// List keys.
    List,
    /// Delete a key.
    Delete {
        /// The key's SID.
        sid: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PALAVER_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let in_config = match &cli.command {
        Command::Serve(args) => args.log_format_in_config_file()?,
        _ => None,
    };
    match cli.log_format.or(in_config).unwrap_or_default() {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(Settings::resolve(*args)?).await,
            Command::Keys { action, data_dir, database } => keys(action, &data_dir, database.as_deref()).await,
            Command::Migrate { database, data_dir } => migrate(database.as_deref(), &data_dir).await,
            Command::Import { file: Some(file), database, data_dir, .. } => {
                backups::import(&file, &data_dir, database.as_deref()).await
            }
            Command::Import { from: Some(from), database, .. } => match database {
                Some(database) => import(&from, &database).await,
                None => anyhow::bail!("--from needs --database postgres://… (the database to copy into)"),
            },
            Command::Import { .. } => anyhow::bail!("give an export FILE, or --from DATA_DIR --database postgres://…"),
            Command::Backup { file, data_dir } => backups::backup(&file, &data_dir).await,
            Command::Restore { file, data_dir } => backups::restore(&file, &data_dir).await,
            Command::Export { file, data_dir, database } => {
                backups::export(&file, &data_dir, database.as_deref()).await
            }
            Command::Bench(args) => bench(args).await,
            Command::Status { url, account_sid, auth_token, data_dir, interval, once } => {
                let (user, password) = match (account_sid, auth_token) {
                    (Some(user), Some(password)) => (user, password),
                    (None, None) => config::stored_credentials(&data_dir)?,
                    _ => anyhow::bail!("give both --account-sid and --auth-token, or neither"),
                };
                let interval = Duration::try_from_secs_f64(interval)
                    .ok()
                    .filter(|d| *d >= Duration::from_millis(100) && d.as_secs() <= 3600)
                    .ok_or_else(|| anyhow::anyhow!("--interval must be between 0.1 and 3600 seconds"))?;
                status::run(status::Target { url, user, password }, interval, once).await
            }
            Command::Chat { identity, conversation, url, token, data_dir } => {
                let token = match token {
                    Some(token) => token,
                    None => {
                        let database = std::env::var("PALAVER_DATABASE_URL").ok().filter(|u| !u.is_empty());
                        mint(&identity, 24 * 3600, None, &data_dir, None, database.as_deref()).await?
                    }
                };
                chat::run(&url, &token, conversation.as_deref()).await
            }
            Command::Token { identity, ttl, service, data_dir, account_sid, database } => {
                token(&identity, ttl, service.as_deref(), &data_dir, account_sid, database.as_deref()).await
            }
        }
    })
}

async fn serve(settings: Settings) -> Result<()> {
    let credentials = config::credentials(&settings)?;
    let mut state =
        palaver_server::open(&settings.data_dir, settings.database.as_deref(), credentials, settings.domain)
            .await
            .with_context(|| format!("opening the data directory {}", settings.data_dir.display()))?;
    state.channels = std::sync::Arc::new(settings.channels);
    state.push = std::sync::Arc::new(settings.push);
    state.drain_delay = settings.drain_delay;
    let mut state = state.with_limits(settings.limits);
    if let Some(url) = &settings.nats {
        state.join_cluster(url, &settings.nats_subject_prefix).await?;
    }
    if let Some(url) = &settings.media_store_url {
        state.media =
            palaver_server::media::MediaStore::from_url(url).map_err(|e| anyhow::anyhow!("the media store: {e}"))?;
    }
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let address = listener.local_addr()?;
    if state.channels.public_url.is_none() && state.channels.messaging_gateway.is_some() {
        // Status callbacks need an address the gateway can reach; the bound one is right for local setups.
        let mut channels = (*state.channels).clone();
        if address.ip().is_unspecified() {
            tracing::warn!("set --public-url so the messaging gateway can send delivery status callbacks");
        } else {
            channels.public_url = Some(format!("http://{address}"));
        }
        state.channels = std::sync::Arc::new(channels);
    }
    let shutdown = shutdown_signal();
    // Tests and scripts wait for this line to know the server is ready and which port it got.
    println!("Palaver listening on http://{address}");
    tracing::info!(%address, data_dir = %settings.data_dir.display(), "serving");
    palaver_server::run(listener, state, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when it is first
/// polled: a signal that arrives right after the "listening" line already stops the server gracefully.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let (mut interrupt, mut terminate) = signals;
            let interrupted = async {
                match interrupt.as_mut() {
                    Some(s) => drop(s.recv().await),
                    None => std::future::pending::<()>().await,
                }
            };
            let terminated = async {
                match terminate.as_mut() {
                    Some(s) => drop(s.recv().await),
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = interrupted => {}
                () = terminated => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: finishing requests in flight");
    }
}

async fn token(
    identity: &str,
    ttl: i64,
    service: Option<&str>,
    data_dir: &std::path::Path,
    account_sid: Option<String>,
    database: Option<&str>,
) -> Result<()> {
    println!("{}", mint(identity, ttl, service, data_dir, account_sid, database).await?);
    Ok(())
}

/// Signs a token with the data directory's first API key (creating one named "palaver token" if there is none).
async fn mint(
    identity: &str,
    ttl: i64,
    service: Option<&str>,
    data_dir: &std::path::Path,
    account_sid: Option<String>,
    database: Option<&str>,
) -> Result<String> {
    let account_sid = config::account_sid_for(data_dir, account_sid)?;
    let credentials = palaver_server::Credentials { account_sid: account_sid.clone(), auth_token: String::new() };
    let state = palaver_server::open(data_dir, database, credentials, Default::default()).await?;
    let key = match state.palaver.list_api_keys().await?.into_iter().next() {
        Some(key) => key,
        None => state.palaver.create_api_key(FriendlyName::parse("name", "palaver token")?).await?,
    };
    let service = service.map(palaver_api::sid::ServiceSid::parse).transpose()?;
    Ok(palaver_server::token::mint(&palaver_server::token::MintRequest {
        key_sid: &key.sid,
        key_secret: &key.secret,
        account_sid: &account_sid,
        identity,
        service_sid: service.as_ref(),
        ttl_secs: ttl,
    }))
}

async fn bench(args: BenchArgs) -> Result<()> {
    use palaver_bench::{Scenario, Target, TargetOptions, Workload};
    let scenario = Scenario::parse(&args.scenario)
        .with_context(|| format!("unknown scenario '{}'; one of {}", args.scenario, Scenario::NAMES.join(", ")))?;
    palaver_bench::raise_open_file_limit();
    let defaults = Workload::default();
    let workload = Workload {
        messages: args.messages.unwrap_or(match scenario {
            Scenario::Unread => 1_000_000,
            Scenario::Rest => 20_000,
            _ => defaults.messages,
        }),
        senders: args.senders.max(1),
        conversations: args.conversations.max(1),
        window: args.window.max(1),
        listeners: args.listeners.unwrap_or(if scenario == Scenario::Connections {
            10_000
        } else {
            defaults.listeners
        }),
        rate: args.rate.max(1),
        seconds: args.seconds.max(1),
    };
    // Installed before the servers start, so that Ctrl-C or SIGTERM at any point still stops them and drops the
    // run's schema.
    let interrupted = shutdown_signal();
    let target = Target::open(TargetOptions {
        urls: args.url,
        account_sid: args.account_sid,
        auth_token: args.auth_token,
        key_sid: args.key_sid,
        key_secret: args.key_secret,
        database: args.database,
        nodes: args.nodes,
        nats: args.nats,
        binary: None,
    })
    .await?;
    let report = tokio::select! {
        report = palaver_bench::run(scenario, &target, &workload) => report.map_err(anyhow::Error::from),
        () = interrupted => Err(anyhow::anyhow!("interrupted")),
    };
    // Stops the servers and drops the run's PostgreSQL schema, whether the scenario succeeded, failed or was
    // interrupted (Ctrl-C, SIGTERM).
    target.close().await;
    let report = report?;
    print!("{}", report.table());
    println!("{}", report.json_line());
    Ok(())
}

/// Opens the database, which applies every pending migration, and reports it.
async fn migrate(database: Option<&str>, data_dir: &std::path::Path) -> Result<()> {
    let credentials = palaver_server::Credentials {
        account_sid: palaver_api::sid::AccountSid::generate(),
        auth_token: String::new(),
    };
    palaver_server::open(data_dir, database, credentials, Default::default())
        .await
        .context("migrating the database")?;
    match database {
        Some(_) => println!("the PostgreSQL database is up to date"),
        None => println!("the embedded database in {} is up to date", data_dir.display()),
    }
    Ok(())
}

/// Copies the embedded database of `from` into the PostgreSQL database `database`, drawing progress on stderr.
async fn import(from: &std::path::Path, database: &str) -> Result<()> {
    if !(database.starts_with("postgres://") || database.starts_with("postgresql://")) {
        anyhow::bail!("--database must be a PostgreSQL URL (postgres://…)");
    }
    let source = from.join(palaver_server::DATABASE_FILE);
    let mut progress = palaver_import::StderrProgress::new();
    let summary = palaver_import::import(&source, database, &mut progress)
        .await
        .with_context(|| format!("importing {}", source.display()))?;
    println!("imported {} rows in {} tables into the PostgreSQL database", summary.rows, summary.tables.len());
    println!(
        "media files and credentials stay in {}: start the PostgreSQL node with --data-dir {0} --database …",
        from.display()
    );
    Ok(())
}

async fn keys(action: KeysAction, data_dir: &std::path::Path, database: Option<&str>) -> Result<()> {
    let credentials = palaver_server::Credentials {
        account_sid: palaver_api::sid::AccountSid::generate(),
        auth_token: String::new(),
    };
    let state = palaver_server::open(data_dir, database, credentials, Default::default()).await?;
    let palaver = state.palaver;
    match action {
        KeysAction::Create { name } => {
            let key = palaver.create_api_key(FriendlyName::parse("name", &name)?).await?;
            println!("sid:    {}", key.sid);
            println!("secret: {}", key.secret);
            println!("Keep the secret now: it is not shown again by `palaver keys list`.");
        }
        KeysAction::List => {
            for key in palaver.list_api_keys().await? {
                println!("{}  {}  created {}", key.sid, key.friendly_name, key.date_created);
            }
        }
        KeysAction::Delete { sid } => {
            let sid = palaver_api::sid::ApiKeySid::parse(&sid)?;
            palaver.delete_api_key(&sid).await?;
            println!("deleted {sid}");
        }
    }
    Ok(())
}
