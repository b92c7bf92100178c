//! The error model: stable error codes, their HTTP statuses, and the Hungarian/English message
//! catalogue. Every user-facing sentence the orchestrator produces is written here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The language of user-facing messages. Hungarian is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Hungarian (default).
    #[default]
    Hu,
    /// English.
    En,
}

impl Lang {
    /// Picks the language from an `Accept-Language` header value: the first of `hu`/`en` in
    /// order of the client's q-values; Hungarian when neither is named.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|v| v.trim().parse::<f32>().ok()))
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            let lang = match primary {
                "hu" => Lang::Hu,
                "en" => Lang::En,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or_default()
    }
}

/// Stable, machine-readable error codes (the `code` field of the envelope).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is invalid.
    ValidationFailed,
    /// 401: no or unknown credentials.
    Unauthorized,
    /// 403: the credentials' role does not allow this.
    Forbidden,
    /// 404: no such route or resource.
    NotFound,
    /// 405: the path exists but does not take this method.
    MethodNotAllowed,
    /// 409: the request conflicts with the current state.
    Conflict,
    /// 413: the request body is too large.
    PayloadTooLarge,
    /// 503: the owning service is down.
    ServiceUnavailable,
    /// 504: the owning service did not answer in time.
    UpstreamTimeout,
    /// 502: the owning service answered with an error or garbage.
    UpstreamError,
    /// 500: a service's program could not be run (missing, not executable, no such `cwd`).
    SpawnFailed,
    /// 500: a bug or an unexpected failure inside the orchestrator.
    Internal,
}

impl ErrorCode {
    /// Every code, in the order of the specification's table.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::ValidationFailed,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::ServiceUnavailable,
        ErrorCode::UpstreamTimeout,
        ErrorCode::UpstreamError,
        ErrorCode::SpawnFailed,
        ErrorCode::Internal,
    ];

    /// The HTTP status this code is always sent with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::ValidationFailed => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::UpstreamTimeout => 504,
            ErrorCode::UpstreamError => 502,
            ErrorCode::SpawnFailed | ErrorCode::Internal => 500,
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::ServiceUnavailable => "service_unavailable",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::SpawnFailed => "spawn_failed",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// JSON value types, named in validation messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum JsonType {
    String,
    Number,
    Integer,
    Boolean,
    Array,
    Object,
}

impl JsonType {
    fn name(self, lang: Lang) -> &'static str {
        match (self, lang) {
            (JsonType::String, Lang::Hu) => "szöveg",
            (JsonType::Number, Lang::Hu) => "szám",
            (JsonType::Integer, Lang::Hu) => "egész szám",
            (JsonType::Boolean, Lang::Hu) => "logikai érték",
            (JsonType::Array, Lang::Hu) => "lista",
            (JsonType::Object, Lang::Hu) => "objektum",
            (JsonType::String, Lang::En) => "a string",
            (JsonType::Number, Lang::En) => "a number",
            (JsonType::Integer, Lang::En) => "an integer",
            (JsonType::Boolean, Lang::En) => "a boolean",
            (JsonType::Array, Lang::En) => "an array",
            (JsonType::Object, Lang::En) => "an object",
        }
    }
}

