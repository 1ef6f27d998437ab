//! Which way a UDP socket listener reads its socket: batched `recvmmsg`, or io_uring
//! multishot `recvmsg` with a provided-buffer ring ([`super::udp_uring`]).
//!
//! `capture.socket_receive` asks for one (`auto` takes the one measured faster, see
//! docs/adr/0033-io-uring-socket-receive.md); io_uring is probed first, and where it is
//! unavailable (`kernel.io_uring_disabled`, a container seccomp profile, an old kernel)
//! the listener uses `recvmmsg` and says why, in the log and in `/api/v1/stats`.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use super::ListenerKind;
use super::udp::MultiReceiver;
use super::udp_uring::{self, UringReceiver};

/// Largest UDP payload (65,507 bytes over IPv4) rounded up: no datagram is cut.
pub const DATAGRAM_BUFFER_BYTES: usize = 64 * 1024;
/// How long a waiting receive blocks for the first datagram, so that the thread notices
/// shutdown and closes old batches even when nothing arrives (the socket's read timeout
/// does the same for `recvmmsg`).
pub const RECEIVE_WAIT: Duration = Duration::from_millis(10);

/// `capture.socket_receive`: how socket listeners read UDP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SocketReceive {
    /// The method measured faster ([`AUTO_METHOD`]), falling back to `recvmmsg` where
    /// io_uring is unavailable.
    #[default]
    Auto,
    /// Batched `recvmmsg` only.
    Recvmmsg,
    /// io_uring multishot receive; `recvmmsg` (with a warning) where io_uring is unavailable.
    IoUring,
}

impl SocketReceive {
    pub const fn label(self) -> &'static str {
        match self {
            SocketReceive::Auto => "auto",
            SocketReceive::Recvmmsg => "recvmmsg",
            SocketReceive::IoUring => "io_uring",
        }
    }

    pub fn from_label(label: &str) -> Option<Self> {
        [SocketReceive::Auto, SocketReceive::Recvmmsg, SocketReceive::IoUring]
            .into_iter()
            .find(|setting| setting.label() == label)
    }
}

/// The receive method a listener runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiveMethod {
    Recvmmsg,
    IoUring,
}

impl ReceiveMethod {
    pub const fn label(self) -> &'static str {
        match self {
            ReceiveMethod::Recvmmsg => "recvmmsg",
            ReceiveMethod::IoUring => "io_uring",
        }
    }
}

/// What `auto` picks: the method with less receiver CPU per datagram in
/// `benches/udp_receive.rs`. On loopback here recvmmsg measured 616 ns and io_uring 648 ns
/// (docs/performance.md): no gain to pay io_uring's cost in memory and in exposure to
/// seccomp profiles for. Measure again on the target NIC and flip this when it wins.
pub const AUTO_METHOD: ReceiveMethod = ReceiveMethod::Recvmmsg;

/// The method a listener got, and why not io_uring when it was wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiveChoice {
    pub method: ReceiveMethod,
    pub fallback: Option<String>,
}

/// Whether io_uring multishot receive works in this process (and thread: a seccomp
/// filter is per thread); the error says why not.
pub fn probe_io_uring() -> io::Result<()> {
    udp_uring::probe()
}

/// Decides the method for `setting`, probing io_uring when it is wanted.
pub fn choose(setting: SocketReceive) -> ReceiveChoice {
    choose_with(setting, udp_uring::probe)
}

/// As [`choose`], with the probe given (tests make it fail).
pub fn choose_with(setting: SocketReceive, probe: impl FnOnce() -> io::Result<()>) -> ReceiveChoice {
    let wanted = match setting {
        SocketReceive::Auto => AUTO_METHOD,
        SocketReceive::Recvmmsg => ReceiveMethod::Recvmmsg,
        SocketReceive::IoUring => ReceiveMethod::IoUring,
    };
    if wanted == ReceiveMethod::Recvmmsg {
        return ReceiveChoice { method: wanted, fallback: None };
    }
    match probe() {
        Ok(()) => ReceiveChoice { method: ReceiveMethod::IoUring, fallback: None },
        Err(error) => {
            ReceiveChoice { method: ReceiveMethod::Recvmmsg, fallback: Some(unavailable_reason(&error)) }
        }
    }
}

/// Why io_uring cannot be used, naming the usual culprits.
fn unavailable_reason(error: &io::Error) -> String {
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| value != "0");
    match (error.raw_os_error(), sysctl) {
        (_, Some(value)) => format!("io_uring unavailable: {error} (kernel.io_uring_disabled = {value})"),
        (Some(libc::EPERM | libc::ENOSYS), None) => {
            format!("io_uring unavailable: {error} (refused by a seccomp profile or the kernel)")
        }
        _ => format!("io_uring unavailable: {error}"),
    }
}

