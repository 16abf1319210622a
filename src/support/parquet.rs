//! Parquet output shared by the stages: one set of writer settings, and row groups encoded in
//! parallel but written in order.
//!
//! polars' `BatchedWriter::write_batch` encodes one row group at a time on the calling thread,
//! which made encoding, not generation, the bottleneck on two cores. [`Writer::encode`] takes
//! `&self`, so several threads can encode and compress their own row groups at once; the caller
//! then writes the finished groups in their order ([`Writer::write`]), and the file's bytes stay
//! independent of the thread count.
//!
//! The pages are encoded and compressed here, with polars' page encoder, rather than by
//! `BatchedWriter::encode_and_compress`, for two reasons measured on recover at 2.5M rows:
//! that function leaves the compression to the iterator it returns, so it ran on the thread that
//! writes (7.4 of the 27 s of an 11.4M-row run were spent there); and it tries a dictionary for
//! every text and number column, estimating the column's distinct values first, which cost about
//! a tenth of recover's CPU on columns such as `device_id` and the timestamps whose values
//! hardly repeat and which polars then writes plain anyway. A [`Writer`] writes the columns its
//! [`Layout`] names plain without trying, and builds the dictionary of the other text columns
//! without the estimate ([`as_dictionary`]). A frame is one row group however polars chunked it
//! ([`Writer::encode`]), so frames are not copied into one chunk first.

use std::io::Write;

use polars::io::parquet::write::{BatchedWriter, RowGroupIterColumns, StatisticsOptions};
use polars::prelude::{
    CompatLevel, DataFrame, DataType, ParquetCompression, ParquetWriter, PlHashMap, PolarsError,
    PolarsResult, Schema, SchemaExt,
};
use polars_arrow::array::{
    Array, DictionaryArray, MutableBinaryViewArray, PrimitiveArray, Utf8ViewArray, View,
};
use polars_arrow::bitmap::{Bitmap, MutableBitmap};
use polars_arrow::datatypes::{ArrowDataType, IntegerType};
use polars_parquet::parquet::CowBuffer;
use polars_parquet::parquet::compression;
use polars_parquet::parquet::page::{CompressedDataPage, Page};
use polars_parquet::write::{
    CompressedPage, CompressionOptions, DynIter, DynStreamingIterator, Encoding,
    FallibleStreamingIterator, ParquetType, Version, WriteOptions, array_to_columns, compress,
    get_dtype_encoding, to_parquet_schema,
};

/// The writer settings of every Parquet file Sentinel writes in one piece: LZ4 (fast to write
/// and read; these files are working data, not an archive) and statistics for readers' pruning.
pub fn writer<W: Write>(w: W) -> ParquetWriter<W> {
    ParquetWriter::new(w)
        .with_compression(ParquetCompression::Lz4Raw)
        .set_parallel(false)
}

/// How a [`Writer`] lays its file out.
#[derive(Clone, Copy, Debug)]
pub enum Layout {
    /// A file that is kept: LZ4 where it pays ([`ColumnPages`]), statistics, a dictionary tried for every column as polars
    /// would, except for the named columns, written plain.
    Kept { plain: &'static [&'static str] },
    /// A file one process writes and reads back at once (recover's buckets): no compression and
    /// no statistics, since nothing prunes or keeps it; the named columns plain.
    Scratch { plain: &'static [&'static str] },
}

/// polars' own layout for a kept file: a dictionary tried for every column.
pub const KEPT: Layout = Layout::Kept { plain: &[] };

/// Columns whose values hardly repeat, in the files recover writes: the ids, the times, the row
/// numbers, the measurements and the problem lists. polars writes them plain after estimating
/// their distinct values; these layouts skip the estimate.
pub const UNIQUE_COLUMNS: &[&str] = &[
    "device_id",
    "device_key",
    "update_started_at",
    "last_heartbeat_at",
    "reported_at",
    "source_row",
    "battery_pct",
    "download_pct",
    "cost_usd",
    "cost_avoided_usd",
    "problems",
];

/// Rows per chunk, on average, below which [`Writer::encode`] joins a column's chunks rather than
/// writing pages of a chunk each.
const MIN_CHUNK_ROWS: usize = 1 << 14;

