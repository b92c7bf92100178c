//! The settings crate's platform layer: creating a file only its owner can read (`admin.token`)
//! and making a rename in a directory durable, one implementation per OS.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::{create_owner_only, sync_dir};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::{create_owner_only, sync_dir};
