//! Profile → libseccomp filter → BPF bytes.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock, PoisonError};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};

use super::error::SeccompError;
use super::filter::CompiledFilter;
use super::policy::{self, Cmp};
use super::profile::{self, Resolved};
use super::{Action, Options};

fn lib(op: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let op = op.into();
    move |source| SeccompError::Libseccomp { op, source }
}

fn to_scmp(c: Cmp) -> ScmpArgCompare {
    match c {
        Cmp::Eq { index, value } => ScmpArgCompare::new(index, ScmpCompareOp::Equal, value),
        Cmp::MaskedEq { index, mask, value } => {
            ScmpArgCompare::new(index, ScmpCompareOp::MaskedEqual(mask), value)
        }
    }
}

/// Resolves a syscall named by the policy (not by a profile) to its x86_64 number.
fn policy_nr(syscall: &str) -> Result<i32, SeccompError> {
    profile::syscall_nr(syscall).ok_or_else(|| SeccompError::Profile {
        file: "agent/src/plugins/sandbox/seccomp/policy.rs",
        reason: format!("{syscall} is not an x86_64 syscall"),
    })
}

/// Adds one rule, requiring libseccomp to add it exactly as given; `why` goes into errors.
fn add(
    ctx: &mut ScmpFilterContext,
    action: ScmpAction,
    nr: i32,
    cmps: &[Cmp],
    why: &str,
) -> Result<(), SeccompError> {
    let cmps: Vec<_> = cmps.iter().copied().map(to_scmp).collect();
    let what = || format!("add the {action:?} rule for syscall {nr} {cmps:?} ({why})");
    if cmps.is_empty() {
        ctx.add_rule_exact(action, nr).map_err(lib(what()))?;
    } else {
        ctx.add_rule_conditional_exact(action, nr, &cmps)
            .map_err(lib(what()))?;
    }
    Ok(())
}

/// Builds the libseccomp context of a resolved profile.
fn build(p: &Resolved, action: Action, opts: &Options) -> Result<ScmpFilterContext, SeccompError> {
    let default = if action == Action::Errno && opts.errno_via_trap {
        ScmpAction::Trap // its data (the errno) is patched in by `trap_errno` after export
    } else {
        action.to_scmp()
    };
    let mut ctx = ScmpFilterContext::new(default).map_err(lib("create a filter"))?;
    // The native architecture only; anything else (i386 `int 0x80`, and x32 numbers, which
    // libseccomp routes to the bad-arch action on x86_64 filters) kills the process.
    if ScmpArch::native() != ScmpArch::X8664 {
        return Err(SeccompError::UnsupportedArch);
    }
    ctx.set_act_badarch(ScmpAction::KillProcess)
        .map_err(lib("set the bad-arch action"))?;
    // Binary-tree dispatch on the syscall number instead of a linear chain.
    ctx.set_ctl_optimize(2)
        .map_err(lib("enable the binary-tree optimisation"))?;
    for r in p.rules.iter().filter(|r| opts.network || !r.network) {
        let why = format!("{} {} rule {}", r.syscall, r.file, r.rule);
        add(&mut ctx, ScmpAction::Allow, r.nr, &r.cmps, &why)?;
    }
    for name in policy::ENOSYS_SYSCALLS {
        add(
            &mut ctx,
            ScmpAction::Errno(libc::ENOSYS),
            policy_nr(name)?,
            &[],
            name,
        )?;
    }
    if action == Action::Log {
        // Monitor-only mode still enforces the hard deny list and the worst argument cases.
        for name in policy::HARD_DENY {
            add(
                &mut ctx,
                ScmpAction::Errno(libc::EPERM),
                policy_nr(name)?,
                &[],
                name,
            )?;
        }
        for g in policy::log_mode_guards() {
            let nr = policy_nr(g.syscall)?;
            add(
                &mut ctx,
                ScmpAction::Errno(libc::EPERM),
                nr,
                &[g.cmp],
                g.why,
            )?;
        }
    }
    Ok(ctx)
}