/// A Parquet file being written in row groups that any thread may encode ([`Writer::encode`])
/// and one thread appends in order ([`Writer::write`]).
pub struct Writer<W: Write> {
    file: BatchedWriter<W>,
    fields: Vec<ParquetType>,
    encodings: Vec<Vec<Encoding>>,
    options: WriteOptions,
}

/// A frame's row group encoded and compressed, ready to be written: per column, its pages (no
/// columns for a frame without rows, which adds no row group).
pub struct Encoded {
    pub rows: usize,
    columns: Vec<Vec<CompressedPage>>,
}

impl<W: Write> Writer<W> {
    /// Starts a file in `w` for frames of `schema`.
    pub fn new(w: W, schema: &Schema, layout: Layout) -> PolarsResult<Writer<W>> {
        let (plain, compression, statistics) = match layout {
            Layout::Kept { plain } => (
                plain,
                ParquetCompression::Lz4Raw,
                StatisticsOptions::default(),
            ),
            Layout::Scratch { plain } => (
                plain,
                ParquetCompression::Uncompressed,
                StatisticsOptions::empty(),
            ),
        };
        let file = ParquetWriter::new(w)
            .with_compression(compression)
            .with_statistics(statistics)
            .set_parallel(false)
            .batched(schema)?;
        let arrow = schema.to_arrow(CompatLevel::newest());
        let fields = to_parquet_schema(&arrow)?.fields().to_vec();
        let encodings = arrow
            .iter_values()
            .map(|field| {
                let mut encodings = get_dtype_encoding(&field.dtype);
                if plain.contains(&field.name.as_str()) {
                    for e in &mut encodings {
                        if *e == Encoding::RleDictionary {
                            *e = Encoding::Plain;
                        }
                    }
                }
                encodings
            })
            .collect();
        let options = WriteOptions {
            statistics,
            compression: CompressionOptions::from(compression),
            version: Version::V1,
            data_page_size: None,
        };
        Ok(Writer {
            file,
            fields,
            encodings,
            options,
        })
    }

    /// Encodes and compresses `df` as one row group; safe to call from several threads at once.
    /// A column in several chunks (polars' filters cut frames into a chunk per thread) is encoded
    /// a chunk at a time, its pages following one another in the column chunk, instead of being
    /// copied into one array first; a column with a dictionary (one per column chunk) or with
    /// chunks of fewer than [`MIN_CHUNK_ROWS`] rows on average is joined into one array.
    pub fn encode(&self, df: &DataFrame) -> PolarsResult<Encoded> {
        if df.height() == 0 {
            return Ok(Encoded {
                rows: 0,
                columns: Vec::new(),
            });
        }
        let mut columns = Vec::new();
        for ((column, field), encoding) in
            df.columns().iter().zip(&self.fields).zip(&self.encodings)
        {
            let mut series = column.as_materialized_series().clone();
            let chunks = series.n_chunks();
            let small_chunks = series.len() < MIN_CHUNK_ROWS * chunks;
            // A text column's dictionary is built over all its chunks at once
            // ([`as_dictionary`]): joining them first copied every view (2% of recover's CPU).
            let text_dictionary = encoding.as_slice() == [Encoding::RleDictionary]
                && series.dtype() == &DataType::String;
            if chunks > 1
                && !text_dictionary
                && (encoding.contains(&Encoding::RleDictionary) || small_chunks)
            {
                series = series.rechunk();
            }
            let mut arrays: Vec<Box<dyn Array>> = (0..series.n_chunks())
                .map(|chunk| series.to_arrow(chunk, CompatLevel::newest()))
                .filter(|array| !array.is_empty())
                .collect();
            let mut encoding = encoding.as_slice();
            if text_dictionary && !arrays.is_empty() {
                match as_dictionary(&arrays)? {
                    Some(dictionary) => arrays = vec![dictionary],
                    None => {
                        encoding = &[Encoding::Plain];
                        if arrays.len() > 1 && small_chunks {
                            arrays = vec![series.rechunk().to_arrow(0, CompatLevel::newest())];
                        }
                    }
                }
            }
            // Pages per leaf column (a list column is one leaf, as every column here).
            let mut leaves: Vec<ColumnPages> = Vec::new();
            for array in arrays {
                let pages = array_to_columns(array, field.clone(), self.options, encoding)?;
                for (leaf, pages) in pages.into_iter().enumerate() {
                    if leaves.len() <= leaf {
                        leaves.push(ColumnPages::new(self.options.compression));
                    }
                    for page in pages {
                        leaves[leaf].push(page?)?;
                    }
                }
            }
            for leaf in leaves {
                columns.push(leaf.finish()?);
            }
        }
        Ok(Encoded {
            rows: df.height(),
            columns,
        })
    }

