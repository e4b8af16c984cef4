//! Flags and environment, parsed by clap and validated once at start into
//! [`Settings`]. Every flag also reads an environment variable; the Python
//! gitfaas' names (`GIT_URL`, `GIT_PULL_BRANCH`, `POLLING_INTERVAL` in
//! minutes, …) are accepted so a deployment of it can switch unchanged.
//!
//! Secrets (the git token) become [`SecretString`]s here and never reach
//! `Debug`, logs or error messages.
//!
//! The clap types (what can be given) are in `args`, re-exported here;
//! this module turns them into [`Settings`] (what was meant), refusing what
//! cannot work and warning about what is risky.

mod args;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::callback::{AllowedHosts, CallbackSettings, SigningSecret, Targets};
use crate::catalog::RepoPath;
use crate::policy::{Level, PodSecurity, Policy, Waivers, DEFAULT_BANNED_KINDS};
pub use args::{
    CancelArgs, Cli, ClientArgs, Command, LogsArgs, OnCommandLine, Output, PolicyArgs, PublishArgs,
    RenderArgs, RunsArgs, ServeArgs, SourceArgs, TreeArgs, ValidateArgs,
};

/// Parses the command line (`argv[0]` first) as `Cli::try_parse_from`
/// does, and notes which flags that may carry a secret were given on it
/// rather than by their environment variable, for [`SourceArgs::secret_flags`].
pub fn parse_command_line<I, T>(argv: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().try_get_matches_from(argv)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    if let Some((_, sub)) = matches.subcommand() {
        // try_contains_id first: value_source panics on an id the
        // subcommand does not have (--redis-url is serve's only).
        let given = |id: &str| {
            sub.try_contains_id(id).is_ok()
                && sub.value_source(id) == Some(ValueSource::CommandLine)
        };
        let noted = OnCommandLine {
            git_token: given("git_token"),
            git_url: given("git_url"),
            redis_url: given("redis_url"),
        };
        match &mut cli.command {
            Command::Serve(a) => a.source.on_command_line = noted,
            Command::Validate(a) => a.source.on_command_line = noted,
            Command::Render(a) => a.source.on_command_line = noted,
            _ => {}
        }
    }
    Ok(cli)
}

/// Where requests and responses are kept.
#[derive(Clone)]
pub enum StoreSettings {
    /// The embedded store in this directory.
    Embedded(PathBuf),
    /// Redis at this URL.
    Redis(SecretString),
}

/// Where functions come from.
#[derive(Clone)]
pub enum SourceSettings {
    /// A git remote.
    Git(GitSettings),
    /// A plain directory.
    Dir(PathBuf),
}

/// How to reach the git remote.
#[derive(Clone)]
pub struct GitSettings {
    /// The remote URL as given (may hold credentials; never logged as is).
    pub url: SecretString,
    /// The URL with any user info removed: safe to log.
    pub display_url: String,
    /// The branch followed.
    pub branch: String,
    /// https user.
    pub user: Option<String>,
    /// https token.
    pub token: Option<SecretString>,
    /// ssh private key file.
    pub ssh_key: Option<PathBuf>,
    /// known_hosts file.
    pub known_hosts: Option<PathBuf>,
    /// Accept unknown ssh host keys.
    pub insecure_skip_host_key_check: bool,
    /// The local cache repository.
    pub cache_dir: PathBuf,
    /// How long one fetch may take (connect, each wait for the remote, all of it).
    pub timeout: Duration,
}

