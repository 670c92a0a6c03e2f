//! `srediag run`: the agent in the foreground.

use super::exit::{self, CmdResult, FAILURE, Failure, ok};
use super::load_config;
use crate::bpf::{NoObservers, Observers, PluginObservers};
use crate::pipeline::{self, BuildError};
use crate::plugins::admin;
use crate::plugins::instance::{Instance, InstanceError};
use crate::plugins::manager::{Manager, ManagerError};
use crate::plugins::metrics::PluginMetrics;
use crate::telemetry::{self, LogFormat, Telemetry};
use std::path::PathBuf;
use std::sync::Arc;

/// Loads the configuration, starts telemetry and pipelines, and runs until SIGINT/SIGTERM.
pub fn execute(
    path: Option<PathBuf>,
    bundles: super::args::BundleDirs,
    run_dir: PathBuf,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
) -> CmdResult {
    let (mut config, warnings) = load_config(path.clone()).map_err(|e| e.report())?;
    config.service.bundles = bundles.apply(&config.service.bundles);
    let level = log_level.unwrap_or_else(|| config.service.telemetry.logs.level.clone());
    let format = log_format.unwrap_or(config.service.telemetry.logs.format);
    telemetry::init_logging(&level, format).map_err(|e| Failure::new(exit::CONFIG, e))?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    // A root agent owns its run directory (and cleans what a dead predecessor left in it): one
    // agent per run directory, checked before anything else is touched.
    let instance = if rustix::process::geteuid().is_root() {
        Some(Instance::acquire(&run_dir).map_err(|e| match e {
            InstanceError::Held { .. } => Failure::new(exit::UNAVAILABLE, e.to_string()),
            InstanceError::Unsafe(_) => Failure::new(exit::NO_PERM, e.to_string()),
            InstanceError::Io { .. } => Failure::new(FAILURE, format!("run directory: {e}")),
        })?)
    } else {
        None
    };
    let workers = std::thread::available_parallelism()
        .map(|n| n.get().min(4))
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(16)
        .thread_name("srediag")
        .enable_all()
        .build()
        .map_err(|e| Failure::new(FAILURE, format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async move {
        // Signal handlers first: `/-/ready` answers as soon as the telemetry server runs, and a
        // SIGTERM (or SIGHUP) after that must be a graceful stop, never the default action.
        let signals = Signals::install();
        let telemetry = Telemetry::new();
        let addr = &config.service.telemetry.metrics.address;
        let listener = telemetry::bind(addr, "service.telemetry.metrics.address").await.map_err(|e| {
            Failure::new(
                exit::UNAVAILABLE,
                format!("{e} (is another srediag running? stop it or change service.telemetry.metrics.address)"),
            )
        })?;
        tokio::spawn(telemetry::serve(listener, telemetry.clone()));
        let ledgers = crate::plugins::ledger::ledgers(
            &config.plugins,
            &crate::plugins::ledger::LedgerMetrics::new(Some(&telemetry.registry)),
        );
        let links = crate::plugins::datapath::links(
            &config,
            &crate::plugins::datapath::DataPathMetrics::new(Some(&telemetry.registry)),
            &ledgers,
        );
        let service = pipeline::start(&config, telemetry.clone(), &links).await.map_err(build_failure)?;
        // The eBPF observers of the plugins (degrade, never fail), passed to whoever reports to
        // them or reads them; nothing to observe without plugins.
        let observers: Arc<dyn PluginObservers> = if config.plugins.is_empty() {
            Arc::new(NoObservers)
        } else {
            Arc::new(Observers::start(&telemetry.registry))
        };
        let metrics = PluginMetrics::new(&telemetry.registry);
        let manager = Arc::new(Manager::start(&config.plugins, metrics, &config.service.bundles, &links, &ledgers, instance.as_ref(), observers.clone()).map_err(|e| match e {
            ManagerError::NotRoot(_) => Failure::new(exit::NO_PERM, e.to_string()),
            ManagerError::Cgroup(_) => Failure::new(exit::UNAVAILABLE, e.to_string()),
        })?);
        if !config.plugins.is_empty() {
            let admin_metrics = admin::AdminMetrics::new(Some(&telemetry.registry));
            let bundles = bundles.clone();
            let reloader = Arc::new(crate::plugins::reload::Reloader::new(
                path.clone().map(crate::config::Source::File).unwrap_or(crate::config::Source::Embedded),
                Box::new(move |b| bundles.apply(b)),
                config.clone(),
                manager.clone(),
            ));
            tokio::spawn(reload_on_sighup(signals.hup, reloader.clone()));
            let ctx = Arc::new(admin::AdminContext {
                manager: manager.clone(),
                reloader: Some(reloader),
                observers: observers.clone(),
            });
            admin::serve(&config.service.admin.socket, ctx, admin_metrics).map_err(|e| {
                Failure::new(exit::UNAVAILABLE, format!("{e} (service.admin.socket)"))
            })?;
        }
        // Ready only now: the pipelines run, the plugin manager has cleaned what a previous agent
        // left and started its plugins' supervisors, the admin socket answers.
        telemetry.health.set_ready(true);
        tracing::info!(
            config = %path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| crate::config::EMBEDDED_NAME.into()),
            telemetry = %addr,
            pipelines = config.service.pipelines.len(),
            version = env!("CARGO_PKG_VERSION"),
            "srediag running"
        );
        let signal = wait_for_signal(signals.term, signals.int).await;
        tracing::info!(signal, "shutting down: draining pipelines");
        service.stop().await;
        manager.stop_all().await;
        // The supervisors are gone; the manager and the admin socket drop their clones with the
        // runtime, which frees the programs and maps.
        drop(observers);
        if !config.plugins.is_empty() {
            let _ = std::fs::remove_file(&config.service.admin.socket);
        }
        tracing::info!("stopped");
        ok()
    })
}

fn build_failure(e: BuildError) -> Failure {
    match &e {
        BuildError::Bind { .. } => Failure::new(
            exit::UNAVAILABLE,
            format!("{e} (another process holds the address: stop it or change the setting)"),
        ),
        BuildError::Open { source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            Failure::new(
                exit::NO_PERM,
                format!("{e} (run srediag as root, or point the setting at a writable path)"),
            )
        }
        BuildError::Open { .. } => Failure::new(exit::NO_INPUT, e.to_string()),
        _ => Failure::new(FAILURE, e.to_string()),
    }
}

/// SIGHUP: read the configuration again and swap the plugins that changed (like `srediag
/// reload`); the outcome goes to the log.
async fn reload_on_sighup(
    hup: Option<tokio::signal::unix::Signal>,
    reloader: Arc<crate::plugins::reload::Reloader>,
) {
    let Some(mut hup) = hup else {
        tracing::warn!("cannot install the SIGHUP handler: use `srediag reload`");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        match reloader.reload().await {
            Ok(r) => {
                for (name, s) in &r.swapped {
                    tracing::info!(plugin = %name, result = s.result.as_str(), "{}", s.reason);
                }
                for n in &r.needs_restart {
                    tracing::warn!("reload: not applied: {n}");
                }
            }
            Err(e) => tracing::error!("reload refused, nothing changed: {e}"),
        }
    }
}

/// The agent's signal handlers, installed before it answers `/-/ready`. SIGHUP is handled (and
/// ignored when there are no plugins to reload) rather than terminating the agent.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }
}

async fn wait_for_signal(
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
) -> &'static str {
    let (Some(mut term), Some(mut int)) = (term, int) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        unreachable!()
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
