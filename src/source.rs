//! Where the functions come from, and keeping the live [`Snapshot`] current.
//!
//! Owns git fetching (git2: https with user + token, ssh with a key checked
//! against known_hosts, file:// and local paths), the plain-directory source
//! for development, and the sync loop. Files are read straight from the
//! fetched commit's tree in a bare cache repository (a repository on this
//! machine is read in place, as `git clone --local` would): nothing is
//! checked out, so nothing is ever half-written. The remote is anonymous (in
//! memory), so no credential is written to disk, and every git error is
//! scrubbed of the URL's user info and of the token before it is returned.
//!
//! A new commit replaces the live snapshot only when its whole catalog
//! validates; otherwise the previous snapshot keeps serving and the status
//! records the error and the rejected commit. git2 is blocking: it runs on
//! `spawn_blocking`, and no git2 type leaves this module.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::catalog::{self, CatalogError, FileError, FileTree, Problem, RepoPath, Snapshot};
use crate::settings::{GitSettings, SourceSettings};
use crate::tasks::Ticker;

/// Errors of one sync.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    /// The remote could not be fetched (message already free of credentials).
    #[error("git fetch from {url} failed: {message}")]
    Fetch {
        /// The remote, without user info.
        url: String,
        /// What git said.
        message: String,
    },
    /// The fetched commit's catalog is invalid; the previous snapshot serves on.
    #[error("commit {commit} was rejected, the previous version keeps serving: {message}")]
    Rejected {
        /// The rejected commit.
        commit: String,
        /// Summary of its problems.
        message: String,
        /// Every problem.
        problems: Vec<Problem>,
    },
    /// Reading the directory source failed.
    #[error("reading {0}")]
    Dir(String),
}

impl SyncError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::Code {
        use crate::error::Code;
        match self {
            SyncError::Fetch { .. } => Code::GitFetchFailed,
            SyncError::Rejected { .. } => Code::RepositoryRejected,
            SyncError::Dir(_) => Code::Internal,
        }
    }

    /// Every code [`kind`](Self::kind) can give: what the route table
    /// (`http::routes`) checks each route's documented errors against. The
    /// match has no wildcard, like kind's: a new variant does not compile
    /// until its codes are listed here too.
    pub fn codes() -> Vec<crate::error::Code> {
        use crate::error::Code;
        let _every_variant_is_listed = |e: &Self| match e {
            SyncError::Fetch { .. } | SyncError::Rejected { .. } | SyncError::Dir(_) => (),
        };
        vec![
            Code::GitFetchFailed,
            Code::RepositoryRejected,
            Code::Internal,
        ]
    }
}

/// What a successful sync did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncOutcome {
    /// The commit now serving.
    pub commit: String,
    /// Whether the live snapshot changed.
    pub changed: bool,
}

/// The last error of the sync, for `/status`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// What went wrong.
    pub message: String,
    /// The rejected commit, when a commit was fetched but invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Every problem of the rejected commit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    /// When (RFC 3339).
    pub at: String,
}

/// The sync's state, for `/status`. Written only by [`Syncer::sync`].
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// The commit serving, if any.
    pub commit: Option<String>,
    /// When a sync last ended.
    pub last_sync: Option<String>,
    /// When a sync last succeeded.
    pub last_success: Option<String>,
    /// The last sync's error; cleared by a success.
    pub last_error: Option<LastError>,
    /// The last commit refused for its problems, with them: unlike
    /// `lastError`, kept through a later failure of another kind (the git
    /// server unreachable), so that what to fix stays shown while the
    /// branch still holds it; cleared once its head serves.
    pub last_rejected: Option<LastError>,
    /// Failed syncs since the last success.
    pub consecutive_failures: u32,
}

/// Keeps the live snapshot and syncs it from the source.
pub struct Syncer {
    source: SourceSettings,
    config_path: RepoPath,
    current: ArcSwapOption<Snapshot>,
    // std Mutex: held only to copy or update the status, never across .await.
    status: Mutex<SyncStatus>,
    /// Serializes syncs: the poll loop, /refresh and the webhook share one fetch.
    running: tokio::sync::Mutex<()>,
}

enum Fetched {
    Unchanged(String),
    New(Snapshot),
}

