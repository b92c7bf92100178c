//! The OS layer for Windows (SPEC §12): each service runs in a Job Object of its own with
//! kill-on-close (the whole tree dies with the orchestrator, killed or not), in a hidden console
//! of its own, where a short-lived helper process — this executable again, see
//! [`helper_entry`] — raises the stop event (Ctrl+C or Ctrl+Break) as NSSM does. Process
//! identities come from `GetProcessTimes`, port owners from the TCP tables of `iphlpapi`. Only
//! this module calls the Windows API, and all of its `unsafe` is here.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read as _, Write as _};
use std::mem::{offset_of, size_of};
use std::os::windows::ffi::OsStringExt as _;
use std::os::windows::io::{AsRawHandle, FromRawHandle as _, OwnedHandle, RawHandle};
use std::os::windows::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use registry::ServiceConfig;
use windows_sys::Win32::Foundation::{
    ERROR_INSUFFICIENT_BUFFER, ERROR_INVALID_PARAMETER, FILETIME, HANDLE, INVALID_HANDLE_VALUE, NO_ERROR,
    WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCP6TABLE_OWNER_PID, MIB_TCPROW_OWNER_PID, MIB_TCPTABLE_OWNER_PID,
    TCP_TABLE_OWNER_PID_LISTENER,
};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};
use windows_sys::Win32::System::Console::{
    AttachConsole, CTRL_BREAK_EVENT, CTRL_C_EVENT, FreeConsole, GenerateConsoleCtrlEvent, SetConsoleCtrlHandler,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, TH32CS_SNAPTHREAD, THREADENTRY32, Thread32First, Thread32Next,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOBOBJECT_BASIC_ACCOUNTING_INFORMATION, JOBOBJECT_BASIC_PROCESS_ID_LIST, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JobObjectBasicAccountingInformation, JobObjectBasicProcessIdList, JobObjectExtendedLimitInformation,
    QueryInformationJobObject, SetInformationJobObject, TerminateJobObject,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemTimeAsFileTime, GetTickCount64};
use windows_sys::Win32::System::Threading::{
    CREATE_NO_WINDOW, CREATE_SUSPENDED, DETACHED_PROCESS, GetProcessTimes, OpenProcess, OpenThread,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE, PROCESS_TERMINATE, QueryFullProcessImageNameW,
    ResumeThread, THREAD_SUSPEND_RESUME, TerminateProcess, WaitForSingleObject,
};

/// The environment variable that turns this executable into the stop helper: `PID:EVENT`.
const CTRL_ENV: &str = "ORCHESTRATOR_CTRL";
/// How long a stop helper may take to attach and raise the event.
const HELPER_TIMEOUT: Duration = Duration::from_secs(5);
/// Exit code of the processes that [`Tree::terminate`] kills.
const TERMINATED_EXIT_CODE: u32 = 1;
/// What `PATHEXT` is when it is not set (cmd's default order).
const DEFAULT_PATHEXT: &str = ".COM;.EXE;.BAT;.CMD";

/// The tree of processes of one service: a Job Object with kill-on-close. Dropping it closes
/// the job handle, which kills whatever is left in it.
#[derive(Debug)]
pub(crate) struct Tree {
    /// The job (not inheritable: no child holds it open).
    job: OwnedHandle,
    /// The service's own process, the first member of the job.
    root: u32,
}

/// A freshly spawned service.
pub(crate) struct Spawned {
    /// Its Job Object.
    pub tree: Tree,
    /// The service's own pid (shown in the API).
    pub pid: u32,
    /// The service's process (stdin null, stdout/stderr piped); `wait` resolves at its exit.
    pub child: tokio::process::Child,
}

/// The process listening on a TCP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortOwner {
    /// Its pid.
    pub pid: u32,
    /// Its image path, when this process may query it.
    pub command: Option<String>,
}

impl Tree {
    /// An id for log lines: the service's pid.
    pub(crate) fn id(&self) -> u32 {
        self.root
    }

    /// Raises the stop signal in the service's console: `SIGINT` is Ctrl+C, `SIGKILL` is
    /// [`Tree::terminate`], anything else (`SIGTERM`, `SIGBREAK`) is Ctrl+Break. Every process
    /// attached to that console gets it, the service's children included. `Ok(false)` when the
    /// tree is already empty.
    pub(crate) fn signal(&self, signal: &str) -> io::Result<bool> {
        let Some(event) = ctrl_event(signal) else { return self.terminate() };
        if self.is_empty() {
            return Ok(false);
        }
        // The console outlives the service's own process while a child of it holds it: when
        // the service has exited, attach through another member.
        let candidates = if process_start(self.root).is_some() {
            vec![self.root]
        } else {
            job_members(&self.job)?.into_iter().filter(|&pid| pid != self.root).take(8).collect()
        };
        let mut first_error = None;
        for pid in candidates {
            match raise_in_console(pid, event) {
                Ok(()) => return Ok(true),
                Err(e) => {
                    log::debug!("stop helper for {pid} (service {}): {e}", self.root);
                    first_error.get_or_insert(e);
                }
            }
            if self.is_empty() {
                return Ok(false);
            }
        }
        Err(first_error.unwrap_or_else(|| io::Error::other("no process of the job could be attached to")))
    }

    /// Kills every process of the tree now. `Ok(false)` when it is already empty.
    pub(crate) fn terminate(&self) -> io::Result<bool> {
        if self.is_empty() {
            return Ok(false);
        }
        terminate_job(&self.job)?;
        Ok(true)
    }

    /// Whether no live process is left in the job (when the job cannot be queried, it counts
    /// as not empty: "stopped" is never claimed while something may still run).
    pub(crate) fn is_empty(&self) -> bool {
        match active_processes(&self.job) {
            Ok(n) => n == 0,
            Err(e) => {
                log::warn!("cannot query the job of process {}: {e}", self.root);
                false
            }
        }
    }
}

