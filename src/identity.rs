//! Callers known to Kubernetes (`--auth kubernetes`): a bearer token is
//! reviewed by the API server (TokenReview, for gitfaas' audience), and
//! what the caller may do is asked of the API server too
//! (SubjectAccessReview on virtual resources of the group `gitfaas.io` in
//! gitfaas' own namespace), so an ordinary Role and RoleBinding grant
//! "may publish topic `convert`" — per topic, audited, revocable.
//!
//! This module owns the reviews and their caches. Both are cached briefly
//! ([`ALLOW_TTL`], [`DENY_TTL`]), bounded ([`CACHE_ENTRIES`]), keyed by a
//! SHA-256 digest (of the token; of the identity and the permission),
//! never by the token itself; concurrent callers of one key wait for one
//! review. A review that fails (the API server unreachable, gitfaas not
//! allowed to review) is [`IdentityError::Unavailable`] — a 503, never an
//! open door — and is not cached.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

/// The API group of gitfaas' virtual resources (`topics`, `runs`, `sync`).
pub const GROUP: &str = "gitfaas.io";

/// How long an allow (an authenticated token, a granted permission) is
/// trusted without asking again: a revoked binding or a deleted service
/// account takes effect within this.
pub const ALLOW_TTL: Duration = Duration::from_secs(10);

/// How long a refusal stands: short, so a binding just granted works
/// almost at once, yet a caller hammering with a bad token costs one
/// review per this.
pub const DENY_TTL: Duration = Duration::from_secs(2);

/// Most entries of each cache; when full, expired entries go first, then
/// any.
pub const CACHE_ENTRIES: usize = 10_000;

/// Why a caller is not let through.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    /// The token is not one the API server authenticates for gitfaas'
    /// audience (invalid, expired, its service account or pod deleted, or
    /// meant for another audience).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is authenticated but lacks the permission; the message
    /// names who, the verb, the resource, the name and the namespace, and
    /// how to grant it ([`denial`]).
    #[error("{0}")]
    Denied(String),
    /// The API server could not review the token or the permission.
    #[error(
        "the caller's credentials cannot be checked now: {0}; nothing was done, try again later"
    )]
    Unavailable(String),
}

impl IdentityError {
    /// What kind of refusal this is.
    pub fn kind(&self) -> crate::error::Code {
        use crate::error::Code;
        match self {
            IdentityError::Unauthenticated(_) => Code::Unauthorized,
            IdentityError::Denied(_) => Code::AccessDenied,
            IdentityError::Unavailable(_) => Code::AuthUnavailable,
        }
    }

    /// Every code [`kind`](Self::kind) can give (the route table's check).
    pub fn codes() -> Vec<crate::error::Code> {
        use crate::error::Code;
        let _every_variant_is_listed = |e: &Self| match e {
            IdentityError::Unauthenticated(_)
            | IdentityError::Denied(_)
            | IdentityError::Unavailable(_) => (),
        };
        vec![
            Code::Unauthorized,
            Code::AccessDenied,
            Code::AuthUnavailable,
        ]
    }
}

/// How many recent callers `GET /status` shows.
pub const RECENT_CALLERS: usize = 32;

/// How many distinct users the callers' metric names; later ones are
/// counted as `other`, so the label set stays bounded.
pub const METRIC_USERS: usize = 100;

/// One call `GET /status` shows: who published or cancelled what, when.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallerSeen {
    /// The review's username (a file token's `t-…` id, `anonymous` when
    /// the API is open); never a token.
    pub user: String,
    /// `publish` or `cancel`.
    pub action: String,
    /// The topic published, or the run cancelled.
    pub target: String,
    /// When (RFC 3339, UTC).
    pub at: String,
}

/// The last [`RECENT_CALLERS`] publishes and cancels, and the callers'
/// metric, whose users are bounded by [`METRIC_USERS`].
#[derive(Default)]
pub struct RecentCallers {
    recent: Mutex<std::collections::VecDeque<CallerSeen>>,
    users: Mutex<std::collections::HashSet<String>>,
}

impl RecentCallers {
    /// Records that `user` did `action` on `target`.
    pub fn record(&self, user: &str, action: &str, target: &str) {
        let seen = CallerSeen {
            user: user.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            at: jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string()),
        };
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() >= RECENT_CALLERS {
                recent.pop_front();
            }
            recent.push_back(seen);
        }
        let label = match self.users.lock() {
            Ok(mut users) if users.contains(user) || users.len() < METRIC_USERS => {
                users.insert(user.to_string());
                user
            }
            _ => "other",
        };
        crate::metrics::get().caller(label, action);
    }

    /// The recent calls, newest last.
    pub fn recent(&self) -> Vec<CallerSeen> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The message of a refused permission: who, what was missing, where,
