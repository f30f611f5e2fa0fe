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
//! # The orchestrator's shutdown
//! The listener thread also keeps the timers of a shutdown (see `shutdown`): a SIGTERM of a
//! run with a drain delay is written to the pipe at once (the Runner reports
//! `shutdown_requested()` from then on) and the listener cancels the main task when the
//! delay is over, unless the next signal cuts the delay short first (the state word decides
//! which, once); the grace period ends the process from the listener. A signal after the
//! first (of the run, or during the `close()` that follows it) is a forced exit: the handler
//! asks the listener for the final words and ends the process itself if they are not out
//! within 100 ms.
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

/// Which signals a run asks to handle: a set of bits (one byte in every task's wrapper, and
/// a run copies its Runner's with one `and`).
#[derive(Clone, Copy, Default)]
pub(crate) struct Wanted(u8);

impl Wanted {
    const SIGINT: u8 = 1;
    const SIGTERM: u8 = 2;
    /// A SIGTERM waits for the Runner's drain delay before it cancels the main task.
    const DRAIN_DELAY: u8 = 4;

    pub(crate) fn new(sigint: bool, sigterm: bool, drain_delay: bool) -> Wanted {
        let mut bits = 0;
        if sigint {
            bits |= Wanted::SIGINT;
        }
        if sigterm {
            bits |= Wanted::SIGTERM;
            if drain_delay {
                bits |= Wanted::DRAIN_DELAY;
            }
        }
        Wanted(bits)
    }

    /// These signals on the process's main thread; none elsewhere (asyncio arms them only
    /// there).
    #[inline]
    pub(crate) fn on_thread(self, main_thread: bool) -> Wanted {
        Wanted(self.0 * u8::from(main_thread))
    }

    pub(crate) fn any(self) -> bool {
        self.0 & (Wanted::SIGINT | Wanted::SIGTERM) != 0
    }

    pub(crate) fn sigint(self) -> bool {
        self.0 & Wanted::SIGINT != 0
    }

    pub(crate) fn sigterm(self) -> bool {
        self.0 & Wanted::SIGTERM != 0
    }

    #[cfg_attr(not(all(unix, not(runner_loom))), allow(dead_code))]
    fn drain_delay(self) -> bool {
        self.0 & Wanted::DRAIN_DELAY != 0
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
    use std::sync::{Arc, Mutex, Weak};
    use std::time::Instant;

    use super::{Armed, Wanted};
    use crate::shared::Shared;
    use crate::shutdown::{Forced, Helper, FINAL_WORDS_LIMIT};
    use crate::signal_state::{Arming, Decision, SignalState};
    use crate::task_state::{StopSignal, TaskState};
    use crate::util::lock_std;

    static SIGNALS: SignalState<TaskState> = SignalState::new();
    static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
    /// The listener's end of the pipe, for a `fork`ed child to close (see `after_fork`).
    static PIPE_READ: AtomicI32 = AtomicI32::new(-1);
    /// The Runner of a run that a signal hit, as the run's own thread saw it at disarm:
    /// for the listener, when the run ended before it could look (see `Kind::RunEnded`).
    static HIT_RUN: Mutex<Option<(Weak<Shared>, StopSignal)>> = Mutex::new(None);

    /// What a message on the self-pipe is about. A message is one `u64`,
    /// `generation << 8 | signal << 4 | kind`: one `write` of 8 bytes, which a pipe keeps
    /// whole, from a signal handler too.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Kind {
        /// The first signal of a run: cancel its main task.
        Forward = 1,
        /// The first signal, a SIGTERM, of a run with a drain delay: the shutdown is
        /// requested; the cancel comes when the delay is over.
        Delay = 2,
        /// A signal cut the run's drain delay short: cancel its main task now.
        CutShort = 3,
        /// A signal forced the exit: final words, then the end.
        ForcedExit = 4,
        /// A run that a signal hit has disarmed; its Runner is in `HIT_RUN`.
        RunEnded = 5,
        /// A Runner's shutdown is over (its `close()` returned).
        Over = 6,
        /// The final words are out.
        Said = 7,
    }

