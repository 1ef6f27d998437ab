//! Data-plane tests: listeners on real loopback sockets, the hand-off, and the XDP
//! program run by the kernel through BPF_PROG_TEST_RUN.
mod cores;
mod listeners;
mod metric_listeners;
mod socket_receive;
mod xdp;
