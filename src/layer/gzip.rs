//! The gzip framing of an image layer, hashing both sides on the way: the diff_id (sha256
//! of the tar) and the digest and size of the blob.

use std::io::{self, Write};

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use crate::digest::{HashingWriter, Sha256};

/// gzip level of every layer: fixed, so the same tar always gives the same blob.
pub const GZIP_LEVEL: u32 = 6;

/// What identifies a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerDigests {
    /// sha256 of the uncompressed tar.
    pub diff_id: Sha256,
    /// sha256 of the gzip blob.
    pub digest: Sha256,
    /// Size of the gzip blob.
    pub size: u64,
}

/// A writer taking a layer's tar and writing its gzip blob to `W`.
pub struct GzipLayer<W: Write> {
    inner: HashingWriter<GzEncoder<HashingWriter<W>>>,
}

impl<W: Write> GzipLayer<W> {
    /// Starts a blob into `out`.
    pub fn new(out: W) -> Self {
        let gzip = GzBuilder::new()
            .mtime(0)
            .write(HashingWriter::new(out), Compression::new(GZIP_LEVEL));
        Self {
            inner: HashingWriter::new(gzip),
        }
    }

    /// Ends the blob; returns the writer and the layer's digests.
    pub fn finish(self) -> io::Result<(W, LayerDigests)> {
        let (gzip, tar) = self.inner.finish();
        let (mut out, blob) = gzip.finish()?.finish();
        out.flush()?;
        Ok((
            out,
            LayerDigests {
                diff_id: tar.sha256,
                digest: blob.sha256,
                size: blob.len,
            },
        ))
    }
}

impl<W: Write> Write for GzipLayer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
