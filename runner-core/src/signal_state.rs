//! The lock-free heart of signal handling, apart from the OS: the state word that a run arms
//! and disarms, the handler's decision, and the listener's check before it touches the main
//! task. `signal` keeps one process-wide instance of [`SignalState`] and wires it to
//! `sigaction`, a self-pipe and the listener thread; the loom models at the bottom create
//! their own instances and run the same methods from model threads.
//!
//! The rules the models check:
//! - every signal either reaches the run (the handler forwards it, and `disarm` returns it as
//!   that run's hit) or goes past it (the handler decides the run is already hit, or that no
//!   run is armed): never both, never neither;
//! - the listener never touches a main task once `disarm` of its run has returned;
//! - a drain delay (a SIGTERM whose cancel waits, `Builder::drain_delay`) ends exactly once:
//!   either the listener's timer ends it or the next signal cuts it short, never both (the
//!   main task is asked to cancel once), and the signal that cuts it short never kills;
//!   the one after it does;
//! - once a run was hit, every later signal is a forced exit (final words, then death) until
//!   its Runner's shutdown ends, also after the run has disarmed (during `close()`).

use crate::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, Ordering};
use crate::task_state::StopSignal;

const ARM_INT: u64 = 1;
const ARM_TERM: u64 = 2;
const HIT_INT: u64 = 4;
const HIT_TERM: u64 = 8;
const HITS: u64 = HIT_INT | HIT_TERM;
/// Armed with a drain delay: a SIGTERM hit waits for it before the main task is cancelled.
const DELAY_TERM: u64 = 16;
/// The hit waits for its drain delay now: the next signal cuts the delay short (it does not
/// kill), and so does the listener's timer; whichever clears this bit first.
const DELAYING: u64 = 32;
const GENERATION_SHIFT: u32 = 6;

impl StopSignal {
    fn arm_bit(self) -> u64 {
        match self {
            StopSignal::Interrupt => ARM_INT,
            StopSignal::Terminate => ARM_TERM,
        }
    }

    fn hit_bit(self) -> u64 {
        match self {
            StopSignal::Interrupt => HIT_INT,
            StopSignal::Terminate => HIT_TERM,
        }
    }
}

/// Which signals a run arms (a set of [`StopSignal`]s), and whether a SIGTERM hit waits for a
/// drain delay.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) struct Arming(u64);

impl Arming {
    pub(crate) fn with(self, signal: StopSignal) -> Arming {
        Arming(self.0 | signal.arm_bit())
    }

    /// A SIGTERM that hits the run waits for the drain delay before its cancel (SIGTERM
    /// only: a Ctrl-C at a terminal is never delayed).
    #[cfg_attr(runner_loom, allow(dead_code))]
    pub(crate) fn with_drain_delay(self) -> Arming {
        Arming(self.0 | DELAY_TERM)
    }

    #[cfg_attr(runner_loom, allow(dead_code))]
    pub(crate) fn is_empty(self) -> bool {
        self.0 & (ARM_INT | ARM_TERM) == 0
    }
}

/// What the signal handler does with one signal.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Decision {
    /// The first signal of the armed run of this generation: the listener cancels its main
    /// task, and the run's `disarm` returns the signal.
    Forward(u64),
    /// The first signal, a SIGTERM, of a run armed with a drain delay: the listener marks the
    /// shutdown requested at once and cancels the main task when the delay is over (unless
    /// the next signal cuts it short first). The run's `disarm` returns the signal.
    Delay(u64),
    /// A signal while the run's drain delay goes on: the delay is over, and the listener
    /// cancels the main task now. It does not kill; the next signal does.
    CutShort(u64),
    /// The armed run was hit before: this one ends the process (a forced exit).
    Die(u64),
    /// No run is armed for this signal, but the shutdown that a signal started in the run of
    /// this generation still goes on (its `close()`, say): the process does what it would do
    /// without runner, and if that is to die, it is a forced exit.
    ShuttingDown(u64),
    /// No run is armed for this signal: the process does what it would do without runner.
    NotArmed,
}

