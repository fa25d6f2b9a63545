//! The snapshot model: everything a backup carries about one database.
//!
//! A [`Snapshot`] is the in-memory form, convenient for small databases and
//! tests. Large databases never need it: the bundle writer and reader stream
//! the same items one at a time (see [`crate::bundle`]).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Longest collection name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest document, commit or branch id, in bytes.
pub const MAX_ID_LEN: usize = 1024;
/// Names a collection may not take, because the directory form uses them.
pub const RESERVED_NAMES: [&str; 2] = ["schema", "history"];

/// A database at one point in time, with the history that led there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The database schema; any JSON value (`null` when there is none).
    #[serde(default)]
    pub schema: Value,
    /// Collections by name.
    #[serde(default)]
    pub collections: BTreeMap<String, Collection>,
    /// Commits and branches.
    #[serde(default)]
    pub history: History,
}

/// One collection: its configuration and its documents by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Collection {
    /// Free-form configuration, e.g. `{"dimension":384,"metric":"cosine"}`.
    #[serde(default)]
    pub config: Map<String, Value>,
    /// Documents by id.
    #[serde(default)]
    pub documents: BTreeMap<String, Value>,
}

/// The commit graph and the branch heads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Every commit; any order here, canonical order in a bundle.
    #[serde(default)]
    pub commits: Vec<Commit>,
    /// Branch name → head commit id.
    #[serde(default)]
    pub branches: BTreeMap<String, String>,
}

/// One commit: who changed what, when, on top of which parents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commit {
    /// Unique id of the commit.
    pub id: String,
    /// Parent commit ids (none for a root commit, two or more for a merge).
    #[serde(default)]
    pub parents: Vec<String>,
    /// Who made it.
    #[serde(default)]
    pub author: String,
    /// Why.
    #[serde(default)]
    pub message: String,
    /// When, in milliseconds since the Unix epoch (UTC).
    #[serde(default)]
    pub timestamp: i64,
    /// The change set the commit applied, in order.
    #[serde(default)]
    pub changes: Vec<Change>,
}

/// One change inside a commit.
///
/// JSON form: `{"op":"put","collection","id","document"}`, `{"op":"delete",
/// "collection","id"}`, `{"op":"configure","collection","config"}`,
/// `{"op":"drop","collection"}`, `{"op":"schema","schema"}`, and
/// [`Change::PutSnapshot`] as a put without `document`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "RawChange")]
pub enum Change {
    /// Insert or replace a document.
    Put { collection: String, id: String, document: Value },
    /// A put of the document the snapshot holds for this collection and id
    /// (byte for byte): how a version-2 bundle (FORMAT.md §3.2) and the
    /// directory form write a put of a document the snapshot still has, so
    /// the document is stored once. Its JSON form is a put with no
    /// `document` member. Only meaningful next to a snapshot's documents:
    /// the server's store and the JSON API never hold it.
    PutSnapshot { collection: String, id: String },
    /// Remove a document.
    Delete { collection: String, id: String },
    /// Create a collection or replace its configuration.
    Configure { collection: String, config: Map<String, Value> },
    /// Remove a collection and its documents.
    Drop { collection: String },
    /// Replace the schema.
    Schema { schema: Value },
}

impl Change {
    /// The collection the change is about (None for a schema change).
    pub fn collection(&self) -> Option<&str> {
        match self {
            Change::Put { collection, .. }
            | Change::PutSnapshot { collection, .. }
            | Change::Delete { collection, .. }
            | Change::Configure { collection, .. }
            | Change::Drop { collection } => Some(collection),
            Change::Schema { .. } => None,
        }
    }
}