/// What one receive call read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Datagrams handed to the caller.
    pub datagrams: usize,
    /// Of those, how many were longer than the buffer and arrive cut.
    pub truncated: u64,
}

enum Inner {
    Recvmmsg(MultiReceiver),
    IoUring(Box<UringReceiver>),
}

/// A UDP socket's receiver, by either method.
pub struct UdpReceiver {
    inner: Inner,
}

impl UdpReceiver {
    /// A receiver for `socket` by `method`, with buffers of `datagram_bytes` (longer
    /// datagrams are cut and counted as truncated).
    pub fn new(method: ReceiveMethod, socket: &UdpSocket, datagram_bytes: usize) -> io::Result<Self> {
        let inner = match method {
            ReceiveMethod::Recvmmsg => Inner::Recvmmsg(MultiReceiver::new(datagram_bytes)),
            ReceiveMethod::IoUring => Inner::IoUring(Box::new(UringReceiver::new(socket, datagram_bytes)?)),
        };
        Ok(Self { inner })
    }

    /// The receiver `choice` asks for; when io_uring fails here after the probe passed
    /// (memory limits), a `recvmmsg` one and the choice amended to say why.
    pub(crate) fn for_listener(choice: &ReceiveChoice, socket: &UdpSocket) -> (Self, ReceiveChoice) {
        match Self::new(choice.method, socket, DATAGRAM_BUFFER_BYTES) {
            Ok(receiver) => (receiver, choice.clone()),
            Err(error) => (
                Self { inner: Inner::Recvmmsg(MultiReceiver::new(DATAGRAM_BUFFER_BYTES)) },
                ReceiveChoice { method: ReceiveMethod::Recvmmsg, fallback: Some(unavailable_reason(&error)) },
            ),
        }
    }

    pub fn method(&self) -> ReceiveMethod {
        match self.inner {
            Inner::Recvmmsg(_) => ReceiveMethod::Recvmmsg,
            Inner::IoUring(_) => ReceiveMethod::IoUring,
        }
    }

    /// Call once on the thread that will receive (io_uring makes it the ring's issuer).
    pub fn enable(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Recvmmsg(_) => Ok(()),
            Inner::IoUring(receiver) => receiver.enable(),
        }
    }

    /// Reads a batch of datagrams, blocking up to [`RECEIVE_WAIT`] for the first one when
    /// `wait`. `on_datagram` sees each payload, its source and whether it was cut.
    /// Nothing read: an error of kind `WouldBlock` or `TimedOut`.
    pub fn receive(
        &mut self,
        socket: &UdpSocket,
        wait: bool,
        mut on_datagram: impl FnMut(&[u8], SocketAddr, bool),
    ) -> io::Result<Received> {
        match &mut self.inner {
            Inner::Recvmmsg(receiver) => {
                let flags = if wait { libc::MSG_WAITFORONE } else { libc::MSG_DONTWAIT };
                let count = receiver.receive(socket, flags)?;
                let mut received = Received { datagrams: count, truncated: 0 };
                for (payload, source, truncated) in receiver.datagrams(count) {
                    received.truncated += u64::from(truncated);
                    on_datagram(payload, source, truncated);
                }
                Ok(received)
            }
            Inner::IoUring(receiver) => receiver.receive(wait.then_some(RECEIVE_WAIT), on_datagram),
        }
    }
}

/// Decides and builds a listener's receiver, and says at start-up which method it got.
pub(crate) fn receiver_for(
    kind: ListenerKind,
    setting: SocketReceive,
    socket: &UdpSocket,
) -> (UdpReceiver, ReceiveChoice) {
    let (receiver, choice) = UdpReceiver::for_listener(&choose(setting), socket);
    match &choice.fallback {
        Some(reason) => tracing::warn!(
            listener = kind.label(),
            socket_receive = choice.method.label(),
            reason = reason.as_str(),
            "io_uring receive is unavailable; the listener uses recvmmsg."
        ),
        None => tracing::info!(
            listener = kind.label(),
            socket_receive = choice.method.label(),
            setting = setting.label(),
            "UDP receive method chosen."
        ),
    }
    (receiver, choice)
}

/// Makes the receiving thread the ring's issuer; should that fail, the thread reads with
/// `recvmmsg` instead (logged), rather than not at all.
pub(crate) fn enable_or_fall_back(receiver: &mut UdpReceiver, kind: ListenerKind) {
    if let Err(error) = receiver.enable() {
        tracing::warn!(listener = kind.label(), error = %error, "Cannot enable the io_uring receiver; using recvmmsg.");
        receiver.inner = Inner::Recvmmsg(MultiReceiver::new(DATAGRAM_BUFFER_BYTES));
    }
}