impl Syncer {
    /// A syncer with no snapshot yet.
    pub fn new(source: SourceSettings, config_path: RepoPath) -> Self {
        Syncer {
            source,
            config_path,
            current: ArcSwapOption::empty(),
            status: Mutex::new(SyncStatus::default()),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// A description of the source that is safe to show.
    pub fn describe(&self) -> String {
        match &self.source {
            SourceSettings::Git(g) => format!("{} (branch {})", g.display_url, g.branch),
            SourceSettings::Dir(d) => format!("directory {}", d.display()),
        }
    }

    /// The live snapshot. A caller keeps the `Arc` for the whole of its work,
    /// so a sync in between never mixes two commits.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// A copy of the sync status.
    pub fn status(&self) -> SyncStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Fetches and, when the commit is new and valid, swaps the live snapshot.
    #[tracing::instrument(skip_all, fields(source = %self.describe()))]
    pub async fn sync(&self) -> Result<SyncOutcome, SyncError> {
        let _one_at_a_time = self.running.lock().await;
        let source = self.source.clone();
        let config_path = self.config_path.clone();
        let current = self.snapshot().map(|s| s.commit.clone());
        let span = tracing::Span::current();
        let result = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            fetch_and_build(&source, &config_path, current.as_deref())
        })
        .await
        .unwrap_or_else(|e| Err(SyncError::Dir(format!("sync task failed: {e}"))));
        let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.last_sync = Some(now.clone());
        let metrics = crate::metrics::get();
        if result.is_ok() {
            let unix = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            metrics.last_success.set(unix);
            metrics.consecutive_failures.set(0);
        } else {
            metrics
                .consecutive_failures
                .set(i64::from(status.consecutive_failures) + 1);
        }
        match result {
            Ok(Fetched::Unchanged(commit)) => {
                status.last_success = Some(now);
                status.last_error = None;
                // The head is the serving commit: nothing refused is left on it.
                status.last_rejected = None;
                status.consecutive_failures = 0;
                Ok(SyncOutcome {
                    commit,
                    changed: false,
                })
            }
            Ok(Fetched::New(snapshot)) => {
                let commit = snapshot.commit.clone();
                tracing::info!(
                    commit,
                    topics = snapshot.topics.len(),
                    manifests = snapshot.manifest_count(),
                    "new snapshot serving"
                );
                crate::metrics::get().set_commit(&commit);
                self.current.store(Some(Arc::new(snapshot)));
                status.commit = Some(commit.clone());
                status.last_success = Some(now);
                status.last_error = None;
                status.last_rejected = None;
                status.consecutive_failures = 0;
                Ok(SyncOutcome {
                    commit,
                    changed: true,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "sync failed");
                let (commit, problems) = match &e {
                    SyncError::Rejected {
                        commit, problems, ..
                    } => (Some(commit.clone()), problems.clone()),
                    _ => (None, Vec::new()),
                };
                let error = LastError {
                    message: e.to_string(),
                    commit,
                    problems,
                    at: now,
                };
                if error.commit.is_some() {
                    status.last_rejected = Some(error.clone());
                }
                status.last_error = Some(error);
                status.consecutive_failures += 1;
                Err(e)
            }
        }
    }

    /// Syncs every `interval` until `token` is cancelled; a sync in
    /// progress then finishes. A failed fetch is retried sooner, backing off
    /// from 1 s and doubling up to the interval; so is a failed first sync
    /// (the one at start, before this loop), which would otherwise leave
    /// publishes at 503 for a whole interval.
    pub async fn run(self: Arc<Self>, interval: Duration, token: CancellationToken) {
        let mut ticker = Ticker::new(interval, token);
        let mut backoff = Duration::from_secs(1);
        if self.status().consecutive_failures > 0 {
            let wait = backoff.min(interval);
            ticker.next_in(wait);
            tracing::info!(retry_in = ?wait, "retrying the failed first sync");
            backoff = (backoff * 2).min(interval);
        }
        while ticker.tick().await {
            match self.sync().await {
                Err(SyncError::Fetch { .. } | SyncError::Dir(_)) => {
                    let wait = backoff.min(interval);
                    ticker.next_in(wait);
                    tracing::info!(retry_in = ?wait, "retrying the fetch");
                    backoff = (backoff * 2).min(interval);
                }
                _ => backoff = Duration::from_secs(1),
            }
        }
        tracing::debug!("sync loop stopped");
    }
}

/// Fetches (or reads) the source once and builds its snapshot: the CLI's
/// `validate` and `render`. Blocking.
pub fn load(source: &SourceSettings, config_path: &RepoPath) -> Result<Snapshot, SyncError> {
    match fetch_and_build(source, config_path, None)? {
        Fetched::New(snapshot) => Ok(snapshot),
        Fetched::Unchanged(commit) => {
            Err(SyncError::Dir(format!("{commit} unexpectedly unchanged")))
        }
    }
}

fn fetch_and_build(
    source: &SourceSettings,
    config_path: &RepoPath,
    current: Option<&str>,
) -> Result<Fetched, SyncError> {
    match source {
        SourceSettings::Git(git) => {
            let failed = |e: git2::Error| SyncError::Fetch {
                url: git.display_url.clone(),
                message: scrub(git, e.message()),
            };
            let (repo, branch_ref) = match local_repository(git.url.expose_secret()) {
                // As `git clone --local` does: a repository on this machine is
                // read where it is. Fetching it would make libgit2 build a pack
                // of every object (delta search included) only to index it
                // again on our side: 0.7–0.8 s for 10,000 manifests.
                Some(path) => (
                    git2::Repository::open_ext(
                        &path,
                        git2::RepositoryOpenFlags::NO_SEARCH,
                        std::iter::empty::<&std::ffi::OsStr>(),
                    )
                    .map_err(failed)?,
                    format!("refs/heads/{}", git.branch),
                ),
                None => (
                    fetch(git).map_err(failed)?,
                    format!("refs/remotes/origin/{}", git.branch),
                ),
            };
            let (commit, tree) =
                resolve_branch(&repo, &branch_ref, &git.branch).map_err(|e| SyncError::Fetch {
                    url: git.display_url.clone(),
                    message: scrub(git, e.message()),
                })?;
            if current == Some(commit.as_str()) {
                return Ok(Fetched::Unchanged(commit));
            }
            let files = GitTree { repo: &repo, tree };
            build(&files, config_path, &commit)
        }
        SourceSettings::Dir(dir) => {
            let files = DirTree::new(dir.clone());
            // A directory has no commit: build, then name the result by a digest
            // of the bytes it read, so an unchanged directory is "unchanged".
            let probe = catalog::build(&files, config_path, "");
            let commit = format!("dir-{:016x}", files.digest());
            if current == Some(commit.as_str()) {
                return Ok(Fetched::Unchanged(commit));
            }
            match probe {
                Ok(mut snapshot) => {
                    snapshot.commit = commit;
                    Ok(Fetched::New(snapshot))
                }
                Err(CatalogError::Invalid(problems)) => Err(rejected(commit, problems)),
            }
        }
    }
}

fn build(files: &dyn FileTree, config_path: &RepoPath, commit: &str) -> Result<Fetched, SyncError> {
    catalog::build(files, config_path, commit)
        .map(Fetched::New)
        .map_err(|CatalogError::Invalid(problems)| rejected(commit.to_string(), problems))
}

fn rejected(commit: String, problems: Vec<Problem>) -> SyncError {
    SyncError::Rejected {
        message: CatalogError::Invalid(problems.clone()).to_string(),
        commit,
        problems,
    }
}

/// Removes every form of the credentials from a git message.
fn scrub(git: &GitSettings, message: &str) -> String {
    let mut s = message.replace(git.url.expose_secret(), &git.display_url);
    if let Some(token) = &git.token {
        let t = token.expose_secret();
        if !t.is_empty() {
            s = s.replace(t, "***");
        }
    }
    s
}

fn fetch(git: &GitSettings) -> Result<git2::Repository, git2::Error> {
    let repo = match git2::Repository::open_bare(&git.cache_dir) {
        Ok(r) => r,
        Err(_) => {
            std::fs::create_dir_all(&git.cache_dir).map_err(|e| {
                git2::Error::from_str(&format!(
                    "cannot create the cache directory {}: {e}",
                    git.cache_dir.display()
                ))
            })?;
            git2::Repository::init_bare(&git.cache_dir)?
        }
    };
    {
        // Anonymous: the URL (and any credentials in it) lives in memory only.
        let mut remote = repo.remote_anonymous(git.url.expose_secret())?;
        let mut options = git2::FetchOptions::new();
        let deadline = Instant::now() + git.timeout;
        options.remote_callbacks(callbacks(git, deadline));
        options.download_tags(git2::AutotagOption::None);
        // `+`: a force-pushed branch replaces our copy instead of failing to fast-forward.
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", git.branch);
        with_socket_timeout(git.timeout, || {
            remote.fetch(&[refspec.as_str()], Some(&mut options), None)
        })?
        .map_err(|e| timed_out(e, git.timeout, deadline))?;
    }
    Ok(repo)
}

/// libgit2's socket timeouts (connect, and each wait to read or write) as
/// set in the process: they are global (`git_libgit2_opts`) and written
/// without synchronisation, so they change only under this lock's write
/// side, and every fetch holds its read side from start to end. No libgit2
/// thread reads them while they change, and each fetch runs with its own
/// `--git-timeout` (one gitfaas per process: set once, by the first fetch).
static SOCKET_TIMEOUT: RwLock<Option<Duration>> = RwLock::new(None);

/// Runs `fetch` with libgit2's socket timeouts at `timeout`.
fn with_socket_timeout<T>(timeout: Duration, fetch: impl FnOnce() -> T) -> Result<T, git2::Error> {
    loop {
        {
            let set = SOCKET_TIMEOUT
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if *set == Some(timeout) {
                return Ok(fetch());
            }
        }
        let mut set = SOCKET_TIMEOUT
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if *set != Some(timeout) {
            let ms = std::ffi::c_int::try_from(timeout.as_millis()).unwrap_or(std::ffi::c_int::MAX);
            // SAFETY: git2 says these must not race with libgit2 reading
            // them; every network operation of this process runs inside
            // the read side of SOCKET_TIMEOUT, and this holds the write side.
            unsafe {
                git2::opts::set_server_connect_timeout_in_milliseconds(ms)?;
                git2::opts::set_server_timeout_in_milliseconds(ms)?;
            }
            *set = Some(timeout);
        }
    }
}

/// A fetch error that is a timeout (libgit2's socket timeout, or our
/// deadline in the progress callbacks) says which setting to change.
fn timed_out(e: git2::Error, timeout: Duration, deadline: Instant) -> git2::Error {
    let limit = humantime::format_duration(timeout);
    if e.code() == git2::ErrorCode::Timeout {
        git2::Error::new(
            e.code(),
            e.class(),
            format!(
                "{}: the remote did not answer within --git-timeout {limit}",
                e.message()
            ),
        )
    } else if e.code() == git2::ErrorCode::User && Instant::now() >= deadline {
        git2::Error::new(
            git2::ErrorCode::Timeout,
            e.class(),
            format!("the fetch timed out: it did not finish within --git-timeout {limit}"),
        )
    } else {
        e
    }
}

/// The path of a repository on this machine (`file://…` or a path), or None
/// for a remote (`https://`, `ssh://`, scp-like `host:path`).
fn local_repository(url: &str) -> Option<PathBuf> {
    if let Some(path) = url.strip_prefix("file://") {
        return Some(PathBuf::from(path));
    }
    if url.contains("://") {
        return None;
    }
    // `host:path` is ssh, unless a slash comes before the colon (`./a:b`).
    match url.find(':') {
        Some(colon) if !url[..colon].contains('/') => None,
        _ => Some(PathBuf::from(url)),
    }
}

fn resolve_branch<'r>(
    repo: &'r git2::Repository,
    reference: &str,
    branch: &str,
) -> Result<(String, git2::Tree<'r>), git2::Error> {
    let oid = repo.refname_to_id(reference).map_err(|_| {
        git2::Error::from_str(&format!(
            "the remote has no branch `{branch}`: check --branch / GIT_PULL_BRANCH"
        ))
    })?;
    let commit = repo.find_commit(oid)?;
    Ok((oid.to_string(), commit.tree()?))
}