impl Serialize for Change {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let (op, fields) = match self {
            Change::Put { .. } => ("put", 4),
            Change::PutSnapshot { .. } => ("put", 3),
            Change::Delete { .. } => ("delete", 3),
            Change::Configure { .. } => ("configure", 3),
            Change::Drop { .. } => ("drop", 2),
            Change::Schema { .. } => ("schema", 2),
        };
        let mut s = serializer.serialize_struct("Change", fields)?;
        s.serialize_field("op", op)?;
        match self {
            Change::Put { collection, id, document } => {
                s.serialize_field("collection", collection)?;
                s.serialize_field("id", id)?;
                s.serialize_field("document", document)?;
            }
            Change::PutSnapshot { collection, id } | Change::Delete { collection, id } => {
                s.serialize_field("collection", collection)?;
                s.serialize_field("id", id)?;
            }
            Change::Configure { collection, config } => {
                s.serialize_field("collection", collection)?;
                s.serialize_field("config", config)?;
            }
            Change::Drop { collection } => s.serialize_field("collection", collection)?,
            Change::Schema { schema } => s.serialize_field("schema", schema)?,
        }
        s.end()
    }
}

/// The JSON form of [`Change`] as serde reads it: a put's `document` may be
/// missing (a [`Change::PutSnapshot`]) or `null` (a put of `null`).
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum RawChange {
    Put {
        collection: String,
        id: String,
        #[serde(default, deserialize_with = "present")]
        document: Option<Value>,
    },
    Delete {
        collection: String,
        id: String,
    },
    Configure {
        collection: String,
        config: Map<String, Value>,
    },
    Drop {
        collection: String,
    },
    Schema {
        schema: Value,
    },
}

/// `Some` for a member that is present, even when it is `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl From<RawChange> for Change {
    fn from(raw: RawChange) -> Self {
        match raw {
            RawChange::Put { collection, id, document: Some(document) } => Change::Put { collection, id, document },
            RawChange::Put { collection, id, document: None } => Change::PutSnapshot { collection, id },
            RawChange::Delete { collection, id } => Change::Delete { collection, id },
            RawChange::Configure { collection, config } => Change::Configure { collection, config },
            RawChange::Drop { collection } => Change::Drop { collection },
            RawChange::Schema { schema } => Change::Schema { schema },
        }
    }
}

/// Checks a collection name: 1..=128 bytes of `[A-Za-z0-9_.-]`, not starting
/// with `.`, not ending in `.config`, and not one of [`RESERVED_NAMES`]. The rule keeps every name a
/// safe file name (no path traversal when a bundle is unbundled to a directory).
pub fn validate_collection_name(name: &str) -> Result<()> {
    let ok_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_chars || name.starts_with('.') {
        return Err(Error::invalid(format!(
            "collection name {:?} must be 1..={MAX_NAME_LEN} characters of [A-Za-z0-9_.-], not starting with '.'",
            truncate_for_message(name)
        )));
    }
    if name.ends_with(".config") {
        return Err(Error::invalid(format!("collection name {name:?} may not end in \".config\" (the directory form uses NAME.config.json)")));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(Error::invalid(format!("collection name {name:?} is reserved")));
    }
    Ok(())
}

/// Checks a document, commit or branch id: 1..=1024 bytes, no control characters.
pub fn validate_id(kind: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(Error::invalid(format!("{kind} id {:?} must be 1..={MAX_ID_LEN} bytes without control characters", truncate_for_message(id))));
    }
    Ok(())
}

