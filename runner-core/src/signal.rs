//! Ctrl-C (and SIGTERM, when handled) the way asyncio's Runner handles Ctrl-C: while a run
//! is armed on the main thread the first signal cancels the main task and the run reports
//! it; a second one ends the process; outside an armed run runner is not there at all.
//!
//! Arming per run must cost next to nothing (it sits on `Runner::run`'s path), so the
//! handler, the self-pipe and the listener thread are made once per process. From then on a
//! run only touches the state word of [`SignalState`] (`signal_state`, where the loom models
//! are): the run's generation and signals are stored into it when the run arms, and it is
//! swapped back to zero when the run disarms. The handler decides with one compare-exchange
//! on it: the first signal of an armed run is written to the self-pipe, and the listener
//! thread cancels that run's main task (unless the run has ended meanwhile); a second one
//! ends the process.
//!
//! # Outside an armed run
//! The handler is a plain `sigaction` handler of our own, installed once, only over the
//! default disposition, and never removed. Outside an armed run it does what the process
//! would do if runner were not there:
//! - if a handler was installed over ours since, it called ours first and goes on to the
//!   program's own actions: runner steps aside, whatever Runners the program uses (a
//!   `handle_sigint(false)` Runner, default ones before it, or none at all). That is what
//!   signal-hook-registry's handler does, which `tokio::signal` and `signal-hook` install:
//!   it calls the handler it replaced, then every action registered with it. (A handler
//!   that replaces ours without calling it, a plain `sigaction` or the `ctrlc` crate, has
//!   the signal to itself from then on, armed runs included);
//! - otherwise (ours is still the process's handler) the signal gets its default action:
//!   the process dies by it.
//!
//! This needs no registration or removal per Runner, so the path of a run is the same
//! whichever it is. (Registering through signal-hook-registry instead would put runner's
//! action before every action registered later, and unregistering it would leave the signal
//! silently ignored: its handler stays installed with nothing to do.)
//!
//! # Dying by a signal
//! Dying re-raises the signal with the default disposition, so the parent sees "killed by
//! SIGINT" (130 in a shell). Where that does not end the process, it exits with 128 + the
//! signal number instead, as CPython does: PID 1 of a PID namespace (a container without an
//! init) is not killed by a signal it sends itself with the default disposition. Never
//! `abort()`: as PID 1 that is dropped too, and glibc then crashes (SIGSEGV, status 139).

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

impl StopSignal {
    /// The signal's number.
    #[cfg(all(unix, not(runner_loom)))]
    fn number(self) -> libc::c_int {
        match self {
            StopSignal::Interrupt => libc::SIGINT,
            StopSignal::Terminate => libc::SIGTERM,
        }
    }

    /// The exit status that stands for death by the signal (128 + its number on Linux).
    fn exit_status(self) -> i32 {
        match self {
            StopSignal::Interrupt => 130,
            StopSignal::Terminate => 143,
        }
    }
}

#[cfg(all(unix, not(runner_loom)))]
mod imp {
    // Process-wide statics need `const` constructors: std's, not `crate::sync`'s (see there).
    use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
    use std::sync::{Arc, Mutex};

    use super::{Armed, Wanted};
    use crate::progress::MainTaskWatch;
    use crate::signal_state::{Arming, Decision, SignalState};
    use crate::task_state::{StopSignal, TaskState};
    use crate::util::lock_std;

    static SIGNALS: SignalState<TaskState> = SignalState::new();
    static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
    /// The listener's end of the pipe, for a `fork`ed child to close (see `after_fork`).
    static PIPE_READ: AtomicI32 = AtomicI32::new(-1);

    const UNKNOWN: u8 = 0;
    const INSTALLED: u8 = 1;
    const DECLINED: u8 = 2;
    /// In a `fork`ed child: our handler is installed, the listener is not (see `after_fork`).
    const FORKED: u8 = 3;
    static INSTALL_INT: AtomicU8 = AtomicU8::new(UNKNOWN);
    static INSTALL_TERM: AtomicU8 = AtomicU8::new(UNKNOWN);
    static INSTALL_LOCK: Mutex<()> = Mutex::new(());

