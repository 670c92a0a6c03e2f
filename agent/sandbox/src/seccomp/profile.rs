//! Profile files (`profiles/seccomp/*.yaml`): schema, embedded table, include resolution and
//! validation.
//!
//! A profile is parsed strictly (unknown fields are errors), its includes are resolved depth-first
//! (each file once, cycles rejected), every rule is expanded to one entry per syscall and per
//! combination of listed argument values, and every entry is validated: known x86_64 syscall, not
//! hard-denied, argument invariants of [`policy`](super::policy), non-empty comment, no redundancy
//! along the include chain.

use std::collections::{BTreeMap, BTreeSet};

use libseccomp::{ScmpArch, ScmpSyscall};
use serde::Deserialize;

use super::Action;
use super::error::SeccompError;
use super::policy::{self, Cmp};

/// One embedded profile file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source {
    /// Profile name (the file stem).
    pub(crate) name: &'static str,
    /// Path relative to the repository root, for messages.
    pub(crate) file: &'static str,
    /// YAML text.
    pub(crate) text: &'static str,
}

macro_rules! embed {
    ($($name:literal),* $(,)?) => {
        &[$(Source {
            name: $name,
            file: concat!("profiles/seccomp/", $name, ".yaml"),
            text: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"), "/../../profiles/seccomp/", $name, ".yaml"
            )),
        }),*]
    };
}

/// Every profile file, embedded so that the agent needs no files at run time. A test checks that
/// this list matches the directory.
pub(crate) const EMBEDDED: &[Source] = embed![
    "base",
    "network",
    "receiver",
    "processor",
    "exporter",
    "diagnostics",
    "extension",
];

/// The YAML schema of a profile file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    /// Must equal the file stem.
    name: String,
    /// What the profile is for.
    description: String,
    /// An include-only fragment (e.g. `network`), not compilable on its own.
    #[serde(default)]
    fragment: bool,
    /// The action recommended for this profile when configuration does not choose one. Required in
    /// plugin profiles, forbidden in fragments.
    #[serde(default)]
    default_action: Option<Action>,
    /// Profiles whose rules are part of this one.
    #[serde(default)]
    include: Vec<String>,
    /// Profiles whose rules apply only when the plugin declares network access. A profile without
    /// any refuses to compile with network access.
    #[serde(default)]
    network_include: Vec<String>,
    /// Allow rules.
    #[serde(default)]
    allow: Vec<RuleFile>,
}

/// One allow rule in a profile file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    /// Syscall names (x86_64).
    syscalls: Vec<String>,
    /// Which code path needs these syscalls.
    comment: String,
    /// Argument filters, all of which must match (AND). A list of values in one filter means any of
    /// them (OR); the rule is expanded to one libseccomp rule per combination.
    #[serde(default)]
    args: Vec<ArgFile>,
}

/// One argument filter in a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgFile {
    /// Argument index, 0..=5.
    index: u32,
    /// Comparison.
    op: OpFile,
    /// Expected value(s): numbers, symbols of the policy table, or `"A|B"` bit unions.
    value: OneOrMany,
    /// Bits compared by `masked_eq` (required there, forbidden with `eq`).
    #[serde(default)]
    mask: Option<Value>,
}

/// Comparison operators. Only positive matches: see [`Cmp`].
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OpFile {
    /// All 64 bits equal.
    Eq,
    /// `arg & mask == value`.
    MaskedEq,
}

/// A number or an expression of symbols and numbers joined by `|`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Value {
    /// A YAML integer.
    Num(u64),
    /// `"AF_INET"`, `"CLONE_THREAD|CLONE_NEWNS"`, `"0x40"`.
    Expr(String),
}

/// One value or a list of alternatives.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    /// A single value.
    One(Value),
    /// Alternatives.
    Many(Vec<Value>),
}

/// One allowed (syscall, argument filters) pair after expansion.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// Syscall name.
    pub(crate) syscall: String,
    /// x86_64 syscall number.
    pub(crate) nr: i32,
    /// Argument filters (AND), sorted by index.
    pub(crate) cmps: Vec<Cmp>,
    /// Only when the plugin declares network access.
    pub(crate) network: bool,
    /// The file the rule comes from.
    pub(crate) file: &'static str,
    /// 1-based position in that file's `allow` list.
    pub(crate) rule: usize,
}

/// A profile with its includes resolved and every rule validated.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// Profile name.
    pub(crate) name: &'static str,
    /// The recommended action.
    pub(crate) default_action: Action,
    /// Whether the profile has network rules (`network_include`).
    pub(crate) network_capable: bool,
    /// Expanded rules, in include order.
    pub(crate) rules: Vec<Rule>,
}

