//! The subscription index: which client slots a topic reaches, by exact topic, bare type and
//! key prefix, so publishing costs O(matching clients) instead of O(all subscriptions).

use std::collections::HashMap;

use gateway_core::{EventType, TopicPattern};

/// Position of an event type in per-type tables.
pub(crate) fn type_index(ty: EventType) -> usize {
    match ty {
        EventType::Tick => 0,
        EventType::StrategySignal => 1,
        EventType::Position => 2,
        EventType::ServiceStatus => 3,
        EventType::System => 4,
    }
}

/// How a pattern selects topics.
enum Selector<'a> {
    Any(usize),
    Exact(&'a str),
    Prefix(usize, &'a str),
}

fn selector(pattern: &TopicPattern) -> Option<Selector<'_>> {
    let raw = pattern.as_str();
    let (ty, key) = match raw.split_once(':') {
        Some((ty, key)) => (ty, Some(key)),
        None => (raw, None),
    };
    let ti = type_index(EventType::parse(ty).ok()?);
    Some(match key {
        None | Some("*") => Selector::Any(ti),
        Some(k) => match k.strip_suffix('*') {
            Some(prefix) => Selector::Prefix(ti, prefix),
            None => Selector::Exact(raw),
        },
    })
}

/// Client slots per selector. A client appears once per pattern it holds; the publisher dedupes.
#[derive(Default)]
pub(crate) struct SubscriptionIndex {
    exact: HashMap<Box<str>, Vec<usize>>,
    any: [Vec<usize>; 5],
    prefix: [Vec<(Box<str>, usize)>; 5],
}

impl SubscriptionIndex {
    /// Records that `slot` holds `pattern`.
    pub(crate) fn add(&mut self, pattern: &TopicPattern, slot: usize) {
        match selector(pattern) {
            Some(Selector::Any(ti)) => self.any[ti].push(slot),
            Some(Selector::Exact(topic)) => self.exact.entry(Box::from(topic)).or_default().push(slot),
            Some(Selector::Prefix(ti, p)) => self.prefix[ti].push((Box::from(p), slot)),
            None => log::warn!("hub: cannot index pattern {pattern}"),
        }
    }

    /// Forgets one occurrence of `pattern` held by `slot`.
    pub(crate) fn remove(&mut self, pattern: &TopicPattern, slot: usize) {
        match selector(pattern) {
            Some(Selector::Any(ti)) => {
                if let Some(i) = self.any[ti].iter().position(|&s| s == slot) {
                    self.any[ti].swap_remove(i);
                }
            }
            Some(Selector::Exact(topic)) => {
                if let Some(slots) = self.exact.get_mut(topic) {
                    if let Some(i) = slots.iter().position(|&s| s == slot) {
                        slots.swap_remove(i);
                    }
                    if slots.is_empty() {
                        self.exact.remove(topic);
                    }
                }
            }
            Some(Selector::Prefix(ti, p)) => {
                if let Some(i) = self.prefix[ti].iter().position(|(q, s)| *s == slot && &**q == p) {
                    self.prefix[ti].swap_remove(i);
                }
            }
            None => {}
        }
    }

    /// Calls `f` with every slot whose patterns match the topic `name` (type index `ti`, key
    /// `key`); a slot may be reported more than once.
    pub(crate) fn for_each_match(&self, ti: usize, name: &str, key: Option<&str>, mut f: impl FnMut(usize)) {
        if let Some(slots) = self.exact.get(name) {
            slots.iter().for_each(|&s| f(s));
        }
        self.any[ti].iter().for_each(|&s| f(s));
        if let Some(key) = key {
            for (prefix, slot) in &self.prefix[ti] {
                if key.starts_with(&**prefix) {
                    f(*slot);
                }
            }
        }
    }

    /// Whether nothing is indexed (for tests).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.any.iter().all(Vec::is_empty) && self.prefix.iter().all(Vec::is_empty)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn matches(index: &SubscriptionIndex, topic: &str) -> Vec<usize> {
        let t = gateway_core::Topic::parse(topic).unwrap();
        let mut out = Vec::new();
        index.for_each_match(type_index(t.event_type()), t.as_str(), t.key(), |s| out.push(s));
        out.sort_unstable();
        out
    }

    #[test]
    fn index_agrees_with_pattern_matching_and_empties_on_removal() {
        let patterns = ["tick", "tick:EUR*", "tick:EURUSD", "system", "position:*", "service_status:data"];
        let topics = ["tick:EURUSD", "tick:EURJPY", "tick:GBPUSD", "system", "position:X", "service_status:data"];
        let mut index = SubscriptionIndex::default();
        let parsed: Vec<TopicPattern> = patterns.iter().map(|p| TopicPattern::parse(p).unwrap()).collect();
        for (slot, p) in parsed.iter().enumerate() {
            index.add(p, slot);
        }
        for topic in topics {
            let t = gateway_core::Topic::parse(topic).unwrap();
            let want: Vec<usize> = (0..parsed.len()).filter(|&s| parsed[s].matches(&t)).collect();
            assert_eq!(matches(&index, topic), want, "{topic}");
        }
        for (slot, p) in parsed.iter().enumerate() {
            index.remove(p, slot);
        }
        assert!(index.is_empty());
    }
}
