//! The per-client outbound queue: bounded, conflating ticks in place, shared between the hub task
//! (the only producer) and the client's adapter (the only consumer). The lock is held only for a
//! push or a pop, never across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::frame::{Frame, Outbound};

/// A client's queue; see the crate docs for the overflow rules.
pub(crate) struct ClientQueue {
    state: Mutex<QueueState>,
    notify: Notify,
}

struct QueueState {
    entries: VecDeque<Entry>,
    /// Absolute position of `entries[0]`; positions never repeat.
    head_pos: u64,
    /// Tick topic → absolute position of its newest queued tick.
    latest_tick: HashMap<Arc<str>, u64>,
    /// Entries that do not count against the capacity (replies, replay).
    forced: usize,
    capacity: usize,
    /// Set by the hub: hand out this close next, then nothing.
    close: Option<(u16, String)>,
    /// No more pushes are accepted (closed by the hub, or the receiver is gone).
    finished: bool,
}

struct Entry {
    frame: Frame,
    forced: bool,
}

/// The result of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushOutcome {
    /// Queued; `dropped` older ticks were conflated away to make room.
    Queued {
        /// Ticks replaced or compacted away.
        dropped: u64,
    },
    /// The queue is full of events that cannot be conflated: the client must be closed.
    Overflow,
    /// The queue is closed; the frame was discarded.
    Closed,
}

impl ClientQueue {
    /// An empty queue holding up to `capacity` live frames.
    pub(crate) fn new(capacity: usize) -> ClientQueue {
        ClientQueue {
            state: Mutex::new(QueueState {
                entries: VecDeque::new(),
                head_pos: 0,
                latest_tick: HashMap::new(),
                forced: 0,
                capacity: capacity.max(1),
                close: None,
                finished: false,
            }),
            notify: Notify::new(),
        }
    }

    /// Queues a live frame, conflating ticks when full.
    pub(crate) fn push(&self, frame: Frame) -> PushOutcome {
        self.push_entry(frame, false)
    }

    /// Queues a frame that does not count against the capacity (reply, replay, latest tick).
    pub(crate) fn push_forced(&self, frame: Frame) -> PushOutcome {
        self.push_entry(frame, true)
    }

    fn push_entry(&self, frame: Frame, forced: bool) -> PushOutcome {
        let (outcome, wake) = {
            let mut q = self.state.lock();
            let was_empty = q.entries.is_empty();
            let outcome = q.push(frame, forced);
            (outcome, was_empty && matches!(outcome, PushOutcome::Queued { .. }))
        };
        if wake {
            self.notify.notify_one();
        }
        outcome
    }

    /// Empties the queue and makes the consumer receive `Close { code, reason }` next.
    pub(crate) fn close(&self, code: u16, reason: &str) {
        {
            let mut q = self.state.lock();
            if q.finished {
                return;
            }
            q.entries.clear();
            q.latest_tick.clear();
            q.forced = 0;
            q.finished = true;
            q.close = Some((code, reason.to_owned()));
        }
        self.notify.notify_one();
    }

    /// The receiver is gone: refuse further pushes and free the frames.
    pub(crate) fn detach(&self) {
        let mut q = self.state.lock();
        q.finished = true;
        q.close = None;
        q.entries.clear();
        q.latest_tick.clear();
        q.forced = 0;
    }

    /// Frames waiting.
    pub(crate) fn len(&self) -> usize {
        self.state.lock().entries.len()
    }

    /// Takes the next item without waiting: `Some(Some(_))` an item, `Some(None)` the end,
    /// `None` nothing yet.
    pub(crate) fn try_pop(&self) -> Option<Option<Outbound>> {
        let mut q = self.state.lock();
        if let Some(frame) = q.pop() {
            return Some(Some(Outbound::Frame(frame)));
        }
        if let Some((code, reason)) = q.close.take() {
            return Some(Some(Outbound::Close { code, reason }));
        }
        if q.finished { Some(None) } else { None }
    }

    /// Moves up to `max` frames into `buf` under one lock; returns how many.
    pub(crate) fn pop_frames(&self, buf: &mut Vec<Frame>, max: usize) -> usize {
        let mut q = self.state.lock();
        let mut n = 0;
        while n < max {
            let Some(frame) = q.pop() else { break };
            buf.push(frame);
            n += 1;
        }
        n
    }

    /// Waits for the next item; `None` after the close has been handed out. Cancel safe: an item
    /// is only taken from the queue when it is returned.
    pub(crate) async fn pop(&self) -> Option<Outbound> {
        loop {
            if let Some(item) = self.try_pop() {
                return item;
            }
            self.notify.notified().await;
        }
    }
}

impl QueueState {
    fn push(&mut self, frame: Frame, forced: bool) -> PushOutcome {
        if self.finished {
            return PushOutcome::Closed;
        }
        let mut dropped = 0;
        if !forced && self.entries.len() - self.forced >= self.capacity {
            match frame.tick_key() {
                Some(key) => {
                    if let Some(&pos) = self.latest_tick.get(key) {
                        // Replace the newest queued tick of this topic where it stands.
                        let idx = (pos - self.head_pos) as usize;
                        if let Some(entry) = self.entries.get_mut(idx) {
                            entry.frame = frame;
                            return PushOutcome::Queued { dropped: 1 };
                        }
                    }
                    // No tick of this topic is queued: append beyond the bound (at most one per topic).
                }
                None => {
                    dropped = self.compact();
                    if self.entries.len() - self.forced >= self.capacity {
                        return PushOutcome::Overflow;
                    }
                }
            }
        }
        let pos = self.head_pos + self.entries.len() as u64;
        if let Some(key) = frame.tick_key() {
            self.latest_tick.insert(key.clone(), pos);
        }
        if forced {
            self.forced += 1;
        }
        self.entries.push_back(Entry { frame, forced });
        PushOutcome::Queued { dropped }
    }

