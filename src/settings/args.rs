//! The command line as clap reads it: the `gitfaas` subcommands and their
//! flags, each with its environment variable (the Python gitfaas' names
//! among them) and default. Values are only parsed here; what they mean
//! together is checked by the validation in the parent module.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Command line of the `gitfaas` binary.
#[derive(Parser)]
#[command(
    name = "gitfaas",
    version,
    about = "Turns a git repository of Kubernetes manifests into HTTP-triggered functions"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Serve the HTTP API, syncing the functions repository in the background.
    Serve(Box<ServeArgs>),
    /// Lint a functions repository offline (exit 0 ok, 1 problems found, 2 error);
    /// with --kubeconfig, also server-side dry-run every manifest.
    Validate(Box<ValidateArgs>),
    /// Print the YAML that a publish of TOPIC would apply.
    Render(Box<RenderArgs>),
    /// Publish to a running gitfaas (the HTTP client).
    Publish(Box<PublishArgs>),
    /// List the runs a running gitfaas keeps (its history), newest first.
    Runs(Box<RunsArgs>),
    /// Print the logs of a run's containers.
    Logs(Box<LogsArgs>),
    /// Cancel a run: its Jobs are deleted and it is recorded Cancelled.
    Cancel(Box<CancelArgs>),
    /// Print the tree of runs a run belongs to (parents and children).
    Tree(Box<TreeArgs>),
}

/// Flags of `gitfaas validate`.
#[derive(Args, Clone)]
pub struct ValidateArgs {
    /// The functions directory (same as --dir).
    #[arg(value_name = "DIR", conflicts_with_all = ["dir", "git_url"])]
    pub path: Option<PathBuf>,
    /// Where the functions come from.
    #[command(flatten)]
    pub source: SourceArgs,
    /// What may be applied.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Also server-side dry-run every manifest against this cluster.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace for the dry run of manifests that name none.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Values for query-parameter variables in the dry run (repeatable): --param replicas=2.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// The message every topic is rendered with: text, @FILE or @- (standard input); without it, a JSON body filling each {{body.…}} variable with a sample value.
    #[arg(long)]
    pub payload: Option<String>,
}

/// Flags of `gitfaas render`.
#[derive(Args, Clone)]
pub struct RenderArgs {
    /// The topic to render.
    pub topic: String,
    /// Where the functions come from.
    #[command(flatten)]
    pub source: SourceArgs,
    /// What may be applied.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Query parameters (repeatable): --param replicas=2.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// The message: text, or @FILE to read a file, or @- for standard input.
    #[arg(long, default_value = "")]
    pub payload: String,
    /// Renders as for a CloudEvent with this attribute (repeatable): --ce
    /// id=42 --ce type=com.example.order. Attributes not given take sample
    /// values (id, source, type, subject `sample`); the payload is its data.
    #[arg(long = "ce", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub cloudevent: Vec<(String, String)>,
    /// {{SCHEDULED_TIME}}, as a tick of the topic's schedule would set it (RFC 3339, e.g. 2026-03-29T01:00:00Z).
    #[arg(long)]
    pub scheduled_time: Option<String>,
    /// {{GITFAAS_URL}} in the output.
    #[arg(
        long,
        env = "GITFAAS_PUBLIC_URL",
        default_value = "http://gitfaas:5000"
    )]
    pub public_url: String,
}

/// How the HTTP client subcommands reach gitfaas: shared by `publish`,
/// `runs`, `logs`, `cancel` and `tree`.
#[derive(Args, Clone)]
pub struct ClientArgs {
    /// Base URL of the gitfaas API.
    #[arg(long, env = "GITFAAS_URL", default_value = "http://127.0.0.1:5000")]
    pub url: String,
    /// File holding the API bearer token (trailing newline ignored): one of the --api-token-file of a gitfaas with --auth tokens, or a Kubernetes token for the audience gitfaas (kubectl create token SA --audience gitfaas) with --auth kubernetes.
    #[arg(long, env = "GITFAAS_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// How `runs`, `cancel` and `tree` print what gitfaas answered.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Output {
    /// Aligned columns (or an indented tree), for people.
    #[default]
    Table,
    /// The server's JSON as it is, for scripts.
    Json,
}