/// Validated settings of `serve`.
#[derive(Clone)]
pub struct Settings {
    /// Where functions come from.
    pub source: SourceSettings,
    /// Path of config.json in the repository.
    pub config_path: RepoPath,
    /// Fetch period.
    pub poll_interval: Duration,
    /// Listen address.
    pub listen: SocketAddr,
    /// {{GITFAAS_URL}}.
    pub public_url: String,
    /// Whether `public_url` was derived from `listen` (no `--public-url`):
    /// then it follows the bound address, the port the kernel picked for
    /// port 0 included ([`derived_public_url`]).
    pub public_url_from_listen: bool,
    /// Namespace override for manifests without one.
    pub namespace: Option<String>,
    /// What may be applied.
    pub policy: Policy,
    /// Kubeconfig override.
    pub kubeconfig: Option<PathBuf>,
    /// Timeout of one Kubernetes API call.
    pub api_timeout: Duration,
    /// Largest request body.
    pub max_payload_bytes: usize,
    /// How long stopping may take, from the signal: the drain of in-flight
    /// requests, then the background work.
    pub shutdown_timeout: Duration,
    /// Where requests and responses are kept.
    pub store: StoreSettings,
    /// How long they are kept.
    pub expiration: Duration,
    /// API bearer tokens file.
    pub api_token_file: Option<PathBuf>,
    /// Who may call the API, and how they are checked.
    pub auth: AuthChoice,
    /// Webhook secret file.
    pub webhook_secret_file: Option<PathBuf>,
    /// Limits on requests.
    pub limits: Limits,
    /// Where callbacks may go, how many at once, how long they wait.
    pub callbacks: CallbackSettings,
    /// What start-up should log as a warning (insecure settings asked for).
    pub warnings: Vec<String>,
    /// What browsers may do.
    pub browser: crate::auth::BrowserPolicy,
    /// The scheduler's Lease.
    pub lease: LeaseChoice,
}

/// How callers are checked (`--auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthChoice {
    /// Kubernetes tokens, reviewed by the API server.
    pub kubernetes: bool,
    /// The token file.
    pub tokens: bool,
    /// The audience Kubernetes tokens must be minted for.
    pub token_audience: String,
}

impl AuthChoice {
    /// Whether every caller is let in.
    pub fn is_open(&self) -> bool {
        !self.kubernetes && !self.tokens
    }
}

/// Why gitfaas will not start without a way to check callers.
pub const NO_AUTH_CHOSEN: &str = "choose how callers are checked with --auth (GITFAAS_AUTH): `kubernetes` (service-account tokens for the audience gitfaas and RBAC per topic; the chart's default), `tokens` with --api-token-file (a file of shared bearer tokens), or `none` to open the API to anyone who reaches the port (the Python gitfaas' behaviour: GITFAAS_AUTH=none)";

/// What an open API warns at start.
pub const OPEN_API: &str = "the API is OPEN (--auth none): anyone who can reach this port can publish, refresh, read and cancel runs";

/// `--auth` read: a comma-separated list of `kubernetes` and `tokens`, or
/// `none`. Unset, a token file means `tokens` (as before `--auth` was
/// there); unset without one is refused: an open API is only ever chosen
/// by writing `none`.
pub fn auth_choice(
    auth: Option<&str>,
    token_file: bool,
    audience: &str,
    warnings: &mut Vec<String>,
) -> Result<AuthChoice, String> {
    let audience = audience.trim();
    if audience.is_empty() {
        return Err("--token-audience (GITFAAS_TOKEN_AUDIENCE) must not be empty: gitfaas accepts Kubernetes tokens minted for this audience (the chart uses `gitfaas`)".into());
    }
    let mut choice = AuthChoice {
        kubernetes: false,
        tokens: false,
        token_audience: audience.to_string(),
    };
    let Some(auth) = auth.map(str::trim).filter(|a| !a.is_empty()) else {
        if !token_file {
            return Err(NO_AUTH_CHOSEN.into());
        }
        choice.tokens = true;
        return Ok(choice);
    };
    let mut none = false;
    for part in auth.split(',').map(str::trim) {
        match part {
            "kubernetes" => choice.kubernetes = true,
            "tokens" => choice.tokens = true,
            "none" => none = true,
            other => {
                return Err(format!(
                    "--auth (GITFAAS_AUTH): `{other}` is not a way to check callers: write kubernetes, tokens, kubernetes,tokens or none"
                ))
            }
        }
    }
    if none && (choice.kubernetes || choice.tokens) {
        return Err("--auth (GITFAAS_AUTH): `none` cannot be combined with another way: it opens the API to everyone".into());
    }
    if choice.tokens && !token_file {
        return Err("--auth tokens needs --api-token-file (GITFAAS_API_TOKEN_FILE): the file of accepted tokens".into());
    }
    if token_file && !choice.tokens {
        return Err(format!(
            "--api-token-file is given but --auth `{auth}` does not use it: add `tokens` (e.g. --auth kubernetes,tokens) or drop the file"
        ));
    }
    if none {
        warnings.push(OPEN_API.into());
    }
    Ok(choice)
}

