//! The only place that names files and folders on disk (SPEC section 7), and the atomic write that
//! every output goes through: a temporary file in the destination's folder, flushed to disk, then
//! renamed over the destination. A process killed at any moment leaves either the old file or the
//! new one, never a half-written one.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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

    /// `stage/clean.parquet`: the clean reports of the last recover.
    pub fn clean(&self) -> PathBuf {
        self.root.join("stage").join("clean.parquet")
    }

    /// `stage/triage.parquet`: the quarantined reports with their reasons.
    pub fn triage(&self) -> PathBuf {
        self.root.join("stage").join("triage.parquet")
    }

    /// `stage/device_state.parquet`: one row per device with a clean report.
    pub fn device_state(&self) -> PathBuf {
        self.root.join("stage").join("device_state.parquet")
    }

    /// `stage/recovery_plan.csv`: devices that need an action other than NONE or WAIT.
    pub fn recovery_plan(&self) -> PathBuf {
        self.root.join("stage").join("recovery_plan.csv")
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

    /// The destination this file will become.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// The temporary file's path (to hand to a reader before the file is committed).
    pub fn temp_path(&self) -> &Path {
        self.tmp.as_ref().expect("not committed").path()
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
            // Persist the rename itself; not every file system supports syncing a folder.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}
