//! systemd's notify protocol (`sd_notify(3)`), for services of `Type=notify`: `READY=1`
//! when the program says so ([`notify_ready`]), `STOPPING=1` at the first signal, `STATUS=`
//! with the text of each progress report of a slow shutdown, and `WATCHDOG=1` from a task on
//! the Runner's own loop.
//!
//! Only when `NOTIFY_SOCKET` is set; otherwise every call here is one load of a cached
//! answer (read once per process), and nothing is on a run's path. A `NOTIFY_SOCKET` that
//! does not work gets one report (the first failure), and is then left alone: the program
//! never fails because of it.
//!
//! The few lines of `std::os::unix::net::UnixDatagram` rather than the `sd-notify` crate:
//! the protocol is one datagram per message to a path or an abstract name (std has both,
//! `SocketAddrExt::from_abstract_name` since Rust 1.70), and the watchdog must be driven by
//! the Runner's loop in a way of our own anyway (runner-core has no tokio timer).
//!
//! The watchdog: with `WATCHDOG_USEC` set (and `WATCHDOG_PID` unset or this process's pid),
//! each Runner runs a small task on its loop that sends `WATCHDOG=1` every half of that
//! interval. A thread of the Runner's own (tokio's timer may not be enabled in a loop a
//! factory builds) wakes the task when a ping is due; the task sends it when it is polled.
//! So the pings stop while the loop is blocked (a poll that never returns, a deadlock), and
//! systemd then restarts the service: a liveness check of the event loop itself. On a
//! multi-thread loop the pings say that some worker thread still polls.

use std::io;

#[cfg(unix)]
pub(crate) use imp::{start_watchdog, status, stopping};

#[cfg(not(unix))]
pub(crate) use fallback::{start_watchdog, status, stopping};

/// Tells systemd the service is ready (`READY=1`), when the program runs under a
/// `Type=notify` unit (`NOTIFY_SOCKET` set); does nothing otherwise.
///
/// Call it once the program can serve: listening sockets bound, configuration read. systemd
/// starts the units that wait for this one only then, and `systemctl start` returns then.
/// runner sends the rest itself: `STOPPING=1` at the first signal, `STATUS=` lines while a
/// shutdown waits, and `WATCHDOG=1` pings from the Runner's loop when the unit sets
/// `WatchdogSec=`.
///
/// # Errors
/// The error of a `NOTIFY_SOCKET` that does not work (no such socket, a name that is
/// neither a path nor an `@` abstract name). It is also reported once to the exception
/// handler of the Runner running the caller (or to stderr), so most programs ignore it: a
/// program does not stop because systemd cannot hear it (systemd then gives up on the
/// start after its `TimeoutStartSec`, and the report says why).
///
/// ```
/// # use runner_core as runner;
/// runner::run(async {
///     // ... bind the listener, load the configuration ...
///     if let Err(err) = runner::notify_ready() {
///         eprintln!("systemd was not told: {err}"); // already reported once
///     }
/// })
/// .unwrap();
/// ```
pub fn notify_ready() -> io::Result<()> {
    #[cfg(unix)]
    {
        imp::send_checked("READY=1")
    }
    #[cfg(not(unix))]
    {
        Ok(())
    }
}

#[cfg(unix)]
mod imp {
    use std::io;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::{self, RecvTimeoutError};
    use std::sync::{Arc, Mutex, OnceLock};
    use std::task::{Poll, Waker};
    use std::time::Duration;

    use crate::debug::{Report, ReportKind};
    use crate::shared::Shared;
    use crate::util::lock_std;

    /// Where systemd listens, as `NOTIFY_SOCKET` says (read once per process).
    struct Socket {
        sock: UnixDatagram,
        addr: SocketAddr,
    }

    enum Target {
        /// `NOTIFY_SOCKET` unset or empty: nothing to do.
        None,
        Socket(Socket),
        /// Set, but unusable: the error, reported at the first send.
        Broken(String),
    }

    static TARGET: OnceLock<Target> = OnceLock::new();
    static REPORTED: AtomicBool = AtomicBool::new(false);