/// Flags of `gitfaas publish`.
#[derive(Args, Clone)]
pub struct PublishArgs {
    /// The topic to publish to.
    pub topic: String,
    /// Where gitfaas is.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The message: text, or @FILE to read a file, or @- for standard input.
    #[arg(long, default_value = "")]
    pub data: String,
    /// Query parameters (repeatable): --param replicas=2.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Wait for the Jobs to finish, up to this long (e.g. 60s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub wait: Option<Duration>,
    /// Server-side dry run: print the rendered objects, apply nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Idempotency-Key header: a retry with the same key creates nothing new.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

/// Flags of `gitfaas runs`.
#[derive(Args, Clone)]
pub struct RunsArgs {
    /// Where gitfaas is.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only this topic's runs.
    #[arg(long)]
    pub topic: Option<String>,
    /// Only runs in this status (any case): pending, running, succeeded, failed, cancelled.
    #[arg(long)]
    pub status: Option<String>,
    /// Only runs created at or after this time: RFC 3339 or Unix seconds.
    #[arg(long)]
    pub since: Option<String>,
    /// Runs per page (1 to 500; the server's default is 50).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Start at this page: the `next` of a previous answer.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow `next` through every page (at most 10,000 runs).
    #[arg(long)]
    pub all: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Flags of `gitfaas logs`.
#[derive(Args, Clone)]
pub struct LogsArgs {
    /// The requestUid a publish returned.
    pub uid: String,
    /// Where gitfaas is.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Stream until the run's Jobs have finished.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of each container.
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
    /// Only this container.
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
}

/// Flags of `gitfaas cancel`.
#[derive(Args, Clone)]
pub struct CancelArgs {
    /// The requestUid a publish returned.
    pub uid: String,
    /// Where gitfaas is.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Flags of `gitfaas tree`.
#[derive(Args, Clone)]
pub struct TreeArgs {
    /// The requestUid of any run of the tree.
    pub uid: String,
    /// Where gitfaas is.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}`: expected NAME=VALUE")),
    }
}

/// Where the functions come from: flags shared by `serve`, `validate` and `render`.
#[derive(Args, Clone)]
pub struct SourceArgs {
    /// Git repository of the functions (https://, ssh://, git@host:path, file:// or a local path).
    #[arg(long, env = "GIT_URL", conflicts_with = "dir")]
    pub git_url: Option<String>,
    /// Serve a plain local directory instead of a git repository (re-read on each refresh).
    #[arg(long, env = "GITFAAS_DIR")]
    pub dir: Option<PathBuf>,
    /// Branch to follow.
    #[arg(long, env = "GIT_PULL_BRANCH", default_value = "main")]
    pub branch: String,
    /// Path of the topics configuration inside the repository.
    #[arg(long, env = "APPLY_CONFIG_PATH", default_value = "config.json")]
    pub config_path: String,
    /// User name for https git remotes.
    #[arg(long, env = "GIT_USER_NAME")]
    pub git_user: Option<String>,
    /// Personal access token for https git remotes. As a flag it is refused (any local user can read it in /proc/<pid>/cmdline) unless --allow-secret-flags: set GIT_PERSONAL_TOKEN or use --git-token-file.
    #[arg(long, env = "GIT_PERSONAL_TOKEN", hide_env_values = true)]
    pub git_token: Option<String>,
    /// File holding the personal access token (trailing newline ignored).
    #[arg(long, env = "GITFAAS_GIT_TOKEN_FILE", conflicts_with = "git_token")]
    pub git_token_file: Option<PathBuf>,
    /// Private key file for ssh git remotes.
    #[arg(long, env = "GITFAAS_SSH_KEY")]
    pub ssh_key: Option<PathBuf>,
    /// known_hosts file to verify the ssh server's host key against.
    #[arg(long, env = "GITFAAS_KNOWN_HOSTS")]
    pub known_hosts: Option<PathBuf>,
    /// Accept any ssh host key (insecure: allows a man in the middle to serve you manifests).
    #[arg(long, env = "GITFAAS_INSECURE_SKIP_HOST_KEY_CHECK")]
    pub insecure_skip_host_key_check: bool,
    /// Where the local cache of the git repository is kept.
    #[arg(long, env = "GITFAAS_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// How long a git fetch may take: to connect, for each answer of the remote, and in all (1s to 1h).
    #[arg(long, env = "GITFAAS_GIT_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub git_timeout: Duration,
    /// Accept secrets given as flags (--git-token, a --git-url or --redis-url holding a password), which any local user can read in /proc/<pid>/cmdline; they are warned about instead of refused.
    #[arg(long, env = "GITFAAS_ALLOW_SECRET_FLAGS")]
    pub allow_secret_flags: bool,
    /// Which of the flags that may carry a secret came from the command
    /// line rather than their environment variable (filled in by
    /// [`super::parse_command_line`]; nothing when parsed otherwise).
    #[arg(skip)]
    pub on_command_line: OnCommandLine,
}

/// Which flags that may carry a secret were given on the command line, not
/// by their environment variable: the parsed values cannot tell, clap can.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnCommandLine {
    /// `--git-token`.
    pub git_token: bool,
    /// `--git-url`.
    pub git_url: bool,
    /// `--redis-url` (`serve` only).
    pub redis_url: bool,
}

/// What may be applied: flags shared by `serve` and `validate`.
#[derive(Args, Clone)]
pub struct PolicyArgs {
    /// Kinds that may never be applied, separated by spaces or commas (Kind.group for a custom resource).
    #[arg(long, env = "BANNED_KUBE_RESS")]
    pub banned_kinds: Option<String>,
    /// Namespaces objects may be applied to, comma-separated (default: any).
    #[arg(long, env = "GITFAAS_ALLOWED_NAMESPACES", value_delimiter = ',')]
    pub allowed_namespaces: Option<Vec<String>>,
    /// Pod Security Standards level every pod spec must meet (privileged: no pod checks).
    #[arg(long, env = "GITFAAS_POD_SECURITY", default_value = "baseline",
          value_parser = clap::builder::PossibleValuesParser::new(["baseline", "restricted", "privileged"]))]
    pub pod_security: String,
    /// Waive the Pod Security Standards' `privileged` check (privileged containers).
    #[arg(long, env = "GITFAAS_ALLOW_PRIVILEGED")]
    pub allow_privileged: bool,
    /// Waive the `hostPathVolumes` check (and hostPath in restricted's volume types).
    #[arg(long, env = "GITFAAS_ALLOW_HOST_PATH")]
    pub allow_host_path: bool,
    /// Waive the `hostNamespaces` check (hostNetwork, hostPID and hostIPC).
    #[arg(long, env = "GITFAAS_ALLOW_HOST_NAMESPACES")]
    pub allow_host_namespaces: bool,
    /// Cluster-power kinds to allow, separated by spaces or commas (Namespace, StorageClass, Secret/service-account-token…).
    #[arg(long, env = "GITFAAS_ALLOW_KINDS")]
    pub allow_kinds: Option<String>,
    /// Service accounts pods may run as besides `default`, comma-separated.
    #[arg(long, env = "GITFAAS_ALLOWED_SERVICE_ACCOUNTS", value_delimiter = ',')]
    pub allowed_service_accounts: Option<Vec<String>>,
    /// Secrets pods may read or mount besides their request's payload Secret: names or `prefix*`, comma-separated (default: none).
    #[arg(long, env = "GITFAAS_ALLOWED_SECRETS", value_delimiter = ',')]
    pub allowed_secrets: Option<Vec<String>>,
}

