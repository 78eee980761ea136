//! Passwords: argon2id hashing and verification on a bounded pool of hashing threads.
//!
//! - Hashes are PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`; `hasher`).
//! - Argon2 never runs on the async runtime: every computation goes to a dedicated pool of
//!   threads (`pool`), one per core by default (invariant 4). When too many logins wait, new
//!   ones are shed at once with `Busy` (503 + Retry-After) instead of letting every request
//!   time out.
//! - Each hashing thread keeps its argon2 memory block and reuses it, so a login flood does not
//!   allocate (and fault in) 19 MiB per request.
//! - While other requests are being served, hashing threads give up their core every
//!   `password.yield_every` (`yield_timer`), so other processes are not kept waiting.
//! - An unknown user is verified against a dummy hash made with the same parameters, so the
//!   time taken does not reveal whether an account exists.
//! - A stored hash whose parameters differ from the configured ones is re-hashed after a
//!   successful verification. So is a hash imported from another system (`formats`: bcrypt,
//!   PBKDF2, argon2i), within the cost caps `password.max_*`.
//! - Passwords are compared after NFKC normalisation (NIST SP 800-63B §5.1.1.2): new hashes are
//!   made from the NFKC form. A password that NFKC changes is also tried as typed, for hashes
//!   made before (or elsewhere) from raw input, and such a hash is re-hashed from the NFKC form.
//!   The unknown-user path makes the same number of verifications.

mod formats;
mod hasher;
mod pool;
mod yield_timer;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use argon2::Params;
use secrecy::{ExposeSecret, SecretString};

use crate::config::PasswordSettings;
pub use formats::{import, CostCaps, ImportError};
use hasher::needs_rehash;
pub use hasher::{hash_blocking, verify_blocking};
use pool::Job;
pub use yield_timer::Activity;

/// Longest accepted password, in bytes. Longer input is refused before argon2 runs.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The form of a password that is hashed and compared: its NFKC normalisation (Unicode UAX #15),
/// so that one password typed with different keyboards or input methods (full-width digits,
/// ligatures, composed accents) is the same password.
pub fn normalize(password: &str) -> zeroize::Zeroizing<String> {
    use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};
    zeroize::Zeroizing::new(match is_nfkc_quick(password.chars()) {
        IsNormalized::Yes => password.to_string(),
        _ => password.nfkc().collect(),
    })
}

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
/// bounded by `slots × m_cost` however hard logins are pushed. A bounded queue in front sheds
/// excess logins at once (`Busy` → 503), and a job that waited longer than `queue_timeout` is
/// dropped without being computed.
pub struct Passwords {
    params: Params,
    queue: std::sync::mpsc::SyncSender<Job>,
    slots: usize,
    /// Logins admitted (computing or queued); at most `slots + max_queue`.
    admitted: Arc<AtomicUsize>,
    max_admitted: usize,
    queue_timeout: Duration,
    dummy_hash: String,
    caps: CostCaps,
    activity: Activity,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

/// A reserved place in the password pipeline, released on drop.
#[derive(Debug)]
pub struct Admission(Arc<AtomicUsize>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
        let activity = Activity::default();
        // Room for every admitted job: admission (not the channel) is what sheds load.
        let queue = pool::start(slots, slots + s.max_queue, s.yield_every, &activity)?;
        Ok(Self {
            params,
            queue,
            slots,
            admitted: Arc::new(AtomicUsize::new(0)),
            max_admitted: slots + s.max_queue,
            queue_timeout: s.queue_timeout,
            dummy_hash,
            caps: CostCaps::from(s),
            activity,
        })
    }

    /// The clock the hashing threads read to decide whether to yield; the HTTP edge notes
    /// every request that is not a login on it.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// Logins admitted and not finished (hashing or queued), and the number of hashing
    /// threads, for `/metrics`.
    pub fn load(&self) -> (usize, usize) {
        (self.admitted.load(Ordering::Acquire), self.slots)
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

    /// Hashes a new password (its NFKC form) with the configured parameters.
    pub async fn hash(&self, password: SecretString) -> Result<String, PasswordError> {
        let params = self.params.clone();
        self.run(move || hash_blocking(&params, normalize(password.expose_secret()).as_bytes()))
            .await?
    }

    /// Verifies `password` against `stored`, or against the dummy hash when `stored` is `None`
    /// (unknown user). The dummy path always answers `ok: false` but costs the same.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<Verified, PasswordError> {
        let (params, caps) = (self.params.clone(), self.caps);
        let (phc, real) = match stored {
            Some(h) => (h, true),
            None => (self.dummy_hash.clone(), false),
        };
        self.run(move || {
            let typed = password.expose_secret();
            let nfkc = normalize(typed);
            let (ok, as_typed) = if verify_blocking(nfkc.as_bytes(), &phc, &caps) {
                (true, false)
            } else if nfkc.as_str() != typed {
                // A hash made from raw input (before NFKC, or by another system).
                (verify_blocking(typed.as_bytes(), &phc, &caps), true)
            } else {
                (false, false)
            };
            let ok = ok && real;
            let rehash = if ok && (as_typed || needs_rehash(&phc, &params)) {
                Some(hash_blocking(&params, nfkc.as_bytes())?)
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
            let started = std::time::Instant::now();
            let out = span.in_scope(f);
            metrics::histogram!("password_hash_seconds").record(started.elapsed().as_secs_f64());
            let _ = tx.send(Ok(out));
        });
        self.queue.try_send(job).map_err(|_| PasswordError::Busy)?;
        rx.await
            .map_err(|_| PasswordError::Internal("password worker stopped".into()))?
    }
}
