//! Files: atomic writes (temporary file in the same folder, then a rename, so a reader never sees
//! half a file and a crash never destroys the previous version), JSON in and out, image reading
//! and saving, and the dataset convention that images sit in `image/` beside the annotations.

use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The temporary name `path` is written under before the rename.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Whether `name` is the temporary of an atomic write: ours (`<name>.tmp<pid>`, see
/// `tmp_path`) or Burnpack's own (`<name>.<pid>-<n>.tmp`). A process killed mid-write leaves
/// one behind; it was never renamed into place, so nothing refers to it.
pub fn is_temporary_name(name: &str) -> bool {
    temporary_pid(name).is_some()
}

/// The id of the process that wrote the temporary `name` ([`is_temporary_name`]); `None` when
/// `name` is no temporary or its id does not fit a process id.
pub fn temporary_owner(name: &str) -> Option<u32> {
    temporary_pid(name)?.parse().ok()
}

/// The process-id digits of a temporary's name.
fn temporary_pid(name: &str) -> Option<&str> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ours = name
        .rsplit_once(".tmp")
        .map(|(_, pid)| pid)
        .filter(|pid| digits(pid));
    let burnpack = || {
        name.strip_suffix(".tmp")
            .and_then(|rest| rest.rsplit_once('.'))
            .and_then(|(_, ids)| ids.split_once('-'))
            .filter(|(pid, n)| digits(pid) && digits(n))
            .map(|(pid, _)| pid)
    };
    ours.or_else(burnpack)
}

/// Whether a path read from a data file stays inside the folder it is relative to: not empty,
/// and only plain names (no root, no `.` or `..`). The same answer whether or not the file
/// exists; a symbolic link inside the folder may still point elsewhere.
pub(crate) fn stays_inside(rel: &str) -> bool {
    !rel.is_empty()
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// `path` made absolute with its links resolved, for comparing paths: the file itself when it
/// exists, else its folder's resolved path joined with its name, else `path` as given.
pub fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(parent), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// Whether `a` and `b` name the same file (existing or not; see [`resolved`]).
pub fn same_path(a: &Path, b: &Path) -> bool {
    resolved(a) == resolved(b)
}

/// Creates `dir` and its parents.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => create_dir_all(dir),
        None => Ok(()),
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| {
        let _ = std::fs::remove_file(from);
        Error::io("move a temporary file onto", to, e)
    })
}

/// Writes `bytes` to `path` atomically; creates the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    create_parent(path)?;
    let tmp = tmp_path(path);
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("write", path, e));
    }
    rename(&tmp, path)
}

/// Runs `write` on the temporary path, then renames it onto `path` (for writers that take a
/// path, such as Burn's stores and image encoders). `write`'s errors should name `path`, the
/// file the user asked for, not the temporary one.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    create_parent(path)?;
    let tmp = tmp_path(path);
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    rename(&tmp, path)
}

/// `value` as pretty JSON, written atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::file(path, format!("cannot serialise: {e}")))?;
    write_atomic(path, text.as_bytes())
}

/// `value` as compact JSON, written atomically (results files).
pub fn write_json_compact(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string(value)
        .map_err(|e| Error::file(path, format!("cannot serialise: {e}")))?;
    write_atomic(path, text.as_bytes())
}

/// A JSON array written element by element into a temporary file beside `path` and renamed
/// onto it by [`JsonArrayWriter::finish`]: results of any length in constant memory, the same
/// bytes as [`write_json_compact`] of the whole list, and no reader ever sees a half-written
/// file. Dropped unfinished (an error on the way), the temporary file is removed.
pub struct JsonArrayWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
    count: usize,
}

