//! Acknowledged SQLite jobs survive a `kill -9`, even after another process has used the
//! database meanwhile (a `sqlite3` query, a backup script).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use inference_engine_core::job::JobId;
use inference_engine_core::ports::{JobFilter, JobStore};
use inference_engine_store::SqliteJobStore;
use inference_engine_testkit::EngineProcess;
use serde_json::json;
use tokio::sync::Mutex;

use crate::binary;

/// Sends large echo requests from `clients` tasks until `answered` holds `count` more job ids.
/// Large: so the WAL outgrows the background checkpoint's threshold within a second, which is
/// when the checkpoint code used to sync the database through a descriptor of its own.
async fn load(engine: &EngineProcess, answered: &Arc<Mutex<Vec<String>>>, count: usize) {
    let target = answered.lock().await.len() + count;
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::new();
    let payload = "x".repeat(200_000);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (client.clone(), engine.url("/predict"));
            let (answered, stop) = (Arc::clone(answered), Arc::clone(&stop));
            let body = json!({"model": "echo", "version": "v1", "data": payload});
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let response = client
                        .post(&url)
                        .header("x-api-key", "dev-key")
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                    let body: serde_json::Value = response.json().await.unwrap();
                    let mut answered = answered.lock().await;
                    answered.push(body["job_id"].as_str().unwrap().to_owned());
                    if answered.len() >= target {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("the load finishes")
            .unwrap();
    }
}

/// The POSIX locks process `pid` holds on the file with inode `inode` (`/proc/locks`).
fn posix_locks_held(pid: u32, inode: u64) -> usize {
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    locks
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // `1: POSIX  ADVISORY  READ 1234 fd:01:5678 128 128`
            fields.get(1) == Some(&"POSIX")
                && fields.get(4) == Some(&pid.to_string().as_str())
                && fields
                    .get(5)
                    .and_then(|device_inode| device_inode.rsplit(':').next())
                    == Some(inode.to_string().as_str())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_jobs_survive_kill_9_after_another_process_read_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobs.db");
    let mut engine = EngineProcess::start(
        binary(),
        &[("SQLITE_DB_PATH", db.to_str().unwrap())],
        dir.path(),
    )
    .unwrap();
    let answered: Arc<Mutex<Vec<String>>> = Arc::default();

    load(&engine, &answered, 400).await;
    // Every open SQLite connection holds a lock on the database file; closing any other
    // descriptor of that file in the process would have dropped them all.
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&db).unwrap());
    assert!(
        posix_locks_held(engine.pid(), inode) > 0,
        "the server holds no POSIX lock on jobs.db after the WAL was checkpointed under load"
    );

    // Another process opens the database, reads and closes it. Believing itself the last
    // connection if the server held no lock, it would delete the WAL the server writes into.
    {
        let external = SqliteJobStore::open(&db).await.unwrap();
        let filter = JobFilter {
            tenant: None,
            status: None,
            model: None,
            before: None,
            limit: 10,
        };
        assert!(!external.list(&filter).await.unwrap().is_empty());
        external.close().await;
    }
    assert!(
        db.with_file_name("jobs.db-wal").exists(),
        "the external reader deleted the WAL of a running server"
    );

    load(&engine, &answered, 400).await;
    engine.kill_hard().unwrap();

    let store = SqliteJobStore::open(&db).await.unwrap();
    let answered = answered.lock().await.clone();
    let mut missing = 0;
    for job_id in &answered {
        let id: JobId = job_id.parse().unwrap();
        if store.get(id).await.unwrap().is_none() {
            missing += 1;
        }
    }
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged jobs are missing after kill -9",
        answered.len()
    );
}

/// A tmpfs of `mib` MiB mounted on a fresh directory, unmounted on drop: a disk that really
/// fills. Mounting needs root, as CI runs; elsewhere the test says so rather than pass.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "this test mounts a {mib} MiB tmpfs to fill a real disk; it needs root (`mount` failed: {status})"
        );
        Self { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a ballast file until the file system is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let ballast = self.path().join("ballast");
        let mut file = std::fs::File::create(&ballast).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            if let Err(err) = file.write_all(&block) {
                assert_eq!(err.raw_os_error(), Some(28), "ENOSPC expected: {err}");
                break;
            }
        }
        // The partial last block too, byte by byte (a few at most are left).
        while file.write_all(&[0]).is_ok() {}
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Log lines of `engine` at `level` whose message contains `text`.
fn log_lines(engine: &EngineProcess, level: &str, text: &str) -> usize {
    engine
        .stdout_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| {
            entry["level"] == level
                && entry["message"]
                    .as_str()
                    .is_some_and(|message| message.contains(text))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_degrades_ready_logs_once_and_freeing_the_wal_bound_recovers() {
    const WAL_MAX_MB: u64 = 2;
    let disk = SmallDisk::mount(24);
    let db = disk.path().join("jobs.db");
    let engine = EngineProcess::start(
        binary(),
        &[
            ("SQLITE_DB_PATH", db.to_str().unwrap()),
            ("SQLITE_WAL_MAX_MB", &WAL_MAX_MB.to_string()),
        ],
        disk.path(),
    )
    .unwrap();
    let client = reqwest::Client::new();
    let payload = "x".repeat(20_000);
    let predict = || {
        client
            .post(engine.url("/predict"))
            .header("x-api-key", "dev-key")
            .json(&json!({"model": "echo", "version": "v1", "data": payload}))
            .send()
    };
    for _ in 0..20 {
        assert_eq!(predict().await.unwrap().status(), 200);
    }

    let ballast = disk.fill();
    // Writes fail once the space SQLite already holds is used up.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let response = predict().await.unwrap();
        if response.status() == 503 {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["code"], "unavailable", "{body}");
            break;
        }
        assert_eq!(response.status(), 200);
        assert!(
            std::time::Instant::now() < deadline,
            "the disk never filled"
        );
    }
    for _ in 0..200 {
        assert_eq!(predict().await.unwrap().status(), 503);
    }
    let ready = client.get(engine.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(
        ready["reason"], "the job store cannot write (disk full or read-only)",
        "{ready}"
    );
    assert_eq!(
        log_lines(&engine, "ERROR", ""),
        1,
        "one ERROR line for the incident, not one per request: {:#?}",
        engine.stdout_lines()
    );

    // Freeing the WAL's bound is enough, whatever the requests tried meanwhile.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&ballast)
        .unwrap();
    let size = file.metadata().unwrap().len();
    file.set_len(size.saturating_sub(WAL_MAX_MB << 20)).unwrap();
    drop(file);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while client
        .get(engine.url("/ready"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "/ready stayed degraded after {WAL_MAX_MB} MiB were freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..20 {
        assert_eq!(predict().await.unwrap().status(), 200);
    }
    assert_eq!(log_lines(&engine, "WARN", "the job store writes again"), 1);
}
