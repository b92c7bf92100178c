//! Shared by the route-coverage tests: the patterns the real router registers.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use actix_web::App;
use actix_web::dev::Service as _;
use actix_web::test as actix_test;

/// The registered patterns, read from the router's resource map (its `Debug` form is the only
/// view actix-web offers of the whole tree: each node is a `ResourceMap { pattern: ResourceDef {
/// …, patterns: Single("…") or List([…]), … }, …, nodes: Some([…]) or None }`; a scope's
/// patterns are prefixes of its children's).
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
    (leaf_patterns(&text), rmap)
}

/// One `ResourceMap` node while its `Debug` text is read.
struct Node {
    /// Brace depth inside the node.
    depth: usize,
    patterns: Option<Vec<String>>,
    leaf: bool,
}

/// The full patterns of the leaves of a `ResourceMap` tree, from its `Debug` text.
fn leaf_patterns(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<Node> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with('"') {
            // Skip a quoted string (its braces are not structure).
            let mut j = 1;
            while j < rest.len() {
                match rest.as_bytes()[j] {
                    b'\\' => j += 2,
                    b'"' => break,
                    _ => j += 1,
                }
            }
            i += j + 1;
            continue;
        }
        if rest.starts_with("ResourceMap {") {
            depth += 1;
            stack.push(Node { depth, patterns: None, leaf: false });
            i += "ResourceMap {".len();
            continue;
        }
        if let Some(after) = rest.strip_prefix("patterns: ") {
            let node = stack.last_mut().expect("patterns inside a node");
            if node.patterns.is_none() {
                let end = after.find(", is_prefix").unwrap_or(after.len());
                let spec = &after[..end];
                node.patterns = Some(spec.split('"').skip(1).step_by(2).map(|q| q.replace("\\\\", "\\")).collect());
            }
            i += "patterns: ".len();
            continue;
        }
        if rest.starts_with("nodes: None")
            && let Some(node) = stack.last_mut()
        {
            node.leaf = true;
        }
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => {
                if stack.last().is_some_and(|n| n.depth == depth) {
                    let node = stack.pop().expect("a node");
                    if node.leaf {
                        let prefixes = stack
                            .iter()
                            .map(|n| n.patterns.as_ref().and_then(|p| p.first()).map_or("", String::as_str));
                        let prefix: String = prefixes.collect();
                        for pattern in node.patterns.unwrap_or_default() {
                            out.insert(format!("{prefix}{pattern}"));
                        }
                    }
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        i += 1;
    }
    out
}
