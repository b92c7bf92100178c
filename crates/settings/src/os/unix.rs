//! Unix: an owner-only file is created with mode 0600 (never wider, not even briefly); a
//! directory is made durable by fsyncing it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Creates `path` (which must not exist) for writing, readable and writable by its owner only.
pub(crate) fn create_owner_only(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

/// Makes the entries of `dir` (a rename into it) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
