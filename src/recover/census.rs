//! The device census of a run: which rows share their device id with another row.
//!
//! Every rule of SPEC section 4 and 5 that relates rows (DUPLICATE, CONFLICT, the latest report,
//! priority, blind devices) relates rows of one trimmed device id. A row whose trimmed id no other
//! row of the run holds is a device on its own: it can be sanitized, triaged and classified
//! alone, straight from the slice it was read in, without a trip through a bucket. Such lone rows
//! are most of a fleet's (at 10M devices, about 80%: most devices send one report).
//!
//! The census reads the inputs' device_id column alone, once, and keeps a 40-bit hash of every
//! trimmed id with the row's position in the run. Rows whose hash is held by another row are
//! grouped; two ids that differ but share a hash are grouped too, which only costs them the trip
//! through a bucket (at 100M distinct ids, about one row in ten thousand), never a wrong result.
//! A missing or blank id hashes as the empty id, so rows without an id are grouped whenever there
//! are two of them (they may repeat each other).

use anyhow::{Context, Result, ensure};

use super::ingest::{self, Input};
use crate::support::parallel;

/// Rows of a Parquet input read at a time by the census, at most.
const CENSUS_ROWS: usize = 1 << 20;

/// Census tables of at least this many rows (256 MiB) are given back to the kernel once counted.
const RELEASE_ROWS: usize = 1 << 25;

/// Partitions of the hashed ids (by the hash's top 8 bits), each sorted on its own.
const PARTITIONS: usize = 256;

/// Which rows of a run are lone (their trimmed device id is held by no other row).
pub struct Census {
    /// A bit per row position in run order: set when the row is grouped.
    grouped: Vec<u64>,
    rows: u64,
    grouped_rows: u64,
}

/// The hash of a trimmed device id: FNV-1a through the project's SplitMix64 mixer, so that the
/// top bits (the partition) depend on every byte.
fn id_hash(id: Option<&str>) -> u64 {
    crate::support::mix(super::shard::fnv1a(id.map_or("", str::trim).as_bytes()), 0)
}

/// A census entry: the partition of a hash, and its next 32 bits above the row's position.
fn entry(hash: u64, position: u64) -> (usize, u64) {
    let partition = (hash >> 56) as usize;
    let rest = (hash >> 24) & 0xFFFF_FFFF;
    (partition, rest << 32 | position)
}

impl Census {
    /// Takes the census of `inputs`, every one a Parquet input of `rows[i]` rows (from its footer).
    pub fn take(inputs: &[Input], rows: &[usize]) -> Result<Census> {
        let total: usize = rows.iter().sum();
        ensure!(
            total <= u32::MAX as usize,
            "a census holds at most {} rows",
            u32::MAX
        );
        let mut slices = Vec::new();
        let mut base = 0u64;
        let threads = parallel::threads();
        for (i, &n) in rows.iter().enumerate() {
            // Few slices are made a multiple of the threads, of equal size: 1.14M rows in one
            // slice of 1M rows and one of 0.14M left a core idle for most of the census. Many
            // keep CENSUS_ROWS, a multiple of the row groups Sentinel writes (2^18 rows): slices
            // across row groups decode the groups they share twice.
            let len = if n >= CENSUS_ROWS * 4 * threads {
                CENSUS_ROWS
            } else {
                let count = n.div_ceil(CENSUS_ROWS).max(1).next_multiple_of(threads);
                n.div_ceil(count).max(1)
            };
            for offset in (0..n).step_by(len) {
                slices.push((i, offset, len.min(n - offset), base + offset as u64));
            }
            base += n as u64;
        }
        let mut partitions: Vec<Vec<u64>> = (0..PARTITIONS)
            .map(|_| Vec::with_capacity(total / PARTITIONS + total / (PARTITIONS * 8) + 16))
            .collect();
        parallel::ordered(
            slices.len() as u64,
            |s| {
                let (i, offset, len, first) = slices[s as usize];
                let ids = ingest::read_ids(&inputs[i], (offset, len))?;
                let ids = ids
                    .str()
                    .with_context(|| format!("reading {}", inputs[i].path.display()))?;
                ensure!(
                    ids.len() == len,
                    "{}: {} device ids read where the footer counts {len} rows",
                    inputs[i].path.display(),
                    ids.len()
                );
                Ok(ids
                    .iter()
                    .enumerate()
                    .map(|(r, id)| entry(id_hash(id), first + r as u64))
                    .collect::<Vec<_>>())
            },
            |_, entries| {
                for (p, e) in entries {
                    partitions[p].push(e);
                }
                Ok(())
            },
        )?;
        let census = Census::of_partitions(partitions, total as u64)?;
        // The tables (8 bytes a row) were filled on this thread's heap, which the split's
        // workers do not allocate from: kept, they would stay resident for the whole run. Only
        // large tables are given back: the trim returns every heap's free memory, which later
        // buffers then fault in again (in the stage benchmark's long-lived process, with every
        // earlier run's memory free, it made recover of 1.14M rows 4.4 -> 7.3 s).
        if total >= RELEASE_ROWS {
            crate::support::memory::release_freed_memory();
        }
        Ok(census)
    }

