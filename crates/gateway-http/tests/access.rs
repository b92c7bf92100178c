//! Route coverage of the access table: every resource pattern the router registers must have an
//! explicit entry in `gateway_http::access_table()` (or be one of the forwarding catch-alls, whose
//! rule is "viewer for GET, operator otherwise"), and every entry must be reachable (no earlier
//! pattern shadows it). A new route without an access decision fails this test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::registered_patterns;
use gateway_core::Access;

/// The forwarding routes (SPEC §4): their access follows the method, not the table.
const FORWARDING: [&str; 2] = ["/api/{resource}", "/api/{resource}/{tail:.*}"];

/// A concrete path for a pattern: `{x}` → `x`, `{tail:.*}` → `x/y`.
fn concrete(pattern: &str) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map_or(rest.len(), |e| start + e + 1);
        let var = &rest[start + 1..end - 1];
        out.push_str(if var.contains(":.*") { "x/y" } else { var });
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[actix_rt::test]
async fn every_registered_route_has_an_access_entry() {
    let (patterns, _) = registered_patterns().await;
    assert!(
        patterns.len() >= 15,
        "the resource map could not be read (actix-web changed its Debug form?): {patterns:?}"
    );
    assert!(patterns.contains("/api/health") && patterns.contains("/api/settings/{key}"), "{patterns:?}");
    let listed: BTreeSet<&str> = gateway_http::access_table().iter().map(|(_, p, _)| *p).collect();
    let missing: Vec<&String> =
        patterns.iter().filter(|p| !listed.contains(p.as_str()) && !FORWARDING.contains(&p.as_str())).collect();
    assert!(
        missing.is_empty(),
        "routes without an entry in the access table (crates/gateway-http/src/auth.rs): {missing:?}"
    );
    for f in FORWARDING {
        assert!(patterns.contains(f), "the forwarding route {f} is registered");
    }
}

#[actix_rt::test]
async fn every_access_entry_is_reached_by_its_own_pattern() {
    let (patterns, rmap) = registered_patterns().await;
    for (method, pattern, access) in gateway_http::access_table() {
        if !patterns.contains(*pattern) {
            // Listed ahead of its route (a page or document still being built): the catch-all
            // rules apply until then, which are never public.
            continue;
        }
        let path = concrete(pattern);
        assert_eq!(
            rmap.match_pattern(&path).as_deref(),
            Some(*pattern),
            "{method} {path} is decided by another pattern than its entry {pattern} ({access:?})"
        );
    }
}

#[test]
fn only_the_documented_routes_are_public() {
    // SPEC §3.2: only `GET /api/health`, the OpenAPI document and the static dashboard (anything
    // outside /api/) are public; `/ws` authenticates inside the protocol (its first message).
    for (method, pattern, access) in gateway_http::access_table() {
        if *access != Access::Public {
            continue;
        }
        assert_eq!(*method, "GET", "{pattern}: only reads can be public");
        let api = pattern.starts_with("/api/") || *pattern == "/api" || *pattern == "/metrics";
        assert!(
            !api || ["/api/health", "/api/openapi.json", "/api/docs"].contains(pattern),
            "{pattern} is public but the API is not (SPEC §3.2)"
        );
    }
    assert_eq!(concrete("/api/services/{name}/{action}"), "/api/services/name/action");
    assert_eq!(concrete("/api/{resource}/{tail:.*}"), "/api/resource/x/y");
}
