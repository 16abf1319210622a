//! Parquet output shared by the stages: one set of writer settings, and row groups encoded in
//! parallel but written in order.
//!
//! polars' `BatchedWriter::write_batch` encodes one row group at a time on the calling thread,
//! which made encoding, not generation, the bottleneck on two cores. `encode_and_compress` takes
//! `&self`, so several threads can encode their own row groups at once; the caller then writes the
//! finished groups in their order, and the file's bytes stay independent of the thread count.

use std::io::Write;

use polars::io::parquet::write::{BatchedWriter, RowGroupIterColumns, StatisticsOptions};
use polars::prelude::{DataFrame, ParquetCompression, ParquetWriter, PolarsError, PolarsResult};

/// The writer settings of every Parquet file Sentinel writes: LZ4 (fast to write and read; these
/// files are working data, not an archive) and statistics for readers' pruning.
pub fn writer<W: Write>(w: W) -> ParquetWriter<W> {
    ParquetWriter::new(w)
        .with_compression(ParquetCompression::Lz4Raw)
        .set_parallel(false)
}

/// The writer settings of scratch files that one process writes and reads back at once
/// (recover's buckets): no compression and no statistics, since nothing prunes or keeps them.
pub fn scratch_writer<W: Write>(w: W) -> ParquetWriter<W> {
    ParquetWriter::new(w)
        .with_compression(ParquetCompression::Uncompressed)
        .with_statistics(StatisticsOptions::empty())
        .set_parallel(false)
}

/// A row group encoded and compressed, ready to be written.
pub struct Encoded {
    pub rows: usize,
    groups: Vec<RowGroupIterColumns<'static, PolarsError>>,
}

/// Encodes `df` (each chunk becomes a row group); safe to call from several threads at once.
pub fn encode<W: Write>(writer: &BatchedWriter<W>, df: &DataFrame) -> PolarsResult<Encoded> {
    Ok(Encoded {
        rows: df.height(),
        groups: writer
            .encode_and_compress(df)
            .collect::<PolarsResult<_>>()?,
    })
}

/// Appends encoded row groups to the file, in the order given.
pub fn write<W: Write>(writer: &BatchedWriter<W>, encoded: Encoded) -> PolarsResult<()> {
    writer.write_row_groups(encoded.groups)
}