/// Exports the BPF program through a memfd (libseccomp 2.5 has no in-memory export).
fn export(ctx: &ScmpFilterContext) -> Result<Box<[libc::sock_filter]>, SeccompError> {
    let export_err = |source| SeccompError::Export { source };
    let mut file = memfd(c"srediag-seccomp-bpf")?;
    ctx.export_bpf(&file)
        .map_err(lib("export the BPF program"))?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0)).map_err(export_err)?;
    file.read_to_end(&mut bytes).map_err(export_err)?;
    CompiledFilter::program_from_bytes(&bytes)
}

/// `SECCOMP_RET_TRAP`: libseccomp 2.5 cannot attach data to it, so the exported program is patched.
const RET_TRAP: u32 = 0x0003_0000;
/// `BPF_RET | BPF_K`.
const BPF_RET_K: u16 = 0x06;

/// Rewrites every `ret SECCOMP_RET_TRAP` of `program` into `ret SECCOMP_RET_TRAP | errno`: the
/// kernel hands the action's 16 data bits to the SIGSYS handler as `si_errno`. Only the default
/// action is a trap in such a filter (the other rules are ALLOW or ERRNO), so only it changes.
/// Returns how many instructions were patched.
pub(crate) fn trap_errno(program: &mut [libc::sock_filter], errno: u16) -> usize {
    let mut n = 0;
    for i in program.iter_mut() {
        if i.code == BPF_RET_K && i.k == RET_TRAP {
            i.k = RET_TRAP | u32::from(errno);
            n += 1;
        }
    }
    n
}

/// Filters already compiled in this process, by (profile, action, network). Profiles are embedded,
/// so compiling is deterministic: a plugin restart pays a copy instead of YAML + libseccomp.
type Cache = Mutex<HashMap<(String, Action, bool, bool), CompiledFilter>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Cache::default)
}

/// See [`super::compile`].
pub(crate) fn compile(
    name: &str,
    action: Action,
    opts: &Options,
) -> Result<CompiledFilter, SeccompError> {
    let key = (name.to_string(), action, opts.network, opts.errno_via_trap);
    if let Some(f) = cache()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Ok(f.clone());
    }
    let f = compile_uncached(name, action, opts)?;
    cache()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, f.clone());
    Ok(f)
}

/// Compiles without the cache.
pub(crate) fn compile_uncached(
    name: &str,
    action: Action,
    opts: &Options,
) -> Result<CompiledFilter, SeccompError> {
    let p = profile::resolve(name)?;
    if opts.network && !p.network_capable {
        return Err(SeccompError::NetworkNotPermitted {
            profile: name.to_string(),
        });
    }
    let ctx = build(&p, action, opts)?;
    let mut program = export(&ctx)?;
    if action == Action::Errno && opts.errno_via_trap {
        trap_errno(&mut program, libc::EPERM as u16);
    }
    Ok(CompiledFilter {
        profile: p.name.to_string(),
        action,
        network: opts.network,
        program,
    })
}

/// The libseccomp pseudo-filter text (PFC) of a compiled profile, for debugging and docs.
pub(crate) fn pfc(name: &str, action: Action, opts: &Options) -> Result<String, SeccompError> {
    let p = profile::resolve(name)?;
    let ctx = build(&p, action, opts)?;
    let mut f = memfd(c"srediag-seccomp-pfc")?;
    ctx.export_pfc(&f).map_err(lib("export the PFC text"))?;
    let mut s = String::new();
    let export_err = |source| SeccompError::Export { source };
    f.seek(SeekFrom::Start(0)).map_err(export_err)?;
    f.read_to_string(&mut s).map_err(export_err)?;
    Ok(s)
}

/// An anonymous in-memory file to export into.
fn memfd(name: &CStr) -> Result<File, SeccompError> {
    // SAFETY: a valid NUL-terminated name and flags; the returned fd is checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(SeccompError::Export {
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: `fd` is a freshly created descriptor owned by nothing else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}
