//! Ctrl-C, the way asyncio's Runner handles it: while a run is active on the main thread the
//! first SIGINT cancels the main task, a second one kills the process; outside a run SIGINT
//! does exactly what the default does.
//!
//! Arming per run must cost next to nothing (it sits on `Runner::run`'s path), so the
//! signal-hook registration, the self-pipe and the listener thread are made once per process.
//! From then on a run only flips atomics:
//! - action 1 (`register_conditional_default` on `KILL`) dies by SIGINT whenever `KILL` is
//!   set. `KILL` is set outside runs, so there SIGINT still kills the process by default.
//!   (Unregistering instead would leave SIGINT silently ignored: signal-hook cannot put the
//!   kernel's default back.)
//! - action 2, registered after it, sets `KILL` (so the *next* SIGINT kills, even if the main
//!   thread never yields) and writes the run's generation to the self-pipe. The listener
//!   thread reads it and cancels that run's main task, unless the run has already ended.
//!
//! Arming and disarming are plain stores (only the main thread arms). The listener finds the
//! main task through a raw pointer that is valid while its generation is armed; it marks
//! itself busy while using it, and disarming waits for it to finish (`BUSY` / `ARMED` are
//! ordered SeqCst: either the listener sees the run disarmed, or disarm sees it busy).

use crate::task_state::TaskState;

/// Armed SIGINT handling for one run; dropping it disarms.
pub(crate) struct Armed(());

#[cfg(unix)]
mod imp {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicU8, Ordering};
    use std::sync::Mutex;

    use super::Armed;
    use crate::runner::lock;
    use crate::task_state::TaskState;

    static KILL: AtomicBool = AtomicBool::new(true);
    /// The armed run's generation; 0 when no run is armed.
    static ARMED: AtomicU64 = AtomicU64::new(0);
    static LAST_GENERATION: AtomicU64 = AtomicU64::new(0);
    static MAIN_TASK: AtomicPtr<TaskState> = AtomicPtr::new(std::ptr::null_mut());
    static BUSY: AtomicBool = AtomicBool::new(false);
    static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

    const UNKNOWN: u8 = 0;
    const INSTALLED: u8 = 1;
    const DECLINED: u8 = 2;
    static INSTALL: AtomicU8 = AtomicU8::new(UNKNOWN);
    static INSTALL_LOCK: Mutex<()> = Mutex::new(());

    thread_local! {
        // Whether this is the process's main thread never changes: ask the OS once.
        static IS_MAIN: Cell<Option<bool>> = const { Cell::new(None) };
    }

    fn is_main_thread() -> bool {
        IS_MAIN.with(|cell| match cell.get() {
            Some(known) => known,
            None => {
                let known = ask_is_main_thread();
                cell.set(Some(known));
                known
            }
        })
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn ask_is_main_thread() -> bool {
        // SAFETY: plain syscalls without arguments.
        unsafe { libc::syscall(libc::SYS_gettid) as libc::pid_t == libc::getpid() }
    }

    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    fn ask_is_main_thread() -> bool {
        // SAFETY: no arguments, no preconditions.
        unsafe { libc::pthread_main_np() == 1 }
    }

    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd"
    )))]
    fn ask_is_main_thread() -> bool {
        false
    }

    /// SIGINT's current action is the kernel default (not ignored, no handler of anyone's).
    fn sigint_is_default() -> bool {
        // SAFETY: querying only (null new action); `old` is plain data.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGINT, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_DFL
        }
    }

    fn installed() -> bool {
        match INSTALL.load(Ordering::Acquire) {
            INSTALLED => true,
            _ => install(),
        }
    }

    /// First run on the main thread: take over SIGINT if (and only if) nobody else has it.
    /// A process started with SIGINT ignored, or with a handler of its own, keeps that.
    fn install() -> bool {
        let _once = lock(&INSTALL_LOCK);
        if INSTALL.load(Ordering::Acquire) == INSTALLED {
            return true;
        }
        if !sigint_is_default() {
            INSTALL.store(DECLINED, Ordering::Release);
            return false;
        }
        match try_install() {
            Ok(()) => {
                INSTALL.store(INSTALLED, Ordering::Release);
                true
            }
            Err(_) => {
                INSTALL.store(DECLINED, Ordering::Release);
                false
            }
        }
    }

    fn try_install() -> std::io::Result<()> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let [read_fd, write_fd] = fds;
        // SAFETY: fcntl on descriptors we own. The write end never blocks the handler.
        unsafe {
            libc::fcntl(read_fd, libc::F_SETFD, libc::FD_CLOEXEC);
            libc::fcntl(write_fd, libc::F_SETFD, libc::FD_CLOEXEC);
            let flags = libc::fcntl(write_fd, libc::F_GETFL);
            libc::fcntl(write_fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        PIPE_WRITE.store(write_fd, Ordering::Release);
        std::thread::Builder::new()
            .name("runner-sigint".into())
            .spawn(move || listen(read_fd))?;
        signal_hook::flag::register_conditional_default(libc::SIGINT, &KILL)?;
        // SAFETY: the action only does async-signal-safe things: atomics and write(2).
        unsafe {
            signal_hook::low_level::register(libc::SIGINT, || {
                KILL.store(true, Ordering::SeqCst);
                let generation = ARMED.load(Ordering::SeqCst).to_ne_bytes();
                let fd = PIPE_WRITE.load(Ordering::SeqCst);
                libc::write(fd, generation.as_ptr().cast(), generation.len());
            })?;
        }
        Ok(())
    }

    fn listen(read_fd: libc::c_int) {
        loop {
            let mut buf = [0u8; 8];
            // SAFETY: reading into our own buffer of the stated length.
            let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n == 8 {
                let generation = u64::from_ne_bytes(buf);
                BUSY.store(true, Ordering::SeqCst);
                if generation != 0 && ARMED.load(Ordering::SeqCst) == generation {
                    let main = MAIN_TASK.load(Ordering::Acquire);
                    // SAFETY: while its generation is armed, the main task's wrapper holds its
                    // `Arc`, and disarming waits for `BUSY` to clear.
                    unsafe { (*main).request_cancel(true) };
                }
                BUSY.store(false, Ordering::SeqCst);
            } else if n < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            } else if n <= 0 {
                return;
            }
        }
    }

    pub(crate) fn arm(main: &TaskState) -> Option<Armed> {
        if !is_main_thread() || !installed() {
            return None;
        }
        // Only the main thread arms, so the generation needs no read-modify-write.
        let generation = LAST_GENERATION.load(Ordering::Relaxed) + 1;
        LAST_GENERATION.store(generation, Ordering::Relaxed);
        MAIN_TASK.store(std::ptr::from_ref(main).cast_mut(), Ordering::Release);
        ARMED.store(generation, Ordering::Release);
        KILL.store(false, Ordering::Release);
        Some(Armed(()))
    }

    pub(crate) fn disarm() {
        KILL.store(true, Ordering::Release);
        ARMED.store(0, Ordering::SeqCst);
        while BUSY.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
    }

    pub(crate) fn die(terminate: bool) {
        let signal = if terminate {
            libc::SIGTERM
        } else {
            libc::SIGINT
        };
        let _ = signal_hook::low_level::emulate_default_handler(signal);
    }
}

