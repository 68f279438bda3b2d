//! `oxidp <command>`: the server and the admin commands, over the same services.
//! Every failure prints one line on stderr and exits non-zero; nothing is half-done
//! because each command validates before it writes, and writes in one transaction.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

use crate::accounts::{AccountError, Accounts, NewAccount};
use crate::audit::Event;
use crate::clients::{ClientError, ClientSpec, Clients};
use crate::config::{self, Config};
use crate::keys::{self, KeyRing};
use crate::startup::{self, Application};
use crate::storage::Store;

#[derive(Debug, Parser)]
#[command(
    name = "oxidp",
    version,
    about = "A self-hosted OpenID Connect provider"
)]
pub struct Cli {
    /// Settings file (default: $OXIDP_CONFIG, else ./config.toml)
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default)
    Serve,
    /// Apply database migrations and exit
    Migrate,
    /// Delete expired codes, sessions, refresh tokens, revocations and audit events past retention once
    Purge,
    /// Manage OAuth/OIDC clients
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage users
    #[command(subcommand)]
    User(UserCommand),
    /// Manage signing keys
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Read the audit trail
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the latest audit events, oldest first; with --follow, keep printing new ones
    Tail {
        /// How many of the latest events to print first
        #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=10000))]
        limit: i64,
        /// Keep waiting for new events (Ctrl-C stops)
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only this event type, or a prefix ending in '.' (e.g. "login." or "admin.")
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// Only events about this subject (a user's sub, "client:<id>", "key:<kid>")
        #[arg(long)]
        subject: Option<String>,
        /// One JSON object per line instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints its id and, for a confidential client, its secret once
    Add(ClientAddArgs),
    /// List clients
    List,
    /// Show one client
    Show { id: String },
    /// Remove a client
    Remove { id: String },
}