/// The signal state of a process: which run is armed for which signals, whether a signal
/// hit it, and the main task the listener may cancel.
pub(crate) struct SignalState<T> {
    /// `generation << 6 | DELAYING | DELAY_TERM | hits | armed signals`; 0 while no run is
    /// armed.
    word: AtomicU64,
    /// Only the arming thread (the process's main thread) touches it.
    last_generation: AtomicU64,
    /// The armed run's main task: valid while its generation is armed, and, for the
    /// listener, while `busy` is set (disarm waits for it).
    main: AtomicPtr<T>,
    busy: AtomicBool,
    /// The generation of the last run a signal hit, until its shutdown ends; 0: none. Set
    /// by the handler as it records the hit (so a second signal on the same thread, after
    /// the run disarmed, always sees it) and by `disarm` when it returns a hit.
    shutdown: AtomicU64,
}

impl<T> SignalState<T> {
    /// Nothing armed. `const` in normal builds, for the process-wide `static`.
    #[cfg(not(runner_loom))]
    pub(crate) const fn new() -> SignalState<T> {
        SignalState {
            word: AtomicU64::new(0),
            last_generation: AtomicU64::new(0),
            main: AtomicPtr::new(std::ptr::null_mut()),
            busy: AtomicBool::new(false),
            shutdown: AtomicU64::new(0),
        }
    }

    #[cfg(runner_loom)]
    pub(crate) fn new() -> SignalState<T> {
        SignalState {
            word: AtomicU64::new(0),
            last_generation: AtomicU64::new(0),
            main: AtomicPtr::new(std::ptr::null_mut()),
            busy: AtomicBool::new(false),
            shutdown: AtomicU64::new(0),
        }
    }

    /// Arms `signals` for a run whose main task is `main` (which must stay alive until
    /// [`disarm`](Self::disarm) returns); returns the run's generation. Only one thread
    /// arms (the process's main thread), so the generation needs no read-modify-write.
    /// Plain stores: this is on every run's path.
    pub(crate) fn arm(&self, main: &T, signals: Arming) -> u64 {
        let generation = self.last_generation.load(Ordering::Relaxed) + 1;
        self.last_generation.store(generation, Ordering::Relaxed);
        self.main
            .store(std::ptr::from_ref(main).cast_mut(), Ordering::Release);
        // Release: whoever reads this word also sees `main`.
        self.word.store(
            generation << GENERATION_SHIFT | signals.0,
            Ordering::Release,
        );
        generation
    }

    /// Disarms; returns the signal that hit the run, if one did. Once this returns, the
    /// listener is done with the main task and will not touch it again, and every later
    /// signal is past the run (`NotArmed`, or `ShuttingDown` after a hit).
    pub(crate) fn disarm(&self) -> Option<StopSignal> {
        // The one read-modify-write on a run's path: against the handler's compare-exchange
        // on the same word, it decides whether a signal landed before (its hit bit comes
        // back here) or after (the handler sees the run disarmed).
        let word = self.word.swap(0, Ordering::SeqCst);
        // Swap-then-load here against the listener's store-then-load (see `deliver`): with
        // every access SeqCst, their single total order keeps either the listener from
        // seeing the run armed or this load from missing `busy`. loom does not model that
        // order (loom issue #180: its SeqCst accesses are acquire/release), so a model would
        // report the store-buffering interleaving the real code cannot have. Under loom only,
        // a SeqCst fence here and one in `deliver` give the same guarantee in terms loom
        // checks (loom orders SeqCst fences totally). Not in normal builds: on the path of
        // every run, a fence would cost more than the guarantee it repeats.
        #[cfg(runner_loom)]
        fence(Ordering::SeqCst);
        while self.busy.load(Ordering::SeqCst) {
            spin();
        }
        let hit = hit_of(word);
        if hit.is_some() {
            self.shutting_down(word >> GENERATION_SHIFT);
        }
        hit
    }

    /// The shutdown of the run of `generation` goes on past the run (kept out of line: only
    /// a run that a signal hit comes here).
    #[cold]
    #[inline(never)]
    fn shutting_down(&self, generation: u64) {
        self.shutdown.store(generation, Ordering::SeqCst);
    }