    /// The census of rows whose entries are in `partitions`.
    fn of_partitions(partitions: Vec<Vec<u64>>, rows: u64) -> Result<Census> {
        let mut grouped = vec![0u64; rows.div_ceil(64) as usize];
        let mut grouped_rows = 0;
        let partitions: Vec<std::sync::Mutex<Vec<u64>>> =
            partitions.into_iter().map(std::sync::Mutex::new).collect();
        // Each partition sorted on a worker; runs of one hash marked here.
        parallel::ordered(
            partitions.len() as u64,
            |p| {
                let mut entries =
                    std::mem::take(&mut *partitions[p as usize].lock().expect("a partition"));
                entries.sort_unstable();
                let mut marked = Vec::new();
                let mut start = 0;
                while start < entries.len() {
                    let hash = entries[start] >> 32;
                    let mut end = start + 1;
                    while end < entries.len() && entries[end] >> 32 == hash {
                        end += 1;
                    }
                    if end - start > 1 {
                        marked.extend(entries[start..end].iter().map(|e| e & 0xFFFF_FFFF));
                    }
                    start = end;
                }
                Ok(marked)
            },
            |_, marked| {
                for position in marked {
                    grouped[(position / 64) as usize] |= 1 << (position % 64);
                    grouped_rows += 1;
                }
                Ok(())
            },
        )?;
        Ok(Census {
            grouped,
            rows,
            grouped_rows,
        })
    }

    /// Whether the row at `position` (in run order) is alone with its device id.
    pub fn is_lone(&self, position: u64) -> bool {
        position < self.rows && self.grouped[(position / 64) as usize] & (1 << (position % 64)) == 0
    }

    /// Rows that share their device id (or its hash) with another row.
    pub fn grouped_rows(&self) -> u64 {
        self.grouped_rows
    }

    /// Rows counted.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

/// The census of `ids`, one frame of rows in run order (for tests).
#[cfg(test)]
fn of_ids(ids: &[Option<&str>]) -> Census {
    let mut partitions: Vec<Vec<u64>> = vec![Vec::new(); PARTITIONS];
    for (r, id) in ids.iter().enumerate() {
        let (p, e) = entry(id_hash(*id), r as u64);
        partitions[p].push(e);
    }
    Census::of_partitions(partitions, ids.len() as u64).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_alone_with_their_trimmed_id_are_lone_and_the_rest_grouped() {
        let ids = [
            Some("dev-1"),
            Some(" dev-2"),
            Some("dev-3"),
            Some("dev-2\t"),
            None,
            Some("dev-4"),
            Some("   "),
            Some("DEV-1"),
            Some("-bad id"),
        ];
        let census = of_ids(&ids);
        let lone: Vec<bool> = (0..ids.len() as u64).map(|p| census.is_lone(p)).collect();
        // dev-2 twice (trimmed), no id twice (None and blank); dev-1 and DEV-1 are two devices.
        assert_eq!(
            lone,
            [true, false, true, false, false, true, false, true, true]
        );
        assert_eq!(census.grouped_rows(), 4);
        assert_eq!(census.rows(), 9);
        assert!(!census.is_lone(9), "a position past the rows is not lone");
    }

    #[test]
    fn a_lone_missing_id_is_lone_and_a_shared_hash_groups_both_rows() {
        let census = of_ids(&[Some("a"), None, Some("b")]);
        assert!((0..3).all(|p| census.is_lone(p)));
        // Two rows with one entry value: the census cannot tell them apart, so both are grouped.
        let (p, e) = entry(id_hash(Some("x")), 0);
        let mut partitions: Vec<Vec<u64>> = vec![Vec::new(); PARTITIONS];
        partitions[p].push(e);
        partitions[p].push((e >> 32) << 32 | 2);
        let (q, f) = entry(id_hash(Some("y")), 1);
        partitions[q].push(f);
        let census = Census::of_partitions(partitions, 3).unwrap();
        assert_eq!(
            (0..3).map(|p| census.is_lone(p)).collect::<Vec<_>>(),
            [false, true, false]
        );
    }

    #[test]
    fn the_census_of_parquet_inputs_counts_positions_across_files_and_reads_typed_ids() {
        use polars::df;
        use polars::prelude::{DataFrame, ParquetWriter};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, mut df: DataFrame| {
            let path = dir.path().join(name);
            ParquetWriter::new(std::fs::File::create(&path).unwrap())
                .finish(&mut df)
                .unwrap();
            Input {
                path,
                format: ingest::Format::Parquet,
            }
        };
        // Text ids, then integer ids: the integer 7 is the text "7", as ingest reads it.
        let a = write(
            "a.parquet",
            df!("device_id" => [Some("dev-1"), Some(" 7 "), None, Some("dev-2")]).unwrap(),
        );
        let b = write(
            "b.parquet",
            df!("device_id" => [Some(7i64), Some(8), None]).unwrap(),
        );
        let census = Census::take(&[a, b], &[4, 3]).unwrap();
        let lone: Vec<u64> = (0..7).filter(|&p| census.is_lone(p)).collect();
        assert_eq!(lone, [0, 3, 5]);
        assert_eq!((census.rows(), census.grouped_rows()), (7, 4));
    }

    #[test]
    fn the_id_hash_sees_every_byte_and_ignores_padding() {
        assert_eq!(id_hash(Some(" a\n")), id_hash(Some("a")));
        assert_eq!(id_hash(None), id_hash(Some("")));
        assert_ne!(id_hash(Some("dev-000001")), id_hash(Some("dev-000002")));
        // The partition (top 8 bits) varies over ids that differ in the last byte only.
        let partitions: std::collections::BTreeSet<u64> = (0..64)
            .map(|i| id_hash(Some(&format!("dev-{i:06}"))) >> 56)
            .collect();
        assert!(partitions.len() > 40, "{}", partitions.len());
    }
}
