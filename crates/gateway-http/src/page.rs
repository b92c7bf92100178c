//! The built-in operator dashboard (SPEC §8): `GET /` and its static assets, and the interactive
//! API page `GET /api/docs` over `/api/openapi.json` (SPEC §4), embedded in the binary (no CDN, no
//! build step), served with a strict same-origin Content-Security-Policy.
//!
//! The page itself is public (it holds no data); everything it shows comes from the API and the
//! `/ws` hub with the operator's token, which the page reads from the URL fragment
//! (`#token=…`, never sent to the server) or asks for once, and keeps in `sessionStorage`.
//!
//! Caching: every response carries a strong `ETag` (a hash of the embedded bytes) and
//! `Cache-Control: no-cache`, so browsers revalidate each load with a cheap 304 and never run a
//! stale script after an upgrade.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use gateway_core::Problem;

use crate::edge::error::ApiError;

/// `Content-Security-Policy` of every dashboard response: same origin only, no inline code.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `Cache-Control` of every dashboard response: always revalidate (with the `ETag`).
pub const CACHE_CONTROL: &str = "no-cache";

/// One embedded file.
struct Asset {
    /// Its name under `/assets/` (empty for the page itself).
    name: &'static str,
    /// `Content-Type`.
    content_type: &'static str,
    /// The bytes.
    body: &'static [u8],
}

const INDEX: Asset =
    Asset { name: "", content_type: "text/html; charset=utf-8", body: include_bytes!("../static/index.html") };

/// `GET /api/docs`: the interactive page over the merged OpenAPI document.
const DOCS: Asset =
    Asset { name: "", content_type: "text/html; charset=utf-8", body: include_bytes!("../static/docs.html") };

const ASSETS: &[Asset] = &[
    Asset {
        name: "dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../static/dashboard.js"),
    },
    Asset {
        name: "dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../static/dashboard.css"),
    },
    Asset { name: "favicon.svg", content_type: "image/svg+xml", body: include_bytes!("../static/favicon.svg") },
    Asset {
        name: "docs.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../static/docs.js"),
    },
    Asset { name: "docs.css", content_type: "text/css; charset=utf-8", body: include_bytes!("../static/docs.css") },
];

/// The `ETag` of the API page.
static DOCS_ETAG: LazyLock<String> = LazyLock::new(|| format!("\"{:016x}\"", fnv1a(DOCS.body)));

/// Strong `ETag`s of the page and of each asset, in `ASSETS` order after the page.
static ETAGS: LazyLock<Vec<String>> =
    LazyLock::new(|| std::iter::once(&INDEX).chain(ASSETS).map(|a| format!("\"{:016x}\"", fnv1a(a.body))).collect());

/// FNV-1a, 64 bit: a stable content hash for the `ETag` (not a security boundary).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

pub(crate) async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, &INDEX, ETAGS.first().map(String::as_str).unwrap_or_default())
}

pub(crate) async fn docs(req: HttpRequest) -> HttpResponse {
    serve(&req, &DOCS, &DOCS_ETAG)
}

pub(crate) async fn asset(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let position = ASSETS.iter().position(|a| a.name == file.as_str()).ok_or(Problem::NotFound)?;
    let etag = ETAGS.get(position + 1).map(String::as_str).unwrap_or_default();
    Ok(serve(&req, &ASSETS[position], etag))
}

/// Whether `If-None-Match` already names this `ETag` (or `*`).
fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