/// Why a field was rejected. Rendered into the `<ok>` part of
/// `Érvénytelen kérés: <mező> – <ok>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// A required field is absent.
    Missing,
    /// The body is not valid JSON; position of the first error.
    MalformedJson {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The body ended before the JSON value was complete.
    TruncatedJson,
    /// The body is not valid UTF-8.
    InvalidUtf8,
    /// A value has the wrong JSON type.
    WrongType {
        /// The type that was expected.
        expected: JsonType,
    },
    /// A field that this request does not know.
    UnknownField,
    /// A setting key outside the catalogue (and not under `ui.`).
    UnknownKey,
    /// Not a valid symbol.
    InvalidSymbol,
    /// Not one of the 21 MT5 timeframes.
    InvalidTimeframe,
    /// Not a valid service name.
    InvalidServiceName,
    /// Not a valid topic or topic pattern.
    InvalidTopic,
    /// Not a valid event type.
    InvalidEventType,
    /// A number outside the allowed range (inclusive bounds as text, e.g. `0`, `100`).
    OutOfRange {
        /// Lower bound (description).
        min: String,
        /// Upper bound (description).
        max: String,
    },
    /// Must be greater than a bound.
    NotPositive,
    /// One of a fixed set of values.
    NotOneOf {
        /// The allowed values, comma separated.
        allowed: String,
    },
    /// A list has the same value twice.
    Duplicate {
        /// The repeated value.
        value: String,
    },
    /// Text or list too long.
    TooLong {
        /// Maximum length (characters or items).
        max: usize,
    },
    /// Text or list too short or empty.
    TooShort {
        /// Minimum length (characters or items).
        min: usize,
    },
    /// A value must be one of those listed in a setting.
    NotInSetting {
        /// The setting key that lists the allowed values.
        setting: String,
    },
    /// A path with `..`, encoded dots, backslashes or control characters.
    UnsafePath,
    /// Not RFC 3339 nor unix milliseconds.
    InvalidTime,
    /// `from` is after `to`.
    FromAfterTo,
    /// A price/stop combination that contradicts the order side.
    InconsistentStops,
    /// A value (header, query) contains control characters or is otherwise malformed.
    Malformed,
    /// A number below the contract's minimum (`exclusive`: it must be greater).
    BelowMinimum {
        /// The bound, as written in the contract.
        min: String,
        /// Whether the bound itself is excluded.
        exclusive: bool,
    },
    /// A number above the contract's maximum (`exclusive`: it must be smaller).
    AboveMaximum {
        /// The bound, as written in the contract.
        max: String,
        /// Whether the bound itself is excluded.
        exclusive: bool,
    },
    /// Text that does not match the contract's regular expression.
    PatternMismatch {
        /// The pattern.
        pattern: String,
    },
    /// Any other rule of a service's contract (the JSON Schema validator's own words, English).
    ContractViolation {
        /// What the validator said.
        detail: String,
    },
    /// The configuration file is not valid (`config check`'s message: field, line, what).
    InvalidConfig {
        /// What `config check` says.
        detail: String,
    },
}