    /// The handler's decision for `signal` (async-signal-safe: atomics only). A
    /// compare-exchange rather than a `fetch_or`: a signal the run did not arm must not
    /// leave a hit bit behind (a program that handles SIGINT itself while runner handles
    /// SIGTERM would otherwise see its SIGINT turn the next SIGTERM into a kill, and the run
    /// report `Interrupted`).
    pub(crate) fn on_signal(&self, signal: StopSignal) -> Decision {
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            if word & signal.arm_bit() == 0 {
                return match self.shutdown.load(Ordering::SeqCst) {
                    0 => Decision::NotArmed,
                    generation => Decision::ShuttingDown(generation),
                };
            }
            let generation = word >> GENERATION_SHIFT;
            let next = if word & HITS == 0 {
                let delayed = signal == StopSignal::Terminate && word & DELAY_TERM != 0;
                word | signal.hit_bit() | if delayed { DELAYING } else { 0 }
            } else if word & DELAYING != 0 {
                word & !DELAYING
            } else {
                return Decision::Die(generation);
            };
            match self
                .word
                .compare_exchange(word, next, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) if word & HITS != 0 => return Decision::CutShort(generation),
                Ok(_) => {
                    // Before the handler returns: a second signal on this thread (nested,
                    // or after the run has disarmed) then sees the shutdown.
                    self.shutting_down(generation);
                    return if next & DELAYING != 0 {
                        Decision::Delay(generation)
                    } else {
                        Decision::Forward(generation)
                    };
                }
                Err(now) => word = now,
            }
        }
    }

    /// The listener's timer: ends the drain delay of the run of `generation` if it still
    /// goes on; `true` if this call ended it (the listener then cancels the main task), and
    /// `false` if a signal cut it short before (the listener cancels for that signal) or
    /// the run has ended.
    #[cfg_attr(runner_loom, allow(dead_code))]
    pub(crate) fn end_delay(&self, generation: u64) -> bool {
        let mut word = self.word.load(Ordering::SeqCst);
        loop {
            if word >> GENERATION_SHIFT != generation || word & DELAYING == 0 {
                return false;
            }
            match self.word.compare_exchange(
                word,
                word & !DELAYING,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => word = now,
            }
        }
    }

    /// The shutdown of the run of `generation` is over (its Runner has closed): from now on
    /// a signal outside a run is `NotArmed` again. A later shutdown's mark is left alone.
    pub(crate) fn end_shutdown(&self, generation: u64) {
        let _ = self
            .shutdown
            .compare_exchange(generation, 0, Ordering::SeqCst, Ordering::Relaxed);
    }

    /// The generation of the run armed last (or arming now): what a run that `disarm` just
    /// reported hit was. Only the arming thread may ask.
    #[cfg_attr(runner_loom, allow(dead_code))]
    pub(crate) fn last_generation(&self) -> u64 {
        self.last_generation.load(Ordering::Relaxed)
    }

    /// The listener's step for a forwarded signal of `generation`: if that run is still
    /// armed, `act` gets its main task and the signal that hit it. `None`: the run has
    /// ended (or a later one is armed), and the main task was not touched.
    pub(crate) fn deliver<R>(
        &self,
        generation: u64,
        act: impl FnOnce(&T, StopSignal) -> R,
    ) -> Option<R> {
        // Busy, then the word: the store-then-load half of the handshake with `disarm`
        // (see there). The fence is what loom checks; in normal builds it is redundant with
        // the SeqCst accesses, and costs nothing that matters (once per run at most). The
        // word is read with a plain load, not a read-modify-write: loom orders the writes of
        // different threads only partially, so a write here could look to loom as if it
        // came after the next run's arming store, reading the word from before it.
        self.busy.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let word = self.word.load(Ordering::SeqCst);
        let result = match hit_of(word) {
            Some(signal) if word >> GENERATION_SHIFT == generation => {
                let main = self.main.load(Ordering::Acquire);
                // SAFETY: the word still holds `generation`, so that run has not disarmed;
                // its disarm waits for `busy` to clear, and `arm`'s caller keeps the main
                // task alive until disarm returns.
                Some(act(unsafe { &*main }, signal))
            }
            _ => None,
        };
        self.busy.store(false, Ordering::Release);
        result
    }

    /// The generation armed now; 0: none. A hint (for reports), not a synchronization.
    #[cfg_attr(runner_loom, allow(dead_code))]
    pub(crate) fn armed_generation(&self) -> u64 {
        self.word.load(Ordering::Relaxed) >> GENERATION_SHIFT
    }
}

