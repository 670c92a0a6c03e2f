//! A well-behaved plugin whose misbehaviour is scripted by its configuration, for lifecycle
//! tests: `{"mode": "serve" | "crash" | "hang" | "oom" | "spin" | "spam" | "ignore_shutdown",
//! "after_ms": N, "type": "processor"}`.

use srediag_plugin_sdk::{Context, Plugin, PluginError, PluginInfo, PluginType, Registry};
use std::time::Duration;

struct TestPlugin;

fn after(ctx: &Context) -> Duration {
    Duration::from_millis(ctx.config["after_ms"].as_u64().unwrap_or(0))
}

impl Plugin for TestPlugin {
    fn init(&mut self, ctx: &Context) -> Result<(), PluginError> {
        let mode = ctx.config["mode"].as_str().unwrap_or("serve").to_string();
        let wait = after(ctx);
        println!("test plugin starting in mode {mode}");
        std::thread::spawn(move || {
            std::thread::sleep(wait);
            match mode.as_str() {
                "crash" => std::process::abort(),
                "hang" => {
                    // Stop the whole process (heartbeats included) without exiting.
                    // SAFETY: raising SIGSTOP on ourselves.
                    unsafe { libc::raise(libc::SIGSTOP) };
                }
                "oom" => {
                    let mut v: Vec<Vec<u8>> = Vec::new();
                    loop {
                        v.push(vec![1u8; 8 << 20]);
                    }
                }
                "spin" => loop {
                    std::hint::spin_loop();
                },
                "spam" => loop {
                    println!("{}", "x".repeat(10_000));
                },
                _ => {}
            }
        });
        Ok(())
    }

    fn register(&mut self, r: &mut Registry) -> Result<(), PluginError> {
        r.component("processor/test");
        Ok(())
    }

    fn capabilities(&self) -> Vec<String> {
        vec!["processor/test".into()]
    }

    fn shutdown(&mut self, ctx: &Context) -> Result<(), PluginError> {
        if ctx.config["mode"].as_str() == Some("ignore_shutdown") {
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Ok(())
    }
}

fn main() {
    let kind = match std::env::args().nth(1).as_deref() {
        Some("receiver") => PluginType::Receiver,
        Some("exporter") => PluginType::Exporter,
        Some("diagnostics") => PluginType::Diagnostics,
        _ => PluginType::Processor,
    };
    srediag_plugin_sdk::run(
        PluginInfo::new("srediag-test-plugin", env!("CARGO_PKG_VERSION"), kind),
        TestPlugin,
    )
}