    const PID1_UNKNOWN: u8 = 0;
    const PID1_YES: u8 = 1;
    const PID1_NO: u8 = 2;
    static PID1: AtomicU8 = AtomicU8::new(PID1_UNKNOWN);

    /// Whether this process is PID 1 of its PID namespace, asked once. A `fork`ed child
    /// asks again (its pid is not its parent's).
    pub(crate) fn is_pid1() -> bool {
        match PID1.load(Ordering::Relaxed) {
            PID1_YES => true,
            PID1_NO => false,
            _ => {
                static FORGET_AT_FORK: std::sync::Once = std::sync::Once::new();
                FORGET_AT_FORK.call_once(|| {
                    extern "C" fn forget() {
                        PID1.store(PID1_UNKNOWN, Ordering::Relaxed);
                    }
                    // SAFETY: registers a child-side handler that only stores to an atomic.
                    unsafe { libc::pthread_atfork(None, None, Some(forget)) };
                });
                // SAFETY: no arguments, no preconditions.
                let yes = unsafe { libc::getpid() } == 1;
                PID1.store(if yes { PID1_YES } else { PID1_NO }, Ordering::Relaxed);
                yes
            }
        }
    }

    fn install_state(signal: StopSignal) -> &'static AtomicU8 {
        match signal {
            StopSignal::Interrupt => &INSTALL_INT,
            StopSignal::Terminate => &INSTALL_TERM,
        }
    }

    /// `true` once `signal` has our handler; the first call decides, under a lock.
    #[inline]
    fn installed(signal: StopSignal) -> bool {
        match install_state(signal).load(Ordering::Acquire) {
            INSTALLED => true,
            DECLINED => false,
            _ => install(signal),
        }
    }

    /// Takes `signal` over if (and only if) nobody else has it: a process started with the
    /// signal ignored, or with a handler of its own, keeps that. In a `fork`ed child, starts
    /// the child's own listener under the handler it inherited.
    #[cold]
    fn install(signal: StopSignal) -> bool {
        let _once = lock_std(&INSTALL_LOCK);
        let state = install_state(signal);
        match state.load(Ordering::Acquire) {
            INSTALLED => return true,
            DECLINED => return false,
            FORKED => {
                let ok = start_listener().is_ok();
                state.store(if ok { INSTALLED } else { DECLINED }, Ordering::Release);
                return ok;
            }
            _ => {}
        }
        let ok = is_default(signal.number()) && start_listener().is_ok() && take_over(signal);
        state.store(if ok { INSTALLED } else { DECLINED }, Ordering::Release);
        ok
    }

    /// The signal's current action is the kernel default (not ignored, no handler of anyone's).
    fn is_default(signo: libc::c_int) -> bool {
        current_action(signo) == Some(libc::SIG_DFL)
    }

    /// The signal's current handler (`SIG_DFL`, `SIG_IGN` or a function); async-signal-safe.
    fn current_action(signo: libc::c_int) -> Option<libc::sighandler_t> {
        // SAFETY: querying only (null new action); `old` is plain data.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            (libc::sigaction(signo, std::ptr::null(), &mut old) == 0).then_some(old.sa_sigaction)
        }
    }

    fn our_handler() -> libc::sighandler_t {
        handler as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
            as libc::sighandler_t
    }

    /// Installs our handler, unless someone installed one between our check and now.
    fn take_over(signal: StopSignal) -> bool {
        let signo = signal.number();
        // SAFETY: `sigaction` with plain data; the handler is async-signal-safe (see there).
        unsafe {
            let mut ours: libc::sigaction = std::mem::zeroed();
            ours.sa_sigaction = our_handler();
            // SA_RESTART: a program's blocking reads are not cut by a Ctrl-C that runner
            // handles, as with the handler signal-hook-registry installs.
            ours.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut ours.sa_mask);
            let mut before: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signo, &ours, &mut before) != 0 {
                return false;
            }
            if before.sa_sigaction != libc::SIG_DFL {
                libc::sigaction(signo, &before, std::ptr::null_mut());
                return false;
            }
        }
        true
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
        // The listener starts, and stays, with SIGINT and SIGTERM blocked (a new thread
        // inherits the mask of the thread that creates it): a process-directed signal
        // (`kill`, a Ctrl-C) is taken by a thread of the program, never by this one. A
        // thread with them unblocked takes a pending one whenever it looks at its signals
        // (its start, any change of its mask): the listener would then run the handler
        // while the run that was sent the signal goes on to end, and a `kill` of the
        // process from inside a run could land after the run, and kill.
        let spawned = with_stop_signals_blocked(|| {
            std::thread::Builder::new()
                .name("runner-signals".into())
                .spawn(move || listen(read_fd))
        });
        if let Err(err) = spawned {
            // SAFETY: closing the descriptors we just made and nobody else uses.
            unsafe {
                libc::close(read_fd);
                libc::close(write_fd);
            }
            return Err(err);
        }
        PIPE_READ.store(read_fd, Ordering::Release);
        PIPE_WRITE.store(write_fd, Ordering::Release);
        static AT_FORK: std::sync::Once = std::sync::Once::new();
        AT_FORK.call_once(|| {
            // SAFETY: registers a child-side handler that only makes async-signal-safe calls.
            unsafe { libc::pthread_atfork(None, None, Some(after_fork)) };
        });
        Ok(())
    }

    /// In a `fork`ed child (pre-fork servers, daemons that fork after setup): the signal
    /// state starts afresh. The child has only the thread that forked, so no listener, and
    /// the pipe it inherited is shared with the parent, whose listener reads it: the child's
    /// first Ctrl-C would be lost there, or cancel a run of the parent's. So the child lets
    /// go of the pipe, and its next arming starts a listener and pipe of its own (the
    /// `FORKED` state takes `installed`'s cold path: the run path pays nothing more). The
    /// handler itself survives the fork and stays. Async-signal-safe: atomics and `close`.
    extern "C" fn after_fork() {
        for end in [&PIPE_WRITE, &PIPE_READ] {
            let fd = end.swap(-1, Ordering::AcqRel);
            if fd >= 0 {
                // SAFETY: the child's copy of a descriptor of ours.
                unsafe { libc::close(fd) };
            }
        }
        for state in [&INSTALL_INT, &INSTALL_TERM] {
            let _ = state.compare_exchange(INSTALLED, FORKED, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Runs `f` with SIGINT and SIGTERM blocked on this thread, then puts its mask back (a
    /// signal that came meanwhile is delivered then).
    fn with_stop_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
        // SAFETY: plain data for the masks; applies to the calling thread only.
        unsafe {
            let mut stop: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut stop);
            libc::sigaddset(&mut stop, libc::SIGINT);
            libc::sigaddset(&mut stop, libc::SIGTERM);
            let mut before: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &stop, &mut before);
            let out = f();
            libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
            out
        }
    }

    /// The process's handler for SIGINT and SIGTERM once runner took them over. Only
    /// async-signal-safe calls: atomics, `write`, `sigaction`, `pthread_sigmask`, `raise`,
    /// `_exit`.
    extern "C" fn handler(signo: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
        let errno = Errno::save();
        let signal = match signo {
            libc::SIGINT => StopSignal::Interrupt,
            libc::SIGTERM => StopSignal::Terminate,
            _ => return,
        };
        match SIGNALS.on_signal(signal) {
            Decision::Forward(generation) => {
                let bytes = generation.to_ne_bytes();
                let fd = PIPE_WRITE.load(Ordering::Acquire);
                // SAFETY: writing our own buffer to our own pipe (non-blocking).
                unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
            }
            // SAFETY (the three): `die_now` is async-signal-safe, and the process ends here.
            Decision::Die => unsafe { die_now(signal) },
            Decision::NotArmed => match current_action(signo) {
                // Ours is still the process's handler: nobody else wants the signal, so it
                // gets its default action.
                Some(action) if action == our_handler() => unsafe { die_now(signal) },
                // Put back to the default by the program since (a race with this delivery).
                Some(libc::SIG_DFL) => unsafe { die_now(signal) },
                // A handler installed over ours called us first; it goes on to the program's
                // own actions (or the program ignores the signal now).
                _ => {}
            },
        }
        errno.restore();
    }

    /// Ends the process by `signal`: the default action, re-raised; if the process is still
    /// there (PID 1 of a PID namespace), `_exit(128 + n)`. Async-signal-safe.
    ///
    /// # Safety
    /// Ends the process without running destructors or flushing anything.
    pub(crate) unsafe fn die_now(signal: StopSignal) -> ! {
        raise_default(signal);
        libc::_exit(signal.exit_status())
    }

    /// Re-raises `signal` with the default disposition and unblocked on this thread; returns
    /// only if that did not end the process. Async-signal-safe.
    pub(crate) fn raise_default(signal: StopSignal) {
        let signo = signal.number();
        // SAFETY: plain data for sigaction and the mask; raise on this thread.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut default.sa_mask);
            libc::sigaction(signo, &default, std::ptr::null_mut());
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signo);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            // A signal raised to an unblocked thread is delivered before `raise` returns.
            libc::raise(signo);
        }
    }

    /// `errno` as the interrupted code left it, put back before the handler returns.
    struct Errno(libc::c_int);

    impl Errno {
        fn save() -> Errno {
            // SAFETY: this thread's errno.
            Errno(errno_location().map_or(0, |p| unsafe { *p }))
        }

        fn restore(self) {
            if let Some(p) = errno_location() {
                // SAFETY: this thread's errno.
                unsafe { *p = self.0 };
            }
        }
    }

    #[cfg(any(target_os = "linux", target_os = "dragonfly"))]
    fn errno_location() -> Option<*mut libc::c_int> {
        // SAFETY: the platform's accessor of this thread's errno.
        Some(unsafe { libc::__errno_location() })
    }

    #[cfg(target_os = "android")]
    fn errno_location() -> Option<*mut libc::c_int> {
        // SAFETY: the platform's accessor of this thread's errno.
        Some(unsafe { libc::__errno() })
    }

    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    fn errno_location() -> Option<*mut libc::c_int> {
        // SAFETY: the platform's accessor of this thread's errno.
        Some(unsafe { libc::__error() })
    }

    #[cfg(not(any(
        target_os = "linux",
        target_os = "dragonfly",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd"
    )))]
    fn errno_location() -> Option<*mut libc::c_int> {
        None
    }

    fn listen(read_fd: libc::c_int) {
        // Set while a run that a signal cancelled is still running: at each threshold the
        // listener reports what that shutdown waits for.
        let mut watch: Option<MainTaskWatch> = None;
        loop {
            let wait = watch.as_ref().map(MainTaskWatch::until_due);
            match wait_readable(read_fd, wait) {
                Ready::Readable => {}
                Ready::TimedOut => {
                    let armed = SIGNALS.armed_generation();
                    if watch.as_mut().is_some_and(|w| !w.report_if_due(armed)) {
                        watch = None;
                    }
                    continue;
                }
                Ready::Closed => return,
            }
            let mut buf = [0u8; 8];
            // SAFETY: reading into our own buffer of the stated length.
            let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n == 8 {
                let generation = u64::from_ne_bytes(buf);
                let cancelled = SIGNALS.deliver(generation, |main, signal| {
                    main.request_cancel(Some(signal));
                    // SAFETY: a main task's record lives in an `Arc` (see `arm`), alive here.
                    let record = unsafe {
                        Arc::increment_strong_count(main);
                        Arc::from_raw(main)
                    };
                    (signal, Arc::downgrade(&record))
                });
                if let Some((signal, record)) = cancelled {
                    watch = MainTaskWatch::start(generation, signal, record);
                }
            } else if n < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            } else if n <= 0 {
                return;
            }
        }
    }

    enum Ready {
        Readable,
        TimedOut,
        Closed,
    }

    /// Waits until `fd` is readable, at most `wait` (`None`: as long as it takes).
    fn wait_readable(fd: libc::c_int, wait: Option<std::time::Duration>) -> Ready {
        let timeout = wait.map_or(-1, |d| {
            // Rounded up, so a report is never looked at before it is due.
            let ms = d.as_nanos().div_ceil(1_000_000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        });
        let mut pollfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd of our own.
        match unsafe { libc::poll(&mut pollfd, 1, timeout) } {
            0 => Ready::TimedOut,
            n if n > 0 && pollfd.revents & (libc::POLLIN | libc::POLLHUP) != 0 => Ready::Readable,
            n if n > 0 => Ready::Closed,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {
                Ready::TimedOut
            }
            _ => Ready::Closed,
        }
    }

    /// `main` must be the record inside an `Arc<TaskState>` that stays alive until the
    /// returned `Armed` disarms (the listener takes a `Weak` of it). Inlined into the
    /// caller as before the state word moved into `SignalState`: on a run's path, the call
    /// was 2 of the 1382 instructions of a warm run (callgrind).
    #[inline]
    pub(crate) fn arm(main: &TaskState, wanted: Wanted) -> Option<Armed> {
        let mut signals = Arming::default();
        if wanted.sigint && installed(StopSignal::Interrupt) {
            signals = signals.with(StopSignal::Interrupt);
        }
        if wanted.sigterm && installed(StopSignal::Terminate) {
            signals = signals.with(StopSignal::Terminate);
        }
        if signals.is_empty() {
            return None;
        }
        SIGNALS.arm(main, signals);
        Some(Armed(()))
    }

    pub(crate) fn disarm() -> Option<StopSignal> {
        SIGNALS.disarm()
    }

    /// Dies by `signal` if re-raising it ends the process; returns if it did not.
    pub(crate) fn die(signal: StopSignal) {
        raise_default(signal);
    }
}

