//! Scale-out by device: `partition`, `recover --shard K/N` and `merge`.
//!
//! Every rule of recover relates rows of one device only (DUPLICATE, CONFLICT, the latest report,
//! blind devices, priority), so a run splits cleanly by device id. A row's shard among N is
//!
//! ```text
//! shard = FNV-1a-64(UTF-8 bytes of the trimmed device_id) mod N    when the trimmed id is valid
//!       = 0                                                        otherwise (no usable id)
//! ```
//!
//! (FNV-1a 64: offset basis 0xcbf29ce484222325, prime 0x100000001b3, xor then multiply per byte.)
//! The rule is stable across versions and machines and easy to reproduce in any language; rows
//! that relate to each other always share a shard, so every shard is recovered on its own, on
//! any machine, in any order, and retried at will. The shards' results add up to the plain run's.
//!
//! ```text
//! partition --shards N ──> <out>/_partition.json + shard=K/part-00000.parquet   (K in 0..N)
//! recover --shard K/N  ──> stage/<run_id>/shard=K/{clean,triage,device_state}.parquet,
//!                          recovery_plan.csv, manifest.json                      (any order)
//! merge                ──> checks the N manifests, stage/<run_id>/recovery_plan.csv, and the
//!                          run in sentinel.duckdb in one transaction (views over the shards)
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::recover::ingest::{self, Format, Input};
use crate::recover::{add, cents};
use crate::schema;
use crate::warehouse::{self, RunRecord};
use crate::workspace::{AtomicFile, Workspace};

/// FNV-1a, 64 bits, of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The shard, among `count`, of a row with this raw device id (see the module's rule).
pub fn shard_of(raw_id: Option<&str>, count: u32) -> u32 {
    match raw_id.map(str::trim) {
        Some(id) if schema::is_valid_id(id) => (fnv1a(id.as_bytes()) % u64::from(count)) as u32,
        _ => 0,
    }
}

/// One shard of a run: `K/N`, 0 ≤ K < N.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let bad = || format!("{text:?} is not a shard K/N with 0 <= K < N (for example 3/8)");
        let (k, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = k.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard of every row of `df` (its `device_id` column) among `count`.
pub fn shards_of(df: &polars::prelude::DataFrame, count: u32) -> Result<Vec<u32>> {
    let ids = df.column(schema::DEVICE_ID)?.str()?;
    Ok(ids.iter().map(|id| shard_of(id, count)).collect())
}

/// The file at the top of a partitioned dataset, describing it.
pub const PARTITION_MANIFEST: &str = "_partition.json";
/// Written by `recover --shard` next to the shard's stage files, last.
pub const SHARD_MANIFEST: &str = "manifest.json";
const PARTITION_FORMAT: &str = "sentinel-partition/1";
/// The `format` of this version's shard manifests.
pub const SHARD_FORMAT: &str = "sentinel-shard/1";

/// `_partition.json`: what `partition` split, how, and how many rows went where.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartitionManifest {
    pub format: String,
    pub shards: u32,
    /// The rule, in words (see the module documentation).
    pub hash: String,
    /// The inputs as given, in run order: what the run ledger records for a run of the shards.
    pub inputs: Vec<String>,
    pub skipped: Vec<String>,
    /// The inputs' content fingerprint, the part of the run id that names the data: a run of the
    /// shards has the run id a plain recover of the inputs has.
    pub input_fingerprint: String,
    /// The as-of recover uses for these shards unless `--as-of` says otherwise.
    pub as_of_us: i64,
    pub as_of: String,
    pub rows_in: u64,
    pub rows_per_shard: Vec<u64>,
}

/// What `partition` is asked to do.
#[derive(Clone, Debug)]
pub struct PartitionOptions {
    pub inputs: Vec<PathBuf>,
    pub shards: u32,
    pub out: PathBuf,
    pub as_of_us: i64,
    pub skip_unknown: bool,
}

/// What `partition` did.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionSummary {
    pub out: String,
    pub shards: u32,
    pub inputs: Vec<String>,
    pub skipped: Vec<String>,
    pub rows_in: u64,
    pub rows_per_shard: Vec<u64>,
    pub seconds: f64,
}

/// The name of shard `k`'s folder: hive-style, so that the dataset reads as partitioned.
pub fn shard_folder(k: u32) -> String {
    format!("shard={k}")
}

