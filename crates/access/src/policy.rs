//! Who may do what: a [`Caller`] and the [`Policy`] snapshot that answers for it. Pure: the
//! snapshot is built from store records and consulted without I/O.

use std::collections::HashMap;
use std::sync::Arc;

use agent_registry_metadata::access::{PolicyRecords, Readable};
use agent_registry_oci::signature::PublicKey;
use agent_registry_oci::{RepoName, RepoPattern};

use crate::permission::{Action, Actions, Permission, Scope};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    Anonymous,
    User,
    Robot,
    /// A workload identified by a trusted issuer (a Kubernetes service account).
    Workload,
}

impl CallerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallerKind::Anonymous => "anonymous",
            CallerKind::User => "user",
            CallerKind::Robot => "robot",
            CallerKind::Workload => "workload",
        }
    }

    pub fn parse(s: &str) -> CallerKind {
        match s {
            "user" => CallerKind::User,
            "robot" => CallerKind::Robot,
            "workload" => CallerKind::Workload,
            _ => CallerKind::Anonymous,
        }
    }
}

/// Who a request comes from, as authentication established it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `None` for anonymous callers.
    pub name: Option<Arc<str>>,
    pub kind: CallerKind,
    pub admin: bool,
    pub groups: Arc<[String]>,
    /// What the credential is limited to: a scoped API token's scopes, or the access a
    /// registry token holds.
    pub limit: Option<Arc<[Scope]>>,
    /// The credential is narrower than its owner (a scoped API token, or a registry token
    /// issued to one), so it may not make credentials of its own.
    pub scoped: bool,
}

impl Caller {
    pub fn anonymous() -> Caller {
        static NO_GROUPS: std::sync::OnceLock<Arc<[String]>> = std::sync::OnceLock::new();
        Caller {
            name: None,
            kind: CallerKind::Anonymous,
            admin: false,
            groups: NO_GROUPS.get_or_init(|| Arc::from([])).clone(),
            limit: None,
            scoped: false,
        }
    }

    /// The name for logs and records: the principal, or `anonymous`.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("anonymous")
    }

    fn is(&self, subject: &str) -> bool {
        match subject.strip_prefix("group:") {
            Some(group) => self.groups.iter().any(|g| g == group),
            None => self.name.as_deref() == Some(subject),
        }
    }

    fn limited(&self, repo: &RepoName, actions: Actions) -> Actions {
        match &self.limit {
            Some(limit) => actions.intersect(Scope::allowed(limit, repo)),
            None => actions,
        }
    }
}

#[derive(Debug, Clone)]
struct Grant {
    subject: String,
    pattern: RepoPattern,
    actions: Actions,
}

/// What a pulled manifest must satisfy in the repositories `pattern` matches.
#[derive(Debug, Clone)]
pub struct PullRule {
    pub pattern: RepoPattern,
    /// Only manifests with a valid signature by one of `keys`.
    pub signed_only: bool,
    /// The policy's own trusted keys; empty means the registry's.
    pub keys: Arc<[PublicKey]>,
    /// Refuse manifests with scan findings at or above this severity.
    pub block_vulnerabilities: Option<String>,
    /// Advisories (ids or aliases) accepted despite the block.
    pub allowed_advisories: Arc<[String]>,
}

/// The grants, visibility settings and pull rules in force, as of `version`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub version: i64,
    public_by_default: bool,
    grants: Vec<Grant>,
    visibility: HashMap<RepoName, bool>,
    /// Most specific first: single repositories, then longer prefixes before shorter.
    pull_rules: Vec<PullRule>,
}

