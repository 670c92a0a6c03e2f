//! A small, bounds-checked reader for kernel BTF (`/sys/kernel/btf/vmlinux`): the header, a walk
//! of the type section and names from the string section. It only indexes kind and name per type
//! id, which is what probing needs (`attach_btf_id` lookups). It never panics on bad input.
//!
//! aya 0.14 re-exports aya-obj's `Btf`, whose `id_by_type_name_kind` is public, but it takes an
//! `aya_obj::btf::BtfKind` that aya does not re-export, and it reads the file itself instead of
//! through [`super::Host`].

/// `BTF_MAGIC`.
const MAGIC: u16 = 0xeb9f;
/// Size of `struct btf_header` (version 1).
const HEADER_LEN: usize = 24;
/// Size of `struct btf_type`.
const TYPE_LEN: usize = 12;

/// BTF type kinds (`BTF_KIND_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BtfKind {
    /// `BTF_KIND_INT`.
    Int = 1,
    /// `BTF_KIND_PTR`.
    Ptr = 2,
    /// `BTF_KIND_ARRAY`.
    Array = 3,
    /// `BTF_KIND_STRUCT`.
    Struct = 4,
    /// `BTF_KIND_UNION`.
    Union = 5,
    /// `BTF_KIND_ENUM`.
    Enum = 6,
    /// `BTF_KIND_FWD`.
    Fwd = 7,
    /// `BTF_KIND_TYPEDEF`.
    Typedef = 8,
    /// `BTF_KIND_VOLATILE`.
    Volatile = 9,
    /// `BTF_KIND_CONST`.
    Const = 10,
    /// `BTF_KIND_RESTRICT`.
    Restrict = 11,
    /// `BTF_KIND_FUNC`.
    Func = 12,
    /// `BTF_KIND_FUNC_PROTO`.
    FuncProto = 13,
    /// `BTF_KIND_VAR`.
    Var = 14,
    /// `BTF_KIND_DATASEC`.
    DataSec = 15,
    /// `BTF_KIND_FLOAT`.
    Float = 16,
    /// `BTF_KIND_DECL_TAG`.
    DeclTag = 17,
    /// `BTF_KIND_TYPE_TAG`.
    TypeTag = 18,
    /// `BTF_KIND_ENUM64`.
    Enum64 = 19,
}

impl BtfKind {
    fn from_raw(raw: u32) -> Option<BtfKind> {
        use BtfKind::*;
        Some(match raw {
            1 => Int,
            2 => Ptr,
            3 => Array,
            4 => Struct,
            5 => Union,
            6 => Enum,
            7 => Fwd,
            8 => Typedef,
            9 => Volatile,
            10 => Const,
            11 => Restrict,
            12 => Func,
            13 => FuncProto,
            14 => Var,
            15 => DataSec,
            16 => Float,
            17 => DeclTag,
            18 => TypeTag,
            19 => Enum64,
            _ => return None,
        })
    }

    /// Bytes that follow `struct btf_type` for this kind, given `vlen`.
    fn trailing_len(self, vlen: usize) -> usize {
        use BtfKind::*;
        match self {
            Int | Var | DeclTag => 4,
            Array => 12,
            Struct | Union | DataSec | Enum64 => 12 * vlen,
            Enum | FuncProto => 8 * vlen,
            Ptr | Fwd | Typedef | Volatile | Const | Restrict | Func | Float | TypeTag => 0,
        }
    }
}

/// Why BTF data could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BtfError {
    /// Shorter than a BTF header.
    #[error("btf data too short for a header ({len} bytes)")]
    TooShort {
        /// Data length.
        len: usize,
    },
    /// The magic number is wrong.
    #[error("bad btf magic {magic:#06x}")]
    BadMagic {
        /// The magic read (little-endian).
        magic: u16,
    },
    /// `hdr_len` is smaller than a header or points past the data.
    #[error("btf header length {hdr_len} is out of range")]
    BadHeaderLen {
        /// The header length field.
        hdr_len: u32,
    },
    /// A section lies (partly) outside the data.
    #[error("btf {section} section (offset {offset}, length {len}) lies outside the data")]
    SectionOutOfBounds {
        /// `type` or `string`.
        section: &'static str,
        /// Section offset after the header.
        offset: u32,
        /// Section length.
        len: u32,
    },
    /// A type record runs past the end of the type section.
    #[error("btf type {id} at byte {offset} of the type section is truncated")]
    TruncatedType {
        /// The type id.
        id: u32,
        /// Offset in the type section.
        offset: usize,
    },
    /// A type has a kind this reader does not know (so its size is unknown).
    #[error("btf type {id} has unknown kind {kind}")]
    UnknownKind {
        /// The type id.
        id: u32,
        /// The raw kind.
        kind: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct TypeEntry {
    kind: BtfKind,
    name_off: u32,
}

/// An index of a BTF blob: kind and name of every type id.
#[derive(Debug, Clone)]
pub struct Btf {
    /// Entry `i` describes type id `i + 1` (id 0 is `void`).
    types: Vec<TypeEntry>,
    strings: Vec<u8>,
}

fn read_u32(data: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let bytes: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    })
}