/// Parses one file.
fn parse(src: &Source) -> Result<ProfileFile, SeccompError> {
    let file: ProfileFile =
        serde_yaml::from_str(src.text).map_err(|source| SeccompError::Parse {
            file: src.file,
            source,
        })?;
    let bad = |reason: String| SeccompError::Profile {
        file: src.file,
        reason,
    };
    if file.name != src.name {
        return Err(bad(format!(
            "name {:?} does not match the file name",
            file.name
        )));
    }
    if file.description.trim().is_empty() {
        return Err(bad("empty description".into()));
    }
    match (file.fragment, file.default_action) {
        (false, None) => return Err(bad("a plugin profile must state its default_action".into())),
        (true, Some(_)) => return Err(bad("a fragment has no default_action".into())),
        _ => {}
    }
    if file.fragment && !file.network_include.is_empty() {
        return Err(bad("a fragment cannot have network_include".into()));
    }
    Ok(file)
}

/// Evaluates a value expression.
fn eval(v: &Value) -> Result<u64, String> {
    match v {
        Value::Num(n) => Ok(*n),
        Value::Expr(s) => s.split('|').map(str::trim).try_fold(0u64, |acc, term| {
            let n = if let Some(hex) = term.strip_prefix("0x") {
                u64::from_str_radix(hex, 16).map_err(|e| format!("bad number {term:?}: {e}"))?
            } else if term.starts_with(|c: char| c.is_ascii_digit()) {
                term.parse()
                    .map_err(|e| format!("bad number {term:?}: {e}"))?
            } else {
                policy::symbol(term).ok_or_else(|| format!("unknown symbol {term:?}"))?
            };
            Ok(acc | n)
        }),
    }
}

