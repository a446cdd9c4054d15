//! Signing and checking realisations: ed25519 over a canonical fingerprint of everything a
//! realisation says that reaches an image (derivation, name, platform, object hash and size,
//! layer diff_id, digest and size, builder identity, source time). Keys are named:
//! `name:<64 hex>` (secret: the 32-byte seed; public: the 32-byte point); a signature is
//! `name:<128 hex>`.

use std::fmt;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::Error;
use crate::fs::{FsError, err};
use crate::store::Realisation;

/// The canonical bytes a signature covers.
pub fn fingerprint(record: &Realisation) -> Vec<u8> {
    let fields = [
        "azb-realisation-1".to_owned(),
        record.drv.to_string(),
        record.name.to_string(),
        record.platform.to_string(),
        record.object.to_string(),
        record.tar_size.to_string(),
        record.layer.diff_id.to_string(),
        record.layer.digest.to_string(),
        record.layer.size.to_string(),
        record.builder.clone(),
        record.source_time.to_string(),
    ];
    fields.join("\n").into_bytes()
}

/// Splits `name:hex` into its name and `N` bytes.
fn named<const N: usize>(text: &str, what: &'static str) -> Result<(String, [u8; N]), Error> {
    let bad = |why: &str| Error::BadKey {
        what,
        why: why.to_owned(),
    };
    let (name, hex_part) = text
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| bad("expected NAME:HEX"))?;
    if name.is_empty() || name.chars().any(|c| c.is_whitespace()) {
        return Err(bad("the name is empty or holds spaces"));
    }
    let mut bytes = [0u8; N];
    hex::decode_to_slice(hex_part, &mut bytes)
        .map_err(|_| bad(&format!("expected {} hex digits after the name", N * 2)))?;
    Ok((name.to_owned(), bytes))
}

/// A named public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    key: VerifyingKey,
}

impl PublicKey {
    /// Parses `name:<64 hex>`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let (name, bytes) = named::<32>(text, "public key")?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| Error::BadKey {
            what: "public key",
            why: "not a valid ed25519 point".to_owned(),
        })?;
        Ok(Self { name, key })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, hex::encode(self.key.as_bytes()))
    }
}

/// A named secret key.
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}:…)", self.name)
    }
}

impl SecretKey {
    /// A new key named `name`, from the system's random source.
    pub fn generate(name: &str) -> Result<Self, Error> {
        let mut seed = [0u8; 32];
        let random = Path::new("/dev/urandom");
        let mut file = err::File::open(random).map_err(|e| FsError::new("open", random, e))?;
        std::io::Read::read_exact(&mut file, &mut seed)
            .map_err(|e| FsError::new("read", random, e))?;
        Self::parse(&format!("{name}:{}", hex::encode(seed)))
    }

    /// Parses `name:<64 hex>` (the seed).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let (name, seed) = named::<32>(text, "secret key")?;
        Ok(Self {
            name,
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Reads a key file written by `azb cache keygen`.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = err::read_to_string(path).map_err(|e| FsError::new("read", path, e))?;
        Self::parse(&text)
    }

    /// Writes the key file (`name:<64 hex>` and a newline) at `path`, which must not exist,
    /// readable by its owner only.
    pub fn write_new(&self, path: &Path) -> Result<(), Error> {
        use fs_err::os::unix::fs::OpenOptionsExt;
        use std::io::Write;
        let text = format!("{}:{}\n", self.name, hex::encode(self.key.to_bytes()));
        let mut file = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| FsError::new("create key file", path, e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| FsError::new("write key file", path, e))?;
        Ok(())
    }

    /// Its public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// The signature of `record`'s fingerprint, as `name:<128 hex>`.
    pub fn sign(&self, record: &Realisation) -> String {
        let signature = self.key.sign(&fingerprint(record));
        format!("{}:{}", self.name, hex::encode(signature.to_bytes()))
    }
}

/// Why a realisation is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It carries no signature.
    #[error("it is not signed")]
    Unsigned,
    /// Its signatures are by keys this machine does not trust.
    #[error("it is signed only by untrusted keys ({})", .0.join(", "))]
    Untrusted(Vec<String>),
    /// A trusted key's signature does not match its content.
    #[error("the signature by `{0}` does not match its content (tampered)")]
    BadSignature(String),
}

/// The keys this machine trusts.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    keys: Vec<PublicKey>,
}

impl Trust {
    /// Trusts these keys.
    pub fn new(keys: Vec<PublicKey>) -> Self {
        Self { keys }
    }

    /// Whether any key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The name of the trusted key that signed `record`, or why none did. A signature by a
    /// trusted key that does not verify is a refusal even when another one would.
    pub fn check(&self, record: &Realisation) -> Result<String, Refusal> {
        if record.signatures.is_empty() {
            return Err(Refusal::Unsigned);
        }
        let fingerprint = fingerprint(record);
        let mut untrusted = Vec::new();
        let mut good = None;
        for text in &record.signatures {
            let Some((name, hex_part)) = text.rsplit_once(':') else {
                untrusted.push(text.clone());
                continue;
            };
            let Some(key) = self.keys.iter().find(|k| k.name == name) else {
                untrusted.push(name.to_owned());
                continue;
            };
            let mut bytes = [0u8; 64];
            let verified = hex::decode_to_slice(hex_part, &mut bytes).is_ok()
                && key
                    .key
                    .verify(&fingerprint, &Signature::from_bytes(&bytes))
                    .is_ok();
            if !verified {
                return Err(Refusal::BadSignature(name.to_owned()));
            }
            good.get_or_insert_with(|| name.to_owned());
        }
        good.ok_or(Refusal::Untrusted(untrusted))
    }
}
