//! The plugin side of the lifecycle: handshake, heartbeats, shutdown.

use crate::control::{
    self, AgentMsg, CONTROL_FD, MAX_MESSAGE, PROTOCOL_VERSION, PluginMsg, PluginType,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Who the plugin is.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// Name (matches the manifest's `name`).
    pub name: String,
    /// Version (matches the manifest's `version`).
    pub version: String,
    /// Plugin type.
    pub plugin_type: PluginType,
}

impl PluginInfo {
    /// Plugin identity.
    pub fn new(name: &str, version: &str, plugin_type: PluginType) -> Self {
        PluginInfo {
            name: name.to_string(),
            version: version.to_string(),
            plugin_type,
        }
    }
}

/// What `init` and `shutdown` get.
#[derive(Debug, Clone)]
pub struct Context {
    /// The plugin's settings from the agent's configuration.
    pub config: serde_json::Value,
}

/// Components a plugin registers (the seed's `CollectorFactory`). Pipeline components arrive with
/// the shared-memory data path; the lifecycle does not depend on them.
#[derive(Debug, Default)]
pub struct Registry {
    names: Vec<String>,
}

impl Registry {
    /// Records a component name (e.g. `processor/vectorhash`).
    pub fn component(&mut self, name: &str) {
        self.names.push(name.to_string());
    }

    /// The registered component names.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// A plugin failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PluginError(pub String);

/// The seed's plugin contract.
pub trait Plugin {
    /// `Init`: prepare with the configuration; start worker threads if any.
    fn init(&mut self, ctx: &Context) -> Result<(), PluginError>;
    /// `Register`: declare the components this plugin provides.
    fn register(&mut self, registry: &mut Registry) -> Result<(), PluginError>;
    /// `Capabilities`: e.g. `processor/vectorhash`, `diag/dedup-stats`.
    fn capabilities(&self) -> Vec<String>;
    /// `Shutdown`: flush and stop; the process exits after it returns.
    fn shutdown(&mut self, ctx: &Context) -> Result<(), PluginError>;
}

static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    TERM.store(true, Ordering::SeqCst);
}

fn send(msg: &PluginMsg) -> Result<(), String> {
    let bytes = control::encode(msg);
    // SAFETY: CONTROL_FD is the inherited control socket; `bytes` is a live buffer of the given
    // length; MSG_NOSIGNAL turns a closed peer into EPIPE instead of SIGPIPE.
    let n = unsafe {
        libc::send(
            CONTROL_FD,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(format!(
            "control socket send: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Waits up to `timeout` for one message. `Ok(None)` on timeout; `Err` when the agent closed the
/// socket or sent garbage.
fn recv(timeout: Duration) -> Result<Option<AgentMsg>, String> {
    let mut pfd = libc::pollfd {
        fd: CONTROL_FD,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::Interrupted {
            Ok(None)
        } else {
            Err(format!("poll: {e}"))
        };
    }
    if r == 0 {
        return Ok(None);
    }
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    // SAFETY: `buf` is writable for its full length.
    let n = unsafe { libc::recv(CONTROL_FD, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(format!(
            "control socket recv: {}",
            std::io::Error::last_os_error()
        ));
    }
    if n == 0 {
        return Err("the agent closed the control socket".into());
    }
    control::decode(&buf[..n as usize])
        .map(Some)
        .map_err(|e| e.to_string())
}

fn fail(info: &PluginInfo, msg: &str) -> ! {
    eprintln!("{}: {msg}", info.name);
    std::process::exit(1)
}

/// Runs a plugin: installs the seccomp `errno` SIGSYS handler
/// ([`install_seccomp_errno_handler`](crate::install_seccomp_errno_handler)), then handshake, `init`, `register`, then heartbeats until the agent asks it to stop
/// (or SIGTERM arrives, or the agent goes away). Never returns.
pub fn run<P: Plugin>(info: PluginInfo, mut plugin: P) -> ! {
    // First: a syscall refused by the `errno` seccomp action arrives as SIGSYS (see `sigsys`).
    if let Err(e) = crate::sigsys::install_seccomp_errno_handler() {
        eprintln!(
            "{}: {e} (a refused syscall will kill this plugin)",
            info.name
        );
    }
    // SAFETY: installs a handler that only stores to an atomic (async-signal-safe).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_term as *const () as usize;
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
    }
    let hello = PluginMsg::Hello {
        protocol_version: PROTOCOL_VERSION,
        name: info.name.clone(),
        version: info.version.clone(),
        plugin_type: info.plugin_type,
        capabilities: plugin.capabilities(),
        sdk_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    if let Err(e) = send(&hello) {
        fail(
            &info,
            &format!(
                "{e} (is this running under srediag? fd {CONTROL_FD} must be the control socket)"
            ),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let config = loop {
        match recv(Duration::from_millis(200)) {
            Ok(Some(AgentMsg::Welcome { config, .. })) => break config,
            Ok(Some(AgentMsg::Reject { code, message })) => {
                fail(&info, &format!("rejected by the agent: {code}: {message}"))
            }
            Ok(Some(other)) => fail(
                &info,
                &format!("unexpected message before welcome: {other:?}"),
            ),
            Ok(None) if Instant::now() < deadline && !TERM.load(Ordering::SeqCst) => continue,
            Ok(None) => fail(&info, "no welcome from the agent"),
            Err(e) => fail(&info, &e),
        }
    };
    let ctx = Context { config };
    let mut registry = Registry::default();
    if let Err(e) = plugin
        .init(&ctx)
        .and_then(|_| plugin.register(&mut registry))
    {
        let _ = send(&PluginMsg::Error {
            message: format!("init failed: {e}"),
        });
        fail(&info, &format!("init failed: {e}"));
    }
    if let Err(e) = send(&PluginMsg::Ready {}) {
        fail(&info, &e);
    }
    loop {
        if TERM.load(Ordering::SeqCst) {
            break;
        }
        match recv(Duration::from_millis(100)) {
            Ok(None) => {}
            Ok(Some(AgentMsg::Heartbeat { seq })) => {
                if send(&PluginMsg::HeartbeatAck { seq }).is_err() {
                    break;
                }
            }
            Ok(Some(AgentMsg::Shutdown { .. })) => {
                let r = plugin.shutdown(&ctx);
                let _ = send(&PluginMsg::ShutdownAck {});
                std::process::exit(if r.is_ok() { 0 } else { 1 });
            }
            Ok(Some(other)) => {
                let _ = send(&PluginMsg::Error {
                    message: format!("unexpected control message {other:?}"),
                });
            }
            Err(_) => break,
        }
    }
    let r = plugin.shutdown(&ctx);
    std::process::exit(if r.is_ok() { 0 } else { 1 })
}