/// The scheduler's Lease as configured; its namespace defaults to gitfaas'
/// own, known once connected.
#[derive(Debug, Clone)]
pub struct LeaseChoice {
    /// `--lease-name`.
    pub name: String,
    /// `--lease-namespace`, if given.
    pub namespace: Option<String>,
    /// `--lease-duration`.
    pub duration: Duration,
}

/// The shortest and longest `--lease-duration`.
const LEASE_DURATIONS: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(300);

/// Limits on what one request may ask for, and how many run at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Publishes processed at once.
    pub max_in_flight: usize,
    /// Query parameters per publish.
    pub max_query_params: usize,
    /// Bytes per query parameter value.
    pub max_param_bytes: usize,
    /// How long an Idempotency-Key claim of a running publish holds.
    pub idempotency_lease: Duration,
    /// `?wait=` publishes waiting at once.
    pub max_waiters: usize,
    /// Bytes of each container's log kept when a run finishes (0: none).
    pub log_archive_bytes: usize,
    /// How long a dead gitfaas' dispatch slots stay its own.
    pub dispatch_lease: Duration,
}

/// The most `--log-archive-bytes` may be: a run's tails are one value in
/// the store, read whole.
pub const MAX_LOG_ARCHIVE_BYTES: usize = 1024 * 1024;

/// A setting that cannot be used; the message says how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

impl SourceArgs {
    /// The source and config path these flags describe.
    pub fn resolve(mut self) -> Result<(SourceSettings, RepoPath), SettingsError> {
        let err = |s: String| Err(SettingsError(s));
        // `serve` has checked (and warned) already; `validate` and `render` check here.
        self.secret_flags(None)?;
        if let Some(path) = self.git_token_file.take() {
            self.git_token = Some(read_secret_file(&path, "--git-token-file")?);
        }
        if !(MIN_GIT_TIMEOUT..=MAX_GIT_TIMEOUT).contains(&self.git_timeout) {
            return err(format!(
                "--git-timeout (GITFAAS_GIT_TIMEOUT) must be from 1s to 1h, not {}",
                humantime::format_duration(self.git_timeout)
            ));
        }
        let source = match (self.git_url, self.dir) {
            (Some(url), None) => {
                if self.git_token.is_some() && self.git_user.is_none() {
                    return err(
                        "--git-token (GIT_PERSONAL_TOKEN) needs --git-user (GIT_USER_NAME)".into(),
                    );
                }
                let display_url = redact_url(&url);
                let cache_dir = self
                    .cache_dir
                    .unwrap_or_else(|| std::env::temp_dir().join("gitfaas-cache"))
                    .join(cache_key(&display_url, &self.branch));
                SourceSettings::Git(GitSettings {
                    url: SecretString::from(url),
                    display_url,
                    branch: self.branch,
                    user: self.git_user,
                    token: self.git_token.map(SecretString::from),
                    ssh_key: self.ssh_key,
                    known_hosts: self.known_hosts,
                    insecure_skip_host_key_check: self.insecure_skip_host_key_check,
                    cache_dir,
                    timeout: self.git_timeout,
                })
            }
            (None, Some(dir)) => {
                if !dir.is_dir() {
                    return err(format!("--dir {}: not a directory", dir.display()));
                }
                SourceSettings::Dir(dir)
            }
            (None, None) => {
                return err(
                    "no functions source: pass --git-url URL (GIT_URL) or --dir PATH".into(),
                )
            }
            (Some(_), Some(_)) => return err("pass either --git-url or --dir, not both".into()),
        };
        let config_path = RepoPath::parse(&self.config_path)
            .map_err(|e| SettingsError(format!("--config-path: {e}")))?;
        Ok((source, config_path))
    }
}

