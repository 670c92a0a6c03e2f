//! The wire schema of the data path: FlatBuffers batches of OTLP log records and metrics.
//!
//! The schema is `plugin-sdk/schema/telemetry.fbs`; the code in `telemetry_generated.rs` is
//! generated from it by `cargo xtask flatc` (flatc 25.12.19, matching the `flatbuffers` crate) and
//! checked for freshness by `cargo xtask test`. Only this module knows FlatBuffers: plugins and the
//! agent exchange [`Records`].
//!
//! Frames on a ring carry a tag ([`Tag`]) and a payload. Batches are verified on a **private
//! copy** of the frame (the ring's consumer copies every frame out of shared memory before it is
//! parsed) with explicit limits ([`MAX_DEPTH`], [`MAX_TABLES`], an apparent-size bound), so a
//! hostile peer can neither make the reader follow offsets out of the buffer nor blow up the
//! decoded size with shared sub-tables (a DAG "zip bomb").

mod decode;
mod encode;
pub mod view;
#[rustfmt::skip]
#[allow(clippy::all, clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn, deprecated, non_camel_case_types, non_snake_case, unused_imports, dead_code, missing_docs, mismatched_lifetime_syntaxes)]
#[path = "telemetry_generated.rs"]
mod generated;

use crate::data::Records;
use flatbuffers::FlatBufferBuilder;

/// Version of `telemetry.fbs`. Sent in the handshake; the agent refuses a plugin built against
/// another version, naming both (seed §9 "ABI mismatch").
pub const WIRE_SCHEMA_VERSION: u32 = 1;

/// Deepest table nesting the verifier accepts.
pub const MAX_DEPTH: usize = 64;

/// Most tables one frame may hold.
pub const MAX_TABLES: usize = 4_000_000;

/// How many times its size a frame may look to the verifier (every table visit counted with its
/// vtable): above the sparsest honest frame's 7 (zero-valued exponential-histogram points: a
/// 12-byte table and vector slot per point against a 36-byte vtable counted on each visit; the
/// theoretical worst with the schema's largest vtable, 40 bytes, is ~7.7), far below what
/// shared sub-tables give.
pub const APPARENT_FACTOR: usize = 9;

/// What a frame is (its ring tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Tag {
    /// Agent → plugin: a batch to process or export (payload: a `Batch` with its `seq`).
    Batch = 1,
    /// Plugin → agent: the (last part of the) result for batch `seq` (processor: the records to
    /// pass on, possibly none; exporter: empty). It acknowledges `seq`.
    Result = 2,
    /// Plugin → agent: records a receiver produced (payload: a `Batch` with the plugin's own seq).
    Emit = 3,
    /// Plugin → agent: batch `seq` could not be handled (payload: 8-byte LE seq + UTF-8 reason).
    /// The agent counts its items as failed and acknowledges it; it is not re-sent.
    Fail = 4,
    /// Plugin → agent: a leading part of the result for `seq`, when the whole result does not fit
    /// in one frame; a `Result` frame ends it. Parts already forwarded are duplicated if the plugin
    /// dies before the `Result` (the batch is re-sent), and counted as such.
    Partial = 5,
    /// Plugin → agent: the answer to batch `seq` as one flag per item (payload: 8-byte LE seq,
    /// 4-byte LE item count, then a bitmap, least significant bit first): the agent keeps the
    /// flagged items of its own copy. It acknowledges `seq`.
    Keep = 6,
}

impl Tag {
    /// The tag of a frame, if known.
    pub fn from_u32(t: u32) -> Option<Tag> {
        Some(match t {
            1 => Tag::Batch,
            2 => Tag::Result,
            3 => Tag::Emit,
            4 => Tag::Fail,
            5 => Tag::Partial,
            6 => Tag::Keep,
            _ => return None,
        })
    }
}

/// A frame that is not a valid batch, or a batch that cannot be encoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The FlatBuffers verifier refused the frame.
    #[error("invalid flatbuffer: {0}")]
    Verify(#[from] flatbuffers::InvalidFlatbuffer),
    /// The frame lacks the `SRDW` file identifier.
    #[error("frame is not an srediag wire batch (bad file identifier)")]
    Identifier,
    /// Well-formed FlatBuffers with contents the schema forbids.
    #[error("invalid batch: {0}")]
    Invalid(String),
    /// AnyValue nesting beyond the encoder's limit.
    #[error("attribute value nested deeper than {0} levels")]
    TooDeep(u32),
    /// A control payload of the wrong size.
    #[error("control frame of {0} bytes is too short")]
    Short(usize),
}

/// Encodes batches, reusing one buffer.
#[derive(Default)]
pub struct Encoder {
    fbb: FlatBufferBuilder<'static>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").finish_non_exhaustive()
    }
}

impl Encoder {
    /// A new encoder.
    pub fn new() -> Encoder {
        Encoder {
            fbb: FlatBufferBuilder::with_capacity(64 * 1024),
        }
    }

