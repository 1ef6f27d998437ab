//! Per-listener counters.
//!
//! Each listener thread is the only writer of its counters and adds to them once per
//! receive call or batch, not per message; readers (the control plane's `/metrics` and
//! `/api/v1/stats`) load them with relaxed ordering, which is enough for monotonic
//! counters read for display.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::listener::udp_receive::ReceiveChoice;
use crate::listener::{CapturePath, ListenerKind};

/// The counters of every listener kind run so far; grows when a listener of a new kind
/// starts at run time (read for display, written rarely).
pub type SharedListenerCounters = std::sync::Arc<std::sync::RwLock<Vec<std::sync::Arc<ListenerCounters>>>>;

/// A snapshot of the shared list.
pub fn snapshot<T: Clone>(shared: &std::sync::RwLock<Vec<T>>) -> Vec<T> {
    shared.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// What one listener has seen, accepted and dropped, and why.
#[derive(Debug)]
pub struct ListenerCounters {
    pub listener: ListenerKind,
    pub capture: CapturePath,
    /// Messages (datagrams or frames) received.
    pub received_messages: AtomicU64,
    /// Payload bytes received.
    pub received_bytes: AtomicU64,
    /// Messages stored with a parse-error flag (kept, not dropped).
    pub parse_errors: AtomicU64,
    /// Messages dropped because the hand-off ring to the control plane was full.
    pub dropped_handoff_full: AtomicU64,
    /// Messages dropped at shutdown because the control plane no longer consumed.
    pub dropped_shutdown: AtomicU64,
    /// Batches handed to the control plane.
    pub handed_off_batches: AtomicU64,
    /// TCP: frames cut to the maximum frame size; UDP: datagrams longer than the receive
    /// buffer (kept, truncated).
    pub truncated_frames: AtomicU64,
    /// TCP: frames cut short by the end of their connection (kept).
    pub incomplete_frames: AtomicU64,
    /// TCP: bad octet counts the framer resynchronised after.
    pub framing_errors: AtomicU64,
    /// TCP: connections accepted so far.
    pub connections_accepted: AtomicU64,
    /// TCP: connections closed so far (active = accepted - closed).
    pub connections_closed: AtomicU64,
    /// TCP: connections closed by us because their framing could not be recovered.
    pub connections_closed_hopeless: AtomicU64,
    /// TLS: handshakes completed.
    pub tls_handshakes_completed: AtomicU64,
    /// TLS: handshakes that failed (garbage before the handshake, no common protocol
    /// version or cipher suite, a client that hung up mid-handshake).
    pub tls_handshake_failures: AtomicU64,
    /// TLS: clients refused because they presented no certificate, or one the configured
    /// client CA did not sign.
    pub tls_client_certificates_rejected: AtomicU64,
    /// TLS: clients disconnected because their handshake took longer than the timeout.
    pub tls_handshake_timeouts: AtomicU64,
    /// Receive calls that failed with an error other than "nothing to read"; AF_XDP:
    /// frames that held no readable UDP datagram.
    pub receive_errors: AtomicU64,
    /// AF_XDP: frames the kernel dropped at this listener's sockets because an RX ring was
    /// full or the fill ring had no free frame (the sockets' XDP statistics).
    pub dropped_capture_full: AtomicU64,
    /// Stream listeners: journal writes that failed (what was read then is not protected
    /// against a crash); after a failed segment switch the journal is turned off.
    pub journal_errors: AtomicU64,
    /// Socket path: messages (datagrams) dropped, and connections refused, because the
    /// source is on the deny list or not on a non-empty allow list (`crate::sources`).
    pub dropped_denied: AtomicU64,
    /// Socket path: datagrams dropped because the source's token bucket was empty.
    pub dropped_rate_limited: AtomicU64,
    /// UDP socket listeners: the receive method the listener runs with now, and why not
    /// io_uring when it was wanted (set when a listener of this kind starts).
    pub socket_receive: std::sync::Mutex<Option<ReceiveChoice>>,
}

impl ListenerCounters {
    pub fn new(listener: ListenerKind, capture: CapturePath) -> Self {
        Self {
            listener,
            capture,
            received_messages: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            parse_errors: AtomicU64::new(0),
            dropped_handoff_full: AtomicU64::new(0),
            dropped_shutdown: AtomicU64::new(0),
            handed_off_batches: AtomicU64::new(0),
            truncated_frames: AtomicU64::new(0),
            incomplete_frames: AtomicU64::new(0),
            framing_errors: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_closed: AtomicU64::new(0),
            connections_closed_hopeless: AtomicU64::new(0),
            tls_handshakes_completed: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            tls_client_certificates_rejected: AtomicU64::new(0),
            tls_handshake_timeouts: AtomicU64::new(0),
            receive_errors: AtomicU64::new(0),
            dropped_capture_full: AtomicU64::new(0),
            journal_errors: AtomicU64::new(0),
            dropped_denied: AtomicU64::new(0),
            dropped_rate_limited: AtomicU64::new(0),
            socket_receive: std::sync::Mutex::new(None),
        }
    }

    /// The receive method in force (see [`Self::socket_receive`]).
    pub fn socket_receive(&self) -> Option<ReceiveChoice> {
        self.socket_receive.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub(crate) fn set_socket_receive(&self, choice: &ReceiveChoice) {
        *self.socket_receive.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(choice.clone());
    }

    /// Adds `value` to `counter`; the single-writer discipline makes relaxed enough.
    #[inline]
    pub fn add(counter: &AtomicU64, value: u64) {
        if value != 0 {
            counter.fetch_add(value, Ordering::Relaxed);
        }
    }

    /// Reads a counter for display.
    #[inline]
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn connections_active(&self) -> u64 {
        Self::read(&self.connections_accepted).saturating_sub(Self::read(&self.connections_closed))
    }
}
