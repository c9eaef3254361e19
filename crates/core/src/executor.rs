//! Executor pools: model code runs here, on named OS threads, never on the async runtime.
//!
//! A pool is a bounded queue in front of a fixed set of threads. Submitting never waits for
//! room: a full queue is reported at once as [`ExecutorError::Overloaded`] so the server can
//! answer 503 quickly instead of piling up requests. The caller awaits a one-shot reply that
//! carries the value together with how long the task queued and ran.
//!
//! Each pool has two queues: threads always take [`Priority::High`] work first (the Open
//! Inference Protocol's `priority` parameter), then normal work.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::thread;
use std::time::{Duration, Instant};

use crate::cancel;
use crate::error::{Classified, ErrorKind};
use crate::observe;
use crate::request_scope;
use crate::sync::lock;

type Task = Box<dyn FnOnce() + Send>;

/// How a pool is sized.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Pool name (`cpu`, `gpu`, ...), used in thread names, metrics and errors.
    pub name: String,
    pub threads: usize,
    /// Tasks that may wait for a thread before submissions are refused.
    pub queue_capacity: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutorError {
    #[error("executor pool {pool:?} is at capacity; retry shortly")]
    Overloaded { pool: String },
    #[error("executor pool {pool:?} is shutting down")]
    ShutDown { pool: String },
    #[error("the model panicked while running on executor pool {pool:?}")]
    Panicked { pool: String },
}

impl Classified for ExecutorError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Overloaded { .. } => ErrorKind::Overloaded,
            Self::ShutDown { .. } => ErrorKind::Unavailable,
            Self::Panicked { .. } => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Overloaded { .. } => "overloaded",
            Self::ShutDown { .. } => "unavailable",
            Self::Panicked { .. } => "inference_failed",
        }
    }
}

/// Which queue a task waits in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Priority {
    /// Taken before any normal task that is still waiting.
    High,
    #[default]
    Normal,
}

impl Priority {
    /// The protocol's `priority` parameter: 1 is the highest level; 0 (or none) and every
    /// other level are normal.
    pub fn from_level(level: Option<u64>) -> Self {
        if level == Some(1) {
            Self::High
        } else {
            Self::Normal
        }
    }
}

/// A value computed on a pool thread, with its timings.
#[derive(Debug)]
pub struct Executed<T> {
    pub value: T,
    /// Time between submission and a thread picking the task up.
    pub queue_time: Duration,
    /// Time the task ran.
    pub run_time: Duration,
}

impl<T> Executed<T> {
    /// The same run with its value converted.
    pub fn map<U>(self, convert: impl FnOnce(T) -> U) -> Executed<U> {
        Executed {
            value: convert(self.value),
            queue_time: self.queue_time,
            run_time: self.run_time,
        }
    }
}

/// A fixed set of named threads behind a bounded queue.
pub struct ExecutorPool {
    name: String,
    /// Normal tasks, and one wake-up token per urgent task.
    sender: flume::Sender<Queued>,
    /// High-priority tasks. A thread drains it whenever it takes anything from `sender`, so
    /// urgent work overtakes every normal task still queued. A std mutex: held for a push or
    /// a pop only.
    urgent: Arc<Mutex<VecDeque<Task>>>,
    in_flight: Arc<AtomicUsize>,
    threads: usize,
}

