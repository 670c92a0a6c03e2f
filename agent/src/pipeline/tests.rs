//! Engine tests with in-process exporters: exact accounting under drop, block, shutdown.

use super::stage::{ExporterStage, run_exporter, run_processor};
use super::*;
use crate::components::processors::batch::{BatchProcessor, Config as BatchConfig};
use crate::model::{Logs, logs::*};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Semaphore;

fn logs(n: usize) -> Batch {
    Batch::Logs(Logs {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); n],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// Counts delivered items; each export waits for a permit (so the test can stall it).
struct Gate {
    delivered: Arc<AtomicU64>,
    permits: Arc<Semaphore>,
}

impl Exporter for Gate {
    fn export(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), ExportError>> {
        Box::pin(async move {
            self.permits
                .acquire()
                .await
                .expect("semaphore open")
                .forget();
            self.delivered.fetch_add(batch.items(), Ordering::SeqCst);
            Ok(())
        })
    }
}

struct Rig {
    telemetry: Arc<Telemetry>,
    delivered: Arc<AtomicU64>,
    permits: Arc<Semaphore>,
    abandon: watch::Sender<bool>,
    exporter: tokio::task::JoinHandle<()>,
    out: ReceiverOutput,
    processor: Option<tokio::task::JoinHandle<()>>,
}

fn rig(policy: OverflowPolicy, capacity: usize, permits: usize, with_batch: bool) -> Rig {
    let telemetry = Telemetry::new();
    let delivered = Arc::new(AtomicU64::new(0));
    let sem = Arc::new(Semaphore::new(permits));
    let (abandon, abandon_rx) = watch::channel(false);
    let qcfg = QueueConfig {
        capacity,
        policy,
        ..Default::default()
    };
    let (tx, rx) = queue(&qcfg, telemetry.queue("exporter", "gate", "", capacity));
    let stage = ExporterStage {
        id: "gate".into(),
        logs: telemetry.exporter("gate", Signal::Logs),
        metrics: telemetry.exporter("gate", Signal::Metrics),
        errors: telemetry.component("exporter", "gate"),
    };
    let gate = Gate {
        delivered: delivered.clone(),
        permits: sem.clone(),
    };
    let exporter = tokio::spawn(run_exporter(Box::new(gate), rx, stage, abandon_rx));
    let (entry, processor) = if with_batch {
        let (ptx, prx) = queue(
            &QueueConfig::default(),
            telemetry.queue("processor", "batch", "logs", 64),
        );
        let p = BatchProcessor::new(&BatchConfig {
            send_batch_size: 1_000_000,
            timeout: Duration::from_secs(3600),
            ..Default::default()
        });
        let h = tokio::spawn(run_processor(
            Box::new(p),
            prx,
            Fanout::new(vec![tx]),
            telemetry.processor("batch", "logs", Signal::Logs),
        ));
        (ptx, Some(h))
    } else {
        (tx, None)
    };
    let out = ReceiverOutput::new(
        Some((
            Fanout::new(vec![entry]),
            telemetry.receiver("r", Signal::Logs),
        )),
        None,
    );
    Rig {
        telemetry,
        delivered,
        permits: sem,
        abandon,
        exporter,
        out,
        processor,
    }
}

fn metric(t: &Telemetry, name: &str, label: &str) -> u64 {
    t.registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| l.value() == label))
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

#[tokio::test]
async fn drop_policy_counts_every_dropped_item_exactly() {
    let r = rig(OverflowPolicy::Drop, 2, 0, false);
    let mut sent = 0;
    for i in 1..=50 {
        r.out.send(logs(i % 7 + 1)).await.unwrap();
        sent += (i % 7 + 1) as u64;
    }
    // Let everything through now, then close the pipeline.
    r.permits.add_permits(1000);
    drop(r.out);
    r.exporter.await.unwrap();
    let dropped = metric(
        &r.telemetry,
        "srediag_queue_dropped_items_total",
        "queue_full",
    );
    let delivered = r.delivered.load(Ordering::SeqCst);
    assert!(dropped > 0, "the stalled exporter should have caused drops");
    assert_eq!(delivered + dropped, sent);
    assert_eq!(
        metric(&r.telemetry, "srediag_exporter_sent_items_total", "gate"),
        delivered
    );
    assert_eq!(
        metric(&r.telemetry, "srediag_receiver_accepted_items_total", "r"),
        sent
    );
}

