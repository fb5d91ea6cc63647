//! The dashboard page (SPEC.md section 11): one HTML page, its script and
//! its style sheet, compiled into the binary and served at `/` on the
//! admin listener, with no request to any other host.
//!
//! The files are public: they hold no state and no secret. The page asks
//! for the admin token, keeps it in `sessionStorage` (this tab only) and
//! sends it as a bearer header on every API call, never as a cookie, so no
//! other site can make the browser act. The Content-Security-Policy allows
//! the page's own script, style and API calls, nothing inline, nothing from
//! elsewhere, and no framing.

use crate::admin::routes::AdminState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");

/// Sent with every file of the page.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// In the page, replaced by whether the API wants a token.
const TOKEN_MARK: &str = r#"data-token="unknown""#;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/", get(index))
        .route(
            "/dashboard.js",
            get(|| async { file("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/dashboard.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        )
}

/// The page, saying whether the API wants a token: then it asks for one
/// before its first call instead of learning it from a 401.
async fn index(State(st): State<AdminState>) -> Response {
    let token = match st.token.load().is_some() {
        true => r#"data-token="required""#,
        false => r#"data-token="none""#,
    };
    file("text/html; charset=utf-8", INDEX.replace(TOKEN_MARK, token))
}

fn file(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            // A new binary may bring a new page: always revalidate.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body.into(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_small_and_loads_nothing_from_elsewhere() {
        let total = INDEX.len() + SCRIPT.len() + STYLE.len();
        assert!(total < 200 * 1024, "{total} bytes");
        for (name, text) in [
            ("index.html", INDEX),
            ("dashboard.js", SCRIPT),
            ("dashboard.css", STYLE),
        ] {
            // The SVG namespace is a name, not an address anything loads.
            let text = text.replace("'http://www.w3.org/2000/svg'", "");
            for pattern in ["://", "//cdn", "@import", "url(", "@font-face"] {
                assert!(!text.contains(pattern), "{name} contains {pattern}");
            }
        }
        // Nothing inline: the policy would refuse it.
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
        assert!(INDEX.contains(r#"<script src="/dashboard.js" defer></script>"#));
        assert_eq!(INDEX.matches(TOKEN_MARK).count(), 1);
    }
}