/// Splits the inputs into `shards` Parquet shards under `out` (see the module documentation).
/// The dataset is built in a hidden folder beside `out` and renamed into place whole; an
/// earlier partition at `out` is replaced, anything else there is refused.
pub fn partition(opts: &PartitionOptions) -> Result<PartitionSummary> {
    let clock = Instant::now();
    let ingest::Resolved { inputs, skipped } = ingest::resolve(&opts.inputs, opts.skip_unknown)?;
    if let Some(i) = inputs.iter().find(|i| i.format == Format::Partition) {
        bail!("{} is already partitioned", i.path.display());
    }
    let out = &opts.out;
    if out.exists() && !out.join(PARTITION_MANIFEST).is_file() {
        let empty = fs::read_dir(out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            bail!(
                "{} exists and is not a partition written by `sentinel partition`: \
                 choose another --out",
                out.display()
            );
        }
    }
    let rows = inputs
        .iter()
        .map(ingest::parquet_rows)
        .collect::<Result<Vec<_>>>()?;
    let fingerprint = content_fingerprint(&inputs)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = out
        .file_name()
        .with_context(|| format!("{} is not a folder path", out.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temporary folder in {}", parent.display()))?;
    let parts = (0..opts.shards)
        .map(|k| {
            let dir = tmp.path().join(shard_folder(k));
            fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(dir.join("part-00000.parquet"))
        })
        .collect::<Result<Vec<_>>>()?;
    let count = opts.shards;
    let key = move |df: &polars::prelude::DataFrame, _: u64| -> Result<Vec<Option<u32>>> {
        Ok(shards_of(df, count)?.into_iter().map(Some).collect())
    };
    let per_shard =
        ingest::split::<()>(&inputs, &rows, &key, ingest::Parts::Files(&parts), None)?.rows;
    let rows_in = per_shard.iter().sum();
    let manifest = PartitionManifest {
        format: PARTITION_FORMAT.into(),
        shards: opts.shards,
        hash: "fnv1a64(utf8(trim(device_id))) mod shards when the trimmed id is a valid \
               device id, else shard 0"
            .into(),
        inputs: inputs
            .iter()
            .map(|i| i.path.display().to_string())
            .collect(),
        skipped: skipped.iter().map(|p| p.display().to_string()).collect(),
        input_fingerprint: fingerprint,
        as_of_us: opts.as_of_us,
        as_of: schema::format_timestamp(opts.as_of_us),
        rows_in,
        rows_per_shard: per_shard.clone(),
    };
    json_file(&tmp.path().join(PARTITION_MANIFEST), &manifest)?.commit()?;
    for part in &parts {
        File::open(part)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("flushing {}", part.display()))?;
    }
    // Into place: an earlier partition goes aside first, then away.
    let built = tmp.keep();
    if out.exists() {
        let aside = tempfile::Builder::new()
            .prefix(&format!(".{name}.old."))
            .tempdir_in(&parent)?
            .keep();
        fs::rename(out, aside.join("old"))
            .with_context(|| format!("moving the earlier {} aside", out.display()))?;
        fs::rename(&built, out)
            .with_context(|| format!("renaming into place {}", out.display()))?;
        fs::remove_dir_all(&aside).ok();
    } else {
        fs::rename(&built, out)
            .with_context(|| format!("renaming into place {}", out.display()))?;
    }
    Ok(PartitionSummary {
        out: out.display().to_string(),
        shards: opts.shards,
        inputs: manifest.inputs,
        skipped: manifest.skipped,
        rows_in,
        rows_per_shard: per_shard,
        seconds: clock.elapsed().as_secs_f64(),
    })
}

/// The inputs' content fingerprint: BLAKE3 over each file's BLAKE3, in run order.
pub fn content_fingerprint(inputs: &[Input]) -> Result<String> {
    let mut all = blake3::Hasher::new();
    for input in inputs {
        all.update(hash_file(&input.path)?.as_bytes());
    }
    Ok(all.finalize().to_hex().to_string())
}

/// Bytes of a file mapped at a time by [`hash_file`].
const HASH_WINDOW: u64 = 64 << 20;

/// BLAKE3 of a file's bytes, hashed on every core a window at a time: each [`HASH_WINDOW`] of
/// the file is memory-mapped (no copy into a buffer) and unmapped before the next, so a large
/// input never adds more than a window to the peak RSS (mapping the whole 6.7 GB input of a
/// 100M-device run counted all of it). Reading the 672 MB input of a 10M-device run into a buffer
/// and hashing it on one thread took 0.25-0.32 s; this takes 0.13 s. A file that is not a regular
/// file is read as a stream.
#[allow(unsafe_code)]
fn hash_file(path: &Path) -> Result<blake3::Hash> {
    let reading = || format!("reading {}", path.display());
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let meta = file.metadata().with_context(reading)?;
    let mut hasher = blake3::Hasher::new();
    if !meta.is_file() {
        std::io::copy(&mut file, &mut hasher).with_context(reading)?;
        return Ok(hasher.finalize());
    }
    let mut offset = 0;
    while offset < meta.len() {
        let window = HASH_WINDOW.min(meta.len() - offset);
        // SAFETY: the map is read-only and dropped before the next one is made. As for `b3sum`,
        // another process must not truncate the file while it is hashed (inputs that change
        // under a run are outside the contract).
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(window as usize)
                .map(&file)
        }
        .with_context(reading)?;
        hasher.update_rayon(&map);
        offset += window;
    }
    Ok(hasher.finalize())
}

