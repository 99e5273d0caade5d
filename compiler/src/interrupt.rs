//! Nothing half-written survives SIGINT or SIGTERM (docs/ROBUSTNESS.md, "Nothing is lost").
//!
//! Every file a command creates before its output is complete (the temporaries of
//! `tensor_io::write_atomically` and of `kestrel compile`, a header written ahead of its shared
//! object, the arrays of a `--output-dir` not yet complete) is registered here for as long as it
//! could be left behind ([`Pending`]), and so is a folder created for outputs.
//! [`install`] (called once by `main`) sets handlers for SIGINT and SIGTERM that remove every
//! registered file and end the process with status 130 or 143 (128 + the signal), the shell's
//! convention. The handler only reads atomics, calls `unlink` and `_exit`, which are
//! async-signal-safe; registering and unregistering are lock-free.
//!
//! Without [`install`] (the library used from other programs) registration costs two atomic
//! operations and signals keep their default action.

use std::ffi::{c_char, CString};
use std::path::Path;
use std::sync::atomic::{AtomicPtr, Ordering};

/// Files registered at once, at most (a command has a handful); more are not protected.
const SLOTS: usize = 32;

static PENDING: [AtomicPtr<c_char>; SLOTS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];

/// Folders a command created for its outputs: removed (when empty) after the files.
static PENDING_DIRS: [AtomicPtr<c_char>; 4] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 4];

/// A registered file or folder: removed by the signal handler until this value is dropped (when
/// the file has been renamed into place or removed by its owner, or the output is complete).
pub struct Pending {
    slot: Option<&'static AtomicPtr<c_char>>,
}

impl Pending {
    /// Registers the file `path` (a path that cannot be a C string, or a full table, goes
    /// unregistered).
    pub fn new(path: &Path) -> Pending {
        Pending::register(&PENDING, path)
    }

    /// Registers the folder `path`, which the handler removes if it is empty by then.
    pub fn dir(path: &Path) -> Pending {
        Pending::register(&PENDING_DIRS, path)
    }

    fn register(table: &'static [AtomicPtr<c_char>], path: &Path) -> Pending {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
            return Pending { slot: None };
        };
        let raw = c.into_raw();
        for slot in table {
            let free = std::ptr::null_mut();
            if slot
                .compare_exchange(free, raw, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Pending { slot: Some(slot) };
            }
        }
        // SAFETY: `raw` came from `CString::into_raw` above and was not stored.
        drop(unsafe { CString::from_raw(raw) });
        Pending { slot: None }
    }
}

impl Drop for Pending {
    /// Unregisters the file. Its path's bytes are not freed: a handler running on another
    /// thread may have just read the pointer (a few bytes per file a command writes).
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            slot.store(std::ptr::null_mut(), Ordering::SeqCst);
        }
    }
}

extern "C" fn on_signal(signal: libc::c_int) {
    for slot in &PENDING {
        let raw = slot.load(Ordering::SeqCst);
        if !raw.is_null() {
            // SAFETY: a NUL-terminated path from `Pending::new`, never freed.
            unsafe { libc::unlink(raw) };
        }
    }
    for slot in &PENDING_DIRS {
        let raw = slot.load(Ordering::SeqCst);
        if !raw.is_null() {
            // SAFETY: as above; `rmdir` removes only an empty folder.
            unsafe { libc::rmdir(raw) };
        }
    }
    // SAFETY: `_exit` is async-signal-safe and does not return.
    unsafe { libc::_exit(128 + signal) };
}

/// Removes the registered files on SIGINT and SIGTERM, then exits with 128 + the signal.
pub fn install() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a plain handler that only touches atomics and async-signal-safe calls.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}
