//! The program's counters by listener and reason, summed over CPUs.

use killkrill_ebpf_common::{COUNTER_SLOTS, XdpListener, XdpReason, counter_index};

/// A snapshot of the XDP counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpCounters {
    slots: [u64; COUNTER_SLOTS as usize],
}

impl Default for XdpCounters {
    fn default() -> Self {
        Self { slots: [0; COUNTER_SLOTS as usize] }
    }
}

impl XdpCounters {
    pub(super) fn from_slots(slots: [u64; COUNTER_SLOTS as usize]) -> Self {
        Self { slots }
    }

    pub fn get(&self, listener: XdpListener, reason: XdpReason) -> u64 {
        self.slots[counter_index(listener, reason) as usize]
    }

    /// Every (listener, reason) pair the program can count, with its value. Pairs that
    /// cannot occur (a listener's `seen`) are left out, so metrics carry no dead series.
    pub fn iter(&self) -> impl Iterator<Item = (XdpListener, XdpReason, u64)> + '_ {
        XdpListener::ALL.into_iter().flat_map(move |listener| {
            XdpReason::ALL
                .into_iter()
                .filter(move |reason| counted_for(listener, *reason))
                .map(move |reason| (listener, reason, self.get(listener, reason)))
        })
    }

    /// `self - earlier`, per slot (saturating: counters only grow while one program runs).
    pub fn since(&self, earlier: &XdpCounters) -> XdpCounters {
        let mut slots = self.slots;
        for (slot, before) in slots.iter_mut().zip(earlier.slots) {
            *slot = slot.saturating_sub(before);
        }
        XdpCounters { slots }
    }
}

/// Which reasons the program counts under which listener.
pub fn counted_for(listener: XdpListener, reason: XdpReason) -> bool {
    match listener {
        XdpListener::None => {
            matches!(reason, XdpReason::Seen | XdpReason::Passed | XdpReason::Fragment | XdpReason::Malformed)
        }
        _ => !matches!(reason, XdpReason::Seen | XdpReason::Passed | XdpReason::Fragment),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iteration_covers_listeners_and_reasons_once() {
        let mut slots = [0u64; COUNTER_SLOTS as usize];
        slots[counter_index(XdpListener::Statsd, XdpReason::Denied) as usize] = 7;
        let counters = XdpCounters::from_slots(slots);
        let all: Vec<_> = counters.iter().collect();
        assert_eq!(all.len(), 4 + 3 * 7);
        assert!(all.contains(&(XdpListener::Statsd, XdpReason::Denied, 7)));
        assert_eq!(all.iter().map(|(_, _, value)| value).sum::<u64>(), 7);
        assert_eq!(counters.since(&counters), XdpCounters::default());
    }
}
