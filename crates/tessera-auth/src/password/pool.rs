//! The hashing threads: one per slot, at the lowest CPU priority, each owning its argon2
//! memory, fed through a bounded queue.

use std::time::{Duration, Instant};

use super::yield_timer::Activity;
#[cfg(target_os = "linux")]
use super::yield_timer::Yielder;
use super::PasswordError;

/// One unit of work for a hashing thread.
pub(super) type Job = Box<dyn FnOnce() + Send + 'static>;

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

/// Runs one job on a hashing thread (see `Yielder`).
struct Worker {
    #[cfg(target_os = "linux")]
    yielder: Option<Yielder>,
    activity: Activity,
}

impl Worker {
    fn start(every: Duration, activity: Activity) -> Self {
        lower_priority();
        #[cfg(not(target_os = "linux"))]
        let _ = every;
        Self {
            #[cfg(target_os = "linux")]
            yielder: Yielder::for_this_thread(every),
            activity,
        }
    }

    fn run(&self, job: Job) {
        #[cfg(target_os = "linux")]
        if let Some(y) = &self.yielder {
            if self.activity.other_work_recently(Instant::now()) {
                return y.during(job);
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = &self.activity;
        job()
    }
}

/// Starts `slots` hashing threads reading from one queue with room for `capacity` jobs.
pub(super) fn start(
    slots: usize,
    capacity: usize,
    yield_every: Duration,
    activity: &Activity,
) -> Result<std::sync::mpsc::SyncSender<Job>, PasswordError> {
    let (queue, jobs) = std::sync::mpsc::sync_channel::<Job>(capacity);
    let jobs = std::sync::Arc::new(std::sync::Mutex::new(jobs));
    for i in 0..slots {
        let jobs = jobs.clone();
        let activity = activity.clone();
        std::thread::Builder::new()
            .name(format!("argon2-{i}"))
            .spawn(move || {
                let worker = Worker::start(yield_every, activity);
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
    Ok(queue)
}