fn callbacks(git: &GitSettings, deadline: Instant) -> git2::RemoteCallbacks<'static> {
    let mut cbs = git2::RemoteCallbacks::new();
    // The socket timeouts end a remote that goes silent; this ends one that
    // keeps sending, too slowly, past the deadline: false aborts the fetch.
    cbs.transfer_progress(move |_| Instant::now() < deadline);
    cbs.sideband_progress(move |_| Instant::now() < deadline);
    let user = git.user.clone();
    let token = git.token.clone();
    let ssh_key = git.ssh_key.clone();
    let mut attempts = 0;
    cbs.credentials(move |_url, user_from_url, allowed| {
        // libgit2 asks again after a refusal; one try per fetch avoids a loop.
        attempts += 1;
        if attempts > 1 {
            return Err(git2::Error::from_str(
                "authentication failed: the remote refused the credentials (check --git-user/--git-token or --ssh-key)",
            ));
        }
        if allowed.contains(git2::CredentialType::SSH_KEY) {
            if let Some(key) = &ssh_key {
                return git2::Cred::ssh_key(user_from_url.unwrap_or("git"), None, key, None);
            }
        }
        if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
            if let (Some(u), Some(t)) = (&user, &token) {
                return git2::Cred::userpass_plaintext(u, t.expose_secret());
            }
        }
        if allowed.contains(git2::CredentialType::USERNAME) {
            return git2::Cred::username(user_from_url.unwrap_or("git"));
        }
        Err(git2::Error::from_str(
            "the remote asks for credentials: set --git-user and --git-token (https) or --ssh-key (ssh)",
        ))
    });
    let known_hosts = git.known_hosts.clone().or_else(default_known_hosts);
    let insecure = git.insecure_skip_host_key_check;
    cbs.certificate_check(move |cert, host| {
        let Some(hostkey) = cert.as_hostkey() else {
            // TLS: libgit2's own verification against the system roots stands.
            return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
        };
        if insecure {
            return Ok(git2::CertificateCheckStatus::CertificateOk);
        }
        let Some(key) = hostkey.hostkey() else {
            return Err(git2::Error::from_str("the ssh server sent no host key"));
        };
        let Some(file) = &known_hosts else {
            return Err(git2::Error::from_str(&format!(
                "cannot verify the host key of {host}: pass --known-hosts FILE (or --insecure-skip-host-key-check)"
            )));
        };
        let text = std::fs::read_to_string(file).map_err(|e| {
            git2::Error::from_str(&format!("cannot read known_hosts {}: {e}", file.display()))
        })?;
        if known_hosts_match(&text, host, key) {
            Ok(git2::CertificateCheckStatus::CertificateOk)
        } else {
            Err(git2::Error::from_str(&format!(
                "the host key of {host} is not in {}: add it (ssh-keyscan {host}) or fix the URL",
                file.display()
            )))
        }
    });
    cbs
}

