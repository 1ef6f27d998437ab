//! Thread per core end to end: the data plane started on two configured CPUs runs one
//! syslog-udp thread pinned to each, and datagrams from many source ports still arrive.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use killkrill_dataplane::batch::BatchLimits;
use killkrill_dataplane::cores::topology::{allowed_cpus, thread_cpus};
use killkrill_dataplane::cores::{CoreSelection, RuntimeChoice, RuntimeKind};
use killkrill_dataplane::listener::ListenerKind;
use killkrill_dataplane::{DataPlane, DataPlaneConfig};

/// This process's threads as (thread id, name).
fn threads() -> Vec<(libc::pid_t, String)> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let tid = entry.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            Some((tid, name.trim_end().to_owned()))
        })
        .collect()
}

/// The CPUs each thread named `name` may run on, once every such thread is pinned to
/// `cpu` or 10 s have passed. Other tests in this binary may run data planes too, so every
/// thread of that name must be pinned alike; and a new thread has its name before it runs
/// its first line, the pinning, so this waits for the condition rather than looking once.
fn cpus_of(name: &str, cpu: usize) -> Vec<Vec<usize>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<Vec<usize>> = threads()
            .into_iter()
            .filter(|(_, thread)| thread == name)
            .filter_map(|(tid, _)| thread_cpus(tid).ok())
            .collect();
        let pinned = !found.is_empty() && found.iter().all(|cpus| cpus == &[cpu]);
        if pinned || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn two_core_config(runtime: RuntimeChoice) -> Option<DataPlaneConfig> {
    let allowed = allowed_cpus().unwrap();
    if !(allowed.contains(&0) && allowed.contains(&1)) {
        eprintln!("skipped: CPUs 0 and 1 are not both allowed here ({allowed:?})");
        return None;
    }
    Some(DataPlaneConfig {
        syslog_udp: Some("127.0.0.1:0".parse().unwrap()),
        syslog_tcp: Some("127.0.0.1:0".parse().unwrap()),
        batch: BatchLimits { max_age: Duration::from_millis(10), ..BatchLimits::default() },
        cores: CoreSelection::List(vec![0, 1]),
        runtime,
        ..DataPlaneConfig::default()
    })
}

fn pinned_threads_receive_from_many_source_ports(runtime: RuntimeChoice) -> RuntimeKind {
    let Some(config) = two_core_config(runtime) else { return RuntimeKind::Threads };
    let mut plane = DataPlane::start(&config).unwrap();
    let status = plane.runtime().clone();
    assert_eq!(status.cores.iter().map(|core| core.cpu).collect::<Vec<_>>(), [0, 1]);
    for cpu in [0, 1] {
        let name = format!("syslog-udp@{cpu}");
        let pinned = cpus_of(&name, cpu);
        assert!(!pinned.is_empty(), "no thread {name}; threads: {:?}", threads());
        assert!(pinned.iter().all(|cpus| cpus == &[cpu]), "{name} pinned to CPU {cpu}: {pinned:?}");
    }
    let tcp = cpus_of("syslog-tcp@0", 0);
    assert!(
        !tcp.is_empty() && tcp.iter().all(|cpus| cpus == &[0]),
        "TCP on the first data-plane core: {tcp:?} {:?}",
        threads()
    );

    let mut consumers = plane.take_consumers();
    assert_eq!(consumers.len(), 3, "one ring per UDP socket (two cores) and one for TCP");
    let target =
        plane.listeners().iter().find(|info| info.kind == ListenerKind::SyslogUdp).unwrap().local_addr;
    let senders: Vec<UdpSocket> = (0..16).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    for (index, sender) in senders.iter().enumerate() {
        sender
            .send_to(format!("<13>Nov 23 10:00:00 host app: from sender {index}").as_bytes(), target)
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut messages = Vec::new();
    while messages.len() < senders.len() && Instant::now() < deadline {
        for consumer in consumers.iter_mut() {
            while let Some(batch) = consumer.pop() {
                messages
                    .extend(batch.iter().map(|entry| String::from_utf8_lossy(entry.message()).into_owned()));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    messages.sort();
    let mut expected: Vec<String> = (0..senders.len()).map(|index| format!("from sender {index}")).collect();
    expected.sort();
    assert_eq!(messages, expected);
    plane.shutdown();
    status.kind
}

/// One test, both runtimes one after the other: thread names are per process.
#[test]
fn syslog_udp_runs_one_pinned_socket_per_configured_core_on_either_runtime() {
    let kind = pinned_threads_receive_from_many_source_ports(RuntimeChoice::Auto);
    eprintln!("auto runtime here: {}", kind.label());
    let kind = pinned_threads_receive_from_many_source_ports(RuntimeChoice::Threads);
    assert_eq!(kind, RuntimeKind::Threads);
}

#[test]
fn cores_outside_the_allowed_set_are_an_error_naming_the_setting() {
    let config = DataPlaneConfig {
        syslog_udp: Some("127.0.0.1:0".parse().unwrap()),
        cores: CoreSelection::List(vec![8000]),
        ..DataPlaneConfig::default()
    };
    let error = DataPlane::start(&config).err().expect("CPU 8000 is not allowed").to_string();
    assert!(error.contains("dataplane.cores") && error.contains("8000"), "{error}");
}
