//! `/proc/<pid>/mountinfo` parsing (see proc_pid_mountinfo(5)). Malformed lines are skipped.

use std::path::PathBuf;

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Unique mount id.
    pub mount_id: u32,
    /// Mount id of the parent.
    pub parent_id: u32,
    /// `major:minor` of the file system (`st_dev`); identifies one cgroup v1 hierarchy across
    /// bind mounts.
    pub device: String,
    /// The directory of the file system that forms the root of this mount (`/` unless a
    /// subdirectory is bind-mounted, e.g. a container's own cgroup).
    pub root: String,
    /// Mount point, relative to the process's root.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,relatime`).
    pub mount_options: String,
    /// File system type (`cgroup2`, `tracefs`, `bpf`, ...).
    pub fs_type: String,
    /// Mount source (`cgroup`, `none`, `/dev/vda`).
    pub source: String,
    /// Per-super-block options; for cgroup v1 these name the hierarchy's controllers.
    pub super_options: String,
}

impl Mount {
    /// The super options split on commas.
    pub fn super_option_list(&self) -> impl Iterator<Item = &str> {
        self.super_options.split(',').filter(|o| !o.is_empty())
    }
}

/// Undoes the octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash) used for
/// paths in mountinfo.
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(value) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_line(line: &str) -> Option<Mount> {
    let mut fields = line.split_ascii_whitespace();
    let mount_id = fields.next()?.parse().ok()?;
    let parent_id = fields.next()?.parse().ok()?;
    let device = fields.next()?.to_owned();
    let root = unescape(fields.next()?);
    let mount_point = PathBuf::from(unescape(fields.next()?));
    let mount_options = fields.next()?.to_owned();
    // Optional fields ("shared:1", "master:2", ...) end at a lone "-".
    fields.by_ref().find(|f| *f == "-")?;
    let fs_type = fields.next()?.to_owned();
    let source = fields.next().map(unescape).unwrap_or_default();
    let super_options = fields.next().unwrap_or_default().to_owned();
    Some(Mount {
        mount_id,
        parent_id,
        device,
        root,
        mount_point,
        mount_options,
        fs_type,
        source,
        super_options,
    })
}

/// Parses the text of a mountinfo file, skipping lines that do not parse.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_optional_fields_and_escapes() {
        let text = "\
36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue
garbage line
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 / /x rw - tmpfs
";
        let mounts = parse(text);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].mount_point, PathBuf::from("/mnt 2"));
        assert_eq!(mounts[0].fs_type, "ext3");
        assert_eq!(mounts[0].super_options, "rw,errors=continue");
        assert_eq!(mounts[1].device, "0:38");
        assert_eq!(mounts[1].super_option_list().collect::<Vec<_>>(), ["rw"]);
        assert_eq!(mounts[2].source, "");
    }

    #[test]
    fn unescape_leaves_odd_sequences_alone() {
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("a\\9xx"), "a\\9xx");
        assert_eq!(unescape("end\\04"), "end\\04");
        assert_eq!(unescape("\\777"), "\\777");
    }
}
