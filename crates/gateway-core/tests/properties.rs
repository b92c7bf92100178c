//! Property tests (proptest) of the validating names and of path safety: each parser agrees with
//! an independent oracle written from SPEC §4/§6, never panics, and round-trips what it accepts;
//! `check_path` accepts nothing that any number of percent-decodings turns into a traversal.
//! `cargo xtask fuzz` runs these with many more cases; `cargo test` runs the default 256.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gateway_core::validate::check_path;
use gateway_core::{EventType, Reason, Symbol, Timeframe, Topic, TopicPattern};
use proptest::prelude::*;

// ---- oracles, written from the spec's regular expressions -------------------------------------

/// `^[A-Za-z0-9][A-Za-z0-9._#@-]{0,31}$`
fn symbol_oracle(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._#@-".contains(c))
}

/// A topic key: a letter or digit, then up to 63 of letters, digits and `._#@-`.
fn key_oracle(k: &str) -> bool {
    let b = k.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._#@-".contains(c))
}

const TYPES: [&str; 5] = ["tick", "strategy_signal", "position", "service_status", "system"];

fn topic_oracle(s: &str) -> bool {
    match s.split_once(':') {
        None => TYPES.contains(&s),
        Some((ty, key)) => TYPES.contains(&ty) && key_oracle(key),
    }
}

fn pattern_oracle(s: &str) -> bool {
    match s.split_once(':') {
        None => TYPES.contains(&s),
        Some((ty, key)) => {
            TYPES.contains(&ty) && (key == "*" || key_oracle(key) || key.strip_suffix('*').is_some_and(key_oracle))
        }
    }
}

/// Percent-decodes once, byte-wise (invalid escapes stay as they are).
fn decode(input: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && i + 2 < input.len()
            && let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

/// What a path must never become after decoding: a `.`/`..` segment, a backslash, a control byte.
fn dangerous(path: &[u8]) -> bool {
    path.iter().any(|b| *b < 0x20 || *b == 0x7f || *b == b'\\')
        || path.split(|b| *b == b'/').any(|seg| seg == b"." || seg == b"..")
}

// ---- strategies ---------------------------------------------------------------------------------

fn valid_symbol() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._#@-]{0,31}"
}

fn near_symbol() -> impl Strategy<Value = String> {
    // The alphabet plus the characters most likely to be let through by mistake.
    "[A-Za-z0-9._#@ /:%*\\-\\\\\u{0}\u{1f}\u{7f}éÁ€]{0,40}"
}

fn valid_key() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._#@-]{0,63}"
}

fn near_topic() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "tick",
            "system",
            "position",
            "service_status",
            "strategy_signal",
            "ticks",
            "TICK",
            "",
        ]),
        prop::option::of("[A-Za-z0-9._#@:* -]{0,70}"),
    )
        .prop_map(|(ty, key)| match key {
            Some(k) => format!("{ty}:{k}"),
            None => ty.to_owned(),
        })
}

/// Paths built from the pieces traversal attacks are made of.
fn attack_path() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "/",
        "/",
        "/",
        "a",
        "ticks",
        ".",
        "..",
        "...",
        "..a",
        "%2e",
        "%2E",
        "%2e%2e",
        "%2E%2e",
        ".%2e",
        "%2e.",
        "%252e",
        "%252E%252e",
        "%25252e",
        "%2f",
        "%2F",
        "%252f",
        "\\",
        "%5c",
        "%5C",
        "%255c",
        "%00",
        "%0a",
        "%0D",
        "%1f",
        "%7f",
        "%7F",
        "%20",
        "%41",
        "%",
        "%%",
        "%g1",
        "%c0%ae",
        "%e2%80%ae",
        "é",
        "\u{1}",
        "?",
        "#",
        ";",
    ]);
    prop::collection::vec(piece, 0..14).prop_map(|pieces| format!("/api/{}", pieces.concat()))
}