/// Expands a rule's argument filters into the alternatives (each an AND of comparisons).
fn expand_args(args: &[ArgFile]) -> Result<Vec<Vec<Cmp>>, String> {
    let mut seen = BTreeSet::new();
    let mut combos: Vec<Vec<Cmp>> = vec![Vec::new()];
    for a in args {
        if a.index > 5 {
            return Err(format!("argument index {} is not 0..=5", a.index));
        }
        if !seen.insert(a.index) {
            return Err(format!(
                "argument {} is filtered twice in one rule",
                a.index
            ));
        }
        let values = match &a.value {
            OneOrMany::One(v) => vec![eval(v)?],
            OneOrMany::Many(vs) if vs.is_empty() => return Err("empty value list".into()),
            OneOrMany::Many(vs) => vs.iter().map(eval).collect::<Result<Vec<_>, _>>()?,
        };
        let mask = a.mask.as_ref().map(eval).transpose()?;
        let cmps = values
            .into_iter()
            .map(|value| match (a.op, mask) {
                (OpFile::Eq, None) => Ok(Cmp::Eq {
                    index: a.index,
                    value,
                }),
                (OpFile::Eq, Some(_)) => Err("mask is only valid with masked_eq".to_string()),
                (OpFile::MaskedEq, None) => Err("masked_eq needs a mask".to_string()),
                (OpFile::MaskedEq, Some(0)) => Err("masked_eq with mask 0 matches anything".into()),
                (OpFile::MaskedEq, Some(mask)) if value & !mask != 0 => Err(format!(
                    "value {value:#x} has bits outside mask {mask:#x}: the rule can never match"
                )),
                (OpFile::MaskedEq, Some(mask)) => Ok(Cmp::MaskedEq {
                    index: a.index,
                    mask,
                    value,
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        combos = combos
            .iter()
            .flat_map(|prefix| {
                cmps.iter().map(move |c| {
                    let mut v = prefix.clone();
                    v.push(*c);
                    v
                })
            })
            .collect();
    }
    for c in &mut combos {
        c.sort();
    }
    Ok(combos)
}

/// Resolves a syscall name to its x86_64 number.
pub(crate) fn syscall_nr(name: &str) -> Option<i32> {
    ScmpSyscall::from_name_by_arch(name, ScmpArch::X8664)
        .ok()
        .map(ScmpSyscall::as_raw_syscall)
        .filter(|nr| *nr >= 0)
}

/// Validates and expands the rules of one file.
fn expand_rules(
    src: &Source,
    file: &ProfileFile,
    network: bool,
) -> Result<Vec<Rule>, SeccompError> {
    let mut out = Vec::new();
    for (i, r) in file.allow.iter().enumerate() {
        let rule = i + 1;
        let invalid = |reason: String| SeccompError::InvalidRule {
            file: src.file,
            rule,
            comment: r.comment.clone(),
            reason,
        };
        if r.comment.trim().is_empty() {
            return Err(invalid(
                "every rule needs a comment naming the code path".into(),
            ));
        }
        if r.syscalls.is_empty() {
            return Err(invalid("empty syscalls list".into()));
        }
        let combos = expand_args(&r.args).map_err(invalid)?;
        for name in &r.syscalls {
            let nr = syscall_nr(name).ok_or_else(|| SeccompError::UnknownSyscall {
                file: src.file,
                rule,
                comment: r.comment.clone(),
                syscall: name.clone(),
            })?;
            if policy::is_hard_denied(name) {
                return Err(SeccompError::HardDenied {
                    file: src.file,
                    rule,
                    comment: r.comment.clone(),
                    syscall: name.clone(),
                });
            }
            for cmps in &combos {
                policy::check_restricted_args(name, cmps).map_err(invalid)?;
                out.push(Rule {
                    syscall: name.clone(),
                    nr,
                    cmps: cmps.clone(),
                    network,
                    file: src.file,
                    rule,
                });
            }
        }
    }
    Ok(out)
}

/// Rejects a syscall allowed twice with the same filters, or unconditionally and with filters.
fn check_redundancy(rules: &[Rule]) -> Result<(), SeccompError> {
    let mut by_syscall: BTreeMap<&str, Vec<&Rule>> = BTreeMap::new();
    for r in rules {
        let earlier = by_syscall.entry(&r.syscall).or_default();
        if let Some(first) = earlier
            .iter()
            .find(|e| e.cmps.is_empty() || r.cmps.is_empty() || e.cmps == r.cmps)
        {
            return Err(SeccompError::RedundantRule {
                file: r.file,
                rule: r.rule,
                syscall: r.syscall.clone(),
                first_file: first.file,
                first_rule: first.rule,
            });
        }
        earlier.push(r);
    }
    Ok(())
}

/// Looks a profile up in `table`.
fn find<'t>(table: &'t [Source], name: &str) -> Option<&'t Source> {
    table.iter().find(|s| s.name == name)
}

/// Collects the rules of `src` and its includes, depth-first, each file once.
fn collect(
    table: &[Source],
    src: &Source,
    network: bool,
    stack: &mut Vec<&'static str>,
    done: &mut BTreeSet<&'static str>,
    out: &mut Vec<Rule>,
) -> Result<(), SeccompError> {
    if stack.contains(&src.name) {
        return Err(SeccompError::Profile {
            file: src.file,
            reason: format!("include cycle: {} -> {}", stack.join(" -> "), src.name),
        });
    }
    if !done.insert(src.name) {
        return Ok(());
    }
    let file = parse(src)?;
    stack.push(src.name);
    for inc in &file.include {
        let inc_src = find(table, inc).ok_or_else(|| SeccompError::Profile {
            file: src.file,
            reason: format!("include of unknown profile {inc:?}"),
        })?;
        collect(table, inc_src, network, stack, done, out)?;
    }
    out.extend(expand_rules(src, &file, network)?);
    stack.pop();
    Ok(())
}

/// Resolves and validates profile `name` of `table`.
pub(crate) fn resolve_in(table: &[Source], name: &str) -> Result<Resolved, SeccompError> {
    let unknown = || SeccompError::UnknownProfile {
        name: name.to_string(),
        known: compilable_names_in(table).join(", "),
    };
    let src = find(table, name).ok_or_else(unknown)?;
    let file = parse(src)?;
    let Some(default_action) = file.default_action else {
        return Err(SeccompError::Fragment {
            profile: name.to_string(),
        });
    };
    let mut rules = Vec::new();
    let mut done = BTreeSet::new();
    collect(table, src, false, &mut Vec::new(), &mut done, &mut rules)?;
    for inc in &file.network_include {
        let inc_src = find(table, inc).ok_or_else(|| SeccompError::Profile {
            file: src.file,
            reason: format!("network_include of unknown profile {inc:?}"),
        })?;
        collect(
            table,
            inc_src,
            true,
            &mut vec![src.name],
            &mut done,
            &mut rules,
        )?;
    }
    check_redundancy(&rules)?;
    Ok(Resolved {
        name: src.name,
        default_action,
        network_capable: !file.network_include.is_empty(),
        rules,
    })
}

/// Resolves and validates an embedded profile.
pub(crate) fn resolve(name: &str) -> Result<Resolved, SeccompError> {
    resolve_in(EMBEDDED, name)
}

/// Names of the profiles of `table` that are not fragments (unparsable files are skipped here and
/// reported when resolved).
pub(crate) fn compilable_names_in(table: &[Source]) -> Vec<&'static str> {
    table
        .iter()
        .filter(|s| parse(s).is_ok_and(|f| !f.fragment))
        .map(|s| s.name)
        .collect()
}
