//! A keep-alive HTTP/1.1 connection, one request at a time.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;

pub struct Conn {
    addr: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Conn {
    pub fn new(addr: &str) -> Conn {
        Conn { addr: addr.to_owned(), sender: None }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        let stale = match &self.sender {
            Some(s) => s.is_closed(),
            None => true,
        };
        if stale {
            let stream = tokio::net::TcpStream::connect(&self.addr).await.map_err(|e| format!("connect {}: {e}", self.addr))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
            tokio::task::spawn_local(conn);
            self.sender = Some(sender);
        }
        self.sender.as_mut().ok_or_else(|| "no connection".to_owned())
    }

    /// Sends one request; `headers` are added to `host`.
    pub async fn call(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<String>) -> Result<Answer, String> {
        let mut b = Request::builder().method(method).uri(path).header("host", "bench");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        let req = b.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|e| e.to_string())?;
        let sender = self.sender().await?;
        sender.ready().await.map_err(|e| e.to_string())?;
        let result = sender.send_request(req).await;
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(e.to_string());
            }
        };
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Answer { status, body })
    }
}