/// `value` as pretty JSON in an atomic file at `dest`, not yet committed (a shard's manifest is
/// committed with its stage files).
pub fn json_file<T: Serialize>(dest: &Path, value: &T) -> Result<AtomicFile> {
    let file = AtomicFile::create(dest)?;
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    file.file()
        .write_all(text.as_bytes())
        .with_context(|| format!("writing {}", dest.display()))?;
    Ok(file)
}

/// The partitioned dataset at `path`, when it is one (a folder holding `_partition.json`).
pub fn open_partition(path: &Path) -> Result<Option<PartitionManifest>> {
    let file = path.join(PARTITION_MANIFEST);
    if !path.is_dir() || !file.is_file() {
        return Ok(None);
    }
    let text = fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let manifest: PartitionManifest = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a partition manifest", file.display()))?;
    ensure!(
        manifest.format == PARTITION_FORMAT
            && manifest.shards >= 1
            && manifest.rows_per_shard.len() == manifest.shards as usize,
        "{}: not a partition manifest of this version ({PARTITION_FORMAT})",
        file.display()
    );
    Ok(Some(manifest))
}

/// What recover reads, once its `--input`s are resolved.
pub struct Source {
    pub inputs: Vec<Input>,
    pub skipped: Vec<String>,
    /// What the run ledger records as the run's inputs.
    pub recorded: Vec<String>,
    /// The inputs' content fingerprint, when a partition manifest already knows it.
    pub fingerprint: Option<String>,
    /// Rows to keep, when the inputs hold every shard's rows.
    pub filter: Option<Shard>,
    /// The as-of a partition manifest proposes.
    pub as_of_us: Option<i64>,
}

/// Resolves recover's `--input`s: a partitioned dataset (its one shard with `shard`, or all of
/// them), or ordinary files and folders (filtered to the shard's devices with `shard`).
pub fn source(paths: &[PathBuf], skip_unknown: bool, shard: Option<Shard>) -> Result<Source> {
    let partitions = paths
        .iter()
        .map(|p| Ok((p, open_partition(p)?)))
        .collect::<Result<Vec<_>>>()?;
    let Some((root, manifest)) = partitions
        .iter()
        .find_map(|(p, m)| m.as_ref().map(|m| (p, m)))
    else {
        let resolved = ingest::resolve(paths, skip_unknown)?;
        return Ok(Source {
            recorded: resolved
                .inputs
                .iter()
                .map(|i| i.path.display().to_string())
                .collect(),
            inputs: resolved.inputs,
            skipped: resolved
                .skipped
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            fingerprint: None,
            filter: shard,
            as_of_us: None,
        });
    };
    ensure!(
        paths.len() == 1,
        "{} is a partitioned dataset: give it as the only --input (partition all inputs together)",
        root.display()
    );
    let wanted: Vec<u32> = match shard {
        Some(s) if s.count != manifest.shards => bail!(
            "{} holds {} shards, but --shard {s} asks for one of {}",
            root.display(),
            manifest.shards,
            s.count
        ),
        Some(s) => vec![s.index],
        None => (0..manifest.shards).collect(),
    };
    let mut inputs = Vec::new();
    for k in wanted {
        let dir = root.join(shard_folder(k));
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .with_context(|| format!("{}: shard {k} is missing", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("listing {}", dir.display()))?;
        files.retain(|f| f.extension().is_some_and(|e| e == "parquet"));
        files.sort();
        ensure!(
            !files.is_empty(),
            "{}: shard {k} holds no part file",
            dir.display()
        );
        inputs.extend(files.into_iter().map(|path| Input {
            path,
            format: Format::Partition,
        }));
    }
    Ok(Source {
        inputs,
        skipped: manifest.skipped.clone(),
        recorded: manifest.inputs.clone(),
        fingerprint: Some(manifest.input_fingerprint.clone()),
        filter: None,
        as_of_us: Some(manifest.as_of_us),
    })
}

/// One output file of a shard, as its manifest records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub rows: u64,
    pub bytes: u64,
    pub blake3: String,
}