impl JsonArrayWriter {
    /// Starts writing `path` (a temporary beside it until [`JsonArrayWriter::finish`]).
    pub fn create(path: &Path) -> Result<Self> {
        create_parent(path)?;
        let tmp = tmp_path(path);
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io("create", path, e))?;
        let mut w = JsonArrayWriter {
            path: path.to_path_buf(),
            tmp,
            out: Some(std::io::BufWriter::new(file)),
            count: 0,
        };
        w.write(b"[")?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let out = self.out.as_mut().expect("open until finished");
        out.write_all(bytes)
            .map_err(|e| Error::io("write", &self.path, e))
    }

    /// Appends one element.
    pub fn push(&mut self, value: &impl Serialize) -> Result<()> {
        let text = serde_json::to_vec(value)
            .map_err(|e| Error::file(&self.path, format!("cannot serialise: {e}")))?;
        if self.count > 0 {
            self.write(b",")?;
        }
        self.write(&text)?;
        self.count += 1;
        Ok(())
    }

    /// Closes the array and moves the file into place; returns the number of elements.
    pub fn finish(mut self) -> Result<usize> {
        self.write(b"]")?;
        let out = self.out.take().expect("open until finished");
        let file = out
            .into_inner()
            .map_err(|e| Error::io("write", &self.path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io("write", &self.path, e))?;
        rename(&self.tmp, &self.path)?;
        Ok(self.count)
    }
}

impl Drop for JsonArrayWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Reads a text file.
pub fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))
}

/// JSON files larger than this are refused before they are read, unless raised in
/// [`Limits::json_bytes`]. 4 GiB: DeepFashion2's training annotations in COCO form are about
/// 1 GiB.
pub const DEFAULT_MAX_JSON_BYTES: u64 = 4 << 30;

/// JSON files with more objects (`{…}`, at any depth) than this are refused before they are
/// parsed, unless raised in [`Limits::json_items`]: a results file of 20 million detections, or a
/// hostile `[{},{},…]` that would cost ~100 bytes of memory per 3 bytes of file. DeepFashion2's
/// training set has about 0.5 million (images and annotations); its validation results at 100
/// detections per image about 5 million.
pub const DEFAULT_MAX_JSON_ITEMS: u64 = 20_000_000;

/// Images larger than this many pixels are refused before decoding, unless raised in
/// [`Limits::image_pixels`]. 100 megapixels: DeepFashion2 images are under 1, phone photos 12–50.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 100_000_000;

/// How large a file the readers accept: a value passed to every function that reads annotation,
/// results or image files a user supplies (there is no process-wide setting). Files over a limit
/// are refused before they are read or decoded, with an error naming the file, its size and the
/// field to raise. [`Limits::default`] holds the `DEFAULT_*` constants of this module.
///
/// ```
/// let mut limits = deepmark::io::Limits::default();
/// limits.image_pixels = 400_000_000; // a 20000×20000 scan
/// assert_eq!(limits.json_bytes, deepmark::io::DEFAULT_MAX_JSON_BYTES);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest JSON file, in bytes.
    pub json_bytes: u64,
    /// Most objects (`{…}` at any depth) in a JSON file. Nesting is limited by serde_json to 128
    /// levels; deeper files are refused as malformed.
    pub json_items: u64,
    /// Most pixels (width × height, from the header) of an image file.
    pub image_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            json_bytes: DEFAULT_MAX_JSON_BYTES,
            json_items: DEFAULT_MAX_JSON_ITEMS,
            image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
        }
    }
}

/// Objects (`{`) outside strings: one linear pass, no allocation.
fn count_objects(text: &[u8]) -> u64 {
    let mut counter = ObjectCounter::default();
    counter.feed(text);
    counter.objects
}

/// [`count_objects`] over a stream read in pieces (the string state carries over).
#[derive(Default)]
struct ObjectCounter {
    objects: u64,
    in_str: bool,
    escaped: bool,
}

impl ObjectCounter {
    fn feed(&mut self, text: &[u8]) {
        let (mut n, mut in_str, mut escaped) = (self.objects, self.in_str, self.escaped);
        for &b in text {
            if in_str {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_str = false;
                }
            } else if b == b'"' {
                in_str = true;
            } else if b == b'{' {
                n += 1;
            }
        }
        (self.objects, self.in_str, self.escaped) = (n, in_str, escaped);
    }
}

/// Refuses anything but a regular file (or a link to one) before it is opened: a FIFO would
/// block the reader forever, a device would stream without end.
pub(crate) fn regular_file(path: &Path) -> std::result::Result<std::fs::Metadata, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(if meta.is_dir() {
            "is a folder, not a file".into()
        } else {
            "is not a regular file (a pipe, socket or device)".into()
        });
    }
    Ok(meta)
}

