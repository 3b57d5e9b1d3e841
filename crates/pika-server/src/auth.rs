//! Bearer tokens: the tokens file holds lines `OWNER SHA256(token)` (hex), optionally followed by
//! `admin` (the token may read the health details); `#` starts a comment. A hash may appear once:
//! a second line with it would silently give the token another owner.
//!
//! Only hashes are stored. The file is read again on every authenticated request and parsed again
//! when its content changed (not its modification time, which an edit may keep), so
//! `pika-server token add` and revocations take effect without a restart. A file that does not
//! parse, or is missing, fails closed: every authenticated request is refused (503) until it is
//! fixed. A file that the group or others may read is used, with an error in the log at every
//! load (it holds only hashes of 256-bit random tokens, which cannot be reversed, but the owner
//! list is the operator's business; secret managers often hand out group-readable files, so
//! refusing would break working deployments).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::RngCore;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, thiserror::Error)]
pub enum TokensError {
    #[error("tokens file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    #[error("tokens file {path}:{line}: {message}")]
    Syntax {
        path: String,
        line: usize,
        message: String,
    },
    #[error("tokens file {path} does not exist (create it with `pika-server token add OWNER`)")]
    Missing { path: String },
    #[error(
        "owner {0:?} is invalid: use 1-64 characters of A-Z a-z 0-9 . _ - (it is stored in Incus config)"
    )]
    BadOwner(String),
}

/// SHA-256 of a token, lowercase hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn check_owner(owner: &str) -> Result<(), TokensError> {
    let ok = !owner.is_empty()
        && owner.len() <= 64
        && owner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(TokensError::BadOwner(owner.to_owned()))
    }
}

/// Who a token is: its owner, and whether the operator marked it `admin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub owner: String,
    pub admin: bool,
}

/// The third field of a tokens line that marks an admin token.
pub const ADMIN_MARK: &str = "admin";

/// Parses a tokens file's text into `hash -> principal`.
pub fn parse_tokens(path: &str, text: &str) -> Result<HashMap<String, Principal>, TokensError> {
    let mut map = HashMap::new();
    let mut lines: HashMap<String, usize> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let syntax = |message: String| TokensError::Syntax {
            path: path.to_owned(),
            line: line_no,
            message,
        };
        let fields: Vec<&str> = content.split_whitespace().collect();
        let (owner, hash, admin) = match fields[..] {
            [owner, hash] => (owner, hash, false),
            [owner, hash, ADMIN_MARK] => (owner, hash, true),
            [_, _, other] => {
                return Err(syntax(format!(
                    "the third field may only be `{ADMIN_MARK}`, found {other:?}"
                )));
            }
            _ => {
                return Err(syntax(format!(
                    "expected `OWNER SHA256HEX [{ADMIN_MARK}]`, found {} fields",
                    fields.len()
                )));
            }
        };
        check_owner(owner).map_err(|err| syntax(err.to_string()))?;
        if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(syntax(format!(
                "{hash:?} is not a SHA-256 hex digest (64 hex characters)"
            )));
        }
        let hash = hash.to_ascii_lowercase();
        if let Some(first) = lines.insert(hash.clone(), line_no) {
            return Err(syntax(format!(
                "the same token hash as line {first}: a token has one owner (remove one of lines {first} and {line_no})"
            )));
        }
        map.insert(
            hash,
            Principal {
                owner: owner.to_owned(),
                admin,
            },
        );
    }
    Ok(map)
}

/// Creates a random token for `owner` (an admin token with `admin`), appends its hash to the
/// file, and returns the token.
pub fn add_token(path: &Path, owner: &str, admin: bool) -> Result<String, TokensError> {
    check_owner(owner)?;
    let io = |source| TokensError::Io {
        path: path.display().to_string(),
        source: std::sync::Arc::new(source),
    };
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("pika_{}", hex::encode(bytes));
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    let mark = if admin {
        format!(" {ADMIN_MARK}")
    } else {
        String::new()
    };
    writeln!(file, "{owner} {}{mark}", hash_token(&token)).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(token)
}

/// The tokens file, reloaded when its content changes.
pub struct Tokens {
    path: PathBuf,
    cache: Mutex<Cache>,
}

struct Cache {
    /// SHA-256 of the content the state was parsed from (`None`: not read yet).
    digest: Option<[u8; 32]>,
    state: Result<HashMap<String, Principal>, TokensError>,
}

