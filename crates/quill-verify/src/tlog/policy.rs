//! C2SP `tlog-policy`: which log keys to trust and which witnesses must have cosigned.
//!
//! ```text
//! log <vkey> [<url>]
//! witness <name> <vkey> [<url>]
//! group <name> <k|any|all> <member>...
//! quorum <name|none>
//! ```
//!
//! Blank lines and lines starting with `#` are ignored. A group's members are witnesses or
//! groups defined above it; `any` means 1, `all` every member.

use std::collections::HashSet;

use super::note::{VerifierKey, TYPE_COSIGNATURE, TYPE_ED25519};
use super::TlogError;

/// A log the policy trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyLog {
    /// Its Ed25519 key; the key name is the log's origin.
    pub key: VerifierKey,
    /// Where it is served, if given.
    pub url: Option<String>,
}

/// A witness the policy knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyWitness {
    /// The name the policy's groups use.
    pub name: String,
    /// Its cosignature key.
    pub key: VerifierKey,
    /// Its submission URL prefix, if given.
    pub url: Option<String>,
}

/// A group: satisfied when `threshold` of its members are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyGroup {
    /// The group's name.
    pub name: String,
    /// How many members must be satisfied.
    pub threshold: usize,
    /// Witness or group names.
    pub members: Vec<String>,
}

/// A parsed policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The trusted logs.
    pub logs: Vec<PolicyLog>,
    /// The known witnesses.
    pub witnesses: Vec<PolicyWitness>,
    /// The groups, in definition order.
    pub groups: Vec<PolicyGroup>,
    /// The witness or group that must be satisfied; `None` for `quorum none`.
    pub quorum: Option<String>,
}

impl Policy {
    /// Parses a policy file's text.
    pub fn parse(text: &str) -> Result<Policy, TlogError> {
        let mut policy = Policy {
            logs: Vec::new(),
            witnesses: Vec::new(),
            groups: Vec::new(),
            quorum: None,
        };
        let mut quorum_seen = false;
        for (number, line) in text.lines().enumerate() {
            let bad = |why: String| TlogError::BadPolicy {
                line: number + 1,
                why,
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                [first, ..] if first.starts_with('#') => {}
                ["log", vkey, rest @ ..] if rest.len() <= 1 => {
                    let key = VerifierKey::parse(vkey).map_err(|e| bad(e.to_string()))?;
                    if key.key_type != TYPE_ED25519 {
                        return Err(bad("a log key must be an Ed25519 key".into()));
                    }
                    policy.logs.push(PolicyLog {
                        key,
                        url: rest.first().map(|u| u.to_string()),
                    });
                }
                ["witness", name, vkey, rest @ ..] if rest.len() <= 1 => {
                    let key = VerifierKey::parse(vkey).map_err(|e| bad(e.to_string()))?;
                    if key.key_type != TYPE_COSIGNATURE {
                        return Err(bad("a witness key must be a cosignature/v1 key".into()));
                    }
                    if policy.defines(name) {
                        return Err(bad(format!("{name} is defined twice")));
                    }
                    policy.witnesses.push(PolicyWitness {
                        name: name.to_string(),
                        key,
                        url: rest.first().map(|u| u.to_string()),
                    });
                }
                ["group", name, threshold, members @ ..] if !members.is_empty() => {
                    if policy.defines(name) {
                        return Err(bad(format!("{name} is defined twice")));
                    }
                    if let Some(unknown) = members.iter().find(|m| !policy.defines(m)) {
                        return Err(bad(format!("{unknown} is not defined above")));
                    }
                    let threshold = match *threshold {
                        "any" => 1,
                        "all" => members.len(),
                        k => k
                            .parse::<usize>()
                            .ok()
                            .filter(|k| (1..=members.len()).contains(k))
                            .ok_or_else(|| bad(format!("bad threshold {k}")))?,
                    };
                    policy.groups.push(PolicyGroup {
                        name: name.to_string(),
                        threshold,
                        members: members.iter().map(|m| m.to_string()).collect(),
                    });
                }
                ["quorum", name] => {
                    if quorum_seen {
                        return Err(bad("a second quorum line".into()));
                    }
                    quorum_seen = true;
                    if *name != "none" {
                        if !policy.defines(name) {
                            return Err(bad(format!("{name} is not defined above")));
                        }
                        policy.quorum = Some(name.to_string());
                    }
                }
                _ => return Err(bad(format!("cannot read {line:?}"))),
            }
        }
        if !quorum_seen {
            return Err(TlogError::BadPolicy {
                line: text.lines().count(),
                why: "no quorum line".into(),
            });
        }
        Ok(policy)
    }

