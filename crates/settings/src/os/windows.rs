//! Windows: an owner-only file gets a protected DACL (no inherited entries) with one entry, full
//! access for the current process's user (its token's `TokenUser` SID), set through the handle
//! right after creation, before a byte is written. NTFS journals renames, and a directory cannot
//! be opened as a file, so there is no directory sync.

use std::fs::{File, OpenOptions};
use std::os::windows::fs::OpenOptionsExt as _;
use std::os::windows::io::{AsRawHandle as _, FromRawHandle as _, OwnedHandle};
use std::path::Path;
use std::ptr::{null, null_mut};

use windows_sys::Win32::Foundation::{ERROR_SUCCESS, GENERIC_WRITE, HANDLE};
use windows_sys::Win32::Security::Authorization::{SE_FILE_OBJECT, SetSecurityInfo};
use windows_sys::Win32::Security::{
    ACCESS_ALLOWED_ACE, ACL, ACL_REVISION, AddAccessAllowedAce, DACL_SECURITY_INFORMATION, GetLengthSid,
    GetTokenInformation, InitializeAcl, PROTECTED_DACL_SECURITY_INFORMATION, PSID, TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::Storage::FileSystem::{FILE_ALL_ACCESS, READ_CONTROL, WRITE_DAC};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

/// Creates `path` (which must not exist) for writing, readable and writable by the current user
/// only.
pub(crate) fn create_owner_only(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .access_mode(GENERIC_WRITE | READ_CONTROL | WRITE_DAC)
        .open(path)?;
    let user = CurrentUser::of_this_process()?;
    let acl = OwnerOnlyAcl::new(&user)?;
    acl.apply(&file)?;
    Ok(file)
}

/// A no-op on Windows (see the module documentation).
pub(crate) fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The `TOKEN_USER` of this process's token, in a buffer aligned for it; the SID it points to
/// lies inside the buffer.
pub(super) struct CurrentUser {
    buf: Vec<u64>,
}

impl CurrentUser {
    #[allow(unsafe_code)]
    pub(super) fn of_this_process() -> std::io::Result<CurrentUser> {
        let mut raw: HANDLE = null_mut();
        // SAFETY: GetCurrentProcess returns a pseudo handle valid in this process; `raw` is a
        // valid place for the token handle.
        if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut raw) } == 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: OpenProcessToken succeeded, so `raw` is an open handle nothing else owns.
        let token = unsafe { OwnedHandle::from_raw_handle(raw) };
        let mut len = 0u32;
        // SAFETY: a null buffer of length 0 only asks for the length needed (the call fails with
        // ERROR_INSUFFICIENT_BUFFER and sets `len`).
        unsafe { GetTokenInformation(token.as_raw_handle(), TokenUser, null_mut(), 0, &mut len) };
        let bytes = usize::try_from(len).map_err(std::io::Error::other)?;
        if bytes < size_of::<TOKEN_USER>() {
            return Err(std::io::Error::last_os_error());
        }
        let mut buf = vec![0u64; bytes.div_ceil(size_of::<u64>())];
        // SAFETY: `buf` is writable for at least `len` bytes and 8-byte aligned, as TOKEN_USER
        // (pointers inside) needs.
        let ok =
            unsafe { GetTokenInformation(token.as_raw_handle(), TokenUser, buf.as_mut_ptr().cast(), len, &mut len) };
        if ok == 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(CurrentUser { buf })
    }

    /// The user's SID, valid while `self` lives.
    #[allow(unsafe_code)]
    pub(super) fn sid(&self) -> PSID {
        // SAFETY: `buf` holds the TOKEN_USER GetTokenInformation wrote (checked to be large
        // enough), suitably aligned.
        unsafe { (*self.buf.as_ptr().cast::<TOKEN_USER>()).User.Sid }
    }
}

/// An ACL with one entry: full access for one SID.
struct OwnerOnlyAcl {
    buf: Vec<u64>,
}

impl OwnerOnlyAcl {
    #[allow(unsafe_code)]
    fn new(user: &CurrentUser) -> std::io::Result<OwnerOnlyAcl> {
        // SAFETY: the SID comes from the process token and lives as long as `user`.
        let sid_len = unsafe { GetLengthSid(user.sid()) };
        let size = size_of::<ACL>() + size_of::<ACCESS_ALLOWED_ACE>() - size_of::<u32>()
            + usize::try_from(sid_len).map_err(std::io::Error::other)?;
        let size_u32 = u32::try_from(size).map_err(std::io::Error::other)?;
        let mut buf = vec![0u64; size.div_ceil(size_of::<u64>())];
        let acl = buf.as_mut_ptr().cast::<ACL>();
        // SAFETY: `acl` points to `size` writable bytes, aligned beyond the DWORD an ACL needs.
        if unsafe { InitializeAcl(acl, size_u32, ACL_REVISION) } == 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `acl` was initialised with room for exactly this entry; the SID is valid.
        if unsafe { AddAccessAllowedAce(acl, ACL_REVISION, FILE_ALL_ACCESS, user.sid()) } == 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnerOnlyAcl { buf })
    }

    /// Replaces the DACL of `file` (opened with WRITE_DAC) by this one, protected from
    /// inheritance.
    #[allow(unsafe_code)]
    fn apply(&self, file: &File) -> std::io::Result<()> {
        // SAFETY: the handle is open (borrowed from `file`) with WRITE_DAC; the ACL is valid and
        // outlives the call; owner and group are not changed (null).
        let rc = unsafe {
            SetSecurityInfo(
                file.as_raw_handle(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                null_mut(),
                null_mut(),
                self.buf.as_ptr().cast(),
                null(),
            )
        };
        if rc == ERROR_SUCCESS { Ok(()) } else { Err(std::io::Error::from_raw_os_error(rc.cast_signed())) }
    }
}

