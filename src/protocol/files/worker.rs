//! Disk work off the event loop: one helper thread per reactor, which reports back through a
//! [`mio::Waker`].
//!
//! Most file I/O is fast: a `write` of one read's worth of bytes lands in the page cache and
//! returns. Three calls are not, and on the reactor they stall *every* client: `fsync` of a
//! finished upload (491 ms for 1 GiB on the test machine, waiting for the disk itself), the rename
//! that publishes it followed by an `fsync` of the folder (so that a `DONE` survives a power loss),
//! and reading a large file back to hash it (a partial file resumed after a restart, or the first
//! `GET` of a file this server did not receive). nginx (`aio threads`) and libuv (its fs pool)
//! give such calls to helper threads; so do we, with one thread, which is enough for one disk.
//!
//! The conversation: the protocol sends a [`Job`] with a serial number down a channel and parks
//! the connection (its session waits in a named state, and its input is paused); the thread does
//! the job, sends the [`Outcome`] back on another channel and wakes the reactor's `poll` with the
//! waker. The reactor then asks the protocol which clients are ready (`Protocol::on_woken`, which
//! drains the channel here) and calls it back for each (`Protocol::on_resume`). A job holds its
//! own descriptor (a `dup` of the connection's), so nothing is shared between the threads but the
//! folder's descriptor, which is only read.
//!
//! Without a waker (the protocol tested with byte slices, or a reactor that has not attached one)
//! [`run`] does the same job at once, on the caller's thread: same code, same outcome.
//!
//! The thread ends when the service is dropped: [`DiskWorker`]'s drop closes the job channel,
//! the thread finishes the job in hand and returns, and the drop joins it.
//!
//! Next: `protocol/testing.rs`, which drives any protocol with byte slices.

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use log::warn;
use sha2::{Digest, Sha256};

use super::disk::{self, Folder, Identity};

/// Bytes read at a time when hashing.
const HASH_BUFFER_BYTES: usize = 256 * 1024;

/// Disk work for the helper thread.
#[derive(Debug)]
pub enum Job {
    /// Make `file` durable (`fsync`), rename `partial` to `name` without replacing anything, then
    /// make the folder durable; report the published file's identity (for the digest cache).
    Publish {
        /// The finished upload's file.
        file: File,
        /// Its partial name.
        partial: String,
        /// The name it gets.
        name: String,
    },
    /// Feed bytes `from..to` of `file` to `hasher`.
    Hash {
        /// The file to read.
        file: File,
        /// The digest so far (of bytes `..from`).
        hasher: Sha256,
        /// First byte to read.
        from: u64,
        /// One past the last.
        to: u64,
    },
}

/// What a [`Job`] came to.
#[derive(Debug)]
pub enum Outcome {
    /// The file has its name (and is on the disk), with this identity; or why not.
    Published(io::Result<Identity>),
    /// The digest including the bytes read; or why it could not be read.
    Hashed(io::Result<Sha256>),
}

/// Does `job` here and now.
pub fn run(job: Job, folder: &Folder) -> Outcome {
    match job {
        Job::Publish {
            file,
            partial,
            name,
        } => Outcome::Published((|| {
            file.sync_all()?;
            folder.publish(&partial, &name)?;
            folder.sync()?;
            Ok(disk::describe(&file)?.identity)
        })()),
        Job::Hash {
            file,
            mut hasher,
            from,
            to,
        } => {
            let mut buffer = vec![0; HASH_BUFFER_BYTES];
            Outcome::Hashed(
                disk::hash_range(&file, from, to, &mut hasher, &mut buffer).map(|()| hasher),
            )
        }
    }
}

/// The helper thread of one reactor, and the two channels to it.
#[derive(Debug)]
pub struct DiskWorker {
    jobs: Option<Sender<(u64, Job)>>,
    outcomes: Receiver<(u64, Outcome)>,
    thread: Option<JoinHandle<()>>,
}

impl DiskWorker {
    /// Starts the thread; it works on `folder` and wakes the reactor with `waker` after each job.
    pub fn start(folder: Arc<Folder>, waker: Arc<mio::Waker>) -> io::Result<DiskWorker> {
        let (jobs, inbox) = mpsc::channel::<(u64, Job)>();
        let (report, outcomes) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("echoloop-disk".into())
            .spawn(move || {
                for (serial, job) in inbox {
                    let outcome = run(job, &folder);
                    if report.send((serial, outcome)).is_err() {
                        return; // the service is gone
                    }
                    if let Err(e) = waker.wake() {
                        warn!("files: disk worker cannot wake the reactor: {e}");
                    }
                }
            })?;
        Ok(DiskWorker {
            jobs: Some(jobs),
            outcomes,
            thread: Some(thread),
        })
    }

    /// Hands `job` to the thread. `Err` gives it back if the thread is gone (it panicked).
    pub fn submit(&self, serial: u64, job: Job) -> Result<(), Job> {
        match &self.jobs {
            Some(jobs) => jobs.send((serial, job)).map_err(|e| e.0.1),
            None => Err(job),
        }
    }

    /// The outcomes reported since the last call.
    pub fn finished(&self) -> Vec<(u64, Outcome)> {
        self.outcomes.try_iter().collect()
    }
}

impl Drop for DiskWorker {
    fn drop(&mut self) {
        drop(self.jobs.take()); // the thread's loop ends
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The sha256 of bytes `..len` of `file`, read here: for files small enough to hash on the loop.
pub fn hash_now(file: &File, len: u64) -> io::Result<Sha256> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; HASH_BUFFER_BYTES.min(usize::try_from(len).unwrap_or(usize::MAX))];
    disk::hash_range(file, 0, len, &mut hasher, &mut buffer)?;
    Ok(hasher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_thread_does_jobs_wakes_the_loop_and_ends_with_the_service() {
        let dir = std::env::temp_dir().join(format!("echoloop-worker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(".partial"), b"abc").unwrap();
        let folder = Arc::new(Folder::open(&dir).unwrap());
        let mut poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(7)).unwrap());
        let worker = DiskWorker::start(Arc::clone(&folder), waker).unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .open(dir.join(".partial"))
            .unwrap();
        let hash_job = Job::Hash {
            file: file.try_clone().unwrap(),
            hasher: Sha256::new(),
            from: 0,
            to: 3,
        };
        worker.submit(1, hash_job).unwrap();
        let publish_job = Job::Publish {
            file,
            partial: ".partial".into(),
            name: "done".into(),
        };
        worker.submit(2, publish_job).unwrap();
        let mut got = Vec::new();
        let mut events = mio::Events::with_capacity(4);
        while got.len() < 2 {
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            assert!(!events.is_empty(), "woken");
            got.extend(worker.finished());
        }
        match &got[0] {
            (1, Outcome::Hashed(Ok(hasher))) => {
                assert_eq!(hasher.clone().finalize()[..], Sha256::digest(b"abc")[..])
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(got[1], (2, Outcome::Published(Ok(_)))));
        assert_eq!(std::fs::read(dir.join("done")).unwrap(), b"abc");
        drop(worker); // joins the thread: a hang here fails the test by timeout
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
