//! A diagnostics plugin for `tests/tests/plugin_verbs.rs`, written with the SDK's
//! `serve_diagnostics` (its bundle's manifest, in the test, declares the same verbs):
//!
//! - `hello --name S [--count N] [--loud]`: text (`hello S` N times) or JSON;
//! - `args …`: every argument it received, as one JSON value (the typed forms: int, duration
//!   in milliseconds, enum, bool, string, defaults filled in);
//! - `blob [--size N]`: a file of N bytes (`i % 251`), summary `wrote N bytes`;
//! - `sleep [--for D]`: sleeps D without looking at cancellation, then writes `slept`;
//! - `wait-cancel`: writes `waiting for cancellation`, waits for it (at most 120 s), then
//!   prints `DIAG wait-cancel saw cancellation` on stderr (the agent's log);
//! - `fail`: fails with `deliberate failure`;
//! - `flood`: writes 60 KB of text at a time until a write fails (it was cancelled), then
//!   prints `DIAG flood stopped` on stderr;
//! - `escape`: text with terminal escape sequences and a carriage return.

use srediag_plugin_sdk::{OutputKind, PluginError, VerbContext, Verbs};
use std::time::Duration;

fn hello(ctx: &mut VerbContext) -> Result<(), PluginError> {
    let name = ctx.args().str("name").unwrap_or("nobody").to_string();
    let count = ctx.args().int("count").unwrap_or(1);
    let mut greeting = format!("hello {name}");
    if ctx.args().flag("loud") {
        greeting = greeting.to_uppercase();
    }
    match ctx.output() {
        OutputKind::Json => ctx.write_json(&serde_json::json!({
            "greeting": greeting,
            "count": count,
        })),
        _ => {
            for _ in 0..count {
                ctx.write_text(&format!("{greeting}\n"))?;
            }
            Ok(())
        }
    }
}

fn args(ctx: &mut VerbContext) -> Result<(), PluginError> {
    let all: serde_json::Map<String, serde_json::Value> = ctx
        .args()
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    ctx.write_json(&all)
}

fn blob(ctx: &mut VerbContext) -> Result<(), PluginError> {
    let size = ctx.args().int("size").unwrap_or(100_000) as usize;
    let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    ctx.write_file("application/octet-stream", &bytes)?;
    ctx.set_summary(&format!("wrote {size} bytes"));
    Ok(())
}

fn sleep(ctx: &mut VerbContext) -> Result<(), PluginError> {
    let d = ctx
        .args()
        .duration("for")
        .unwrap_or(Duration::from_secs(60));
    std::thread::sleep(d);
    ctx.write_text("slept\n")
}

fn wait_cancel(ctx: &mut VerbContext) -> Result<(), PluginError> {
    ctx.write_text("waiting for cancellation\n")?;
    ctx.flush()?;
    if ctx.cancellation().wait_timeout(Duration::from_secs(120)) {
        eprintln!("DIAG wait-cancel saw cancellation");
        return Err(PluginError("cancelled".into()));
    }
    ctx.write_text("never cancelled\n")
}

fn flood(ctx: &mut VerbContext) -> Result<(), PluginError> {
    let chunk = "x".repeat(60_000);
    loop {
        if let Err(e) = ctx.write_text(&chunk) {
            eprintln!("DIAG flood stopped: {e}");
            return Err(e);
        }
    }
}

fn main() {
    srediag_plugin_sdk::serve_diagnostics("diag", env!("CARGO_PKG_VERSION"), |_ctx| {
        Ok(Verbs::new()
            .verb("hello", hello)
            .verb("args", args)
            .verb("blob", blob)
            .verb("sleep", sleep)
            .verb("wait-cancel", wait_cancel)
            .verb("fail", |_ctx: &mut VerbContext| {
                Err(PluginError("deliberate failure".into()))
            })
            .verb("flood", flood)
            .verb("escape", |ctx: &mut VerbContext| {
                ctx.write_text("\u{1b}[31mred\u{1b}]0;owned\u{7}\rforged\tcol\n")
            }))
    })
}