    fn pop(&mut self) -> Option<Frame> {
        let entry = self.entries.pop_front()?;
        let pos = self.head_pos;
        self.head_pos += 1;
        if entry.forced {
            self.forced -= 1;
        }
        if let Some(key) = entry.frame.tick_key()
            && self.latest_tick.get(key) == Some(&pos)
        {
            self.latest_tick.remove(key);
        }
        Some(entry.frame)
    }

    /// Drops every queued tick that is not the newest of its topic; returns how many.
    fn compact(&mut self) -> u64 {
        let before = self.entries.len();
        let head = self.head_pos;
        let latest = &self.latest_tick;
        let mut i = 0u64;
        self.entries.retain(|e| {
            let pos = head + i;
            i += 1;
            e.frame.tick_key().is_none_or(|k| latest.get(k) == Some(&pos))
        });
        let removed = before - self.entries.len();
        if removed > 0 {
            self.latest_tick.clear();
            self.forced = 0;
            for (i, e) in self.entries.iter().enumerate() {
                if let Some(k) = e.frame.tick_key() {
                    self.latest_tick.insert(k.clone(), head + i as u64);
                }
                if e.forced {
                    self.forced += 1;
                }
            }
        }
        removed as u64
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn tick(sym: &str, seq: u64) -> Frame {
        Frame::event(format!("{sym}#{seq}"), Arc::from(format!("tick:{sym}")), seq, true)
    }

    fn pos(seq: u64) -> Frame {
        Frame::event(format!("pos#{seq}"), Arc::from("position:X"), seq, false)
    }

    fn drain(q: &ClientQueue) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Some(Outbound::Frame(f))) = q.try_pop() {
            out.push(f.as_str().to_owned());
        }
        out
    }

    #[test]
    fn full_queue_replaces_newest_tick_of_the_topic_in_place() {
        let q = ClientQueue::new(3);
        assert_eq!(q.push(tick("A", 1)), PushOutcome::Queued { dropped: 0 });
        assert_eq!(q.push(tick("B", 1)), PushOutcome::Queued { dropped: 0 });
        assert_eq!(q.push(tick("A", 2)), PushOutcome::Queued { dropped: 0 });
        assert_eq!(q.push(tick("A", 3)), PushOutcome::Queued { dropped: 1 });
        assert_eq!(q.push(tick("B", 2)), PushOutcome::Queued { dropped: 1 });
        // A tick of a topic with nothing queued goes beyond the bound rather than being lost.
        assert_eq!(q.push(tick("C", 1)), PushOutcome::Queued { dropped: 0 });
        assert_eq!(q.push(tick("C", 2)), PushOutcome::Queued { dropped: 1 });
        assert_eq!(drain(&q), ["A#1", "B#2", "A#3", "C#2"]);
    }

    #[test]
    fn non_tick_overflow_compacts_ticks_first_then_reports_overflow() {
        let q = ClientQueue::new(3);
        q.push(tick("A", 1));
        q.push(tick("A", 2));
        q.push(tick("A", 3));
        assert_eq!(q.push(pos(1)), PushOutcome::Queued { dropped: 2 });
        assert_eq!(q.push(pos(2)), PushOutcome::Queued { dropped: 0 });
        assert_eq!(q.push(pos(3)), PushOutcome::Overflow);
        assert_eq!(drain(&q), ["A#3", "pos#1", "pos#2"]);
    }

    #[test]
    fn forced_entries_do_not_count_against_the_bound() {
        let q = ClientQueue::new(2);
        for i in 0..10 {
            assert_eq!(q.push_forced(pos(i)), PushOutcome::Queued { dropped: 0 });
        }
        assert_eq!(q.push(pos(10)), PushOutcome::Queued { dropped: 0 });
        assert_eq!(q.push(pos(11)), PushOutcome::Queued { dropped: 0 });
        assert_eq!(q.push(pos(12)), PushOutcome::Overflow);
        assert_eq!(q.len(), 12);
        let mut buf = Vec::new();
        assert_eq!(q.pop_frames(&mut buf, 100), 12);
        assert_eq!(q.push(pos(13)), PushOutcome::Queued { dropped: 0 });
    }

    #[test]
    fn close_empties_and_ends_the_stream() {
        let q = ClientQueue::new(2);
        q.push(pos(1));
        q.close(4008, "slow consumer");
        assert_eq!(q.push(pos(2)), PushOutcome::Closed);
        match q.try_pop() {
            Some(Some(Outbound::Close { code, reason })) => {
                assert_eq!((code, reason.as_str()), (4008, "slow consumer"))
            }
            other => panic!("expected close, got {other:?}"),
        }
        assert!(matches!(q.try_pop(), Some(None)));
    }

    #[tokio::test]
    async fn pop_waits_for_a_push_from_another_task() {
        let q = Arc::new(ClientQueue::new(4));
        let q2 = q.clone();
        let reader = tokio::spawn(async move { q2.pop().await });
        tokio::task::yield_now().await;
        q.push(pos(7));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), reader).await.unwrap().unwrap();
        assert!(matches!(got, Some(Outbound::Frame(f)) if f.as_str() == "pos#7"));
    }
}