    /// Encodes `records` as batch `seq`; the bytes stay valid until the next call.
    pub fn encode(&mut self, seq: u64, records: &Records) -> Result<&[u8], WireError> {
        encode::batch(&mut self.fbb, seq, records)?;
        Ok(self.fbb.finished_data())
    }
}

/// Verifies one batch frame (a private copy, never shared memory) without decoding it.
pub fn verify(frame: &[u8]) -> Result<Verified<'_>, WireError> {
    // `buffer_has_identifier` asserts (panics) on buffers shorter than offset + identifier.
    if frame.len() < 8 || !generated::srediag::wire::batch_buffer_has_identifier(frame) {
        return Err(WireError::Identifier);
    }
    let opts = flatbuffers::VerifierOptions {
        max_depth: MAX_DEPTH,
        max_tables: MAX_TABLES,
        // The verifier counts a table's vtable on every visit, so an honest frame of the
        // sparsest tables looks up to ~7.7× its size; shared sub-tables (a DAG "zip bomb") would
        // look as large as they decode. `APPARENT_FACTOR` × the frame bounds what a frame can
        // decode to.
        max_apparent_size: frame
            .len()
            .saturating_mul(APPARENT_FACTOR)
            .saturating_add(1 << 16),
        ignore_missing_null_terminator: false,
    };
    Ok(Verified(generated::srediag::wire::root_as_batch_with_opts(
        &opts, frame,
    )?))
}

/// A verified batch: read it in place ([`Verified::logs_view`]) or decode it.
#[derive(Clone, Copy)]
pub struct Verified<'a>(generated::srediag::wire::Batch<'a>);

impl<'a> Verified<'a> {
    /// The batch's sequence number.
    pub fn seq(&self) -> u64 {
        self.0.seq()
    }

    /// A borrowed view when this is a logs batch (and only logs).
    pub fn logs_view(&self) -> Option<view::LogsView<'a>> {
        (self.0.signal() == generated::srediag::wire::Signal::Logs && self.0.metrics().is_none())
            .then_some(view::LogsView { batch: self.0 })
    }

    /// Decodes into owned OTLP records.
    pub fn decode(self) -> Result<(u64, Records), WireError> {
        decode::batch(self.0)
    }
}

/// Verifies and decodes one batch frame (a private copy, never shared memory).
pub fn decode(frame: &[u8]) -> Result<(u64, Records), WireError> {
    verify(frame)?.decode()
}

/// The payload of a [`Tag::Fail`] frame.
pub fn fail_payload(seq: u64, reason: &str) -> Vec<u8> {
    let mut p = seq.to_le_bytes().to_vec();
    p.extend_from_slice(&reason.as_bytes()[..reason.len().min(1024)]);
    p
}

/// The payload of a [`Tag::Keep`] frame.
pub fn keep_payload(seq: u64, keep: &[bool]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + keep.len().div_ceil(8));
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&(keep.len() as u32).to_le_bytes());
    for chunk in keep.chunks(8) {
        p.push(
            chunk
                .iter()
                .enumerate()
                .fold(0u8, |b, (i, k)| b | (u8::from(*k) << i)),
        );
    }
    p
}

/// Reads a [`Tag::Keep`] payload: the seq and the flags; the length must be exact.
pub fn parse_keep_payload(p: &[u8]) -> Result<(u64, Vec<bool>), WireError> {
    if p.len() < 12 {
        return Err(WireError::Short(p.len()));
    }
    let seq = u64::from_le_bytes(p[..8].try_into().expect("8 bytes"));
    let n = u32::from_le_bytes(p[8..12].try_into().expect("4 bytes")) as usize;
    let bits = &p[12..];
    if bits.len() != n.div_ceil(8) {
        return Err(WireError::Invalid(format!(
            "keep frame for {n} items carries {} bitmap bytes",
            bits.len()
        )));
    }
    Ok((
        seq,
        (0..n).map(|i| bits[i / 8] >> (i % 8) & 1 == 1).collect(),
    ))
}

/// Reads the seq and reason of a [`Tag::Fail`] payload.
pub fn parse_seq_payload(p: &[u8]) -> Result<(u64, String), WireError> {
    let Some((head, rest)) = p.split_first_chunk::<8>() else {
        return Err(WireError::Short(p.len()));
    };
    let reason = String::from_utf8_lossy(&rest[..rest.len().min(1024)]).into_owned();
    Ok((u64::from_le_bytes(*head), reason))
}

/// Fuzzing entry: decoding arbitrary bytes never panics.
pub fn fuzz_one(data: &[u8]) {
    if let Ok((seq, records)) = decode(data) {
        // Whatever decoded must encode again.
        let mut e = Encoder::new();
        let _ = e.encode(seq, &records);
    }
}

#[cfg(test)]
mod tests;