impl SourceArgs {
    /// The secrets given as flags on the command line (with `redis_url`,
    /// `serve`'s `--redis-url`): a process' arguments are readable by any
    /// local user (`/proc/<pid>/cmdline`, `ps`), so they are refused, and
    /// the message says what to use instead; with `--allow-secret-flags`
    /// they are only warned about (the warnings returned).
    pub fn secret_flags(&self, redis_url: Option<&str>) -> Result<Vec<String>, SettingsError> {
        let given = self.on_command_line;
        let mut found: Vec<(&str, &str)> = Vec::new();
        if given.git_token && self.git_token.is_some() {
            found.push((
                "--git-token",
                "set GIT_PERSONAL_TOKEN or use --git-token-file",
            ));
        }
        if given.git_url && self.git_url.as_deref().is_some_and(git_url_has_credentials) {
            found.push((
                "--git-url with credentials in it",
                "set GIT_URL, or give the token with --git-user and --git-token-file",
            ));
        }
        if given.redis_url && redis_url.is_some_and(redis_url_has_password) {
            found.push((
                "--redis-url with a password in it",
                "set GITFAAS_REDIS_URL, or use --redis-url-file or REDIS_PASSWORD",
            ));
        }
        let said = |(flag, instead): &(&str, &str)| {
            format!("{flag} was given on the command line, where any local user can read it (/proc/<pid>/cmdline, ps): {instead} instead")
        };
        if self.allow_secret_flags {
            return Ok(found
                .iter()
                .map(|f| format!("{} (allowed by --allow-secret-flags)", said(f)))
                .collect());
        }
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let each: Vec<String> = found.iter().map(said).collect();
        Err(SettingsError(format!(
            "{}; or pass --allow-secret-flags (GITFAAS_ALLOW_SECRET_FLAGS) to accept the risk",
            each.join("; ")
        )))
    }
}

/// Whether a git URL carries credentials: a password, or for http(s) any
/// user info (a token is often given as the user name,
/// `https://<token>@github.com/…`). An ssh user name (`git@`) is not one.
fn git_url_has_credentials(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        // scp-like `git@host:path` (no URL): it cannot hold a password.
        return false;
    };
    let http = matches!(parsed.scheme(), "http" | "https");
    parsed.password().is_some_and(|p| !p.is_empty()) || (http && !parsed.username().is_empty())
}

/// Whether a Redis URL carries a password: in its user info
/// (`redis://:pw@host`) or as the `pass`/`password` query parameter of a
/// `unix://` or `redis+unix://` URL.
fn redis_url_has_password(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url.trim()) else {
        return false;
    };
    parsed.password().is_some_and(|p| !p.is_empty())
        || parsed
            .query_pairs()
            .any(|(k, v)| matches!(k.as_ref(), "pass" | "password") && !v.is_empty())
}