#[cfg(not(unix))]
mod imp {
    use super::Armed;
    use crate::task_state::TaskState;

    pub(crate) fn arm(_main: &TaskState) -> Option<Armed> {
        None
    }

    pub(crate) fn disarm() {}

    pub(crate) fn die(_terminate: bool) {}
}

/// Arms SIGINT handling for the run whose main task is `main`, where the rules allow.
pub(crate) fn arm(main: &TaskState) -> Option<Armed> {
    imp::arm(main)
}

impl Drop for Armed {
    fn drop(&mut self) {
        imp::disarm();
    }
}

/// Ends the process the way an unhandled Ctrl-C does: by SIGINT with the default
/// disposition, so the parent sees "killed by SIGINT" (shell status 130), as Python does
/// after a `KeyboardInterrupt`. `#[runner::main]` calls it when `run` returns
/// [`RunError::Interrupted`](crate::RunError::Interrupted).
///
/// Where signals do not exist it exits with status 130.
///
/// ```no_run
/// # use runner_core as runner;
/// let mut runner = runner::Runner::new();
/// if let Err(runner::RunError::Interrupted) = runner.run(async { /* ... */ }) {
///     runner.close();
///     runner::die_by_sigint();
/// }
/// ```
pub fn die_by_sigint() -> ! {
    die(false)
}

/// Ends the process the way an unhandled SIGTERM does: by SIGTERM with the default
/// disposition (shell status 143). `#[runner::main]` calls it when `run` returns
/// [`RunError::Terminated`](crate::RunError::Terminated).
///
/// Where signals do not exist it exits with status 143.
///
/// ```no_run
/// # use runner_core as runner;
/// let mut runner = runner::Runner::builder().handle_sigterm(true).build();
/// if let Err(runner::RunError::Terminated) = runner.run(async { /* ... */ }) {
///     runner.close();
///     runner::die_by_sigterm();
/// }
/// ```
pub fn die_by_sigterm() -> ! {
    die(true)
}

fn die(terminate: bool) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    imp::die(terminate);
    std::process::exit(if terminate { 143 } else { 130 })
}