/// Flags of `gitfaas serve`, as given.
#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Where the functions come from.
    #[command(flatten)]
    pub source: SourceArgs,
    /// How often to fetch (e.g. 60s, 5m). POLLING_INTERVAL (minutes) is read when this is not set.
    #[arg(long, env = "GITFAAS_POLL_INTERVAL", value_parser = humantime::parse_duration)]
    pub poll_interval: Option<Duration>,
    /// Address to listen on.
    #[arg(long, env = "GITFAAS_LISTEN", default_value = "0.0.0.0:5000")]
    pub listen: SocketAddr,
    /// This service's base URL as functions reach it ({{GITFAAS_URL}}).
    #[arg(long, env = "GITFAAS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Namespace for manifests that do not name one (default: the kubeconfig's or the pod's).
    #[arg(long, env = "GITFAAS_NAMESPACE")]
    pub namespace: Option<String>,
    /// What may be applied.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Kubeconfig file (default: KUBECONFIG, in-cluster, then ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Timeout of one call to the Kubernetes API.
    #[arg(long, env = "GITFAAS_API_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub api_timeout: Duration,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "GITFAAS_MAX_PAYLOAD_BYTES", default_value_t = 1024 * 1024)]
    pub max_payload_bytes: usize,
    /// How long stopping may take from SIGTERM: in-flight requests, then background work.
    #[arg(long, env = "GITFAAS_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// File of API bearer tokens, one per line; re-read when it changes (`--auth tokens`).
    #[arg(long, env = "GITFAAS_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Who may call the API: `kubernetes` (service-account tokens, TokenReview and SubjectAccessReview on gitfaas.io resources), `tokens` (the --api-token-file), both (`kubernetes,tokens`), or `none` (an open API). Unset: `tokens` with a token file, else an open API with a warning.
    #[arg(long, env = "GITFAAS_AUTH")]
    pub auth: Option<String>,
    /// The audience a Kubernetes token must be minted for (`--auth kubernetes`).
    #[arg(long, env = "GITFAAS_TOKEN_AUDIENCE", default_value = "gitfaas")]
    pub token_audience: String,
    /// File holding the git webhook secret; enables POST /webhook/git.
    #[arg(long, env = "GITFAAS_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Publishes processed at once; more are answered 429 with Retry-After.
    #[arg(long, env = "GITFAAS_MAX_IN_FLIGHT", default_value_t = 512)]
    pub max_in_flight: usize,
    /// `?wait=` publishes waiting at once; more are answered 429 (they are applied, not waited for).
    #[arg(long, env = "GITFAAS_MAX_WAITERS", default_value_t = 256)]
    pub max_waiters: usize,
    /// Bytes of each container's log kept in the store when a run finishes, so its logs answer after its pods are gone (at most 1048576; 0 keeps none); a run keeps at most 4 times this in all (at most 1 MiB), shared fairly.
    #[arg(long, env = "GITFAAS_LOG_ARCHIVE_BYTES", default_value_t = 65536)]
    pub log_archive_bytes: usize,
    /// Most query parameters a publish may have.
    #[arg(long, env = "GITFAAS_MAX_QUERY_PARAMS", default_value_t = 32)]
    pub max_query_params: usize,
    /// How long the Idempotency-Key of a running publish is held: a publish that died (crash, lost connection) frees its key after this.
    #[arg(long, env = "GITFAAS_IDEMPOTENCY_LEASE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idempotency_lease: Duration,
    /// Longest query parameter value, in bytes.
    #[arg(long, env = "GITFAAS_MAX_PARAM_BYTES", default_value_t = 4096)]
    pub max_param_bytes: usize,
    /// Origins (scheme://host[:port]) whose pages may make state-changing calls, besides gitfaas' own; separated by commas or spaces.
    #[arg(long, env = "GITFAAS_ALLOWED_ORIGINS", default_value = "")]
    pub allowed_origins: String,
    /// Host headers served (host or host:port), against DNS rebinding; empty: any. Probes (/healthz, /readyz, /alive) are always served.
    #[arg(long, env = "GITFAAS_ALLOWED_HOSTS", default_value = "")]
    pub allowed_hosts: String,
    /// Directory of the embedded store (a single redb file).
    #[arg(long, env = "GITFAAS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Redis URL (redis://[:password@]host:port/db) to share requests and responses between replicas, instead of the embedded store. A password in it is refused as a flag unless --allow-secret-flags: set GITFAAS_REDIS_URL or use --redis-url-file.
    #[arg(long, env = "GITFAAS_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// File holding the Redis URL (for one with a password; trailing newline ignored).
    #[arg(long, env = "GITFAAS_REDIS_URL_FILE", conflicts_with = "redis_url")]
    pub redis_url_file: Option<PathBuf>,
    /// How long requests, responses and idempotency keys are kept (e.g. 2d, 12h; a plain number is seconds).
    #[arg(long, env = "EXPIRATION_TIME", default_value = "2d", value_parser = parse_expiration)]
    pub expiration_time: Duration,
    /// Allow plain http callback URLs (X-Callback-Url). Off: https only, since a callback carries function uids.
    #[arg(long, env = "GITFAAS_CALLBACK_ALLOW_HTTP")]
    pub callback_allow_http: bool,
    /// Hosts a callback may reach although internal (loopback, private, link-local…): exact host names or IPs, separated by commas or spaces.
    #[arg(long, env = "GITFAAS_CALLBACK_ALLOWED_HOSTS")]
    pub callback_allowed_hosts: Option<String>,
    /// File holding the key that signs callbacks as the Standard Webhooks specification says (`whsec_<base64 of 24 to 64 bytes>`; one per line, each signs). Without it callbacks go unsigned (warned at start).
    #[arg(long, env = "GITFAAS_CALLBACK_SIGNING_SECRET_FILE")]
    pub callback_signing_secret_file: Option<PathBuf>,
    /// Callback POSTs in flight at once; more wait their turn.
    #[arg(long, env = "GITFAAS_MAX_CALLBACKS_IN_FLIGHT", default_value_t = 64)]
    pub max_callbacks_in_flight: usize,
    /// How long a callback waits for its Jobs before calling back anyway (at most the expiration time).
    #[arg(long, env = "GITFAAS_CALLBACK_MAX_WAIT", default_value = "1h", value_parser = humantime::parse_duration)]
    pub callback_max_wait: Duration,
    /// How long a gitfaas holds an undelivered callback without renewing it; after that (it was killed, or stopped) another gitfaas on the same store takes it over (1s to 1h).
    #[arg(long, env = "GITFAAS_CALLBACK_LEASE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub callback_lease: Duration,
    /// How long a dispatch slot of a limited topic (`maxConcurrent`) stays with a gitfaas that stopped sending its heartbeat (every third of it); after that (it was killed) another gitfaas on the same store applies or follows its run (1s to 1h).
    #[arg(long, env = "GITFAAS_DISPATCH_LEASE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub dispatch_lease: Duration,
    /// The Lease (coordination.k8s.io/v1) whose holder fires the topics' schedules, one replica at a time.
    #[arg(long, env = "GITFAAS_LEASE_NAME", default_value = "gitfaas-scheduler")]
    pub lease_name: String,
    /// The Lease's namespace (default: gitfaas' own: its pod's, else the kubeconfig context's; not --namespace, where functions run).
    #[arg(long, env = "GITFAAS_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long the scheduler's Lease holds without a renew (renewed every third of it); a replica stops firing a fifth of it before another may take over (1s to 5m).
    #[arg(long, env = "GITFAAS_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// Log filter (error, warn, info, debug, trace, or a tracing filter).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format.
    #[arg(long, env = "GITFAAS_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// EXPIRATION_TIME: a duration such as `2d`, or a number of seconds.
pub(super) fn parse_expiration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{e} (use e.g. 2d, 12h or a number of seconds)"))
}
