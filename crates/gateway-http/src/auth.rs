//! Authentication and authorisation: bearer tokens checked against the settings store, and the
//! access each route needs.
//!
//! Each route declares its access in the route table ([`crate::routes::ROUTES`]), looked up by
//! the router pattern the request matched; anything else needs at least a viewer token
//! (GET/HEAD) or an operator token (everything else), so nothing is accidentally public.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};
use gateway_core::{Access, Problem};

use crate::context::RoutePattern;
use crate::error::ApiError;
use crate::state::AppState;

/// Who is calling (the same principal the hub records for its clients).
pub use hub::Principal;

/// The access a request needs, from its method and the router pattern it matched: the route's
/// own ([`crate::routes::ROUTES`]), else viewer for reads and operator for anything else.
pub fn required_access(method: &Method, pattern: Option<&str>) -> Access {
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    match pattern.and_then(|p| crate::routes::find(method, p)) {
        Some(route) => route.access.for_method(method),
        None => crate::routes::by_method(method),
    }
}

/// The routes whose access does not follow from the method, one entry per documented method:
/// (method, router pattern, access). Derived from [`crate::routes::ROUTES`].
pub fn access_table() -> &'static [(&'static str, &'static str, Access)] {
    static TABLE: std::sync::OnceLock<Vec<(&'static str, &'static str, Access)>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Vec::new();
        for route in crate::routes::ROUTES {
            if let crate::routes::RouteAccess::Fixed(access) = route.access {
                table.extend(route.methods.documented().iter().map(|m| (*m, route.pattern, access)));
            }
        }
        table
    })
}

/// Verified bearer tokens, so a request does not query SQLite (on the blocking pool) each time.
///
/// The store stays the truth: an entry is used only while the settings database files
/// (`setup.db` and its WAL) look exactly as they did before the token was verified — any commit,
/// also by another process such as `orchestrator token revoke`, changes their size or
/// modification time and sends the requests after it (the files are looked at again at least
/// every [`TokenCache::RECHECK`]) back to the store — and for at most
/// `gateway.timers.token_cache_ms` (which also keeps `last_used_at` fresh). Entries are keyed by the
/// token's SHA-256, unknown tokens are never cached.
#[derive(Debug)]
pub struct TokenCache {
    files: [std::path::PathBuf; 2],
    entries: parking_lot::RwLock<std::collections::HashMap<String, CachedToken>>,
    /// The last look at the files and when it was taken (re-taken after [`TokenCache::RECHECK`]).
    seen: parking_lot::Mutex<(std::time::Instant, Generation)>,
    /// How long an entry is trusted.
    max_age: std::time::Duration,
}

#[derive(Debug, Clone)]
struct CachedToken {
    principal: Principal,
    generation: Generation,
    verified_at: std::time::Instant,
}

/// What the database files look like: (length, modification time) of each; absent is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation([Option<(u64, std::time::SystemTime)>; 2]);

impl TokenCache {
    /// Most entries kept (a full cache is emptied; tokens are few).
    const MAX_ENTRIES: usize = 1024;
    /// How often under load the files are looked at again: a commit by another process is
    /// seen within this.
    pub const RECHECK: std::time::Duration = std::time::Duration::from_millis(1);

    /// A cache trusting an entry for `max_age` (`gateway.timers.token_cache_ms`; 0 = never).
    pub fn with_max_age(db: &std::path::Path, max_age: std::time::Duration) -> TokenCache {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let files = [db.to_owned(), wal.into()];
        let seen = parking_lot::Mutex::new((std::time::Instant::now(), Self::look(&files)));
        TokenCache { files, entries: Default::default(), seen, max_age }
    }

    fn look(files: &[std::path::PathBuf; 2]) -> Generation {
        Generation(files.each_ref().map(|f| {
            let meta = std::fs::metadata(f).ok()?;
            Some((meta.len(), meta.modified().ok()?))
        }))
    }

    /// The current look of the database files (two `stat` calls).
    pub fn generation(&self) -> Generation {
        let now = Self::look(&self.files);
        *self.seen.lock() = (std::time::Instant::now(), now);
        now
    }

    /// The look of the files at most [`TokenCache::RECHECK`] old.
    fn recent_generation(&self) -> Generation {
        {
            let seen = self.seen.lock();
            if seen.0.elapsed() < Self::RECHECK {
                return seen.1;
            }
        }
        self.generation()
    }

    /// The principal of a token verified under the current generation, if any.
    pub fn get(&self, token: &str) -> Option<Principal> {
        let key = settings::token_hash(token);
        let entries = self.entries.read();
        let cached = entries.get(&key)?;
        (cached.verified_at.elapsed() < self.max_age && cached.generation == self.recent_generation())
            .then(|| cached.principal.clone())
    }

    /// Remembers a token the store accepted; `generation` must have been read before asking it.
    pub fn insert(&self, token: &str, principal: Principal, generation: Generation) {
        let mut entries = self.entries.write();
        if entries.len() >= Self::MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            settings::token_hash(token),
            CachedToken { principal, generation, verified_at: std::time::Instant::now() },
        );
    }
}

/// The one route that also accepts `?ticket=`.
const TICKET_ROUTE: &str = "/api/events/stream";

