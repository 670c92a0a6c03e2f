//! Borrowed, read-only views of a verified batch: processors that only need to *read* records
//! (filters, deduplication, routing) use them to avoid decoding into owned OTLP structs — no
//! allocation per record. Views exist for log batches; a metrics batch has no view (processors
//! get owned records for it).

use super::generated::srediag::wire as w;
use flatbuffers::{ForwardsUOffset, Vector};

type Kvs<'a> = Option<Vector<'a, ForwardsUOffset<w::KeyValue<'a>>>>;

/// A verified batch of log records, borrowed from the frame it was read from.
#[derive(Clone, Copy)]
pub struct LogsView<'a> {
    pub(super) batch: w::Batch<'a>,
}

impl<'a> LogsView<'a> {
    /// Log records in the batch.
    pub fn items(&self) -> u64 {
        self.resource_logs()
            .flat_map(|r| r.scope_logs())
            .map(|s| s.len() as u64)
            .sum()
    }

    /// Resource → scope → records, as in OTLP.
    pub fn resource_logs(self) -> impl Iterator<Item = ResourceLogsView<'a>> + 'a {
        self.batch
            .logs()
            .into_iter()
            .flatten()
            .map(|r| ResourceLogsView { r })
    }
}

/// One resource's log records.
#[derive(Clone, Copy)]
pub struct ResourceLogsView<'a> {
    r: w::ResourceLogs<'a>,
}

impl<'a> ResourceLogsView<'a> {
    /// The resource's attributes, if it has a resource.
    pub fn resource_attributes(self) -> Option<impl Iterator<Item = KeyValueView<'a>> + 'a> {
        self.r.resource().map(|r| kvs(r.attributes()))
    }

    /// Scopes.
    pub fn scope_logs(self) -> impl Iterator<Item = ScopeLogsView<'a>> + 'a {
        self.r
            .scope_logs()
            .into_iter()
            .flatten()
            .map(|s| ScopeLogsView { s })
    }
}

/// One scope's log records.
#[derive(Clone, Copy)]
pub struct ScopeLogsView<'a> {
    s: w::ScopeLogs<'a>,
}

impl<'a> ScopeLogsView<'a> {
    /// The scope: (name, version, attributes), if set.
    pub fn scope(
        self,
    ) -> Option<(
        &'a str,
        &'a str,
        impl Iterator<Item = KeyValueView<'a>> + 'a,
    )> {
        self.s.scope().map(|sc| {
            (
                sc.name().unwrap_or_default(),
                sc.version().unwrap_or_default(),
                kvs(sc.attributes()),
            )
        })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.s.log_records().map(|v| v.len()).unwrap_or(0)
    }

    /// True without records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records.
    pub fn log_records(self) -> impl Iterator<Item = LogRecordView<'a>> + 'a {
        self.s
            .log_records()
            .into_iter()
            .flatten()
            .map(|r| LogRecordView { r })
    }
}

/// One log record.
#[derive(Clone, Copy)]
pub struct LogRecordView<'a> {
    r: w::LogRecord<'a>,
}

impl<'a> LogRecordView<'a> {
    /// `time_unix_nano`.
    pub fn time_unix_nano(&self) -> u64 {
        self.r.time_unix_nano()
    }
    /// `observed_time_unix_nano`.
    pub fn observed_time_unix_nano(&self) -> u64 {
        self.r.observed_time_unix_nano()
    }
    /// `severity_number`.
    pub fn severity_number(&self) -> i32 {
        self.r.severity_number()
    }
    /// `severity_text`.
    pub fn severity_text(&self) -> &'a str {
        self.r.severity_text().unwrap_or_default()
    }
    /// `body`.
    pub fn body(self) -> Option<ValueView<'a>> {
        self.r.body().map(value)
    }
    /// `attributes`.
    pub fn attributes(self) -> impl Iterator<Item = KeyValueView<'a>> + 'a {
        kvs(self.r.attributes())
    }
    /// Number of attributes.
    pub fn attributes_len(&self) -> usize {
        self.r.attributes().map(|v| v.len()).unwrap_or(0)
    }
    /// `flags`.
    pub fn flags(&self) -> u32 {
        self.r.flags()
    }
    /// `trace_id`.
    pub fn trace_id(&self) -> &'a [u8] {
        self.r.trace_id().map(|v| v.bytes()).unwrap_or_default()
    }
    /// `span_id`.
    pub fn span_id(&self) -> &'a [u8] {
        self.r.span_id().map(|v| v.bytes()).unwrap_or_default()
    }
    /// `event_name`.
    pub fn event_name(&self) -> &'a str {
        self.r.event_name().unwrap_or_default()
    }
}

/// An attribute.
#[derive(Clone, Copy)]
pub struct KeyValueView<'a> {
    kv: w::KeyValue<'a>,
}

impl<'a> KeyValueView<'a> {
    /// The key.
    pub fn key(&self) -> &'a str {
        self.kv.key().unwrap_or_default()
    }
    /// The value (`None` when absent).
    pub fn value(self) -> Option<ValueView<'a>> {
        self.kv.value().map(value)
    }
}

fn kvs<'a>(v: Kvs<'a>) -> impl Iterator<Item = KeyValueView<'a>> + 'a {
    v.into_iter().flatten().map(|kv| KeyValueView { kv })
}

/// An OTLP AnyValue, borrowed.
#[derive(Clone, Copy)]
pub enum ValueView<'a> {
    /// No value.
    Empty,
    /// A string.
    String(&'a str),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A double.
    Double(f64),
    /// Bytes.
    Bytes(&'a [u8]),
    /// An array.
    Array(ArrayView<'a>),
    /// A key-value list.
    KvList(KvListView<'a>),
}

/// An array value.
#[derive(Clone, Copy)]
pub struct ArrayView<'a>(Option<Vector<'a, ForwardsUOffset<w::AnyValue<'a>>>>);

impl<'a> ArrayView<'a> {
    /// Elements.
    pub fn len(&self) -> usize {
        self.0.map(|v| v.len()).unwrap_or(0)
    }
    /// True without elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The elements.
    pub fn iter(self) -> impl Iterator<Item = ValueView<'a>> + 'a {
        self.0.into_iter().flatten().map(value)
    }
}

/// A key-value list value.
#[derive(Clone, Copy)]
pub struct KvListView<'a>(Kvs<'a>);

impl<'a> KvListView<'a> {
    /// Entries.
    pub fn len(&self) -> usize {
        self.0.map(|v| v.len()).unwrap_or(0)
    }
    /// True without entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The entries.
    pub fn iter(self) -> impl Iterator<Item = KeyValueView<'a>> + 'a {
        kvs(self.0)
    }
}

fn value(v: w::AnyValue<'_>) -> ValueView<'_> {
    match v.kind() {
        w::ValueKind::String => ValueView::String(v.string_value().unwrap_or_default()),
        w::ValueKind::Bool => ValueView::Bool(v.bool_value()),
        w::ValueKind::Int => ValueView::Int(v.int_value()),
        w::ValueKind::Double => ValueView::Double(v.double_value()),
        w::ValueKind::Bytes => {
            ValueView::Bytes(v.bytes_value().map(|b| b.bytes()).unwrap_or_default())
        }
        w::ValueKind::Array => ValueView::Array(ArrayView(v.array_value())),
        w::ValueKind::KvList => ValueView::KvList(KvListView(v.kvlist_value())),
        _ => ValueView::Empty,
    }
}