pub(crate) fn truncate_for_message(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The id a document carries: its `"id"` field, else its `"@id"` field (a
/// string, or a number in canonical form), else one derived from its content
/// (`blake3(canonical JSON)`, first 16 bytes in hex), so the same document
/// always gets the same id.
pub fn document_id(doc: &Value) -> Result<String> {
    if let Value::Object(map) = doc {
        for key in ["id", "@id"] {
            match map.get(key) {
                Some(Value::String(s)) => {
                    validate_id("document", s)?;
                    return Ok(s.clone());
                }
                Some(n @ Value::Number(_)) => {
                    return String::from_utf8(crate::canonical::to_vec(n)?).map_err(|_| Error::invalid("number id"));
                }
                Some(Value::Null) | None => {}
                Some(other) => {
                    return Err(Error::invalid(format!("document {key:?} must be a string or a number, not {other}")));
                }
            }
        }
    }
    Ok(content_id(&crate::canonical::to_vec(doc)?))
}

/// The id derived from a document's canonical bytes.
pub fn content_id(canonical: &[u8]) -> String {
    hex::encode(&blake3::hash(canonical).as_bytes()[..16])
}

impl Commit {
    /// Checks ids and the names the changes refer to.
    pub fn validate(&self) -> Result<()> {
        validate_id("commit", &self.id)?;
        for parent in &self.parents {
            validate_id("parent commit", parent)?;
        }
        for change in &self.changes {
            match change {
                Change::Put { collection, id, .. } | Change::PutSnapshot { collection, id } | Change::Delete { collection, id } => {
                    validate_collection_name(collection)?;
                    validate_id("document", id)?;
                }
                Change::Configure { collection, .. } | Change::Drop { collection } => validate_collection_name(collection)?,
                Change::Schema { .. } => {}
            }
        }
        Ok(())
    }
}

impl History {
    /// The commits in canonical order: by generation (1 + the largest
    /// generation of the parents; roots are 0), then by id. Parents always come
    /// before children. Fails on duplicate ids, unknown parents, cycles, and
    /// branches whose head is not a commit.
    pub fn canonical_order(&self) -> Result<Vec<&Commit>> {
        let mut by_id: HashMap<&str, &Commit> = HashMap::with_capacity(self.commits.len());
        for commit in &self.commits {
            commit.validate()?;
            if by_id.insert(commit.id.as_str(), commit).is_some() {
                return Err(Error::invalid(format!("duplicate commit id {:?}", commit.id)));
            }
        }
        let mut generation: HashMap<&str, u64> = HashMap::with_capacity(self.commits.len());
        for commit in &self.commits {
            compute_generation(commit, &by_id, &mut generation)?;
        }
        let mut order: Vec<&Commit> = self.commits.iter().collect();
        order.sort_by(|a, b| (generation[a.id.as_str()], a.id.as_bytes()).cmp(&(generation[b.id.as_str()], b.id.as_bytes())));
        for (branch, head) in &self.branches {
            validate_id("branch", branch)?;
            if !by_id.contains_key(head.as_str()) {
                return Err(Error::invalid(format!("branch {branch:?} points to unknown commit {head:?}")));
            }
        }
        Ok(order)
    }
}

/// Iterative depth-first generation numbering (no recursion: histories can be
/// millions of commits deep).
fn compute_generation<'a>(start: &'a Commit, by_id: &HashMap<&str, &'a Commit>, generation: &mut HashMap<&'a str, u64>) -> Result<()> {
    if generation.contains_key(start.id.as_str()) {
        return Ok(());
    }
    let mut on_stack: std::collections::HashSet<&str> = Default::default();
    let mut stack: Vec<&Commit> = vec![start];
    on_stack.insert(&start.id);
    while let Some(&commit) = stack.last() {
        let mut pending = None;
        let mut max_parent: Option<u64> = None;
        for parent in &commit.parents {
            match generation.get(parent.as_str()) {
                Some(&g) => max_parent = Some(max_parent.map_or(g, |m| m.max(g))),
                None => {
                    let Some(&p) = by_id.get(parent.as_str()) else {
                        return Err(Error::invalid(format!("commit {:?} has unknown parent {parent:?}", commit.id)));
                    };
                    if on_stack.contains(parent.as_str()) {
                        return Err(Error::invalid(format!("commit history has a cycle through {parent:?}")));
                    }
                    pending = Some(p);
                    break;
                }
            }
        }
        match pending {
            Some(p) => {
                on_stack.insert(&p.id);
                stack.push(p);
            }
            None => {
                generation.insert(&commit.id, max_parent.map_or(0, |m| m + 1));
                on_stack.remove(commit.id.as_str());
                stack.pop();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn commit(id: &str, parents: &[&str]) -> Commit {
        Commit {
            id: id.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            author: "a".into(),
            message: String::new(),
            timestamp: 0,
            changes: vec![],
        }
    }

    #[test]
    fn a_put_without_document_is_a_put_of_the_snapshots_document() {
        let by_ref: Change = serde_json::from_str(r#"{"op":"put","collection":"c","id":"x"}"#).unwrap();
        assert_eq!(by_ref, Change::PutSnapshot { collection: "c".into(), id: "x".into() });
        let null: Change = serde_json::from_str(r#"{"op":"put","collection":"c","id":"x","document":null}"#).unwrap();
        assert_eq!(null, Change::Put { collection: "c".into(), id: "x".into(), document: Value::Null });
        for change in [by_ref, null, Change::Drop { collection: "c".into() }, Change::Schema { schema: serde_json::json!({"v": 1}) }] {
            let text = serde_json::to_string(&change).unwrap();
            assert_eq!(serde_json::from_str::<Change>(&text).unwrap(), change, "{text}");
        }
        assert_eq!(
            serde_json::to_string(&Change::PutSnapshot { collection: "c".into(), id: "x".into() }).unwrap(),
            r#"{"op":"put","collection":"c","id":"x"}"#
        );
        for bad in [r#"{"op":"put","collection":"c","id":"x","doc":1}"#, r#"{"op":"put","collection":"c"}"#, r#"{"op":"move","collection":"c"}"#] {
            assert!(serde_json::from_str::<Change>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_come_from_fields_or_content() {
        assert_eq!(document_id(&json!({"id": "x", "@id": "y"})).unwrap(), "x");
        assert_eq!(document_id(&json!({"@id": "y"})).unwrap(), "y");
        assert_eq!(document_id(&json!({"id": 7})).unwrap(), "7");
        let a = document_id(&json!({"b": 1, "a": 2})).unwrap();
        assert_eq!(a, document_id(&json!({"a": 2, "b": 1.0})).unwrap());
        assert_eq!(a.len(), 32);
        assert_eq!(document_id(&json!({"id": [1]})).unwrap_err().code(), "INVALID_INPUT");
        assert_eq!(document_id(&json!({"id": ""})).unwrap_err().code(), "INVALID_INPUT");
    }

    #[test]
    fn names_are_safe_file_names() {
        validate_collection_name("docs_v2.1-x").unwrap();
        for bad in ["", "a.config", "../x", "a/b", ".hidden", "schema", "history", "é", &"x".repeat(129)] {
            assert_eq!(validate_collection_name(bad).unwrap_err().code(), "INVALID_INPUT", "{bad}");
        }
    }

    #[test]
    fn canonical_order_is_parents_first_then_id() {
        let history = History {
            commits: vec![commit("d", &["b", "c"]), commit("c", &["a"]), commit("b", &["a"]), commit("a", &[]), commit("e", &[])],
            branches: [("main".to_string(), "d".to_string())].into(),
        };
        let order: Vec<&str> = history.canonical_order().unwrap().iter().map(|c| c.id.as_str()).collect();
        assert_eq!(order, ["a", "e", "b", "c", "d"]);
    }

    #[test]
    fn bad_histories_are_refused() {
        let cycle = History { commits: vec![commit("a", &["b"]), commit("b", &["a"])], branches: Default::default() };
        assert_eq!(cycle.canonical_order().unwrap_err().code(), "INVALID_INPUT");
        let orphan = History { commits: vec![commit("a", &["zz"])], branches: Default::default() };
        assert_eq!(orphan.canonical_order().unwrap_err().code(), "INVALID_INPUT");
        let dup = History { commits: vec![commit("a", &[]), commit("a", &[])], branches: Default::default() };
        assert_eq!(dup.canonical_order().unwrap_err().code(), "INVALID_INPUT");
        let dangling = History { commits: vec![commit("a", &[])], branches: [("main".to_string(), "q".to_string())].into() };
        assert_eq!(dangling.canonical_order().unwrap_err().code(), "INVALID_INPUT");
    }

    #[test]
    fn deep_linear_history_does_not_overflow_the_stack() {
        let mut commits = vec![commit("0", &[])];
        for i in 1..200_000 {
            commits.push(commit(&i.to_string(), &[&(i - 1).to_string()]));
        }
        commits.reverse();
        let history = History { commits, branches: Default::default() };
        let order = history.canonical_order().unwrap();
        assert_eq!(order.last().unwrap().id, "199999");
    }
}