impl PolicyArgs {
    /// The policy these flags describe.
    pub fn policy(&self) -> Result<Policy, SettingsError> {
        let banned: Vec<String> = match &self.banned_kinds {
            Some(list) => crate::policy::parse_kind_list(list)
                .map_err(|e| SettingsError(format!("--banned-kinds (BANNED_KUBE_RESS): {e}")))?,
            None => DEFAULT_BANNED_KINDS.iter().map(|s| s.to_string()).collect(),
        };
        let mut policy = Policy::new(
            banned.iter().map(String::as_str),
            self.allowed_namespaces.clone().map(|v| {
                v.into_iter()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
        );
        policy.pod_security = PodSecurity {
            level: self.pod_security.parse::<Level>().map_err(|e| {
                SettingsError(format!("--pod-security (GITFAAS_POD_SECURITY): {e}"))
            })?,
            waivers: Waivers {
                privileged: self.allow_privileged,
                host_path: self.allow_host_path,
                host_namespaces: self.allow_host_namespaces,
            },
        };
        if let Some(list) = &self.allow_kinds {
            policy.allowed_kinds = crate::policy::parse_allowed_kinds(list)
                .map_err(|e| SettingsError(format!("--allow-kinds (GITFAAS_ALLOW_KINDS): {e}")))?;
        }
        for name in self.allowed_service_accounts.iter().flatten() {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            if !crate::names::Rule::Subdomain.accepts(name, false) {
                return Err(SettingsError(format!(
                    "--allowed-service-accounts (GITFAAS_ALLOWED_SERVICE_ACCOUNTS): `{name}` is not a service account name ({}); list names separated by commas, without a namespace",
                    crate::names::Rule::Subdomain.describe()
                )));
            }
            policy.allowed_service_accounts.insert(name.to_string());
        }
        policy.allowed_secrets = crate::policy::parse_allowed_secrets(
            self.allowed_secrets.iter().flatten().map(String::as_str),
        )
        .map_err(|e| SettingsError(format!("--allowed-secrets (GITFAAS_ALLOWED_SECRETS): {e}")))?;
        Ok(policy)
    }
}

impl ServeArgs {
    /// Validates the flags; `env` reads variables that have no flag of their own.
    pub fn validate(
        mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let err = |s: String| Err(SettingsError(s));
        let mut warnings = self.source.secret_flags(self.redis_url.as_deref())?;
        python_git_env(&mut self.source, &env, &mut warnings)?;
        if let Some(path) = self.redis_url_file.take() {
            self.redis_url = Some(read_secret_file(&path, "--redis-url-file")?);
        }
        let redis_url = python_redis_env(self.redis_url.take(), &env)?;
        let (source, config_path) = self.source.resolve()?;
        let poll_interval = match self.poll_interval {
            Some(d) => d,
            None => match env("POLLING_INTERVAL") {
                Some(minutes) => python_polling_interval(&minutes)?,
                None => Duration::from_secs(60),
            },
        };
        if !(MIN_POLL_INTERVAL..=MAX_POLL_INTERVAL).contains(&poll_interval) {
            return err(
                "--poll-interval (GITFAAS_POLL_INTERVAL) must be from 1s to 7d (a week)".into(),
            );
        }
        let public_url_from_listen = self.public_url.is_none();
        let public_url = match self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => derived_public_url(self.listen),
        };
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return err(format!(
                "--public-url {public_url}: must start with http:// or https://"
            ));
        }
        let policy = self.policy.policy()?;
        let browser = crate::auth::BrowserPolicy::parse(&self.allowed_origins, &self.allowed_hosts)
            .map_err(SettingsError)?;
        if self.max_payload_bytes == 0 {
            return err("--max-payload-bytes must be positive".into());
        }
        let store = match (redis_url, self.data_dir) {
            (Some(url), _) if !url.trim().is_empty() => {
                if !(url.starts_with("redis://")
                    || url.starts_with("rediss://")
                    || url.starts_with("unix://"))
                {
                    return err("--redis-url must start with redis://, rediss:// or unix://".into());
                }
                StoreSettings::Redis(SecretString::from(url))
            }
            (_, Some(dir)) => StoreSettings::Embedded(dir),
            _ => StoreSettings::Embedded(default_data_dir()),
        };
        if !(MIN_EXPIRATION..=MAX_EXPIRATION).contains(&self.expiration_time) {
            return err(format!(
                "--expiration-time (EXPIRATION_TIME) must be from 60s to 3650d (10 years), not {}",
                humantime::format_duration(self.expiration_time)
            ));
        }
        if self.idempotency_lease < Duration::from_secs(1)
            || self.idempotency_lease > self.expiration_time
        {
            return err(
                "--idempotency-lease (GITFAAS_IDEMPOTENCY_LEASE) must be at least 1s and at most --expiration-time".into(),
            );
        }
        if self.max_in_flight == 0
            || self.max_query_params == 0
            || self.max_param_bytes == 0
            || self.max_waiters == 0
        {
            return err(
                "--max-in-flight, --max-query-params, --max-param-bytes and --max-waiters must be positive".into(),
            );
        }
        if self.log_archive_bytes > MAX_LOG_ARCHIVE_BYTES {
            return err(format!(
                "--log-archive-bytes (GITFAAS_LOG_ARCHIVE_BYTES) must be at most {MAX_LOG_ARCHIVE_BYTES} (1 MiB), not {}; 0 keeps no logs",
                self.log_archive_bytes
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.dispatch_lease) {
            return err(format!(
                "--dispatch-lease (GITFAAS_DISPATCH_LEASE) must be from 1s to 1h, not {}",
                humantime::format_duration(self.dispatch_lease)
            ));
        }
        if !crate::names::Rule::Subdomain.accepts(&self.lease_name, false) {
            return err(format!(
                "--lease-name (GITFAAS_LEASE_NAME) `{}` is not a Lease name: use {}",
                self.lease_name,
                crate::names::Rule::Subdomain.describe()
            ));
        }
        let lease_namespace = self.lease_namespace.filter(|n| !n.is_empty());
        if let Some(ns) = &lease_namespace {
            if !crate::names::Rule::Label.accepts(ns, false) {
                return err(format!(
                    "--lease-namespace (GITFAAS_LEASE_NAMESPACE) `{ns}` is not a namespace name: use {}",
                    crate::names::Rule::Label.describe()
                ));
            }
        }
        if !LEASE_DURATIONS.contains(&self.lease_duration) {
            return err(format!(
                "--lease-duration (GITFAAS_LEASE_DURATION) must be from 1s to 5m, not {}",
                humantime::format_duration(self.lease_duration)
            ));
        }
        let lease = LeaseChoice {
            name: self.lease_name,
            namespace: lease_namespace,
            duration: self.lease_duration,
        };
        let signing = self
            .callback_signing_secret_file
            .as_deref()
            .map(signing_secret)
            .transpose()?;
        let mut callbacks = callback_settings(
            self.callback_allow_http,
            self.callback_allowed_hosts.as_deref().unwrap_or(""),
            self.max_callbacks_in_flight,
            self.callback_max_wait,
            self.callback_lease,
            self.expiration_time,
            &mut warnings,
        )?;
        if signing.is_none() {
            warnings.push(UNSIGNED_CALLBACKS.into());
        }
        callbacks.signing = signing;
        let auth = auth_choice(
            self.auth.as_deref(),
            self.api_token_file.is_some(),
            &self.token_audience,
            &mut warnings,
        )
        .map_err(SettingsError)?;
        Ok(Settings {
            callbacks,
            auth,
            api_token_file: self.api_token_file,
            webhook_secret_file: self.webhook_secret_file,
            limits: Limits {
                max_in_flight: self.max_in_flight,
                max_query_params: self.max_query_params,
                max_param_bytes: self.max_param_bytes,
                idempotency_lease: self.idempotency_lease,
                max_waiters: self.max_waiters,
                log_archive_bytes: self.log_archive_bytes,
                dispatch_lease: self.dispatch_lease,
            },
            store,
            expiration: self.expiration_time,
            source,
            config_path,
            poll_interval,
            listen: self.listen,
            public_url,
            public_url_from_listen,
            namespace: self.namespace.filter(|s| !s.is_empty()),
            policy,
            kubeconfig: self.kubeconfig,
            api_timeout: self.api_timeout,
            max_payload_bytes: self.max_payload_bytes,
            shutdown_timeout: self.shutdown_timeout,
            warnings,
            browser,
            lease,
        })
    }
}

/// The shortest `--git-timeout`: a remote gets at least a second to answer.
const MIN_GIT_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest `--git-timeout`: a fetch that has not finished in an hour is
/// stuck, and the sync it holds up is the one behind `/refresh`. (libgit2
/// takes its socket timeouts in milliseconds as a C int: 24 days at most.)
const MAX_GIT_TIMEOUT: Duration = Duration::from_secs(3600);

/// The shortest expiration time.
const MIN_EXPIRATION: Duration = Duration::from_secs(60);

/// The longest expiration time: 10 years. Records are kept that long
/// at most; the bound keeps `now + ttl` (Unix seconds) and the dates shown
/// (RFC 3339, up to year 9999) far from overflowing.
const MAX_EXPIRATION: Duration = Duration::from_secs(3650 * 86400);

/// The shortest poll interval: a fetch a second is already a lot for a remote.
const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The longest poll interval: a week. Longer is almost surely a unit
/// mistake (the webhook and `/refresh` sync sooner anyway), and the bound
/// keeps the sync loop's backoff arithmetic (doubling up to the interval)
/// far from `Duration`'s limits.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The Python gitfaas' `POLLING_INTERVAL`: a number of minutes, fractions
/// allowed. The range is checked on the number before it becomes a
/// `Duration`: `Duration::from_secs_f64` panics past `u64::MAX` seconds
/// (`1e300`) and on NaN or a negative value.
fn python_polling_interval(raw: &str) -> Result<Duration, SettingsError> {
    let refused = || {
        SettingsError(format!(
            "POLLING_INTERVAL={raw}: expected a number of minutes (the Python gitfaas' unit) from 1/60 (1 s) to 10080 (7 days), e.g. 5 or 0.5; or set --poll-interval (GITFAAS_POLL_INTERVAL) to a duration such as 30s"
        ))
    };
    let seconds = raw.trim().parse::<f64>().map_err(|_| refused())? * 60.0;
    let range = MIN_POLL_INTERVAL.as_secs_f64()..=MAX_POLL_INTERVAL.as_secs_f64();
    if !range.contains(&seconds) {
        return Err(refused());
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| refused())
}

/// The base URL of a gitfaas listening on `addr`, when no `--public-url`
/// says otherwise: a wildcard address is reached on 127.0.0.1. Called again
/// with the bound address once the listener exists, since port 0 is only a
/// request for a port.
pub fn derived_public_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        addr.ip()
    };
    // SocketAddr's Display brackets an IPv6 address: http://[::1]:5000.
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// A secret from a file (the form every secret has, so none needs to be a
/// process argument); one trailing newline is dropped.
fn read_secret_file(path: &std::path::Path, flag: &str) -> Result<String, SettingsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SettingsError(format!("{flag} {}: {e}", path.display())))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err(SettingsError(format!(
            "{flag} {}: the file is empty",
            path.display()
        )));
    }
    Ok(text.to_string())
}

