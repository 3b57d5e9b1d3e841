//! Bearer tokens: the tokens file holds lines `OWNER SHA256(token)` (hex); `#` starts a comment.
//!
//! Only hashes are stored. The file is read again on every authenticated request and parsed again
//! when its content changed (not its modification time, which an edit may keep), so
//! `pika-server token add` and revocations take effect without a restart. A file that does not
//! parse fails closed: every authenticated request is refused (503) until it is fixed.

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

/// Parses a tokens file's text into `hash -> owner`.
pub fn parse_tokens(path: &str, text: &str) -> Result<HashMap<String, String>, TokensError> {
    let mut map = HashMap::new();
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
        let [owner, hash] = fields[..] else {
            return Err(syntax(format!(
                "expected `OWNER SHA256HEX`, found {} fields",
                fields.len()
            )));
        };
        check_owner(owner).map_err(|err| syntax(err.to_string()))?;
        if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(syntax(format!(
                "{hash:?} is not a SHA-256 hex digest (64 hex characters)"
            )));
        }
        map.insert(hash.to_ascii_lowercase(), owner.to_owned());
    }
    Ok(map)
}

/// Creates a random token for `owner`, appends its hash to the file, and returns the token.
pub fn add_token(path: &Path, owner: &str) -> Result<String, TokensError> {
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
    writeln!(file, "{owner} {}", hash_token(&token)).map_err(io)?;
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
    state: Result<HashMap<String, String>, TokensError>,
}

impl Tokens {
    /// Loads the file now; a missing file means no tokens (every request gets 401). A file that
    /// does not parse is an error here (the server does not start).
    pub fn load(path: PathBuf) -> Result<Self, TokensError> {
        let tokens = Tokens {
            path,
            cache: Mutex::new(Cache {
                digest: None,
                state: Ok(HashMap::new()),
            }),
        };
        tokens.current()?;
        Ok(tokens)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The token map of the file as it is now, or why it cannot be used.
    fn current(&self) -> Result<HashMap<String, String>, TokensError> {
        let shown = self.path.display().to_string();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
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
        let map = self.current()?;
        Ok(map.get(&hash_token(token)).cloned())
    }
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
        assert_eq!(tokens.owner_of("anything").unwrap(), None);
        let alice = add_token(&path, "alice").unwrap();
        let bob = add_token(&path, "bob").unwrap();
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
        assert!(add_token(Path::new("/nonexistent/x"), "bad owner").is_err());
    }

    #[test]
    fn a_broken_file_fails_closed_until_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let alice = add_token(&path, "alice").unwrap();
        let tokens = Tokens::load(path.clone()).unwrap();
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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let alice = add_token(&path, "alice").unwrap();
        let tokens = Tokens::load(path.clone()).unwrap();
        assert!(tokens.owner_of(&alice).unwrap().is_some());
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        // Revoke alice by rewriting the line with another hash of the same length.
        let revoked = std::fs::read_to_string(&path)
            .unwrap()
            .replace(&hash_token(&alice), &hash_token("other"));
        std::fs::write(&path, revoked).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        assert_eq!(tokens.owner_of(&alice).unwrap(), None, "revoked");
    }
}