fn ticket(req: &ServiceRequest) -> Option<String> {
    req.query_string().split('&').find_map(|pair| pair.strip_prefix("ticket=")).map(str::to_owned)
}

fn bearer(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The auth middleware (inside the request-context middleware).
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let access = RoutePattern::with(&req, |pattern| required_access(req.method(), pattern));
    if access == Access::Public {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req.error_response(ApiError::Internal("application state missing".into())));
    };
    let principal = match bearer(&req) {
        Some(token) => match state.tokens.get(&token) {
            Some(principal) => Some(principal),
            None => {
                let generation = state.tokens.generation();
                let store = state.settings.clone();
                let cache = state.tokens.clone();
                let verified = web::block(move || {
                    let principal = store.verify_token(&token)?.map(|i| Principal { name: i.name, role: i.role });
                    if let Some(p) = &principal {
                        cache.insert(&token, p.clone(), generation);
                    }
                    Ok::<_, settings::SettingsError>(principal)
                })
                .await;
                match verified {
                    Ok(Ok(principal)) => principal,
                    Ok(Err(e)) => return Ok(req.error_response(ApiError::from(e))),
                    Err(e) => return Ok(req.error_response(ApiError::from(e))),
                }
            }
        },
        // Browsers cannot set headers on an EventSource: the SSE stream also takes a ticket.
        None if RoutePattern::with(&req, |pattern| pattern == Some(TICKET_ROUTE)) => {
            ticket(&req).and_then(|t| state.tickets.redeem(&t))
        }
        None => None,
    };
    let Some(principal) = principal else {
        return Ok(req.error_response(ApiError::Problem(Problem::Unauthorized)));
    };
    if !principal.role.permits(access) {
        return Ok(req.error_response(ApiError::Problem(Problem::Forbidden)));
    }
    req.extensions_mut().insert(principal);
    Ok(next.call(req).await?.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlisted_routes_are_never_public() {
        assert_eq!(required_access(&Method::GET, Some("/api/new-thing")), Access::Read);
        assert_eq!(required_access(&Method::POST, Some("/api/new-thing")), Access::Write);
        assert_eq!(required_access(&Method::DELETE, None), Access::Write);
        assert_eq!(required_access(&Method::GET, Some("/api/health")), Access::Public);
        assert_eq!(required_access(&Method::HEAD, Some("/api/health")), Access::Public);
        assert_eq!(required_access(&Method::POST, Some("/api/health")), Access::Write);
        assert_eq!(required_access(&Method::PUT, Some("/api/settings/{key}")), Access::Write);
        assert_eq!(required_access(&Method::POST, Some("/api/events")), Access::Ingest);
    }

    /// Verifies through the cache the way the middleware does.
    fn verify(cache: &TokenCache, store: &settings::SettingsStore, token: &str) -> (Option<Principal>, bool) {
        if let Some(p) = cache.get(token) {
            return (Some(p), true);
        }
        let generation = cache.generation();
        let principal = store.verify_token(token).unwrap_or(None).map(|i| Principal { name: i.name, role: i.role });
        if let Some(p) = &principal {
            cache.insert(token, p.clone(), generation);
        }
        (principal, false)
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn cached_tokens_follow_the_store_across_processes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("setup.db");
        let store = settings::SettingsStore::open(&db).unwrap();
        // A second store on the same file stands for another process (the CLI).
        let cli = settings::SettingsStore::open(&db).unwrap();
        let cache = TokenCache::with_max_age(&db, std::time::Duration::from_secs(60));
        let token = store.create_token("dash", gateway_core::Role::Viewer).unwrap();

        // The first use records last_used_at (a write), so the second asks the store again;
        // from then on the store is not asked while nothing changes. (`generation()` takes a
        // fresh look at the files, as happens at least every `RECHECK`.)
        assert_eq!(verify(&cache, &store, &token).0.map(|p| p.name), Some("dash".to_owned()));
        cache.generation();
        let _ = verify(&cache, &store, &token);
        let dash = Principal { name: "dash".into(), role: gateway_core::Role::Viewer };
        for _ in 0..3 {
            cache.generation();
            assert_eq!(verify(&cache, &store, &token), (Some(dash.clone()), true));
        }
        // Unknown tokens are never cached.
        assert_eq!(verify(&cache, &store, "orch_nope"), (None, false));
        assert_eq!(verify(&cache, &store, "orch_nope"), (None, false));

        // Any commit elsewhere sends the next request to the store: a new token changes nothing
        // for this one, a revocation takes effect at once.
        cli.create_token("other", gateway_core::Role::Operator).unwrap();
        cache.generation();
        assert_eq!(verify(&cache, &store, &token), (Some(dash), false), "re-verified after a foreign commit");
        cache.generation();
        assert!(cache.get(&token).is_some());
        cli.revoke_token("dash").unwrap();
        // Without a forced look: the files are looked at again within `RECHECK`.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while cache.get(&token).is_some() {
            assert!(std::time::Instant::now() < deadline, "the revocation was not seen");
            std::thread::yield_now();
        }
        assert_eq!(verify(&cache, &store, &token), (None, false));
    }
}
