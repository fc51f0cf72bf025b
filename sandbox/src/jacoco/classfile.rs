//! The smallest class files JaCoCo's report engine analyses like real ones: one public class
//! per simulated Train-Ticket class, a default constructor and one `public void m()` per
//! method, each straight-line (`return`), with a `LineNumberTable` and `SourceFile` so the
//! report has lines to count and a source file to show.
//!
//! Probes: JaCoCo (`org.jacoco.core.internal.flow.ClassProbesAdapter.visitMethod`) numbers
//! probes per class in the order methods appear in the class file, and
//! `MethodProbesAdapter.visitInsn` puts one probe on every `xRETURN`/`ATHROW`; a method without
//! jumps gets no other probe. So each method here has exactly one probe, `<init>` first:
//! probe `i` is method `i` of [`SimClass::methods_with_init`].
//!
//! Class ids: `org.jacoco.core.internal.data.CRC64.classId` (ISO 3309 polynomial, reflected
//! `0xd800000000000000`, initial 0, table-driven; Java 9 class files are hashed as if their
//! major version were 52, an early-Java-9 workaround JaCoCo kept).

use std::sync::OnceLock;

/// Java 8: Debian's JaCoCo 0.8.6 agent and report engine read it, and no `StackMapTable`
/// is needed (the methods have no branches anyway).
const MAJOR_VERSION: u16 = 52;

/// The source line of the class declaration (and of its default constructor, as javac
/// assigns it); method `i` sits on line `FIRST_METHOD_LINE + i`.
const CLASS_LINE: u16 = 3;
const FIRST_METHOD_LINE: u16 = 4;

const ACC_PUBLIC: u16 = 0x0001;
const ACC_SUPER: u16 = 0x0020;

/// One simulated class: a binary name with dots (`order.service.OrderServiceImpl`) and its
/// methods (no `<init>`: every class gets a default constructor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimClass {
    pub name: String,
    pub methods: Vec<String>,
}

impl SimClass {
    /// `order/service/OrderServiceImpl`: the internal name exec data and class files use.
    pub fn vm_name(&self) -> String {
        self.name.replace('.', "/")
    }

    /// `OrderServiceImpl.java`.
    pub fn source_file(&self) -> String {
        let simple = self.name.rsplit('.').next().unwrap_or(&self.name);
        format!("{simple}.java")
    }

    /// The methods in class-file order, `<init>` first: probe `i` belongs to entry `i`.
    pub fn methods_with_init(&self) -> Vec<&str> {
        std::iter::once("<init>")
            .chain(self.methods.iter().map(String::as_str))
            .collect()
    }

    /// The Java source whose line numbers the class file's `LineNumberTable` uses (for the
    /// HTML report's source view).
    pub fn java_source(&self) -> String {
        let (pkg, simple) = match self.name.rsplit_once('.') {
            Some((p, s)) => (Some(p), s),
            None => (None, self.name.as_str()),
        };
        let mut s = match pkg {
            Some(p) => format!("package {p};\n\n"),
            None => "\n\n".to_string(),
        };
        s.push_str(&format!("public class {simple} {{\n"));
        for m in &self.methods {
            s.push_str(&format!("    public void {m}() {{}}\n"));
        }
        s.push_str("}\n");
        s
    }