proptest! {
    #[test]
    fn symbols_agree_with_the_spec_regex(s in prop_oneof![valid_symbol(), near_symbol(), any::<String>()]) {
        match Symbol::parse(&s) {
            Ok(sym) => {
                prop_assert!(symbol_oracle(&s), "accepted {s:?}");
                prop_assert_eq!(sym.as_str(), s.as_str());
                let json = serde_json::to_string(&sym).unwrap();
                prop_assert_eq!(serde_json::from_str::<Symbol>(&json).unwrap(), sym);
            }
            Err(reason) => {
                prop_assert!(!symbol_oracle(&s), "refused {s:?}");
                prop_assert_eq!(reason, Reason::InvalidSymbol);
            }
        }
    }

    #[test]
    fn every_valid_symbol_is_accepted(s in valid_symbol()) {
        prop_assert!(Symbol::parse(&s).is_ok(), "{s:?}");
    }

    #[test]
    fn timeframes_are_exactly_the_21_names(s in prop_oneof![
        "(M|H|D|W|MN)[0-9]{1,2}",
        "[mhdwMHDWN1-9 ]{0,4}",
        any::<String>(),
    ]) {
        let names: Vec<&str> = gateway_core::TIMEFRAMES.iter().map(|t| t.as_str()).collect();
        match Timeframe::parse(&s) {
            Ok(t) => {
                prop_assert!(names.contains(&s.as_str()));
                prop_assert_eq!(t.as_str(), s.as_str());
                prop_assert_eq!(t.to_string().parse::<Timeframe>(), Ok(t));
            }
            Err(reason) => {
                prop_assert!(!names.contains(&s.as_str()), "refused {s:?}");
                prop_assert_eq!(reason, Reason::InvalidTimeframe);
            }
        }
    }

    #[test]
    fn topics_and_patterns_agree_with_the_grammar(s in prop_oneof![near_topic(), any::<String>()]) {
        prop_assert_eq!(Topic::parse(&s).is_ok(), topic_oracle(&s), "topic {:?}", s);
        prop_assert_eq!(TopicPattern::parse(&s).is_ok(), pattern_oracle(&s), "pattern {:?}", s);
        if let Ok(t) = Topic::parse(&s) {
            prop_assert_eq!(t.as_str(), s.as_str());
            // A concrete topic is also a pattern that matches itself, and its bare type matches it.
            let exact = TopicPattern::parse(&s).unwrap();
            prop_assert!(exact.matches(&t));
            let ty = EventType::parse(s.split(':').next().unwrap()).unwrap();
            prop_assert_eq!(t.event_type(), ty);
            prop_assert!(TopicPattern::parse(ty.as_str()).unwrap().matches(&t));
        }
    }

    #[test]
    fn patterns_match_by_type_and_prefix(
        ty in prop::sample::select(TYPES.to_vec()),
        other in prop::sample::select(TYPES.to_vec()),
        key in valid_key(),
        cut in 1usize..64,
    ) {
        let topic = Topic::parse(&format!("{ty}:{key}")).unwrap();
        let prefix: String = key.chars().take(cut).collect();
        let by_prefix = TopicPattern::parse(&format!("{other}:{prefix}*")).unwrap();
        prop_assert_eq!(by_prefix.matches(&topic), ty == other);
        let any_key = TopicPattern::parse(&format!("{other}:*")).unwrap();
        prop_assert_eq!(any_key.matches(&topic), ty == other);
        let exact = TopicPattern::parse(&format!("{other}:{prefix}")).unwrap();
        prop_assert_eq!(exact.matches(&topic), ty == other && prefix == key);
        // A bare `system` pattern names exactly one topic; keyed patterns with a wildcard none.
        prop_assert!(by_prefix.exact().is_none());
    }

    #[test]
    fn accepted_paths_never_decode_into_a_traversal(raw in prop_oneof![attack_path(), any::<String>()]) {
        if check_path(&raw).is_ok() {
            let mut bytes = raw.as_bytes().to_vec();
            for round in 0..4 {
                prop_assert!(!dangerous(&bytes), "{raw:?} decodes {round} times into {:?}", String::from_utf8_lossy(&bytes));
                bytes = decode(&bytes);
            }
        } else {
            prop_assert_eq!(check_path(&raw), Err(Reason::UnsafePath));
        }
    }

    #[test]
    fn plain_paths_are_accepted(segments in prop::collection::vec("[A-Za-z0-9_-][A-Za-z0-9._-]{0,12}", 0..8)) {
        // Segments of ordinary characters, none of them `.` or `..`.
        let segments: Vec<String> = segments.into_iter().filter(|s| s != "." && s != "..").collect();
        let raw = format!("/api/{}", segments.join("/"));
        prop_assert_eq!(check_path(&raw), Ok(()), "{:?}", raw);
    }
}