#[tokio::test]
async fn block_policy_applies_backpressure_and_loses_nothing() {
    let r = rig(OverflowPolicy::Block, 1, 0, false);
    let out = r.out.clone();
    let producer = tokio::spawn(async move {
        for _ in 0..20 {
            out.send(logs(3)).await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !producer.is_finished(),
        "a stalled exporter must block the sender"
    );
    r.permits.add_permits(1000);
    producer.await.unwrap();
    drop(r.out);
    r.exporter.await.unwrap();
    assert_eq!(r.delivered.load(Ordering::SeqCst), 60);
    assert_eq!(
        metric(
            &r.telemetry,
            "srediag_queue_dropped_items_total",
            "queue_full"
        ),
        0
    );
}

#[tokio::test]
async fn shutdown_flushes_what_the_batch_processor_holds() {
    let r = rig(OverflowPolicy::Block, 4, 1000, true);
    for _ in 0..10 {
        r.out.send(logs(5)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        r.delivered.load(Ordering::SeqCst),
        0,
        "the batch is held (size and timeout not reached)"
    );
    drop(r.out);
    r.processor.unwrap().await.unwrap();
    r.exporter.await.unwrap();
    assert_eq!(r.delivered.load(Ordering::SeqCst), 50);
}

#[tokio::test]
async fn drain_timeout_counts_what_is_left_as_dropped_at_shutdown() {
    let r = rig(OverflowPolicy::Block, 8, 2, false);
    for _ in 0..6 {
        r.out.send(logs(4)).await.unwrap();
    }
    drop(r.out);
    tokio::time::sleep(Duration::from_millis(20)).await;
    r.abandon.send(true).unwrap();
    r.exporter.await.unwrap();
    let delivered = r.delivered.load(Ordering::SeqCst);
    let dropped = metric(
        &r.telemetry,
        "srediag_queue_dropped_items_total",
        "shutdown",
    );
    assert_eq!(delivered, 8, "two permits → two batches");
    assert_eq!(delivered + dropped, 24);
}

#[tokio::test]
async fn fanout_delivers_a_copy_to_every_target_and_refuses_when_closed() {
    let t = Telemetry::new();
    let q = QueueConfig::default();
    let (a, mut ra) = queue(&q, t.queue("exporter", "a", "", 64));
    let (b, mut rb) = queue(&q, t.queue("exporter", "b", "", 64));
    let out = ReceiverOutput::new(
        Some((Fanout::new(vec![a, b]), t.receiver("r", Signal::Logs))),
        None,
    );
    out.send(logs(2)).await.unwrap();
    assert_eq!(ra.recv().await.unwrap().items(), 2);
    assert_eq!(rb.recv().await.unwrap().items(), 2);
    assert_eq!(
        out.send(Batch::Metrics(Default::default())).await,
        Err(Refused::NoPipeline)
    );
    drop(ra);
    drop(rb);
    assert_eq!(out.send(logs(3)).await, Err(Refused::ShuttingDown));
    assert_eq!(metric(&t, "srediag_receiver_refused_items_total", "r"), 3);
}

/// A receiver that gives up at once (as a crashed listener would).
struct Quitter;

impl Receiver for Quitter {
    fn run(self: Box<Self>, _out: ReceiverOutput, _shutdown: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

#[tokio::test]
async fn a_stage_ending_before_shutdown_makes_the_agent_unhealthy() {
    let t = Telemetry::new();
    let (tx, rx) = watch::channel(false);
    let out = ReceiverOutput::new(None, None);
    let h = super::build::watched(
        &t,
        "receiver/quitter".into(),
        rx.clone(),
        Box::new(Quitter).run(out.clone(), rx.clone()),
    );
    h.await.unwrap();
    assert_eq!(
        t.health.failures(),
        ["receiver/quitter: stopped unexpectedly"]
    );
    // The same ending after shutdown was asked for is normal.
    let t2 = Telemetry::new();
    tx.send(true).unwrap();
    let h = super::build::watched(
        &t2,
        "receiver/quitter".into(),
        rx.clone(),
        Box::new(Quitter).run(out, rx),
    );
    h.await.unwrap();
    assert!(t2.health.failures().is_empty());
}

/// A body of `kib` KiB: a log record whose body holds that many bytes.
fn sized(kib: usize) -> Batch {
    let mut b = logs(1);
    if let Batch::Logs(l) = &mut b {
        l.resource_logs[0].scope_logs[0].log_records[0].body =
            Some(crate::model::common::AnyValue {
                value: Some(crate::model::common::any_value::Value::StringValue(
                    "x".repeat(kib * 1024),
                )),
            });
    }
    b
}

#[tokio::test]
async fn queues_are_bounded_in_bytes_before_batches() {
    let telemetry = Telemetry::new();
    // Room for 64 batches but only 100 KiB: the third 40 KiB batch is over the byte bound.
    let cfg = |policy| QueueConfig {
        capacity: 64,
        policy,
        max_bytes: 100 * 1024,
    };
    let (tx, mut rx) = queue(
        &cfg(OverflowPolicy::Drop),
        telemetry.queue("exporter", "bytes", "", 64),
    );
    assert_eq!(tx.send(sized(40)).await, SendOutcome::Queued);
    assert_eq!(tx.send(sized(40)).await, SendOutcome::Queued);
    assert_eq!(tx.send(sized(40)).await, SendOutcome::DroppedFull);
    assert_eq!(
        tx.send(logs(1)).await,
        SendOutcome::Queued,
        "small ones still fit"
    );
    // Taking a batch out frees its bytes.
    rx.recv().await.expect("a batch");
    assert_eq!(tx.send(sized(40)).await, SendOutcome::Queued);
    // A batch larger than the whole bound is let in alone, not dropped forever.
    let (tx, mut rx) = queue(
        &cfg(OverflowPolicy::Block),
        telemetry.queue("exporter", "bytes2", "", 64),
    );
    assert_eq!(tx.send(sized(150)).await, SendOutcome::Queued);
    let blocked = tokio::time::timeout(Duration::from_millis(100), tx.send(sized(1))).await;
    assert!(
        blocked.is_err(),
        "block policy waits while the bytes are taken"
    );
    rx.recv().await.expect("the big batch");
    assert_eq!(tx.send(sized(1)).await, SendOutcome::Queued);
}
