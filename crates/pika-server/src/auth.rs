//! Bearer tokens: the tokens file holds lines `OWNER SHA256(token)` (hex); `#` starts a comment.
//!
//! Only hashes are stored. The file is re-read when its modification time changes, so
//! `pika-server token add` takes effect without a restart.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use rand::RngCore;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("tokens file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
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
        source,
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

/// The tokens file, reloaded when it changes.
pub struct Tokens {
    path: PathBuf,
    cache: Mutex<(Option<SystemTime>, HashMap<String, String>)>,
}

impl Tokens {
    /// Loads the file now; a missing file means no tokens (every request gets 401).
    pub fn load(path: PathBuf) -> Result<Self, TokensError> {
        let tokens = Tokens {
            path,
            cache: Mutex::new((None, HashMap::new())),
        };
        tokens.refresh()?;
        Ok(tokens)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn refresh(&self) -> Result<(), TokensError> {
        let display = self.path.display().to_string();
        let modified = match std::fs::metadata(&self.path) {
            Ok(meta) => meta.modified().ok(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(TokensError::Io {
                    path: display,
                    source,
                });
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if modified.is_some() && cache.0 == modified {
            return Ok(());
        }
        let map = match std::fs::read_to_string(&self.path) {
            Ok(text) => parse_tokens(&display, &text)?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(source) => {
                return Err(TokensError::Io {
                    path: display,
                    source,
                });
            }
        };
        *cache = (modified, map);
        Ok(())
    }

    /// The owner of a token, if the token is known.
    pub fn owner_of(&self, token: &str) -> Option<String> {
        if let Err(err) = self.refresh() {
            // Keep serving with the last good file rather than locking everyone out.
            tracing::error!("{err}; keeping the previously loaded tokens");
        }
        let hash = hash_token(token);
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.1.get(&hash).cloned()
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
        assert_eq!(tokens.owner_of("anything"), None);
        let alice = add_token(&path, "alice").unwrap();
        let bob = add_token(&path, "bob").unwrap();
        assert_ne!(alice, bob);
        assert_eq!(tokens.owner_of(&alice).as_deref(), Some("alice"));
        assert_eq!(tokens.owner_of(&bob).as_deref(), Some("bob"));
        assert_eq!(tokens.owner_of("pika_wrong"), None);
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
}