#[cfg(not(all(unix, not(runner_loom))))]
mod imp {
    use super::{Armed, Wanted};
    use crate::task_state::{StopSignal, TaskState};

    pub(crate) fn arm(_main: &TaskState, _wanted: Wanted) -> Option<Armed> {
        None
    }

    pub(crate) fn disarm() -> Option<StopSignal> {
        None
    }

    pub(crate) fn die(_signal: StopSignal) {}

    pub(crate) fn is_pid1() -> bool {
        false
    }
}

/// Arms the `wanted` signals for the run whose main task is `main`, where the rules allow
/// (signal still at its default disposition). `wanted` asks for nothing off the process's
/// main thread (the run knows: `scope::RunGuard::main_thread`). `None`: nothing was armed.
/// `main` is the record inside the main task's `Arc<TaskState>`, alive until disarm.
#[inline]
pub(crate) fn arm(main: &TaskState, wanted: Wanted) -> Option<Armed> {
    if !wanted.any() {
        return None;
    }
    imp::arm(main, wanted)
}

impl Armed {
    /// Disarms, and tells which signal reached this run, if one did: from here on that
    /// signal (or any other) is past the run.
    #[inline]
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

/// Whether this process is PID 1 of its PID namespace (a container without an init), where
/// SIGTERM is handled by default.
pub(crate) fn is_pid1() -> bool {
    imp::is_pid1()
}

/// Ends the process the way an unhandled Ctrl-C does: by SIGINT with the default
/// disposition, so the parent sees "killed by SIGINT" (shell status 130), as Python does
/// after a `KeyboardInterrupt`. `#[runner::main]` calls it when `run` returns
/// [`RunError::Interrupted`](crate::RunError::Interrupted).
///
/// Where that does not end the process it exits with status 130 instead (as CPython does):
/// as PID 1 of a PID namespace (a container without an init), whose own signals with the
/// default disposition the kernel drops, and where signals do not exist. It never aborts.
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
    die(StopSignal::Interrupt)
}

/// Ends the process the way an unhandled SIGTERM does: by SIGTERM with the default
/// disposition (shell status 143). `#[runner::main]` calls it when `run` returns
/// [`RunError::Terminated`](crate::RunError::Terminated).
///
/// Where that does not end the process (PID 1 of a PID namespace; no signals) it exits with
/// status 143 instead, never aborting.
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
    die(StopSignal::Terminate)
}

fn die(signal: StopSignal) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    imp::die(signal);
    std::process::exit(signal.exit_status())
}
