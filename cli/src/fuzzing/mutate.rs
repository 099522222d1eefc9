//! Mutations: byte-level ones for every input, tree-level ones for JSON, and checksum repair for
//! the formats whose checksums would otherwise reject nearly every mutant at the first check
//! (PNG chunk CRCs, the CRC-32s of a PyTorch checkpoint's zip entries).

use serde_json::Value;

/// How a target's input is built, which decides the mutations that suit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// JSON text: tree mutations of the parsed value, plus byte mutations of the text.
    Json,
    /// Image files: byte mutations; PNG chunk CRCs are repaired most of the time.
    Image,
    /// A zip archive (PyTorch checkpoints): byte mutations; entry CRCs repaired.
    Zip,
    /// Any other binary format (Burnpack).
    Binary,
}

/// SplitMix64: small, fast and good enough to choose mutations; seeded per worker.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Integers that sit on the edges parsers get wrong: zero, signs, powers of two and their
/// neighbours, the maxima of each width.
const INTERESTING: [u64; 16] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// Tokens spliced into text inputs.
const JSON_TOKENS: [&str; 16] = [
    "{", "}", "[", "]", ",", ":", "\"", "null", "true", "-", "1e999", "NaN", "0", "-1", "\\u0000",
    "\"\":",
];

/// Mutates `input` (a corpus entry) into a new candidate; `other` is another corpus entry to
/// splice from. The result is at most `max_len` bytes.
pub fn mutate(
    kind: InputKind,
    input: &[u8],
    other: &[u8],
    rng: &mut Rng,
    max_len: usize,
) -> Vec<u8> {
    let mut out = match kind {
        InputKind::Json if rng.chance(0.6) => mutate_json(input, other, rng),
        _ => None,
    }
    .unwrap_or_else(|| {
        let mut b = input.to_vec();
        for _ in 0..1 + rng.below(4) {
            mutate_bytes(&mut b, other, kind == InputKind::Json, rng);
        }
        b
    });
    match kind {
        InputKind::Image if rng.chance(0.8) => fix_png_crcs(&mut out),
        InputKind::Zip if rng.chance(0.9) => fix_zip_crcs(&mut out),
        _ => {}
    }
    out.truncate(max_len);
    out
}

/// One byte-level mutation in place.
pub fn mutate_bytes(b: &mut Vec<u8>, other: &[u8], text: bool, rng: &mut Rng) {
    let len = b.len();
    match rng.below(if text { 12 } else { 11 }) {
        0 if len > 0 => {
            let i = rng.below(len);
            b[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            b[i] = rng.next_u64() as u8;
        }
        2 if len > 0 => {
            let i = rng.below(len);
            b[i] = *rng.pick(&INTERESTING) as u8;
        }
        3 | 4 if len > 0 => {
            // An interesting integer of 2, 4 or 8 bytes, either byte order.
            let width = [2usize, 4, 8][rng.below(3)];
            let mut v = *rng.pick(&INTERESTING);
            if rng.chance(0.3) {
                v = v.wrapping_neg();
            }
            let bytes = if rng.chance(0.5) {
                v.to_le_bytes()
            } else {
                (v << (64 - 8 * width as u32).min(63)).to_be_bytes()
            };
            let i = rng.below(len);
            for (k, &x) in bytes[..width].iter().enumerate() {
                if let Some(slot) = b.get_mut(i + k) {
                    *slot = x;
                }
            }
        }
        5 => {
            let i = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let fill: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            b.splice(i..i, fill);
        }
        6 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(64));
            b.drain(i..i + n);
        }
        7 if len > 0 => {
            // Duplicate a chunk (repeated records, grown arrays).
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(256));
            let chunk = b[i..i + n].to_vec();
            let at = rng.below(len + 1);
            for _ in 0..1 + rng.below(4) {
                b.splice(at..at, chunk.iter().copied());
            }
        }
        8 if !other.is_empty() => {
            // Splice a chunk of another corpus entry.
            let i = rng.below(other.len());
            let n = 1 + rng.below((other.len() - i).min(512));
            let at = rng.below(len + 1);
            let end = (at + n).min(len);
            b.splice(at..end, other[i..i + n].iter().copied());
        }
        9 if len > 0 => b.truncate(rng.below(len)),
        10 if len > 1 => {
            let (i, j) = (rng.below(len), rng.below(len));
            b.swap(i, j);
        }
        11 => {
            let t = rng.pick(&JSON_TOKENS).as_bytes();
            let i = rng.below(len + 1);
            b.splice(i..i, t.iter().copied());
        }
        _ => {
            let i = rng.below(len + 1);
            b.insert(i, rng.next_u64() as u8);
        }
    }
}