impl std::fmt::Debug for ExecutorPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorPool")
            .field("name", &self.name)
            .field("threads", &self.threads)
            .field("queued", &self.queued())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl ExecutorPool {
    /// Spawns the threads. They exit once every handle to the pool is dropped and the queue
    /// is drained.
    pub fn start(config: &ExecutorConfig) -> std::io::Result<Self> {
        let threads = config.threads.max(1);
        let (sender, receiver) = flume::bounded::<Queued>(config.queue_capacity.max(1));
        let urgent = Arc::new(Mutex::new(VecDeque::<Task>::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        for index in 0..threads {
            let receiver = receiver.clone();
            let urgent = Arc::clone(&urgent);
            let in_flight = Arc::clone(&in_flight);
            let device = config.name.clone();
            thread::Builder::new()
                .name(format!("exec-{}-{index}", config.name))
                .spawn(move || {
                    let run = |task: Task| {
                        in_flight.fetch_add(1, Ordering::Relaxed);
                        observe::executor_inflight(&device, 1.0);
                        task();
                        observe::executor_inflight(&device, -1.0);
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                    };
                    while let Some(queued) = next_task(&receiver) {
                        while let Some(task) = pop(&urgent) {
                            run(task);
                        }
                        if let Queued::Task(task) = queued {
                            run(task);
                        }
                    }
                })?;
        }
        Ok(Self {
            name: config.name.clone(),
            sender,
            urgent,
            in_flight,
            threads,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Tasks currently running on a thread.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Tasks waiting for a thread.
    pub fn queued(&self) -> usize {
        self.sender.len()
    }

    /// Queues `task` for a pool thread without waiting for it, or refuses it at once when the
    /// queue is full. The task runs for the caller's request (`request_scope`) and sees its
    /// job's cancellation (`cancel`); it must not
    /// panic (wrap model calls in `catch_unwind`), or it takes its thread's current task down
    /// with it.
    pub fn submit(&self, task: impl FnOnce() + Send + 'static) -> Result<(), ExecutorError> {
        self.submit_with(Priority::Normal, task)
    }

    /// [`Self::submit`] into the queue of `priority`.
    pub fn submit_with(
        &self,
        priority: Priority,
        task: impl FnOnce() + Send + 'static,
    ) -> Result<(), ExecutorError> {
        let request = request_scope::current();
        let cancel = cancel::current();
        let task: Task = Box::new(move || {
            let _entered = request_scope::enter(request);
            cancel::within(cancel, task);
        });
        let refused = |err: flume::TrySendError<Queued>| match err {
            flume::TrySendError::Full(_) => ExecutorError::Overloaded {
                pool: self.name.clone(),
            },
            flume::TrySendError::Disconnected(_) => ExecutorError::ShutDown {
                pool: self.name.clone(),
            },
        };
        match priority {
            Priority::Normal => self.sender.try_send(Queued::Task(task)).map_err(refused),
            Priority::High => {
                // Under the lock from push to token: a refused task is taken back before any
                // thread (which pops under the same lock) can see it.
                let mut urgent = lock(&self.urgent);
                urgent.push_back(task);
                self.sender.try_send(Queued::Urgent).map_err(|err| {
                    urgent.pop_back();
                    refused(err)
                })
            }
        }
    }

    /// Runs `work` on a pool thread. Dropping the returned future does not stop the work; its
    /// result is then discarded.
    pub async fn run<T, F>(&self, work: F) -> Result<Executed<T>, ExecutorError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.run_with(Priority::Normal, work).await
    }

    /// [`Self::run`] from the queue of `priority`.
    pub async fn run_with<T, F>(
        &self,
        priority: Priority,
        work: F,
    ) -> Result<Executed<T>, ExecutorError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.start_with(priority, work)?.await
    }

    /// Queues `work` now (or refuses it at once, like [`Self::submit`]) and returns the wait
    /// for its reply, which the caller may await later: until it is first polled, the reply
    /// wakes nobody.
    pub fn start_with<T, F>(
        &self,
        priority: Priority,
        work: F,
    ) -> Result<Running<'_, T>, ExecutorError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        // One allocation per run; a flume channel here cost four (its queue, its buffer, and
        // the waiting receiver's hook and that hook's queue).
        let (reply, replied) = futures_channel::oneshot::channel();
        let submitted = Instant::now();
        self.submit_with(priority, move || {
            let started = Instant::now();
            // A panicking model must fail its own request, not take the thread down with it.
            let outcome = catch_unwind(AssertUnwindSafe(work)).map(|value| Executed {
                value,
                queue_time: started.duration_since(submitted),
                run_time: started.elapsed(),
            });
            // The caller may have gone (timeout, disconnect); then nobody wants the result.
            let _ = reply.send(outcome);
        })?;
        Ok(Running {
            pool: self,
            replied,
        })
    }
}

/// The reply of work queued by [`ExecutorPool::start_with`]. Dropping it does not stop the
/// work; its result is then discarded.
#[derive(Debug)]
pub struct Running<'pool, T> {
    pool: &'pool ExecutorPool,
    replied: futures_channel::oneshot::Receiver<std::thread::Result<Executed<T>>>,
}

impl<T> Future for Running<'_, T> {
    type Output = Result<Executed<T>, ExecutorError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let replied = ready!(Pin::new(&mut self.replied).poll(cx));
        let pool = || self.pool.name.clone();
        Poll::Ready(match replied {
            Ok(Ok(executed)) => Ok(executed),
            Ok(Err(_panic)) => Err(ExecutorError::Panicked { pool: pool() }),
            // The task was dropped unrun: the pool shut down.
            Err(futures_channel::oneshot::Canceled) => {
                Err(ExecutorError::ShutDown { pool: pool() })
            }
        })
    }
}

/// What the shared queue holds: a normal task, or the token of an urgent one.
enum Queued {
    Task(Task),
    Urgent,
}

/// How long an idle pool thread keeps looking for work before it sleeps.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(50);

