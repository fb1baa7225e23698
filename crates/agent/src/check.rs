//! Reading a YAML document while collecting every problem with its field path, so one run
//! reports all that is wrong with a file, not the first thing.

use serde_yaml_ng::{Mapping, Value};

/// One thing wrong, at a field path such as `spec.ports[1].container`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Collects problems as a document is read.
#[derive(Debug, Default)]
pub(crate) struct Check {
    pub problems: Vec<Problem>,
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

impl Check {
    pub fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// `value` as a mapping whose keys are all in `known` (others are reported).
    pub fn mapping<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Option<&'v Mapping> {
        let Value::Mapping(m) = value else {
            self.problem(path, format!("must be a mapping, not {}", kind(value)));
            return None;
        };
        for key in m.keys() {
            match key.as_str() {
                Some(k) if known.contains(&k) => {}
                Some(k) => self.problem(
                    join(path, k),
                    format!("unknown field (known: {})", known.join(", ")),
                ),
                None => self.problem(path, "keys must be strings"),
            }
        }
        Some(m)
    }

    /// A scalar as text (numbers and booleans are accepted and written as YAML shows them).
    pub fn text(&mut self, value: Option<&Value>, path: &str, required: bool) -> Option<String> {
        match value {
            None | Some(Value::Null) => {
                if required {
                    self.problem(path, "is required");
                }
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() && required => {
                self.problem(path, "must not be empty");
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(other) => {
                self.problem(path, format!("must be text, not {}", kind(other)));
                None
            }
        }
    }

    /// A list of scalars.
    pub fn texts(&mut self, value: Option<&Value>, path: &str) -> Vec<String> {
        self.list(value, path)
            .iter()
            .enumerate()
            .filter_map(|(i, v)| self.text(Some(v), &format!("{path}[{i}]"), true))
            .collect()
    }

    /// A list (absent is empty).
    pub fn list<'v>(&mut self, value: Option<&'v Value>, path: &str) -> &'v [Value] {
        match value {
            None | Some(Value::Null) => &[],
            Some(Value::Sequence(s)) => s,
            Some(other) => {
                self.problem(path, format!("must be a list, not {}", kind(other)));
                &[]
            }
        }
    }

    /// A whole number in `min..=max`.
    pub fn number(&mut self, value: Option<&Value>, path: &str, min: i64, max: i64) -> Option<i64> {
        match value {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) if (min..=max).contains(&i) => Some(i),
                _ => {
                    self.problem(
                        path,
                        format!("must be a whole number from {min} to {max}, not {n}"),
                    );
                    None
                }
            },
            Some(other) => {
                self.problem(path, format!("must be a number, not {}", kind(other)));
                None
            }
        }
    }

    pub fn boolean(&mut self, value: Option<&Value>, path: &str) -> Option<bool> {
        match value {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.problem(path, format!("must be true or false, not {}", kind(other)));
                None
            }
        }
    }

    /// Text that must be one of `allowed`.
    pub fn choice(
        &mut self,
        value: Option<&Value>,
        path: &str,
        allowed: &[&str],
    ) -> Option<String> {
        let text = self.text(value, path, false)?;
        if allowed.contains(&text.as_str()) {
            Some(text)
        } else {
            self.problem(
                path,
                format!("must be one of {}, not {text:?}", allowed.join(", ")),
            );
            None
        }
    }
}

/// A field of a mapping.
pub(crate) fn field<'v>(m: Option<&'v Mapping>, key: &str) -> Option<&'v Value> {
    m?.get(key)
}