    fn target() -> &'static Target {
        TARGET.get_or_init(|| match std::env::var_os("NOTIFY_SOCKET") {
            None => Target::None,
            Some(name) if name.is_empty() => Target::None,
            Some(name) => match open(std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str())) {
                Ok(socket) => Target::Socket(socket),
                Err(err) => Target::Broken(format!(
                    "NOTIFY_SOCKET={:?} cannot be used: {err}",
                    name.to_string_lossy()
                )),
            },
        })
    }

    fn open(name: &[u8]) -> io::Result<Socket> {
        let addr = match name {
            [b'@', abstract_name @ ..] => abstract_addr(abstract_name)?,
            [b'/', ..] => {
                use std::os::unix::ffi::OsStrExt;
                SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(name))?
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "neither an absolute path nor an @abstract name",
                ))
            }
        };
        let sock = UnixDatagram::unbound()?;
        // A full socket buffer (systemd not reading) must never block a loop or a shutdown:
        // a message that does not fit is dropped, as sd_notify's callers accept.
        sock.set_nonblocking(true)?;
        Ok(Socket { sock, addr })
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
        #[cfg(target_os = "android")]
        use std::os::android::net::SocketAddrExt;
        #[cfg(target_os = "linux")]
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name)
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn abstract_addr(_name: &[u8]) -> io::Result<SocketAddr> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "abstract socket names exist only on Linux",
        ))
    }

    /// Sends `message`; the error of a broken socket, reported once.
    pub(crate) fn send_checked(message: &str) -> io::Result<()> {
        let result = match target() {
            Target::None => return Ok(()),
            Target::Socket(socket) => socket
                .sock
                .send_to_addr(message.as_bytes(), &socket.addr)
                .map(drop)
                .map_err(|err| {
                    io::Error::new(
                        err.kind(),
                        format!(
                            "sending {:?} to NOTIFY_SOCKET={:?}: {err}",
                            first_line(message),
                            std::env::var("NOTIFY_SOCKET").unwrap_or_default()
                        ),
                    )
                }),
            Target::Broken(why) => Err(io::Error::other(why.clone())),
        };
        if let Err(err) = &result {
            report_once(err);
        }
        result
    }

    fn first_line(message: &str) -> &str {
        message.split('\n').next().unwrap_or_default()
    }

    /// Sends `message` if a socket is set, ignoring (after its one report) any failure.
    fn send(message: &str) {
        let _ = send_checked(message);
    }

    #[cold]
    fn report_once(err: &io::Error) {
        if REPORTED.swap(true, Ordering::AcqRel) {
            return;
        }
        let report = Report::make(
            ReportKind::NotifyFailed,
            format!(
                "systemd notification failed, and will not be reported again: {err} \
                 (the program goes on; unset NOTIFY_SOCKET or fix it)"
            ),
            None,
            None,
        );
        match crate::scope::current_runner() {
            Some(shared) => shared.report(report),
            None => crate::debug::default_exception_handler(&report),
        }
    }

    /// `STOPPING=1`: the first signal has started the shutdown.
    pub(crate) fn stopping() {
        send("STOPPING=1");
    }

    /// `STATUS=<text>`: what the shutdown waits for (one line: systemd shows it in
    /// `systemctl status`).
    pub(crate) fn status(text: &str) {
        if let Target::None = target() {
            return;
        }
        let line = text.replace('\n', " ");
        send(&format!("STATUS={line}"));
    }

    /// Half of `WATCHDOG_USEC` when the watchdog is asked for this process; read once.
    fn watchdog_interval() -> Option<Duration> {
        static INTERVAL: OnceLock<Option<Duration>> = OnceLock::new();
        *INTERVAL.get_or_init(|| {
            if !matches!(target(), Target::Socket(_)) {
                return None;
            }
            let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
            if usec == 0 {
                return None;
            }
            // systemd sets WATCHDOG_PID for the main process; a child that inherited the
            // variables must not ping on its behalf.
            if let Ok(pid) = std::env::var("WATCHDOG_PID") {
                // SAFETY: no arguments, no preconditions.
                let me = unsafe { libc::getpid() };
                if pid.trim().parse::<libc::pid_t>().ok() != Some(me) {
                    return None;
                }
            }
            Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
        })
    }

    /// What the watchdog thread and the loop's task share.
    struct Ping {
        due: AtomicBool,
        waker: Mutex<Option<Waker>>,
    }

    /// Starts the watchdog of `shared`'s loop if systemd asked for one (at the Runner's lazy
    /// init); `true` if it did (a task of runner's own is then alive on the runtime).
    pub(crate) fn start_watchdog(shared: &Shared) -> bool {
        let Some(every) = watchdog_interval() else {
            return false;
        };
        let ping = Arc::new(Ping {
            due: AtomicBool::new(true),
            waker: Mutex::new(None),
        });
        // The thread lives as long as the task: the task holds the sender, and the runtime
        // drops the task at close (or the thread notices first that the task is gone).
        let (alive, task_gone) = mpsc::channel::<()>();
        let ringer = ping.clone();
        let thread = std::thread::Builder::new()
            .name("runner-watchdog".into())
            .spawn(move || loop {
                match task_gone.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {
                        ringer.due.store(true, Ordering::Release);
                        if let Some(waker) = lock_std(&ringer.waker).take() {
                            waker.wake();
                        }
                    }
                    _ => return,
                }
            });
        if thread.is_err() {
            return false;
        }
        let task = std::future::poll_fn(move |cx| {
            let _alive = &alive;
            *lock_std(&ping.waker) = Some(cx.waker().clone());
            if ping.due.swap(false, Ordering::AcqRel) {
                send("WATCHDOG=1");
            }
            Poll::<()>::Pending
        });
        drop(shared.handle.spawn(task));
        true
    }
}

#[cfg(not(unix))]
mod fallback {
    use crate::shared::Shared;

    pub(crate) fn stopping() {}

    pub(crate) fn status(_text: &str) {}

    pub(crate) fn start_watchdog(_shared: &Shared) -> bool {
        false
    }
}
