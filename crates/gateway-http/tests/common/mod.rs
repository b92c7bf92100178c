//! Shared by the route-coverage tests: the patterns the real router registers.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use actix_web::App;
use actix_web::dev::Service as _;
use actix_web::test as actix_test;

/// The registered patterns, read from the router's resource map (its `Debug` form is the only
/// view actix-web offers of the whole tree: every pattern appears as `Single("…")` or `List([…])`).
pub async fn registered_patterns() -> (BTreeSet<String>, actix_web::dev::ResourceMap) {
    let seen: Rc<RefCell<Option<actix_web::dev::ResourceMap>>> = Rc::default();
    let grab = seen.clone();
    let app =
        actix_test::init_service(App::new().configure(gateway_http::routes::configure).wrap_fn(move |req, srv| {
            *grab.borrow_mut() = Some(req.resource_map().clone());
            srv.call(req)
        }))
        .await;
    // No application state: the handler itself may fail; only the routing table matters here.
    let _ = actix_test::try_call_service(&app, actix_test::TestRequest::get().uri("/api/health").to_request()).await;
    let rmap = seen.borrow_mut().take().expect("the middleware saw the request");
    let text = format!("{rmap:?}");
    let mut patterns = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("patterns: ") {
        rest = &rest[i + "patterns: ".len()..];
        let end = rest.find(", is_prefix").or_else(|| rest.find('}')).unwrap_or(rest.len());
        let spec = &rest[..end];
        for quoted in spec.split('"').skip(1).step_by(2) {
            if !quoted.is_empty() {
                patterns.insert(quoted.replace("\\\\", "\\"));
            }
        }
        rest = &rest[end..];
    }
    (patterns, rmap)
}