impl Policy {
    /// Builds the snapshot; grants with a permission this build does not know are skipped
    /// (and logged), never widened.
    pub fn new(records: PolicyRecords, public_by_default: bool) -> Policy {
        let grants = records
            .grants
            .into_iter()
            .filter_map(|g| match g.permission.parse::<Permission>() {
                Ok(p) => Some(Grant {
                    subject: g.subject,
                    pattern: g.pattern,
                    actions: p.actions(),
                }),
                Err(e) => {
                    tracing::warn!(subject = g.subject, error = %e, "ignoring a grant");
                    None
                }
            })
            .collect();
        let mut pull_rules: Vec<PullRule> = records
            .pull_policies
            .into_iter()
            .map(|p| PullRule {
                // Keys were checked when the policy was set; one this build cannot read
                // trusts nothing rather than something else.
                keys: PublicKey::parse_pem(&p.trusted_keys)
                    .unwrap_or_default()
                    .into(),
                pattern: p.pattern,
                signed_only: p.signed_only,
                block_vulnerabilities: p.block_vulnerabilities,
                allowed_advisories: p.allowed_advisories.into(),
            })
            .collect();
        pull_rules.sort_by_key(|r| match r.pattern.prefix() {
            None => (0, 0),
            Some(prefix) => (1, usize::MAX - prefix.len()),
        });
        Policy {
            version: records.version,
            public_by_default,
            grants,
            visibility: records.visibility.into_iter().collect(),
            pull_rules,
        }
    }

    /// The pull rule for `repo`: the most specific pattern that matches it.
    pub fn pull_rule(&self, repo: &RepoName) -> Option<&PullRule> {
        self.pull_rules.iter().find(|r| r.pattern.matches(repo))
    }

    pub fn is_public(&self, repo: &RepoName) -> bool {
        self.visibility
            .get(repo)
            .copied()
            .unwrap_or(self.public_by_default)
    }

    /// What `caller` may do to `repo`.
    /// What `caller` may do to `repo`. Anyone may pull a public repository, whatever their
    /// credential is limited to.
    pub fn actions(&self, caller: &Caller, repo: &RepoName) -> Actions {
        let mut actions = Actions::NONE;
        if caller.admin {
            actions = Actions::ALL;
        } else if caller.name.is_some() {
            for g in &self.grants {
                if g.pattern.matches(repo) && caller.is(&g.subject) {
                    actions = actions.union(g.actions);
                }
            }
        }
        let actions = caller.limited(repo, actions);
        if self.is_public(repo) {
            actions.with(Action::Pull)
        } else {
            actions
        }
    }

    pub fn allows(&self, caller: &Caller, repo: &RepoName, action: Action) -> bool {
        self.actions(caller, repo).contains(action)
    }

    /// The repositories `caller` may pull, as listings and search filter them.
    pub fn readable(&self, caller: &Caller) -> Readable {
        let mut patterns: Vec<RepoPattern> = if caller.admin {
            vec![RepoPattern::all()]
        } else {
            self.grants
                .iter()
                .filter(|g| g.actions.contains(Action::Pull) && caller.is(&g.subject))
                .map(|g| g.pattern.clone())
                .collect()
        };
        if let Some(limit) = &caller.limit {
            let pulls: Vec<&RepoPattern> = limit
                .iter()
                .filter(|s| s.actions.contains(Action::Pull))
                .map(|s| &s.pattern)
                .collect();
            patterns = patterns
                .iter()
                .flat_map(|p| pulls.iter().filter_map(move |l| narrower(p, l)))
                .collect();
        }
        if patterns.iter().any(|p| p.prefix() == Some("")) {
            return Readable::All;
        }
        Readable::Some {
            public_by_default: self.public_by_default,
            patterns,
        }
    }
}

/// Whether every repository `inner` matches is also matched by `outer`.
fn covers(outer: &RepoPattern, inner: &RepoPattern) -> bool {
    match outer.prefix() {
        Some(prefix) => inner.as_str().starts_with(prefix),
        None => outer == inner,
    }
}