impl Reason {
    /// The reason in the given language.
    pub fn render(&self, lang: Lang) -> String {
        use Reason::*;
        match lang {
            Lang::Hu => match self {
                Missing => "kötelező mező, de hiányzik".into(),
                MalformedJson { line, column } => format!("hibás JSON a(z) {line}. sor {column}. oszlopánál"),
                TruncatedJson => "a JSON idő előtt véget ér".into(),
                InvalidUtf8 => "érvénytelen UTF-8 kódolás".into(),
                WrongType { expected } => format!("hibás típus, {} az elvárt", expected.name(lang)),
                UnknownField => "ismeretlen mező".into(),
                UnknownKey => "ismeretlen beállítás".into(),
                InvalidSymbol => {
                    "érvénytelen szimbólum (betű vagy szám, majd legfeljebb 31 betű, szám vagy . _ # @ -)".into()
                }
                InvalidTimeframe => "ismeretlen időkeret (M1, M5, M15, H1, H4, D1, W1, MN1 …)".into(),
                InvalidServiceName => {
                    "érvénytelen szolgáltatásnév (kisbetűvel kezdődik, legfeljebb 32 karakter: a-z 0-9 _ -)".into()
                }
                InvalidTopic => "érvénytelen téma (típus vagy típus:kulcs, pl. tick:EURUSD)".into(),
                InvalidEventType => {
                    "ismeretlen eseménytípus (tick, strategy_signal, position, service_status, system)".into()
                }
                OutOfRange { min, max } => format!("az értéknek {min} és {max} között kell lennie"),
                NotPositive => "az értéknek nagyobbnak kell lennie nullánál".into(),
                NotOneOf { allowed } => format!("nem megengedett érték (lehetséges: {allowed})"),
                Duplicate { value } => format!("ismétlődő érték: {value}"),
                TooLong { max } => format!("túl hosszú (legfeljebb {max})"),
                TooShort { min } => format!("túl rövid (legalább {min})"),
                NotInSetting { setting } => format!("nem szerepel a(z) {setting} beállításban"),
                UnsafePath => "nem megengedett útvonal (.., kódolt pont, fordított perjel vagy vezérlőkarakter)".into(),
                InvalidTime => "érvénytelen időpont (RFC 3339 vagy unix ezredmásodperc)".into(),
                FromAfterTo => "a kezdő időpont későbbi, mint a záró".into(),
                InconsistentStops => "a stop loss / take profit nem illik az irányhoz".into(),
                Malformed => "hibás formátum".into(),
                BelowMinimum { min, exclusive: false } => format!("az értéknek legalább {min} kell lennie"),
                BelowMinimum { min, exclusive: true } => format!("az értéknek nagyobbnak kell lennie, mint {min}"),
                AboveMaximum { max, exclusive: false } => format!("az értéknek legfeljebb {max} lehet"),
                AboveMaximum { max, exclusive: true } => format!("az értéknek kisebbnek kell lennie, mint {max}"),
                PatternMismatch { pattern } => format!("nem illeszkedik a mintára ({pattern})"),
                ContractViolation { detail } => format!("nem felel meg a szolgáltatás szerződésének ({detail})"),
                InvalidConfig { detail } => format!("a konfigurációs fájl hibás, semmi sem változott ({detail})"),
            },
            Lang::En => match self {
                Missing => "is required but missing".into(),
                MalformedJson { line, column } => format!("malformed JSON at line {line}, column {column}"),
                TruncatedJson => "the JSON ends prematurely".into(),
                InvalidUtf8 => "invalid UTF-8".into(),
                WrongType { expected } => format!("wrong type, expected {}", expected.name(lang)),
                UnknownField => "unknown field".into(),
                UnknownKey => "unknown setting".into(),
                InvalidSymbol => {
                    "invalid symbol (a letter or digit, then up to 31 letters, digits or . _ # @ -)".into()
                }
                InvalidTimeframe => "unknown timeframe (M1, M5, M15, H1, H4, D1, W1, MN1 …)".into(),
                InvalidServiceName => {
                    "invalid service name (starts with a lowercase letter, up to 32 of a-z 0-9 _ -)".into()
                }
                InvalidTopic => "invalid topic (type or type:key, e.g. tick:EURUSD)".into(),
                InvalidEventType => {
                    "unknown event type (tick, strategy_signal, position, service_status, system)".into()
                }
                OutOfRange { min, max } => format!("must be between {min} and {max}"),
                NotPositive => "must be greater than zero".into(),
                NotOneOf { allowed } => format!("not allowed (one of: {allowed})"),
                Duplicate { value } => format!("duplicate value: {value}"),
                TooLong { max } => format!("too long (at most {max})"),
                TooShort { min } => format!("too short (at least {min})"),
                NotInSetting { setting } => format!("not listed in the {setting} setting"),
                UnsafePath => "path not allowed (.., encoded dot, backslash or control character)".into(),
                InvalidTime => "invalid time (RFC 3339 or unix milliseconds)".into(),
                FromAfterTo => "from is later than to".into(),
                InconsistentStops => "stop loss / take profit do not fit the side".into(),
                Malformed => "malformed".into(),
                BelowMinimum { min, exclusive: false } => format!("must be at least {min}"),
                BelowMinimum { min, exclusive: true } => format!("must be greater than {min}"),
                AboveMaximum { max, exclusive: false } => format!("must be at most {max}"),
                AboveMaximum { max, exclusive: true } => format!("must be less than {max}"),
                PatternMismatch { pattern } => format!("does not match the pattern {pattern}"),
                ContractViolation { detail } => format!("does not satisfy the service's contract ({detail})"),
                InvalidConfig { detail } => format!("the configuration file is invalid, nothing changed ({detail})"),
            },
        }
    }
}

/// A rejected field: which one and why.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// The field's name or JSON path (`body`, `symbol`, `orders[0].volume`).
    pub field: String,
    /// Why it was rejected.
    pub reason: Reason,
}

impl FieldError {
    /// A new field error.
    pub fn new(field: impl Into<String>, reason: Reason) -> Self {
        Self { field: field.into(), reason }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason.render(Lang::En))
    }
}

impl std::error::Error for FieldError {}

