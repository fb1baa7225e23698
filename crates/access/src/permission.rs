//! Actions, permissions and scopes: the vocabulary of authorization, with no I/O.
//!
//! An [`Action`] is what a request does to a repository. A [`Permission`] is what a grant
//! gives: `read` (pull), `write` (pull, push), `delete` (pull, push, delete) or `admin`
//! (everything, including visibility and permissions). A [`Scope`] narrows a token to some
//! repositories: `team/*:read` for API tokens, or Docker's `repository:team/agent:pull,push`.

use std::fmt;
use std::str::FromStr;

use agent_registry_oci::{RepoName, RepoPattern};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
    Admin,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Pull, Action::Push, Action::Delete, Action::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Actions(u8);

impl Actions {
    pub const NONE: Actions = Actions(0);
    pub const ALL: Actions = Actions(0b1111);

    pub fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    pub fn with(self, action: Action) -> Actions {
        Actions(self.0 | action.bit())
    }

    pub fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    pub fn intersect(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |a| self.contains(*a))
    }

    /// Docker's action names: `pull`, `push`, `delete`, `*` (everything); unknown ones are
    /// ignored, as the token specification asks.
    pub fn from_docker(list: &str) -> Actions {
        list.split(',')
            .fold(Actions::NONE, |set, a| match a.trim() {
                "pull" => set.with(Action::Pull),
                "push" => set.with(Action::Push),
                "delete" => set.with(Action::Delete),
                "*" => Actions::ALL,
                _ => set,
            })
    }

    /// The names Docker's token format uses (`*` for admin rights).
    pub fn to_docker(self) -> Vec<String> {
        self.iter()
            .map(|a| match a {
                Action::Admin => "*".to_owned(),
                a => a.as_str().to_owned(),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Read,
    Write,
    Delete,
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Delete => "delete",
            Permission::Admin => "admin",
        }
    }

    pub fn actions(self) -> Actions {
        let read = Actions::NONE.with(Action::Pull);
        match self {
            Permission::Read => read,
            Permission::Write => read.with(Action::Push),
            Permission::Delete => read.with(Action::Push).with(Action::Delete),
            Permission::Admin => Actions::ALL,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("{0:?} is not a permission: use read, write, delete or admin")]
    Permission(String),
    #[error("{0:?} is not a scope: use PATTERN:PERMISSION, such as team/*:read")]
    Scope(String),
    #[error("{0:?} is not a repository pattern (team/agent, team/* or *)")]
    Pattern(String),
}

impl FromStr for Permission {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" | "pull" => Ok(Permission::Read),
            "write" | "push" => Ok(Permission::Write),
            "delete" => Ok(Permission::Delete),
            "admin" => Ok(Permission::Admin),
            _ => Err(ScopeError::Permission(s.to_owned())),
        }
    }
}

/// Repositories matching `pattern`, limited to `actions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub pattern: RepoPattern,
    pub actions: Actions,
}

impl Scope {
    /// An API token scope, `PATTERN:PERMISSION` (`team/*:read`, `*:write`).
    pub fn parse_token_scope(s: &str) -> Result<Scope, ScopeError> {
        let (pattern, permission) = s
            .rsplit_once(':')
            .ok_or_else(|| ScopeError::Scope(s.to_owned()))?;
        Ok(Scope {
            pattern: pattern
                .parse()
                .map_err(|_| ScopeError::Pattern(pattern.to_owned()))?,
            actions: permission.parse::<Permission>()?.actions(),
        })
    }

    /// The actions `scopes` allow on `repo`.
    pub fn allowed(scopes: &[Scope], repo: &RepoName) -> Actions {
        scopes
            .iter()
            .filter(|s| s.pattern.matches(repo))
            .fold(Actions::NONE, |set, s| set.union(s.actions))
    }
}

/// One resource scope of a Docker token request: `repository:NAME:ACTIONS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceScope {
    pub repo: RepoName,
    pub actions: Actions,
}

impl ResourceScope {
    /// Parses the `scope` parameter of a token request (several may be space-separated).
    /// Scopes of other types (`registry:catalog:*`) and malformed ones are skipped: the
    /// specification says to grant what can be granted and ignore the rest.
    pub fn parse_all(scope: &str) -> Vec<ResourceScope> {
        scope
            .split_whitespace()
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                if kind != "repository" {
                    return None;
                }
                // A name may carry a class (`repository(plugin):name`); the class is ignored.
                let repo = name.parse().ok()?;
                Some(ResourceScope {
                    repo,
                    actions: Actions::from_docker(actions),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> RepoName {
        s.parse().expect("valid name")
    }

    #[test]
    fn permissions_grow_in_order() {
        assert!(Permission::Read.actions().contains(Action::Pull));
        assert!(!Permission::Read.actions().contains(Action::Push));
        assert!(Permission::Write.actions().contains(Action::Push));
        assert!(!Permission::Write.actions().contains(Action::Delete));
        assert!(Permission::Delete.actions().contains(Action::Delete));
        assert!(!Permission::Delete.actions().contains(Action::Admin));
        assert_eq!(Permission::Admin.actions(), Actions::ALL);
        assert!("owner".parse::<Permission>().is_err());
    }

    #[test]
    fn token_scopes_limit_by_pattern() {
        let scopes = vec![
            Scope::parse_token_scope("team/*:write").expect("valid"),
            Scope::parse_token_scope("shared/tool:read").expect("valid"),
        ];
        assert_eq!(
            Scope::allowed(&scopes, &repo("team/a")),
            Permission::Write.actions()
        );
        assert_eq!(
            Scope::allowed(&scopes, &repo("shared/tool")),
            Permission::Read.actions()
        );
        assert!(Scope::allowed(&scopes, &repo("other")).is_empty());
        assert!(Scope::parse_token_scope("team/*").is_err());
        assert!(Scope::parse_token_scope("Team:read").is_err());
        assert!(Scope::parse_token_scope("team:own").is_err());
    }

    #[test]
    fn docker_scopes_parse_and_skip_what_they_cannot() {
        let scopes = ResourceScope::parse_all(
            "repository:team/agent:pull,push registry:catalog:* repository:BAD:pull repository:x:*",
        );
        assert_eq!(
            scopes,
            vec![
                ResourceScope {
                    repo: repo("team/agent"),
                    actions: Permission::Write.actions()
                },
                ResourceScope {
                    repo: repo("x"),
                    actions: Actions::ALL
                },
            ]
        );
        assert_eq!(
            Actions::ALL.to_docker(),
            vec!["pull", "push", "delete", "*"]
        );
    }
}