fn hit_of(word: u64) -> Option<StopSignal> {
    if word & HIT_INT != 0 {
        Some(StopSignal::Interrupt)
    } else if word & HIT_TERM != 0 {
        Some(StopSignal::Terminate)
    } else {
        None
    }
}

#[cfg(not(runner_loom))]
fn spin() {
    std::hint::spin_loop();
}

// A model must be told that a spinning thread waits for another one.
#[cfg(runner_loom)]
fn spin() {
    loom::thread::yield_now();
}

#[cfg(all(test, runner_loom))]
mod loom_models {
    //! `RUSTFLAGS="--cfg runner_loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p tokio-runner-core
    //! --release --lib loom`

    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use loom::sync::Arc;
    use loom::thread;

    use super::{Arming, Decision, SignalState};
    use crate::task_state::StopSignal;

    /// A stand-in for the main task's record: loom reports any access to `data` that is not
    /// ordered after (or before) the run's owner reusing it.
    struct MainTask {
        data: UnsafeCell<u32>,
        cancels: AtomicUsize,
    }

    impl MainTask {
        fn new() -> MainTask {
            MainTask {
                data: UnsafeCell::new(0),
                cancels: AtomicUsize::new(0),
            }
        }

        /// What the listener does with it: read it, ask it to cancel.
        fn cancel(&self) {
            self.data
                .with(|p| unsafe { assert_ne!(*p, u32::MAX, "used after its run") });
            self.cancels.fetch_add(1, Ordering::SeqCst);
        }

        fn cancels(&self) -> usize {
            self.cancels.load(Ordering::SeqCst)
        }

        /// What the main thread may do once disarm returned: free or reuse the record.
        fn reuse(&self) {
            self.data.with_mut(|p| unsafe { *p = u32::MAX });
        }
    }

    fn sigint() -> Arming {
        Arming::default().with(StopSignal::Interrupt)
    }

    /// One run, one SIGINT at any moment (before arming, while armed, after disarming):
    /// forwarded exactly when the run reports it.
    #[test]
    fn loom_signal_lands_before_or_after_disarm() {
        loom::model(|| {
            let state = Arc::new(SignalState::<MainTask>::new());
            let main = MainTask::new();
            let handler = {
                let state = state.clone();
                thread::spawn(move || state.on_signal(StopSignal::Interrupt))
            };
            let generation = state.arm(&main, sigint());
            let hit = state.disarm();
            match handler.join().unwrap() {
                Decision::Forward(g) => {
                    assert_eq!(g, generation);
                    assert_eq!(
                        hit,
                        Some(StopSignal::Interrupt),
                        "a forwarded signal was lost"
                    );
                }
                Decision::NotArmed => assert_eq!(hit, None, "reported and passed on"),
                other => panic!("a run's only signal: {other:?}"),
            }
        });
    }

    /// Two runs and two signals (SIGINT, SIGTERM) at any moments: each run reports at most
    /// the one signal forwarded to it; a signal dies only after another hit the same run;
    /// a run armed for SIGINT alone never reports SIGTERM.
    #[test]
    fn loom_each_signal_is_reported_by_one_run_or_passes() {
        loom::model(|| {
            let state = Arc::new(SignalState::<MainTask>::new());
            let main = MainTask::new();
            let handlers: Vec<_> = [StopSignal::Interrupt, StopSignal::Terminate]
                .into_iter()
                .map(|signal| {
                    let state = state.clone();
                    thread::spawn(move || (signal, state.on_signal(signal)))
                })
                .collect();
            let both = sigint().with(StopSignal::Terminate);
            let first = state.arm(&main, both);
            let hit_first = state.disarm();
            let second = state.arm(&main, sigint());
            let hit_second = state.disarm();
            let decisions: Vec<_> = handlers.into_iter().map(|h| h.join().unwrap()).collect();

            for (generation, hit) in [(first, hit_first), (second, hit_second)] {
                let forwarded: Vec<StopSignal> = decisions
                    .iter()
                    .filter(|(_, d)| *d == Decision::Forward(generation))
                    .map(|(signal, _)| *signal)
                    .collect();
                assert!(forwarded.len() <= 1, "two signals forwarded to one run");
                assert_eq!(hit, forwarded.first().copied(), "run {generation}");
            }
            for (signal, decision) in &decisions {
                if matches!(decision, Decision::Die(_)) {
                    assert!(
                        decisions
                            .iter()
                            .any(|(other, d)| other != signal && matches!(d, Decision::Forward(_))),
                        "{signal:?} killed though no signal hit its run"
                    );
                }
            }
            assert_ne!(hit_second, Some(StopSignal::Terminate));
        });
    }

