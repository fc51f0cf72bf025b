//! The server side of JaCoCo's wire format: what `org.jacoco.core.data.ExecutionDataWriter`
//! and `org.jacoco.core.runtime.RemoteControlWriter` write through a Java `DataOutputStream`
//! (big-endian; `writeUTF` = u16 length + modified UTF-8; `writeBooleanArray` = var-int
//! length, then the bits packed LSB first).

use super::classfile::modified_utf8;

pub const BLOCK_HEADER: u8 = 0x01;
pub const BLOCK_SESSION_INFO: u8 = 0x10;
pub const BLOCK_EXECUTION_DATA: u8 = 0x11;
pub const BLOCK_CMD_OK: u8 = 0x20;
pub const BLOCK_CMD_DUMP: u8 = 0x40;
/// `ExecutionDataWriter.MAGIC_NUMBER` and `FORMAT_VERSION` (0x1007 since JaCoCo 0.7.5).
pub const MAGIC: u16 = 0xC0C0;
pub const FORMAT_VERSION: u16 = 0x1007;

/// `ExecutionDataWriter`'s constructor writes this once per stream.
pub fn header(out: &mut Vec<u8>) {
    out.push(BLOCK_HEADER);
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
}

/// `visitSessionInfo`.
pub fn session_info(out: &mut Vec<u8>, id: &str, start_ms: i64, dump_ms: i64) {
    out.push(BLOCK_SESSION_INFO);
    utf(out, id);
    out.extend_from_slice(&start_ms.to_be_bytes());
    out.extend_from_slice(&dump_ms.to_be_bytes());
}

/// `visitClassExecution`: written only when a probe was hit (`ExecutionData.hasHits()`).
pub fn class_execution(out: &mut Vec<u8>, id: u64, vm_name: &str, probes: &[bool]) {
    if !probes.iter().any(|&p| p) {
        return;
    }
    out.push(BLOCK_EXECUTION_DATA);
    out.extend_from_slice(&id.to_be_bytes());
    utf(out, vm_name);
    bools(out, probes);
}

/// `DataOutputStream.writeUTF`; longer strings are cut at 65535 bytes (JaCoCo would throw:
/// the simulated names are far shorter).
fn utf(out: &mut Vec<u8>, s: &str) {
    let mut b = modified_utf8(s);
    b.truncate(usize::from(u16::MAX));
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(&b);
}

/// `CompactDataOutput.writeBooleanArray`.
fn bools(out: &mut Vec<u8>, values: &[bool]) {
    let mut n = values.len() as u32;
    loop {
        let low = (n & 0x7F) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            break;
        }
        out.push(low | 0x80);
    }
    for chunk in values.chunks(8) {
        let mut byte = 0u8;
        for (i, &v) in chunk.iter().enumerate() {
            if v {
                byte |= 1 << i;
            }
        }
        out.push(byte);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_follow_the_documented_layout() {
        let mut b = Vec::new();
        header(&mut b);
        session_info(&mut b, "test", 1, 2);
        class_execution(&mut b, 42, "a/B", &[true, false, true]);
        class_execution(&mut b, 43, "a/C", &[false, false]);
        b.push(BLOCK_CMD_OK);
        assert_eq!(
            b,
            [
                0x01, 0xC0, 0xC0, 0x10, 0x07, //
                0x10, 0x00, 0x04, b't', b'e', b's', b't', //
                0, 0, 0, 0, 0, 0, 0, 1, //
                0, 0, 0, 0, 0, 0, 0, 2, //
                0x11, 0, 0, 0, 0, 0, 0, 0, 42, //
                0x00, 0x03, b'a', b'/', b'B', //
                0x03, 0x05, //
                0x20,
            ]
        );
        let mut long = Vec::new();
        bools(&mut long, &[true; 130]);
        assert_eq!(&long[..2], &[0x82, 0x01]);
        assert_eq!(long.len(), 2 + 17);
        assert_eq!(long[18], 0b11);
    }
}