#[cfg(test)]
#[allow(unsafe_code, clippy::unwrap_used)]
mod tests {
    use windows_sys::Win32::Foundation::LocalFree;
    use windows_sys::Win32::Security::Authorization::GetSecurityInfo;
    use windows_sys::Win32::Security::{
        EqualSid, GetAce, GetSecurityDescriptorControl, PSECURITY_DESCRIPTOR, SE_DACL_PROTECTED,
    };
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};

    use super::*;

    /// What the file's DACL says: protected, and (mask, is the current user) per entry.
    fn dacl_of(path: &Path) -> (bool, Vec<(u32, bool)>) {
        let file = OpenOptions::new().read(true).access_mode(READ_CONTROL).open(path).unwrap();
        let user = CurrentUser::of_this_process().unwrap();
        let mut dacl: *mut ACL = null_mut();
        let mut sd: PSECURITY_DESCRIPTOR = null_mut();
        // SAFETY: the handle has READ_CONTROL; the out pointers are valid; `sd` is freed below.
        let rc = unsafe {
            GetSecurityInfo(
                file.as_raw_handle(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION,
                null_mut(),
                null_mut(),
                &mut dacl,
                null_mut(),
                &mut sd,
            )
        };
        assert_eq!(rc, ERROR_SUCCESS, "GetSecurityInfo");
        assert!(!dacl.is_null(), "the file has a DACL");
        let (mut control, mut revision) = (0u16, 0u32);
        // SAFETY: `sd` is the descriptor GetSecurityInfo returned.
        assert_ne!(unsafe { GetSecurityDescriptorControl(sd, &mut control, &mut revision) }, 0);
        let mut entries = Vec::new();
        // SAFETY: `dacl` points into `sd`, still alive.
        let count = unsafe { (*dacl).AceCount };
        for i in 0..u32::from(count) {
            let mut ace: *mut core::ffi::c_void = null_mut();
            // SAFETY: `i` is below the ACL's entry count.
            assert_ne!(unsafe { GetAce(dacl, i, &mut ace) }, 0);
            let ace = ace.cast::<ACCESS_ALLOWED_ACE>();
            // SAFETY: an access-allowed entry (the only kind written here) ends in its SID.
            let (mask, sid) = unsafe { ((*ace).Mask, (&raw mut (*ace).SidStart).cast::<core::ffi::c_void>()) };
            // SAFETY: both SIDs are valid while `sd` and `user` live.
            entries.push((mask, unsafe { EqualSid(sid, user.sid()) } != 0));
        }
        // SAFETY: `sd` was allocated by GetSecurityInfo with LocalAlloc and is not used after.
        unsafe { LocalFree(sd) };
        (control & SE_DACL_PROTECTED != 0, entries)
    }

    /// Whether this runs under Wine (its ntdll exports `wine_get_version`).
    fn under_wine() -> bool {
        let ntdll: Vec<u16> = "ntdll.dll".encode_utf16().chain([0]).collect();
        // SAFETY: a NUL-terminated module name; ntdll is loaded in every process.
        let module = unsafe { GetModuleHandleW(ntdll.as_ptr()) };
        // SAFETY: a module handle from above and a NUL-terminated export name.
        !module.is_null() && unsafe { GetProcAddress(module, c"wine_get_version".as_ptr().cast()) }.is_some()
    }

    #[test]
    fn an_owner_only_file_is_created_once_and_its_owner_can_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let mut file = create_owner_only(&path).unwrap();
        std::io::Write::write_all(&mut file, b"x").unwrap();
        drop(file);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x", "the owner can read it");
        assert!(create_owner_only(&path).is_err(), "never over an existing file");
    }

    /// Wine keeps no DACLs of its own (it maps them onto Unix permission bits, and reads back
    /// one derived from those), so there this test can only check that setting it succeeds.
    #[test]
    fn an_owner_only_file_has_a_protected_dacl_for_the_current_user_alone_not_kept_under_wine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        drop(create_owner_only(&path).unwrap());
        if under_wine() {
            return;
        }
        let (protected, entries) = dacl_of(&path);
        assert!(protected, "inherited entries are blocked");
        assert_eq!(entries, vec![(FILE_ALL_ACCESS, true)]);
    }
}