/// Spawns `config.command` suspended, in a hidden console of its own (`CREATE_NO_WINDOW`; no
/// new process group, which would disable Ctrl+C), assigns it to a new kill-on-close Job Object
/// and only then resumes it, so that nothing it starts escapes the job. The program is found
/// through `PATH` and `PATHEXT` as cmd finds it ([`resolve_program`]); a missing program or
/// working directory is a `NotFound` error.
pub(crate) fn spawn(config: &ServiceConfig) -> io::Result<Spawned> {
    let argv = config.command.as_deref().unwrap_or_default();
    let (program, args) =
        argv.split_first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let cwd = match &config.cwd {
        Some(dir) if !dir.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("working directory {} does not exist", dir.display()),
            ));
        }
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    };
    let path = service_env(config, "PATH");
    let pathext = service_env(config, "PATHEXT");
    let exe =
        resolve_program(program, &cwd, path.as_deref(), pathext.as_deref(), |p| p.is_file()).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("program {program:?} not found (cwd, PATH and PATHEXT)"))
        })?;
    let job = new_job()?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.args(args)
        .envs(&config.env)
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false)
        .creation_flags(CREATE_SUSPENDED | CREATE_NO_WINDOW);
    let mut child = cmd.spawn()?;
    let started =
        child.id().zip(child.raw_handle()).ok_or_else(|| io::Error::other("the spawned process has no pid")).and_then(
            |(pid, process)| {
                assign_to_job(&job, process)?;
                resume_threads(pid)?;
                Ok(pid)
            },
        );
    match started {
        Ok(pid) => Ok(Spawned { tree: Tree { job, root: pid }, pid, child }),
        Err(e) => {
            let _ = child.start_kill();
            Err(e)
        }
    }
}

/// Exit code of a finished process (`None` for the signal: Windows has none). An NTSTATUS
/// such as `0xC000013A` (killed by Ctrl+C) shows as a negative code.
pub(crate) fn exit_of(status: &ExitStatus) -> (Option<i32>, Option<String>) {
    (status.code(), None)
}

/// The process listening on `port` (IPv4 first, then IPv6) and its image path when visible.
/// `None` when nobody listens, or when the table does not tell the owner (Wine leaves it 0).
pub(crate) fn port_owner(port: u16) -> Option<PortOwner> {
    let pid = listening_pids(port).into_iter().find(|&pid| pid != 0)?;
    Some(PortOwner { pid, command: image_name(pid) })
}

/// The owning pids of the rows listening on `port` in the IPv4 and then the IPv6 TCP table.
fn listening_pids(port: u16) -> Vec<u32> {
    let mut pids = Vec::new();
    match tcp_table(AF_INET) {
        Ok(t) => pids.extend(listeners_in(
            &t,
            offset_of!(MIB_TCPTABLE_OWNER_PID, table),
            size_of::<MIB_TCPROW_OWNER_PID>(),
            offset_of!(MIB_TCPROW_OWNER_PID, dwLocalPort),
            offset_of!(MIB_TCPROW_OWNER_PID, dwOwningPid),
            port,
        )),
        Err(e) => log::debug!("cannot read the IPv4 TCP table: {e}"),
    }
    match tcp_table(AF_INET6) {
        Ok(t) => pids.extend(listeners_in(
            &t,
            offset_of!(MIB_TCP6TABLE_OWNER_PID, table),
            size_of::<MIB_TCP6ROW_OWNER_PID>(),
            offset_of!(MIB_TCP6ROW_OWNER_PID, dwLocalPort),
            offset_of!(MIB_TCP6ROW_OWNER_PID, dwOwningPid),
            port,
        )),
        Err(e) => log::debug!("cannot read the IPv6 TCP table: {e}"),
    }
    pids
}

/// A process's identity for pidfiles: its creation time (a FILETIME as `u64`); `None` when it
/// does not exist or has exited.
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    let process = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE).ok()?;
    if !is_running(&process) {
        return None;
    }
    creation_time(&process).ok()
}

/// An id of this boot: the boot time (now minus the uptime) in seconds since 1601, rounded to
/// 10 s so that the jitter of the two clocks does not change it.
pub(crate) fn boot_id() -> Option<String> {
    let (now, uptime_ms) = now_and_uptime();
    let boot_s = now.checked_sub(uptime_ms.checked_mul(10_000)?)? / 10_000_000;
    Some(format!("boot-{}", (boot_s + 5) / 10 * 10))
}

/// Kills a process left over by a crashed run if it still runs with the recorded creation
/// time; returns how many processes were killed (0 or 1). (Its children died with the crashed
/// run's job, when its handle closed.)
pub(crate) fn kill_leftover(pid: u32, start: u64) -> usize {
    let Ok(process) = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE | PROCESS_TERMINATE)
    else {
        return 0;
    };
    if !is_running(&process) || creation_time(&process).ok() != Some(start) {
        return 0;
    }
    match terminate_process(&process) {
        Ok(()) => 1,
        Err(e) => {
            log::warn!("cannot kill leftover process {pid}: {e}");
            0
        }
    }
}

/// The stop helper's entry point, called first thing in `main`: when `ORCHESTRATOR_CTRL` is
/// `PID:EVENT` (0 = Ctrl+C, 1 = Ctrl+Break), this process attaches to the console of `PID`,
/// raises the event there and exits (0 on success, the OS error code otherwise, with the error
/// on stderr). Otherwise it returns at once.
pub(crate) fn helper_entry() {
    let Some(spec) = std::env::var_os(CTRL_ENV) else { return };
    let failure = match parse_ctrl_spec(&spec.to_string_lossy()) {
        None => (ERROR_INVALID_PARAMETER as i32, format!("{CTRL_ENV}={spec:?} is not PID:EVENT")),
        Some((pid, event)) => match raise_here(pid, event) {
            Ok(()) => std::process::exit(0),
            Err(e) => (
                e.raw_os_error().filter(|&c| c != 0).unwrap_or(1),
                format!("cannot raise console event {event} for process {pid}: {e}"),
            ),
        },
    };
    let _ = writeln!(io::stderr(), "{}", failure.1);
    std::process::exit(failure.0);
}

/// The console event for a stop signal name; `None` for `SIGKILL` (terminate instead).
fn ctrl_event(signal: &str) -> Option<u32> {
    match signal {
        "SIGKILL" => None,
        "SIGINT" => Some(CTRL_C_EVENT),
        _ => Some(CTRL_BREAK_EVENT),
    }
}

