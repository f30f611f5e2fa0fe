//! Ctrl-C (and, opted in, SIGTERM) the way asyncio's Runner handles Ctrl-C: while a run is
//! armed on the main thread the first signal cancels the main task and the run reports it; a
//! second one kills the process; outside an armed run the signal does exactly what the default
//! does.
//!
//! Arming per run must cost next to nothing (it sits on `Runner::run`'s path), so the
//! signal-hook registration, the self-pipe and the listener thread are made once per process.
//! From then on a run only touches one atomic word, `STATE`:
//! - the run's generation and which signals it arms are stored into it when the run arms, and
//!   it is swapped back to zero when the run disarms;
//! - the handler (one action per signal, registered once, never unregistered: signal-hook
//!   cannot put the kernel's default back, so unregistering would leave the signal ignored)
//!   does one `fetch_or` of its "hit" bit. If the word says the signal is not armed, or a
//!   signal has already hit this run, the handler dies by the signal's default action.
//!   Otherwise it writes the generation to the self-pipe, and the listener thread cancels
//!   that run's main task, unless the run has ended meanwhile.
//!
//! The one `fetch_or` against the one `swap` is what makes "no signal lost" hold: a signal
//! either lands before the disarming swap (the swap returns its hit bit and the run reports
//! `Interrupted` / `Terminated`, even if the main task finished before the listener acted),
//! or after it (the handler sees a disarmed word and kills). There is no third case.
//!
//! The listener finds the main task through a raw pointer that is valid while its generation
//! is armed; it marks itself busy while using it, and disarming waits for it to finish
//! (`BUSY` / `STATE` are ordered SeqCst: either the listener sees the run disarmed, or disarm
//! sees it busy).

use crate::task_state::{StopSignal, TaskState};

/// Signal handling armed for one run; dropping it disarms (see [`Armed::disarm`]).
pub(crate) struct Armed(());

/// Which signals a run asks to handle.
#[derive(Clone, Copy, Default)]
pub(crate) struct Wanted {
    pub(crate) sigint: bool,
    pub(crate) sigterm: bool,
}

impl Wanted {
    pub(crate) fn any(self) -> bool {
        self.sigint || self.sigterm
    }
}