/// True for the errors that only mean "nothing arrived".
pub(crate) fn is_idle(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recvmmsg_is_chosen_without_probing() {
        let choice = choose_with(SocketReceive::Recvmmsg, || panic!("probed"));
        assert_eq!(choice, ReceiveChoice { method: ReceiveMethod::Recvmmsg, fallback: None });
    }

    #[test]
    fn a_refused_probe_falls_back_to_recvmmsg_and_says_why() {
        for setting in [SocketReceive::IoUring, SocketReceive::Auto] {
            let choice = choose_with(setting, || Err(io::Error::from_raw_os_error(libc::EPERM)));
            if setting == SocketReceive::Auto && AUTO_METHOD == ReceiveMethod::Recvmmsg {
                assert_eq!(choice.fallback, None);
                continue;
            }
            assert_eq!(choice.method, ReceiveMethod::Recvmmsg);
            let reason = choice.fallback.unwrap();
            assert!(reason.contains("io_uring unavailable"), "{reason}");
        }
    }

    #[test]
    fn settings_round_trip_through_their_labels() {
        for setting in [SocketReceive::Auto, SocketReceive::Recvmmsg, SocketReceive::IoUring] {
            assert_eq!(SocketReceive::from_label(setting.label()), Some(setting));
        }
        assert_eq!(SocketReceive::from_label("epoll"), None);
    }

    fn pair() -> (UdpSocket, UdpSocket) {
        let receiving = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiving.set_read_timeout(Some(RECEIVE_WAIT)).unwrap();
        let sending = UdpSocket::bind("127.0.0.1:0").unwrap();
        sending.connect(receiving.local_addr().unwrap()).unwrap();
        (receiving, sending)
    }

    fn methods() -> Vec<ReceiveMethod> {
        match udp_uring::probe() {
            Ok(()) => vec![ReceiveMethod::Recvmmsg, ReceiveMethod::IoUring],
            Err(error) => {
                eprintln!("io_uring skipped: {error}");
                vec![ReceiveMethod::Recvmmsg]
            }
        }
    }

    /// Receives until `count` datagrams came, or a few empty waits in a row.
    fn collect(
        receiver: &mut UdpReceiver,
        socket: &UdpSocket,
        count: usize,
    ) -> Vec<(Vec<u8>, SocketAddr, bool)> {
        let mut seen = Vec::new();
        let mut idle = 0;
        while seen.len() < count && idle < 200 {
            match receiver
                .receive(socket, true, |payload, source, cut| seen.push((payload.to_vec(), source, cut)))
            {
                Ok(_) => idle = 0,
                Err(error) if is_idle(&error) => idle += 1,
                Err(error) => panic!("{error}"),
            }
        }
        seen
    }

    #[test]
    fn both_methods_return_payloads_and_sources() {
        for method in methods() {
            let (receiving, sending) = pair();
            let mut receiver = UdpReceiver::new(method, &receiving, DATAGRAM_BUFFER_BYTES).unwrap();
            receiver.enable().unwrap();
            assert_eq!(receiver.method(), method);
            for index in 0..100u32 {
                sending.send(format!("datagram {index}").as_bytes()).unwrap();
            }
            let seen = collect(&mut receiver, &receiving, 100);
            assert_eq!(seen.len(), 100, "{method:?}");
            for (index, (payload, source, cut)) in seen.iter().enumerate() {
                assert_eq!(payload, format!("datagram {index}").as_bytes(), "{method:?}");
                assert_eq!(*source, sending.local_addr().unwrap(), "{method:?}");
                assert!(!cut);
            }
        }
    }

    #[test]
    fn a_datagram_longer_than_the_buffer_is_cut_and_reported_truncated() {
        for method in methods() {
            let (receiving, sending) = pair();
            let mut receiver = UdpReceiver::new(method, &receiving, 100).unwrap();
            receiver.enable().unwrap();
            sending.send(&[b'x'; 1000]).unwrap();
            sending.send(b"short").unwrap();
            let seen = collect(&mut receiver, &receiving, 2);
            assert_eq!(seen.len(), 2, "{method:?}");
            assert_eq!(seen[0].0.len(), 100, "{method:?}");
            assert!(seen[0].2, "{method:?}: not reported truncated");
            assert_eq!((seen[1].0.as_slice(), seen[1].2), (&b"short"[..], false), "{method:?}");
        }
    }
}