/// `PID:EVENT` with EVENT 0 (Ctrl+C) or 1 (Ctrl+Break).
fn parse_ctrl_spec(spec: &str) -> Option<(u32, u32)> {
    let (pid, event) = spec.split_once(':')?;
    let pid = pid.trim().parse::<u32>().ok().filter(|&p| p != 0)?;
    let event = event.trim().parse::<u32>().ok().filter(|&e| e == CTRL_C_EVENT || e == CTRL_BREAK_EVENT)?;
    Some((pid, event))
}

/// The arguments the helper is started with: none for the orchestrator; in this crate's test
/// binary, the one test that calls [`helper_entry`] first.
fn helper_args() -> Vec<String> {
    #[cfg(test)]
    return tests::self_test_args("stop_helper_mode");
    #[cfg(not(test))]
    return Vec::new();
}

/// Runs the stop helper for `pid` (no console of its own, so that it can attach to the
/// service's) and waits for it, at most [`HELPER_TIMEOUT`].
fn raise_in_console(pid: u32, event: u32) -> io::Result<()> {
    let exe = std::env::current_exe()?;
    let mut helper = std::process::Command::new(exe)
        .args(helper_args())
        .env(CTRL_ENV, format!("{pid}:{event}"))
        .creation_flags(DETACHED_PROCESS | CREATE_NO_WINDOW)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if !wait_handle(&helper, HELPER_TIMEOUT)? {
        let _ = helper.kill();
        let _ = helper.wait();
        return Err(io::Error::new(io::ErrorKind::TimedOut, format!("the stop helper for {pid} did not finish")));
    }
    let status = helper.wait()?;
    if status.success() {
        return Ok(());
    }
    let mut message = String::new();
    if let Some(mut stderr) = helper.stderr.take() {
        let _ = stderr.read_to_string(&mut message);
    }
    let code = status.code().unwrap_or(1);
    let os = io::Error::from_raw_os_error(code);
    let message = match message.trim() {
        "" => format!("the stop helper for {pid} failed: {os}"),
        text => format!("the stop helper failed: {text}"),
    };
    Err(io::Error::new(os.kind(), message))
}

/// The value of `name` in the service's environment: its own `env` first (names compared
/// without case, as Windows does), then the orchestrator's.
fn service_env(config: &ServiceConfig, name: &str) -> Option<OsString> {
    config
        .env
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| OsString::from(v))
        .or_else(|| std::env::var_os(name))
}

/// Finds a program as cmd does. A name with a directory part (`bin\svc`, `C:\x\svc.exe`) is
/// looked up relative to `cwd` only; a bare name in `cwd` and then in each `PATH` directory.
/// In each directory, a name without an extension is tried with each `PATHEXT` extension in
/// order (`python` → `python.exe`); a name whose extension is in `PATHEXT` is used as is; a
/// name with another extension (`python3.11`) as is, then with each `PATHEXT` extension.
fn resolve_program(
    program: &str,
    cwd: &Path,
    path: Option<&OsStr>,
    pathext: Option<&OsStr>,
    is_file: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if program.is_empty() {
        return None;
    }
    let pathext = pathext.map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|| DEFAULT_PATHEXT.to_owned());
    let known: Vec<&str> = pathext.split(';').map(str::trim).filter(|e| e.starts_with('.') && e.len() > 1).collect();
    let name = Path::new(program);
    let suffixes: Vec<&str> = match name.extension().and_then(OsStr::to_str) {
        Some(ext) if known.iter().any(|k| k[1..].eq_ignore_ascii_case(ext)) => vec![""],
        Some(_) => std::iter::once("").chain(known.iter().copied()).collect(),
        None => known.clone(),
    };
    let has_dir = program.contains(['\\', '/', ':']);
    let mut dirs = vec![cwd.to_path_buf()];
    if !has_dir && let Some(path) = path {
        dirs.extend(std::env::split_paths(path).filter(|d| !d.as_os_str().is_empty()));
    }
    dirs.iter().find_map(|dir| {
        let base = dir.join(name);
        suffixes.iter().find_map(|suffix| {
            let mut candidate = base.clone().into_os_string();
            candidate.push(suffix);
            let candidate = PathBuf::from(candidate);
            is_file(&candidate).then_some(candidate)
        })
    })
}

/// The pids of the listening rows for `port` in a `MIB_TCP(6)TABLE_OWNER_PID` (its bytes; the
/// layout given by the offsets of the windows-sys structures).
fn listeners_in(table: &[u8], rows_at: usize, row_size: usize, port_at: usize, pid_at: usize, port: u16) -> Vec<u32> {
    let Some(count) = u32_at(table, 0) else { return Vec::new() };
    (0..count as usize)
        .map_while(|i| {
            let row = rows_at.checked_add(i.checked_mul(row_size)?)?;
            Some((u32_at(table, row + port_at)?, u32_at(table, row + pid_at)?))
        })
        // The port is in network byte order in the low 16 bits.
        .filter(|&(raw, _)| u16::from_be((raw & 0xffff) as u16) == port)
        .map(|(_, pid)| pid)
        .collect()
}

/// A native-endian `u32` at `at` in `bytes`.
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let chunk = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(chunk.try_into().ok()?))
}

/// The bytes of a buffer of `u64` words (kept in words so that the API gets it aligned).
fn bytes_of(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_ne_bytes()).collect()
}

/// A FILETIME as one number (100 ns since 1601).
fn filetime(ft: FILETIME) -> u64 {
    (u64::from(ft.dwHighDateTime) << 32) | u64::from(ft.dwLowDateTime)
}

/// Takes ownership of a handle an API just returned (null or `INVALID_HANDLE_VALUE`: the
/// thread's last OS error).
#[allow(unsafe_code)]
fn owned(handle: HANDLE) -> io::Result<OwnedHandle> {
    if handle.is_null() || handle == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `handle` is a valid handle that the API call which returned it gave to us, and
    // nothing else owns it: the OwnedHandle is its only owner and closes it once.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle as RawHandle) })
}

/// The raw handle of an owned one, for the API calls.
fn raw(handle: &impl AsRawHandle) -> HANDLE {
    handle.as_raw_handle() as HANDLE
}