/// Tree mutation of JSON text, or `None` when it does not parse (then bytes are mutated).
fn mutate_json(input: &[u8], other: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(input).ok()?;
    let donor: Option<Value> = serde_json::from_slice(other).ok();
    for _ in 0..1 + rng.below(3) {
        let n = count_nodes(&v);
        let target = rng.below(n);
        let donor_node = donor.as_ref().map(|d| {
            let k = rng.below(count_nodes(d));
            nth_node(d, k).cloned().unwrap_or(Value::Null)
        });
        if let Some(node) = nth_node_mut(&mut v, target) {
            mutate_node(node, donor_node, rng);
        }
    }
    Some(serde_json::to_vec(&v).expect("a JSON value serialises"))
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(o) => o.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// The `k`-th node in pre-order.
fn nth_node(v: &Value, mut k: usize) -> Option<&Value> {
    fn walk<'a>(v: &'a Value, k: &mut usize) -> Option<&'a Value> {
        if *k == 0 {
            return Some(v);
        }
        *k -= 1;
        match v {
            Value::Array(a) => a.iter().find_map(|c| walk(c, k)),
            Value::Object(o) => o.values().find_map(|c| walk(c, k)),
            _ => None,
        }
    }
    walk(v, &mut k)
}

fn nth_node_mut(v: &mut Value, mut k: usize) -> Option<&mut Value> {
    fn walk<'a>(v: &'a mut Value, k: &mut usize) -> Option<&'a mut Value> {
        if *k == 0 {
            return Some(v);
        }
        *k -= 1;
        match v {
            Value::Array(a) => a.iter_mut().find_map(|c| walk(c, k)),
            Value::Object(o) => o.values_mut().find_map(|c| walk(c, k)),
            _ => None,
        }
    }
    walk(v, &mut k)
}

fn interesting_value(rng: &mut Rng) -> Value {
    let numbers: [f64; 12] = [
        0.0,
        -1.0,
        1.0,
        -0.5,
        0.5,
        1e308,
        -1e308,
        2147483648.0,
        4294967297.0,
        9007199254740993.0,
        1e-320,
        14.0,
    ];
    match rng.below(10) {
        0..=3 => serde_json::json!(*rng.pick(&numbers)),
        4 => serde_json::json!(u64::MAX - rng.below(2) as u64),
        5 => serde_json::json!(i64::MIN),
        6 => Value::String(
            ["", "\u{0}", "../../etc/passwd", "NaN", "é", "1", "-", "/"][rng.below(8)].into(),
        ),
        7 => Value::String("a".repeat(1 + rng.below(5000))),
        8 => [Value::Null, Value::Bool(true), Value::Bool(false)][rng.below(3)].clone(),
        _ => [
            Value::Array(vec![]),
            Value::Object(Default::default()),
            serde_json::json!([0, 0, 0, 0]),
        ][rng.below(3)]
        .clone(),
    }
}

fn mutate_node(node: &mut Value, donor: Option<Value>, rng: &mut Rng) {
    match rng.below(10) {
        0..=2 => {
            // Keep numbers numbers most of the time: that reaches the checks behind the types.
            if let Value::Number(n) = node {
                let x = n.as_f64().unwrap_or(0.0);
                let y = match rng.below(6) {
                    0 => -x,
                    1 => x + 1.0,
                    2 => x - 1.0,
                    3 => x * 1e6,
                    4 => x.trunc() + 0.5,
                    _ => 0.0,
                };
                *node = serde_json::json!(y);
                if rng.chance(0.5)
                    && let Some(i) = y.is_finite().then_some(y as i64)
                {
                    *node = serde_json::json!(i);
                }
            } else {
                *node = interesting_value(rng);
            }
        }
        3 => *node = interesting_value(rng),
        4 => {
            if let Some(d) = donor {
                *node = d;
            }
        }
        5 => match node {
            Value::Array(a) if !a.is_empty() => {
                let i = rng.below(a.len());
                if rng.chance(0.5) {
                    a.remove(i);
                } else {
                    let copies = 1 + rng.below(64);
                    let item = a[i].clone();
                    for _ in 0..copies {
                        a.insert(i, item.clone());
                    }
                }
            }
            Value::Object(o) if !o.is_empty() => {
                let key = o
                    .keys()
                    .nth(rng.below(o.len()))
                    .cloned()
                    .unwrap_or_default();
                o.remove(&key);
            }
            _ => *node = interesting_value(rng),
        },
        6 => {
            if let Value::Object(o) = node {
                let keys = [
                    "id",
                    "image_id",
                    "category_id",
                    "bbox",
                    "keypoints",
                    "score",
                    "width",
                    "height",
                    "landmarks",
                    "style",
                    "item1",
                    "file_name",
                    "source",
                    "pair_id",
                    "type",
                ];
                o.insert((*rng.pick(&keys)).to_string(), interesting_value(rng));
            } else {
                *node = Value::Array(vec![node.take()]);
            }
        }
        7 => {
            // Nesting, from a few levels to past the parsers' recursion limits.
            let depth = [2usize, 16, 127, 129, 600][rng.below(5)];
            let mut v = node.take();
            for _ in 0..depth {
                v = Value::Array(vec![v]);
            }
            *node = v;
        }
        8 => {
            // A long array of the node (many items), bounded to keep executions fast.
            // (At most ~50,000 nodes, so that one mutant stays cheap to write and parse.)
            let n = [100usize, 1000, 5000][rng.below(3)].min(50_000 / count_nodes(node));
            *node = Value::Array(vec![node.clone(); n.max(2)]);
        }
        _ => {
            if let Value::Array(a) = node {
                a.truncate(rng.below(a.len() + 1));
            } else if let Value::String(s) = node {
                let cut = rng.below(s.len() + 1);
                if s.is_char_boundary(cut) {
                    s.truncate(cut);
                }
            } else {
                *node = interesting_value(rng);
            }
        }
    }
}

