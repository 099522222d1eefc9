//! Video in and out through FFmpeg: frames of a video file, a camera (`/dev/video*`, V4L2) or a
//! stream URL (`rtsp://`, `http://`, …) read as raw RGB from an `ffmpeg` process's pipe, and an
//! annotated video written through another one (H.264 in MP4 or Matroska).
//!
//! The `ffmpeg` and `ffprobe` programs (Debian's `ffmpeg` package) are used rather than a binding
//! to FFmpeg's libraries: no C headers or library versions at build time, the same decoder for
//! files, cameras and every network protocol FFmpeg knows, and a crash or hang in a decoder stays
//! in the child process. Frames cross the pipe uncompressed (`rawvideo`, `rgb24`), which costs a
//! copy per frame, small beside a network forward pass.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use image::RgbImage;

/// File extensions read as video.
pub const VIDEO_EXTENSIONS: [&str; 10] = [
    "mp4", "m4v", "mov", "mkv", "avi", "webm", "mpg", "mpeg", "ts", "gif",
];

/// Whether `input` names a video rather than an image: a stream URL (`scheme://…`), a V4L2
/// camera (`/dev/video*`) or a file with a video extension.
pub fn is_video(input: &str) -> bool {
    is_url(input)
        || is_camera(input)
        || Path::new(input)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// `rtsp://…`, `http://…`, `udp://…`: letters, then `://`.
pub fn is_url(input: &str) -> bool {
    input.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphabetic())
    })
}

/// A V4L2 camera device.
pub fn is_camera(input: &str) -> bool {
    input.starts_with("/dev/video")
}

/// FFmpeg's input options for `input`.
fn input_args(input: &str) -> Vec<String> {
    let mut a = Vec::new();
    if is_camera(input) {
        a.extend(["-f", "v4l2"].map(String::from));
    }
    a.extend(["-i".to_string(), input.to_string()]);
    a
}

fn spawn(program: &str, args: &[String], stdin: Stdio, stdout: Stdio) -> Result<Child> {
    Command::new(program)
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow!(
                    "`{program}` is not installed: video input and output go through FFmpeg's \
                     programs (apt-get install ffmpeg)"
                )
            } else {
                anyhow!("cannot start {program}: {e}")
            }
        })
}

/// The last lines a child writes to its stderr, collected by a thread until the pipe closes.
struct Tail(Option<std::thread::JoinHandle<VecDeque<String>>>);

impl Tail {
    fn collect(child: &mut Child) -> Self {
        Tail(child.stderr.take().map(|err| {
            std::thread::spawn(move || {
                let mut last = VecDeque::new();
                for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                    if last.len() == 8 {
                        last.pop_front();
                    }
                    last.push_back(line);
                }
                last
            })
        }))
    }

    /// The lines, joined; call it once the child has exited (its stderr is then closed, so
    /// the thread has read everything).
    fn text(&mut self) -> String {
        let last = self
            .0
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        if last.is_empty() {
            "no message".into()
        } else {
            Vec::from(last).join(" | ")
        }
    }
}

/// What `ffprobe` says of an input's first video stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second (25 where the input does not say).
    pub fps: f64,
}

/// A rate `num/den` as FFmpeg prints it.
fn rate(s: &str) -> Option<f64> {
    let (n, d) = s.split_once('/').unwrap_or((s, "1"));
    let (n, d): (f64, f64) = (n.trim().parse().ok()?, d.trim().parse().ok()?);
    (n > 0.0 && d > 0.0).then_some(n / d)
}