fn image_reader(path: &Path) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>> {
    regular_file(path).map_err(|m| Error::file(path, m))?;
    image::ImageReader::open(path)
        .map_err(|e| Error::io("read image", path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io("read image", path, e))
}

impl Limits {
    /// A regular file within [`Limits::json_bytes`], checked before anything is read.
    fn check_json_size(&self, path: &Path) -> std::result::Result<(), String> {
        let len = regular_file(path)?.len();
        if len > self.json_bytes {
            return Err(format!(
                "the file has {len} bytes, over the JSON size limit of {}; raise \
                 io::Limits::json_bytes to {len} if the file is genuine",
                self.json_bytes
            ));
        }
        Ok(())
    }

    fn items_error(&self, items: u64) -> String {
        format!(
            "the file holds {items} JSON objects, over the limit of {}; raise \
             io::Limits::json_items to {items} if the file is genuine",
            self.json_items
        )
    }

    /// Checks a JSON file against these limits without holding its text: a regular file, its
    /// size, then its objects counted in one streaming pass (for readers that parse the file
    /// as a stream). The message does not repeat the path.
    pub fn check_json_file(&self, path: &Path) -> std::result::Result<(), String> {
        use std::io::Read;
        self.check_json_size(path)?;
        let mut file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
        let mut counter = ObjectCounter::default();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| format!("cannot read: {e}"))?;
            if n == 0 {
                break;
            }
            counter.feed(&buf[..n]);
        }
        let items = counter.objects;
        if items > self.json_items {
            return Err(self.items_error(items));
        }
        Ok(())
    }

    /// The text of a JSON file, refused (before reading, for the size; before parsing, for the
    /// object count) when over [`Limits::json_bytes`] or [`Limits::json_items`]. The error
    /// message does not repeat the path: callers put it in their own error type.
    pub fn json_text(&self, path: &Path) -> std::result::Result<String, String> {
        self.check_json_size(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
        let items = count_objects(text.as_bytes());
        if items > self.json_items {
            return Err(self.items_error(items));
        }
        Ok(text)
    }

    /// Reads a JSON file as `T` within these limits; `what` names it in the error ("model
    /// config", "train state"…).
    pub fn read_json<T: DeserializeOwned>(&self, path: &Path, what: &str) -> Result<T> {
        let text = self.json_text(path).map_err(|m| Error::file(path, m))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::file(path, format!("not a valid {what}: {e}")))
    }

    /// An image file's `(width, height)` from its header alone, refused when it has more pixels
    /// than [`Limits::image_pixels`] (the error names the file, its size and the limit).
    pub fn image_size(&self, path: &Path) -> Result<(u32, u32)> {
        let (w, h) = image_reader(path)?
            .into_dimensions()
            .map_err(|source| Error::Image {
                action: "read",
                path: path.to_path_buf(),
                error: source,
            })?;
        let pixels = w as u64 * h as u64;
        if pixels > self.image_pixels {
            return Err(Error::file(
                path,
                format!(
                    "the image header claims {w}×{h} pixels ({:.1} megapixels), over the limit of \
                     {:.1} megapixels; raise io::Limits::image_pixels to {pixels} if the image is \
                     genuine",
                    pixels as f64 / 1e6,
                    self.image_pixels as f64 / 1e6
                ),
            ));
        }
        Ok((w, h))
    }

    /// Reads an image file as RGB; the error names the file. The header's size is checked by
    /// [`Limits::image_size`] before anything is decoded, so a file claiming 60000×60000 costs
    /// nothing and says which limit it broke. The bytes are then decoded by
    /// [`Limits::decode_rgb`], which also refuses a truncated JPEG (decoders would fill its
    /// missing part with grey); a file larger than its decoded image could be is refused unread.
    pub fn open_rgb(&self, path: &Path) -> Result<RgbImage> {
        let (w, h) = self.image_size(path)?;
        let len = regular_file(path).map_err(|m| Error::file(path, m))?.len();
        let most = decoder_limits(w, h).max_alloc.unwrap_or(u64::MAX);
        if len > most {
            return Err(Error::file(
                path,
                format!("the file has {len} bytes, more than its {w}×{h} image could take"),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io("read image", path, e))?;
        self.decode_rgb(&bytes).map_err(|r| match r {
            ImageRefusal::Broken(source) => Error::Image {
                action: "read",
                path: path.to_path_buf(),
                error: source,
            },
            other => Error::file(path, other.to_string()),
        })
    }

    /// Decodes image bytes (a file's or an upload's) as RGB: the format from the bytes, the
    /// header's size checked against [`Limits::image_pixels`] before decoding, the decoder's
    /// memory bounded by [`decoder_limits`], and a JPEG that ends before its end-of-image marker
    /// refused ([`jpeg_is_truncated`]).
    pub fn decode_rgb(&self, bytes: &[u8]) -> std::result::Result<RgbImage, ImageRefusal> {
        if bytes.is_empty() {
            return Err(ImageRefusal::Empty);
        }
        let reader = || {
            image::ImageReader::new(std::io::Cursor::new(bytes))
                .with_guessed_format()
                .map_err(|e| ImageRefusal::Broken(image::ImageError::IoError(e)))
        };
        let header = reader()?;
        let Some(format) = header.format() else {
            return Err(ImageRefusal::NotAnImage);
        };
        let (width, height) = header.into_dimensions().map_err(ImageRefusal::Broken)?;
        if u64::from(width) * u64::from(height) > self.image_pixels {
            return Err(ImageRefusal::TooLarge {
                width,
                height,
                limit: self.image_pixels,
            });
        }
        if format == image::ImageFormat::Jpeg && jpeg_is_truncated(bytes) {
            return Err(ImageRefusal::Truncated);
        }
        let mut r = reader()?;
        r.limits(decoder_limits(width, height));
        Ok(r.decode().map_err(ImageRefusal::Broken)?.to_rgb8())
    }
}

/// Why image bytes were refused by [`Limits::decode_rgb`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageRefusal {
    /// No bytes.
    #[error("the image is empty (0 bytes)")]
    Empty,
    /// Not a format the decoder recognises.
    #[error("not an image this program reads (JPEG, PNG, BMP, WebP, …)")]
    NotAnImage,
    /// The header's size is over [`Limits::image_pixels`].
    #[error(
        "the image is {width}×{height}, over the limit of {limit} pixels; raise \
         io::Limits::image_pixels if the image is genuine"
    )]
    TooLarge {
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
        /// The limit broken.
        limit: u64,
    },
    /// A JPEG that ends before its end-of-image marker.
    #[error("the JPEG ends before its end-of-image marker: the file is truncated")]
    Truncated,
    /// Anything else the decoder refused.
    #[error("a broken image: {0}")]
    Broken(image::ImageError),
}