    fn defines(&self, name: &str) -> bool {
        self.witnesses.iter().any(|w| w.name == name) || self.groups.iter().any(|g| g.name == name)
    }

    /// The witness cosignature keys, for [`super::Note::verify`].
    pub fn witness_keys(&self) -> Vec<VerifierKey> {
        self.witnesses.iter().map(|w| w.key.clone()).collect()
    }

    /// Whether the witnesses named in `cosigned` (policy names) satisfy the quorum.
    pub fn quorum_met(&self, cosigned: &HashSet<String>) -> bool {
        match &self.quorum {
            None => true,
            Some(name) => self.satisfied(name, cosigned),
        }
    }

    fn satisfied(&self, name: &str, cosigned: &HashSet<String>) -> bool {
        if self.witnesses.iter().any(|w| w.name == name) {
            return cosigned.contains(name);
        }
        // Groups only reference names defined before them, so this recursion terminates.
        self.groups
            .iter()
            .find(|g| g.name == name)
            .is_some_and(|group| {
                group
                    .members
                    .iter()
                    .filter(|m| self.satisfied(m, cosigned))
                    .count()
                    >= group.threshold
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn witness_vkey(name: &str, seed: u8) -> String {
        let public = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key();
        VerifierKey::new(name, TYPE_COSIGNATURE, public.to_bytes())
            .unwrap()
            .to_string()
    }

    fn policy_text() -> String {
        format!(
            "# a comment\n\
             log PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW https://log.example/\n\
             \n\
             witness w1 {} https://w1.example/\n\
             witness w2 {}\n\
             witness w3 {}\n\
             witness w4 {}\n\
             group three 2 w1 w2 w3\n\
             group top all three w4\n\
             quorum top\n",
            witness_vkey("w1.example", 1),
            witness_vkey("w2.example", 2),
            witness_vkey("w3.example", 3),
            witness_vkey("w4.example", 4),
        )
    }

    fn set(names: &[&str]) -> HashSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn nested_groups_count_their_members() {
        let policy = Policy::parse(&policy_text()).unwrap();
        assert_eq!(policy.logs.len(), 1);
        assert_eq!(policy.logs[0].url.as_deref(), Some("https://log.example/"));
        assert_eq!(policy.witnesses.len(), 4);
        assert!(policy.quorum_met(&set(&["w1", "w3", "w4"])));
        assert!(!policy.quorum_met(&set(&["w1", "w3"])));
        assert!(!policy.quorum_met(&set(&["w1", "w4"])));
        assert!(!policy.quorum_met(&set(&[])));
        let none = Policy::parse("quorum none\n").unwrap();
        assert!(none.quorum_met(&set(&[])));
    }

    #[test]
    fn bad_policies_name_the_line() {
        let w1 = witness_vkey("w1.example", 1);
        for (text, line) in [
            (format!("witness w1 {w1}\ngroup g 2 w1\nquorum g\n"), 2),
            (format!("witness w1 {w1}\ngroup g any w2\nquorum g\n"), 2),
            (format!("witness w1 {w1}\nwitness w1 {w1}\nquorum w1\n"), 2),
            (format!("witness w1 {w1}\nquorum w1\nquorum w1\n"), 3),
            ("quorum nobody\n".to_owned(), 1),
            (format!("log {w1}\nquorum none\n"), 1),
            ("frobnicate\nquorum none\n".to_owned(), 1),
            (format!("witness w1 {w1}\n"), 1),
        ] {
            match Policy::parse(&text) {
                Err(TlogError::BadPolicy { line: got, .. }) => assert_eq!(got, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