/// and how to grant it.
pub fn denial(user: &str, what: &Permission, namespace: &str, reason: &str) -> String {
    let names = what
        .name
        .as_ref()
        .map(|n| format!(", resourceNames [{n}]"))
        .unwrap_or_default();
    let reason = if reason.is_empty() {
        String::new()
    } else {
        format!(" (the authorizer said: {reason})")
    };
    format!(
        "{user} may not {what} in namespace {namespace}: grant it with a Role in namespace {namespace} (rules: apiGroups [{GROUP}], resources [{resource}], verbs [{verb}]{names}) and a RoleBinding to the caller; the chart ships ClusterRoles gitfaas-publisher, gitfaas-viewer and gitfaas-operator to bind{reason}",
        resource = what.resource_path(),
        verb = what.verb,
    )
}

/// Who a reviewed token belongs to, as the API server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The username (`system:serviceaccount:<namespace>:<name>` for a
    /// service account).
    pub user: String,
    /// The user's uid, when the authenticator gives one.
    pub uid: Option<String>,
    /// The groups.
    pub groups: Vec<String>,
    /// The authenticator's extra attributes (a bound pod's name…), passed
    /// on to the access review as they came.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// A permission on gitfaas' virtual resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// The verb.
    pub verb: &'static str,
    /// The resource.
    pub resource: &'static str,
    /// Its subresource, if any.
    pub subresource: Option<&'static str>,
    /// The resource name, if the permission is about one.
    pub name: Option<String>,
}

impl Permission {
    const fn of(verb: &'static str, resource: &'static str) -> Self {
        Permission {
            verb,
            resource,
            subresource: None,
            name: None,
        }
    }

    /// Publishing `topic` (and its dry run): `create` on `topics/<topic>`.
    pub fn publish(topic: &str) -> Self {
        Permission {
            name: Some(topic.to_string()),
            ..Self::of("create", "topics")
        }
    }

    /// Listing the serving topics (`GET /topics`): `list` on `topics`.
    pub const fn list_topics() -> Self {
        Self::of("list", "topics")
    }

    /// Reading `topic` and its manifests (`GET /topics/{topic}`): `get` on
    /// `topics/<topic>`, so a Role can name the topics one may read.
    pub fn read_topic(topic: &str) -> Self {
        Permission {
            name: Some(topic.to_string()),
            ..Self::of("get", "topics")
        }
    }

    /// Listing runs (`GET /requests`).
    pub const fn list_runs() -> Self {
        Self::of("list", "runs")
    }

    /// Reading one run: its view, responses, logs, tree. Runs are not
    /// named in the review: a run's uid is not known before it exists, so
    /// a Role could not name it.
    pub const fn read_run() -> Self {
        Self::of("get", "runs")
    }

    /// Cancelling a run.
    pub const fn cancel_run() -> Self {
        Self::of("delete", "runs")
    }

    /// Re-running a failed run: `create` on `runs/retry`.
    pub const fn retry_run() -> Self {
        Permission {
            verb: "create",
            resource: "runs",
            subresource: Some("retry"),
            name: None,
        }
    }

    /// Refreshing the sync: `update` on `sync`.
    pub const fn refresh() -> Self {
        Self::of("update", "sync")
    }

    fn resource_path(&self) -> String {
        match self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.to_string(),
        }
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {GROUP} {}", self.verb, self.resource_path())?;
        if let Some(name) = &self.name {
            write!(f, " `{name}`")?;
        }
        Ok(())
    }
}

/// A bounded cache of reviews whose concurrent askers of one key share
/// one review.
struct Cache<V> {
    entries: Mutex<HashMap<[u8; 32], Entry<V>>>,
}

struct Entry<V> {
    born: Instant,
    /// The review's answer and how long it stands; empty while the review
    /// runs, or after it failed (the next asker reviews again).
    cell: Arc<OnceCell<(V, Duration)>>,
}

impl<V> Entry<V> {
    fn fresh(&self, now: Instant) -> bool {
        match self.cell.get() {
            Some((_, ttl)) => now.saturating_duration_since(self.born) < *ttl,
            // A review under way (or failed): bounded by the API timeout;
            // past a minute, it is stale whatever it is.
            None => now.saturating_duration_since(self.born) < Duration::from_secs(60),
        }
    }
}

