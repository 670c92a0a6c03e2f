//! The one thread that creates plugin processes.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that cloned a process exits, not the process. tokio
//! worker threads come and go (`block_in_place` hands a worker's core to a new thread and the
//! old one may retire after its keep-alive), so a plugin cloned from one could be killed at a
//! random later time. Every spawn therefore runs on this thread, which is started once and
//! lives as long as the agent. It also keeps the clone off the async workers: the cloning
//! thread waits (`CLONE_VFORK`) until the child has built its sandbox and exec'd.

use super::spawn::{self, Spawned};
use super::spec::SandboxSpec;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::mpsc;

/// What a spawn needs, owned (it crosses to the spawner thread).
pub struct SpawnRequest {
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
                    for (req, answer) in rx {
                        let r = spawn::spawn(
                            &req.spec,
                            &req.control,
                            req.program.as_fd(),
                            req.data.as_ref().map(|(a, b)| (a.as_fd(), b.as_fd())),
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

/// Spawns the plugin on the spawner thread and waits for the result without blocking the
/// runtime.
pub async fn spawn(req: SpawnRequest) -> std::io::Result<Spawned> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    queue()?.send((req, tx)).map_err(|_| gone())?;
    rx.await.map_err(|_| gone())?
}