    /// Appends an encoded row group to the file (nothing for a frame without rows).
    pub fn write(&self, encoded: Encoded) -> PolarsResult<()> {
        if encoded.rows == 0 {
            return Ok(());
        }
        let group: RowGroupIterColumns<'static, PolarsError> =
            DynIter::new(encoded.columns.into_iter().map(|pages| {
                Ok(DynStreamingIterator::new(Pages {
                    pages: pages.into_iter(),
                    current: None,
                }))
            }));
        self.file.write_row_groups(vec![group])
    }

    /// Writes the footer; returns the file's size.
    pub fn finish(&self) -> PolarsResult<u64> {
        self.file.finish()
    }
}

/// A text array as a dictionary array, or None when the dictionary would hold more than three
/// quarters as many values as the array has rows (polars' own limit; then the column is written
/// plain). The dictionary is the one polars' cast builds (values in order of first appearance,
/// null rows null keys), built here because polars' cast hashes the bytes of every value: a
/// value of at most 12 bytes is held whole in its 16-byte view, so the view itself is the key,
/// and only longer values are hashed as bytes. A column that turns out to have too many values
/// stops being built as soon as it has them. (The cast was about 7% of recover's CPU.)
fn as_dictionary(arrays: &[Box<dyn Array>]) -> PolarsResult<Option<Box<dyn Array>>> {
    let texts = arrays
        .iter()
        .map(|array| {
            array
                .as_any()
                .downcast_ref::<Utf8ViewArray>()
                .ok_or_else(|| {
                    let dtype = array.dtype();
                    PolarsError::ComputeError(
                        format!("a dictionary is built for text columns only, not {dtype:?}")
                            .into(),
                    )
                })
        })
        .collect::<PolarsResult<Vec<&Utf8ViewArray>>>()?;
    let rows: usize = texts.iter().map(|t| t.len()).sum();
    let most = if rows <= 128 { rows } else { rows * 3 / 4 };
    let mut short: PlHashMap<u128, u32> = PlHashMap::default();
    let mut long: PlHashMap<&[u8], u32> = PlHashMap::default();
    let mut values = MutableBinaryViewArray::<str>::new();
    let mut keys: Vec<u32> = Vec::with_capacity(rows);
    let nulls = texts.iter().any(|t| t.validity().is_some());
    let mut validity = MutableBitmap::with_capacity(if nulls { rows } else { 0 });
    for text in texts {
        let valid = text.validity();
        for (i, view) in text.views().iter().enumerate() {
            if valid.is_some_and(|v| !v.get_bit(i)) {
                keys.push(0);
                validity.push(false);
                continue;
            }
            if nulls {
                validity.push(true);
            }
            let next = values.len() as u32;
            let key = if view.length <= View::MAX_INLINE_SIZE {
                // The length and the value's bytes; the view's bytes past the value do not count.
                let bits = 32 + 8 * view.length;
                let mask = if bits >= 128 {
                    u128::MAX
                } else {
                    (1u128 << bits) - 1
                };
                *short.entry(view.as_u128() & mask).or_insert(next)
            } else {
                *long.entry(text.value(i).as_bytes()).or_insert(next)
            };
            if key == next {
                if values.len() == most {
                    return Ok(None);
                }
                values.push_value(text.value(i));
            }
            keys.push(key);
        }
    }
    let validity: Option<Bitmap> = nulls.then(|| validity.into());
    let keys = PrimitiveArray::new(ArrowDataType::UInt32, keys.into(), validity);
    let dtype = ArrowDataType::Dictionary(
        IntegerType::UInt32,
        Box::new(ArrowDataType::Utf8View),
        false,
    );
    let dictionary = DictionaryArray::<u32>::try_new(dtype, keys, values.freeze().boxed())?;
    Ok(Some(dictionary.boxed()))
}

/// The least share of a page that compression must save for its column chunk to be compressed.
/// A chunk's pages share one codec; it is chosen on the chunk's first data page.
const MIN_SAVING: f64 = 0.125;