fn section<'a>(
    data: &'a [u8],
    hdr_len: usize,
    offset: u32,
    len: u32,
    name: &'static str,
) -> Result<&'a [u8], BtfError> {
    let err = BtfError::SectionOutOfBounds {
        section: name,
        offset,
        len,
    };
    let start = hdr_len.checked_add(offset as usize).ok_or(err.clone())?;
    let end = start.checked_add(len as usize).ok_or(err.clone())?;
    data.get(start..end).ok_or(err)
}

impl Btf {
    /// Parses a BTF blob (either endianness).
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        if data.len() < HEADER_LEN {
            return Err(BtfError::TooShort { len: data.len() });
        }
        let magic = u16::from_le_bytes([data[0], data[1]]);
        let big = match magic {
            MAGIC => false,
            m if m.swap_bytes() == MAGIC => true,
            m => return Err(BtfError::BadMagic { magic: m }),
        };
        let field = |at| read_u32(data, at, big).ok_or(BtfError::TooShort { len: data.len() });
        let hdr_len = field(4)?;
        if (hdr_len as usize) < HEADER_LEN || hdr_len as usize > data.len() {
            return Err(BtfError::BadHeaderLen { hdr_len });
        }
        let hdr = hdr_len as usize;
        let types = section(data, hdr, field(8)?, field(12)?, "type")?;
        let strings = section(data, hdr, field(16)?, field(20)?, "string")?;

        let mut entries = Vec::new();
        let mut at = 0usize;
        while at < types.len() {
            let id = u32::try_from(entries.len() + 1).unwrap_or(u32::MAX);
            let truncated = BtfError::TruncatedType { id, offset: at };
            if types.len() - at < TYPE_LEN {
                return Err(truncated);
            }
            let name_off = read_u32(types, at, big).ok_or(truncated.clone())?;
            let info = read_u32(types, at + 4, big).ok_or(truncated.clone())?;
            let raw_kind = (info >> 24) & 0x1f;
            let kind =
                BtfKind::from_raw(raw_kind).ok_or(BtfError::UnknownKind { id, kind: raw_kind })?;
            let vlen = (info & 0xffff) as usize;
            let next = at + TYPE_LEN + kind.trailing_len(vlen);
            if next > types.len() {
                return Err(truncated);
            }
            entries.push(TypeEntry { kind, name_off });
            at = next;
        }
        Ok(Btf {
            types: entries,
            strings: strings.to_vec(),
        })
    }

    /// Number of types, not counting `void` (id 0).
    pub fn type_count(&self) -> usize {
        self.types.len()
    }

    /// The name at an offset of the string section (`None` when out of range, unterminated or
    /// not UTF-8).
    fn string_at(&self, offset: u32) -> Option<&str> {
        let rest = self.strings.get(offset as usize..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&rest[..end]).ok()
    }

    /// The kind of a type id (`None` for `void` and unknown ids).
    pub fn kind_of(&self, id: u32) -> Option<BtfKind> {
        let idx = (id as usize).checked_sub(1)?;
        self.types.get(idx).map(|t| t.kind)
    }

    /// The name of a type id (empty for anonymous types; `None` for unknown ids).
    pub fn name_of(&self, id: u32) -> Option<&str> {
        let idx = (id as usize).checked_sub(1)?;
        self.string_at(self.types.get(idx)?.name_off)
    }

    /// The first type id with this name and kind, e.g. (`btf_trace_sched_switch`, typedef).
    pub fn id_by_name_kind(&self, name: &str, kind: BtfKind) -> Option<u32> {
        let want = name.as_bytes();
        self.types.iter().enumerate().find_map(|(idx, t)| {
            if t.kind != kind {
                return None;
            }
            let rest = self.strings.get(t.name_off as usize..)?;
            let matches =
                rest.len() > want.len() && rest.starts_with(want) && rest[want.len()] == 0;
            if matches {
                u32::try_from(idx + 1).ok()
            } else {
                None
            }
        })
    }
}