/// Everything that can go wrong from the user's point of view: a code plus the parameters of
/// its message. The gateway turns a `Problem` into the envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// 400 with the field and the reason.
    Validation(FieldError),
    /// 401.
    Unauthorized,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// 405: the path does not take this method (a service's contract says so).
    MethodNotAllowed,
    /// 409: the service is already running or starting.
    AlreadyRunning {
        /// Display name of the service.
        service: String,
    },
    /// 409: the service is already stopped.
    AlreadyStopped {
        /// Display name of the service.
        service: String,
    },
    /// 409: the service is external (monitored only) and cannot be started or stopped here.
    NotManaged {
        /// Display name of the service.
        service: String,
    },
    /// 409: `If-Match` did not match the setting's current version.
    VersionMismatch {
        /// The setting key.
        key: String,
        /// Its current version.
        current: i64,
    },
    /// 413.
    PayloadTooLarge,
    /// 503: the service is down.
    ServiceUnavailable {
        /// Display name of the service.
        service: String,
    },
    /// 504: the service did not answer within the timeout.
    UpstreamTimeout {
        /// Display name of the service.
        service: String,
        /// The timeout in milliseconds.
        timeout_ms: u64,
    },
    /// 504: a recent call of the service ran out of the timeout, so it is not waited for now
    /// (a dashboard part while the service is suspected of hanging).
    UpstreamUnresponsive {
        /// Display name of the service.
        service: String,
        /// The timeout that ran out, in milliseconds.
        timeout_ms: u64,
    },
    /// 502: the service answered with an error or an invalid body.
    UpstreamError {
        /// Display name of the service.
        service: String,
        /// What it said or what was wrong with it.
        detail: String,
    },
    /// 502: the service's answer was unusable: not JSON (`status` is its HTTP status), or the
    /// connection broke off in the middle of it (`status` is `None`).
    UpstreamInvalid {
        /// Display name of the service.
        service: String,
        /// The HTTP status of the unusable answer, when one was received.
        status: Option<u16>,
    },
    /// A 4xx answer of a downstream service without an envelope: its status is kept.
    UpstreamRejected {
        /// Display name of the service.
        service: String,
        /// The service's HTTP status (4xx).
        status: u16,
        /// What it said.
        detail: String,
    },
    /// 500: the service's program could not be run (missing, not executable, no such `cwd`).
    SpawnFailed {
        /// Display name of the service.
        service: String,
        /// The short OS error (e.g. `No such file or directory (os error 2)`), never a stack.
        reason: String,
    },
    /// 500: nothing the user can fix; the cause is in the log.
    Internal,
}

impl From<FieldError> for Problem {
    fn from(e: FieldError) -> Self {
        Problem::Validation(e)
    }
}

