//! Which listener each steered UDP port belongs to, as the AF_XDP receivers see it.
//!
//! The XDP program decides by port which frames reach the AF_XDP sockets; the receivers
//! decide again by port which listener's parser and counters each frame goes to. The
//! runtime writes this table whenever it writes the program's ports map (live listener
//! changes included); each receiver keeps its own copy and looks at one atomic per pass
//! to see whether it is still current, so the hot path takes no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::xdp::XdpListener;

/// The shared table, written by the runtime.
#[derive(Default)]
pub(crate) struct PortTable {
    generation: AtomicU64,
    ports: Mutex<Vec<(u16, XdpListener)>>,
}

impl PortTable {
    pub(crate) fn new(ports: &[(u16, XdpListener)]) -> Self {
        let table = Self::default();
        table.set(ports);
        table
    }

    pub(crate) fn set(&self, ports: &[(u16, XdpListener)]) {
        *self.ports.lock().unwrap_or_else(PoisonError::into_inner) = ports.to_vec();
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// One receiver's copy of the table.
#[derive(Default)]
pub(crate) struct PortView {
    generation: u64,
    ports: Vec<(u16, XdpListener)>,
}

impl PortView {
    /// Copies the table when it changed since the last look.
    pub(crate) fn refresh(&mut self, table: &PortTable) {
        let generation = table.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.ports.clone_from(&table.ports.lock().unwrap_or_else(PoisonError::into_inner));
            self.generation = generation;
        }
    }

    /// The listener of a destination port; None for a port not steered. A linear scan:
    /// a handful of ports (at most `MAX_PORTS`).
    pub(crate) fn listener(&self, port: u16) -> Option<XdpListener> {
        self.ports.iter().find(|(steered, _)| *steered == port).map(|(_, listener)| *listener)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_follows_the_table_when_it_changes() {
        let table = PortTable::new(&[(514, XdpListener::Syslog)]);
        let mut view = PortView::default();
        view.refresh(&table);
        assert_eq!(view.listener(514), Some(XdpListener::Syslog));
        assert_eq!(view.listener(8125), None);
        table.set(&[(514, XdpListener::Syslog), (8125, XdpListener::Statsd), (8089, XdpListener::Influx)]);
        assert_eq!(view.listener(8125), None, "not refreshed yet");
        view.refresh(&table);
        assert_eq!(view.listener(8125), Some(XdpListener::Statsd));
        assert_eq!(view.listener(8089), Some(XdpListener::Influx));
        table.set(&[]);
        view.refresh(&table);
        assert_eq!(view.listener(514), None);
    }
}