/// `manifest.json` of one shard: which run and shard it is, what went in, what came out.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardManifest {
    pub format: String,
    pub run_id: String,
    pub shard: u32,
    pub shards: u32,
    pub as_of_us: i64,
    pub inputs: Vec<String>,
    pub skipped: Vec<String>,
    pub input_fingerprint: String,
    pub config_toml: String,
    pub started_at_us: i64,
    pub finished_at_us: i64,
    pub rows_in: u64,
    pub rows_clean: u64,
    pub rows_quarantined: u64,
    pub devices: u64,
    pub blind_devices: u64,
    pub quarantined_by_reason: BTreeMap<String, u64>,
    pub devices_by_state: BTreeMap<String, u64>,
    pub devices_by_action: BTreeMap<String, u64>,
    /// Unrounded: merge sums the shards and rounds the sum to cents, as recover does.
    pub cost_usd: f64,
    pub cost_avoided_usd: f64,
    pub truck_rolls_avoided: u64,
    /// The shard's stage files by name.
    pub files: BTreeMap<String, FileEntry>,
}

/// The manifest entry of a file just written.
pub fn file_entry(path: &Path, rows: u64) -> Result<FileEntry> {
    Ok(FileEntry {
        rows,
        bytes: fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len(),
        blake3: hash_file(path)?.to_hex().to_string(),
    })
}

/// Reads a shard manifest.
fn read_manifest(path: &Path) -> Result<ShardManifest> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let manifest: ShardManifest = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a shard manifest", path.display()))?;
    ensure!(
        manifest.format == SHARD_FORMAT,
        "{}: not a shard manifest of this version ({SHARD_FORMAT})",
        path.display()
    );
    Ok(manifest)
}

