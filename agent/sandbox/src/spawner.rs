//! The one thread that creates plugin processes.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that cloned a process exits, not the process. tokio
//! worker threads come and go (`block_in_place` hands a worker's core to a new thread and the
//! old one may retire after its keep-alive), so a plugin cloned from one could be killed at a
//! random later time. Every spawn therefore runs on this thread, which is started once and
//! lives as long as the agent. It also keeps the clone off the async workers: the cloning
//! thread waits (`CLONE_VFORK`) until the child has built its sandbox and exec'd.
//!
//! It also keeps one empty network namespace per plugin that runs without the network, created
//! at its first start and joined by every later incarnation: creating a network namespace costs
//! ~0.3 ms per start here and tearing one down more (the kernel's `cleanup_net` work), on every
//! restart of a crash-looping plugin. An incarnation starts only once the previous one's cgroup
//! is empty, so the namespace holds nothing but its loopback device when it is reused (it is
//! never shared between plugins). It lives until the agent exits.

use super::spawn::{self, Spawned};
use super::spec::SandboxSpec;
use std::collections::HashMap;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

/// Told on the spawner thread right before each clone (the agent passes its eBPF tracker: the
/// kernel then tracks what this thread clones as the plugin, from its first instruction however
/// soon it dies). The sandbox knows nothing of eBPF; the agent implements this.
pub trait SpawnObserver: Send + Sync {
    /// Plugin `plugin` is cloned next by the calling thread. The returned guard is kept until the
    /// clone returned, then dropped on the same thread (`None`: nothing to undo).
    fn before_clone(&self, plugin: &str) -> Option<Box<dyn SpawnGuard>>;
}

/// What a [`SpawnObserver`] undoes when it is dropped (after the clone returned).
pub trait SpawnGuard {}

impl<T> SpawnGuard for T {}

/// A [`SpawnObserver`] that observes nothing (tests, hosts without eBPF).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl SpawnObserver for NoObserver {
    fn before_clone(&self, _plugin: &str) -> Option<Box<dyn SpawnGuard>> {
        None
    }
}

/// What a spawn needs, owned (it crosses to the spawner thread).
pub struct SpawnRequest {
    /// Told right before the clone (see [`SpawnObserver`]).
    pub observer: Arc<dyn SpawnObserver>,
    /// The sandbox.
    pub spec: SandboxSpec,
    /// The plugin's end of the control socket (fd 3).
    pub control: OwnedFd,
    /// The sealed executable (fd 5).
    pub program: OwnedFd,
    /// The ring memfds (fds 6 and 7), when the data path is on.
    pub data: Option<(OwnedFd, OwnedFd)>,
}

type Job = (
    SpawnRequest,
    tokio::sync::oneshot::Sender<std::io::Result<Spawned>>,
);

fn gone() -> std::io::Error {
    std::io::Error::other("the plugin spawner thread is gone")
}

fn queue() -> std::io::Result<&'static mpsc::Sender<Job>> {
    static QUEUE: OnceLock<Result<mpsc::Sender<Job>, String>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("srediag-spawn".into())
                .spawn(move || {
                    let mut netns: HashMap<String, OwnedFd> = HashMap::new();
                    let mut stuck: Option<String> = None;
                    for (req, answer) in rx {
                        if let Some(why) = &stuck {
                            let _ = answer.send(Err(std::io::Error::other(why.clone())));
                            continue;
                        }
                        let ns = if req.spec.new_net {
                            match netns.get(&req.spec.plugin) {
                                Some(fd) => Some(fd),
                                None => match new_netns() {
                                    Ok(fd) => Some(&*netns.entry(req.spec.plugin.clone()).or_insert(fd)),
                                    Err(e) if e.get_ref().is_some_and(|i| i.is::<Stuck>()) => {
                                        tracing::error!(error = %e, "no plugin can be started any more");
                                        stuck = Some(e.to_string());
                                        let _ = answer.send(Err(e));
                                        continue;
                                    }
                                    Err(e) => {
                                        tracing::warn!(plugin = %req.spec.plugin, error = %e, "cannot keep a network namespace for the plugin; each start creates its own");
                                        None
                                    }
                                },
                            }
                        } else {
                            None
                        };
                        // Until the clone returned, the observer (the agent's eBPF tracker)
                        // follows what this thread clones as the plugin: from its first
                        // instruction, however soon it dies.
                        let _armed = req.observer.before_clone(&req.spec.plugin);
                        let r = spawn::spawn(
                            &req.spec,
                            &req.control,
                            req.program.as_fd(),
                            req.data.as_ref().map(|(a, b)| (a.as_fd(), b.as_fd())),
                            ns.map(|f| f.as_fd()),
                        );
                        // A supervisor that stopped waiting drops the answer: the process
                        // handle's drop then kills and reaps the plugin.
                        let _ = answer.send(r);
                    }
                })
                .map(|_| tx)
                .map_err(|e| format!("cannot start the plugin spawner thread: {e}"))
        })
        .as_ref()
        .map_err(|e| std::io::Error::other(e.clone()))
}

fn open_ns(path: &std::ffi::CStr) -> std::io::Result<OwnedFd> {
    // SAFETY: open of a NUL-terminated path; the fd is ours.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new, empty network namespace: this thread enters one (`unshare` changes only the calling
/// thread's namespaces), keeps an fd to it and returns to where it was.
fn new_netns() -> std::io::Result<OwnedFd> {
    let here = open_ns(c"/proc/thread-self/ns/net")?;
    // SAFETY: unshare of the calling thread's network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let made = open_ns(c"/proc/thread-self/ns/net");
    // SAFETY: back into the namespace this thread came from (an fd we hold).
    if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&here), libc::CLONE_NEWNET) } != 0 {
        return Err(Stuck(std::io::Error::last_os_error()).into());
    }
    made
}

/// The spawner thread could not return to the agent's network namespace: it must not spawn
/// anything more (a plugin with `network: true` would land in an empty namespace).
#[derive(Debug)]
struct Stuck(std::io::Error);

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the plugin spawner thread cannot return to the agent's network namespace: {}",
            self.0
        )
    }
}

impl std::error::Error for Stuck {}

impl From<Stuck> for std::io::Error {
    fn from(s: Stuck) -> Self {
        std::io::Error::other(s)
    }
}

/// Spawns the plugin on the spawner thread and waits for the result without blocking the
/// runtime.
pub async fn spawn(req: SpawnRequest) -> std::io::Result<Spawned> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    queue()?.send((req, tx)).map_err(|_| gone())?;
    rx.await.map_err(|_| gone())?
}