/// The next queued item, or `None` once every sender is gone. An idle thread first polls the
/// queue for [`SPIN_BEFORE_PARK`], yielding its core to any other runnable thread between
/// polls, and only then sleeps: under load the next request arrives within that window, and
/// taking it from a thread that is still awake spares the submitter the futex wake-up (a
/// system call and, on a VM, an inter-processor interrupt) that waking a sleeping thread costs.
fn next_task(receiver: &flume::Receiver<Queued>) -> Option<Queued> {
    let spin_until = Instant::now() + SPIN_BEFORE_PARK;
    loop {
        match receiver.try_recv() {
            Ok(queued) => return Some(queued),
            Err(flume::TryRecvError::Disconnected) => return None,
            Err(flume::TryRecvError::Empty) if Instant::now() < spin_until => thread::yield_now(),
            Err(flume::TryRecvError::Empty) => return receiver.recv().ok(),
        }
    }
}

fn pop(urgent: &Mutex<VecDeque<Task>>) -> Option<Task> {
    lock(urgent).pop_front()
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn pool(threads: usize, queue_capacity: usize) -> ExecutorPool {
        ExecutorPool::start(&ExecutorConfig {
            name: "test".into(),
            threads,
            queue_capacity,
        })
        .unwrap()
    }

    #[test]
    fn work_runs_for_the_request_that_submitted_it_and_for_no_other() {
        let pool = pool(1, 4);
        let seen = |submit_for: Option<&str>| {
            let (sender, receiver) = mpsc::channel();
            let request = submit_for.map(|id| crate::job::RequestId::parse(id).unwrap());
            let _entered = request_scope::enter(request);
            pool.submit(move || sender.send(request_scope::current()).unwrap())
                .unwrap();
            receiver.recv().unwrap().map(|id| id.as_str().to_owned())
        };
        assert_eq!(seen(Some("req-1")), Some("req-1".to_owned()));
        // The thread that ran req-1's work does not keep it for the next task.
        assert_eq!(seen(None), None);
        assert_eq!(seen(Some("req-2")), Some("req-2".to_owned()));
    }

    /// Occupies the pool's only thread until the returned sender is used.
    fn occupy(
        pool: &Arc<ExecutorPool>,
    ) -> (
        mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<Executed<()>, ExecutorError>>,
    ) {
        let (release, released) = mpsc::channel::<()>();
        let (started, has_started) = mpsc::channel::<()>();
        let blocker = {
            let pool = Arc::clone(pool);
            tokio::spawn(async move {
                pool.run(move || {
                    started.send(()).unwrap();
                    released.recv().unwrap();
                })
                .await
            })
        };
        has_started.recv().unwrap();
        (release, blocker)
    }

    #[tokio::test]
    async fn runs_work_on_a_named_pool_thread() {
        let pool = pool(2, 4);
        let executed = pool
            .run(|| thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(executed.value.unwrap().starts_with("exec-test-"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_refused_at_once() {
        let pool = Arc::new(pool(1, 1));
        let (release, blocker) = occupy(&pool);
        // Fill the one queue slot.
        let queued = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.run(|| 7).await })
        };
        while pool.queued() < 1 {
            tokio::task::yield_now().await;
        }
        let refused = pool.run(|| 0).await;
        assert_eq!(
            refused.unwrap_err(),
            ExecutorError::Overloaded {
                pool: "test".into()
            }
        );
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        assert_eq!(queued.await.unwrap().unwrap().value, 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn high_priority_work_overtakes_queued_normal_work() {
        let pool = Arc::new(pool(1, 8));
        let (release, blocker) = occupy(&pool);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for (label, priority) in [
            ("normal-1", Priority::Normal),
            ("normal-2", Priority::Normal),
            ("high", Priority::High),
        ] {
            let submitter = Arc::clone(&pool);
            let order = Arc::clone(&order);
            waiting.push(tokio::spawn(async move {
                submitter
                    .run_with(priority, move || order.lock().unwrap().push(label))
                    .await
            }));
            let queued = waiting.len();
            while pool.queued() < queued {
                tokio::task::yield_now().await;
            }
        }
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        for task in waiting {
            task.await.unwrap().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["high", "normal-1", "normal-2"]);
        assert_eq!(Priority::from_level(Some(1)), Priority::High);
        assert_eq!(Priority::from_level(Some(0)), Priority::Normal);
        assert_eq!(Priority::from_level(None), Priority::Normal);
    }

    #[tokio::test]
    async fn a_thread_that_went_to_sleep_wakes_for_new_work() {
        let pool = pool(1, 4);
        assert_eq!(pool.run(|| 1).await.unwrap().value, 1);
        // Past the spin window the thread sleeps in `recv`; a new task must still wake it.
        thread::sleep(SPIN_BEFORE_PARK * 20);
        assert_eq!(pool.run(|| 2).await.unwrap().value, 2);
    }

    #[tokio::test]
    async fn a_panicking_task_fails_alone_and_the_thread_survives() {
        let pool = pool(1, 4);
        let panicked = pool.run(|| panic!("model bug")).await;
        assert!(matches!(panicked, Err(ExecutorError::Panicked { .. })));
        assert_eq!(pool.run(|| 41 + 1).await.unwrap().value, 42);
    }
}
