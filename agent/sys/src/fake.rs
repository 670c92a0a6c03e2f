//! A fake [`Host`] for unit tests: files below a temporary directory and canned syscall answers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use super::{
    AttachType, Errno, FsError, Host, LoadError, MapCreate, ProgLoad, ProgType, RootFs, Uname,
};

/// A host backed by a temporary directory (the host's `/`) and canned syscall answers.
///
/// By default it is a root process on `Linux 6.8.0 x86_64`, every BPF load and map creation
/// succeeds, Landlock ABI is 6 and seccomp mode is 0.
pub struct FakeHost {
    dir: tempfile::TempDir,
    fs: RootFs,
    /// What `uname()` returns.
    pub uname: Result<Uname, Errno>,
    /// What `euid()` returns.
    pub euid: u32,
    /// Program load answers by (type, expected attach type); missing entries succeed.
    pub prog_loads: HashMap<(ProgType, Option<AttachType>), LoadError>,
    /// What `bpf_map_create()` returns.
    pub map_create: Result<(), Errno>,
    /// What `bpf_enable_stats()` returns.
    pub enable_stats: Result<(), Errno>,
    /// What `landlock_abi()` returns.
    pub landlock: Result<i32, Errno>,
    /// What `prctl_get_seccomp()` returns.
    pub seccomp: Result<i32, Errno>,
    /// Every program load request, in order.
    pub loads: RefCell<Vec<ProgLoad>>,
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost::new()
    }
}

impl FakeHost {
    /// An empty root directory and default answers.
    pub fn new() -> FakeHost {
        let dir = tempfile::tempdir().expect("create temp dir");
        let fs = RootFs::new(dir.path());
        FakeHost {
            dir,
            fs,
            uname: Ok(Uname {
                sysname: "Linux".into(),
                release: "6.8.0".into(),
                version: "#1 SMP".into(),
                machine: "x86_64".into(),
            }),
            euid: 0,
            prog_loads: HashMap::new(),
            map_create: Ok(()),
            enable_stats: Ok(()),
            landlock: Ok(6),
            seccomp: Ok(0),
            loads: RefCell::new(Vec::new()),
        }
    }

    /// The temporary directory standing for `/`.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file at host path `path` (creating parent directories).
    pub fn write(&self, path: &str, contents: impl AsRef<[u8]>) -> &Self {
        let real = self.fs.resolve(Path::new(path));
        if let Some(parent) = real.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        std::fs::write(&real, contents).expect("write fake file");
        self
    }

    /// Creates a directory at host path `path`.
    pub fn mkdir(&self, path: &str) -> &Self {
        std::fs::create_dir_all(self.fs.resolve(Path::new(path))).expect("create fake dir");
        self
    }

    /// Makes loads of `(prog_type, attach)` fail with `errno` and an empty verifier log.
    pub fn refuse(&mut self, prog_type: ProgType, attach: Option<AttachType>, errno: Errno) {
        self.prog_loads.insert(
            (prog_type, attach),
            LoadError {
                errno,
                verifier_log: String::new(),
            },
        );
    }
}

impl Host for FakeHost {
    fn read_to_string(&self, path: &Path) -> Result<String, FsError> {
        self.fs.read_to_string(path)
    }
    fn read(&self, path: &Path) -> Result<Vec<u8>, FsError> {
        self.fs.read(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.fs.exists(path)
    }
    fn read_dir_names(&self, path: &Path) -> Result<Vec<String>, FsError> {
        self.fs.read_dir_names(path)
    }
    fn metadata_len(&self, path: &Path) -> Result<u64, FsError> {
        self.fs.metadata_len(path)
    }
    fn uname(&self) -> Result<Uname, Errno> {
        self.uname.clone()
    }
    fn bpf_prog_load(&self, req: &ProgLoad) -> Result<(), LoadError> {
        self.loads.borrow_mut().push(*req);
        match self
            .prog_loads
            .get(&(req.prog_type, req.expected_attach_type))
        {
            Some(err) => Err(err.clone()),
            None => Ok(()),
        }
    }
    fn bpf_map_create(&self, _req: &MapCreate) -> Result<(), Errno> {
        self.map_create
    }
    fn bpf_enable_stats(&self) -> Result<(), Errno> {
        self.enable_stats
    }
    fn landlock_abi(&self) -> Result<i32, Errno> {
        self.landlock
    }
    fn prctl_get_seccomp(&self) -> Result<i32, Errno> {
        self.seccomp
    }
    fn euid(&self) -> u32 {
        self.euid
    }
}