/// A `BOOL` result as an `io::Result`.
fn check(ok: windows_sys::core::BOOL) -> io::Result<()> {
    if ok == 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// A new anonymous, non-inheritable Job Object whose processes die when its last handle closes.
#[allow(unsafe_code)]
fn new_job() -> io::Result<OwnedHandle> {
    // SAFETY: null security attributes (default security, not inheritable) and a null name
    // (anonymous job) are valid arguments.
    let job = owned(unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) })?;
    let mut info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
    info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    // SAFETY: `job` is a valid job handle; the pointer and size describe `info`, a live
    // JOBOBJECT_EXTENDED_LIMIT_INFORMATION, as this information class requires.
    check(unsafe {
        SetInformationJobObject(
            raw(&job),
            JobObjectExtendedLimitInformation,
            (&raw const info).cast(),
            size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        )
    })?;
    Ok(job)
}

/// Puts a (suspended) process into the job.
#[allow(unsafe_code)]
fn assign_to_job(job: &OwnedHandle, process: RawHandle) -> io::Result<()> {
    // SAFETY: both handles are valid for the duration of the call: the job is owned by the
    // caller, the process handle by the tokio child it came from.
    check(unsafe { AssignProcessToJobObject(raw(job), process as HANDLE) })
}

/// Resumes every thread of a process created suspended (its one main thread).
#[allow(unsafe_code)]
fn resume_threads(pid: u32) -> io::Result<()> {
    // SAFETY: plain call; the returned handle is checked and owned at once.
    let snapshot = owned(unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) })?;
    let mut entry = THREADENTRY32 { dwSize: size_of::<THREADENTRY32>() as u32, ..Default::default() };
    let mut resumed = 0;
    // SAFETY: `snapshot` is a valid snapshot handle and `entry` a THREADENTRY32 whose dwSize
    // is set, as Thread32First/Next require.
    let mut more = unsafe { Thread32First(raw(&snapshot), &mut entry) } != 0;
    while more {
        if entry.th32OwnerProcessID == pid {
            // SAFETY: plain call; the returned handle is checked and owned at once.
            let thread = owned(unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, entry.th32ThreadID) })?;
            // SAFETY: `thread` is a valid handle opened with THREAD_SUSPEND_RESUME.
            if unsafe { ResumeThread(raw(&thread)) } == u32::MAX {
                return Err(io::Error::last_os_error());
            }
            resumed += 1;
        }
        // SAFETY: as for Thread32First.
        more = unsafe { Thread32Next(raw(&snapshot), &mut entry) } != 0;
    }
    if resumed == 0 {
        return Err(io::Error::other(format!("no thread of process {pid} to resume")));
    }
    Ok(())
}

/// How many live processes the job holds.
#[allow(unsafe_code)]
fn active_processes(job: &OwnedHandle) -> io::Result<u32> {
    let mut info = JOBOBJECT_BASIC_ACCOUNTING_INFORMATION::default();
    // SAFETY: `job` is a valid job handle; the pointer and size describe `info`, as this
    // information class requires; the returned length may be null.
    check(unsafe {
        QueryInformationJobObject(
            raw(job),
            JobObjectBasicAccountingInformation,
            (&raw mut info).cast(),
            size_of::<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION>() as u32,
            std::ptr::null_mut(),
        )
    })?;
    Ok(info.ActiveProcesses)
}

/// The pids of the job's processes (up to 256).
#[allow(unsafe_code)]
fn job_members(job: &OwnedHandle) -> io::Result<Vec<u32>> {
    let mut words = vec![0u64; 2 + 256];
    let len = u32::try_from(words.len() * 8).unwrap_or(u32::MAX);
    // SAFETY: `job` is a valid job handle; `words` is a writable, 8-byte aligned buffer of
    // `len` bytes, large enough for the list's header and 256 ids.
    check(unsafe {
        QueryInformationJobObject(
            raw(job),
            JobObjectBasicProcessIdList,
            words.as_mut_ptr().cast(),
            len,
            std::ptr::null_mut(),
        )
    })?;
    let bytes = bytes_of(&words);
    let count = u32_at(&bytes, offset_of!(JOBOBJECT_BASIC_PROCESS_ID_LIST, NumberOfProcessIdsInList)).unwrap_or(0);
    let ids_at = offset_of!(JOBOBJECT_BASIC_PROCESS_ID_LIST, ProcessIdList);
    Ok((0..count as usize)
        .filter_map(|i| {
            let at = ids_at + i * size_of::<usize>();
            let id = usize::from_ne_bytes(bytes.get(at..at + size_of::<usize>())?.try_into().ok()?);
            u32::try_from(id).ok()
        })
        .collect())
}

/// Kills every process of the job.
#[allow(unsafe_code)]
fn terminate_job(job: &OwnedHandle) -> io::Result<()> {
    // SAFETY: `job` is a valid job handle (created with all access).
    check(unsafe { TerminateJobObject(raw(job), TERMINATED_EXIT_CODE) })
}

/// In the helper: leaves its own console (if any), attaches to `pid`'s, makes itself immune
/// to the event and raises it for every process of that console.
#[allow(unsafe_code)]
fn raise_here(pid: u32, event: u32) -> io::Result<()> {
    /// Swallows every console event (Ctrl+Break too, which a null handler does not ignore).
    unsafe extern "system" fn swallow(_event: u32) -> windows_sys::core::BOOL {
        1
    }
    let stage = |what: &'static str| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    // SAFETY: plain calls with no pointer arguments (a null handler routine is allowed with
    // TRUE, and `swallow` is a valid handler for the life of the process).
    unsafe {
        FreeConsole();
        check(AttachConsole(pid)).map_err(stage("AttachConsole"))?;
        check(SetConsoleCtrlHandler(None, 1)).map_err(stage("SetConsoleCtrlHandler"))?;
        check(SetConsoleCtrlHandler(Some(swallow), 1)).map_err(stage("SetConsoleCtrlHandler"))?;
        check(GenerateConsoleCtrlEvent(event, 0)).map_err(stage("GenerateConsoleCtrlEvent"))
    }
}