    /// The listener got the generation of an armed run (the handler forwarded a signal) and
    /// races its disarm: it cancels the main task only while the run is armed, and the main
    /// thread may reuse the record as soon as disarm returns.
    #[test]
    fn loom_listener_never_uses_a_disarmed_main_task() {
        loom::model(|| {
            let state = Arc::new(SignalState::<MainTask>::new());
            let main = Arc::new(MainTask::new());
            state.arm(&main, sigint());
            let Decision::Forward(generation) = state.on_signal(StopSignal::Interrupt) else {
                panic!("the signal of an armed run was not forwarded");
            };
            let listener = {
                let state = state.clone();
                thread::spawn(move || {
                    state.deliver(generation, |task, signal| {
                        task.cancel();
                        signal
                    })
                })
            };
            let hit = state.disarm();
            main.reuse();
            let delivered = listener.join().unwrap();
            assert_eq!(hit, Some(StopSignal::Interrupt));
            assert_eq!(usize::from(delivered.is_some()), main.cancels());
        });
    }

    /// The listener reads a signal of the first run while the second one is armed and hit
    /// too (its signal queued behind): each run's main task is cancelled once at most, the
    /// second one exactly once (a second request for one signal could drop a main task in
    /// the middle of its cleanup), and the first one never after its disarm.
    #[test]
    fn loom_listener_ignores_a_stale_generation() {
        loom::model(|| {
            let state = Arc::new(SignalState::<MainTask>::new());
            let first = Arc::new(MainTask::new());
            let second = Arc::new(MainTask::new());
            // The self-pipe: the second run's generation, once its signal is forwarded.
            let queued = Arc::new(AtomicU64::new(0));
            state.arm(&first, sigint());
            let Decision::Forward(stale) = state.on_signal(StopSignal::Interrupt) else {
                panic!("the signal of an armed run was not forwarded");
            };
            let listener = {
                let (state, queued) = (state.clone(), queued.clone());
                thread::spawn(move || {
                    state.deliver(stale, |task, _| task.cancel());
                    let next = loop {
                        match queued.load(Ordering::SeqCst) {
                            0 => thread::yield_now(),
                            generation => break generation,
                        }
                    };
                    state.deliver(next, |task, _| task.cancel());
                })
            };
            assert_eq!(state.disarm(), Some(StopSignal::Interrupt));
            first.reuse();
            state.arm(&second, sigint());
            let Decision::Forward(next) = state.on_signal(StopSignal::Interrupt) else {
                panic!("the signal of an armed run was not forwarded");
            };
            queued.store(next, Ordering::SeqCst);
            listener.join().unwrap();
            assert_eq!(state.disarm(), Some(StopSignal::Interrupt));
            assert!(first.cancels() <= 1);
            assert_eq!(second.cancels(), 1, "one signal, one cancel request");
        });
    }

    fn sigterm_delayed() -> Arming {
        sigint().with(StopSignal::Terminate).with_drain_delay()
    }

