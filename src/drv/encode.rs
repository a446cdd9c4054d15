//! The canonical encoding of a derivation, the bytes its [`super::DrvHash`] is taken over.
//!
//! Layout (flake-free-docs/derivations.md): the magic `azb-drv\0`, the protocol version as
//! u32 little-endian, then each field in this fixed order as `tag` then value, where a tag
//! is a length-prefixed field name and a value is one of
//! - text: u64 LE byte length, then UTF-8 bytes;
//! - optional text: byte 0 (absent) or byte 1 then text;
//! - list: u64 LE count, then each item as text;
//! - map: u64 LE count, then key text and value text per entry, keys sorted.
//!
//! Changing anything here changes every hash: bump [`PROTOCOL`] and the golden test.

use super::{Derivation, Input};

/// azb's build-protocol version; part of every derivation.
pub const PROTOCOL: u32 = 1;

struct Encoder(Vec<u8>);

impl Encoder {
    fn text(&mut self, value: &str) {
        self.0
            .extend_from_slice(&(value.len() as u64).to_le_bytes());
        self.0.extend_from_slice(value.as_bytes());
    }

    fn tag(&mut self, name: &str) {
        self.text(name);
    }

    fn field(&mut self, name: &str, value: &str) {
        self.tag(name);
        self.text(value);
    }

    fn optional(&mut self, name: &str, value: Option<&str>) {
        self.tag(name);
        match value {
            None => self.0.push(0),
            Some(v) => {
                self.0.push(1);
                self.text(v);
            }
        }
    }

    fn list<'a>(&mut self, name: &str, items: impl ExactSizeIterator<Item = &'a str>) {
        self.tag(name);
        self.0
            .extend_from_slice(&(items.len() as u64).to_le_bytes());
        for item in items {
            self.text(item);
        }
    }
}

/// The canonical bytes of `drv`: the magic, the protocol version, then every input of
/// [`Derivation::inputs`] in its order.
pub(super) fn canonical(drv: &Derivation) -> Vec<u8> {
    let mut e = Encoder(b"azb-drv\0".to_vec());
    e.0.extend_from_slice(&drv.protocol.to_le_bytes());
    for (name, input) in drv.inputs() {
        match input {
            Input::Text(value) => e.field(name, &value),
            Input::Optional(value) => e.optional(name, value),
            Input::List(items) => e.list(name, items.iter().map(String::as_str)),
            Input::Deps(deps) => {
                e.tag(name);
                e.0.extend_from_slice(&(deps.len() as u64).to_le_bytes());
                for (dep, hash) in deps {
                    e.text(dep.as_str());
                    e.text(&hash.to_string());
                }
            }
        }
    }
    e.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drv::{BuilderId, DrvHash};
    use crate::recipe::Platform;

    fn golden() -> Derivation {
        Derivation {
            protocol: PROTOCOL,
            name: "vector".parse().unwrap(),
            platform: Platform::Amd64,
            pg_major: 18,
            commit: "2627c5ff775ae6d7aef0c430121ccf857842d2f2".parse().unwrap(),
            subdir: None,
            build_kind: "pgxs".into(),
            build_flags: vec!["OPTFLAGS=".into()],
            build_packages: vec![],
            builder: BuilderId::new("host:toolchain-0123").unwrap(),
            deps: [("base".parse().unwrap(), DrvHash::from_bytes([7; 32]))].into(),
        }
    }

    /// Pins the encoding: if this changes, every cached artifact is orphaned. Bump PROTOCOL.
    #[test]
    fn golden_drv_hash() {
        assert_eq!(
            golden().hash().to_string(),
            "3411a2ffb9c95da5c933c6572df4446b50bb46fb1437587a2e72f444a7950dc2"
        );
    }

    #[test]
    fn an_empty_builder_identity_is_refused_even_in_a_record() {
        assert!(BuilderId::new("").is_none());
        let mut json = serde_json::to_value(golden()).unwrap();
        json["builder"] = "".into();
        assert!(serde_json::from_value::<Derivation>(json).is_err());
    }

    #[test]
    fn every_input_changes_the_hash_and_none_collide() {
        let base = golden();
        let mut variants = vec![base.clone()];
        let mut push = |f: &dyn Fn(&mut Derivation)| {
            let mut d = base.clone();
            f(&mut d);
            variants.push(d);
        };
        push(&|d| d.protocol += 1);
        push(&|d| d.platform = Platform::Arm64);
        push(&|d| d.pg_major = 17);
        push(&|d| d.commit = "1111111111111111111111111111111111111111".parse().unwrap());
        push(&|d| d.subdir = Some(String::new()));
        push(&|d| d.build_kind = "make".into());
        push(&|d| d.build_flags = vec!["OPTFLAGS".into(), "=".into()]);
        push(&|d| d.build_packages = vec!["OPTFLAGS=".into()]);
        push(&|d| d.builder = BuilderId::new("host:other").unwrap());
        push(&|d| d.deps = [("base".parse().unwrap(), DrvHash::from_bytes([8; 32]))].into());
        push(&|d| d.deps.clear());
        let hashes: std::collections::BTreeSet<String> =
            variants.iter().map(|d| d.hash().to_string()).collect();
        assert_eq!(hashes.len(), variants.len());
    }

    #[test]
    fn changed_inputs_names_what_differs() {
        let old = golden();
        let mut new = old.clone();
        new.commit = "1111111111111111111111111111111111111111".parse().unwrap();
        new.deps
            .insert("extra".parse().unwrap(), DrvHash::from_bytes([1; 32]));
        assert_eq!(new.changed_inputs(&old), ["commit", "deps.extra"]);
        assert!(old.changed_inputs(&old).is_empty());
    }
}
