//! argon2id password hashing and verification.
//!
//! - Hashes are PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
//! - Argon2 never runs on the async runtime: every computation goes to the blocking pool, behind
//!   a semaphore sized to the cores (invariant 4). When too many logins wait, new ones are shed
//!   at once with `Busy` (503 + Retry-After) instead of letting every request time out.
//! - Each blocking thread keeps its argon2 memory block and reuses it, so a login flood does not
//!   allocate (and fault in) 19 MiB per request.
//! - An unknown user is verified against a dummy hash made with the same parameters, so the
//!   time taken does not reveal whether an account exists.
//! - A stored hash whose parameters differ from the configured ones is re-hashed after a
//!   successful verification.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher, Version};
use secrecy::{ExposeSecret, SecretString};

use crate::config::PasswordSettings;

/// Longest accepted password, in bytes. Longer input is refused before argon2 runs.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// A stored hash asking for more memory than this (KiB) is refused rather than computed.
const MAX_M_COST: u32 = 1024 * 1024;

/// Why a hash or verification could not run.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Too many password computations are queued; shed the request.
    #[error("password hashing is saturated")]
    Busy,
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// The result of a verification.
#[derive(Debug)]
pub struct Verified {
    pub ok: bool,
    /// A fresh hash with the configured parameters, when the stored one is outdated.
    pub rehash: Option<String>,
}

/// Hashes and verifies passwords on a small dedicated thread pool.
///
/// One worker per slot (a core by default), each owning its argon2 memory block, so memory is
/// bounded by `slots × m_cost` however hard logins are pushed. Workers run at the lowest CPU
/// priority (`SCHED_IDLE`), and while other requests are being served they yield the CPU every
/// 500 µs (see `Yielder`): when cheap requests (JWKS, refresh, verification) or a database
/// backend are waiting, they run first, and argon2 still gets every otherwise idle cycle. A bounded queue
/// in front sheds excess logins at once (`Busy` → 503), and a job that waited longer than
/// `queue_timeout` is dropped without being computed.
pub struct Passwords {
    params: Params,
    queue: std::sync::mpsc::SyncSender<Job>,
    slots: usize,
    /// Logins admitted (computing or queued); at most `slots + max_queue`.
    admitted: Arc<AtomicUsize>,
    max_admitted: usize,
    queue_timeout: Duration,
    dummy_hash: String,
}