#[derive(Debug, Args)]
pub struct ClientAddArgs {
    #[arg(long)]
    pub id: String,
    /// Allowed redirect URI (repeat for several)
    #[arg(long = "redirect-uri", value_name = "URI")]
    pub redirect_uris: Vec<String>,
    /// A public client (no secret; PKCE required)
    #[arg(long)]
    pub public: bool,
    /// Grant type: code, refresh_token, client_credentials, password (repeatable;
    /// default: code + refresh_token with redirect URIs, else client_credentials)
    #[arg(long = "grant-type", value_name = "GRANT")]
    pub grant_types: Vec<String>,
    /// A first-party client: no consent screen; may use the password grant
    #[arg(long)]
    pub first_party: bool,
    /// Allowed post-logout redirect URI (repeat for several)
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    pub post_logout_redirect_uris: Vec<String>,
    /// Display name shown on the consent page
    #[arg(long)]
    pub name: Option<String>,
    /// Extra scope the client may request (repeatable)
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// May introspect tokens issued to any client (a resource server)
    #[arg(long)]
    pub introspect_any: bool,
    /// Where logout tokens are POSTed when a session this client took part in ends
    /// (OpenID Connect Back-Channel Logout)
    #[arg(long = "backchannel-logout-uri", value_name = "URI")]
    pub backchannel_logout_uri: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user
    Add(UserAddArgs),
    /// List users
    List,
    /// Set a user's password (read from standard input)
    SetPassword {
        username: String,
        /// Read the password from standard input (required: never on the command line)
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Disable a user (cannot sign in)
    Disable { username: String },
    /// Enable a disabled user
    Enable { username: String },
}

#[derive(Debug, Args)]
pub struct UserAddArgs {
    #[arg(long)]
    pub username: String,
    #[arg(long)]
    pub email: String,
    /// Read the password from standard input (without it the user has no password yet)
    #[arg(long)]
    pub password_stdin: bool,
    /// Extra role (repeatable), e.g. admin; every user has `user`
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// Display name
    #[arg(long)]
    pub name: Option<String>,
    /// Mark the e-mail address as verified
    #[arg(long)]
    pub email_verified: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys with their status
    List,
    /// Generate a new key that signs from now on; old keys stay published
    Rotate,
    /// Remove a key from the JWKS (refused for the active key)
    Retire {
        /// The key's kid (base64url: it may start with '-')
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

/// Entry point of the binary.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let (path, must_exist) = config::resolve_path(cli.config.clone());
    let config = match Config::load(&path, must_exist) {
        Ok(c) => c,
        Err(mut e) => {
            if e.key == "--config" && cli.config.is_none() {
                e.key = "OXIDP_CONFIG".into();
            }
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping a cause already quoted by its parent.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out.replace('\n', " ")
}

async fn execute(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            startup::open_store(&config).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::Purge => {
            let store = store(&config).await?;
            let now = crate::storage::unix_now();
            let purged = store.purge_expired(now).await?;
            let events = store
                .purge_audit(now - config.audit.retention_days as i64 * 86_400)
                .await?;
            println!(
                "purged {} codes, {} pending requests, {} sessions, {} refresh tokens, {} revocations, {} audit events",
                purged.codes,
                purged.requests,
                purged.sessions,
                purged.refresh_tokens,
                purged.revocations,
                events
            );
            Ok(())
        }
        Command::Client(c) => client(c, &config).await,
        Command::User(u) => user(u, &config).await,
        Command::Keys(k) => keys_command(k, &config).await,
        Command::Audit(a) => audit_command(a, &config).await,
    }
}

/// How often `audit tail --follow` looks for new events.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_secs(1);

async fn audit_command(command: AuditCommand, config: &Config) -> anyhow::Result<()> {
    let AuditCommand::Tail {
        limit,
        follow,
        kind,
        subject,
        json,
    } = command;
    let store = store(config).await?;
    let mut query = crate::storage::AuditQuery {
        kind,
        subject,
        limit,
        ..Default::default()
    };
    let mut latest = store.query_audit(&query).await?;
    latest.reverse();
    let mut last_id = latest.last().map_or(0, |e| e.id);
    for event in &latest {
        print_event(event, json);
    }
    if !follow {
        return Ok(());
    }
    query.limit = 500;
    loop {
        query.after_id = Some(last_id);
        for event in store.query_audit(&query).await? {
            last_id = event.id;
            print_event(&event, json);
        }
        tokio::select! {
            () = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn print_event(event: &crate::storage::AuditRecord, json: bool) {
    use std::io::Write;
    let line = if json {
        crate::audit::to_json(event).to_string()
    } else {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        format!(
            "{time} {kind} {outcome} actor={actor} subject={subject} client={client} ip={ip} {detail}",
            time = crate::audit::rfc3339(event.time),
            kind = event.kind,
            outcome = event.outcome,
            actor = dash(&event.actor),
            subject = dash(&event.subject),
            client = dash(&event.client_id),
            ip = dash(&event.ip),
            detail = event.detail,
        )
    };
    // A closed pipe (`| head`) ends the command quietly.
    if writeln!(std::io::stdout(), "{line}").is_err() {
        std::process::exit(0);
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    crate::telemetry::init(&config.log);
    let issuer = config.server.issuer.clone();
    let app = Application::build(config).await?;
    tracing::info!(port = app.port(), %issuer, "oxidp listening");
    app.run_until_stopped().await.context("server failed")?;
    Ok(())
}

async fn store(config: &Config) -> anyhow::Result<Store> {
    Ok(startup::open_store(config).await?)
}

async fn client(command: ClientCommand, config: &Config) -> anyhow::Result<()> {
    let a = match command {
        ClientCommand::Add(a) => a,
        other => return client_admin(other, config).await,
    };
    let spec = ClientSpec {
        id: a.id,
        name: a.name,
        redirect_uris: a.redirect_uris,
        post_logout_redirect_uris: a.post_logout_redirect_uris,
        grant_types: a.grant_types,
        public: a.public,
        first_party: a.first_party,
        introspect_any: a.introspect_any,
        scopes: a.scopes,
        backchannel_logout_uri: a.backchannel_logout_uri,
    };
    // Checked before the database is even opened: bad input changes nothing.
    let (record, secret) = crate::clients::prepare(spec).map_err(client_error)?;
    let store = store(config).await?;
    let clients = Clients::new(store.clone());
    let record = clients.insert(&record).await.map_err(client_error)?;
    audit_cli(
        &store,
        Event::success("admin.client.created")
            .subject(format!("client:{}", record.id))
            .client(&record.id),
    )
    .await;
    println!("client_id: {}", record.id);
    if let Some(secret) = secret {
        use secrecy::ExposeSecret;
        println!("client_secret: {}", secret.expose_secret());
        println!("(the secret is shown only this once; store it now)");
    }
    Ok(())
}

/// The client commands other than `add`.
async fn client_admin(command: ClientCommand, config: &Config) -> anyhow::Result<()> {
    let store = store(config).await?;
    let clients = Clients::new(store.clone());
    match command {
        ClientCommand::Add(_) => Ok(()),
        ClientCommand::List => {
            let list = clients.list().await.map_err(client_error)?;
            println!("{:<32} {:<13} {:<11} GRANTS", "ID", "TYPE", "FIRST_PARTY");
            for c in list {
                println!(
                    "{:<32} {:<13} {:<11} {}",
                    c.id,
                    client_type(&c.token_endpoint_auth_method),
                    c.first_party,
                    c.grant_types.join(",")
                );
            }
            Ok(())
        }
        ClientCommand::Show { id } => {
            let c = clients.get(&id).await.map_err(client_error)?;
            println!("id: {}", c.id);
            println!("name: {}", c.name.as_deref().unwrap_or("-"));
            println!("type: {}", client_type(&c.token_endpoint_auth_method));
            println!(
                "token_endpoint_auth_method: {}",
                c.token_endpoint_auth_method
            );
            println!("grant_types: {}", c.grant_types.join(" "));
            println!("redirect_uris: {}", c.redirect_uris.join(" "));
            println!(
                "post_logout_redirect_uris: {}",
                c.post_logout_redirect_uris.join(" ")
            );
            println!("scopes: {}", c.scopes.join(" "));
            println!(
                "backchannel_logout_uri: {}",
                c.backchannel_logout_uri.as_deref().unwrap_or("-")
            );
            println!("first_party: {}", c.first_party);
            println!("introspect_any: {}", c.introspect_any);
            println!("source: {}", c.source);
            Ok(())
        }
        ClientCommand::Remove { id } => {
            clients.remove(&id).await.map_err(client_error)?;
            audit_cli(
                &store,
                Event::success("admin.client.deleted")
                    .subject(format!("client:{id}"))
                    .client(&id),
            )
            .await;
            println!("removed client {id}");
            Ok(())
        }
    }
}

fn client_type(method: &str) -> &'static str {
    if method == "none" {
        "public"
    } else {
        "confidential"
    }
}

fn client_error(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Invalid(rule) => {
            let flag = match rule.field.split('[').next().unwrap_or_default() {
                "redirect_uris" => "--redirect-uri",
                "post_logout_redirect_uris" => "--post-logout-redirect-uri",
                "backchannel_logout_uri" => "--backchannel-logout-uri",
                "grant_types" => "--grant-type",
                "scopes" => "--scope",
                "id" => "--id",
                "name" => "--name",
                _ => "",
            };
            anyhow::anyhow!("{flag} {}: {}", rule.value, rule.allowed)
        }
        other => other.into(),
    }
}

fn account_error(e: AccountError) -> anyhow::Error {
    match e {
        AccountError::Invalid { field, message } => anyhow::anyhow!("{field}: {message}"),
        other => other.into(),
    }
}

/// Reads the password from standard input: the whole input minus one trailing newline.
fn password_from_stdin() -> anyhow::Result<SecretString> {
    let mut input = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut input)
        .context("cannot read the password from standard input")?;
    let password = input
        .strip_suffix("\r\n")
        .or_else(|| input.strip_suffix('\n'))
        .unwrap_or(&input);
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(SecretString::from(password.to_string()))
}

async fn user(command: UserCommand, config: &Config) -> anyhow::Result<()> {
    let a = match command {
        UserCommand::Add(a) => a,
        other => return user_admin(other, config).await,
    };
    let password = if a.password_stdin {
        Some(password_from_stdin()?)
    } else {
        None
    };
    let (username, email) = (a.username.clone(), a.email.clone());
    let account = NewAccount {
        username: a.username.clone(),
        email: a.email.clone(),
        password,
        name: a.name.clone(),
        roles: a.roles.clone(),
        email_verified: a.email_verified,
    };
    let named = |e: AccountError| match e {
        AccountError::UsernameTaken => {
            anyhow::anyhow!("username {username:?} is already taken")
        }
        AccountError::EmailTaken => {
            anyhow::anyhow!("e-mail address {email:?} is already in use")
        }
        AccountError::Invalid {
            field: "email",
            message,
        } => anyhow::anyhow!("--email {email:?}: {message}"),
        AccountError::Invalid {
            field: "username",
            message,
        } => anyhow::anyhow!("--username {username:?}: {message}"),
        other => account_error(other),
    };
    // Checked before the database is even opened: bad input changes nothing.
    crate::accounts::check_account(&account).map_err(named)?;
    let store = store(config).await?;
    let accounts = Accounts::new(store.clone(), startup::password_hasher()?);
    let user = accounts.create(account).await.map_err(named)?;
    audit_cli(
        &store,
        Event::success("admin.user.created")
            .subject(&user.id)
            .detail("username", user.username.clone()),
    )
    .await;
    println!("created user {} (sub {})", user.username, user.id);
    Ok(())
}

/// The user commands other than `add`.
async fn user_admin(command: UserCommand, config: &Config) -> anyhow::Result<()> {
    let store = store(config).await?;
    let accounts = Accounts::new(store.clone(), startup::password_hasher()?);
    match command {
        UserCommand::Add(_) => Ok(()),
        UserCommand::List => {
            let users = accounts.list().await.map_err(account_error)?;
            println!(
                "{:<36} {:<24} {:<32} {:<8} {:<8} ROLES",
                "SUB", "USERNAME", "EMAIL", "VERIFIED", "DISABLED"
            );
            for u in users {
                println!(
                    "{:<36} {:<24} {:<32} {:<8} {:<8} {}",
                    u.id,
                    u.username,
                    u.email,
                    u.email_verified,
                    u.disabled,
                    u.roles.join(",")
                );
            }
            Ok(())
        }
        UserCommand::SetPassword { username, .. } => {
            let password = password_from_stdin()?;
            accounts
                .set_password(&username, &password)
                .await
                .map_err(|e| match e {
                    AccountError::NotFound => anyhow::anyhow!("no user named {username:?}"),
                    other => account_error(other),
                })?;
            if let Some(user) = store.find_user_by_username(&username).await? {
                audit_cli(
                    &store,
                    Event::success("admin.user.password_set").subject(&user.id),
                )
                .await;
            }
            println!("password updated for {username}");
            Ok(())
        }
        UserCommand::Disable { username } => set_disabled(&store, config, &username, true).await,
        UserCommand::Enable { username } => set_disabled(&store, config, &username, false).await,
    }
}

/// Records a change made from the command line (actor `cli`; no IP or request).
async fn audit_cli(store: &Store, event: Event) {
    if let Err(e) = crate::audit::write_now(store, event.actor("cli")).await {
        eprintln!("warning: the change was made but not recorded in the audit trail: {e}");
    }
}

/// Disabling also ends the user's sessions and revokes their refresh tokens (and the
/// access tokens issued with them), in one transaction, as the admin API does.
async fn set_disabled(
    store: &Store,
    config: &Config,
    username: &str,
    disabled: bool,
) -> anyhow::Result<()> {
    let user = store
        .find_user_by_username(username)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user named {username:?}"))?;
    let now = crate::storage::unix_now();
    let change = crate::storage::AdminUserChange {
        disabled: Some(disabled),
        ..Default::default()
    };
    let sessions =
        crate::sessions::Sessions::from_config(store.clone(), config, Default::default());
    sessions
        .ending(now, |until| {
            store.admin_update_user(&user.id, &change, now, until)
        })
        .await?;
    audit_cli(
        store,
        Event::success("admin.user.updated")
            .subject(&user.id)
            .detail("disabled", disabled),
    )
    .await;
    println!(
        "{} {username}",
        if disabled { "disabled" } else { "enabled" }
    );
    Ok(())
}

async fn keys_command(command: KeysCommand, config: &Config) -> anyhow::Result<()> {
    let store = store(config).await?;
    let dir = &config.keys.dir;
    match command {
        KeysCommand::List => {
            let records = store.list_keys().await?;
            println!("{:<44} {:<10} {:<6} CREATED", "KID", "STATUS", "ALG");
            for (r, status) in keys::statuses(&records) {
                println!(
                    "{:<44} {:<10} {:<6} {}",
                    r.kid,
                    status.as_str(),
                    r.alg,
                    r.created_at
                );
            }
            Ok(())
        }
        KeysCommand::Rotate => {
            let kid = KeyRing::rotate(&store, dir).await?;
            audit_cli(
                &store,
                Event::success("admin.key.rotated").subject(format!("key:{kid}")),
            )
            .await;
            println!("new signing key {kid} is active; older keys stay published until retired");
            Ok(())
        }
        KeysCommand::Retire { kid } => {
            KeyRing::retire(&store, dir, &kid).await?;
            audit_cli(
                &store,
                Event::success("admin.key.retired").subject(format!("key:{kid}")),
            )
            .await;
            println!("retired key {kid}; it leaves the JWKS at the next reload");
            Ok(())
        }
    }
}
