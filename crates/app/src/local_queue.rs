//! The in-process job queue used when `REDIS_URL` is unset: jobs run in the `serve` process
//! itself. Deliveries cannot be lost while the process lives; when it dies, the jobs it held are
//! still `pending`/`running` in the store and are resumed at the next start.

use std::time::Duration;

use async_trait::async_trait;
use inference_engine_core::job::JobId;
use inference_engine_core::ports::{Delivery, JobQueue, QueueError};

/// A bounded in-memory queue shared by the in-process runner loops.
#[derive(Debug, Clone)]
pub struct LocalJobQueue {
    sender: flume::Sender<Delivery>,
    receiver: flume::Receiver<Delivery>,
}

impl LocalJobQueue {
    /// `capacity` bounds memory; when full, new jobs stay `pending` in the store and the
    /// reconciler enqueues them later.
    pub fn new(capacity: usize) -> Self {
        let (sender, receiver) = flume::bounded(capacity.max(1));
        Self { sender, receiver }
    }

    fn push(&self, job_id: JobId) -> Result<(), QueueError> {
        self.sender
            .try_send(Delivery {
                job_id,
                receipt: String::new(),
                redelivered: false,
            })
            .map_err(|err| match err {
                flume::TrySendError::Full(_) => QueueError::Unavailable(
                    "the in-process job queue is full; the job stays pending and is enqueued later"
                        .into(),
                ),
                flume::TrySendError::Disconnected(_) => QueueError::Closed,
            })
    }
}

#[async_trait]
impl JobQueue for LocalJobQueue {
    async fn enqueue(&self, jobs: &[JobId]) -> Result<(), QueueError> {
        jobs.iter().try_for_each(|id| self.push(*id))
    }

    async fn enqueue_after(&self, job: JobId, delay: Duration) -> Result<(), QueueError> {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Err(err) = queue.push(job) {
                tracing::warn!(job_id = %job, error = %err, "retry not enqueued; the reconciler will");
            }
        });
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let first = match tokio::time::timeout(wait, self.receiver.recv_async()).await {
            Ok(Ok(delivery)) => delivery,
            Ok(Err(_)) => return Err(QueueError::Closed),
            Err(_elapsed) => return Ok(Vec::new()),
        };
        let mut deliveries = vec![first];
        while deliveries.len() < max {
            match self.receiver.try_recv() {
                Ok(delivery) => deliveries.push(delivery),
                Err(_) => break,
            }
        }
        Ok(deliveries)
    }

    async fn extend(&self, _deliveries: &[Delivery]) -> Result<(), QueueError> {
        Ok(())
    }

    async fn ack(&self, _deliveries: &[Delivery]) -> Result<(), QueueError> {
        Ok(())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receives_in_order_up_to_max_and_returns_empty_after_the_wait() {
        let queue = LocalJobQueue::new(8);
        let ids: Vec<JobId> = (0..3).map(|_| JobId::new()).collect();
        queue.enqueue(&ids).await.unwrap();
        let first = queue.receive(2, Duration::from_secs(1)).await.unwrap();
        assert_eq!(first.iter().map(|d| d.job_id).collect::<Vec<_>>(), ids[..2]);
        let rest = queue.receive(5, Duration::from_secs(1)).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert!(!rest[0].redelivered);
        let none = queue.receive(5, Duration::from_millis(10)).await.unwrap();
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_instead_of_growing() {
        let queue = LocalJobQueue::new(1);
        queue.enqueue(&[JobId::new()]).await.unwrap();
        assert!(queue.enqueue(&[JobId::new()]).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_jobs_arrive_after_their_delay() {
        let queue = LocalJobQueue::new(4);
        let id = JobId::new();
        queue
            .enqueue_after(id, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(
            queue
                .receive(1, Duration::from_secs(4))
                .await
                .unwrap()
                .is_empty()
        );
        let later = queue.receive(1, Duration::from_secs(2)).await.unwrap();
        assert_eq!(later[0].job_id, id);
    }
}
