//! Errors of the hub API and of the client protocol.

use gateway_core::{FieldError, Lang, Topic};

/// An error from a [`crate::HubHandle`] call.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The event (or targeted message) is invalid; names the field.
    #[error("invalid event: {0}")]
    Invalid(#[source] FieldError),
    /// No connected client has this id.
    #[error("no connected client with id {0}")]
    NotFound(String),
    /// The subscription would exceed the per-client topic limit; nothing was subscribed.
    #[error("too many topics: at most {max} per client")]
    TooManyTopics {
        /// The limit.
        max: usize,
    },
    /// The hub task has stopped (shut down).
    #[error("the hub has stopped")]
    Stopped,
}

impl From<FieldError> for HubError {
    fn from(e: FieldError) -> Self {
        HubError::Invalid(e)
    }
}

/// Why a client message was rejected. [`ProtocolError::code`] is the stable `code` of the
/// `error` reply and [`ProtocolError::message`] its text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    /// The message is larger than the limit.
    #[error("message too big (at most {max} bytes)")]
    TooBig {
        /// The limit in bytes.
        max: usize,
    },
    /// Invalid JSON, not an object, a missing or wrong field.
    #[error("invalid message: {0}")]
    Field(FieldError),
    /// A `type` the protocol does not know.
    #[error("unknown message type {0:?} (auth, subscribe, unsubscribe, ping, pong)")]
    UnknownType(String),
    /// `auth` with both a token and a ticket.
    #[error("send either a token or a ticket, not both")]
    AmbiguousCredential,
    /// `since` names a topic that no pattern of the same `subscribe` covers.
    #[error("since names {0}, which this subscribe does not cover")]
    SinceNotSubscribed(Topic),
    /// The subscription would exceed the per-client topic limit.
    #[error("too many topics: at most {max} per client")]
    TooManyTopics {
        /// The limit.
        max: usize,
    },
    /// A second `auth` on an authenticated connection.
    #[error("the connection is already authenticated")]
    AlreadyAuthenticated,
    /// A binary frame: the protocol is JSON text.
    #[error("binary messages are not supported; send JSON text")]
    Binary,
    /// The hub is not available.
    #[error("the hub is not available")]
    Unavailable,
}

impl ProtocolError {
    /// The stable, machine-readable code of the `error` reply.
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::TooBig { .. } => "message_too_big",
            ProtocolError::Field(_) | ProtocolError::AmbiguousCredential | ProtocolError::SinceNotSubscribed(_) => {
                "invalid_message"
            }
            ProtocolError::UnknownType(_) => "unknown_type",
            ProtocolError::TooManyTopics { .. } => "too_many_topics",
            ProtocolError::AlreadyAuthenticated => "already_authenticated",
            ProtocolError::Binary => "unsupported",
            ProtocolError::Unavailable => "internal",
        }
    }

    /// The user-facing message in the given language.
    pub fn message(&self, lang: Lang) -> String {
        match lang {
            Lang::En => self.to_string(),
            Lang::Hu => match self {
                ProtocolError::TooBig { max } => format!("Az üzenet túl nagy (legfeljebb {max} bájt)."),
                ProtocolError::Field(e) => format!("Érvénytelen üzenet: {} – {}", e.field, e.reason.render(Lang::Hu)),
                ProtocolError::UnknownType(t) => {
                    format!("Ismeretlen üzenettípus: {t:?} (auth, subscribe, unsubscribe, ping, pong).")
                }
                ProtocolError::AmbiguousCredential => "Vagy tokent, vagy jegyet küldjön, ne mindkettőt.".into(),
                ProtocolError::SinceNotSubscribed(t) => {
                    format!("A since mező a(z) {t} témát nevezi meg, de a feliratkozás nem tartalmazza.")
                }
                ProtocolError::TooManyTopics { max } => format!("Túl sok téma: kliensenként legfeljebb {max}."),
                ProtocolError::AlreadyAuthenticated => "A kapcsolat már hitelesítve van.".into(),
                ProtocolError::Binary => "Bináris üzenet nem támogatott; JSON szöveget várunk.".into(),
                ProtocolError::Unavailable => "Belső hiba történt. Kérjük, próbálja újra később.".into(),
            },
        }
    }
}
