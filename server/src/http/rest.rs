//! The REST glue: authenticate the `Authorization` header with the chat `Authenticator`, then
//! hand the request to the hyper-free `crate::rest` handler.

use std::rc::Rc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::response::json;
use crate::shard::Shard;

/// Serves `/api/chat/...`.
pub async fn handle(shard: Rc<Shard>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let _ = (&shard, &req);
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"error":{"code":"unavailable","message":"REST API not wired yet"}}"#,
    )
}