/// The start-up warning without `--callback-signing-secret-file`.
pub const UNSIGNED_CALLBACKS: &str = "no --callback-signing-secret-file (GITFAAS_CALLBACK_SIGNING_SECRET_FILE): callbacks (X-Callback-Url) are sent without a webhook-signature, so a receiver cannot tell gitfaas' POSTs from anyone's; give it a `whsec_…` key to sign them";

/// The keys of `--callback-signing-secret-file`, in the Standard Webhooks
/// form; the message names the flag and the file, never its content.
fn signing_secret(path: &std::path::Path) -> Result<SigningSecret, SettingsError> {
    let flag = "--callback-signing-secret-file (GITFAAS_CALLBACK_SIGNING_SECRET_FILE)";
    let text = std::fs::read_to_string(path)
        .map_err(|e| SettingsError(format!("{flag} {}: {e}", path.display())))?;
    SigningSecret::parse(&text)
        .map_err(|e| SettingsError(format!("{flag} {}: {e}", path.display())))
}

/// The callback flags, checked together.
fn callback_settings(
    allow_http: bool,
    allowed_hosts: &str,
    max_in_flight: usize,
    max_wait: Duration,
    lease: Duration,
    expiration: Duration,
    warnings: &mut Vec<String>,
) -> Result<CallbackSettings, SettingsError> {
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&lease) {
        return Err(SettingsError(format!(
            "--callback-lease (GITFAAS_CALLBACK_LEASE) must be from 1s to 1h, not {}",
            humantime::format_duration(lease)
        )));
    }
    let allowed = AllowedHosts::parse(allowed_hosts).map_err(|e| {
        SettingsError(format!(
            "--callback-allowed-hosts (GITFAAS_CALLBACK_ALLOWED_HOSTS): {e}"
        ))
    })?;
    if max_in_flight == 0 {
        return Err(SettingsError(
            "--max-callbacks-in-flight (GITFAAS_MAX_CALLBACKS_IN_FLIGHT) must be positive".into(),
        ));
    }
    if max_wait < Duration::from_secs(1) {
        return Err(SettingsError(
            "--callback-max-wait (GITFAAS_CALLBACK_MAX_WAIT) must be at least 1s".into(),
        ));
    }
    if allow_http {
        warnings.push(
            "--callback-allow-http: callbacks may go over plain http, and they carry function uids (credentials for POST /response) that anyone on the way can read".into(),
        );
    }
    Ok(CallbackSettings {
        targets: Targets {
            allow_http,
            allowed,
        },
        max_in_flight,
        // The record, and with it the callback, is gone after the expiration time.
        max_wait: max_wait.min(expiration),
        lease,
        signing: None,
    })
}