impl Tokens {
    /// Loads the file now. A file that does not parse is an error here (the server does not
    /// start); a missing one is logged, and requests get 503 until it exists.
    pub fn load(path: PathBuf) -> Result<Self, TokensError> {
        let tokens = Tokens {
            path,
            cache: Mutex::new(Cache {
                digest: None,
                state: Ok(HashMap::new()),
            }),
        };
        match tokens.current() {
            Ok(_) => {}
            Err(err @ TokensError::Missing { .. }) => {
                tracing::warn!(error = %err, "no tokens file: every authenticated request gets 503 until it exists");
            }
            Err(err) => return Err(err),
        }
        Ok(tokens)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The token map of the file as it is now, or why it cannot be used.
    fn current(&self) -> Result<HashMap<String, Principal>, TokensError> {
        let shown = self.path.display().to_string();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                cache.digest = None;
                return Err(TokensError::Missing { path: shown });
            }
            Err(source) => {
                return Err(TokensError::Io {
                    path: shown,
                    source: std::sync::Arc::new(source),
                });
            }
        };
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.digest != Some(digest) {
            cache.state = parse_tokens(&shown, &text);
            cache.digest = Some(digest);
            if let Some(mode) = loose_mode(&self.path) {
                tracing::error!(file = %shown, mode = %format!("{mode:04o}"), "the tokens file may be read by its group or others: chmod 600 it (it is used anyway)");
            }
            match &cache.state {
                Ok(map) => tracing::info!(tokens = map.len(), file = %shown, "tokens loaded"),
                Err(err) => tracing::error!(
                    error = %err,
                    line = err.line(),
                    "the tokens file does not parse: refusing every token until it is fixed"
                ),
            }
        }
        cache.state.clone()
    }

    /// The owner of a token (`None`: unknown token), or an error when the tokens file cannot be
    /// used: then no token is accepted (fail closed).
    pub fn owner_of(&self, token: &str) -> Result<Option<String>, TokensError> {
        Ok(self.principal_of(token)?.map(|p| p.owner))
    }

    /// The owner of a token with its admin mark (`None`: unknown token).
    pub fn principal_of(&self, token: &str) -> Result<Option<Principal>, TokensError> {
        let map = self.current()?;
        Ok(map.get(&hash_token(token)).cloned())
    }
}

/// The permission bits of `path` when its group or others may read or write it.
fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

impl TokensError {
    /// The line of a syntax error.
    pub fn line(&self) -> Option<usize> {
        match self {
            TokensError::Syntax { line, .. } => Some(*line),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_tokens_authenticate_their_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let tokens = Tokens::load(path.clone()).unwrap();
        let err = tokens.owner_of("anything").unwrap_err();
        assert!(matches!(err, TokensError::Missing { .. }), "{err}");
        let alice = add_token(&path, "alice", false).unwrap();
        let bob = add_token(&path, "bob", false).unwrap();
        assert_ne!(alice, bob);
        assert_eq!(tokens.owner_of(&alice).unwrap().as_deref(), Some("alice"));
        assert_eq!(tokens.owner_of(&bob).unwrap().as_deref(), Some("bob"));
        assert_eq!(tokens.owner_of("pika_wrong").unwrap(), None);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&alice), "the file stores hashes only");
        assert!(text.contains(&hash_token(&alice)));
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let err = parse_tokens("t", "# comment\n\nalice abc\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "tokens file t:3: \"abc\" is not a SHA-256 hex digest (64 hex characters)"
        );
        let err = parse_tokens("t", "alice\n").unwrap_err();
        assert!(err.to_string().starts_with("tokens file t:1:"), "{err}");
        assert!(add_token(Path::new("/nonexistent/x"), "bad owner", false).is_err());
    }

    /// A tokens file in a fresh directory with alice's token: (the directory, the file,
    /// alice's token, the file loaded).
    fn alices_tokens() -> (tempfile::TempDir, PathBuf, String, Tokens) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let alice = add_token(&path, "alice", false).unwrap();
        let tokens = Tokens::load(path.clone()).unwrap();
        (dir, path, alice, tokens)
    }

    #[test]
    fn a_broken_file_fails_closed_until_fixed() {
        let (_dir, path, alice, tokens) = alices_tokens();
        assert_eq!(tokens.owner_of(&alice).unwrap().as_deref(), Some("alice"));
        let good = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{good}bob nothex\n")).unwrap();
        let err = tokens.owner_of(&alice).unwrap_err();
        assert_eq!(err.line(), Some(2), "{err}");
        std::fs::write(&path, &good).unwrap();
        assert_eq!(tokens.owner_of(&alice).unwrap().as_deref(), Some("alice"));
    }

    #[test]
    fn a_change_that_keeps_the_mtime_is_seen() {
        let (_dir, path, alice, tokens) = alices_tokens();
        assert!(tokens.owner_of(&alice).unwrap().is_some());
        // Revoke alice by rewriting the line with another hash of the same length.
        let revoked = std::fs::read_to_string(&path)
            .unwrap()
            .replace(&hash_token(&alice), &hash_token("other"));
        pika_test_support::rewrite_keeping_mtime(&path, &revoked);
        assert_eq!(tokens.owner_of(&alice).unwrap(), None, "revoked");
    }

    #[test]
    fn a_duplicate_hash_names_both_lines() {
        let hash = hash_token("t");
        let text = format!("alice {hash}\n# c\nmallory {}\n", hash.to_uppercase());
        let err = parse_tokens("t", &text).unwrap_err();
        assert_eq!(err.line(), Some(3), "{err}");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn admin_tokens_are_marked_and_other_marks_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let root = add_token(&path, "root", true).unwrap();
        let alice = add_token(&path, "alice", false).unwrap();
        let tokens = Tokens::load(path.clone()).unwrap();
        assert!(tokens.principal_of(&root).unwrap().unwrap().admin);
        assert!(!tokens.principal_of(&alice).unwrap().unwrap().admin);
        let err = parse_tokens("t", &format!("a {} root\n", hash_token("x"))).unwrap_err();
        assert!(err.to_string().contains("third field"), "{err}");
    }
}