/// The `image` decoder's memory limits for an image whose header says `w × h` (checked against
/// [`Limits::image_pixels`] first): room for the decoded image at up to 16 bits × 4 channels,
/// plus the decoder's own buffers, so a header that lies about its size cannot make the decoder
/// allocate more.
pub fn decoder_limits(w: u32, h: u32) -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(
        (w as u64 * h as u64)
            .saturating_mul(8)
            .saturating_add(64 << 20)
            .max(512 << 20),
    );
    limits
}

/// Whether `bytes`, a JPEG file, ends before its image does: no end-of-image marker (`FF D9`)
/// after the last start-of-scan (`FF DA`). Decoders fill what is missing with grey instead of
/// failing; this tells a cut-off upload or download from a whole one. (Entropy-coded data
/// never holds `FF D9`, which is stuffed as `FF 00`; an EXIF thumbnail's own markers come
/// before the main image's scans, and data appended after the end marker is allowed.)
pub fn jpeg_is_truncated(bytes: &[u8]) -> bool {
    let is = |marker: u8| move |w: &[u8]| w[0] == 0xFF && w[1] == marker;
    // The last end marker sits near the file's end: only the bytes after it are searched for
    // a scan (every image read goes through here, so the whole file is not scanned backwards).
    match bytes.windows(2).rposition(is(0xD9)) {
        Some(eoi) => bytes[eoi..].windows(2).any(is(0xDA)),
        None => bytes.windows(2).any(is(0xDA)),
    }
}

/// Reads a JSON file as `T` within the default [`Limits`]; `what` names it in the error.
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    Limits::default().read_json(path, what)
}

/// An image file's `(width, height)` from its header, within the default [`Limits`].
pub fn image_size(path: &Path) -> Result<(u32, u32)> {
    Limits::default().image_size(path)
}

/// Reads an image file as RGB within the default [`Limits`] (100 megapixels); the error names
/// the file. [`Limits::open_rgb`] takes other limits.
pub fn open_rgb(path: &Path) -> Result<RgbImage> {
    Limits::default().open_rgb(path)
}