#[cfg(unix)]
mod imp {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicU8, Ordering};
    use std::sync::Mutex;

    use super::{Armed, Wanted};
    use crate::task_state::{StopSignal, TaskState};
    use crate::util::lock_std;

    const ARM_INT: u64 = 1;
    const ARM_TERM: u64 = 2;
    const HIT_INT: u64 = 4;
    const HIT_TERM: u64 = 8;
    const HITS: u64 = HIT_INT | HIT_TERM;
    const GENERATION_SHIFT: u32 = 4;

    /// `generation << 4 | hits | armed signals`; 0 while no run is armed.
    static STATE: AtomicU64 = AtomicU64::new(0);
    static LAST_GENERATION: AtomicU64 = AtomicU64::new(0);
    static MAIN_TASK: AtomicPtr<TaskState> = AtomicPtr::new(std::ptr::null_mut());
    static BUSY: AtomicBool = AtomicBool::new(false);
    static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

    const UNKNOWN: u8 = 0;
    const INSTALLED: u8 = 1;
    const DECLINED: u8 = 2;
    static INSTALL_INT: AtomicU8 = AtomicU8::new(UNKNOWN);
    static INSTALL_TERM: AtomicU8 = AtomicU8::new(UNKNOWN);
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

    /// The signal's current action is the kernel default (not ignored, no handler of anyone's).
    fn is_default(signal: libc::c_int) -> bool {
        // SAFETY: querying only (null new action); `old` is plain data.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_DFL
        }
    }

    /// `true` once `signal` is ours; the first call decides, under a lock.
    fn installed(signal: libc::c_int, state: &AtomicU8, arm: u64, hit: u64) -> bool {
        match state.load(Ordering::Acquire) {
            INSTALLED => true,
            DECLINED => false,
            _ => install(signal, state, arm, hit),
        }
    }

    /// Takes `signal` over if (and only if) nobody else has it: a process started with the
    /// signal ignored, or with a handler of its own, keeps that.
    #[cold]
    fn install(signal: libc::c_int, state: &AtomicU8, arm: u64, hit: u64) -> bool {
        let _once = lock_std(&INSTALL_LOCK);
        match state.load(Ordering::Acquire) {
            INSTALLED => return true,
            DECLINED => return false,
            _ => {}
        }
        let ok = is_default(signal) && start_listener().is_ok() && register(signal, arm, hit);
        state.store(if ok { INSTALLED } else { DECLINED }, Ordering::Release);
        ok
    }

    /// The self-pipe and the listener thread, once per process (under `INSTALL_LOCK`).
    fn start_listener() -> std::io::Result<()> {
        if PIPE_WRITE.load(Ordering::Acquire) >= 0 {
            return Ok(());
        }
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
        let spawned = std::thread::Builder::new()
            .name("runner-signals".into())
            .spawn(move || listen(read_fd));
        if let Err(err) = spawned {
            // SAFETY: closing the descriptors we just made and nobody else uses.
            unsafe {
                libc::close(read_fd);
                libc::close(write_fd);
            }
            return Err(err);
        }
        PIPE_WRITE.store(write_fd, Ordering::Release);
        Ok(())
    }

    fn register(signal: libc::c_int, arm: u64, hit: u64) -> bool {
        // SAFETY: the action only does async-signal-safe things: atomics, write(2), and
        // signal-hook's emulation of the default action (sigaction, raise, sigprocmask).
        let registered = unsafe {
            signal_hook::low_level::register(signal, move || {
                let before = STATE.fetch_or(hit, Ordering::SeqCst);
                if before & arm == 0 || before & HITS != 0 {
                    // Not armed for this signal (no run, or the run did not ask for it), or
                    // the second signal of this run: the default action, i.e. death.
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                    return;
                }
                let generation = (before >> GENERATION_SHIFT).to_ne_bytes();
                let fd = PIPE_WRITE.load(Ordering::SeqCst);
                libc::write(fd, generation.as_ptr().cast(), generation.len());
            })
        };
        registered.is_ok()
    }

    fn listen(read_fd: libc::c_int) {
        loop {
            let mut buf = [0u8; 8];
            // SAFETY: reading into our own buffer of the stated length.
            let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n == 8 {
                let generation = u64::from_ne_bytes(buf);
                BUSY.store(true, Ordering::SeqCst);
                let state = STATE.load(Ordering::SeqCst);
                if state >> GENERATION_SHIFT == generation {
                    let main = MAIN_TASK.load(Ordering::Acquire);
                    // SAFETY: while its generation is armed, the main task's wrapper holds its
                    // `Arc`, and disarming waits for `BUSY` to clear.
                    unsafe { (*main).request_cancel(hit_signal(state)) };
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

    fn hit_signal(state: u64) -> Option<StopSignal> {
        if state & HIT_INT != 0 {
            Some(StopSignal::Interrupt)
        } else if state & HIT_TERM != 0 {
            Some(StopSignal::Terminate)
        } else {
            None
        }
    }

    pub(crate) fn arm(main: &TaskState, wanted: Wanted) -> Option<Armed> {
        if !is_main_thread() {
            return None;
        }
        let mut flags = 0;
        if wanted.sigint && installed(libc::SIGINT, &INSTALL_INT, ARM_INT, HIT_INT) {
            flags |= ARM_INT;
        }
        if wanted.sigterm && installed(libc::SIGTERM, &INSTALL_TERM, ARM_TERM, HIT_TERM) {
            flags |= ARM_TERM;
        }
        if flags == 0 {
            return None;
        }
        // Only the main thread arms, so the generation needs no read-modify-write.
        let generation = LAST_GENERATION.load(Ordering::Relaxed) + 1;
        LAST_GENERATION.store(generation, Ordering::Relaxed);
        MAIN_TASK.store(std::ptr::from_ref(main).cast_mut(), Ordering::Release);
        // Release: a handler that sees this word also sees `MAIN_TASK` (its `fetch_or` reads
        // the latest value of `STATE` whatever the ordering).
        STATE.store(generation << GENERATION_SHIFT | flags, Ordering::Release);
        Some(Armed(()))
    }

    pub(crate) fn disarm() -> Option<StopSignal> {
        let state = STATE.swap(0, Ordering::SeqCst);
        while BUSY.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        hit_signal(state)
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
    use super::{Armed, Wanted};
    use crate::task_state::{StopSignal, TaskState};

    pub(crate) fn arm(_main: &TaskState, _wanted: Wanted) -> Option<Armed> {
        None
    }

    pub(crate) fn disarm() -> Option<StopSignal> {
        None
    }

    pub(crate) fn die(_terminate: bool) {}
}

/// Arms the `wanted` signals for the run whose main task is `main`, where the rules allow
/// (main thread, signal still at its default disposition). `None`: nothing was armed.
pub(crate) fn arm(main: &TaskState, wanted: Wanted) -> Option<Armed> {
    if !wanted.any() {
        return None;
    }
    imp::arm(main, wanted)
}

impl Armed {
    /// Disarms, and tells which signal reached this run, if one did: from here on that
    /// signal (or any other) kills.
    pub(crate) fn disarm(self) -> Option<StopSignal> {
        let hit = imp::disarm();
        std::mem::forget(self);
        hit
    }
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
