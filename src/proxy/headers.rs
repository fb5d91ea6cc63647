//! Header rewriting between client and upstream (RFC 9110 section 7.6).
//!
//! Hop-by-hop headers, and every header named in `Connection`, never cross
//! the proxy. Requests gain `X-Forwarded-For` (appended), `-Proto` and
//! `-Host`; `Host` is kept. An upgrade (WebSocket) keeps `Connection:
//! upgrade` and its `Upgrade` header so the upstream can accept it. For an
//! HTTP/2 upstream the request then carries `:scheme` and `:authority`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, Scheme};
use http::{Uri, Version};
use std::net::IpAddr;

/// Hop-by-hop headers of RFC 9110 section 7.6.1 and common non-standard ones.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Names in `Connection` kept on the stack; more (unusual) spill to the heap.
const MAX_CONNECTION_TOKENS: usize = 8;

/// Strip hop-by-hop headers from `headers`. Returns whether `Connection`
/// asked for an upgrade.
fn strip_hop_by_hop(headers: &mut HeaderMap) -> bool {
    let mut upgrade = false;
    if headers.contains_key(header::CONNECTION) {
        let mut named: [Option<HeaderName>; MAX_CONNECTION_TOKENS] = Default::default();
        let mut n = 0;
        let mut spill: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(header::CONNECTION) {
            let Ok(s) = value.to_str() else { continue };
            for token in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if token.eq_ignore_ascii_case("upgrade") {
                    upgrade = true;
                } else if token.eq_ignore_ascii_case("close")
                    || token.eq_ignore_ascii_case("keep-alive")
                {
                    // Connection options, not header names (keep-alive is stripped below).
                } else if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    if n < MAX_CONNECTION_TOKENS {
                        named[n] = Some(name);
                        n += 1;
                    } else {
                        spill.push(name);
                    }
                }
            }
        }
        for name in named.into_iter().flatten().chain(spill) {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        if name == header::TE {
            continue;
        }
        headers.remove(name);
    }
    upgrade
}

/// Does the head carry any header a proxy must look at or strip? One pass
/// of cheap comparisons, so the common request skips a dozen hash lookups.
fn has_hop_headers(h: &HeaderMap) -> bool {
    h.keys()
        .any(|k| k == header::UPGRADE || HOP_BY_HOP.iter().any(|hop| hop == k))
}

/// Rewrite a client request's head for an HTTP/1.1 upstream.
pub fn prepare_request(parts: &mut Parts, client: &ClientAddr, tls: bool) -> bool {
    let h = &mut parts.headers;
    let is_upgrade = has_hop_headers(h) && strip_request_hops(h, parts.version);
    forwarded_headers(parts, client, tls);
    is_upgrade
}

/// Strip hop-by-hop headers, keeping `TE: trailers` and an HTTP/1.1 upgrade.
fn strip_request_hops(h: &mut HeaderMap, version: Version) -> bool {
    let upgrade_value = h.get(header::UPGRADE).cloned();
    let wants_upgrade = strip_hop_by_hop(h);
    // `TE: trailers` is the one TE value an intermediary may forward (gRPC needs it).
    let te_trailers = h
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    h.remove(header::TE);
    if te_trailers {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    h.remove(header::UPGRADE);
    let is_upgrade = wants_upgrade && upgrade_value.is_some() && version == Version::HTTP_11;
    if let (true, Some(v)) = (is_upgrade, upgrade_value) {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, v);
    }
    is_upgrade
}

/// `Host` (kept, or made from `:authority`), `X-Forwarded-*`, origin form.
fn forwarded_headers(parts: &mut Parts, client: &ClientAddr, tls: bool) {
    let h = &mut parts.headers;

    // One pass of name comparisons instead of a hash lookup per question.
    let mut host = None;
    let mut has_forwarded_for = false;
    for (name, value) in h.iter() {
        if name == header::HOST {
            host.get_or_insert_with(|| value.clone());
        } else if name == X_FORWARDED_FOR {
            has_forwarded_for = true;
        }
    }
    // Host: kept, unless the target names the authority (absolute form, or
    // HTTP/2's :authority), which then wins (RFC 9112 section 3.2.2).
    if let Some(auth) = parts.uri.authority() {
        if let Ok(v) = HeaderValue::from_str(auth.as_str()) {
            h.insert(header::HOST, v.clone());
            host = Some(v);
        }
    }
    if let Some(host) = host {
        h.insert(X_FORWARDED_HOST, host);
    }
    h.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    append_forwarded_for(h, client, has_forwarded_for);
    append_via(h, parts.version);

    // Origin form for the upstream; HTTP/2 and absolute-form requests carry more.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.uri = Uri::from(pq);
    }
    parts.version = Version::HTTP_11;
}

