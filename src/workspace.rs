//! The only place that names files and folders on disk (SPEC section 7), and the atomic write that
//! every output goes through: a temporary file in the destination's folder, flushed to disk, then
//! renamed over the destination. A process killed at any moment leaves either the old file or the
//! new one, never a half-written one.

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The work directory and the paths inside it.
#[derive(Clone, Debug)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    pub fn new(root: impl Into<PathBuf>) -> Workspace {
        Workspace { root: root.into() }
    }

    /// `raw/telemetry.parquet`: what `generate` writes.
    pub fn raw_telemetry(&self) -> PathBuf {
        self.root.join("raw").join("telemetry.parquet")
    }

    /// `raw/telemetry.chaos.parquet`: what `chaos` writes.
    pub fn chaos_telemetry(&self) -> PathBuf {
        self.root.join("raw").join("telemetry.chaos.parquet")
    }

    /// `raw/chaos_log.parquet`: the list of every change `chaos` made.
    pub fn chaos_log(&self) -> PathBuf {
        self.root.join("raw").join("chaos_log.parquet")
    }

    /// `stage/`: one folder per run.
    pub fn stage_root(&self) -> PathBuf {
        self.root.join("stage")
    }

    /// `stage/<run_id>/`: the stage files of one run. A published run's files never change.
    pub fn stage_dir(&self, run_id: &str) -> PathBuf {
        self.stage_root().join(run_id)
    }

    /// `stage/<run_id>/clean.parquet`: the run's clean reports.
    pub fn clean(&self, run_id: &str) -> PathBuf {
        self.stage_dir(run_id).join(STAGE_FILES[0])
    }

    /// `stage/<run_id>/triage.parquet`: the run's quarantined reports with their reasons.
    pub fn triage(&self, run_id: &str) -> PathBuf {
        self.stage_dir(run_id).join(STAGE_FILES[1])
    }

    /// `stage/<run_id>/device_state.parquet`: one row per device with a clean report.
    pub fn device_state(&self, run_id: &str) -> PathBuf {
        self.stage_dir(run_id).join(STAGE_FILES[2])
    }

    /// `stage/<run_id>/recovery_plan.csv`: devices that need an action other than NONE or WAIT
    /// (of a sharded run: every shard's, written by `merge`).
    pub fn recovery_plan(&self, run_id: &str) -> PathBuf {
        self.stage_dir(run_id).join(RECOVERY_PLAN)
    }

    /// `stage/<run_id>/shard=<k>/`: one shard's stage files, recovery plan and manifest
    /// (`recover --shard K/N`). The run's data views read the shards' files once merged.
    pub fn shard_dir(&self, run_id: &str, k: u32) -> PathBuf {
        self.stage_dir(run_id).join(format!("shard={k}"))
    }

    /// The stage file `name` of a published run: the run folder's own, or, for a sharded run
    /// of `shards` shards, every shard's in shard order.
    pub fn run_files(&self, run_id: &str, name: &str, shards: Option<u32>) -> Vec<PathBuf> {
        match shards {
            Some(n) => (0..n)
                .map(|k| self.shard_dir(run_id, k).join(name))
                .collect(),
            None => vec![self.stage_dir(run_id).join(name)],
        }
    }

    /// `partition/`: where `partition` writes its shards unless told otherwise.
    pub fn partition_dir(&self) -> PathBuf {
        self.root.join("partition")
    }

    /// `dataset/`: every published run's stage files again (hard links, not copies) as a
    /// hive-partitioned Parquet dataset, one folder per table:
    /// `dataset/<table>/run_id=<id>/shard=<k>/part-0.parquet`.
    pub fn dataset_root(&self) -> PathBuf {
        self.root.join("dataset")
    }

    /// Holds one shard of a run against a second process recovering the same shard, and cleans
    /// what a killed one left in the shard's folder (temporary files; a half-done publication is
    /// finished). Fails at once when another process holds it.
    pub fn shard_lock(
        &self,
        run_id: &str,
        shard: crate::recover::shard::Shard,
    ) -> Result<ReadersLock> {
        let dir = self.shard_dir(run_id, shard.index);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = self
            .stage_dir(run_id)
            .join(format!(".shard={}.lock", shard.index));
        let file = open_lock_file(&path).with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => bail!(
                "shard {shard} of run {run_id} is being recovered by another process (lock file {})",
                path.display()
            ),
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        tidy(&dir);
        Ok(ReadersLock { _file: file })
    }

    /// Takes the work directory shared with other shard recovers (`recover --shard`), so that
    /// shards run side by side while no writing command (which holds it whole) runs. Fails at
    /// once when a writing command holds it.
    pub fn lock_shared(&self) -> Result<ReadersLock> {
        fs::create_dir_all(&self.root)
            .with_context(|| format!("creating the work directory {}", self.root.display()))?;
        let path = self.lock_file();
        loop {
            let file = open_lock_file(&path)
                .with_context(|| format!("opening the lock file {}", path.display()))?;
            match file.try_lock_shared() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => bail!(
                    "work directory {} is in use by another sentinel process (lock file {}); \
                     wait for it to finish or use another --workdir",
                    self.root.display(),
                    path.display()
                ),
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()));
                }
            }
            if same_file(&file, &path) {
                return Ok(ReadersLock { _file: file });
            }
        }
    }

    /// `stage/.readers.lock`: shared by every session that reads the runs' stage files, taken
    /// whole by `prune` before it deletes any (see [`Workspace::read_lock`]).
    fn readers_lock_file(&self) -> PathBuf {
        self.stage_root().join(".readers.lock")
    }

    /// Holds the runs' stage files for reading: `prune` waits for every holder before deleting
    /// the files of the runs it removed. Without a stage folder there is nothing to hold; in a
    /// work directory this process may not write (an analyst's read-only mount), the lock is taken
    /// on the existing file, or not at all when there is none.
    pub fn read_lock(&self) -> Result<Option<ReadersLock>> {
        if !self.stage_root().is_dir() {
            return Ok(None);
        }
        let path = self.readers_lock_file();
        let Ok(file) = open_lock_file(&path).or_else(|_| File::open(&path)) else {
            return Ok(None);
        };
        file.lock_shared()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(Some(ReadersLock { _file: file }))
    }

    /// Waits until no session reads stage files any more and keeps new ones out while held.
    pub fn readers_exclusive(&self) -> Result<ReadersLock> {
        fs::create_dir_all(self.stage_root())
            .with_context(|| format!("creating {}", self.stage_root().display()))?;
        let path = self.readers_lock_file();
        let file = open_lock_file(&path).with_context(|| format!("opening {}", path.display()))?;
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(ReadersLock { _file: file })
    }

    /// `reports/`: one folder per reported run.
    pub fn reports_root(&self) -> PathBuf {
        self.root.join("reports")
    }

    /// `reports/<run_id>/`: the charts, report.html, report.md and summary.json of one run.
    pub fn report_dir(&self, run_id: &str) -> PathBuf {
        self.reports_root().join(run_id)
    }

    /// `sentinel.duckdb`: the database of every run.
    pub fn database(&self) -> PathBuf {
        self.root.join("sentinel.duckdb")
    }

    /// A fresh temporary folder for recover's buckets, `.buckets.<random>` in the work directory;
    /// removed when dropped (or, after a kill, by the next writer's sweep).
    pub fn bucket_dir(&self) -> Result<tempfile::TempDir> {
        fs::create_dir_all(&self.root)
            .with_context(|| format!("creating the work directory {}", self.root.display()))?;
        Ok(tempfile::Builder::new()
            .prefix(".buckets.")
            .tempdir_in(&self.root)?)
    }

    /// `sentinel.lock`: held by the one command that writes into the work directory.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("sentinel.lock")
    }

    /// Takes the work directory for a writing command, or fails at once naming the process that
    /// holds it. The lock is the operating system's (flock), so a killed holder releases it; the
    /// file only carries the holder's process id for the message. Leftovers of a killed writer
    /// (temporary files and folders) are removed once the lock is held, since no writer can be
    /// using them then.
    pub fn lock(&self) -> Result<WorkdirLock> {
        let created_root = !self.root.exists();
        fs::create_dir_all(&self.root)
            .with_context(|| format!("creating the work directory {}", self.root.display()))?;
        let path = self.lock_file();
        loop {
            let mut file = open_lock_file(&path)
                .with_context(|| format!("opening the lock file {}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    bail!(
                        "work directory {} is in use by another sentinel process (pid {}; lock file {}); \
                         wait for it to finish or use another --workdir",
                        self.root.display(),
                        if holder.is_empty() { "unknown" } else { holder },
                        path.display()
                    );
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()));
                }
            }
            // The previous holder may have removed the file between our open and our lock: then
            // we hold a lock on a file nobody else can see. Start over on the current one.
            if !same_file(&file, &path) {
                continue;
            }
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .with_context(|| format!("writing the lock file {}", path.display()))?;
            self.sweep();
            return Ok(WorkdirLock {
                file,
                path,
                root: created_root.then(|| self.root.clone()),
            });
        }
    }

    /// Repairs and removes what a killed writer left: first a half-done publication of several
    /// files ([`commit_all`]) is finished, and a report folder moved aside for a new one is put
    /// back when the new one never arrived; then these are removed: `.*.tmp` files in raw/,
    /// stage/ and stage/<run_id>/, recover's bucket folders (`.buckets.*`), run folders a killed
    /// `prune` was deleting (`stage/.pruned.*`), and the staging folders (`.<run_id>.*`,
    /// `.old.*`) in reports/.
    fn sweep(&self) {
        let run_dirs: Vec<PathBuf> = fs::read_dir(self.stage_root())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.path())
            .collect();
        let shard_dirs: Vec<PathBuf> = run_dirs
            .iter()
            .flat_map(|d| crate::recover::shard::shard_folders(d))
            .map(|(_, d)| d)
            .collect();
        let dirs: Vec<PathBuf> = [self.root.join("raw"), self.stage_root()]
            .into_iter()
            .chain(run_dirs)
            .chain(shard_dirs)
            .collect();
        for dir in dirs {
            tidy(&dir);
        }
        for entry in fs::read_dir(&self.root).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(".buckets.") {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        for entry in fs::read_dir(self.stage_root())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(".pruned.") {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let reports = self.reports_root();
        for entry in fs::read_dir(&reports).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            if let Some(run_id) = aside_run_id(&name) {
                let dest = self.report_dir(run_id);
                let kept = entry.path().join(ASIDE_REPORT);
                if !dest.exists() && kept.is_dir() && fs::rename(&kept, &dest).is_err() {
                    continue;
                }
            }
            let _ = fs::remove_dir_all(entry.path());
        }
    }

    /// A fresh folder `reports/.old.<run_id>.<random>/` to move the earlier report of `run_id`
    /// into while its replacement is renamed into place; the report goes at [`ASIDE_REPORT`]
    /// inside it. If the process dies in between, the next writer's sweep puts it back.
    pub fn report_aside(&self, run_id: &str) -> Result<PathBuf> {
        let reports = self.reports_root();
        Ok(tempfile::Builder::new()
            .prefix(&format!(".old.{run_id}."))
            .tempdir_in(&reports)
            .with_context(|| format!("creating a temporary folder in {}", reports.display()))?
            .keep())
    }
}