    /// The class file's bytes.
    pub fn class_bytes(&self) -> Vec<u8> {
        let mut pool = Pool::default();
        let this = pool.class(&self.vm_name());
        let object = pool.class("java/lang/Object");
        let init = pool.utf8("<init>");
        let void = pool.utf8("()V");
        let nat = pool.entry(12, &[init, void]);
        let object_init = pool.entry(10, &[object, nat]);
        let code = pool.utf8("Code");
        let lines = pool.utf8("LineNumberTable");
        let source_attr = pool.utf8("SourceFile");
        let source = pool.utf8(&self.source_file());
        let names: Vec<u16> = self.methods.iter().map(|m| pool.utf8(m)).collect();

        let mut b = Vec::with_capacity(256 + 64 * self.methods.len());
        b.extend_from_slice(&0xCAFE_BABEu32.to_be_bytes());
        put_u16(&mut b, 0);
        put_u16(&mut b, MAJOR_VERSION);
        put_u16(&mut b, pool.count());
        b.extend_from_slice(&pool.bytes);
        put_u16(&mut b, ACC_PUBLIC | ACC_SUPER);
        put_u16(&mut b, this);
        put_u16(&mut b, object);
        put_u16(&mut b, 0); // interfaces
        put_u16(&mut b, 0); // fields
        put_u16(&mut b, 1 + self.methods.len() as u16);
        // aload_0; invokespecial Object.<init>()V; return
        let [hi, lo] = object_init.to_be_bytes();
        let ctor = [0x2A, 0xB7, hi, lo, 0xB1];
        method(&mut b, init, void, code, lines, 1, &ctor, CLASS_LINE);
        for (i, name) in names.iter().enumerate() {
            let line = FIRST_METHOD_LINE + i as u16;
            method(&mut b, *name, void, code, lines, 0, &[0xB1], line);
        }
        put_u16(&mut b, 1); // class attributes
        put_u16(&mut b, source_attr);
        b.extend_from_slice(&2u32.to_be_bytes());
        put_u16(&mut b, source);
        b
    }
}

/// One `public void` method: a `Code` attribute with a one-entry `LineNumberTable`.
#[allow(clippy::too_many_arguments)]
fn method(
    b: &mut Vec<u8>,
    name: u16,
    desc: u16,
    code_attr: u16,
    lines_attr: u16,
    max_stack: u16,
    code: &[u8],
    line: u16,
) {
    put_u16(b, ACC_PUBLIC);
    put_u16(b, name);
    put_u16(b, desc);
    put_u16(b, 1);
    put_u16(b, code_attr);
    // max_stack, max_locals, code_length, code, exception table, attribute count, the table.
    let lines_len = 2 + 4;
    let len = 2 + 2 + 4 + code.len() + 2 + 2 + (2 + 4 + lines_len);
    b.extend_from_slice(&(len as u32).to_be_bytes());
    put_u16(b, max_stack);
    put_u16(b, 1); // `this`
    b.extend_from_slice(&(code.len() as u32).to_be_bytes());
    b.extend_from_slice(code);
    put_u16(b, 0);
    put_u16(b, 1);
    put_u16(b, lines_attr);
    b.extend_from_slice(&(lines_len as u32).to_be_bytes());
    put_u16(b, 1);
    put_u16(b, 0); // start_pc
    put_u16(b, line);
}

fn put_u16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_be_bytes());
}

/// The constant pool being built: entries are numbered from 1.
#[derive(Default)]
struct Pool {
    bytes: Vec<u8>,
    next: u16,
}

impl Pool {
    fn count(&self) -> u16 {
        self.next + 1
    }

    fn push(&mut self, entry: &[u8]) -> u16 {
        self.bytes.extend_from_slice(entry);
        self.next += 1;
        self.next
    }

    fn utf8(&mut self, s: &str) -> u16 {
        let mut e = vec![1];
        let m = modified_utf8(s);
        e.extend_from_slice(&(m.len() as u16).to_be_bytes());
        e.extend_from_slice(&m);
        self.push(&e)
    }

    fn class(&mut self, vm_name: &str) -> u16 {
        let name = self.utf8(vm_name);
        self.entry(7, &[name])
    }

    fn entry(&mut self, tag: u8, refs: &[u16]) -> u16 {
        let mut e = vec![tag];
        for r in refs {
            e.extend_from_slice(&r.to_be_bytes());
        }
        self.push(&e)
    }
}

