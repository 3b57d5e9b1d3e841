//! One HTTP readiness probe: `GET PATH` to a host address (an instance's own proxy device),
//! ready on a 2xx status; and the status of an authenticated `POST PATH` (whether a gateway takes
//! a token). Plain HTTP/1.1 over a TCP connection; only the status line is read.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Longest status line read (a 2xx line is a few dozen bytes).
const STATUS_LINE_LIMIT: u64 = 1024;

/// `GET path` at `addr` answers 2xx within `timeout`; otherwise says what it saw (never the body).
pub async fn get_ok(addr: SocketAddr, path: &str, timeout: Duration) -> Result<u16, String> {
    match tokio::time::timeout(timeout, get_status(addr, path)).await {
        Ok(Ok(status)) if (200..300).contains(&status) => Ok(status),
        Ok(Ok(status)) => Err(format!("GET http://{addr}{path} answered {status}")),
        Ok(Err(err)) => Err(format!("GET http://{addr}{path}: {err}")),
        Err(_) => Err(format!(
            "GET http://{addr}{path}: no answer within {}s",
            timeout.as_secs()
        )),
    }
}

/// The status of `POST path` with `{}` and the bearer `token` at `addr`, within `timeout`. Errors
/// name the address and path, never the token.
pub async fn post_status(
    addr: SocketAddr,
    path: &str,
    token: &str,
    timeout: Duration,
) -> Result<u16, String> {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    match tokio::time::timeout(timeout, status(addr, &request)).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(err)) => Err(format!("POST http://{addr}{path}: {err}")),
        Err(_) => Err(format!(
            "POST http://{addr}{path}: no answer within {}s",
            timeout.as_secs()
        )),
    }
}

async fn get_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n");
    status(addr, &request).await
}

/// Sends `request` (a whole HTTP/1.1 request) and reads the answer's status code.
async fn status(addr: SocketAddr, request: &str) -> std::io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut line = String::new();
    let mut reader = BufReader::new(stream).take(STATUS_LINE_LIMIT);
    reader.read_line(&mut line).await?;
    let invalid = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no HTTP status line in the answer",
        )
    };
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => {
            code.parse().map_err(|_| invalid())
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve_once(answer: &'static str) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = [0u8; 1024];
            let _ = socket.read(&mut buffer).await;
            let _ = socket.write_all(answer.as_bytes()).await;
        });
        addr
    }

    #[tokio::test]
    async fn a_post_reports_any_status_and_never_names_the_token() {
        let second = Duration::from_secs(1);
        let refused = serve_once("HTTP/1.1 401 Unauthorized\r\n\r\n").await;
        assert_eq!(
            post_status(refused, "/tools/invoke", "s3cret", second).await,
            Ok(401)
        );
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let err = post_status(closed, "/tools/invoke", "s3cret", second)
            .await
            .unwrap_err();
        assert!(
            err.contains("/tools/invoke") && !err.contains("s3cret"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn only_a_2xx_status_is_ready() {
        let second = Duration::from_secs(1);
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
        assert_eq!(get_ok(ok, "/health", second).await, Ok(200));
        let down = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let err = get_ok(down, "/health", second).await.unwrap_err();
        assert!(err.contains("answered 503"), "{err}");
        let garbage = serve_once("SSH-2.0-OpenSSH\r\n").await;
        let err = get_ok(garbage, "/health", second).await.unwrap_err();
        assert!(err.contains("no HTTP status line"), "{err}");
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        assert!(get_ok(closed, "/health", second).await.is_err());
    }
}
