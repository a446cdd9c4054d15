//! Target platforms azb builds for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A target platform: the OS is always Linux.
/// Written as text (`"linux/amd64"`), in RON, JSON and as map keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Platform {
    /// linux/amd64 (x86-64).
    Amd64,
    /// linux/arm64 (aarch64).
    Arm64,
}

impl Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Platform {
    /// Every platform, in a fixed order.
    pub const ALL: [Platform; 2] = [Platform::Amd64, Platform::Arm64];

    /// `linux/amd64` or `linux/arm64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Amd64 => "linux/amd64",
            Platform::Arm64 => "linux/arm64",
        }
    }

    /// The OCI architecture name (`amd64`, `arm64`).
    pub fn oci_arch(self) -> &'static str {
        match self {
            Platform::Amd64 => "amd64",
            Platform::Arm64 => "arm64",
        }
    }

    /// The ELF `e_machine` value of this platform's executables.
    pub fn elf_machine(self) -> u16 {
        match self {
            Platform::Amd64 => 62,  // EM_X86_64
            Platform::Arm64 => 183, // EM_AARCH64
        }
    }

    /// The GNU target triple (`x86_64-linux-gnu`, `aarch64-linux-gnu`).
    pub fn gnu_triple(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64-linux-gnu",
            Platform::Arm64 => "aarch64-linux-gnu",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A platform name that is neither amd64 nor arm64.
#[derive(Debug, thiserror::Error)]
#[error("unknown platform `{0}`: expected amd64, arm64, linux/amd64 or linux/arm64")]
pub struct UnknownPlatform(pub String);

impl FromStr for Platform {
    type Err = UnknownPlatform;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "amd64" | "linux/amd64" | "x86_64" => Ok(Platform::Amd64),
            "arm64" | "linux/arm64" | "aarch64" => Ok(Platform::Arm64),
            other => Err(UnknownPlatform(other.to_owned())),
        }
    }
}