    struct Message {
        kind: Kind,
        signal: Option<StopSignal>,
        generation: u64,
    }

    fn encode(kind: Kind, signal: Option<StopSignal>, generation: u64) -> u64 {
        generation << 8 | (signal.map_or(0, |s| s as u64)) << 4 | kind as u64
    }

    fn decode(raw: u64) -> Option<Message> {
        let kind = match raw & 0xf {
            1 => Kind::Forward,
            2 => Kind::Delay,
            3 => Kind::CutShort,
            4 => Kind::ForcedExit,
            5 => Kind::RunEnded,
            6 => Kind::Over,
            7 => Kind::Said,
            _ => return None,
        };
        let signal = match raw >> 4 & 0xf {
            1 => Some(StopSignal::Interrupt),
            2 => Some(StopSignal::Terminate),
            _ => None,
        };
        Some(Message {
            kind,
            signal,
            generation: raw >> 8,
        })
    }

    /// Writes one message to the listener's pipe (async-signal-safe: one `write`, to a pipe
    /// that never blocks; a message that does not fit is lost, and every sender copes).
    fn send(kind: Kind, signal: Option<StopSignal>, generation: u64) {
        let fd = PIPE_WRITE.load(Ordering::Acquire);
        if fd < 0 {
            return;
        }
        let bytes = encode(kind, signal, generation).to_ne_bytes();
        // SAFETY: writing our own buffer to our own pipe (non-blocking).
        unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    }

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
            Decision::Forward(generation) => send(Kind::Forward, Some(signal), generation),
            Decision::Delay(generation) => send(Kind::Delay, Some(signal), generation),
            Decision::CutShort(generation) => send(Kind::CutShort, Some(signal), generation),
            // SAFETY: `forced_exit` is async-signal-safe, and the process ends here.
            Decision::Die(generation) => unsafe { forced_exit(signal, generation) },
            // SAFETY: as above.
            Decision::ShuttingDown(generation) if dies_here(signo) => unsafe {
                forced_exit(signal, generation)
            },
            // SAFETY: `die_now` is async-signal-safe, and the process ends here.
            Decision::NotArmed if dies_here(signo) => unsafe { die_now(signal) },
            // A handler installed over ours called us first; it goes on to the program's own
            // actions (or the program ignores the signal now).
            Decision::ShuttingDown(_) | Decision::NotArmed => {}
        }
        errno.restore();
    }

    /// Outside an armed run: whether the signal gets its default action, death (ours is
    /// still the process's handler, so nobody else wants it; or the program put the default
    /// back since, a race with this delivery). Async-signal-safe.
    fn dies_here(signo: libc::c_int) -> bool {
        match current_action(signo) {
            Some(action) if action == our_handler() => true,
            Some(libc::SIG_DFL) => true,
            _ => false,
        }
    }

    /// A forced exit by `signal`: asks the listener for the final words (it ends the process
    /// once they are out), and ends the process here if that has not happened within
    /// `FINAL_WORDS_LIMIT` (a listener stuck, or gone). The thread that took the signal waits
    /// here meanwhile, whatever it was doing (a loop that never yields included).
    /// Async-signal-safe: `write`, `nanosleep`.
    ///
    /// # Safety
    /// Ends the process without running destructors or flushing anything.
    unsafe fn forced_exit(signal: StopSignal, generation: u64) -> ! {
        send(Kind::ForcedExit, Some(signal), generation);
        let limit = FINAL_WORDS_LIMIT;
        let mut wait = libc::timespec {
            tv_sec: libc::time_t::try_from(limit.as_secs()).unwrap_or(0),
            // Below 10^9: fits a `c_long` of any width.
            tv_nsec: limit.subsec_nanos() as libc::c_long,
        };
        // Interrupted by another signal: sleep for what is left (bounded: a few rounds).
        for _ in 0..64 {
            let mut left = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: two timespecs of our own; async-signal-safe.
            if unsafe { libc::nanosleep(&wait, &mut left) } == 0 {
                break;
            }
            wait = left;
        }
        // SAFETY: the caller accepts that the process ends here.
        unsafe { die_now(signal) }
    }

    /// Ends the process by `signal`: the default action, re-raised; if the process is still
    /// there (PID 1 of a PID namespace), `_exit(128 + n)`. Async-signal-safe.
    ///
    /// # Safety
    /// Ends the process without running destructors or flushing anything.
    pub(crate) unsafe fn die_now(signal: StopSignal) -> ! {
        raise_default(signal);
        // SAFETY: `_exit` is async-signal-safe; the caller accepts that the process ends.
        unsafe { libc::_exit(signal.exit_status()) }
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

    /// The listener's view of the shutdown under way.
    struct Tracked {
        runner: Weak<Shared>,
        /// The signal that began it.
        signal: StopSignal,
        /// The run it waits on now (the one the cancel or the drain delay is for).
        generation: u64,
        /// The end of that run's drain delay, while it goes on.
        delay_until: Option<Instant>,
        helper: Option<Helper>,
    }

    impl Tracked {
        fn is_over(&self) -> bool {
            self.runner.upgrade().is_none_or(|r| r.shutdown.is_over())
        }

        fn grace_deadline(&self) -> Option<Instant> {
            self.runner.upgrade()?.shutdown.grace_deadline()
        }

        /// When the listener must look at the shutdown next, without a message.
        fn next_timer(&self) -> Option<Instant> {
            match (self.delay_until, self.grace_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
    }

    fn listen(read_fd: libc::c_int) {
        let mut tracked: Option<Tracked> = None;
        loop {
            on_timers(&mut tracked, read_fd);
            let wait = tracked
                .as_ref()
                .and_then(Tracked::next_timer)
                .map(|at| at.saturating_duration_since(Instant::now()));
            match wait_readable(read_fd, wait) {
                Ready::Readable => {}
                Ready::TimedOut => continue,
                Ready::Closed => return,
            }
            match read_message(read_fd) {
                Read::Message(message) => on_message(&mut tracked, read_fd, message),
                Read::Again => {}
                Read::End => return,
            }
        }
    }

    enum Read {
        Message(Message),
        Again,
        End,
    }

    fn read_message(read_fd: libc::c_int) -> Read {
        let mut buf = [0u8; 8];
        // SAFETY: reading into our own buffer of the stated length.
        let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 8 {
            match decode(u64::from_ne_bytes(buf)) {
                Some(message) => Read::Message(message),
                None => Read::Again,
            }
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
            Read::Again
        } else {
            Read::End
        }
    }

    fn on_message(tracked: &mut Option<Tracked>, read_fd: libc::c_int, message: Message) {
        let Message {
            kind,
            signal,
            generation,
        } = message;
        match (kind, signal) {
            (Kind::Forward, Some(_)) => first_signal(tracked, generation, false),
            (Kind::Delay, Some(_)) => first_signal(tracked, generation, true),
            (Kind::CutShort, Some(_)) => first_signal(tracked, generation, false),
            (Kind::ForcedExit, Some(signal)) => {
                force_exit(tracked, read_fd, Forced::Signal(signal), signal, generation)
            }
            (Kind::RunEnded, _) => run_ended(tracked),
            (Kind::Over, _) if tracked.as_ref().is_some_and(Tracked::is_over) => {
                *tracked = None;
            }
            _ => {}
        }
    }

    /// The main task of the armed run of `generation`, as a `Weak` (and the signal that hit
    /// its run), after `act` on it; `None` if that run has ended.
    fn main_task(
        generation: u64,
        act: impl FnOnce(&TaskState, StopSignal),
    ) -> Option<(StopSignal, Weak<TaskState>)> {
        SIGNALS.deliver(generation, |main, signal| {
            act(main, signal);
            // SAFETY: a main task's record lives in an `Arc` (see `arm`), alive here.
            let record = unsafe {
                Arc::increment_strong_count(main);
                Arc::from_raw(main)
            };
            (signal, Arc::downgrade(&record))
        })
    }

    /// Cancels the main task of the run of `generation` (if it is still armed): the one
    /// cancel request a signal makes.
    fn cancel(generation: u64) -> Option<(StopSignal, Weak<TaskState>)> {
        main_task(generation, |main, signal| {
            main.request_cancel(Some(signal));
        })
    }

    /// The shutdown of `runner`, begun by `signal`: the one tracked, or a new one.
    fn track<'a>(
        tracked: &'a mut Option<Tracked>,
        runner: &Arc<Shared>,
        signal: StopSignal,
        main: Weak<TaskState>,
    ) -> &'a mut Tracked {
        let ours = tracked
            .as_ref()
            .is_some_and(|t| std::ptr::eq(t.runner.as_ptr(), Arc::as_ptr(runner)));
        if !ours {
            let runner = Arc::downgrade(runner);
            let helper = Helper::start(runner.clone(), signal, main, said);
            *tracked = Some(Tracked {
                runner,
                signal,
                generation: 0,
                delay_until: None,
                helper,
            });
        }
        tracked.as_mut().expect("tracked just now")
    }

    /// The helper's word that the final words are out.
    fn said() {
        send(Kind::Said, None, 0);
    }

    /// The first signal of the run of `generation`: cancel its main task now, or when the
    /// Runner's drain delay is over. Also a signal that cut the drain delay short
    /// (`delayed` false): cancel now, and no delay timer any more.
    fn first_signal(tracked: &mut Option<Tracked>, generation: u64, delayed: bool) {
        let found = main_task(generation, |main, signal| {
            if !delayed {
                main.request_cancel(Some(signal));
            }
        });
        // The run has ended meanwhile: its disarm tells (`RunEnded`).
        let Some((signal, record)) = found else {
            return;
        };
        let runner = crate::progress::runner_of(&record, true);
        let delay = runner.as_ref().and_then(|r| r.shutdown.drain_delay);
        if delayed && delay.is_none() {
            // No Runner to ask for the delay (it cannot be): no delay.
            if SIGNALS.end_delay(generation) {
                cancel(generation);
            }
        }
        let Some(runner) = runner else {
            return;
        };
        runner.shutdown.begin(generation, signal);
        let t = track(tracked, &runner, signal, record.clone());
        t.generation = generation;
        let delay = delay.filter(|_| delayed);
        t.delay_until = delay.and_then(|delay| Instant::now().checked_add(delay));
        if delay.is_none() {
            if let Some(helper) = &t.helper {
                helper.watch(generation, signal, record);
            }
        }
    }

    /// A run that a signal hit has ended: its Runner's shutdown goes on in `close()` (the
    /// grace period with it), also if the listener had not seen the signal yet.
    fn run_ended(tracked: &mut Option<Tracked>) {
        let Some((runner, signal)) = lock_std(&HIT_RUN).take() else {
            return;
        };
        let Some(runner) = runner.upgrade() else {
            return;
        };
        if !runner.shutdown.is_over() {
            track(tracked, &runner, signal, Weak::new());
        }
    }

    /// The timers of the tracked shutdown: the end of a drain delay, the end of the grace
    /// period.
    fn on_timers(tracked: &mut Option<Tracked>, read_fd: libc::c_int) {
        let Some(t) = tracked.as_mut() else {
            return;
        };
        if t.is_over() {
            *tracked = None;
            return;
        }
        let now = Instant::now();
        if t.delay_until.is_some_and(|at| now >= at) {
            t.delay_until = None;
            // The timer and a signal that cuts the delay short race: the state word lets
            // one of them end the delay, and that one cancels.
            if SIGNALS.end_delay(t.generation) {
                if let Some((signal, record)) = cancel(t.generation) {
                    if let Some(helper) = &t.helper {
                        helper.watch(t.generation, signal, record);
                    }
                }
            }
        }
        if t.grace_deadline().is_some_and(|at| now >= at) {
            let signal = t.signal;
            force_exit(tracked, read_fd, Forced::Grace, signal, 0);
        }
    }

    /// Ends the process by `dying`: the final words of `forced` first, for at most
    /// `FINAL_WORDS_LIMIT`.
    fn force_exit(
        tracked: &mut Option<Tracked>,
        read_fd: libc::c_int,
        forced: Forced,
        dying: StopSignal,
        generation: u64,
    ) -> ! {
        let until = Instant::now() + FINAL_WORDS_LIMIT;
        if tracked.is_none() {
            // The second signal came before the listener read the first (two threads'
            // handlers raced): the armed run's main task leads to its Runner, without waiting
            // on a lock.
            if let Some((signal, record)) = main_task(generation, |_, _| {}) {
                if let Some(runner) = crate::progress::runner_of(&record, false) {
                    track(tracked, &runner, signal, record);
                }
            }
        }
        if let Some(helper) = tracked.as_ref().and_then(|t| t.helper.as_ref()) {
            helper.final_words(forced);
            loop {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if let Ready::Readable = wait_readable(read_fd, Some(left)) {
                    match read_message(read_fd) {
                        Read::Message(Message {
                            kind: Kind::Said, ..
                        }) => break,
                        Read::End => break,
                        _ => {}
                    }
                }
            }
        }
        // SAFETY: async-signal-safe, and the process ends here.
        unsafe { die_now(dying) }
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
        if wanted.sigint() && installed(StopSignal::Interrupt) {
            signals = signals.with(StopSignal::Interrupt);
        }
        if wanted.sigterm() && installed(StopSignal::Terminate) {
            signals = signals.with(StopSignal::Terminate);
            if wanted.drain_delay() {
                signals = signals.with_drain_delay();
            }
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

    /// The run just disarmed was hit by `signal` (on the run's thread): its Runner's
    /// shutdown has begun, and the listener learns of it even if the run ended before the
    /// listener could look at it.
    pub(crate) fn run_was_hit(signal: StopSignal) {
        let generation = SIGNALS.last_generation();
        let Some(runner) = crate::scope::current_runner() else {
            return;
        };
        runner.shutdown.begin(generation, signal);
        *lock_std(&HIT_RUN) = Some((Arc::downgrade(&runner), signal));
        send(Kind::RunEnded, Some(signal), generation);
    }

    /// The shutdown that the run of `generation` began is over (its Runner has closed).
    pub(crate) fn shutdown_over(generation: u64) {
        SIGNALS.end_shutdown(generation);
        send(Kind::Over, None, generation);
    }

    pub(crate) fn armed_generation() -> u64 {
        SIGNALS.armed_generation()
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

    pub(crate) fn run_was_hit(_signal: StopSignal) {}

    pub(crate) fn shutdown_over(_generation: u64) {}

    pub(crate) fn armed_generation() -> u64 {
        0
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
        if let Some(signal) = hit {
            hit_run(signal);
        }
        hit
    }
}

/// Only a run that a signal hit comes here (kept out of the run's path).
#[cold]
#[inline(never)]
fn hit_run(signal: StopSignal) {
    imp::run_was_hit(signal);
}

/// The shutdown that the run of `generation` began is over: its Runner has closed. From
/// now on a signal outside a run is no longer a forced exit.
pub(crate) fn shutdown_over(generation: u64) {
    imp::shutdown_over(generation);
}

/// The generation of the run armed now (0: none); a hint for reports.
pub(crate) fn armed_generation() -> u64 {
    imp::armed_generation()
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
