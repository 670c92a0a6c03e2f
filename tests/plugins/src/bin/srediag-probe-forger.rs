//! A processor plugin that forges IPC latency samples (`tests/tests/bpf_ipc.rs`,
//! `forged_probe_hits_are_dropped_and_counted`): its binary exports the SDK's probe sites
//! (`srediag_probe_publish` / `srediag_probe_consume`, where the agent attaches its uprobes for
//! this plugin), and it calls them itself with ring ids that are not its own — the rings of the
//! other plugins of the same agent (ring ids are small sequential numbers: it tries them all).
//!
//! Configuration (`plugins.<name>.config`):
//!
//! ```text
//! {"rings": K, "seqs": S, "hold_ms": 50, "flood": F}
//! ```
//!
//! At its first batch (so every plugin in front of it in the pipeline is running and has its
//! rings registered), inside `process`: for every ring id `1..=K` it publishes `S` sequence
//! numbers (`2^40 + i`, far from any real batch), waits `hold_ms`, consumes them (a forged
//! `hold_ms` sample per ring, direction and seq), then publishes `F` more sequence numbers on
//! every ring id without consuming them (trying to fill the pending-publish table so that the
//! other plugins' real samples are evicted), and prints `FORGER done rings=K seqs=S flood=F`.
//! Batches pass through unchanged.

use srediag_plugin_sdk::data::Records;
use srediag_plugin_sdk::probe::{srediag_probe_consume, srediag_probe_publish};
use srediag_plugin_sdk::{Context, Plugin, PluginError, PluginInfo, PluginType, Registry};
use std::time::Duration;

/// Far above any sequence number a real batch of the test reaches.
const BASE: u64 = 1 << 40;

#[derive(Clone, Copy, Default)]
struct Forge {
    rings: u64,
    seqs: u64,
    hold: Duration,
    flood: u64,
}

impl Forge {
    fn run(&self) {
        for ring in 1..=self.rings {
            for i in 0..self.seqs {
                srediag_probe_publish(ring, BASE + i, 1);
            }
        }
        std::thread::sleep(self.hold);
        for ring in 1..=self.rings {
            for i in 0..self.seqs {
                srediag_probe_consume(ring, BASE + i, 1);
            }
        }
        for i in 0..self.flood {
            for ring in 1..=self.rings {
                srediag_probe_publish(ring, BASE + self.seqs + i, 1);
            }
        }
        println!(
            "FORGER done rings={} seqs={} flood={}",
            self.rings, self.seqs, self.flood
        );
    }
}

struct Forger {
    forge: Option<Forge>,
}

impl srediag_plugin_sdk::Processor for Forger {
    fn process(&mut self, records: Records) -> Result<Records, PluginError> {
        if let Some(f) = self.forge.take() {
            f.run();
        }
        Ok(records)
    }
}

struct Plug {
    forge: Forge,
}

impl Plugin for Plug {
    fn init(&mut self, ctx: &Context) -> Result<(), PluginError> {
        let n = |k: &str, d: u64| ctx.config[k].as_u64().unwrap_or(d);
        self.forge = Forge {
            rings: n("rings", 8),
            seqs: n("seqs", 16),
            hold: Duration::from_millis(n("hold_ms", 50)),
            flood: n("flood", 0),
        };
        Ok(())
    }

    fn register(&mut self, r: &mut Registry) -> Result<(), PluginError> {
        r.processor(
            "forger",
            Forger {
                forge: Some(self.forge),
            },
        )
    }

    fn capabilities(&self) -> Vec<String> {
        vec!["processor/forger".into()]
    }

    fn shutdown(&mut self, _ctx: &Context) -> Result<(), PluginError> {
        Ok(())
    }
}

fn main() {
    srediag_plugin_sdk::run(
        PluginInfo::new(
            "srediag-probe-forger",
            env!("CARGO_PKG_VERSION"),
            PluginType::Processor,
        ),
        Plug {
            forge: Forge::default(),
        },
    )
}
