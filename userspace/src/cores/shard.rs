//! Running work on a data-plane core: a glommio executor pinned to it, or, where io_uring
//! is unavailable, a pinned plain thread that blocks in poll(2). This is the only module
//! that names glommio (docs/adr/0032-thread-per-core-runtime.md): another runtime
//! (monoio, compio) is another arm of [`CoreIo`] and [`DatagramWaiter`].

use std::future::Future;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use super::{Core, RuntimeChoice, RuntimeKind, pin};

/// Why io_uring cannot be used here, or None when it can: the sysctl first (it says why
/// in words an operator recognises), then a real `io_uring_setup`, which is what seccomp
/// profiles (Docker, containerd) and old kernels refuse.
pub fn io_uring_unavailable() -> Option<String> {
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        && text.trim() == "2"
    {
        return Some("io_uring is disabled by sysctl kernel.io_uring_disabled = 2".to_owned());
    }
    // struct io_uring_params is 120 bytes; all zero asks for defaults.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes one io_uring_params, which the buffer holds.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4 as libc::c_uint, params.as_mut_ptr()) };
    if fd < 0 {
        let error = std::io::Error::last_os_error();
        let why = match error.raw_os_error() {
            Some(libc::ENOSYS) => "the kernel has no io_uring (ENOSYS)".to_owned(),
            Some(libc::EPERM) => "io_uring_setup is not permitted (EPERM: a seccomp profile, or \
                                  kernel.io_uring_disabled = 1 outside its group)"
                .to_owned(),
            _ => format!("io_uring_setup failed: {error}"),
        };
        return Some(why);
    }
    // SAFETY: fd is the ring this function just made and nothing else holds.
    unsafe { libc::close(fd as RawFd) };
    None
}

/// Memory each executor sets aside for io_uring buffers. glommio's 10 MiB default is for
/// file I/O, which the data plane does not do through it; sockets need none of it.
const EXECUTOR_IO_MEMORY: usize = 1 << 20;

fn executor_on(core: Core) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(Placement::Fixed(core.cpu)).io_memory(EXECUTOR_IO_MEMORY)
}

/// Starts and stops one executor on `core` to see that glommio can run there.
fn probe_executor(core: Core) -> Result<(), String> {
    let started = std::thread::Builder::new()
        .name("runtime-probe".to_owned())
        .spawn(move || {
            let executor = executor_on(core)
                .make()
                .map_err(|error| format!("glommio executor on CPU {} did not start: {error}", core.cpu))?;
            executor.run(async {});
            Ok(())
        })
        .map_err(|error| format!("cannot start a thread: {error}"))?;
    started.join().unwrap_or_else(|_| Err("glommio executor panicked at start".to_owned()))
}

/// Settles which runtime the data plane uses. `auto` falls back to threads and says why;
/// `glommio` asked for explicitly is an error when it cannot run.
pub fn resolve_runtime(
    choice: RuntimeChoice,
    first_core: Core,
) -> Result<(RuntimeKind, Option<String>), String> {
    if choice == RuntimeChoice::Threads {
        return Ok((RuntimeKind::Threads, None));
    }
    let problem = io_uring_unavailable().map_or_else(|| probe_executor(first_core).err(), Some);
    decide_runtime(choice, problem)
}

/// The runtime for `choice`, given what stops glommio here (None: nothing).
fn decide_runtime(
    choice: RuntimeChoice,
    problem: Option<String>,
) -> Result<(RuntimeKind, Option<String>), String> {
    match (choice, problem) {
        (RuntimeChoice::Threads, _) => Ok((RuntimeKind::Threads, None)),
        (_, None) => Ok((RuntimeKind::Glommio, None)),
        (RuntimeChoice::Glommio, Some(why)) => Err(why),
        (RuntimeChoice::Auto, Some(why)) => Ok((RuntimeKind::Threads, Some(why))),
    }
}

/// How a task on a core waits for its sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreIo {
    /// Inside a glommio executor: waiting yields to the executor (io_uring).
    Glommio,
    /// On a plain thread: waiting blocks the thread in poll(2).
    Blocking,
}

