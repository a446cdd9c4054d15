//! The ELF header check: which machine an ELF file is built for, so an arm64 image never
//! receives an x86-64 library. Reads only `e_ident` and `e_machine`; knows nothing else of
//! ELF.

/// `\x7fELF`, the first four bytes of every ELF file.
const MAGIC: &[u8; 4] = b"\x7fELF";
/// Offset of `e_ident[EI_CLASS]`: 1 = 32-bit, 2 = 64-bit.
const EI_CLASS: usize = 4;
/// Offset of `e_ident[EI_DATA]`: 1 = little-endian, 2 = big-endian.
const EI_DATA: usize = 5;
/// Offset of `e_machine` (the same in 32- and 64-bit headers).
const E_MACHINE: usize = 18;

/// Bytes of a file's start that [`machine`] needs.
pub const HEADER_LEN: usize = E_MACHINE + 2;

/// The `e_machine` of an ELF file, from its first bytes; `None` when `header` does not
/// start with a well-formed ELF identification (not an ELF file).
pub fn machine(header: &[u8]) -> Option<u16> {
    if header.len() < HEADER_LEN || !header.starts_with(MAGIC) {
        return None;
    }
    if !matches!(header[EI_CLASS], 1 | 2) {
        return None;
    }
    let bytes = [header[E_MACHINE], header[E_MACHINE + 1]];
    match header[EI_DATA] {
        1 => Some(u16::from_le_bytes(bytes)),
        2 => Some(u16::from_be_bytes(bytes)),
        _ => None,
    }
}

/// A person's name for an `e_machine` value.
pub fn machine_name(machine: u16) -> String {
    match machine {
        3 => "i386".to_owned(),
        40 => "arm".to_owned(),
        62 => "x86-64".to_owned(),
        183 => "aarch64".to_owned(),
        243 => "riscv".to_owned(),
        other => format!("ELF machine {other}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF header for `machine`, 64-bit, in the given byte order.
    pub(crate) fn header(machine: u16, little_endian: bool) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(MAGIC);
        h[EI_CLASS] = 2;
        h[EI_DATA] = if little_endian { 1 } else { 2 };
        let bytes = if little_endian {
            machine.to_le_bytes()
        } else {
            machine.to_be_bytes()
        };
        h[E_MACHINE..E_MACHINE + 2].copy_from_slice(&bytes);
        h
    }

    #[test]
    fn reads_the_machine_in_both_byte_orders() {
        assert_eq!(machine(&header(62, true)), Some(62));
        assert_eq!(machine(&header(183, true)), Some(183));
        assert_eq!(machine(&header(183, false)), Some(183));
    }

    #[test]
    fn other_files_are_not_elf() {
        assert_eq!(machine(b"#!/bin/sh\necho hello world\n"), None);
        assert_eq!(machine(b"\x7fELF"), None, "too short");
        let mut bad_class = header(62, true);
        bad_class[EI_CLASS] = 7;
        assert_eq!(machine(&bad_class), None);
    }

    #[test]
    fn machines_have_names() {
        assert_eq!(machine_name(62), "x86-64");
        assert_eq!(machine_name(183), "aarch64");
        assert_eq!(machine_name(9), "ELF machine 9");
    }
}