/// One column chunk's pages being compressed. Compression is tried on the chunk's first data page
/// and kept for the chunk only if it saves at least [`MIN_SAVING`] of that page: dictionary keys
/// and near-random numbers (the heartbeat and update times) shrink by 0-10% under LZ4; storing
/// them uncompressed took 1-2% off recover's CPU for stage files 2% larger. Readers take the codec
/// from each column chunk's metadata, so a file may mix them.
struct ColumnPages {
    /// The file's codec, tried.
    codec: CompressionOptions,
    /// The chunk's codec, once chosen.
    chosen: Option<CompressionOptions>,
    /// Pages before the first data page (a dictionary page), held until the codec is chosen.
    waiting: Vec<Page>,
    pages: Vec<CompressedPage>,
}

impl ColumnPages {
    fn new(codec: CompressionOptions) -> ColumnPages {
        let chosen = (codec == CompressionOptions::Uncompressed).then_some(codec);
        ColumnPages {
            codec,
            chosen,
            waiting: Vec::new(),
            pages: Vec::new(),
        }
    }

    fn push(&mut self, page: Page) -> PolarsResult<()> {
        if let Some(codec) = self.chosen {
            self.pages.push(compress(page, vec![], codec)?);
            return Ok(());
        }
        let Page::Data(data) = page else {
            self.waiting.push(page);
            return Ok(());
        };
        let mut tried = Vec::new();
        compression::compress(self.codec, data.buffer(), &mut tried)?;
        let size = data.buffer().len();
        let worth = (tried.len() as f64) <= size as f64 * (1.0 - MIN_SAVING);
        let codec = if worth {
            self.codec
        } else {
            CompressionOptions::Uncompressed
        };
        self.chosen = Some(codec);
        for page in std::mem::take(&mut self.waiting) {
            self.pages.push(compress(page, vec![], codec)?);
        }
        let page = if worth {
            let rows = data.num_rows.unwrap_or(data.num_values());
            CompressedPage::Data(CompressedDataPage::new(
                data.header().clone(),
                CowBuffer::Owned(tried),
                codec.into(),
                size,
                data.descriptor.clone(),
                rows,
            ))
        } else {
            compress(Page::Data(data), vec![], codec)?
        };
        self.pages.push(page);
        Ok(())
    }

    /// The chunk's pages (a chunk without a data page keeps the file's codec).
    fn finish(mut self) -> PolarsResult<Vec<CompressedPage>> {
        let codec = self.chosen.unwrap_or(self.codec);
        for page in std::mem::take(&mut self.waiting) {
            self.pages.push(compress(page, vec![], codec)?);
        }
        Ok(self.pages)
    }
}

/// A column's compressed pages, handed to polars' file writer one at a time.
struct Pages {
    pages: std::vec::IntoIter<CompressedPage>,
    current: Option<CompressedPage>,
}

impl FallibleStreamingIterator for Pages {
    type Item = CompressedPage;
    type Error = PolarsError;

    fn advance(&mut self) -> Result<(), PolarsError> {
        self.current = self.pages.next();
        Ok(())
    }

    fn get(&self) -> Option<&CompressedPage> {
        self.current.as_ref()
    }
}

