//! The `-exec` child's job object on Windows: the child (and everything it starts) runs
//! in a job with `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`, so it never outlives us, even
//! when we die without running any code (the kernel closes our last handle to the job).
//!
//! The child is spawned suspended ([`SPAWN_FLAGS`]) and resumed only once it is in the
//! job, so not even a grandchild it starts in its first instructions escapes. Stopping
//! is [`Job::terminate`] (`TerminateJobObject`): Windows has no SIGTERM for a process
//! without a console shared with us, so the caller waits a grace period first (a console
//! Ctrl-C or Ctrl-Break reaches the child directly, as it shares our console).

use std::io;

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
    SetInformationJobObject, TerminateJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::Threading::{
    OpenThread, ResumeThread, CREATE_SUSPENDED, THREAD_SUSPEND_RESUME,
};

/// Creation flags for a child that [`Job::contain`] will take: started suspended.
pub const SPAWN_FLAGS: u32 = CREATE_SUSPENDED;

/// A job object holding one child process tree; dropping it kills whatever is still in it.
pub struct Job(HANDLE);

// SAFETY: a job handle may be used and closed from any thread.
unsafe impl Send for Job {}
// SAFETY: the only operations (terminate, close) are thread-safe kernel calls.
unsafe impl Sync for Job {}

impl Job {
    /// Puts the suspended child (started with [`SPAWN_FLAGS`]) into a new kill-on-close job,
    /// then resumes its threads. On error the caller must kill the child (it is still
    /// suspended, so it has run nothing).
    pub fn contain(child: &tokio::process::Child) -> io::Result<Job> {
        let process = child
            .raw_handle()
            .ok_or_else(|| io::Error::other("the child has already exited"))?;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("the child has already exited"))?;
        // SAFETY: no security attributes, no name: a new anonymous job.
        let handle = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if handle.is_null() {
            return Err(io::Error::last_os_error());
        }
        let job = Job(handle);
        // SAFETY: zero is a valid bit pattern for this plain-data struct.
        let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
        limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        // SAFETY: a valid job handle and a struct of the size we pass.
        let ok = unsafe {
            SetInformationJobObject(
                job.0,
                JobObjectExtendedLimitInformation,
                (&limits as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
                std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both handles are valid; the process handle is the child's, owned by tokio.
        if unsafe { AssignProcessToJobObject(job.0, process as HANDLE) } == 0 {
            return Err(io::Error::last_os_error());
        }
        resume_threads(pid)?;
        Ok(job)
    }

    /// Ends every process in the job with `code`.
    pub fn terminate(&self, code: u32) -> io::Result<()> {
        // SAFETY: a valid job handle.
        if unsafe { TerminateJobObject(self.0, code) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: our handle, closed once. With KILL_ON_JOB_CLOSE this ends the job's
        // processes if this was the last handle.
        unsafe { CloseHandle(self.0) };
    }
}

/// Resumes every thread of process `pid` (a suspended child has one).
fn resume_threads(pid: u32) -> io::Result<()> {
    // SAFETY: a snapshot of all threads; closed below.
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    if snap == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero is valid for this plain-data struct; dwSize is set as the API requires.
    let mut entry: THREADENTRY32 = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
    let mut resumed = 0;
    let mut result = Ok(());
    // SAFETY: a valid snapshot handle and an entry with its size set.
    let mut more = unsafe { Thread32First(snap, &mut entry) } != 0;
    while more {
        if entry.th32OwnerProcessID == pid {
            // SAFETY: opening a thread by id for resuming; closed right after.
            let t = unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, entry.th32ThreadID) };
            if t.is_null() {
                result = Err(io::Error::last_os_error());
            } else {
                // SAFETY: a valid thread handle we opened.
                if unsafe { ResumeThread(t) } == u32::MAX {
                    result = Err(io::Error::last_os_error());
                } else {
                    resumed += 1;
                }
                // SAFETY: closing the handle we opened.
                unsafe { CloseHandle(t) };
            }
        }
        // SAFETY: as for Thread32First.
        more = unsafe { Thread32Next(snap, &mut entry) } != 0;
    }
    // SAFETY: closing the snapshot we made.
    unsafe { CloseHandle(snap) };
    result?;
    if resumed == 0 {
        return Err(io::Error::other(format!(
            "no thread of process {pid} to resume"
        )));
    }
    Ok(())
}