/// Java's modified UTF-8 (class files, `DataOutputStream.writeUTF`): NUL as `C0 80`,
/// supplementary characters as two encoded surrogates.
pub fn modified_utf8(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for unit in s.encode_utf16() {
        match unit {
            0x0001..=0x007F => out.push(unit as u8),
            0x0000 | 0x0080..=0x07FF => {
                out.push(0xC0 | (unit >> 6) as u8);
                out.push(0x80 | (unit & 0x3F) as u8);
            }
            _ => {
                out.push(0xE0 | (unit >> 12) as u8);
                out.push(0x80 | ((unit >> 6) & 0x3F) as u8);
                out.push(0x80 | (unit & 0x3F) as u8);
            }
        }
    }
    out
}

/// JaCoCo's class id: `CRC64.classId(bytes)`.
pub fn class_id(bytes: &[u8]) -> u64 {
    const V9: u8 = 53;
    const V1_8: u8 = 52;
    if bytes.len() > 7 && bytes[6] == 0 && bytes[7] == V9 {
        let sum = crc64(0, &bytes[..7]);
        let sum = crc64(sum, &[V1_8]);
        return crc64(sum, &bytes[8..]);
    }
    crc64(0, bytes)
}

fn crc64(mut sum: u64, bytes: &[u8]) -> u64 {
    let table = table();
    for &b in bytes {
        sum = (sum >> 8) ^ table[((sum ^ u64::from(b)) & 0xFF) as usize];
    }
    sum
}

fn table() -> &'static [u64; 256] {
    static TABLE: OnceLock<[u64; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        const POLY64REV: u64 = 0xd800_0000_0000_0000;
        let mut t = [0u64; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut v = i as u64;
            for _ in 0..8 {
                v = if v & 1 == 1 {
                    (v >> 1) ^ POLY64REV
                } else {
                    v >> 1
                };
            }
            *slot = v;
        }
        t
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> SimClass {
        SimClass {
            name: "order.service.OrderServiceImpl".into(),
            methods: vec!["create".into(), "queryOrders".into()],
        }
    }

    #[test]
    fn class_files_are_well_formed_and_deterministic() {
        let b = order().class_bytes();
        assert_eq!(&b[..4], &[0xCA, 0xFE, 0xBA, 0xBE]);
        assert_eq!(u16::from_be_bytes([b[6], b[7]]), MAJOR_VERSION);
        assert_eq!(b, order().class_bytes());
        // The constant pool count is one more than the entries (12 fixed + 2 names).
        assert_eq!(u16::from_be_bytes([b[8], b[9]]), 15);
        // Ends with the SourceFile attribute pointing at its name.
        assert_eq!(&b[b.len() - 8..b.len() - 2], &[0, 0x0B, 0, 0, 0, 2]);
        let other = SimClass {
            methods: vec!["create".into()],
            ..order()
        };
        assert_ne!(class_id(&b), class_id(&other.class_bytes()));
    }

    #[test]
    fn sources_put_each_method_on_its_line() {
        let src = order().java_source();
        let lines: Vec<&str> = src.lines().collect();
        assert_eq!(lines[0], "package order.service;");
        assert_eq!(
            lines[usize::from(CLASS_LINE) - 1],
            "public class OrderServiceImpl {"
        );
        assert_eq!(
            lines[usize::from(FIRST_METHOD_LINE)],
            "    public void queryOrders() {}"
        );
        assert_eq!(order().source_file(), "OrderServiceImpl.java");
        assert_eq!(
            order().methods_with_init(),
            ["<init>", "create", "queryOrders"]
        );
    }

    #[test]
    fn crc64_matches_the_iso_3309_check_value_and_the_java9_rule() {
        // The table of the reflected polynomial (its entries 1 and 128 follow from the
        // definition); the id against real JaCoCo is pinned by tests/coverage.rs.
        assert_eq!(table()[1], 0x01b0_0000_0000_0000);
        assert_eq!(table()[128], 0xd800_0000_0000_0000);
        assert_eq!(class_id(&[]), 0);
        let mut v9 = order().class_bytes();
        v9[7] = 53;
        assert_eq!(class_id(&v9), class_id(&order().class_bytes()));
        assert_eq!(modified_utf8("a\0é"), [b'a', 0xC0, 0x80, 0xC3, 0xA9]);
        assert_eq!(modified_utf8("😀").len(), 6);
    }
}