/// The stage files of a run (or of one shard), in the order recover writes them.
pub const STAGE_FILES: [&str; 3] = ["clean.parquet", "triage.parquet", "device_state.parquet"];
/// The recovery plan's file name.
pub const RECOVERY_PLAN: &str = "recovery_plan.csv";

/// Finishes a half-done publication in `dir` and removes the temporary files a killed writer
/// left there.
fn tidy(dir: &Path) {
    let _ = roll_forward(dir);
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Renames a complete staging folder into place as `dest` (a run's report). An earlier folder there
/// (of the same run: the same data, so the same content) is first moved into `aside` (from [`Workspace::report_aside`],
/// where a killed process's next sweep finds it and puts it back) and removed after.
pub fn replace_folder(staging: tempfile::TempDir, dest: &Path, aside: PathBuf) -> Result<()> {
    let staged: PathBuf = staging.keep();
    let parent = dest.parent().unwrap_or(Path::new("."));
    let old = if dest.exists() {
        let kept = aside.join(ASIDE_REPORT);
        fs::rename(dest, &kept)
            .with_context(|| format!("moving the previous {} aside", dest.display()))?;
        Some(kept)
    } else {
        None
    };
    if let Err(e) = fs::rename(&staged, dest) {
        let _ = fs::remove_dir_all(&staged);
        if let Some(old) = &old {
            let _ = fs::rename(old, dest);
        }
        let _ = fs::remove_dir_all(&aside);
        return Err(e).with_context(|| format!("renaming into place {}", dest.display()));
    }
    if let Ok(d) = fs::File::open(parent) {
        let _ = d.sync_all();
    }
    let _ = fs::remove_dir_all(&aside);
    Ok(())
}

/// Where, inside a folder from [`Workspace::report_aside`], the earlier report waits.
pub const ASIDE_REPORT: &str = "report";

/// The run id in the name of a folder from [`Workspace::report_aside`] (`.old.<run_id>.<random>`).
fn aside_run_id(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(".old.")?;
    let (run_id, _) = rest.rsplit_once('.')?;
    (!run_id.is_empty() && !run_id.contains(['/', '.'])).then_some(run_id)
}

/// The journal of a publication of several files in one folder: one `temporary<TAB>destination`
/// line per file, written once every file is complete and flushed.
const JOURNAL: &str = ".publish.journal";

/// Finishes a publication that a killed process left half done in `dir`: every temporary file
/// the journal names that still exists is renamed to its destination. Safe to repeat.
fn roll_forward(dir: &Path) -> Result<()> {
    let journal = dir.join(JOURNAL);
    let Ok(text) = fs::read_to_string(&journal) else {
        return Ok(());
    };
    // A journal is written whole before any rename (temporary name, then rename), so one that
    // exists lists every file of the publication.
    for line in text.lines() {
        if let Some((tmp, dest)) = line.split_once('\t')
            && Path::new(tmp).exists()
        {
            fs::rename(tmp, dest)
                .with_context(|| format!("finishing the publication of {dest}"))?;
        }
    }
    sync_dir(dir);
    fs::remove_file(&journal).with_context(|| format!("removing {}", journal.display()))?;
    Ok(())
}

fn sync_dir(dir: &Path) {
    // Persists renames in the folder; not every file system supports syncing a folder.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Publishes several files of one folder together: after a crash at any moment, either none of
/// them replaced its destination or, once the next writer has taken the lock, all of them have.
/// Each file is flushed, a journal listing all of them is written, the files are renamed, and the
/// journal is removed; a writer that finds a journal finishes its renames first
/// ([`Workspace::lock`] does, and so does the next `commit_all` in the same folder).
pub fn commit_all(files: Vec<AtomicFile>) -> Result<()> {
    let Some(first) = files.first() else {
        return Ok(());
    };
    let dir = first
        .dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    roll_forward(&dir)?;
    let mut journal = String::new();
    let mut staged = Vec::with_capacity(files.len());
    for mut file in files {
        let tmp = file.tmp.take().expect("not committed");
        tmp.as_file()
            .sync_all()
            .with_context(|| format!("flushing {}", file.dest.display()))?;
        let tmp = tmp
            .into_temp_path()
            .keep()
            .with_context(|| format!("keeping the temporary file of {}", file.dest.display()))?;
        let (tmp, dest) = (std::path::absolute(&tmp)?, std::path::absolute(&file.dest)?);
        journal.push_str(&format!("{}\t{}\n", tmp.display(), dest.display()));
        staged.push((tmp, dest));
    }
    let journal_file = AtomicFile::create(&dir.join(JOURNAL))?;
    journal_file
        .file()
        .write_all(journal.as_bytes())
        .context("writing the publication journal")?;
    journal_file.commit()?;
    for (tmp, dest) in &staged {
        fs::rename(tmp, dest).with_context(|| format!("renaming into place {}", dest.display()))?;
    }
    for (_, dest) in &staged {
        if let Some(parent) = dest.parent() {
            sync_dir(parent);
        }
    }
    fs::remove_file(dir.join(JOURNAL)).context("removing the publication journal")?;
    Ok(())
}

/// Opens (creating when missing, never truncating) a file that carries an operating-system lock.
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// A shared or exclusive hold on the runs' stage files; released when dropped.
pub struct ReadersLock {
    _file: File,
}

/// Whether an open file is still the one at `path`.
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The work directory, held by this process until dropped. Dropping removes the lock file, and the
/// work directory itself when this command created it and left nothing in it (a command that
/// failed on bad input leaves no trace).
pub struct WorkdirLock {
    file: File,
    path: PathBuf,
    root: Option<PathBuf>,
}

impl Drop for WorkdirLock {
    fn drop(&mut self) {
        // Removed while still locked, so a waiting process cannot lock the old file unseen (it
        // checks `same_file`).
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
        if let Some(root) = &self.root {
            let _ = fs::remove_dir(root);
        }
    }
}

/// A file being written under a temporary name next to its destination. `commit` flushes it to
/// disk and renames it into place; dropping it without `commit` deletes the temporary file.
pub struct AtomicFile {
    dest: PathBuf,
    tmp: Option<tempfile::NamedTempFile>,
}

impl AtomicFile {
    /// Starts writing `dest`, creating its folder when missing.
    pub fn create(dest: &Path) -> Result<AtomicFile> {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir)
            .with_context(|| format!("creating folder {} for {}", dir.display(), dest.display()))?;
        let name = dest
            .file_name()
            .with_context(|| format!("{} is not a file path", dest.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".tmp")
            .tempfile_in(&dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        Ok(AtomicFile {
            dest: dest.to_path_buf(),
            tmp: Some(tmp),
        })
    }

    /// The temporary file itself, for writers that do their own buffering (the Parquet writer
    /// writes whole compressed pages).
    pub fn file(&self) -> &File {
        self.tmp.as_ref().expect("not committed").as_file()
    }

    /// Asks the kernel to start writing what has been written so far to disk, without waiting
    /// for it. A file appended part by part while the CPU works on the next part is then mostly
    /// on disk by the time `commit` flushes it, instead of all of it being written during that
    /// flush, when the run waits (at 1.14M rows, 0.26 s of recover's serial end). Linux only;
    /// a no-op elsewhere, and an error here changes nothing (the flush at commit still runs).
    pub fn start_writeback(&self) {
        #[cfg(target_os = "linux")]
        #[allow(unsafe_code)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: sync_file_range only reads the descriptor, which `self` keeps open; offset
            // 0 and length 0 mean the whole file.
            unsafe {
                libc::sync_file_range(self.file().as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
    }

    /// The temporary file's path (to read back what was written before the commit).
    pub fn temp_path(&self) -> Result<PathBuf> {
        Ok(self
            .tmp
            .as_ref()
            .expect("not committed")
            .path()
            .to_path_buf())
    }

    /// The destination this file will become.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flushes the file to disk and renames it over the destination.
    pub fn commit(mut self) -> Result<()> {
        let tmp = self.tmp.take().expect("committed once");
        tmp.as_file()
            .sync_all()
            .with_context(|| format!("flushing {}", self.dest.display()))?;
        tmp.persist(&self.dest)
            .with_context(|| format!("renaming into place {}", self.dest.display()))?;
        if let Some(dir) = self.dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(dir);
        }
        Ok(())
    }
}
