#!/usr/bin/env python3
"""Send log records and metric points to an OTLP/HTTP endpoint with the real OpenTelemetry
Python SDK (protobuf encoding), for tests/tests/otlp_python.rs.

Logs: N records, body ``rec-<i>``, severity WARN, attributes ``test.seq=i`` (int) and
``test.run=<run id>``, resource ``service.name=srediag-test``; sent through a
BatchLogRecordProcessor, flushed once.

Metrics: a counter ``srediag_test_requests`` with M data points (attribute ``test.point=j``,
value j+1) and a histogram ``srediag_test_latency`` with one data point (values 1..5), collected
and exported exactly once by force_flush (a reader with an infinite interval: no periodic or
shutdown-time export that would send the points twice). Metrics go gzip-compressed.

Prints one JSON object on stdout: what was sent and every export's result. Exits 1 if any
export did not succeed (the SDK only logs such failures).
"""

import argparse
import json
import math
import sys

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

RESULTS = {"logs": [], "metrics": []}


class RecordingLogExporter(OTLPLogExporter):
    def export(self, batch, *args, **kwargs):
        result = super().export(batch, *args, **kwargs)
        RESULTS["logs"].append({"records": len(batch), "result": result.name})
        return result


class RecordingMetricExporter(OTLPMetricExporter):
    def export(self, metrics_data, *args, **kwargs):
        result = super().export(metrics_data, *args, **kwargs)
        RESULTS["metrics"].append({"result": result.name})
        return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True, help="base URL, e.g. http://127.0.0.1:4318")
    ap.add_argument("--logs", type=int, default=100, help="number of log records")
    ap.add_argument("--metric-points", type=int, default=5, help="counter data points")
    ap.add_argument("--run-id", required=True, help="value of the test.run attribute")
    args = ap.parse_args()
    base = args.endpoint.rstrip("/")
    resource = Resource.create({"service.name": "srediag-test", "test.run": args.run_id})

    # Logs.
    log_exporter = RecordingLogExporter(endpoint=f"{base}/v1/logs", timeout=10)
    logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(log_exporter, max_export_batch_size=64, schedule_delay_millis=60_000)
    )
    logger = logger_provider.get_logger("srediag-tests.python", "1.0")
    for i in range(args.logs):
        logger.emit(
            body=f"rec-{i}",
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            attributes={"test.seq": i, "test.run": args.run_id},
        )
    flushed_logs = logger_provider.force_flush(timeout_millis=30_000)
    logger_provider.shutdown()

    # Metrics.
    metric_exporter = RecordingMetricExporter(
        endpoint=f"{base}/v1/metrics", timeout=10, compression=Compression.Gzip
    )
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=math.inf)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
    meter = meter_provider.get_meter("srediag-tests.python", "1.0")
    counter = meter.create_counter("srediag_test_requests", unit="1", description="test counter")
    for j in range(args.metric_points):
        counter.add(j + 1, {"test.point": j, "test.run": args.run_id})
    hist = meter.create_histogram("srediag_test_latency", unit="ms", description="test histogram")
    for v in (1, 2, 3, 4, 5):
        hist.record(v, {"test.run": args.run_id})
    flushed_metrics = meter_provider.force_flush(timeout_millis=30_000)
    meter_provider.shutdown()

    sent_records = sum(e["records"] for e in RESULTS["logs"])
    ok = (
        flushed_logs
        and flushed_metrics
        and sent_records == args.logs
        and len(RESULTS["metrics"]) == 1
        and all(e["result"] == "SUCCESS" for e in RESULTS["logs"] + RESULTS["metrics"])
    )
    print(
        json.dumps(
            {
                "ok": bool(ok),
                "logs_sent": sent_records,
                "metric_points_sent": args.metric_points + 1,
                "flushed_logs": flushed_logs,
                "flushed_metrics": flushed_metrics,
                "exports": RESULTS,
            }
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