/// Saves an image atomically (format from the extension); creates the folder.
pub fn save_image_atomic(img: &RgbImage, path: &Path) -> Result<()> {
    let format = image::ImageFormat::from_path(path).map_err(|source| Error::Image {
        action: "choose a format for",
        path: path.to_path_buf(),
        error: source,
    })?;
    write_atomic_with(path, |tmp| {
        img.save_with_format(tmp, format)
            .map_err(|source| Error::Image {
                action: "write",
                path: path.to_path_buf(),
                error: source,
            })
    })
}

/// Length and CRC-32 of a file's bytes, recorded when the file is written so that a later read
/// can tell a truncated or bit-rotten file from a good one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Checksum {
    /// Length in bytes.
    pub bytes: u64,
    /// CRC-32 (IEEE) of the bytes.
    pub crc32: u32,
}

impl Checksum {
    /// The checksum of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Checksum {
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(bytes),
        }
    }

    /// The checksum of a file's current contents.
    pub fn of_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
        Ok(Self::of(&bytes))
    }

    /// Checks `path` against this checksum; the error says what differs.
    pub fn verify(&self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
        self.verify_bytes(path, &bytes)
    }

    /// Checks bytes already read from `path` against this checksum (one read for callers that
    /// also parse them).
    pub fn verify_bytes(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let found = Self::of(bytes);
        if found == *self {
            return Ok(());
        }
        let what = if found.bytes != self.bytes {
            format!(
                "{} bytes instead of the {} written (edited, truncated or partly copied since)",
                found.bytes, self.bytes
            )
        } else {
            format!(
                "CRC-32 {:08x} instead of the {:08x} written (the bytes changed since: bit rot or an edit)",
                found.crc32, self.crc32
            )
        };
        Err(Error::file(
            path,
            format!("corrupt file (it differs from the checksum written with it): {what}"),
        ))
    }
}

/// DeepFashion2's layout: the images of `annotations.json` are in `image/` beside it
/// (FashionAI's CSV names them from its own folder: that folder).
pub fn default_image_dir(annotations: &Path) -> PathBuf {
    let dir = annotations.parent().unwrap_or(Path::new("."));
    if annotations
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        return dir.to_path_buf();
    }
    dir.join("image")
}

#[cfg(test)]
mod tests {