impl Problem {
    /// A validation problem for one field.
    pub fn invalid(field: impl Into<String>, reason: Reason) -> Self {
        Problem::Validation(FieldError::new(field, reason))
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Problem::Validation(_) => ErrorCode::ValidationFailed,
            Problem::Unauthorized => ErrorCode::Unauthorized,
            Problem::Forbidden => ErrorCode::Forbidden,
            Problem::NotFound => ErrorCode::NotFound,
            Problem::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Problem::AlreadyRunning { .. }
            | Problem::AlreadyStopped { .. }
            | Problem::NotManaged { .. }
            | Problem::VersionMismatch { .. } => ErrorCode::Conflict,
            Problem::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            Problem::ServiceUnavailable { .. } => ErrorCode::ServiceUnavailable,
            Problem::UpstreamTimeout { .. } | Problem::UpstreamUnresponsive { .. } => ErrorCode::UpstreamTimeout,
            Problem::UpstreamError { .. } | Problem::UpstreamInvalid { .. } => ErrorCode::UpstreamError,
            Problem::UpstreamRejected { status, .. } => match status {
                401 => ErrorCode::Unauthorized,
                403 => ErrorCode::Forbidden,
                404 => ErrorCode::NotFound,
                405 => ErrorCode::MethodNotAllowed,
                409 => ErrorCode::Conflict,
                413 => ErrorCode::PayloadTooLarge,
                _ => ErrorCode::ValidationFailed,
            },
            Problem::SpawnFailed { .. } => ErrorCode::SpawnFailed,
            Problem::Internal => ErrorCode::Internal,
        }
    }

    /// The HTTP status to answer with: the code's, except a downstream 4xx keeps its own.
    pub fn http_status(&self) -> u16 {
        match self {
            Problem::UpstreamRejected { status, .. } if (400..500).contains(status) => *status,
            other => other.code().http_status(),
        }
    }

    /// The user-facing message in the given language.
    pub fn message(&self, lang: Lang) -> String {
        match lang {
            Lang::Hu => match self {
                Problem::Validation(e) => format!("Érvénytelen kérés: {} – {}", e.field, e.reason.render(lang)),
                Problem::Unauthorized => "Hitelesítés szükséges.".into(),
                Problem::Forbidden => "Nincs jogosultság ehhez a művelethez.".into(),
                Problem::NotFound => "A keresett erőforrás nem található.".into(),
                Problem::MethodNotAllowed => "Ez a művelet nem támogatott ezen az útvonalon.".into(),
                Problem::AlreadyRunning { service } => format!("A(z) {service} már fut."),
                Problem::AlreadyStopped { service } => format!("A(z) {service} már le van állítva."),
                Problem::NotManaged { service } => {
                    format!("A(z) {service} külső szolgáltatás, innen nem indítható és nem állítható le.")
                }
                Problem::VersionMismatch { key, current } => {
                    format!("A(z) {key} beállítás időközben megváltozott (jelenlegi verzió: {current}).")
                }
                Problem::PayloadTooLarge => "A kérés túl nagy.".into(),
                Problem::ServiceUnavailable { service } => format!("A(z) {service} jelenleg nem elérhető."),
                Problem::UpstreamTimeout { service, timeout_ms } => {
                    format!("A(z) {service} nem válaszolt időben ({} mp).", seconds(*timeout_ms, ','))
                }
                Problem::UpstreamUnresponsive { service, timeout_ms } => format!(
                    "A(z) {service} legutóbb nem válaszolt időben ({} mp), ezért most nem várunk rá; \
                     a háttérben ellenőrizzük, helyreállt-e.",
                    seconds(*timeout_ms, ',')
                ),
                Problem::UpstreamError { service, detail } => format!("A(z) {service} hibát jelzett: {detail}"),
                Problem::UpstreamInvalid { service, status: Some(status) } => {
                    format!("A(z) {service} hibát jelzett: érvénytelen válasz (HTTP {status})")
                }
                Problem::UpstreamInvalid { service, status: None } => {
                    format!("A(z) {service} hibát jelzett: a kapcsolat válasz közben megszakadt")
                }
                Problem::UpstreamRejected { service, detail, .. } => {
                    format!("A(z) {service} elutasította a kérést: {detail}")
                }
                Problem::SpawnFailed { service, reason } => format!("A(z) {service} nem indítható: {reason}"),
                Problem::Internal => "Belső hiba történt. Kérjük, próbálja újra később.".into(),
            },
            Lang::En => match self {
                Problem::Validation(e) => format!("Invalid request: {} – {}", e.field, e.reason.render(lang)),
                Problem::Unauthorized => "Authentication required.".into(),
                Problem::Forbidden => "You are not allowed to perform this action.".into(),
                Problem::NotFound => "The requested resource was not found.".into(),
                Problem::MethodNotAllowed => "This operation is not supported on this path.".into(),
                Problem::AlreadyRunning { service } => format!("{service} is already running."),
                Problem::AlreadyStopped { service } => format!("{service} is already stopped."),
                Problem::NotManaged { service } => {
                    format!("{service} is an external service; it cannot be started or stopped from here.")
                }
                Problem::VersionMismatch { key, current } => {
                    format!("Setting {key} has changed in the meantime (current version: {current}).")
                }
                Problem::PayloadTooLarge => "The request is too large.".into(),
                Problem::ServiceUnavailable { service } => format!("{service} is currently unavailable."),
                Problem::UpstreamTimeout { service, timeout_ms } => {
                    format!("{service} did not respond in time ({} s).", seconds(*timeout_ms, '.'))
                }
                Problem::UpstreamUnresponsive { service, timeout_ms } => format!(
                    "{service} did not respond in time last time ({} s), so it is not waited for now; \
                     whether it has recovered is being checked in the background.",
                    seconds(*timeout_ms, '.')
                ),
                Problem::UpstreamError { service, detail } => format!("{service} reported an error: {detail}"),
                Problem::UpstreamInvalid { service, status: Some(status) } => {
                    format!("{service} reported an error: invalid answer (HTTP {status})")
                }
                Problem::UpstreamInvalid { service, status: None } => {
                    format!("{service} reported an error: the connection broke off mid-answer")
                }
                Problem::UpstreamRejected { service, detail, .. } => {
                    format!("{service} rejected the request: {detail}")
                }
                Problem::SpawnFailed { service, reason } => format!("{service} cannot be started: {reason}"),
                Problem::Internal => "An internal error occurred. Please try again later.".into(),
            },
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message(Lang::En))
    }
}