/// Recomputes the CRC of every PNG chunk (a no-op on other data).
pub fn fix_png_crcs(b: &mut [u8]) {
    const SIG: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    if b.len() < 8 || b[..8] != SIG {
        return;
    }
    let mut at = 8;
    while at + 12 <= b.len() {
        let len = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
        let Some(end) = (at + 8).checked_add(len) else {
            return;
        };
        if end + 4 > b.len() {
            return;
        }
        let crc = crc32fast::hash(&b[at + 4..end]);
        b[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        at = end + 4;
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
}

/// Recomputes the CRC-32 of every stored (uncompressed) zip entry, in its local header and in
/// the central directory, so that a mutated payload reaches the parser behind the zip reader.
/// Archives it cannot follow are left alone.
pub fn fix_zip_crcs(b: &mut [u8]) {
    // End of central directory: signature PK\5\6, searched from the end.
    let Some(eocd) = (0..b.len().saturating_sub(21))
        .rev()
        .find(|&i| b[i..i + 4] == [b'P', b'K', 5, 6])
    else {
        return;
    };
    let (Some(entries), Some(mut at)) = (u16_at(b, eocd + 10), u32_at(b, eocd + 16)) else {
        return;
    };
    for _ in 0..entries {
        if b.get(at..at + 4) != Some(&[b'P', b'K', 1, 2]) {
            return;
        }
        let (Some(method), Some(size), Some(n), Some(m), Some(k), Some(local)) = (
            u16_at(b, at + 10),
            u32_at(b, at + 20),
            u16_at(b, at + 28),
            u16_at(b, at + 30),
            u16_at(b, at + 32),
            u32_at(b, at + 42),
        ) else {
            return;
        };
        if method == 0
            && b.get(local..local + 4) == Some(&[b'P', b'K', 3, 4])
            && let (Some(ln), Some(lm)) = (u16_at(b, local + 26), u16_at(b, local + 28))
        {
            let start = local + 30 + ln + lm;
            if let Some(data) = b.get(start..start.saturating_add(size)) {
                let crc = crc32fast::hash(data).to_le_bytes();
                b[local + 14..local + 18].copy_from_slice(&crc);
                b[at + 16..at + 20].copy_from_slice(&crc);
            }
        }
        at += 46 + n + m + k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_mutants_differ_and_mostly_stay_json() {
        let seed = br#"{"images":[{"id":1,"width":10}],"annotations":[{"bbox":[1,2,3,4]}]}"#;
        let mut rng = Rng::new(7);
        let (mut changed, mut parse) = (0, 0);
        for _ in 0..500 {
            let m = mutate(InputKind::Json, seed, seed, &mut rng, 1 << 20);
            changed += (m != seed.as_slice()) as usize;
            parse += serde_json::from_slice::<Value>(&m).is_ok() as usize;
        }
        assert!(changed > 450, "{changed} of 500 mutants differ");
        assert!(parse > 200 && parse < 500, "{parse} of 500 mutants parse");
    }

    #[test]
    fn png_crc_repair_makes_a_mutated_chunk_valid_again() {
        let img = image::RgbImage::from_pixel(3, 2, image::Rgb([1, 2, 3]));
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        // IHDR width: 3 → 5; without the repair the decoder refuses the CRC.
        png[16 + 3] = 5;
        let broken = image::load_from_memory(&png).unwrap_err().to_string();
        assert!(broken.to_lowercase().contains("crc"), "{broken}");
        fix_png_crcs(&mut png);
        let err = image::load_from_memory(&png).err().map(|e| e.to_string());
        assert!(!err.unwrap_or_default().to_lowercase().contains("crc"));
    }
}
