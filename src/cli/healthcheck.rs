//! `tessera healthcheck`: the container's probe, without curl in the image.

use super::CliError;
use crate::config::Settings;

/// A dependency-free HTTP/1.1 probe of `/readyz`.
pub(super) async fn probe(url: Option<String>, settings: &Settings) -> Result<(), CliError> {
    probe_readyz(url, settings).await.map_err(CliError::Usage)
}

async fn probe_readyz(url: Option<String>, settings: &Settings) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let base = url.unwrap_or_else(|| format!("http://{}", settings.http.bind));
    let hostport = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let connect_to = hostport
        .replace("0.0.0.0", "127.0.0.1")
        .replace("[::]", "[::1]");
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(&connect_to)
            .await
            .map_err(|e| e.to_string())?;
        let req = format!("GET /readyz HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 256];
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        if head.starts_with("HTTP/1.1 200") {
            Ok(())
        } else {
            Err(format!("not ready: {}", head.lines().next().unwrap_or("")))
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), probe)
        .await
        .map_err(|_| "timed out".to_string())?
}
