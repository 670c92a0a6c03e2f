//! Landlock: the one ABI version probe of the workspace, and the TCP port grant a manifest
//! declares and the sandbox enforces (both the trust and the sandbox crate speak it, so it lives
//! below both).

use super::Errno;

/// `LANDLOCK_CREATE_RULESET_VERSION`.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`: the highest Landlock ABI
/// the kernel supports (`ENOSYS`: not built in; `EOPNOTSUPP`: built in but disabled at boot).
pub fn abi_version() -> Result<i32, Errno> {
    // SAFETY: with a NULL attribute pointer and size 0 the kernel reads no user memory; the
    // VERSION flag makes the call return a number rather than a new fd.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    i32::try_from(ret).map_err(|_| Errno::EINVAL)
}

/// Most ports in each list of a grant (each port is one Landlock rule the agent creates).
pub const MAX_PORTS: usize = 64;

/// The TCP ports a plugin may use, on any address (Landlock restricts ports, not addresses).
/// Both lists empty: no network at all (the plugin gets its own empty network namespace).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpPorts {
    /// Ports it may `connect` to.
    pub connect: Vec<u16>,
    /// Ports it may `bind` (to listen on, or as the source port of a connection).
    pub bind: Vec<u16>,
}

impl TcpPorts {
    /// No port at all: the plugin has no network.
    pub fn is_empty(&self) -> bool {
        self.connect.is_empty() && self.bind.is_empty()
    }

    /// Problems with the lists, as `(field, message)`: port 0, duplicates, more than
    /// [`MAX_PORTS`] entries.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, list) in [("connect", &self.connect), ("bind", &self.bind)] {
            if list.len() > MAX_PORTS {
                out.push((
                    name.to_string(),
                    format!("{} ports; at most {MAX_PORTS}", list.len()),
                ));
            }
            for (i, p) in list.iter().enumerate() {
                if *p == 0 {
                    out.push((format!("{name}[{i}]"), "port 0 is not a port".into()));
                } else if list[..i].contains(p) {
                    out.push((format!("{name}[{i}]"), format!("port {p} is listed twice")));
                }
            }
        }
        out
    }
}

impl std::fmt::Display for TcpPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return write!(f, "none");
        }
        write!(f, "connect {:?}, bind {:?}", self.connect, self.bind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists_are_checked() {
        let p = TcpPorts {
            connect: vec![443, 0, 443],
            bind: (1..=65).collect(),
        };
        let fields: Vec<String> = p.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["connect[1]", "connect[2]", "bind"]);
        assert_eq!(TcpPorts::default().to_string(), "none");
    }
}
