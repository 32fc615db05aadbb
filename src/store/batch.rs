//! Group commit: writes that arrive together are made in one go.
//!
//! Under load many handlers write at once: a new tip each, or, on PostgreSQL, the record
//! that an update is being handled. One commit each holds SQLite's one writer for several
//! round trips to its connection thread, or waits for PostgreSQL's WAL flush, per write
//! (BENCHMARKS.md). A writer task takes everything waiting (up to a bound) and writes it with
//! multi-row statements in one transaction; a write alone still goes at once, and under a
//! burst the next group gathers while one commits.
//!
//! Such statements run with `.persistent(false)`: each group size is different SQL, and sqlx
//! would keep every one prepared, per connection (statements whose text lists ids held 4 MiB
//! of SQLite's memory in a 46,000-group broadcast; heaptrack, BENCHMARKS.md).

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::Backend;

/// Where a job's answer goes.
pub(crate) type Reply<R> = oneshot::Sender<anyhow::Result<R>>;

/// A job and where its answer goes.
pub(crate) type Job<J, R> = (J, Reply<R>);

/// Sends `job` to the writer behind `jobs` and waits for its answer.
pub(crate) async fn submit<J, R>(jobs: &mpsc::UnboundedSender<Job<J, R>>, job: J, what: &str) -> anyhow::Result<R> {
    let (reply, answer) = oneshot::channel();
    if jobs.send((job, reply)).is_err() {
        anyhow::bail!("the {what} writer has stopped");
    }
    answer.await.map_err(|_| anyhow::anyhow!("the {what} writer stopped before answering"))?
}

/// Takes the jobs waiting (up to `max`), writes them with `write` (one answer a job, in
/// order), and answers each. If a group fails, each of its jobs is written alone, so one bad
/// job does not fail the others. Ends when every sender is dropped (the store is gone).
pub(crate) async fn run<J, R, W>(mut jobs: mpsc::UnboundedReceiver<Job<J, R>>, max: usize, what: &str, write: W)
where
    W: for<'a> Fn(&'a [J]) -> BoxFuture<'a, anyhow::Result<Vec<R>>>,
{
    let mut batch = Vec::with_capacity(max);
    while jobs.recv_many(&mut batch, max).await > 0 {
        let (work, replies): (Vec<J>, Vec<Reply<R>>) = batch.drain(..).unzip();
        match write(&work).await {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) if work.len() == 1 => {
                let _ = replies.into_iter().next().expect("one job").send(Err(e));
            }
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    jobs = work.len(),
                    "a group of {what} writes failed; writing each alone"
                );
                for (job, reply) in work.iter().zip(replies) {
                    let one = write(std::slice::from_ref(job)).await;
                    let _ = reply.send(one.map(|mut answers| answers.pop().expect("one answer a job")));
                }
            }
        }
    }
}

/// `($1, $2, …), ($k, …)`: `rows` tuples of `cols` placeholders, bound in order. On SQLite
/// they are plain `?`: SQLite finds a numbered parameter's name by scanning a list, which
/// makes a statement with hundreds of `$N` cost time quadratic in their number.
pub(crate) fn placeholders(backend: Backend, rows: usize, cols: usize) -> String {
    placeholders_from(backend, rows, cols, 1)
}

/// Parameter `n` of a statement that also has [`placeholders`]: `$n` on PostgreSQL, `?` on
/// SQLite, where sqlx binds plain `?` in order and a `$n` among them would take the wrong value.
pub(crate) fn param(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => "?".to_string(),
        Backend::Postgres => format!("${n}"),
    }
}

/// [`placeholders`], numbered from `$first` on PostgreSQL (after other parameters).
pub(crate) fn placeholders_from(backend: Backend, rows: usize, cols: usize, first: usize) -> String {
    let mut sql = String::with_capacity(rows * cols * 6);
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => sql.push_str(&format!("${}", first + r * cols + c)),
            }
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_on_postgresql_and_plain_on_sqlite() {
        assert_eq!(placeholders(Backend::Postgres, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders_from(Backend::Postgres, 1, 2, 3), "($3, $4)");
        assert_eq!(placeholders(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!((param(Backend::Postgres, 2), param(Backend::Sqlite, 2)), ("$2".to_string(), "?".to_string()));
    }

    #[tokio::test]
    async fn a_failed_group_is_written_job_by_job_and_only_the_bad_job_fails() {
        let (tx, rx) = mpsc::unbounded_channel::<Job<i64, i64>>();
        // Fails any group that holds a negative number; doubles otherwise.
        let writer = tokio::spawn(run(rx, 8, "test", |jobs: &[i64]| {
            Box::pin(async move {
                anyhow::ensure!(jobs.iter().all(|j| *j >= 0), "a negative job");
                Ok(jobs.iter().map(|j| j * 2).collect())
            })
        }));
        let mut answers = Vec::new();
        for job in [1, -1, 3] {
            let (reply, answer) = oneshot::channel();
            tx.send((job, reply)).unwrap();
            answers.push(answer);
        }
        let mut got = Vec::new();
        for answer in answers {
            got.push(answer.await.unwrap().map_err(|e| e.to_string()));
        }
        assert_eq!(got, [Ok(2), Err("a negative job".to_string()), Ok(6)]);
        drop(tx);
        writer.await.unwrap();
    }
}
