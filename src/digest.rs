//! Content digests: [`ObjectHash`] (blake3, names store objects), [`Sha256`] (OCI digests,
//! layer diff_ids) and a writer that hashes what passes through it.
//!
//! Owns hashing and the text form of hashes. Knows nothing of the store layout or of OCI
//! documents; those modules wrap these types.

use std::io::{self, Write};
use std::str::FromStr;

use sha2::Digest as _;

/// A hash text that is not the expected number of lowercase hex digits.
#[derive(Debug, thiserror::Error)]
#[error("`{text}` is not a {what}: expected {len} lowercase hex digits")]
pub struct HashParseError {
    /// The rejected text.
    pub text: String,
    /// What kind of hash was expected.
    pub what: &'static str,
    /// The expected number of hex digits.
    pub len: usize,
}

/// Parses `len` lowercase hex digits into bytes.
pub(crate) fn parse_hex<const N: usize>(
    text: &str,
    what: &'static str,
) -> Result<[u8; N], HashParseError> {
    let bad = || HashParseError {
        text: text.to_owned(),
        what,
        len: N * 2,
    };
    if text.len() != N * 2 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|_| bad())?;
    Ok(out)
}

/// Declares a hash newtype of `$len` bytes with hex `Display`/`FromStr`/serde and
/// `short()`. `FromStr` fails with [`HashParseError`], or with `$err` (which must be
/// `From<HashParseError>`) when one is given.
macro_rules! hash_newtype {
    ($(#[$doc:meta])* $name:ident, $len:literal, $what:literal) => {
        $crate::digest::hash_newtype!(
            $(#[$doc])* $name, $len, $what, $crate::digest::HashParseError
        );
    };
    ($(#[$doc:meta])* $name:ident, $len:literal, $what:literal, $err:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; $len]);

        impl $name {
            /// The raw digest bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Wraps raw digest bytes.
            pub fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// The first 12 hex digits, for people.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..6])
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $err;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::digest::parse_hex::<$len>(s, $what)
                    .map(Self)
                    .map_err(<$err>::from)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use hash_newtype;

hash_newtype!(
    /// blake3 of an object's uncompressed content: the name of a store object.
    ObjectHash, 32, "blake3 hash"
);
hash_newtype!(
    /// sha256 of some bytes, as OCI digests and diff_ids use it.
    Sha256, 32, "sha256 hash"
);

impl ObjectHash {
    /// Hashes a byte slice.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
}

impl Sha256 {
    /// Hashes a byte slice.
    pub fn of(bytes: &[u8]) -> Self {
        Self(sha2::Sha256::digest(bytes).into())
    }

    /// The OCI digest `sha256:<hex>`.
    pub fn oci_digest(&self) -> oci_spec::image::Digest {
        oci_spec::image::Sha256Digest::from_str(&self.to_string())
            .expect("64 lowercase hex digits are a valid sha256 digest")
            .into()
    }
}

/// A writer that hashes everything written through it with blake3 and sha256, and counts
/// the bytes, before passing it on.
pub struct HashingWriter<W> {
    inner: W,
    blake3: blake3::Hasher,
    sha256: sha2::Sha256,
    len: u64,
}

/// What a [`HashingWriter`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digests {
    /// blake3 of the bytes.
    pub object: ObjectHash,
    /// sha256 of the bytes.
    pub sha256: Sha256,
    /// How many bytes.
    pub len: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            blake3: blake3::Hasher::new(),
            sha256: sha2::Sha256::new(),
            len: 0,
        }
    }

    /// Returns the inner writer and the digests of everything written.
    pub fn finish(self) -> (W, Digests) {
        let digests = Digests {
            object: ObjectHash(*self.blake3.finalize().as_bytes()),
            sha256: Sha256(self.sha256.finalize().into()),
            len: self.len,
        };
        (self.inner, digests)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.blake3.update(&buf[..n]);
        self.sha256.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes everything read through it, as [`HashingWriter`] does for writes.
pub struct HashingReader<R> {
    inner: R,
    hash: HashingWriter<io::Sink>,
}

impl<R: io::Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hash: HashingWriter::new(io::sink()),
        }
    }

    /// The digests of everything read so far.
    pub fn finish(self) -> Digests {
        self.hash.finish().1
    }
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_writer_matches_one_shot_hashes() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (bytes, d) = w.finish();
        assert_eq!(bytes, b"hello world");
        assert_eq!(d.object, ObjectHash::of(b"hello world"));
        assert_eq!(d.sha256, Sha256::of(b"hello world"));
        assert_eq!(
            d.sha256.to_string(),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(d.len, 11);
    }

    #[test]
    fn parse_rejects_upper_case_and_wrong_length() {
        let hex = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
        assert!(hex.parse::<Sha256>().is_ok());
        assert!(hex.to_uppercase().parse::<Sha256>().is_err());
        assert!(hex[1..].parse::<Sha256>().is_err());
        assert_eq!(
            hex.parse::<Sha256>().unwrap().oci_digest().to_string(),
            format!("sha256:{hex}")
        );
    }
}