fn default_known_hosts() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home).join(".ssh/known_hosts");
    p.is_file().then_some(p)
}

/// Whether a known_hosts text lists `key` for `host` (plain host patterns;
/// hashed `|1|` entries are not supported and never match).
fn known_hosts_match(text: &str, host: &str, key: &[u8]) -> bool {
    use base64::Engine;
    text.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(hosts), Some(_kind), Some(b64)) = (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        if hosts.starts_with('#') || hosts.starts_with('|') || hosts.starts_with('@') {
            return false;
        }
        let host_listed = hosts.split(',').any(|h| {
            h == host
                || h.strip_prefix('[')
                    .and_then(|r| r.split_once("]:"))
                    .is_some_and(|(n, _)| n == host)
        });
        host_listed
            && base64::engine::general_purpose::STANDARD
                .decode(b64)
                .is_ok_and(|k| k == key)
    })
}

struct GitTree<'r> {
    repo: &'r git2::Repository,
    tree: git2::Tree<'r>,
}

impl FileTree for GitTree<'_> {
    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, FileError> {
        let entry = match self.tree.get_path(Path::new(path.as_ref())) {
            Ok(e) => e,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Err(FileError::NotFound),
            Err(e) => return Err(FileError::Io(e.message().to_string())),
        };
        match entry.filemode() {
            0o120000 => return Err(FileError::NotAFile("symlink")),
            0o040000 => return Err(FileError::NotAFile("directory")),
            0o160000 => return Err(FileError::NotAFile("submodule")),
            _ => {}
        }
        let blob = self
            .repo
            .find_blob(entry.id())
            .map_err(|e| FileError::Io(e.message().to_string()))?;
        Ok(blob.content().to_vec())
    }
}