/// Appends `df` to `out` as one whole Parquet file in `layout`.
pub fn append_file(out: &mut Vec<u8>, df: &mut DataFrame, layout: Layout) -> PolarsResult<()> {
    let writer = Writer::new(out, df.schema(), layout)?;
    writer.write(writer.encode(df)?)?;
    writer.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::{IntoColumn, NewChunkedArray, ParquetReader, SerReader, StringChunked};

    fn frame(ids: &[&str], region: &str) -> DataFrame {
        let ids = StringChunked::from_iter_values("device_id".into(), ids.iter().copied());
        let regions = StringChunked::from_iter_values("region".into(), ids.iter().map(|_| region));
        DataFrame::new(ids.len(), vec![ids.into_column(), regions.into_column()]).unwrap()
    }

    /// Writes `df` to a file at `path` in `layout`, one `encode` and `write`, and reads it back.
    fn written_and_read_back(path: &std::path::Path, df: &DataFrame, layout: Layout) -> DataFrame {
        let writer =
            Writer::new(std::fs::File::create(path).unwrap(), df.schema(), layout).unwrap();
        writer.write(writer.encode(df).unwrap()).unwrap();
        writer.finish().unwrap();
        drop(writer);
        ParquetReader::new(std::fs::File::open(path).unwrap())
            .finish()
            .unwrap()
    }

    /// Each column of the file at `path`, and whether any of its pages has a dictionary.
    fn dictionary_columns(path: &std::path::Path) -> Vec<(String, bool)> {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT path_in_schema, bool_or(encodings LIKE '%DICTIONARY%')
                 FROM parquet_metadata('{}') GROUP BY 1 ORDER BY 1",
                path.display()
            ))
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Row groups encoded on other threads come back in the order written, and the named
    /// columns are plain while the others keep the dictionary polars chooses (for columns this
    /// short polars always takes the dictionary).
    #[test]
    fn groups_encoded_anywhere_read_back_in_order_with_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let parts = [
            frame(&["a", "a", "b"], "eu-west"),
            frame(&["c", "c"], "us-east"),
        ];
        let writer = Writer::new(
            std::fs::File::create(&path).unwrap(),
            parts[0].schema(),
            Layout::Kept {
                plain: &["device_id"],
            },
        )
        .unwrap();
        let encoded: Vec<Encoded> = std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .iter()
                .map(|df| s.spawn(|| writer.encode(df).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for e in encoded {
            writer.write(e).unwrap();
        }
        writer.finish().unwrap();
        drop(writer);

        let back = ParquetReader::new(std::fs::File::open(&path).unwrap())
            .finish()
            .unwrap();
        let mut whole = parts[0].clone();
        whole.vstack_mut(&parts[1]).unwrap();
        assert!(back.equals(&whole), "{back}");

        assert_eq!(
            dictionary_columns(&path),
            [
                ("device_id".to_string(), false),
                ("region".to_string(), true)
            ]
        );
    }

    /// A frame in several chunks is one row group: its plain column's chunks are pages of one
    /// column chunk (statistics over all of them), its dictionary column joined first.
    #[test]
    fn a_frame_in_chunks_is_one_row_group_with_statistics_over_every_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let ids: Vec<String> = (0..2 * MIN_CHUNK_ROWS)
            .map(|i| format!("id-{i:06}"))
            .collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut whole = frame(&ids[..MIN_CHUNK_ROWS], "eu-west");
        whole
            .vstack_mut_owned(frame(&ids[MIN_CHUNK_ROWS..], "us-east"))
            .unwrap();
        assert_eq!(whole.column("device_id").unwrap().n_chunks(), 2);
        let layout = Layout::Kept {
            plain: &["device_id"],
        };
        let back = written_and_read_back(&path, &whole, layout);
        assert!(back.equals(&whole), "{back}");
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let row: (i64, String, String, String) = conn
            .query_row(
                &format!(
                    "SELECT count(DISTINCT row_group_id), min(stats_min_value), \
                     max(stats_max_value), string_agg(DISTINCT encodings, '|' ORDER BY encodings) \
                     FROM parquet_metadata('{}') WHERE path_in_schema = 'device_id'",
                    path.display()
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            (
                1,
                "id-000000".to_string(),
                format!("id-{:06}", 2 * MIN_CHUNK_ROWS - 1),
                "PLAIN, RLE".to_string()
            )
        );
    }

    /// A column chunk is compressed only where compression pays on its first data page: a column
    /// of random numbers and one of dictionary keys over a few random values are written
    /// uncompressed, a column of repeated text compressed; every value reads back.
    #[test]
    fn only_columns_that_shrink_are_compressed() {
        use polars::prelude::{Int64Chunked, NamedFrom, Series};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let n = 50_000usize;
        let random: Vec<i64> = (0..n as u64)
            .map(|i| crate::support::mix(i, 7) as i64)
            .collect();
        let repeated: Vec<String> = (0..n).map(|i| format!("state-{}", i / 1000)).collect();
        let keys: Vec<&str> = (0..n as u64)
            .map(|i| ["north", "south", "east", "west"][(crate::support::mix(i, 3) % 4) as usize])
            .collect();
        let df = DataFrame::new(
            n,
            vec![
                Int64Chunked::from_vec("random".into(), random).into_column(),
                Series::new("repeated".into(), repeated).into_column(),
                Series::new("keys".into(), keys).into_column(),
            ],
        )
        .unwrap();
        let back = written_and_read_back(
            &path,
            &df,
            Layout::Kept {
                plain: &["random", "repeated"],
            },
        );
        assert!(back.equals(&df));
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT path_in_schema, string_agg(DISTINCT compression, '|')
                 FROM parquet_metadata('{}') GROUP BY 1 ORDER BY 1",
                path.display()
            ))
            .unwrap();
        let codecs: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            codecs,
            [
                ("keys".to_string(), "UNCOMPRESSED".to_string()),
                ("random".to_string(), "UNCOMPRESSED".to_string()),
                ("repeated".to_string(), "LZ4_RAW".to_string()),
            ]
        );
    }

    fn text_array<'a>(texts: impl IntoIterator<Item = Option<&'a str>>) -> Utf8ViewArray {
        MutableBinaryViewArray::<str>::from_iter(texts).freeze()
    }

    /// The dictionary built here over a column's chunks is the one polars' cast builds over the
    /// whole column: the same values in the same order and the same keys, for short values
    /// (held in their views), long ones (hashed as bytes) and nulls; and there is none once
    /// more than three quarters of the rows are distinct values, except in arrays of at most
    /// 128 rows.
    #[test]
    fn the_dictionary_is_the_one_polars_builds() {
        let long = "a value longer than twelve bytes";
        let mut texts: Vec<Option<String>> = Vec::new();
        for i in 0..600 {
            texts.push(match i % 7 {
                0 => None,
                1 => Some(String::new()),
                2 => Some(format!("{long} {}", i % 5)),
                3 => Some("exactly12byt".to_string()),
                4 => Some("exactly12by".to_string()),
                _ => Some(format!("v{}", i % 11)),
            });
        }
        let array = text_array(texts.iter().map(|t| t.as_deref()));
        // In two chunks, as a filtered frame's column comes: one dictionary over both.
        let chunks = [
            array.clone().sliced(0, 250).boxed(),
            array.clone().sliced(250, 350).boxed(),
        ];
        let ours = as_dictionary(&chunks).unwrap().expect("a dictionary");
        let dtype =
            ArrowDataType::Dictionary(IntegerType::UInt32, Box::new(array.dtype().clone()), false);
        let theirs =
            polars::polars_compute::cast::cast(&array, &dtype, Default::default()).unwrap();
        let [ours, theirs] = [ours, theirs].map(|a| {
            a.as_any()
                .downcast_ref::<DictionaryArray<u32>>()
                .unwrap()
                .clone()
        });
        assert_eq!(ours.keys(), theirs.keys());
        assert_eq!(
            ours.values().as_ref(),
            theirs.values().as_ref(),
            "values in order of first appearance"
        );
        // The empty text, five long values, two of 11 and 12 bytes, eleven short ones; null is none.
        assert_eq!(ours.values().len(), 1 + 5 + 2 + 11);

        let distinct: Vec<String> = (0..1000).map(|i| format!("id-{i}")).collect();
        let mostly = |n: usize, distinct_share: usize| {
            text_array((0..n).map(|i| Some(distinct[i * distinct_share / 100].as_str())))
        };
        // 750 of 1000 rows distinct: kept; 751: plain. At most 128 rows: always kept.
        assert!(
            as_dictionary(&[mostly(1000, 75).boxed()])
                .unwrap()
                .is_some()
        );
        let over =
            text_array((0..1000).map(|i| Some(if i <= 750 { distinct[i].as_str() } else { "x" })));
        assert!(as_dictionary(&[over.boxed()]).unwrap().is_none());
        assert!(
            as_dictionary(&[mostly(128, 100).boxed()])
                .unwrap()
                .is_some()
        );
    }

    /// A text column tried with a dictionary keeps it while its values repeat and is written
    /// plain when more than three quarters of its values are distinct, as polars decides.
    #[test]
    fn a_text_column_of_mostly_distinct_values_falls_back_to_plain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let ids: Vec<String> = (0..1000).map(|i| format!("id-{i:06}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let df = frame(&ids, "eu-west");
        let back = written_and_read_back(&path, &df, KEPT);
        assert!(back.equals(&df));
        assert_eq!(
            dictionary_columns(&path),
            [
                ("device_id".to_string(), false),
                ("region".to_string(), true)
            ]
        );
    }
}