impl CoreIo {
    /// A waiter for readability of `socket`, for this runtime.
    pub fn datagram_waiter(self, socket: &UdpSocket) -> std::io::Result<DatagramWaiter> {
        match self {
            CoreIo::Glommio => {
                // glommio's socket owns its descriptor and closes it when dropped, so it
                // gets a duplicate: same socket, same queue, its own fd number.
                // SAFETY: dup of a descriptor the caller keeps open.
                let fd = unsafe { libc::fcntl(socket.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // SAFETY: fd is a fresh duplicate that nothing else owns.
                Ok(DatagramWaiter::Glommio(unsafe { glommio::net::UdpSocket::from_raw_fd(fd) }))
            }
            CoreIo::Blocking => Ok(DatagramWaiter::Poll(socket.as_raw_fd())),
        }
    }
}

/// Waits until a datagram socket has something to read, or a timeout passes.
pub enum DatagramWaiter {
    Glommio(glommio::net::UdpSocket),
    Poll(RawFd),
}

impl DatagramWaiter {
    /// Waits `duration` without looking at the socket (a timer of the executor, or a sleep).
    pub async fn pause(&self, duration: Duration) {
        match self {
            DatagramWaiter::Glommio(_) => glommio::timer::sleep(duration).await,
            DatagramWaiter::Poll(_) => std::thread::sleep(duration),
        }
    }

    /// True when a datagram is waiting, false when `timeout` passed first.
    pub async fn readable(&self, timeout: Duration) -> std::io::Result<bool> {
        match self {
            DatagramWaiter::Glommio(socket) => {
                // A one-byte peek leaves the datagram queued for the batched read after it.
                let mut byte = [0u8; 1];
                let peek = socket.peek_from(&mut byte);
                match glommio::timer::timeout(timeout, peek).await {
                    Ok(_) => Ok(true),
                    Err(glommio::GlommioError::TimedOut(_)) => Ok(false),
                    Err(error) => Err(error.into()),
                }
            }
            DatagramWaiter::Poll(fd) => {
                let mut poll = libc::pollfd { fd: *fd, events: libc::POLLIN, revents: 0 };
                let millis = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
                // SAFETY: one pollfd, counted as one.
                let ready = unsafe { libc::poll(&mut poll, 1, millis) };
                match ready {
                    n if n > 0 => Ok(true),
                    0 => Ok(false),
                    _ => {
                        let error = std::io::Error::last_os_error();
                        if error.kind() == std::io::ErrorKind::Interrupted { Ok(false) } else { Err(error) }
                    }
                }
            }
        }
    }
}

/// Starts a thread named `name`, pinned to `core` (memory preferred on its node), and runs
/// there the task that `make_task` builds. With glommio the task runs in an executor; if
/// the executor does not start on this core the task runs blocking instead, and says so.
pub fn spawn_on_core<M, F>(
    name: String,
    core: Core,
    kind: RuntimeKind,
    make_task: M,
) -> std::io::Result<JoinHandle<()>>
where
    M: FnOnce(CoreIo) -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    std::thread::Builder::new().name(name.clone()).spawn(move || {
        if let Err(error) = pin::enter_core(core) {
            tracing::warn!(thread = %name, cpu = core.cpu, error = %error, "Cannot pin the thread to its core.");
        }
        if kind == RuntimeKind::Glommio {
            match executor_on(core).make() {
                Ok(executor) => {
                    executor.run(make_task(CoreIo::Glommio));
                    return;
                }
                Err(error) => tracing::warn!(
                    thread = %name,
                    cpu = core.cpu,
                    error = %error,
                    "glommio executor did not start; this core's task runs on a plain thread."
                ),
            }
        }
        run_blocking(make_task(CoreIo::Blocking));
    })
}

/// Drives a future whose waits block the thread (so it is ready each time it is polled).
pub fn run_blocking<F: Future>(task: F) -> F::Output {
    let mut task = std::pin::pin!(task);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = task.as_mut().poll(&mut context) {
            return output;
        }
        // Only a future that waits on something other than CoreIo::Blocking gets here.
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cores::topology::{allowed_cpus, thread_cpus};

    fn last_core() -> Core {
        Core { cpu: *allowed_cpus().unwrap().last().unwrap(), node: 0 }
    }

    #[test]
    fn threads_asked_for_are_threads_without_probing() {
        assert_eq!(
            resolve_runtime(RuntimeChoice::Threads, last_core()).unwrap(),
            (RuntimeKind::Threads, None)
        );
    }

    #[test]
    fn auto_falls_back_with_the_reason_and_glommio_asked_for_fails_with_it() {
        let why = || Some("io_uring_setup is not permitted".to_owned());
        assert_eq!(decide_runtime(RuntimeChoice::Auto, why()).unwrap(), (RuntimeKind::Threads, why()));
        assert_eq!(decide_runtime(RuntimeChoice::Glommio, why()).unwrap_err(), why().unwrap());
        assert_eq!(decide_runtime(RuntimeChoice::Auto, None).unwrap(), (RuntimeKind::Glommio, None));
        assert_eq!(decide_runtime(RuntimeChoice::Threads, None).unwrap(), (RuntimeKind::Threads, None));
    }

    #[test]
    fn auto_gives_glommio_or_a_reason() {
        let (kind, why) = resolve_runtime(RuntimeChoice::Auto, last_core()).unwrap();
        assert_eq!(kind == RuntimeKind::Threads, why.is_some(), "{kind:?} {why:?}");
    }

    #[test]
    fn both_runtimes_run_a_socket_wait_on_the_pinned_core() {
        for kind in [RuntimeKind::Glommio, RuntimeKind::Threads] {
            let core = last_core();
            let (sender, receiver) = std::sync::mpsc::channel();
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let address = socket.local_addr().unwrap();
            let handle = spawn_on_core(format!("probe@{}", core.cpu), core, kind, move |io| async move {
                let waiter = io.datagram_waiter(&socket).unwrap();
                let idle = waiter.readable(Duration::from_millis(5)).await.unwrap();
                UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"x", address).unwrap();
                let ready = waiter.readable(Duration::from_secs(30)).await.unwrap();
                sender.send((io, idle, ready, thread_cpus(0).unwrap())).unwrap();
            })
            .unwrap();
            handle.join().unwrap();
            let (io, idle, ready, cpus) = receiver.recv().unwrap();
            assert!(!idle && ready, "{kind:?} via {io:?}");
            assert_eq!(cpus, [core.cpu]);
        }
    }
}