/// The repositories both patterns match, when one pattern holds the other (two patterns
/// never overlap otherwise).
fn narrower(a: &RepoPattern, b: &RepoPattern) -> Option<RepoPattern> {
    if covers(b, a) {
        Some(a.clone())
    } else if covers(a, b) {
        Some(b.clone())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use agent_registry_metadata::access::{GrantRecord, PullPolicyRecord};

    use super::*;

    fn repo(s: &str) -> RepoName {
        s.parse().expect("valid")
    }

    fn pattern(s: &str) -> RepoPattern {
        s.parse().expect("valid")
    }

    fn user(name: &str, groups: &[&str]) -> Caller {
        Caller {
            name: Some(Arc::from(name)),
            kind: CallerKind::User,
            admin: false,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            limit: None,
            scoped: false,
        }
    }

    fn policy() -> Policy {
        let grant = |subject: &str, p: &str, permission: &str| GrantRecord {
            subject: subject.into(),
            pattern: pattern(p),
            permission: permission.into(),
        };
        Policy::new(
            PolicyRecords {
                version: 1,
                grants: vec![
                    grant("alice", "team/*", "write"),
                    grant("group:ops", "team/prod", "delete"),
                    grant("bob", "team/a", "read"),
                ],
                visibility: vec![(repo("open"), true)],
                pull_policies: ["*", "team/*", "team/prod", "team/prod/*"]
                    .into_iter()
                    .map(|p| PullPolicyRecord {
                        pattern: pattern(p),
                        signed_only: p != "team/*",
                        trusted_keys: String::new(),
                        block_vulnerabilities: None,
                        allowed_advisories: Vec::new(),
                    })
                    .collect(),
            },
            false,
        )
    }

    #[test]
    fn a_repository_takes_the_pull_rule_of_its_most_specific_pattern() {
        let p = policy();
        let rule = |r: &str| p.pull_rule(&repo(r)).map(|r| r.pattern.to_string());
        assert_eq!(rule("team/prod").as_deref(), Some("team/prod"));
        assert_eq!(rule("team/prod/x").as_deref(), Some("team/prod/*"));
        assert_eq!(rule("team/a").as_deref(), Some("team/*"));
        assert_eq!(rule("other").as_deref(), Some("*"));
        assert!(!p.pull_rule(&repo("team/a")).is_some_and(|r| r.signed_only));
    }

    #[test]
    fn grants_add_up_by_name_and_group() {
        let p = policy();
        let alice = user("alice", &["ops"]);
        assert!(p.allows(&alice, &repo("team/a"), Action::Push));
        assert!(!p.allows(&alice, &repo("team/a"), Action::Delete));
        assert!(p.allows(&alice, &repo("team/prod"), Action::Delete));
        assert!(!p.allows(&alice, &repo("other"), Action::Pull));
        let bob = user("bob", &[]);
        assert!(p.allows(&bob, &repo("team/a"), Action::Pull));
        assert!(!p.allows(&bob, &repo("team/a"), Action::Push));
        assert!(!p.allows(&bob, &repo("team/b"), Action::Pull));
    }

    #[test]
    fn public_repositories_are_pullable_by_anyone_and_nothing_more() {
        let p = policy();
        let anon = Caller::anonymous();
        assert!(p.allows(&anon, &repo("open"), Action::Pull));
        assert!(!p.allows(&anon, &repo("open"), Action::Push));
        assert!(!p.allows(&anon, &repo("team/a"), Action::Pull));
        // A grant naming "anonymous" does not make anonymous callers anyone.
        assert!(!anon.is("anonymous"));
    }

    #[test]
    fn limits_narrow_and_admins_have_everything() {
        let p = policy();
        let mut alice = user("alice", &[]);
        alice.limit = Some(Arc::from([Scope {
            pattern: pattern("team/a"),
            actions: Permission::Read.actions(),
        }]));
        assert!(p.allows(&alice, &repo("team/a"), Action::Pull));
        assert!(!p.allows(&alice, &repo("team/a"), Action::Push));
        assert!(!p.allows(&alice, &repo("team/b"), Action::Pull));
        assert_eq!(
            p.readable(&alice),
            Readable::Some {
                public_by_default: false,
                patterns: vec![pattern("team/a")]
            }
        );
        let mut root = user("root", &[]);
        root.admin = true;
        assert!(p.allows(&root, &repo("anything"), Action::Admin));
        assert_eq!(p.readable(&root), Readable::All);
    }
}