type Job = Box<dyn FnOnce() + Send + 'static>;

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// The argon2 working memory of this worker thread, reused across verifications.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// A reserved place in the password pipeline, released on drop.
#[derive(Debug)]
pub struct Admission(Arc<AtomicUsize>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Lowers the calling thread's scheduling priority. On Linux the thread moves to `SCHED_IDLE`:
/// it runs whenever a core would otherwise idle, and a thread of this process (a tokio worker
/// with a JWKS or refresh request) preempts it at once on wake-up, which a nice value alone
/// does not guarantee. Where that is refused, nice 10.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: both calls act on the calling thread only (pid 0 / its own tid) and have no
    // memory-safety preconditions; a failure only leaves the priority unchanged.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 10);
        }
    }
}

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
struct Yielder {
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
    fn for_this_thread(every: Duration) -> Option<Self> {
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
    fn during<R>(&self, f: impl FnOnce() -> R) -> R {
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

/// When a request other than a login was last served, in ms after `clock_base()` (0: never).
static OTHER_WORK_AT_MS: AtomicU64 = AtomicU64::new(0);
/// Hashing yields only while other requests were served this recently: a pure login load
/// keeps all of argon2's throughput, and nothing else is waiting then.
const OTHER_WORK_WINDOW_MS: u64 = 1_000;

fn clock_base() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn ms_since_base(at: Instant) -> u64 {
    at.saturating_duration_since(clock_base()).as_millis() as u64 + 1
}

/// Called by the HTTP edge for every request that is not a login: hashing yields the CPU
/// while such requests keep arriving. One relaxed load per request, and a store at most once
/// a millisecond.
pub fn note_other_request(at: Instant) {
    let ms = ms_since_base(at);
    if OTHER_WORK_AT_MS.load(Ordering::Relaxed) != ms {
        OTHER_WORK_AT_MS.store(ms, Ordering::Relaxed);
    }
}

fn other_work_recently(now_ms: u64) -> bool {
    let at = OTHER_WORK_AT_MS.load(Ordering::Relaxed);
    at != 0 && now_ms.saturating_sub(at) < OTHER_WORK_WINDOW_MS
}

/// Runs one job on a hashing thread (see [`Yielder`]).
struct Worker {
    #[cfg(target_os = "linux")]
    yielder: Option<Yielder>,
}

impl Worker {
    fn start(every: Duration) -> Self {
        lower_priority();
        #[cfg(not(target_os = "linux"))]
        let _ = every;
        Self {
            #[cfg(target_os = "linux")]
            yielder: Yielder::for_this_thread(every),
        }
    }

    fn run(&self, job: Job) {
        #[cfg(target_os = "linux")]
        if let Some(y) = &self.yielder {
            if other_work_recently(ms_since_base(Instant::now())) {
                return y.during(job);
            }
        }
        job()
    }
}

impl Passwords {
    /// Starts the workers and computes the dummy hash (one argon2 run, at start-up).
    pub fn new(s: &PasswordSettings) -> Result<Self, PasswordError> {
        let params = Params::new(s.m_cost, s.t_cost, s.p_cost, None)
            .map_err(|e| PasswordError::Internal(e.to_string()))?;
        let slots = if s.max_concurrency == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            s.max_concurrency
        };
        let dummy_secret = uuid::Uuid::new_v4().to_string();
        let dummy_hash = hash_blocking(&params, dummy_secret.as_bytes())?;
        // Room for every admitted job: admission (not the channel) is what sheds load.
        let (queue, jobs) = std::sync::mpsc::sync_channel::<Job>(slots + s.max_queue);
        let jobs = Arc::new(std::sync::Mutex::new(jobs));
        for i in 0..slots {
            let jobs = jobs.clone();
            let every = s.yield_every;
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    let worker = Worker::start(every);
                    loop {
                        let job = match jobs.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => worker.run(job),
                            // The sender is gone: Tessera is shutting down.
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| PasswordError::Internal(e.to_string()))?;
        }
        Ok(Self {
            params,
            queue,
            slots,
            admitted: Arc::new(AtomicUsize::new(0)),
            max_admitted: slots + s.max_queue,
            queue_timeout: s.queue_timeout,
            dummy_hash,
        })
    }

    /// Reserves room for one password computation, before any other work is spent on the
    /// request (database reads included), so that shedding a login flood costs next to nothing.
    pub fn admit(&self) -> Result<Admission, PasswordError> {
        let prev = self.admitted.fetch_add(1, Ordering::AcqRel);
        let admission = Admission(self.admitted.clone());
        if prev >= self.max_admitted {
            return Err(PasswordError::Busy);
        }
        Ok(admission)
    }

    /// Hashes a new password with the configured parameters.
    pub async fn hash(&self, password: SecretString) -> Result<String, PasswordError> {
        let params = self.params.clone();
        self.run(move || hash_blocking(&params, password.expose_secret().as_bytes()))
            .await?
    }

    /// Verifies `password` against `stored`, or against the dummy hash when `stored` is `None`
    /// (unknown user). The dummy path always answers `ok: false` but costs the same.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<Verified, PasswordError> {
        let params = self.params.clone();
        let (phc, real) = match stored {
            Some(h) => (h, true),
            None => (self.dummy_hash.clone(), false),
        };
        self.run(move || {
            let pw = password.expose_secret().as_bytes();
            let ok = verify_blocking(pw, &phc) && real;
            let rehash = if ok && needs_rehash(&phc, &params) {
                Some(hash_blocking(&params, pw)?)
            } else {
                None
            };
            Ok(Verified { ok, rehash })
        })
        .await?
    }

    /// Runs `f` on a worker, or sheds the call when the queue is full or the wait too long.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let span = tracing::Span::current();
        let queued_at = std::time::Instant::now();
        let deadline = self.queue_timeout;
        let job: Job = Box::new(move || {
            if queued_at.elapsed() > deadline {
                let _ = tx.send(Err(PasswordError::Busy));
                return;
            }
            let _ = tx.send(Ok(span.in_scope(f)));
        });
        self.queue.try_send(job).map_err(|_| PasswordError::Busy)?;
        rx.await
            .map_err(|_| PasswordError::Internal("password worker stopped".into()))?
    }
}

