//! How many threads Sentinel uses, and the one parallel pattern the writing stages share: produce
//! numbered pieces on worker threads, consume them in order on the calling thread.
//!
//! Generation and chaos build and Parquet-encode row groups on the workers while the calling thread
//! writes the finished ones in order, so the output never depends on the thread count, and at most
//! a few pieces (threads + 2) are in memory at once, whatever the size of the run.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use anyhow::Result;

static THREADS: OnceLock<usize> = OnceLock::new();

/// Sets the thread count for this process (`--threads`); the first call wins.
pub fn set_threads(n: usize) {
    let _ = THREADS.set(n.max(1));
}

/// The thread count: `--threads`, else one per core.
pub fn threads() -> usize {
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Calls `produce(i)` for i in 0..count on worker threads and `consume(i, piece)` on the calling
/// thread in increasing i. Stops at the first error, which it returns.
pub fn ordered<T: Send>(
    count: u64,
    produce: impl Fn(u64) -> Result<T> + Sync,
    mut consume: impl FnMut(u64, T) -> Result<()>,
) -> Result<()> {
    let workers = threads().min(count.max(1) as usize);
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<(u64, Result<T>)>(workers);
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, stop, produce) = (&next, &stop, &produce);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || tx.send((i, produce(i))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut want = 0;
        let result = (|| {
            for (i, piece) in &rx {
                pending.insert(i, piece);
                while let Some(piece) = pending.remove(&want) {
                    consume(want, piece?)?;
                    want += 1;
                }
            }
            Ok(())
        })();
        // On an error, let the workers finish the piece they hold and stop.
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        result
    })
}
