//! The floor for `benches/proxy.sh`: a bare hyper reverse proxy with no authentication, no
//! header rules and no observation, so that a Portcullis row reads as "Portcullis minus floor"
//! (our own work) and "floor minus nginx" (the shape of the server).
//!
//! ```sh
//! bench_floor LISTEN UPSTREAM [affine|pooled]
//! ```
//!
//! `affine` (the default): one current-thread runtime; every client connection owns one
//! HTTP/1.1 connection to the upstream, used for its requests in turn. `pooled`: the same
//! runtime with `hyper_util`'s pooled client, which hands each request to the connection's
//! task through a channel.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::Uri;
use http::uri::{Authority, Scheme};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};

type Body = BoxBody<Bytes, hyper::Error>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench_floor LISTEN UPSTREAM [affine|pooled]";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let upstream: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let pooled = match args.next().as_deref() {
        None | Some("affine") => false,
        Some("pooled") => true,
        Some(_) => return Err(usage.into()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve(listen, upstream, pooled))
}

async fn serve(
    listen: SocketAddr,
    upstream: SocketAddr,
    pooled: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(listen).await?;
    let authority: Authority = upstream.to_string().parse()?;
    let pool: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let authority = authority.clone();
        let pool = pool.clone();
        let link: Arc<Mutex<Option<SendRequest<Incoming>>>> = Arc::new(Mutex::new(None));
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                let uri = Uri::builder()
                    .scheme(Scheme::HTTP)
                    .authority(authority.clone())
                    .path_and_query(
                        request
                            .uri()
                            .path_and_query()
                            .cloned()
                            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
                    )
                    .build();
                let link = Arc::clone(&link);
                let pool = pool.clone();
                async move {
                    let Ok(uri) = uri else { return Ok::<_, Infallible>(error()) };
                    *request.uri_mut() = uri;
                    let response = if pooled {
                        pool.request(request).await.map(|r| r.map(|b| b.boxed())).ok()
                    } else {
                        affine(&link, upstream, request).await
                    };
                    Ok(response.unwrap_or_else(error))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Sends `request` on the client connection's own upstream connection, opening it first if
/// there is none (or it closed).
async fn affine(
    link: &Mutex<Option<SendRequest<Incoming>>>,
    upstream: SocketAddr,
    request: Request<Incoming>,
) -> Option<Response<Body>> {
    let held = link.lock().take();
    let mut sender = match held {
        Some(sender) if !sender.is_closed() => sender,
        _ => {
            let stream = TcpStream::connect(upstream).await.ok()?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
            tokio::spawn(connection);
            sender
        }
    };
    sender.ready().await.ok()?;
    let response = sender.send_request(request).await.ok()?;
    *link.lock() = Some(sender);
    Some(response.map(BodyExt::boxed))
}

fn error() -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(b"bad gateway")).map_err(|never| match never {}).boxed(),
    );
    *response.status_mut() = http::StatusCode::BAD_GATEWAY;
    response
}
