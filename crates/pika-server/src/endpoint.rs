//! An Incus HTTPS endpoint as the operator and requests name it, normalised so that two spellings
//! of one endpoint compare equal. A value type: it imports nothing of this crate.

use std::fmt;
use std::str::FromStr;

/// The port Incus listens on unless told otherwise.
pub const DEFAULT_INCUS_PORT: u16 = 8443;

/// A normalised Incus HTTPS endpoint: `https://host:port`, host lowercase, port explicit, nothing
/// else (no user, path, query or fragment), so two spellings of one endpoint compare equal.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint(String);

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let url = url::Url::parse(text).map_err(|err| format!("not a URL: {err}"))?;
        if url.scheme() != "https" {
            return Err(
                "expected an https://HOST[:PORT] URL (leave it unset for the local socket)".into(),
            );
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the URL has no host")?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("the URL may not carry a user or password".into());
        }
        if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
            return Err(
                "expected only https://HOST[:PORT], without path, query or fragment".into(),
            );
        }
        if host.contains('*') {
            return Err("wildcards are not supported: list each endpoint".into());
        }
        let port = url.port().unwrap_or(DEFAULT_INCUS_PORT);
        Ok(Endpoint(format!(
            "https://{}:{port}",
            host.to_ascii_lowercase()
        )))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Endpoint {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised() {
        let e: Endpoint = " HTTPS://Incus.Example ".parse().unwrap();
        assert_eq!(e.to_string(), "https://incus.example:8443");
        let e: Endpoint = "https://[::1]:9000/".parse().unwrap();
        assert_eq!(e.to_string(), "https://[::1]:9000");
        for bad in [
            "http://x",
            "https://u:p@x",
            "https://x/path",
            "https://x?q",
            "x",
            "https://*.x",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }
}