/// A plain directory; symlinks are refused like in a commit, so a template
/// cannot read outside the folder.
struct DirTree {
    root: PathBuf,
    digest: Mutex<u64>,
}

impl DirTree {
    fn new(root: PathBuf) -> Self {
        DirTree {
            root,
            digest: Mutex::new(0xcbf29ce484222325),
        }
    }

    fn digest(&self) -> u64 {
        self.digest.lock().map(|d| *d).unwrap_or(0)
    }

    fn mix(&self, bytes: &[u8]) {
        if let Ok(mut h) = self.digest.lock() {
            for b in bytes {
                *h ^= u64::from(*b);
                *h = h.wrapping_mul(0x100000001b3);
            }
        }
    }
}

impl FileTree for DirTree {
    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, FileError> {
        let mut p = self.root.clone();
        for part in path.components() {
            p.push(part);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => return Err(FileError::NotAFile("symlink")),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(FileError::NotFound)
                }
                Err(e) => return Err(FileError::Io(e.to_string())),
            }
        }
        if p.is_dir() {
            return Err(FileError::NotAFile("directory"));
        }
        let bytes = std::fs::read(&p).map_err(|e| FileError::Io(e.to_string()))?;
        self.mix(path.as_ref().as_bytes());
        self.mix(&[0]);
        self.mix(&bytes);
        Ok(bytes)
    }
}

