//! Yielding the CPU while hashing, so that a login flood does not keep other processes waiting
//! for a scheduler tick; and `Activity`, which tells the hashing threads whether anything else
//! is being served at all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Makes a hashing thread give up its core every `password.yield_every` (500 µs by default)
/// to whatever else is runnable.
///
/// `SCHED_IDLE` alone is not enough. The kernel compares scheduling policies only between
/// threads of one task group, and every other process is in another group: a Postgres backend,
/// a sidecar, a process in another session or container. Such a process, woken while argon2
/// holds its core, waited for the next scheduler tick (4 ms at HZ=250). Under a login flood that
/// added about 4 ms to every database round trip of a refresh. A timer signal whose handler calls
/// `sched_yield` bounds that wait to the timer period. The signals cost hashing throughput:
/// about 7% at 1 ms and 12% at 500 µs on the 2-core VM of the benchmarks. So the timer runs
/// only during a hash that starts while other requests are being served (any in the last
/// second): a pure login load, where nothing else waits, keeps all of argon2's throughput, and
/// an idle worker gets no signals.
#[cfg(target_os = "linux")]
pub(super) struct Yielder {
    timer: libc::timer_t,
    every_ns: libc::c_long,
}

/// Yields taken so far (an atomic add is async-signal-safe).
#[cfg(target_os = "linux")]
static YIELDS: AtomicU64 = AtomicU64::new(0);

#[cfg(target_os = "linux")]
extern "C" fn yield_now(_: libc::c_int) {
    YIELDS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `sched_yield` is async-signal-safe and has no preconditions; errno is restored so
    // that the interrupted code never sees it change.
    unsafe {
        let errno = *libc::__errno_location();
        libc::sched_yield();
        *libc::__errno_location() = errno;
    }
}

#[cfg(target_os = "linux")]
impl Yielder {
    /// The signal used. Ignored by default, so one that arrives before the handler is
    /// installed (or from outside) does nothing.
    const SIGNAL: libc::c_int = libc::SIGURG;

    /// A disarmed timer aimed at the calling thread; `None` when `every` is zero or the
    /// system refuses a timer (hashing then runs without yielding).
    pub(super) fn for_this_thread(every: Duration) -> Option<Self> {
        let every_ns = libc::c_long::try_from(every.as_nanos()).ok()?;
        if every_ns <= 0 || every_ns >= 1_000_000_000 {
            return None;
        }
        static HANDLER: std::sync::Once = std::sync::Once::new();
        HANDLER.call_once(|| {
            // SAFETY: installs a handler that only calls an async-signal-safe function;
            // SA_RESTART keeps interrupted system calls transparent to other threads.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = yield_now as *const () as libc::sighandler_t;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(Self::SIGNAL, &sa, std::ptr::null_mut());
            }
        });
        // SAFETY: `sigevent` is plain data (all-zero is valid); the timer targets this thread's
        // own id, and the timer id is written by the call before it is read.
        unsafe {
            let mut ev: libc::sigevent = std::mem::zeroed();
            ev.sigev_notify = libc::SIGEV_THREAD_ID;
            ev.sigev_signo = Self::SIGNAL;
            ev.sigev_notify_thread_id = libc::gettid();
            let mut id: libc::timer_t = std::ptr::null_mut();
            (libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut id) == 0).then_some(Self {
                timer: id,
                every_ns,
            })
        }
    }

    fn set(&self, ns: libc::c_long) {
        let t = libc::timespec {
            tv_sec: 0,
            tv_nsec: ns,
        };
        let spec = libc::itimerspec {
            it_interval: t,
            it_value: t,
        };
        // SAFETY: the timer id is valid (created above, deleted only on drop).
        unsafe {
            libc::timer_settime(self.timer, 0, &spec, std::ptr::null_mut());
        }
    }

    /// Runs `f` with the timer armed.
    pub(super) fn during<R>(&self, f: impl FnOnce() -> R) -> R {
        self.set(self.every_ns);
        let r = f();
        self.set(0);
        r
    }
}

#[cfg(target_os = "linux")]
impl Drop for Yielder {
    fn drop(&mut self) {
        // SAFETY: deletes the timer this value owns, once.
        unsafe {
            libc::timer_delete(self.timer);
        }
    }
}

/// Hashing yields only while other requests were served this recently: a pure login load
/// keeps all of argon2's throughput, and nothing else is waiting then.
const OTHER_WORK_WINDOW_MS: u64 = 1_000;

/// When a request other than a login was last served. The HTTP edge notes every such request
/// (`note_other_request`); the hashing threads arm their `Yielder` only while this is recent.
/// Cloning shares the clock.
#[derive(Debug, Clone)]
pub struct Activity(Arc<ActivityClock>);

#[derive(Debug)]
struct ActivityClock {
    base: Instant,
    /// Milliseconds after `base`, plus one, of the last other request (0: never).
    other_work_at_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self(Arc::new(ActivityClock {
            base: Instant::now(),
            other_work_at_ms: AtomicU64::new(0),
        }))
    }
}

impl Activity {
    fn ms_since_base(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.0.base).as_millis() as u64 + 1
    }

    /// Notes a request that is not a login, served at `at`. One relaxed load per request, and
    /// a store at most once a millisecond.
    pub fn note_other_request(&self, at: Instant) {
        let ms = self.ms_since_base(at);
        if self.0.other_work_at_ms.load(Ordering::Relaxed) != ms {
            self.0.other_work_at_ms.store(ms, Ordering::Relaxed);
        }
    }

    /// Whether another request was served in the second before `at`.
    pub(super) fn other_work_recently(&self, at: Instant) -> bool {
        let last = self.0.other_work_at_ms.load(Ordering::Relaxed);
        last != 0 && self.ms_since_base(at).saturating_sub(last) < OTHER_WORK_WINDOW_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_hashing_thread_yields_while_armed_and_only_then() {
        let params = argon2::Params::new(19456, 2, 1, None).unwrap();
        std::thread::spawn(move || {
            assert!(
                Yielder::for_this_thread(Duration::ZERO).is_none(),
                "0 turns it off"
            );
            let y = Yielder::for_this_thread(Duration::from_millis(1)).expect("a timer");
            let spin = |ms| {
                let until = Instant::now() + Duration::from_millis(ms);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            };
            let before = YIELDS.load(Ordering::Relaxed);
            // A real hash, and a 30 ms busy loop, with the timer armed.
            let h = y.during(|| super::super::hash_blocking(&params, b"pw").unwrap());
            assert!(super::super::verify_blocking(
                b"pw",
                &h,
                &super::super::CostCaps::DEFAULTS
            ));
            y.during(|| spin(30));
            let armed = YIELDS.load(Ordering::Relaxed) - before;
            assert!(
                armed >= 10,
                "only {armed} yields in 30+ ms of hashing at 1 ms"
            );
            // Disarmed: no more signals (other tests' threads could only add to the count if
            // they armed a timer, and none does).
            std::thread::sleep(Duration::from_millis(5));
            let after = YIELDS.load(Ordering::Relaxed);
            spin(20);
            assert_eq!(
                YIELDS.load(Ordering::Relaxed),
                after,
                "the timer kept firing"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn other_requests_are_recent_for_one_second() {
        let a = Activity::default();
        let t = Instant::now();
        assert!(!a.other_work_recently(t), "nothing served yet");
        a.note_other_request(t);
        assert!(a.other_work_recently(t));
        let window = Duration::from_millis(OTHER_WORK_WINDOW_MS);
        assert!(a.other_work_recently(t + window - Duration::from_millis(1)));
        assert!(!a.other_work_recently(t + window));
    }
}