/// The shard folders (`shard=K/`, K parsed) of a run folder.
pub fn shard_folders(run_dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir(run_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let k = name.strip_prefix("shard=")?.parse().ok()?;
            Some((k, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// The run whose shards finished last, among the run folders holding shard manifests.
fn latest_sharded_run(ws: &Workspace) -> Result<String> {
    let mut best: Option<(i64, String)> = None;
    for entry in fs::read_dir(ws.stage_root())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        for (_, dir) in shard_folders(&entry.path()) {
            if let Ok(m) = read_manifest(&dir.join(SHARD_MANIFEST))
                && best.as_ref().is_none_or(|(t, _)| m.finished_at_us > *t)
            {
                best = Some((m.finished_at_us, name.clone()));
            }
        }
    }
    best.map(|(_, id)| id).with_context(|| {
        format!(
            "no shard outputs under {} (run `sentinel recover --shard K/N ...` for every shard first)",
            ws.stage_root().display()
        )
    })
}

/// What `merge` did: recover's summary of the whole run, and the shards it took.
#[derive(Clone, Debug, Serialize)]
pub struct MergeSummary {
    pub shards: u32,
    #[serde(flatten)]
    pub run: crate::recover::RecoverSummary,
}

/// Checks the N shard manifests of a run and publishes the run: the merged recovery plan, the
/// ledger row and the views over the shards' files, in one database transaction. Refuses (and
/// changes nothing) when a shard is missing, duplicated, from another run, or altered.
pub fn merge(ws: &Workspace, run_id: Option<&str>, threads: usize) -> Result<MergeSummary> {
    let clock = Instant::now();
    let run_id = match run_id {
        Some(id) => id.to_string(),
        None => latest_sharded_run(ws)?,
    };
    let run_dir = ws.stage_dir(&run_id);
    let folders = shard_folders(&run_dir);
    ensure!(
        !folders.is_empty(),
        "run {run_id}: no shard outputs in {} (run `sentinel recover --shard K/N ...` for every shard first)",
        run_dir.display()
    );
    let mut manifests: Vec<(u32, ShardManifest)> = Vec::with_capacity(folders.len());
    for (k, dir) in &folders {
        let path = dir.join(SHARD_MANIFEST);
        ensure!(
            path.is_file(),
            "run {run_id}: shard {k} has no {SHARD_MANIFEST} in {} (its recover did not finish: run it again)",
            dir.display()
        );
        let m = read_manifest(&path)?;
        ensure!(
            m.run_id == run_id,
            "{}: belongs to run {}, not {run_id} (a shard of another run was copied here)",
            path.display(),
            m.run_id
        );
        ensure!(
            m.shard == *k,
            "{}: describes shard {}/{}, but it sits in the folder of shard {k}: shard {} is duplicated",
            path.display(),
            m.shard,
            m.shards,
            m.shard
        );
        manifests.push((*k, m));
    }
    let first = &manifests[0].1;
    let count = first.shards;
    for (k, m) in &manifests {
        ensure!(
            m.shards == count,
            "run {run_id}: shard {} was recovered as {}/{}, shard {k} as {k}/{}: mixed shard counts \
             (remove the stale shard folders under {} and merge again)",
            first.shard,
            first.shard,
            count,
            m.shards,
            run_dir.display()
        );
        ensure!(
            m.as_of_us == first.as_of_us
                && m.inputs == first.inputs
                && m.input_fingerprint == first.input_fingerprint
                && m.config_toml == first.config_toml,
            "run {run_id}: shard {k} was recovered from other inputs, as-of or configuration than shard {}",
            first.shard
        );
    }
    let present: Vec<u32> = manifests.iter().map(|(k, _)| *k).collect();
    let missing: Vec<String> = (0..count)
        .filter(|k| !present.contains(k))
        .map(|k| k.to_string())
        .collect();
    ensure!(
        missing.is_empty(),
        "run {run_id}: {} of {count} shards missing (shard {}); run `sentinel recover --shard K/{count} ...` for them, then merge again",
        missing.len(),
        missing.join(", ")
    );
    // Every file as its manifest says: a shard copied half or changed since is refused.
    for (k, m) in &manifests {
        let dir = ws.shard_dir(&run_id, *k);
        for (name, entry) in &m.files {
            let path = dir.join(name);
            ensure!(
                path.is_file(),
                "run {run_id}: shard {k}: {} is missing",
                path.display()
            );
            let found = file_entry(&path, entry.rows)?;
            ensure!(
                found == *entry,
                "run {run_id}: shard {k}: {} is not the file its manifest describes \
                 ({} bytes, BLAKE3 {}; the manifest says {} bytes, {})",
                path.display(),
                found.bytes,
                found.blake3,
                entry.bytes,
                entry.blake3
            );
        }
    }

    // The run's recovery plan: the shards' plans, one header.
    let plan_dest = ws.recovery_plan(&run_id);
    let plan = AtomicFile::create(&plan_dest)?;
    {
        let mut w = std::io::BufWriter::new(plan.file());
        let mut header_written = false;
        for (k, _) in &manifests {
            let path = ws
                .shard_dir(&run_id, *k)
                .join(crate::workspace::RECOVERY_PLAN);
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut lines = text.split_inclusive('\n');
            if let Some(header) = lines.next()
                && !header_written
            {
                w.write_all(header.as_bytes())?;
                header_written = true;
            }
            for line in lines {
                w.write_all(line.as_bytes())?;
            }
        }
        w.flush()
            .with_context(|| format!("writing {}", plan_dest.display()))?;
    }

    let mut reasons = BTreeMap::new();
    let mut states = BTreeMap::new();
    let mut actions = BTreeMap::new();
    for (_, m) in &manifests {
        add(&mut reasons, &m.quarantined_by_reason);
        add(&mut states, &m.devices_by_state);
        add(&mut actions, &m.devices_by_action);
    }
    let total = |f: fn(&ShardManifest) -> u64| manifests.iter().map(|(_, m)| f(m)).sum::<u64>();
    let record = RunRecord {
        run_id: run_id.clone(),
        started_at_us: manifests
            .iter()
            .map(|(_, m)| m.started_at_us)
            .min()
            .unwrap_or(0),
        as_of_us: first.as_of_us,
        inputs_json: serde_json::to_string(&first.inputs)?,
        skipped_json: serde_json::to_string(&first.skipped)?,
        input_fingerprint: first.input_fingerprint.clone(),
        rows_in: total(|m| m.rows_in),
        rows_clean: total(|m| m.rows_clean),
        rows_quarantined: total(|m| m.rows_quarantined),
        devices: total(|m| m.devices),
        blind_devices: total(|m| m.blind_devices),
        status: "completed".into(),
        config_toml: first.config_toml.clone(),
        shards: Some(count),
    };
    ensure!(
        record.rows_in == record.rows_clean + record.rows_quarantined,
        "run {run_id}: row accounting failed across shards: {} rows in, {} clean + {} quarantined",
        record.rows_in,
        record.rows_clean,
        record.rows_quarantined
    );
    plan.commit()?;
    let mut conn = warehouse::open(&ws.database(), threads)?;
    warehouse::publish(&mut conn, &record, ws)?;
    drop(conn);

    let mut outputs = BTreeMap::new();
    outputs.insert(
        crate::workspace::RECOVERY_PLAN.to_string(),
        plan_dest.display().to_string(),
    );
    outputs.insert("database".into(), ws.database().display().to_string());
    let mut timings = BTreeMap::new();
    timings.insert("total".into(), clock.elapsed().as_secs_f64());
    Ok(MergeSummary {
        shards: count,
        run: crate::recover::RecoverSummary {
            run_id,
            as_of: schema::format_timestamp(first.as_of_us),
            inputs: first.inputs.clone(),
            skipped: first.skipped.clone(),
            rows_in: record.rows_in,
            rows_clean: record.rows_clean,
            rows_quarantined: record.rows_quarantined,
            quarantined_by_reason: reasons,
            devices: record.devices,
            devices_by_state: states,
            devices_by_action: actions,
            blind_devices: record.blind_devices,
            cost_usd: cents(manifests.iter().map(|(_, m)| m.cost_usd).sum()),
            truck_rolls_avoided: total(|m| m.truck_rolls_avoided),
            cost_avoided_usd: cents(manifests.iter().map(|(_, m)| m.cost_avoided_usd).sum()),
            outputs,
            timings,
            shard: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file hashed a window at a time has the hash of its bytes, across window borders and
    /// for an empty file.
    #[test]
    fn a_file_hashed_in_windows_has_the_hash_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..HASH_WINDOW as usize + 4099)
            .map(|i| (i % 251) as u8)
            .collect();
        for len in [0, 1, HASH_WINDOW as usize, bytes.len()] {
            let path = dir.path().join(format!("f{len}"));
            fs::write(&path, &bytes[..len]).unwrap();
            assert_eq!(
                hash_file(&path).unwrap(),
                blake3::hash(&bytes[..len]),
                "{len}"
            );
        }
    }

    /// The documented FNV-1a test vectors, so the rule stays what the README says.
    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_row_without_a_usable_id_goes_to_shard_zero() {
        for id in [None, Some(""), Some("   "), Some("-bad"), Some("a b")] {
            assert_eq!(shard_of(id, 8), 0, "{id:?}");
        }
        // Trimmed before hashing: the same device wherever its id carries blanks.
        assert_eq!(shard_of(Some("  dev-17\t"), 8), shard_of(Some("dev-17"), 8));
        assert_eq!(shard_of(Some("dev-17"), 8) as u64, fnv1a(b"dev-17") % 8);
    }

    #[test]
    fn shard_specs_parse() {
        assert_eq!("3/8".parse(), Ok(Shard { index: 3, count: 8 }));
        assert_eq!("0/1".parse(), Ok(Shard { index: 0, count: 1 }));
        for bad in ["8/8", "1/0", "3", "a/b", "-1/4", "3/8/1"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