impl std::error::Error for Problem {}

/// Milliseconds as seconds: whole numbers without decimals, otherwise one decimal with the
/// language's decimal separator.
fn seconds(ms: u64, separator: char) -> String {
    if ms.is_multiple_of(1000) {
        (ms / 1000).to_string()
    } else {
        let tenths = (ms + 50) / 100;
        format!("{}{}{}", tenths / 10, separator, tenths % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_matches_the_spec_table() {
        let cases: Vec<(Problem, ErrorCode, u16, &str)> = vec![
            (
                Problem::invalid("symbol", Reason::InvalidSymbol),
                ErrorCode::ValidationFailed,
                400,
                "Érvénytelen kérés: symbol – érvénytelen szimbólum",
            ),
            (Problem::Unauthorized, ErrorCode::Unauthorized, 401, "Hitelesítés szükséges."),
            (Problem::Forbidden, ErrorCode::Forbidden, 403, "Nincs jogosultság ehhez a művelethez."),
            (Problem::NotFound, ErrorCode::NotFound, 404, "A keresett erőforrás nem található."),
            (
                Problem::MethodNotAllowed,
                ErrorCode::MethodNotAllowed,
                405,
                "Ez a művelet nem támogatott ezen az útvonalon.",
            ),
            (
                Problem::AlreadyRunning { service: "Data Service".into() },
                ErrorCode::Conflict,
                409,
                "A(z) Data Service már fut.",
            ),
            (Problem::PayloadTooLarge, ErrorCode::PayloadTooLarge, 413, "A kérés túl nagy."),
            (
                Problem::ServiceUnavailable { service: "MT5 Service".into() },
                ErrorCode::ServiceUnavailable,
                503,
                "A(z) MT5 Service jelenleg nem elérhető.",
            ),
            (
                Problem::UpstreamTimeout { service: "MT5 Service".into(), timeout_ms: 2000 },
                ErrorCode::UpstreamTimeout,
                504,
                "A(z) MT5 Service nem válaszolt időben (2 mp).",
            ),
            (
                Problem::UpstreamUnresponsive { service: "Pattern Service".into(), timeout_ms: 2000 },
                ErrorCode::UpstreamTimeout,
                504,
                "A(z) Pattern Service legutóbb nem válaszolt időben (2 mp), ezért most nem várunk rá; \
                 a háttérben ellenőrizzük, helyreállt-e.",
            ),
            (
                Problem::UpstreamError { service: "Data Service".into(), detail: "HTTP 500".into() },
                ErrorCode::UpstreamError,
                502,
                "A(z) Data Service hibát jelzett: HTTP 500",
            ),
            (
                Problem::UpstreamInvalid { service: "Data Service".into(), status: Some(200) },
                ErrorCode::UpstreamError,
                502,
                "A(z) Data Service hibát jelzett: érvénytelen válasz (HTTP 200)",
            ),
            (
                Problem::UpstreamInvalid { service: "Data Service".into(), status: None },
                ErrorCode::UpstreamError,
                502,
                "A(z) Data Service hibát jelzett: a kapcsolat",
            ),
            (
                Problem::SpawnFailed {
                    service: "MT5 Service".into(),
                    reason: "No such file or directory (os error 2)".into(),
                },
                ErrorCode::SpawnFailed,
                500,
                "A(z) MT5 Service nem indítható: No such file or directory (os error 2)",
            ),
            (Problem::Internal, ErrorCode::Internal, 500, "Belső hiba történt. Kérjük, próbálja újra később."),
        ];
        let covered: std::collections::HashSet<ErrorCode> = cases.iter().map(|c| c.1).collect();
        for code in ErrorCode::ALL {
            assert!(covered.contains(&code), "{code} has no case in the catalogue test");
        }
        for (problem, code, status, hu) in cases {
            assert_eq!(problem.code(), code);
            assert_eq!(code.http_status(), status);
            assert!(problem.message(Lang::Hu).starts_with(hu), "{:?} -> {}", problem, problem.message(Lang::Hu));
            assert_ne!(problem.message(Lang::En), problem.message(Lang::Hu));
            let wire = serde_json::to_string(&code).unwrap_or_default();
            assert_eq!(wire, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn spawn_failures_name_the_service_in_both_languages() {
        let p =
            Problem::SpawnFailed { service: "Data Service".into(), reason: "Permission denied (os error 13)".into() };
        assert_eq!(p.message(Lang::Hu), "A(z) Data Service nem indítható: Permission denied (os error 13)");
        assert_eq!(p.message(Lang::En), "Data Service cannot be started: Permission denied (os error 13)");
        assert_eq!((p.code().as_str(), p.http_status()), ("spawn_failed", 500));
    }

    #[test]
    fn every_code_is_distinct_on_the_wire() {
        let wire: std::collections::HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(wire.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn downstream_rejections_keep_their_status() {
        let p = |status| Problem::UpstreamRejected {
            service: "Data Service".into(),
            status,
            detail: "unknown symbol".into(),
        };
        assert_eq!((p(404).http_status(), p(404).code()), (404, ErrorCode::NotFound));
        assert_eq!((p(422).http_status(), p(422).code()), (422, ErrorCode::ValidationFailed));
        assert_eq!(p(400).message(Lang::Hu), "A(z) Data Service elutasította a kérést: unknown symbol");
        assert_eq!(Problem::Internal.http_status(), 500);
    }

    #[test]
    fn timeout_seconds_use_the_language_decimal_separator() {
        let p = Problem::UpstreamTimeout { service: "X".into(), timeout_ms: 1500 };
        assert!(p.message(Lang::Hu).contains("(1,5 mp)"));
        assert!(p.message(Lang::En).contains("(1.5 s)"));
    }

    #[test]
    fn accept_language() {
        let cases = [
            ("", Lang::Hu),
            ("en", Lang::En),
            ("en-US,en;q=0.9", Lang::En),
            ("hu-HU,hu;q=0.9,en;q=0.8", Lang::Hu),
            ("de-DE,en;q=0.5", Lang::En),
            ("de", Lang::Hu),
            ("hu;q=0.3, en;q=0.7", Lang::En),
            ("en;q=0", Lang::Hu),
            ("*", Lang::Hu),
        ];
        for (header, want) in cases {
            assert_eq!(Lang::from_accept_language(header), want, "{header:?}");
        }
    }

    #[test]
    fn every_reason_renders_in_both_languages() {
        let reasons = [
            Reason::Missing,
            Reason::MalformedJson { line: 1, column: 2 },
            Reason::TruncatedJson,
            Reason::InvalidUtf8,
            Reason::WrongType { expected: JsonType::Array },
            Reason::UnknownField,
            Reason::UnknownKey,
            Reason::InvalidSymbol,
            Reason::InvalidTimeframe,
            Reason::InvalidServiceName,
            Reason::InvalidTopic,
            Reason::InvalidEventType,
            Reason::OutOfRange { min: "1".into(), max: "2".into() },
            Reason::NotPositive,
            Reason::NotOneOf { allowed: "a, b".into() },
            Reason::Duplicate { value: "X".into() },
            Reason::TooLong { max: 3 },
            Reason::TooShort { min: 1 },
            Reason::NotInSetting { setting: "symbols".into() },
            Reason::UnsafePath,
            Reason::InvalidTime,
            Reason::FromAfterTo,
            Reason::InconsistentStops,
            Reason::Malformed,
            Reason::BelowMinimum { min: "1".into(), exclusive: false },
            Reason::BelowMinimum { min: "0".into(), exclusive: true },
            Reason::AboveMaximum { max: "9".into(), exclusive: false },
            Reason::AboveMaximum { max: "9".into(), exclusive: true },
            Reason::PatternMismatch { pattern: "^[A-Z]+$".into() },
            Reason::ContractViolation { detail: "x".into() },
            Reason::InvalidConfig { detail: "service[0].port (line 3): must be greater than 0".into() },
        ];
        for r in reasons {
            let (hu, en) = (r.render(Lang::Hu), r.render(Lang::En));
            assert!(!hu.is_empty() && !en.is_empty() && hu != en, "{r:?}");
        }
    }
}
