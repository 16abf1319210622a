//! Runs the real binary in a fresh temporary work directory per test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polars::prelude::*;

/// A fixed export time for deterministic fleets.
pub const AS_OF: &str = "2026-11-25T12:00:00Z";

pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `sentinel --workdir <dir>/out <args>`, with the current directory set to the temp dir.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sentinel"));
        cmd.current_dir(self.dir.path())
            .arg("--workdir")
            .arg(self.path("out"))
            .args(args);
        cmd
    }

    /// Runs and asserts success.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().expect("run sentinel");
        assert!(
            out.status.success(),
            "sentinel {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs and asserts the exit code; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.cmd(args).output().expect("run sentinel");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(code), "sentinel {args:?}: {stderr}");
        stderr
    }

    /// Recovers `input` at [`AS_OF`] with the built-in configuration.
    pub fn recover(&self, input: &Path) {
        self.ok(&[
            "--quiet",
            "recover",
            "--input",
            input.to_str().unwrap(),
            "--as-of",
            AS_OF,
        ]);
    }

    /// Generates a fleet of `devices` with `seed` at [`AS_OF`] into out/raw/telemetry.parquet.
    pub fn generate(&self, devices: u64, seed: u64) -> PathBuf {
        self.ok(&[
            "--quiet",
            "generate",
            "--devices",
            &devices.to_string(),
            "--seed",
            &seed.to_string(),
            "--as-of",
            AS_OF,
        ]);
        self.path("out/raw/telemetry.parquet")
    }

    /// `out/stage/<run_id>/<name>` of the run that finished last.
    pub fn stage(&self, name: &str) -> PathBuf {
        let db = duckdb::Connection::open(self.path("out/sentinel.duckdb")).expect("database");
        let run_id: String = db
            .query_row(
                "SELECT run_id FROM runs ORDER BY finished_at DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .expect("a run");
        self.path("out/stage").join(run_id).join(name)
    }

    /// Every file below the work directory, relative, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![self.root().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    found.push(p.strip_prefix(self.root()).unwrap().display().to_string());
                }
            }
        }
        found.sort();
        found
    }
}

pub fn read_parquet(path: &Path) -> DataFrame {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetReader::new(file).finish().expect("parquet")
}

pub fn as_of_us() -> i64 {
    sentinel::schema::parse_timestamp(AS_OF).unwrap()
}