/// Runs `ffprobe` on `input`.
pub fn probe(input: &str) -> Result<Probe> {
    let mut args: Vec<String> = [
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=width,height,avg_frame_rate,r_frame_rate",
        "-of",
        "json",
    ]
    .map(String::from)
    .to_vec();
    if is_camera(input) {
        args.extend(["-f", "v4l2"].map(String::from));
    }
    args.push(input.to_string());
    let child = spawn("ffprobe", &args, Stdio::null(), Stdio::piped())?;
    let out = child
        .wait_with_output()
        .with_context(|| format!("{input}: ffprobe did not finish"))?;
    let err = String::from_utf8_lossy(&out.stderr)
        .trim()
        .replace('\n', " | ");
    if !out.status.success() {
        bail!("{input}: not a readable video ({err})");
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{input}: ffprobe's answer is not JSON"))?;
    let Some(stream) = json["streams"].get(0) else {
        bail!("{input}: holds no video stream");
    };
    let dim = |k: &str| stream[k].as_u64().filter(|&v| v > 0 && v <= 16_384);
    let (Some(width), Some(height)) = (dim("width"), dim("height")) else {
        bail!("{input}: the video stream has no usable frame size ({stream})");
    };
    let fps = ["avg_frame_rate", "r_frame_rate"]
        .iter()
        .find_map(|k| stream[*k].as_str().and_then(rate))
        .filter(|f| *f <= 1000.0)
        .unwrap_or(25.0);
    Ok(Probe {
        width: width as u32,
        height: height as u32,
        fps,
    })
}

/// The frames of a video, decoded by an `ffmpeg` process.
pub struct Frames {
    child: Child,
    stdout: ChildStdout,
    tail: Tail,
    input: String,
    /// The stream's frame size and rate.
    pub probe: Probe,
    read: usize,
}

impl Frames {
    /// Starts decoding `input` (probed first).
    pub fn open(input: &str) -> Result<Self> {
        let probe = probe(input)?;
        let mut args: Vec<String> = ["-nostdin", "-v", "error"].map(String::from).to_vec();
        args.extend(input_args(input));
        args.extend(
            ["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"].map(String::from),
        );
        let mut child = spawn("ffmpeg", &args, Stdio::null(), Stdio::piped())?;
        let tail = Tail::collect(&mut child);
        let stdout = child.stdout.take().expect("piped stdout");
        Ok(Self {
            child,
            stdout,
            tail,
            input: input.to_string(),
            probe,
            read: 0,
        })
    }

    /// Frames returned so far.
    pub fn count(&self) -> usize {
        self.read
    }

    /// The next frame; `None` at the end of the input. A decoder that stops with an error (a
    /// truncated file, a dropped stream) or a frame cut short is an error naming the input and
    /// how many frames came before.
    pub fn next_frame(&mut self) -> Result<Option<RgbImage>> {
        let (w, h) = (self.probe.width, self.probe.height);
        let len = w as usize * h as usize * 3;
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match self.stdout.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => bail!("{}: cannot read decoded frames: {e}", self.input),
            }
        }
        if got < len {
            let status = self.child.wait()?;
            if got > 0 {
                bail!(
                    "{}: frame {} was cut short ({got} of {len} bytes; ffmpeg: {})",
                    self.input,
                    self.read,
                    self.tail.text()
                );
            }
            if !status.success() {
                bail!(
                    "{}: decoding stopped after {} frames (ffmpeg: {})",
                    self.input,
                    self.read,
                    self.tail.text()
                );
            }
            return Ok(None);
        }
        self.read += 1;
        Ok(Some(
            RgbImage::from_raw(w, h, buf).expect("a buffer of the frame's size"),
        ))
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An annotated video being written by an `ffmpeg` process (H.264, `yuv420p`, even sizes).
/// The file appears at its path when [`finish`](Self::finish) succeeds: until then FFmpeg writes
/// a temporary beside it (removed if writing fails), so the path holds either an earlier
/// complete file or the new complete one.
pub struct VideoWriter {
    child: Child,
    stdin: Option<ChildStdin>,
    tail: Tail,
    tmp: PathBuf,
    path: PathBuf,
    size: (u32, u32),
    frames: usize,
}

impl VideoWriter {
    /// Starts writing `path` (`.mp4`, `.m4v`, `.mov` or `.mkv`) at `fps` frames per second.
    pub fn create(path: &Path, width: u32, height: u32, fps: f64) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let format = match ext.as_str() {
            "mp4" | "m4v" => "mp4",
            "mov" => "mov",
            "mkv" => "matroska",
            _ => bail!(
                "{}: the annotated video is written as .mp4, .m4v, .mov or .mkv",
                path.display()
            ),
        };
        deepmark::io::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        let name = path
            .file_name()
            .map_or("video".into(), |n| n.to_string_lossy().into_owned());
        let tmp = path.with_file_name(format!("{name}.tmp{}", std::process::id()));
        let args: Vec<String> = [
            "-nostdin".to_string(),
            "-v".into(),
            "error".into(),
            "-y".into(),
            "-f".into(),
            "rawvideo".into(),
            "-pix_fmt".into(),
            "rgb24".into(),
            "-s".into(),
            format!("{width}x{height}"),
            "-r".into(),
            format!("{fps}"),
            "-i".into(),
            "-".into(),
            // yuv420p needs even sides: pad by one black row or column where odd.
            "-vf".into(),
            "pad=ceil(iw/2)*2:ceil(ih/2)*2".into(),
            "-c:v".into(),
            "libx264".into(),
            "-preset".into(),
            "veryfast".into(),
            "-pix_fmt".into(),
            "yuv420p".into(),
            "-f".into(),
            format.into(),
            tmp.to_string_lossy().into_owned(),
        ]
        .to_vec();
        let mut child = spawn("ffmpeg", &args, Stdio::piped(), Stdio::null())?;
        let tail = Tail::collect(&mut child);
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            stdin,
            tail,
            tmp,
            path: path.to_path_buf(),
            size: (width, height),
            frames: 0,
        })
    }

    /// Appends one frame (of the size given at creation).
    pub fn write(&mut self, frame: &RgbImage) -> Result<()> {
        if frame.dimensions() != self.size {
            bail!(
                "{}: frame of {:?} pixels, the video is {:?}",
                self.path.display(),
                frame.dimensions(),
                self.size
            );
        }
        let stdin = self.stdin.as_mut().expect("open until finish");
        if let Err(e) = stdin.write_all(frame.as_raw()) {
            // The encoder closed its input: it is ending; its last words say why.
            let _ = self.child.wait();
            bail!(
                "{}: the encoder stopped after {} frames ({e}; ffmpeg: {})",
                self.path.display(),
                self.frames,
                self.tail.text()
            );
        }
        self.frames += 1;
        Ok(())
    }

    /// Closes the video: waits for the encoder and moves the file into place. Returns the
    /// number of frames written.
    pub fn finish(mut self) -> Result<usize> {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        if !status.success() {
            let _ = std::fs::remove_file(&self.tmp);
            bail!(
                "{}: the encoder failed ({})",
                self.path.display(),
                self.tail.text()
            );
        }
        std::fs::rename(&self.tmp, &self.path).with_context(|| {
            format!(
                "cannot move the video into place at {}",
                self.path.display()
            )
        })?;
        Ok(self.frames)
    }
}

impl Drop for VideoWriter {
    fn drop(&mut self) {
        // Not finished (an error on the way): stop the encoder and leave no temporary.
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