/// Where the Python gitfaas' Helm chart mounts the ssh key and known_hosts.
const PYTHON_SSH_DIR: &str = "/home/gitfaas/.ssh";

/// The Python gitfaas' `GIT_USE_SSH_KEY` and `GIT_STRICT_HOST_KEY_CHECKING`,
/// with their meaning there: `yes` uses the ssh key (`~/.ssh/id_rsa`, or the
/// chart's `/home/gitfaas/.ssh/id_rsa`) instead of the token; `no` accepts
/// any host key. A value gitfaas cannot honour stops the start.
fn python_git_env(
    source: &mut SourceArgs,
    env: &impl Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<(), SettingsError> {
    let flag = |name: &str| -> Result<Option<bool>, SettingsError> {
        match env(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) => match v.as_str() {
                "yes" | "true" => Ok(Some(true)),
                "no" | "false" | "" => Ok(Some(false)),
                _ => Err(SettingsError(format!(
                    "{name}={v}: expected yes or no (the Python gitfaas' values)"
                ))),
            },
        }
    };
    if flag("GIT_USE_SSH_KEY")? == Some(true) {
        let url = source.git_url.as_deref().unwrap_or("");
        if !(url.starts_with("ssh://") || (url.contains('@') && !url.contains("://"))) {
            return Err(SettingsError(format!(
                "GIT_USE_SSH_KEY=yes needs an ssh GIT_URL (git@host:path or ssh://…), not `{}`",
                redact_url(url)
            )));
        }
        let homes: Vec<PathBuf> = env("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".ssh"))
            .into_iter()
            .chain([PathBuf::from(PYTHON_SSH_DIR)])
            .collect();
        let find = |file: &str| homes.iter().map(|d| d.join(file)).find(|p| p.is_file());
        if source.ssh_key.is_none() {
            source.ssh_key = Some(find("id_rsa").ok_or_else(|| {
                SettingsError(format!(
                    "GIT_USE_SSH_KEY=yes but no ssh key at {}: mount it there or set GITFAAS_SSH_KEY to its path",
                    homes
                        .iter()
                        .map(|d| d.join("id_rsa").display().to_string())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ))
            })?);
        }
        if source.known_hosts.is_none() {
            source.known_hosts = find("known_hosts");
        }
        // The Python version used the key instead of the token; its chart
        // fills the token with a placeholder in ssh mode.
        source.git_token = None;
    }
    if flag("GIT_STRICT_HOST_KEY_CHECKING")? == Some(false) {
        source.insecure_skip_host_key_check = true;
        warnings.push(
            "GIT_STRICT_HOST_KEY_CHECKING=no: the ssh server's host key is not verified, so a man in the middle could serve manifests; mount a known_hosts file instead".into(),
        );
    }
    Ok(())
}

/// The Python gitfaas' Redis: `REDIS_PASSWORD` for the Redis its chart
/// installs (`gitfaas-redis-master:6379`, database 0). With `--redis-url`,
/// the password fills a URL that has none; a URL with another password is
/// an error rather than a silent choice between the two.
fn python_redis_env(
    url: Option<String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, SettingsError> {
    let Some(password) = env("REDIS_PASSWORD").filter(|p| !p.is_empty()) else {
        return Ok(url);
    };
    const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let encoded = percent_encoding::utf8_percent_encode(&password, USERINFO).to_string();
    let url = match url.filter(|u| !u.trim().is_empty()) {
        None => {
            return Ok(Some(format!(
                "redis://:{encoded}@gitfaas-redis-master:6379/0"
            )))
        }
        Some(url) => url,
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(Some(url));
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let given = userinfo.split_once(':').map_or("", |(_, p)| p);
            let given = percent_encoding::percent_decode_str(given).decode_utf8_lossy();
            if given.is_empty() || given == password {
                let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                Ok(Some(format!(
                    "{scheme}://{user}:{encoded}@{}",
                    &rest[at + 1..]
                )))
            } else {
                Err(SettingsError(
                    "REDIS_PASSWORD and the password in --redis-url (GITFAAS_REDIS_URL) differ: set only one of them".into(),
                ))
            }
        }
        None => Ok(Some(format!("{scheme}://:{encoded}@{rest}"))),
    }
}

/// `$XDG_STATE_HOME/gitfaas`, else `~/.local/state/gitfaas`, else `./gitfaas-data`.
fn default_data_dir() -> PathBuf {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(state).join("gitfaas");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty() && h != "/") {
        Some(home) => PathBuf::from(home).join(".local/state/gitfaas"),
        None => PathBuf::from("gitfaas-data"),
    }
}

/// Removes user info (`user:token@`) from a URL so it can be logged.
pub fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..]);
        }
    }
    url.to_string()
}

/// A stable folder name for a remote and branch.
fn cache_key(display_url: &str, branch: &str) -> String {
    // FNV-1a: stable across Rust versions, unlike DefaultHasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in display_url.bytes().chain([0]).chain(branch.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("repo-{h:016x}")
}

#[cfg(test)]
mod tests;
