//! The XDP program run by the kernel: verdicts and counters through BPF_PROG_TEST_RUN,
//! and steering to AF_XDP on a veth pair in namespaces of its own.
mod fallback;
mod frames;
mod metrics;
mod netns;
mod verdicts;