impl<V: Clone> Cache<V> {
    fn new() -> Self {
        Cache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cached answer of `key`, or the one `review` gives (shared with
    /// whoever asks meanwhile). A review that fails is not kept.
    async fn get_or_review<F, Fut>(&self, key: [u8; 32], review: F) -> Result<V, IdentityError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(V, Duration), IdentityError>>,
    {
        let cell = {
            let mut entries = self
                .entries
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            match entries.get(&key) {
                Some(entry) if entry.fresh(now) => Arc::clone(&entry.cell),
                _ => {
                    if entries.len() >= CACHE_ENTRIES {
                        entries.retain(|_, e| e.fresh(now));
                        while entries.len() >= CACHE_ENTRIES {
                            let Some(victim) = entries.keys().next().copied() else {
                                break;
                            };
                            entries.remove(&victim);
                        }
                    }
                    let cell = Arc::new(OnceCell::new());
                    entries.insert(
                        key,
                        Entry {
                            born: now,
                            cell: Arc::clone(&cell),
                        },
                    );
                    cell
                }
            }
        };
        cell.get_or_try_init(review).await.map(|(v, _)| v.clone())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

/// The reviews of `--auth kubernetes`, and their caches.
pub struct Reviewer {
    audience: String,
    namespace: String,
    tokens: Cache<Result<Arc<Identity>, String>>,
    access: Cache<Result<(), String>>,
}

fn digest_of(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in parts {
        // Length-prefixed, so no two lists of parts hash alike.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// A failed review call, in words that tell an operator what to fix.
fn unavailable(what: &str, e: &kube::Error) -> IdentityError {
    match e {
        kube::Error::Api(s) if s.code == 403 || s.code == 401 => IdentityError::Unavailable(format!(
            "the API server refused gitfaas' own request to create {what} ({}): bind gitfaas' service account to the ClusterRole system:auth-delegator",
            s.code
        )),
        other => IdentityError::Unavailable(format!("creating a {what} failed: {other}")),
    }
}

impl Reviewer {
    /// Reviews tokens for `audience` and permissions in `namespace`
    /// (gitfaas' own).
    pub fn new(audience: &str, namespace: &str) -> Self {
        Reviewer {
            audience: audience.to_string(),
            namespace: namespace.to_string(),
            tokens: Cache::new(),
            access: Cache::new(),
        }
    }

    /// The namespace permissions are asked in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Who `token` belongs to, as a TokenReview for gitfaas' audience says.
    pub async fn authenticate(
        &self,
        client: &kube::Client,
        token: &str,
    ) -> Result<Arc<Identity>, IdentityError> {
        let key = digest_of(&[b"token", token.as_bytes()]);
        let answer = self
            .tokens
            .get_or_review(key, || self.review_token(client, token))
            .await?;
        answer.map_err(IdentityError::Unauthenticated)
    }

    async fn review_token(
        &self,
        client: &kube::Client,
        token: &str,
    ) -> Result<(Result<Arc<Identity>, String>, Duration), IdentityError> {
        crate::metrics::get().review("token");
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| unavailable("tokenreviews", &e))?;
        let refused = |why: String| Ok((Err(why), DENY_TTL));
        let Some(status) = reviewed.status else {
            return Err(IdentityError::Unavailable(
                "the TokenReview came back without a status".into(),
            ));
        };
        if status.authenticated != Some(true) {
            // The authenticator's error may quote what it was given; it is
            // not echoed to the caller.
            return refused(format!(
                "the bearer token is not valid for audience `{}` (invalid, expired, its service account or pod gone, or minted for another audience): send a service-account token requested with audience `{}`, e.g. a projected serviceAccountToken volume",
                self.audience, self.audience
            ));
        }
        // An authenticator that ignores audiences answers without them: its
        // token is the API server's own, not one meant for gitfaas.
        let audiences = status.audiences.unwrap_or_default();
        if !audiences.iter().any(|a| a == &self.audience) {
            return refused(format!(
                "the bearer token is not meant for gitfaas: request it with audience `{}`",
                self.audience
            ));
        }
        let Some(user) = status.user.and_then(|u| {
            Some(Identity {
                user: u.username.filter(|n| !n.is_empty())?,
                uid: u.uid,
                groups: u.groups.unwrap_or_default(),
                extra: u.extra.unwrap_or_default(),
            })
        }) else {
            return refused("the token's review names no user".into());
        };
        Ok((Ok(Arc::new(user)), ALLOW_TTL))
    }

    /// Whether `who` may do `what`, as a SubjectAccessReview in gitfaas'
    /// namespace says.
    pub async fn authorize(
        &self,
        client: &kube::Client,
        who: &Identity,
        what: &Permission,
    ) -> Result<(), IdentityError> {
        let mut parts: Vec<&[u8]> = vec![
            b"access",
            who.user.as_bytes(),
            who.uid.as_deref().unwrap_or("").as_bytes(),
            what.verb.as_bytes(),
            what.resource.as_bytes(),
            what.subresource.unwrap_or("").as_bytes(),
            what.name.as_deref().unwrap_or("").as_bytes(),
        ];
        for group in &who.groups {
            parts.push(group.as_bytes());
        }
        let extra: Vec<String> = who
            .extra
            .iter()
            .map(|(k, v)| format!("{k}={}", v.join(",")))
            .collect();
        for e in &extra {
            parts.push(e.as_bytes());
        }
        let key = digest_of(&parts);
        let answer = self
            .access
            .get_or_review(key, || self.review_access(client, who, what))
            .await?;
        answer.map_err(|reason| {
            IdentityError::Denied(denial(&who.user, what, &self.namespace, &reason))
        })
    }

    async fn review_access(
        &self,
        client: &kube::Client,
        who: &Identity,
        what: &Permission,
    ) -> Result<(Result<(), String>, Duration), IdentityError> {
        crate::metrics::get().review("access");
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(who.user.clone()),
                uid: who.uid.clone(),
                groups: Some(who.groups.clone()),
                extra: (!who.extra.is_empty()).then(|| who.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(GROUP.into()),
                    namespace: Some(self.namespace.clone()),
                    resource: Some(what.resource.into()),
                    subresource: what.subresource.map(Into::into),
                    verb: Some(what.verb.into()),
                    name: what.name.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = Api::<SubjectAccessReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| unavailable("subjectaccessreviews", &e))?;
        let Some(status) = reviewed.status else {
            return Err(IdentityError::Unavailable(
                "the SubjectAccessReview came back without a status".into(),
            ));
        };
        if status.allowed && status.denied != Some(true) {
            return Ok((Ok(()), ALLOW_TTL));
        }
        // Not allowed is a no, whatever the authorizer met on the way: an
        // evaluation error (a binding to a role that is gone, say) comes
        // beside a decision, and answering 503 for it would have callers
        // retry what no retry fixes. It is shown with the reason.
        let reason = match (
            status.reason.filter(|r| !r.is_empty()),
            status.evaluation_error.filter(|e| !e.is_empty()),
        ) {
            (Some(r), Some(e)) => format!("{r}; evaluation error: {e}"),
            (Some(r), None) => r,
            (None, Some(e)) => format!("evaluation error: {e}"),
            (None, None) => String::new(),
        };
        Ok((Err(reason), DENY_TTL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_askers_of_one_key_share_one_review_and_failures_are_not_kept() {
        let cache: Cache<u32> = Cache::new();
        let reviews = AtomicUsize::new(0);
        let ask = || async {
            cache
                .get_or_review([1; 32], || async {
                    reviews.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok((7, ALLOW_TTL))
                })
                .await
        };
        let answers = futures::future::join_all((0..50).map(|_| ask())).await;
        assert!(answers.iter().all(|a| matches!(a, Ok(7))));
        assert_eq!(
            reviews.load(Ordering::SeqCst),
            1,
            "one review for the burst"
        );

        let failed = cache
            .get_or_review([2; 32], || async {
                Err(IdentityError::Unavailable("down".into()))
            })
            .await;
        assert!(matches!(failed, Err(IdentityError::Unavailable(_))));
        let again = cache
            .get_or_review([2; 32], || async { Ok((3, ALLOW_TTL)) })
            .await;
        assert!(matches!(again, Ok(3)), "a failure is reviewed again");
    }

    #[tokio::test]
    async fn an_answer_past_its_ttl_is_reviewed_again_and_the_cache_is_bounded() {
        let cache: Cache<u32> = Cache::new();
        let first = cache
            .get_or_review([1; 32], || async { Ok((1, Duration::ZERO)) })
            .await;
        assert!(matches!(first, Ok(1)));
        let second = cache
            .get_or_review([1; 32], || async { Ok((2, Duration::ZERO)) })
            .await;
        assert!(matches!(second, Ok(2)), "expired at once");
        for i in 0..(CACHE_ENTRIES + 10) {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let _ = cache
                .get_or_review(key, || async { Ok((0, ALLOW_TTL)) })
                .await;
        }
        assert!(cache.len() <= CACHE_ENTRIES);
    }

    #[test]
    fn a_refusal_names_the_verb_the_resource_and_the_name() {
        let p = Permission::publish("convert");
        assert_eq!(p.to_string(), "create gitfaas.io topics `convert`");
        assert_eq!(
            Permission::retry_run().to_string(),
            "create gitfaas.io runs/retry"
        );
        assert_eq!(
            Permission::read_topic("convert").to_string(),
            "get gitfaas.io topics `convert`"
        );
        assert_eq!(
            Permission::list_topics().to_string(),
            "list gitfaas.io topics"
        );
        let m = denial("system:serviceaccount:a:b", &p, "gitfaas", "");
        assert!(
            m.contains("may not create gitfaas.io topics `convert` in namespace gitfaas")
                && m.contains("resourceNames [convert]"),
            "{m}"
        );
    }
}