/// Waits for a process (or any waitable handle) at most `timeout`: true when it has ended.
#[allow(unsafe_code)]
fn wait_handle(handle: &impl AsRawHandle, timeout: Duration) -> io::Result<bool> {
    let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX - 1);
    // SAFETY: the handle is valid (borrowed from its owner for the duration of the call).
    match unsafe { WaitForSingleObject(raw(handle), ms) } {
        WAIT_OBJECT_0 => Ok(true),
        WAIT_TIMEOUT => Ok(false),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Whether an opened process (with SYNCHRONIZE access) is still running.
fn is_running(process: &OwnedHandle) -> bool {
    matches!(wait_handle(process, Duration::ZERO), Ok(false))
}

/// Opens a process with the given access.
#[allow(unsafe_code)]
fn open_process(pid: u32, access: u32) -> io::Result<OwnedHandle> {
    // SAFETY: plain call; the returned handle is checked and owned at once.
    owned(unsafe { OpenProcess(access, 0, pid) })
}

/// The creation time of an opened process.
#[allow(unsafe_code)]
fn creation_time(process: &OwnedHandle) -> io::Result<u64> {
    let (mut created, mut exited, mut kernel, mut user) =
        (FILETIME::default(), FILETIME::default(), FILETIME::default(), FILETIME::default());
    // SAFETY: the handle is valid with query access; the four pointers are to live FILETIMEs.
    check(unsafe { GetProcessTimes(raw(process), &mut created, &mut exited, &mut kernel, &mut user) })?;
    Ok(filetime(created))
}

/// Kills an opened process (with PROCESS_TERMINATE access).
#[allow(unsafe_code)]
fn terminate_process(process: &OwnedHandle) -> io::Result<()> {
    // SAFETY: the handle is valid with terminate access.
    check(unsafe { TerminateProcess(raw(process), TERMINATED_EXIT_CODE) })
}

/// The full image path of a process, when this process may query it.
#[allow(unsafe_code)]
fn image_name(pid: u32) -> Option<String> {
    let process = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION).ok()?;
    let mut buf = vec![0u16; 32 * 1024];
    let mut len = buf.len() as u32;
    // SAFETY: the handle is valid with query access; `buf` is writable for `len` u16s and
    // `len` is updated to the length written.
    check(unsafe { QueryFullProcessImageNameW(raw(&process), 0, buf.as_mut_ptr(), &mut len) }).ok()?;
    buf.truncate(len as usize);
    Some(OsString::from_wide(&buf).to_string_lossy().into_owned())
}

/// The listener rows of the IPv4 or IPv6 TCP table with their owning pids, as bytes.
#[allow(unsafe_code)]
fn tcp_table(family: u16) -> io::Result<Vec<u8>> {
    let mut size = 0u32;
    for _ in 0..8 {
        let mut words = vec![0u64; (size as usize).div_ceil(8).max(1)];
        let mut len = u32::try_from(words.len() * 8).unwrap_or(u32::MAX);
        // SAFETY: `words` is a writable, 8-byte aligned buffer of `len` bytes; on
        // ERROR_INSUFFICIENT_BUFFER the API only writes the size it needs into `len`.
        let rc = unsafe {
            GetExtendedTcpTable(
                words.as_mut_ptr().cast(),
                &mut len,
                0,
                u32::from(family),
                TCP_TABLE_OWNER_PID_LISTENER,
                0,
            )
        };
        match rc {
            NO_ERROR => return Ok(bytes_of(&words)),
            // The table may grow between two calls: ask with some room to spare.
            ERROR_INSUFFICIENT_BUFFER => size = len.saturating_add(1024),
            code => return Err(io::Error::from_raw_os_error(code as i32)),
        }
    }
    Err(io::Error::other("the TCP table kept growing"))
}

