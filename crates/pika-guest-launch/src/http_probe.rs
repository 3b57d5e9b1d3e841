//! One HTTP readiness probe: `GET PATH` to a host address (an instance's own proxy device),
//! ready on a 2xx status. Plain HTTP/1.1 over a TCP connection; only the status line is read.

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

async fn get_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n");
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