/// Turn a request rewritten by [`prepare_request`] into one for an HTTP/2
/// upstream: `:scheme` is the upstream's, `:authority` the client's `Host`
/// (else `fallback`, the endpoint), and no connection-specific header
/// remains (RFC 9113 section 8.2.2). `TE: trailers` stays: gRPC needs it.
pub fn to_http2(parts: &mut Parts, scheme: Scheme, fallback: &Authority) {
    let h = &mut parts.headers;
    h.remove(header::CONNECTION);
    h.remove(header::UPGRADE);
    let authority = h
        .remove(header::HOST)
        .and_then(|v| Authority::try_from(v.as_bytes()).ok())
        .unwrap_or_else(|| fallback.clone());
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(scheme);
    uri.authority = Some(authority);
    uri.path_and_query = Some(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    if let Ok(u) = Uri::from_parts(uri) {
        parts.uri = u;
    }
    parts.version = Version::HTTP_2;
}

/// A client's address and its `X-Forwarded-For` value, made once per
/// connection so a request without a forwarded chain costs no formatting.
#[derive(Debug, Clone)]
pub struct ClientAddr {
    pub ip: IpAddr,
    header: HeaderValue,
}

impl ClientAddr {
    pub fn new(ip: IpAddr) -> Self {
        let header = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        ClientAddr { ip, header }
    }
}

fn append_forwarded_for(h: &mut HeaderMap, client: &ClientAddr, present: bool) {
    use std::fmt::Write;
    if !present {
        h.insert(X_FORWARDED_FOR, client.header.clone());
        return;
    }
    let client_ip = client.ip;
    let mut s = String::with_capacity(48);
    let mut first = true;
    for v in h.get_all(&X_FORWARDED_FOR) {
        if let Ok(v) = v.to_str() {
            if !first {
                s.push_str(", ");
            }
            s.push_str(v);
            first = false;
        }
    }
    if !first {
        s.push_str(", ");
    }
    let _ = write!(s, "{client_ip}");
    if let Ok(v) = HeaderValue::from_str(&s) {
        h.insert(X_FORWARDED_FOR, v);
    }
}

/// `Via` (RFC 9110 section 7.6.3), which a gateway must add to every request
/// it forwards: the protocol it received, and its name.
fn append_via(h: &mut HeaderMap, received: Version) {
    let ours = match received {
        Version::HTTP_2 => "2 switchyard",
        Version::HTTP_10 => "1.0 switchyard",
        _ => "1.1 switchyard",
    };
    // A list field: one more line is the same as one more element.
    h.append(header::VIA, HeaderValue::from_static(ours));
}

/// Rewrite an upstream response's headers for the client.
pub fn prepare_response(headers: &mut HeaderMap, switching_protocols: bool) {
    // The common response has nothing to strip: one pass of comparisons
    // instead of a dozen hash lookups.
    if !switching_protocols && !has_hop_headers(headers) {
        return;
    }
    // A response framed by Transfer-Encoding was read as such; its
    // Content-Length, if any, is wrong and must not reach the client
    // (RFC 9112 section 6.3). The proxy frames the body itself.
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    let upgrade_value = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(headers);
    headers.remove(header::TE);
    headers.remove(header::UPGRADE);
    if switching_protocols {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(v) = upgrade_value {
            headers.insert(header::UPGRADE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(req: Request<()>) -> Parts {
        req.into_parts().0
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut p = parts(
            Request::get("/a?b=1")
                .header("host", "app.example")
                .header("connection", "keep-alive, x-secret, X-Other")
                .header("keep-alive", "timeout=5")
                .header("x-secret", "1")
                .header("x-other", "2")
                .header("proxy-authorization", "Basic x")
                .header("transfer-encoding", "chunked")
                .header("te", "gzip")
                .header("trailer", "x-t")
                .header("upgrade", "h2c")
                .header("x-kept", "yes")
                .body(())
                .unwrap(),
        );
        let upgrade = prepare_request(
            &mut p,
            &ClientAddr::new("127.0.0.9".parse().unwrap()),
            false,
        );
        assert!(!upgrade);
        for gone in [
            "connection",
            "keep-alive",
            "x-secret",
            "x-other",
            "proxy-authorization",
            "transfer-encoding",
            "te",
            "trailer",
            "upgrade",
        ] {
            assert!(!p.headers.contains_key(gone), "{gone} crossed the proxy");
        }
        assert_eq!(p.headers["x-kept"], "yes");
        assert_eq!(p.headers["host"], "app.example");
        assert_eq!(p.headers["x-forwarded-host"], "app.example");
        assert_eq!(p.headers["x-forwarded-proto"], "http");
        assert_eq!(p.headers["x-forwarded-for"], "127.0.0.9");
        assert_eq!(p.uri, "/a?b=1");
    }

    #[test]
    fn forwarded_for_is_appended_and_te_trailers_kept() {
        let mut p = parts(
            Request::post("http://app.example:8080/x")
                .header("x-forwarded-for", "127.0.0.1")
                .header("x-forwarded-for", "127.0.0.2")
                .header("te", "trailers")
                .body(())
                .unwrap(),
        );
        prepare_request(&mut p, &ClientAddr::new("127.0.0.3".parse().unwrap()), true);
        assert_eq!(
            p.headers["x-forwarded-for"],
            "127.0.0.1, 127.0.0.2, 127.0.0.3"
        );
        assert_eq!(p.headers["x-forwarded-proto"], "https");
        assert_eq!(p.headers["host"], "app.example:8080");
        assert_eq!(p.headers["te"], "trailers");
        assert_eq!(p.uri, "/x");
    }

    #[test]
    fn via_is_added_and_an_absolute_target_names_the_host() {
        let mut p = parts(
            Request::get("http://app.example:8080/x?y")
                .header("host", "other.example")
                .header("via", "1.1 edge")
                .body(())
                .unwrap(),
        );
        prepare_request(
            &mut p,
            &ClientAddr::new("127.0.0.1".parse().unwrap()),
            false,
        );
        assert_eq!(p.headers["host"], "app.example:8080");
        let via: Vec<_> = p.headers.get_all("via").iter().collect();
        assert_eq!(via, ["1.1 edge", "1.1 switchyard"]);
        assert_eq!(p.uri, "/x?y");
    }

    #[test]
    fn a_chunked_response_loses_its_content_length() {
        let mut h = HeaderMap::new();
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("content-length", HeaderValue::from_static("3"));
        prepare_response(&mut h, false);
        assert!(!h.contains_key("content-length"));
        assert!(!h.contains_key("transfer-encoding"));
    }

    #[test]
    fn websocket_upgrade_survives() {
        let mut p = parts(
            Request::get("/ws")
                .header("connection", "Upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-key", "k")
                .body(())
                .unwrap(),
        );
        assert!(prepare_request(
            &mut p,
            &ClientAddr::new("127.0.0.1".parse().unwrap()),
            false
        ));
        assert_eq!(p.headers["connection"], "upgrade");
        assert_eq!(p.headers["upgrade"], "websocket");
        assert_eq!(p.headers["sec-websocket-key"], "k");
    }

    #[test]
    fn http2_upstream_gets_scheme_authority_and_te_trailers() {
        let mut p = parts(
            Request::post("/pkg.Svc/Call?x=1")
                .header("host", "app.example:8443")
                .header("te", "trailers")
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(())
                .unwrap(),
        );
        prepare_request(&mut p, &ClientAddr::new("127.0.0.1".parse().unwrap()), true);
        let fallback: Authority = "127.0.0.1:9000".parse().unwrap();
        to_http2(&mut p, Scheme::HTTPS, &fallback);
        assert_eq!(p.version, Version::HTTP_2);
        assert_eq!(p.uri, "https://app.example:8443/pkg.Svc/Call?x=1");
        assert_eq!(p.headers["te"], "trailers");
        for gone in ["host", "connection", "upgrade"] {
            assert!(!p.headers.contains_key(gone), "{gone} sent over HTTP/2");
        }
        // No Host (an HTTP/1.0 client): the endpoint's authority.
        let mut p = parts(Request::get("/").body(()).unwrap());
        prepare_request(
            &mut p,
            &ClientAddr::new("127.0.0.1".parse().unwrap()),
            false,
        );
        to_http2(&mut p, Scheme::HTTP, &fallback);
        assert_eq!(p.uri, "http://127.0.0.1:9000/");
    }

    #[test]
    fn response_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-internal"));
        h.insert("x-internal", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        prepare_response(&mut h, false);
        assert!(!h.contains_key("connection"));
        assert!(!h.contains_key("x-internal"));
        assert!(!h.contains_key("keep-alive"));
        assert_eq!(h["content-type"], "text/plain");
    }
}