    /// A SIGTERM with a drain delay, then a Ctrl-C racing the listener's timer at the end
    /// of the delay: the delay ends once, by whichever comes first; the Ctrl-C cuts it short
    /// (it never kills while the delay goes on) and the one after it kills; the main task is
    /// asked to cancel exactly once (a second request could drop it in its cleanup).
    #[test]
    fn loom_drain_delay_ends_once_by_its_timer_or_by_the_next_signal() {
        loom::model(|| {
            let state = Arc::new(SignalState::<MainTask>::new());
            let main = Arc::new(MainTask::new());
            let generation = state.arm(&main, sigterm_delayed());
            assert_eq!(
                state.on_signal(StopSignal::Terminate),
                Decision::Delay(generation),
                "a SIGTERM of a run with a drain delay was not delayed"
            );
            assert_eq!(
                state.on_signal(StopSignal::Terminate),
                Decision::CutShort(generation),
                "the second signal did not cut the delay short"
            );
            assert!(
                !state.end_delay(generation),
                "a delay cut short ended again"
            );
            assert_eq!(
                state.on_signal(StopSignal::Interrupt),
                Decision::Die(generation)
            );
            assert_eq!(state.disarm(), Some(StopSignal::Terminate));

            // The race, on a fresh run: the second signal against the timer.
            let generation = state.arm(&main, sigterm_delayed());
            assert_eq!(
                state.on_signal(StopSignal::Terminate),
                Decision::Delay(generation)
            );
            // Each side does what the listener does for it: cancel the main task.
            let second = {
                let state = state.clone();
                thread::spawn(move || {
                    let decision = state.on_signal(StopSignal::Interrupt);
                    if decision == Decision::CutShort(generation) {
                        state.deliver(generation, |task, _| task.cancel());
                    }
                    decision
                })
            };
            let timer = {
                let state = state.clone();
                thread::spawn(move || {
                    let ended = state.end_delay(generation);
                    if ended {
                        state.deliver(generation, |task, _| task.cancel());
                    }
                    ended
                })
            };
            let decision = second.join().unwrap();
            let ended = timer.join().unwrap();
            match decision {
                Decision::CutShort(g) => {
                    assert_eq!(g, generation);
                    assert!(!ended, "the delay ended twice: by its timer and cut short");
                }
                Decision::Die(_) => assert!(ended, "a signal during the drain delay killed"),
                other => panic!("the second signal: {other:?}"),
            }
            assert_eq!(main.cancels(), 1, "one drain delay, one cancel request");
            assert!(matches!(
                state.on_signal(StopSignal::Terminate),
                Decision::Die(_)
            ));
            assert_eq!(state.disarm(), Some(StopSignal::Terminate));
        });
    }

    /// The run ends (its main task finished on its own) while its drain delay goes on: the
    /// listener's timer then neither cancels nor touches the main task after disarm.
    #[test]
    fn loom_drain_delay_timer_never_touches_a_disarmed_main_task() {
        loom::model(|| {
            let state = Arc::new(SignalState::<MainTask>::new());
            let main = Arc::new(MainTask::new());
            let generation = state.arm(&main, sigterm_delayed());
            assert_eq!(
                state.on_signal(StopSignal::Terminate),
                Decision::Delay(generation)
            );
            let timer = {
                let state = state.clone();
                thread::spawn(move || {
                    if state.end_delay(generation) {
                        state.deliver(generation, |task, _| task.cancel());
                    }
                })
            };
            let hit = state.disarm();
            main.reuse();
            timer.join().unwrap();
            assert_eq!(hit, Some(StopSignal::Terminate));
            assert!(main.cancels() <= 1);
        });
    }

    /// A signal hits a run and a second one follows on the same thread while the run
    /// disarms (its main task ends): the second is a forced exit whether it lands before the
    /// disarm (`Die`) or after (`ShuttingDown`), never `NotArmed` (it would die without
    /// saying what it cut short); so is a signal after the disarm, until the shutdown ends.
    #[test]
    fn loom_after_a_hit_every_signal_is_a_forced_exit_until_the_shutdown_ends() {
        loom::model(|| {
            let state = Arc::new(SignalState::<MainTask>::new());
            let main = MainTask::new();
            let generation = state.arm(&main, sigint());
            let handler = {
                let state = state.clone();
                thread::spawn(move || {
                    let first = state.on_signal(StopSignal::Interrupt);
                    let second = state.on_signal(StopSignal::Interrupt);
                    (first, second)
                })
            };
            let hit = state.disarm();
            let (first, second) = handler.join().unwrap();
            match first {
                Decision::Forward(g) => {
                    assert_eq!((g, hit), (generation, Some(StopSignal::Interrupt)));
                    assert!(
                        matches!(second, Decision::Die(g) | Decision::ShuttingDown(g) if g == generation),
                        "a second signal after a hit: {second:?}"
                    );
                    assert_eq!(
                        state.on_signal(StopSignal::Terminate),
                        Decision::ShuttingDown(generation),
                        "a signal after the hit run disarmed"
                    );
                    state.end_shutdown(generation);
                    assert_eq!(state.on_signal(StopSignal::Terminate), Decision::NotArmed);
                }
                Decision::NotArmed => {
                    assert_eq!((hit, second), (None, Decision::NotArmed));
                }
                other => panic!("a run's first signal: {other:?}"),
            }
        });
    }
}