#[cfg(test)]
impl Syncer {
    /// A syncer whose live snapshot is `snapshot`, for unit tests (it
    /// never syncs).
    pub(crate) fn fixed(snapshot: Snapshot) -> Self {
        let syncer = Syncer::new(
            SourceSettings::Dir(PathBuf::from("/nonexistent")),
            RepoPath::parse("config.json").expect("a path"),
        );
        syncer.current.store(Some(Arc::new(snapshot)));
        syncer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_matching() {
        use base64::Engine;
        let key = b"\x00\x00\x00\x0bssh-ed25519key";
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let text = format!("# comment\ngithub.com,140.82.1.1 ssh-ed25519 {b64}\n[git.local]:2222 ssh-ed25519 {b64}\n|1|abc|def ssh-ed25519 {b64}\n");
        assert!(known_hosts_match(&text, "github.com", key));
        assert!(known_hosts_match(&text, "140.82.1.1", key));
        assert!(known_hosts_match(&text, "git.local", key));
        assert!(!known_hosts_match(&text, "gitlab.com", key));
        assert!(!known_hosts_match(&text, "github.com", b"other"));
    }

    #[test]
    fn local_repositories_are_told_from_remotes() {
        for (url, local) in [
            ("file:///srv/functions.git", Some("/srv/functions.git")),
            ("/srv/functions.git", Some("/srv/functions.git")),
            ("./functions", Some("./functions")),
            ("functions", Some("functions")),
            ("./odd:name", Some("./odd:name")),
            ("https://github.com/a/b.git", None),
            ("ssh://git@github.com/a/b.git", None),
            ("git@github.com:a/b.git", None),
            ("git://127.0.0.1/b.git", None),
        ] {
            assert_eq!(local_repository(url), local.map(PathBuf::from), "{url}");
        }
    }

    #[test]
    fn a_fetch_runs_with_the_socket_timeouts_of_its_own_setting() {
        for secs in [7, 3, 3] {
            let seen = with_socket_timeout(Duration::from_secs(secs), || {
                // SAFETY: read inside the read side of SOCKET_TIMEOUT, as a fetch does.
                unsafe {
                    (
                        git2::opts::get_server_connect_timeout_in_milliseconds().ok(),
                        git2::opts::get_server_timeout_in_milliseconds().ok(),
                    )
                }
            })
            .expect("set");
            let ms = Some(secs as std::ffi::c_int * 1000);
            assert_eq!(seen, (ms, ms), "{secs} s");
        }
    }

    #[test]
    fn timeouts_name_the_setting() {
        let deadline = Instant::now();
        let socket = git2::Error::new(
            git2::ErrorCode::Timeout,
            git2::ErrorClass::Net,
            "could not read from socket: timed out",
        );
        assert_eq!(
            timed_out(socket, Duration::from_secs(2), deadline).message(),
            "could not read from socket: timed out: the remote did not answer within --git-timeout 2s"
        );
        let aborted = git2::Error::new(git2::ErrorCode::User, git2::ErrorClass::Callback, "");
        assert!(timed_out(aborted, Duration::from_secs(60), deadline)
            .message()
            .contains("did not finish within --git-timeout 1m"));
        let other = git2::Error::from_str("authentication failed");
        assert_eq!(
            timed_out(other, Duration::from_secs(2), deadline).message(),
            "authentication failed"
        );
    }

    #[test]
    fn scrub_removes_url_credentials_and_token() {
        let git = GitSettings {
            url: "https://bob:s3cr3t@host/r.git".to_string().into(),
            display_url: "https://***@host/r.git".into(),
            branch: "main".into(),
            user: Some("bob".into()),
            token: Some("tok123".to_string().into()),
            ssh_key: None,
            known_hosts: None,
            insecure_skip_host_key_check: false,
            cache_dir: PathBuf::from("/tmp/x"),
            timeout: Duration::from_secs(60),
        };
        let s = scrub(
            &git,
            "failed to fetch https://bob:s3cr3t@host/r.git with tok123",
        );
        assert!(!s.contains("s3cr3t") && !s.contains("tok123"), "{s}");
    }
}