    #[test]
    fn truncated_jpegs_are_told_from_whole_ones() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let whole =
            std::fs::read(root.join("datasets/samples/matplotlib_grace_hopper.jpg")).unwrap();
        assert!(!jpeg_is_truncated(&whole));
        // Data appended after the end marker (camera trailers) is allowed.
        let mut trailer = whole.clone();
        trailer.extend_from_slice(b"trailer bytes");
        assert!(!jpeg_is_truncated(&trailer));
        // Cut anywhere inside the scan (or just before the end marker): truncated.
        for cut in [whole.len() / 2, whole.len() - 200, whole.len() - 1] {
            assert!(jpeg_is_truncated(&whole[..cut]), "cut at {cut}");
        }
        // Not a JPEG scan at all: nothing to say.
        assert!(!jpeg_is_truncated(b"not an image"));
    }

    #[test]
    fn temporaries_of_atomic_writes_are_recognised() {
        let tmp = tmp_path(Path::new("/x/epoch-0003.bpk"));
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert!(is_temporary_name(name), "{name}");
        assert!(is_temporary_name("epoch-0003.bpk.tmp41.1234-0.tmp"));
        for kept in [
            "epoch-0003.bpk",
            "state.json",
            "a.tmp",
            "a.tmpx1",
            "a.1-.tmp",
            "x.tmp.json",
        ] {
            assert!(!is_temporary_name(kept), "{kept}");
        }
    }
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("deepmark-io-{}", std::process::id()));
        let p = dir.join("sub/a.json");
        write_json(&p, &vec![1, 2]).unwrap();
        write_json(&p, &vec![3]).unwrap();
        assert_eq!(read_json::<Vec<i32>>(&p, "list").unwrap(), vec![3]);
        let names: Vec<_> = std::fs::read_dir(dir.join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
        let err = read_json::<Vec<i32>>(&dir.join("missing.json"), "list").unwrap_err();
        assert!(err.to_string().contains("missing.json"), "{err}");
        std::fs::write(dir.join("bad.json"), "{").unwrap();
        let err = read_json::<Vec<i32>>(&dir.join("bad.json"), "list").unwrap_err();
        assert!(err.to_string().contains("not a valid list"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn streamed_json_arrays_equal_the_whole_list_and_appear_only_when_finished() {
        let dir = std::env::temp_dir().join(format!("deepmark-stream-{}", std::process::id()));
        let items: Vec<serde_json::Value> = (0..5)
            .map(|i| serde_json::json!({"id": i, "v": [i as f32 * 0.5, -1.25]}))
            .collect();
        for n in [0, 1, 5] {
            let (p, q) = (
                dir.join(format!("s{n}.json")),
                dir.join(format!("w{n}.json")),
            );
            let mut w = JsonArrayWriter::create(&p).unwrap();
            for it in &items[..n] {
                w.push(it).unwrap();
            }
            assert!(!p.exists(), "visible before finish");
            assert_eq!(w.finish().unwrap(), n);
            write_json_compact(&q, &items[..n].to_vec()).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&q).unwrap());
        }
        // Dropped unfinished: neither the file nor its temporary remains.
        let p = dir.join("dropped.json");
        let mut w = JsonArrayWriter::create(&p).unwrap();
        w.push(&items[0]).unwrap();
        drop(w);
        assert!(!p.exists() && !tmp_path(&p).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn checksums_catch_truncation_and_flipped_bits() {
        let dir = std::env::temp_dir().join(format!("deepmark-sum-{}", std::process::id()));
        let p = dir.join("w.bin");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        write_atomic(&p, &data).unwrap();
        let sum = Checksum::of(&data);
        sum.verify(&p).unwrap();
        let mut flipped = data.clone();
        for i in [17, 5000, 9999] {
            flipped[i] ^= 0x10;
        }
        std::fs::write(&p, &flipped).unwrap();
        let e = sum.verify(&p).unwrap_err().to_string();
        assert!(e.contains("w.bin") && e.contains("CRC-32"), "{e}");
        std::fs::write(&p, &data[..9000]).unwrap();
        let e = sum.verify(&p).unwrap_err().to_string();
        assert!(e.contains("9000 bytes instead of the 10000"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A PNG of the signature, an IHDR chunk claiming `w × h`, an empty IDAT and IEND: a valid
    /// header with no pixel data.
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
        for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", vec![]), (b"IEND", vec![])] {
            let mut chunk = kind.to_vec();
            chunk.extend(&data);
            png.extend((data.len() as u32).to_be_bytes());
            png.extend(&chunk);
            png.extend(crc32fast::hash(&chunk).to_be_bytes());
        }
        png
    }

    #[test]
    fn huge_image_headers_are_refused_before_decoding_with_the_limit_named() {
        let dir = std::env::temp_dir().join(format!("deepmark-huge-{}", std::process::id()));
        let p = dir.join("huge.png");
        write_atomic(&p, &png_header(60_000, 60_000)).unwrap();
        let e = open_rgb(&p).unwrap_err().to_string();
        assert!(
            e.contains("huge.png")
                && e.contains("60000×60000")
                && e.contains("100.0 megapixels")
                && e.contains("io::Limits::image_pixels to 3600000000"),
            "{e}"
        );
        // A lower limit refuses a small header too; raised above it, the header passes and the
        // file fails as the truncated PNG it is.
        let small = dir.join("small.png");
        write_atomic(&small, &png_header(200, 100)).unwrap();
        let mut limits = Limits {
            image_pixels: 10_000,
            ..Limits::default()
        };
        let refused = limits.open_rgb(&small).unwrap_err().to_string();
        limits.image_pixels = 20_000;
        let truncated = limits.open_rgb(&small).unwrap_err().to_string();
        assert!(
            refused.contains("io::Limits::image_pixels to 20000"),
            "{refused}"
        );
        assert!(
            truncated.contains("small.png") && !truncated.contains("megapixels"),
            "{truncated}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn images_sit_beside_the_annotations() {
        assert_eq!(
            default_image_dir(Path::new("data/train.json")),
            PathBuf::from("data/image")
        );
        assert_eq!(
            default_image_dir(Path::new("train.json")),
            PathBuf::from("image")
        );
    }
}
