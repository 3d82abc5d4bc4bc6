//! Which process has a database file open: what the commands that copy or replace the embedded database
//! (`palaver import`, `backup`, `restore`) ask before they start. SQLite's own locks cannot say it: in WAL mode
//! a server holds no lock between its transactions.

use std::path::Path;

/// Another process that has `path` open, with its program name, found through `/proc/<pid>/fd` (processes of
/// other users that cannot be inspected are not seen).
#[cfg(target_os = "linux")]
pub fn holder(path: &Path) -> Option<(u32, String)> {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::metadata(path).ok()?;
    let me = std::process::id();
    for process in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = process.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(open) = std::fs::metadata(fd.path()) else { continue };
            if open.dev() == file.dev() && open.ino() == file.ino() {
                let program = std::fs::read_to_string(process.path().join("comm")).unwrap_or_default();
                return Some((pid, program.trim().to_string()));
            }
        }
    }
    None
}

/// Elsewhere nothing is seen: the documentation asks to stop the server first.
#[cfg(not(target_os = "linux"))]
pub fn holder(_: &Path) -> Option<(u32, String)> {
    None
}