fn serve(req: &HttpRequest, asset: &Asset, etag: &str) -> HttpResponse {
    let mut res = if not_modified(req, etag) {
        HttpResponse::NotModified().finish()
    } else {
        HttpResponse::Ok().insert_header((header::CONTENT_TYPE, asset.content_type)).body(asset.body)
    };
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers
        .insert(header::HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    res
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use actix_web::App;
    use actix_web::http::{Method, StatusCode};
    use actix_web::test as http;
    use gateway_core::Access;

    use super::*;

    fn text(asset: &Asset) -> &'static str {
        std::str::from_utf8(asset.body).unwrap()
    }

    fn asset(name: &str) -> &'static Asset {
        ASSETS.iter().find(|a| a.name == name).unwrap()
    }

    #[actix_web::test]
    async fn page_and_assets_carry_security_and_cache_headers() {
        let app = http::init_service(App::new().configure(crate::routes::configure)).await;
        for (path, content_type) in [
            ("/", "text/html; charset=utf-8"),
            ("/api/docs", "text/html; charset=utf-8"),
            ("/assets/docs.js", "text/javascript; charset=utf-8"),
            ("/assets/dashboard.js", "text/javascript; charset=utf-8"),
            ("/assets/dashboard.css", "text/css; charset=utf-8"),
            ("/assets/favicon.svg", "image/svg+xml"),
        ] {
            let res = http::call_service(&app, http::TestRequest::get().uri(path).to_request()).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            let h = res.headers();
            assert_eq!(h.get(header::CONTENT_TYPE).unwrap(), content_type, "{path}");
            assert_eq!(h.get(header::CONTENT_SECURITY_POLICY).unwrap(), CONTENT_SECURITY_POLICY, "{path}");
            assert_eq!(h.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff", "{path}");
            assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "no-cache", "{path}");
            let etag = h.get(header::ETAG).unwrap().to_str().unwrap().to_owned();
            assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 18, "{etag}");
            let body = http::read_body(res).await;
            assert!(!body.is_empty(), "{path}");

            // Revalidation with the ETag: 304, no body, same headers.
            let again = http::TestRequest::get().uri(path).insert_header((header::IF_NONE_MATCH, etag.clone()));
            let res = http::call_service(&app, again.to_request()).await;
            assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{path}");
            assert_eq!(res.headers().get(header::ETAG).unwrap().to_str().unwrap(), etag);
            assert!(res.headers().contains_key(header::CONTENT_SECURITY_POLICY));
            assert!(http::read_body(res).await.is_empty());

            // A stale ETag gets the full body.
            let stale = http::TestRequest::get().uri(path).insert_header((header::IF_NONE_MATCH, "\"0\""));
            assert_eq!(http::call_service(&app, stale.to_request()).await.status(), StatusCode::OK);
        }
        let head = http::TestRequest::default().method(Method::HEAD).uri("/").to_request();
        assert_eq!(http::call_service(&app, head).await.status(), StatusCode::OK);
    }

    #[actix_web::test]
    async fn unknown_assets_and_other_methods_are_not_served() {
        let app = http::init_service(App::new().configure(crate::routes::configure)).await;
        for path in ["/assets/nope.js", "/assets/..%2Fsrc%2Flib.rs", "/assets/"] {
            let res = http::call_service(&app, http::TestRequest::get().uri(path).to_request()).await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        }
        let post = http::TestRequest::post().uri("/").to_request();
        assert_eq!(http::call_service(&app, post).await.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn etags_differ_per_file_and_follow_the_content() {
        let mut tags: Vec<&String> = ETAGS.iter().collect();
        assert_eq!(tags.len(), ASSETS.len() + 1);
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len() + 1);
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }

    /// The pages only work under the CSP if they reference nothing but their own assets and have
    /// no inline script, inline style or inline event handler.
    #[test]
    fn the_page_obeys_its_own_content_security_policy() {
        let mut referenced = Vec::new();
        for page in [&INDEX, &DOCS] {
            let html = text(page);
            for attr in ["src=\"", "href=\""] {
                for (i, _) in html.match_indices(attr) {
                    let rest = &html[i + attr.len()..];
                    let url = &rest[..rest.find('"').unwrap()];
                    referenced.push(url);
                }
            }
        }
        for url in &referenced {
            // The API page links the document it shows.
            if url.starts_with('#') || *url == "/api/openapi.json" {
                continue;
            }
            let name = url.strip_prefix("/assets/").unwrap_or_else(|| panic!("{url} is not one of our assets"));
            assert!(ASSETS.iter().any(|a| a.name == name), "{url} is referenced but not embedded");
        }
        for asset in ASSETS {
            assert!(referenced.contains(&format!("/assets/{}", asset.name).as_str()), "{} is unused", asset.name);
        }
        for page in [&INDEX, &DOCS] {
            let html = text(page);
            let scripts = html.matches("<script src=\"/assets/").count();
            assert_eq!(html.matches("<script").count(), scripts, "inline script");
            assert!(!html.contains("<style") && !html.contains(" style=\""), "inline style");
            assert!(!html.contains(" onclick=") && !html.contains(" onload=") && !html.contains("javascript:"));
            assert!(html.contains("<html lang=\"hu\">"));
        }
    }

    /// Server data reaches the DOM as text only.
    #[test]
    fn the_script_never_writes_html_or_evaluates_strings() {
        for script in ["dashboard.js", "docs.js"] {
            let js = text(asset(script));
            for banned in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
                assert!(!js.contains(banned), "{script} uses {banned}");
            }
        }
        let css = text(asset("dashboard.css"));
        assert!(!css.contains("@import") && !css.contains("url(http"), "the stylesheet loads nothing");
        // The script hides panels with the `hidden` attribute; author `display` rules must not undo it.
        assert!(css.contains("[hidden] { display: none !important; }"), "[hidden] must win over display rules");
    }

    #[test]
    fn the_page_and_its_assets_are_public() {
        for pattern in ["/", "/assets/{file}", "/api/docs"] {
            assert_eq!(crate::edge::auth::required_access(&Method::GET, Some(pattern)), Access::Public, "{pattern}");
            assert_eq!(crate::edge::auth::required_access(&Method::HEAD, Some(pattern)), Access::Public, "{pattern}");
        }
    }
}
