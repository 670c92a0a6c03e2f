//! The plugin side of the lifecycle: handshake, heartbeats, shutdown.

use crate::component::{Exporter, Processor, Receiver};
use crate::control::{
    self, AgentMsg, CONTROL_FD, MAX_MESSAGE, PROTOCOL_VERSION, PluginMsg, PluginType,
};
use crate::datapath::{self, DataComponent, Rings};
use crate::verbs::{Dispatcher, Verbs};
use std::sync::Arc;
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
    /// Reports the plugin's own health to the agent (extensions; any plugin may).
    pub health: HealthReporter,
}

/// Reports a plugin's health to the agent (`srediag plugin list` shows it, the agent exports
/// `srediag_plugin_health{name,status}`). Cheap to clone; usable from any thread.
#[derive(Debug, Clone, Default)]
pub struct HealthReporter {
    _private: (),
}

impl HealthReporter {
    /// Sends the current status with a short reason (cut to 256 characters).
    pub fn report(&self, status: crate::control::HealthStatus, message: &str) {
        let message: String = message.chars().take(256).collect();
        let _ = send(&PluginMsg::Health { status, message });
    }
}

/// Components a plugin registers (the seed's `CollectorFactory`): at most one data component
/// (processor, exporter or receiver: the one its pipeline entry `plugin/<name>` runs) and any
/// number of diagnostics and extension capabilities.
#[derive(Default)]
pub struct Registry {
    names: Vec<String>,
    data: Option<DataComponent>,
    verbs: Option<Verbs>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Records a component name (e.g. `extension/healthcheck`).
    pub fn component(&mut self, name: &str) {
        self.names.push(name.to_string());
    }