/// Hashes with a fresh random salt. Blocking: call it off the async runtime.
pub fn hash_blocking(params: &Params, password: &[u8]) -> Result<String, PasswordError> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Internal(e.to_string()))
}

/// Verifies against a PHC string, reusing this thread's memory block. Any malformed or
/// unsupported hash verifies as false. Blocking: call it off the async runtime.
pub fn verify_blocking(password: &[u8], phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return false;
    }
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Ok(params), Some(salt), Some(expected)) =
        (Params::try_from(&parsed), parsed.salt, parsed.hash)
    else {
        return false;
    };
    if params.m_cost() > MAX_M_COST {
        return false;
    }
    let a2 = Argon2::new(Algorithm::Argon2id, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    let done = BLOCKS.with(|cell| {
        let mut blocks = cell.borrow_mut();
        let need = params.block_count();
        if blocks.len() < need {
            blocks.resize(need, Block::default());
        }
        a2.hash_password_into_with_memory(password, salt.as_ref(), &mut out, &mut blocks[..need])
    });
    done.is_ok()
        && aws_lc_rs::constant_time::verify_slices_are_equal(&out, expected.as_bytes()).is_ok()
}

/// True when the stored hash was made with other parameters than the configured ones.
fn needs_rehash(phc: &str, want: &Params) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return true;
    };
    let Ok(p) = Params::try_from(&parsed) else {
        return true;
    };
    parsed.algorithm != argon2::ARGON2ID_IDENT
        || parsed.version != Some(19)
        || p.m_cost() != want.m_cost()
        || p.t_cost() != want.t_cost()
        || p.p_cost() != want.p_cost()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params::new(19456, 2, 1, None).unwrap()
    }

    #[test]
    fn verify_round_trip_with_reused_memory() {
        let h = hash_blocking(&params(), b"correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_blocking(b"correct horse", &h));
        assert!(!verify_blocking(b"correct horsf", &h));
        // Second run on the same thread reuses the block and still agrees.
        assert!(verify_blocking(b"correct horse", &h));
        assert!(!verify_blocking(b"correct horse", "not a phc string"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_hashing_thread_yields_while_armed_and_only_then() {
        std::thread::spawn(|| {
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
            let h = y.during(|| hash_blocking(&params(), b"pw").unwrap());
            assert!(verify_blocking(b"pw", &h));
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
        let t = Instant::now();
        note_other_request(t);
        let at = ms_since_base(t);
        assert!(other_work_recently(at));
        assert!(other_work_recently(at + OTHER_WORK_WINDOW_MS - 1));
        assert!(!other_work_recently(at + OTHER_WORK_WINDOW_MS));
    }

    #[test]
    fn outdated_parameters_ask_for_a_rehash() {
        let old = Params::new(20000, 2, 1, None).unwrap();
        let h = hash_blocking(&old, b"pw").unwrap();
        assert!(needs_rehash(&h, &params()));
        assert!(!needs_rehash(
            &hash_blocking(&params(), b"pw").unwrap(),
            &params()
        ));
    }
}