/// The current time (FILETIME as `u64`) and the milliseconds since boot.
#[allow(unsafe_code)]
fn now_and_uptime() -> (u64, u64) {
    let mut now = FILETIME::default();
    // SAFETY: the pointer is to a live FILETIME; GetTickCount64 takes nothing.
    let uptime = unsafe {
        GetSystemTimeAsFileTime(&mut now);
        GetTickCount64()
    };
    (filetime(now), uptime)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, clippy::print_stderr)]
    use super::*;
    use std::collections::BTreeSet;
    use std::time::Instant;
    use tokio::io::{AsyncBufReadExt as _, BufReader};

    /// The environment variable that gives the mode of this test binary started as a service.
    const CHILD_ENV: &str = "ORCHESTRATOR_TEST_CHILD";

    /// Arguments that make this test binary run only the test `name` of this module.
    pub(super) fn self_test_args(name: &str) -> Vec<String> {
        let module = module_path!();
        let module = module.split_once("::").map_or(module, |(_, rest)| rest);
        vec!["--exact".into(), format!("{module}::{name}"), "--nocapture".into(), "--test-threads=1".into()]
    }

    /// This test binary as a service in mode `mode` (see [`child_mode`]).
    fn self_service(name: &str, mode: &str) -> ServiceConfig {
        let mut cfg = ServiceConfig::with_defaults(gateway_core::ServiceName::parse(name).unwrap(), 1);
        let exe = std::env::current_exe().unwrap().to_string_lossy().into_owned();
        cfg.command = Some(std::iter::once(exe).chain(self_test_args("child_mode")).collect());
        cfg.env.insert(CHILD_ENV.into(), mode.into());
        cfg
    }

    fn command(name: &str, argv: &[&str]) -> ServiceConfig {
        let mut cfg = ServiceConfig::with_defaults(gateway_core::ServiceName::parse(name).unwrap(), 1);
        cfg.command = Some(argv.iter().map(|s| (*s).to_owned()).collect());
        cfg
    }

    fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Reads the service's stdout until a line starting with `prefix`; returns that line.
    async fn line_starting(child: &mut tokio::process::Child, prefix: &str) -> String {
        let stdout = child.stdout.as_mut().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let read = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.starts_with(prefix) {
                    return line;
                }
            }
            panic!("stdout ended before a line starting with {prefix:?}");
        };
        tokio::time::timeout(Duration::from_secs(60), read).await.expect("the line in time")
    }

    #[allow(unsafe_code)]
    fn install_exit_on_ctrl() {
        unsafe extern "system" fn on_ctrl(event: u32) -> windows_sys::core::BOOL {
            let _ = writeln!(io::stdout(), "got event {event}");
            std::process::exit(100 + event as i32);
        }
        // SAFETY: `on_ctrl` is a valid handler for the life of the process.
        check(unsafe { SetConsoleCtrlHandler(Some(on_ctrl), 1) }).unwrap();
    }

    /// Not a test of its own: what this binary does when a test starts it as a service.
    #[test]
    #[allow(clippy::zombie_processes, reason = "the grandchild dies with the service's job")]
    fn child_mode() {
        let Ok(mode) = std::env::var(CHILD_ENV) else { return };
        let mut out = io::stdout();
        // Ends libtest's "test … " line, so that what follows starts lines of its own.
        writeln!(out).unwrap();
        match mode.as_str() {
            "sleep" => {}
            "ctrl" => install_exit_on_ctrl(),
            "spawn" => {
                let exe = std::env::current_exe().unwrap();
                let grandchild = std::process::Command::new(exe)
                    .args(self_test_args("child_mode"))
                    .env(CHILD_ENV, "sleep")
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap();
                writeln!(out, "grandchild {}", grandchild.id()).unwrap();
            }
            "spawn-ctrl" => {
                install_exit_on_ctrl();
                let exe = std::env::current_exe().unwrap();
                let grandchild = std::process::Command::new(exe)
                    .args(self_test_args("child_mode"))
                    .env(CHILD_ENV, "ctrl")
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap();
                writeln!(out, "grandchild {}", grandchild.id()).unwrap();
            }
            other => panic!("unknown mode {other}"),
        }
        writeln!(out, "ready").unwrap();
        out.flush().unwrap();
        std::thread::sleep(Duration::from_secs(120));
        std::process::exit(3);
    }

    /// Not a test of its own: the stop helper, when [`raise_in_console`] starts this binary.
    #[test]
    fn stop_helper_mode() {
        helper_entry();
    }

    #[test]
    fn program_names_resolve_through_path_and_pathext_as_cmd_does() {
        let files: BTreeSet<PathBuf> = [
            r"C:\work\svc.exe",
            r"C:\work\bin\tool.cmd",
            r"C:\Python\python.exe",
            r"C:\Python\python.bat",
            r"C:\Tools\run.bat",
            r"C:\Tools\data.py",
            r"C:\Tools\python3.11.exe",
            r"C:\Tools\notes.txt",
            r"C:\Tools\python.com",
        ]
        .iter()
        .map(|p| PathBuf::from(p.to_ascii_lowercase()))
        .collect();
        // File names compare without case, as on NTFS.
        let exists = |p: &Path| files.contains(&PathBuf::from(p.to_string_lossy().to_ascii_lowercase()));
        let cwd = Path::new(r"C:\work");
        let path = OsStr::new(r"C:\Python;;C:\Tools;");
        let find =
            |name: &str, pathext: Option<&str>| resolve_program(name, cwd, Some(path), pathext.map(OsStr::new), exists);
        let table: &[(&str, Option<&str>, Option<&str>)] = &[
            // PATHEXT order within a directory, PATH order across them.
            ("python", None, Some(r"C:\Python\python.exe")),
            ("python", Some(".BAT;.EXE"), Some(r"C:\Python\python.bat")),
            ("python", Some(".COM;.EXE"), Some(r"C:\Python\python.exe")),
            ("python.com", None, Some(r"C:\Tools\python.com")),
            // The current directory comes first; a directory part means the cwd only.
            ("svc", None, Some(r"C:\work\svc.exe")),
            (r"bin\tool", None, Some(r"C:\work\bin\tool.cmd")),
            ("bin/tool.cmd", None, Some(r"C:\work\bin/tool.cmd")),
            (r"C:\Tools\run", None, Some(r"C:\Tools\run.bat")),
            (r"C:\Python\python.exe", None, Some(r"C:\Python\python.exe")),
            ("tool", None, None),
            // A known extension is used as is; an unknown one as is, then with PATHEXT.
            ("run.bat", None, Some(r"C:\Tools\run.bat")),
            ("run.exe", None, None),
            ("data.py", None, Some(r"C:\Tools\data.py")),
            ("python3.11", None, Some(r"C:\Tools\python3.11.exe")),
            ("notes", Some(".TXT"), Some(r"C:\Tools\notes.txt")),
            ("nothing", None, None),
            ("", None, None),
        ];
        for &(name, pathext, expected) in table {
            let found = find(name, pathext).map(|p| p.to_string_lossy().to_ascii_lowercase());
            assert_eq!(found, expected.map(str::to_ascii_lowercase), "{name} with PATHEXT {pathext:?}");
        }
        assert_eq!(
            resolve_program("svc", Path::new(r"C:\elsewhere"), None, None, exists),
            None,
            "no PATH: the cwd only"
        );
    }

    #[test]
    fn signal_names_and_helper_specs() {
        assert_eq!(ctrl_event("SIGINT"), Some(CTRL_C_EVENT));
        assert_eq!(ctrl_event("SIGTERM"), Some(CTRL_BREAK_EVENT));
        assert_eq!(ctrl_event("SIGBREAK"), Some(CTRL_BREAK_EVENT));
        assert_eq!(ctrl_event("SIGHUP"), Some(CTRL_BREAK_EVENT));
        assert_eq!(ctrl_event("SIGKILL"), None);
        assert_eq!(parse_ctrl_spec("1234:0"), Some((1234, 0)));
        assert_eq!(parse_ctrl_spec("1234:1"), Some((1234, 1)));
        for bad in ["1234", "1234:2", "0:1", "x:1", ":1", "1234:"] {
            assert_eq!(parse_ctrl_spec(bad), None, "{bad}");
        }
    }

    #[test]
    fn tcp_tables_are_read_by_the_structures_offsets() {
        let rows_at = offset_of!(MIB_TCPTABLE_OWNER_PID, table);
        let row = size_of::<MIB_TCPROW_OWNER_PID>();
        let (port_at, pid_at) =
            (offset_of!(MIB_TCPROW_OWNER_PID, dwLocalPort), offset_of!(MIB_TCPROW_OWNER_PID, dwOwningPid));
        let mut table = vec![0u8; rows_at + 3 * row];
        let mut put = |at: usize, v: u32| table[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        put(0, 3);
        for (i, (port, pid)) in [(8080u16, 11u32), (8081, 22), (8080, 33)].into_iter().enumerate() {
            put(rows_at + i * row + port_at, u32::from(port.to_be()));
            put(rows_at + i * row + pid_at, pid);
        }
        assert_eq!(listeners_in(&table, rows_at, row, port_at, pid_at, 8080), [11, 33]);
        assert_eq!(listeners_in(&table, rows_at, row, port_at, pid_at, 8081), [22]);
        assert!(listeners_in(&table, rows_at, row, port_at, pid_at, 8082).is_empty());
        // A count larger than the rows present stops at the end of the buffer.
        let mut short = table.clone();
        short[..4].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(listeners_in(&short, rows_at, row, port_at, pid_at, 8080), [11, 33]);
        assert!(listeners_in(&[], rows_at, row, port_at, pid_at, 8080).is_empty());
    }

    #[tokio::test]
    async fn a_service_ends_with_its_exit_code_and_its_job_empties() {
        let mut s = spawn(&command("code", &["cmd.exe", "/c", "exit 7"])).unwrap();
        assert_eq!(s.tree.id(), s.pid);
        let status = s.child.wait().await.unwrap();
        assert_eq!(exit_of(&status), (Some(7), None));
        wait_until("the job to empty", Duration::from_secs(10), || s.tree.is_empty());
        assert!(!s.tree.terminate().unwrap(), "nothing left to terminate");
        assert!(!s.tree.signal("SIGTERM").unwrap(), "nothing left to signal");
    }

    #[tokio::test]
    async fn output_environment_and_working_directory_reach_the_service() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = command("echo", &["cmd", "/c", "echo %GREETING% & cd & echo oops 1>&2"]);
        cfg.env.insert("GREETING".into(), "hello-from-env".into());
        cfg.cwd = Some(dir.path().to_path_buf());
        let mut s = spawn(&cfg).unwrap();
        let mut out = String::new();
        let mut err = String::new();
        let mut stdout = s.child.stdout.take().unwrap();
        let mut stderr = s.child.stderr.take().unwrap();
        let (a, b) = tokio::join!(
            tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut out),
            tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err)
        );
        a.unwrap();
        b.unwrap();
        assert_eq!(exit_of(&s.child.wait().await.unwrap()), (Some(0), None));
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        assert_eq!(lines.first(), Some(&"hello-from-env"), "{out:?}");
        let shown = lines.get(1).copied().unwrap_or_default().to_ascii_lowercase();
        let expected = dir.path().file_name().unwrap().to_string_lossy().to_ascii_lowercase();
        assert!(shown.ends_with(&expected), "cwd {shown:?} is the service's {expected:?}");
        assert_eq!(err.trim(), "oops");
    }

    #[tokio::test]
    async fn a_missing_program_or_working_directory_is_not_found() {
        let err = spawn(&command("missing", &["no-such-program-anywhere"])).err().expect("spawn fails");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        let err = spawn(&command("missing", &[r"C:\no\such\program.exe"])).err().expect("spawn fails");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        let mut cfg = command("nocwd", &["cmd.exe", "/c", "exit 0"]);
        cfg.cwd = Some(PathBuf::from(r"C:\no\such\directory"));
        let err = spawn(&cfg).err().expect("spawn fails");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        let err = spawn(&command("empty", &[])).err().expect("spawn fails");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }

    #[tokio::test]
    async fn terminate_kills_the_service_and_its_children() {
        let mut s = spawn(&self_service("tree", "spawn")).unwrap();
        let line = line_starting(&mut s.child, "grandchild ").await;
        let grandchild: u32 = line["grandchild ".len()..].trim().parse().unwrap();
        line_starting(&mut s.child, "ready").await;
        assert!(process_start(grandchild).is_some(), "the grandchild runs");
        // (Under Wine the console host, conhost.exe, is in the job too.)
        let members = job_members(&s.tree.job).unwrap();
        assert!(members.contains(&s.pid) && members.contains(&grandchild), "both are in the job: {members:?}");
        assert_eq!(active_processes(&s.tree.job).unwrap() as usize, members.len());
        assert!(!s.tree.is_empty());

        assert!(s.tree.terminate().unwrap());
        let status = tokio::time::timeout(Duration::from_secs(10), s.child.wait()).await.unwrap().unwrap();
        assert_eq!(exit_of(&status), (Some(TERMINATED_EXIT_CODE as i32), None));
        wait_until("the job to empty", Duration::from_secs(10), || s.tree.is_empty());
        assert_eq!(process_start(grandchild), None, "the grandchild is gone too");
    }

    #[tokio::test]
    async fn dropping_the_tree_kills_what_is_left() {
        let mut s = spawn(&self_service("dropped", "spawn")).unwrap();
        let line = line_starting(&mut s.child, "grandchild ").await;
        let grandchild: u32 = line["grandchild ".len()..].trim().parse().unwrap();
        drop(s.tree);
        tokio::time::timeout(Duration::from_secs(10), s.child.wait()).await.unwrap().unwrap();
        wait_until("the grandchild to die", Duration::from_secs(10), || process_start(grandchild).is_none());
    }

    #[tokio::test]
    async fn sigkill_terminates() {
        let mut s = spawn(&self_service("killed", "sleep")).unwrap();
        line_starting(&mut s.child, "ready").await;
        assert!(s.tree.signal("SIGKILL").unwrap());
        let status = tokio::time::timeout(Duration::from_secs(10), s.child.wait()).await.unwrap().unwrap();
        assert_eq!(exit_of(&status), (Some(TERMINATED_EXIT_CODE as i32), None));
    }

    async fn stop_event_reaches_the_service(signal: &str, event: u32) {
        let mut s = spawn(&self_service("ctrl", "ctrl")).unwrap();
        line_starting(&mut s.child, "ready").await;
        let started = Instant::now();
        assert!(s.tree.signal(signal).unwrap());
        line_starting(&mut s.child, "got event").await;
        let status = tokio::time::timeout(Duration::from_secs(10), s.child.wait()).await.unwrap().unwrap();
        eprintln!("{signal}: the service ended {:?} after the signal", started.elapsed());
        assert_eq!(exit_of(&status), (Some(100 + event as i32), None), "its handler got event {event}");
        wait_until("the job to empty", Duration::from_secs(10), || s.tree.is_empty());
    }

    #[tokio::test]
    async fn sigint_is_ctrl_c_raised_by_the_helper() {
        stop_event_reaches_the_service("SIGINT", CTRL_C_EVENT).await;
    }

    /// Wine 8 raises only Ctrl+C: its `GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, 0)` fails
    /// with ERROR_INVALID_HANDLE, so there the helper reports that error and the service runs on.
    #[tokio::test]
    async fn sigterm_is_ctrl_break_raised_by_the_helper_not_under_wine() {
        if !under_wine() {
            stop_event_reaches_the_service("SIGTERM", CTRL_BREAK_EVENT).await;
            return;
        }
        let mut s = spawn(&self_service("ctrlbreak", "ctrl")).unwrap();
        line_starting(&mut s.child, "ready").await;
        let err = s.tree.signal("SIGBREAK").expect_err("Wine cannot raise Ctrl+Break");
        eprintln!("under Wine, SIGBREAK: {err}");
        assert!(err.to_string().contains("GenerateConsoleCtrlEvent"), "the helper attached, then failed: {err}");
        assert_eq!(err.raw_os_error(), None);
        assert!(s.child.try_wait().unwrap().is_none(), "the service runs on");
        assert!(s.tree.terminate().unwrap());
        s.child.wait().await.unwrap();
    }

    #[tokio::test]
    async fn the_stop_event_reaches_the_services_children_too() {
        let mut s = spawn(&self_service("ctrltree", "spawn-ctrl")).unwrap();
        let line = line_starting(&mut s.child, "grandchild ").await;
        let grandchild: u32 = line["grandchild ".len()..].trim().parse().unwrap();
        line_starting(&mut s.child, "ready").await;
        // The grandchild has installed its handler once it is in the job with a console.
        wait_until("the grandchild to run", Duration::from_secs(30), || process_start(grandchild).is_some());
        std::thread::sleep(Duration::from_millis(500));
        assert!(s.tree.signal("SIGINT").unwrap());
        let status = tokio::time::timeout(Duration::from_secs(10), s.child.wait()).await.unwrap().unwrap();
        assert_eq!(exit_of(&status), (Some(100), None));
        wait_until("the grandchild to take Ctrl+C too", Duration::from_secs(10), || s.tree.is_empty());
    }

    #[test]
    fn the_helper_fails_for_a_process_without_a_console() {
        let err = raise_in_console(u32::MAX - 3, CTRL_C_EVENT).expect_err("no such process");
        eprintln!("helper error: {err}");
        assert!(err.to_string().contains("console"), "{err}");
    }

    /// Whether this runs under Wine (its ntdll exports `wine_get_version`).
    #[allow(unsafe_code)]
    fn under_wine() -> bool {
        use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
        // SAFETY: both names are NUL-terminated literals; ntdll is loaded in every process.
        unsafe {
            let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
            !ntdll.is_null() && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
        }
    }

    #[test]
    fn the_tcp_tables_list_our_listeners_until_they_close() {
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = std::net::TcpListener::bind(addr) else {
                eprintln!("cannot listen on {addr} here");
                continue;
            };
            let port = listener.local_addr().unwrap().port();
            let pids = listening_pids(port);
            // Wine lists the row but leaves its owning pid 0.
            let expected = if under_wine() { 0 } else { std::process::id() };
            assert_eq!(pids, [expected], "{addr}");
            drop(listener);
            let deadline = Instant::now() + Duration::from_secs(2);
            while !listening_pids(port).is_empty() {
                assert!(Instant::now() < deadline, "the dropped listener on {addr} is still listed");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Under Wine the TCP table has no owning pids, so the owner is unknown there (`None`).
    #[test]
    fn port_owner_names_our_own_listener_not_under_wine() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let owner = port_owner(port);
        if under_wine() {
            assert_eq!(owner, None);
            return;
        }
        let owner = owner.expect("our listener is found");
        assert_eq!(owner.pid, std::process::id());
        let image = owner.command.expect("our own image name is visible");
        assert!(image.to_ascii_lowercase().ends_with(".exe"), "{image}");
    }

    #[test]
    fn image_names_of_running_processes() {
        let image = image_name(std::process::id()).expect("our own image name");
        let exe = std::env::current_exe().unwrap();
        assert!(image.eq_ignore_ascii_case(&exe.to_string_lossy()), "{image} is {}", exe.display());
        assert_eq!(image_name(u32::MAX - 3), None);
    }

    #[test]
    fn process_identity_and_boot_id() {
        let me = std::process::id();
        let start = process_start(me).expect("we run");
        assert_eq!(process_start(me), Some(start), "stable");
        assert!(start > 116_444_736_000_000_000, "after 1970 in FILETIME units");
        assert_eq!(process_start(u32::MAX - 3), None);
        let boot = boot_id().expect("a boot id");
        assert_eq!(boot_id(), Some(boot.clone()));
        assert!(boot.starts_with("boot-"), "{boot}");
    }

    #[tokio::test]
    async fn leftovers_are_killed_only_when_their_start_time_matches() {
        let mut s = spawn(&self_service("left", "sleep")).unwrap();
        line_starting(&mut s.child, "ready").await;
        let start = process_start(s.pid).unwrap();
        assert_eq!(kill_leftover(s.pid, start + 1), 0, "another process with a reused pid is left alone");
        assert!(process_start(s.pid).is_some());
        assert_eq!(kill_leftover(s.pid, start), 1);
        tokio::time::timeout(Duration::from_secs(10), s.child.wait()).await.unwrap().unwrap();
        assert_eq!(process_start(s.pid), None);
        assert_eq!(kill_leftover(s.pid, start), 0, "gone");
    }
}