    /// The registered component names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    fn set_data(&mut self, name: String, c: DataComponent) -> Result<(), PluginError> {
        if self.data.is_some() {
            return Err(PluginError(format!(
                "{name}: a plugin provides at most one processor, exporter or receiver"
            )));
        }
        self.names.push(name);
        self.data = Some(c);
        Ok(())
    }

    /// Registers the processor (`processor/<name>`).
    pub fn processor(
        &mut self,
        name: &str,
        p: impl Processor + 'static,
    ) -> Result<(), PluginError> {
        self.set_data(
            format!("processor/{name}"),
            DataComponent::Processor(Box::new(p)),
        )
    }

    /// Registers the exporter (`exporter/<name>`).
    pub fn exporter(&mut self, name: &str, e: impl Exporter + 'static) -> Result<(), PluginError> {
        self.set_data(
            format!("exporter/{name}"),
            DataComponent::Exporter(Box::new(e)),
        )
    }

    /// Registers the receiver (`receiver/<name>`).
    pub fn receiver(&mut self, name: &str, r: impl Receiver + 'static) -> Result<(), PluginError> {
        self.set_data(
            format!("receiver/{name}"),
            DataComponent::Receiver(Box::new(r)),
        )
    }

    /// Registers diagnostics verbs (`diag/<verb>` each; their arguments and outputs are
    /// declared in the manifest's `cli:` field). Any plugin type may have verbs.
    pub fn diagnostics(&mut self, verbs: Verbs) {
        for v in verbs.names() {
            self.names.push(format!("diag/{v}"));
        }
        self.verbs = Some(verbs);
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

pub(crate) fn send(msg: &PluginMsg) -> Result<(), String> {
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
        schema_version: crate::wire::WIRE_SCHEMA_VERSION,
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
    let (config, data_path) = loop {
        match recv(Duration::from_millis(200)) {
            Ok(Some(AgentMsg::Welcome {
                config, data_path, ..
            })) => break (config, data_path),
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
    let ctx = Context {
        config,
        health: HealthReporter::default(),
    };
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
    let stop = Arc::new(AtomicBool::new(false));
    let drain = Arc::new(AtomicBool::new(false));
    let mut data_thread = None;
    match (data_path, registry.data.take()) {
        (Some(dp), Some(component)) => {
            let rings = match Rings::open(dp) {
                Ok(r) => r,
                Err(e) => fail(&info, &format!("data path: {e}")),
            };
            let (stop, drain) = (stop.clone(), drain.clone());
            let t = std::thread::Builder::new()
                .name("srediag-data".into())
                .spawn(move || {
                    datapath::serve(
                        rings,
                        component,
                        stop,
                        drain,
                        &|m| {
                            let _ = send(&PluginMsg::Error { message: m });
                        },
                        &|| {
                            let _ = send(&PluginMsg::DrainAck {});
                        },
                    )
                });
            match t {
                Ok(t) => data_thread = Some(t),
                Err(e) => fail(&info, &format!("data path thread: {e}")),
            }
        }
        (Some(_), None) => fail(
            &info,
            "the agent runs this plugin in a pipeline, but it registered no processor, exporter or receiver",
        ),
        (None, _) => {}
    }
    let send_fn: Arc<crate::verbs::SendFn> = Arc::new(send);
    let verbs = Dispatcher::new(registry.verbs.take(), send_fn);
    if let Err(e) = send(&PluginMsg::Ready {}) {
        fail(&info, &e);
    }
    let finish = |plugin: &mut P, data_thread: Option<std::thread::JoinHandle<()>>| -> i32 {
        verbs.cancel_all();
        stop.store(true, Ordering::SeqCst);
        if let Some(t) = data_thread {
            let _ = t.join();
        }
        if plugin.shutdown(&ctx).is_ok() { 0 } else { 1 }
    };
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
            Ok(Some(AgentMsg::Invoke {
                id,
                verb,
                args,
                output,
            })) => verbs.invoke(id, verb, args, output),
            Ok(Some(AgentMsg::Cancel { id })) => verbs.cancel(id),
            Ok(Some(AgentMsg::Shutdown { .. })) => {
                let code = finish(&mut plugin, data_thread.take());
                let _ = send(&PluginMsg::ShutdownAck {});
                std::process::exit(code);
            }
            Ok(Some(AgentMsg::Drain {})) => {
                // The data thread answers once everything received is answered; without one
                // there is nothing to drain.
                if data_thread.is_some() {
                    drain.store(true, Ordering::SeqCst);
                } else if send(&PluginMsg::DrainAck {}).is_err() {
                    break;
                }
            }
            Ok(Some(other)) => {
                let _ = send(&PluginMsg::Error {
                    message: format!("unexpected control message {other:?}"),
                });
            }
            Err(_) => break,
        }
    }
    let code = finish(&mut plugin, data_thread.take());
    std::process::exit(code)
}

/// A plugin made of one processor built from the agent's settings: the one-line entry point.
///
/// ```no_run
/// use srediag_plugin_sdk::{Context, PluginError, Processor, data::Records};
/// struct Passthrough;
/// impl Processor for Passthrough {
///     fn process(&mut self, r: Records) -> Result<Records, PluginError> { Ok(r) }
/// }
/// fn main() {
///     srediag_plugin_sdk::serve_processor("passthrough", env!("CARGO_PKG_VERSION"), |_ctx: &Context| Ok(Passthrough))
/// }
/// ```
pub fn serve_processor<P, F>(name: &str, version: &str, factory: F) -> !
where
    P: Processor + 'static,
    F: FnOnce(&Context) -> Result<P, PluginError>,
{
    struct One<P, F> {
        name: String,
        factory: Option<F>,
        built: Option<P>,
    }
    impl<P: Processor + 'static, F: FnOnce(&Context) -> Result<P, PluginError>> Plugin for One<P, F> {
        fn init(&mut self, ctx: &Context) -> Result<(), PluginError> {
            let f = self
                .factory
                .take()
                .ok_or_else(|| PluginError("init ran twice".into()))?;
            self.built = Some(f(ctx)?);
            Ok(())
        }
        fn register(&mut self, r: &mut Registry) -> Result<(), PluginError> {
            let p = self
                .built
                .take()
                .ok_or_else(|| PluginError("register before init".into()))?;
            r.processor(&self.name, p)
        }
        fn capabilities(&self) -> Vec<String> {
            vec![format!("processor/{}", self.name)]
        }
        fn shutdown(&mut self, _ctx: &Context) -> Result<(), PluginError> {
            Ok(())
        }
    }
    run(
        PluginInfo::new(name, version, PluginType::Processor),
        One {
            name: name.to_string(),
            factory: Some(factory),
            built: None,
        },
    )
}

/// A diagnostics plugin: verbs built from the agent's settings, the one-line entry point. The
/// manifest's `cli:` field declares the same verbs (arguments, output kinds); see
/// [`crate::verbs`] for an example.
pub fn serve_diagnostics<F>(name: &str, version: &str, factory: F) -> !
where
    F: FnOnce(&Context) -> Result<Verbs, PluginError>,
{
    struct Diag<F> {
        factory: Option<F>,
        verbs: Option<Verbs>,
    }
    impl<F: FnOnce(&Context) -> Result<Verbs, PluginError>> Plugin for Diag<F> {
        fn init(&mut self, ctx: &Context) -> Result<(), PluginError> {
            let f = self
                .factory
                .take()
                .ok_or_else(|| PluginError("init ran twice".into()))?;
            self.verbs = Some(f(ctx)?);
            Ok(())
        }
        fn register(&mut self, r: &mut Registry) -> Result<(), PluginError> {
            let v = self
                .verbs
                .take()
                .ok_or_else(|| PluginError("register before init".into()))?;
            r.diagnostics(v);
            Ok(())
        }
        fn capabilities(&self) -> Vec<String> {
            // The verbs are known after init; `register` names them (`diag/<verb>`).
            Vec::new()
        }
        fn shutdown(&mut self, _ctx: &Context) -> Result<(), PluginError> {
            Ok(())
        }
    }
    run(
        PluginInfo::new(name, version, PluginType::Diagnostics),
        Diag {
            factory: Some(factory),
            verbs: None,
        },
    )
}