/// Builds a little-endian BTF blob from `(name, raw kind, vlen, trailing bytes)` records (test
/// helper, also used by the agent's probe tests through the `fake` feature).
#[cfg(any(test, feature = "fake"))]
pub fn test_blob(types: &[(&str, u32, u32, usize)]) -> Vec<u8> {
    let mut strings = vec![0u8];
    let mut tsec = Vec::new();
    for &(name, kind, vlen, trailing) in types {
        let off = if name.is_empty() {
            0
        } else {
            let off = strings.len() as u32;
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
            off
        };
        tsec.extend_from_slice(&off.to_le_bytes());
        tsec.extend_from_slice(&((kind << 24) | vlen).to_le_bytes());
        tsec.extend_from_slice(&0u32.to_le_bytes());
        tsec.extend(std::iter::repeat_n(0u8, trailing));
    }
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[1, 0]);
    for v in [
        24u32,
        0,
        tsec.len() as u32,
        tsec.len() as u32,
        strings.len() as u32,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend(tsec);
    out.extend(strings);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(types: &[(&str, u32, u32, usize)]) -> Vec<u8> {
        test_blob(types)
    }

    fn sample() -> Vec<u8> {
        blob(&[
            ("int", 1, 0, 4),
            ("", 2, 0, 0),                       // ptr
            ("task_struct", 4, 2, 24),           // struct with 2 members
            ("", 13, 2, 16),                     // func_proto with 2 params
            ("btf_trace_sched_switch", 8, 0, 0), // typedef
            ("do_nanosleep", 12, 0, 0),          // func
            ("e", 6, 3, 24),                     // enum with 3 values
            ("bpf_lsm_file_open", 12, 0, 0),     // func
        ])
    }

    #[test]
    fn finds_ids_by_name_and_kind() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.type_count(), 8);
        assert_eq!(
            btf.id_by_name_kind("btf_trace_sched_switch", BtfKind::Typedef),
            Some(5)
        );
        assert_eq!(btf.id_by_name_kind("do_nanosleep", BtfKind::Func), Some(6));
        assert_eq!(
            btf.id_by_name_kind("bpf_lsm_file_open", BtfKind::Func),
            Some(8)
        );
        assert_eq!(btf.id_by_name_kind("do_nanosleep", BtfKind::Typedef), None);
        assert_eq!(btf.id_by_name_kind("do_nano", BtfKind::Func), None);
        assert_eq!(btf.kind_of(3), Some(BtfKind::Struct));
        assert_eq!(btf.name_of(3), Some("task_struct"));
        assert_eq!(btf.name_of(2), Some(""));
        assert_eq!(btf.kind_of(0), None);
        assert_eq!(btf.kind_of(99), None);
    }

    #[test]
    fn big_endian_header_is_recognised() {
        let mut be = Vec::new();
        be.extend_from_slice(&MAGIC.to_be_bytes());
        be.extend_from_slice(&[1, 0]);
        for v in [24u32, 0, 0, 0, 1] {
            be.extend_from_slice(&v.to_be_bytes());
        }
        be.push(0);
        assert_eq!(Btf::parse(&be).unwrap().type_count(), 0);
    }

    #[test]
    fn truncated_and_garbled_input_is_an_error_not_a_panic() {
        let good = sample();
        for len in 0..good.len() {
            let _ = Btf::parse(&good[..len]);
        }
        assert!(matches!(
            Btf::parse(&good[..10]),
            Err(BtfError::TooShort { .. })
        ));
        assert!(matches!(
            Btf::parse(&good[..good.len() - 1]),
            Err(BtfError::SectionOutOfBounds { .. })
        ));
        // Flip every byte in turn, and fill with pseudo-random garbage: never panics.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            if let Ok(btf) = Btf::parse(&bad) {
                let _ = btf.id_by_name_kind("do_nanosleep", BtfKind::Func);
                for id in 0..12 {
                    let _ = btf.name_of(id);
                }
            }
        }
        let mut x = 0x1234_5678u32;
        let mut garbage = good[..24].to_vec();
        for _ in 0..4096 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            garbage.push(x as u8);
        }
        let _ = Btf::parse(&garbage);
        let mut huge = good.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Btf::parse(&huge).is_err());
        let mut bad_magic = good.clone();
        bad_magic[0] = 0;
        assert!(matches!(
            Btf::parse(&bad_magic),
            Err(BtfError::BadMagic { .. })
        ));
        let mut unknown = blob(&[("x", 31, 0, 0)]);
        assert!(matches!(
            Btf::parse(&unknown),
            Err(BtfError::UnknownKind { id: 1, kind: 31 })
        ));
        unknown[4..8].copy_from_slice(&4u32.to_le_bytes());
        assert!(matches!(
            Btf::parse(&unknown),
            Err(BtfError::BadHeaderLen { hdr_len: 4 })
        ));
    }

    #[test]
    fn unterminated_names_are_none() {
        let mut data = blob(&[("abc", 12, 0, 0)]);
        let last = data.len() - 1;
        data[last] = b'x'; // drop the NUL of the last (only) name
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(btf.name_of(1), None);
        assert_eq!(btf.id_by_name_kind("abc", BtfKind::Func), None);
    }

    #[test]
    fn parses_the_running_kernel_btf_when_present() {
        let path = std::path::Path::new("/sys/kernel/btf/vmlinux");
        let Ok(data) = std::fs::read(path) else {
            println!("skipped: {} not readable", path.display());
            return;
        };
        let btf = Btf::parse(&data).expect("vmlinux btf parses");
        assert!(btf.type_count() > 1000, "only {} types", btf.type_count());
        let id = btf
            .id_by_name_kind("task_struct", BtfKind::Struct)
            .expect("task_struct in vmlinux btf");
        assert_eq!(btf.name_of(id), Some("task_struct"));
    }
}
