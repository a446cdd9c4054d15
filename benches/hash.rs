//! blake3 throughput of azb's object hashing (`ObjectHash::of`) on an in-memory buffer.
//! Run by benches/bench.sh next to `b3sum` on the same bytes; prints MB/s.

use std::time::Instant;

fn main() {
    let size: usize = std::env::var("AZB_BENCH_HASH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
        << 20;
    // Pseudo-random bytes (xorshift), so nothing compresses or repeats trivially.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    if let Some(path) = std::env::args().nth(1).filter(|a| a != "--bench") {
        fs_err::write(&path, &data).expect("write the sample for b3sum");
    }
    let mut best = f64::MAX;
    let mut hash = None;
    for _ in 0..5 {
        let start = Instant::now();
        hash = Some(azb::digest::ObjectHash::of(&data));
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "azb ObjectHash::of: {} MiB in {:.1} ms (best of 5): {:.0} MiB/s  {}",
        size >> 20,
        best * 1e3,
        (size >> 20) as f64 / best,
        hash.unwrap()
    );
}
