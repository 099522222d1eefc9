//! `deepmark infer`: detections drawn on images, challenge-format JSON and per-stage timings.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use deepmark::heads_io::{heads_to_host, write_safetensors};
use deepmark::infer::output::{draw_detections, results};
use deepmark::infer::{Detector, detect_all};
use deepmark::io::{JsonArrayWriter, save_image_atomic};

use crate::ui::{DetectorFlags, progress_bar, say};

/// Bundled demo weights and images (used when no images / weights are given).
pub const DEMO_WEIGHTS: &str = "model-weights/demo.bpk";
const SAMPLES: &str = "datasets/samples";

#[derive(Args, Debug)]
pub struct InferArgs {
    /// Images and/or folders of images [default: the bundled samples in datasets/samples]; or
    /// one video file (mp4, mov, mkv, avi, webm, ts, …), camera (/dev/video0) or stream URL
    /// (rtsp://, http://, …), decoded by FFmpeg: per-frame detections as JSON lines
    /// (`<out>/<name>.jsonl`) and an annotated video (`<out>/<name>.pred.mp4`).
    pub inputs: Vec<PathBuf>,
    /// Video: run the detector on every N-th frame (the annotated video holds those frames, at
    /// the input's frame rate divided by N).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub every: u32,
    /// Video: stop after this many input frames (a camera or live stream otherwise runs until
    /// Ctrl-C, which finishes the files).
    #[arg(long)]
    pub max_frames: Option<u64>,
    /// Video: the annotated video's path (.mp4, .m4v, .mov or .mkv) [default:
    /// `<out>/<name>.pred.mp4`].
    #[arg(long)]
    pub video_out: Option<PathBuf>,
    /// Weights (.bpk with its .json config) [default: the bundled demo weights].
    #[arg(long)]
    pub weights: Option<PathBuf>,
    #[command(flatten)]
    pub detector: DetectorFlags,
    /// Detections scoring below are neither drawn nor written.
    #[arg(long, default_value_t = 0.3)]
    pub threshold: f32,
    /// Output folder for `<name>.pred.jpg`, the results JSON and `images.json` (each input's
    /// image id and drawing: ids are the file names' numbers when all are distinct numbers,
    /// else 1, 2, … in input order; a stem two inputs share draws to `<stem>-<id>.pred.jpg`).
    #[arg(long, default_value = "runs/infer")]
    pub out: PathBuf,
    /// Also write the raw heads (before sigmoid; last Hourglass stack) of the first image as
    /// safetensors.
    #[arg(long)]
    pub dump_heads: Option<PathBuf>,
}

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        matches!(
            e.to_ascii_lowercase().as_str(),
            "jpg" | "jpeg" | "png" | "bmp" | "webp"
        )
    })
}

/// Expands folders (sorted) into image files.
fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot list {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_image(p))
                .collect();
            v.sort();
            if v.is_empty() {
                bail!("folder {} has no images (jpg, png, bmp, webp)", p.display());
            }
            out.extend(v);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            bail!("input {} does not exist", p.display());
        }
    }
    Ok(out)
}

/// One input's id in the results and the name of its drawing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Named {
    image_id: u64,
    file: PathBuf,
    drawing: String,
}

/// Ids and drawing names, unique per input path. Ids: when every input's file name is a number
/// and no two are the same number (DeepFashion2's `000123.jpg` → 123), those numbers; otherwise
/// 1, 2, … in input order. Drawings: `<stem>.pred.jpg`, or `<stem>-<id>.pred.jpg` for a stem two
/// inputs share (`photo.jpg` and `photo.png`), never a name taken by another input.
fn name_inputs(images: &[PathBuf]) -> Vec<Named> {
    let stem = |p: &Path| {
        p.file_stem()
            .map_or("image".into(), |s| s.to_string_lossy().into_owned())
    };
    let numbers: Vec<Option<u64>> = images
        .iter()
        .map(|p| p.file_stem()?.to_str()?.parse::<u64>().ok())
        .collect();
    let distinct: std::collections::HashSet<u64> = numbers.iter().flatten().copied().collect();
    let numeric = numbers.iter().all(Option::is_some) && distinct.len() == images.len();
    let ids: Vec<u64> = (0..images.len())
        .map(|i| match numbers[i] {
            Some(n) if numeric => n,
            _ => i as u64 + 1,
        })
        .collect();
    let mut count: std::collections::HashMap<String, usize> = Default::default();
    for p in images {
        *count.entry(stem(p)).or_default() += 1;
    }
    // Unique stems keep their name; the others take the id, then a counter, avoiding every name
    // already given.
    let mut taken: std::collections::HashSet<String> = count
        .iter()
        .filter(|(_, n)| **n == 1)
        .map(|(s, _)| s.clone())
        .collect();
    images
        .iter()
        .zip(&ids)
        .map(|(p, &id)| {
            let s = stem(p);
            let name = if count[&s] == 1 {
                s
            } else {
                let mut name = format!("{s}-{id}");
                let mut k = 2;
                while taken.contains(&name) {
                    name = format!("{s}-{id}-{k}");
                    k += 1;
                }
                taken.insert(name.clone());
                name
            };
            Named {
                image_id: id,
                file: p.clone(),
                drawing: format!("{name}.pred.jpg"),
            }
        })
        .collect()
}

pub fn run(a: InferArgs) -> Result<()> {
    let demo_weights = a.weights.is_none();
    let weights = a
        .weights
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEMO_WEIGHTS));
    let inputs = if a.inputs.is_empty() {
        vec![PathBuf::from(SAMPLES)]
    } else {
        a.inputs.clone()
    };
    if !weights.is_file() {
        if demo_weights {
            bail!(
                "the bundled demo weights {} are missing; train them with `cargo xtask train` and copy \
                 runs/demo/model.bpk, model.json, model.check.json and model.infer.json there (as demo.*), or pass --weights",
                weights.display()
            );
        }
        bail!("weights file {} does not exist", weights.display());
    }
    let videos: Vec<&PathBuf> = inputs
        .iter()
        .filter(|p| deepmark_cli::video::is_video(&p.to_string_lossy()))
        .collect();
    if !videos.is_empty() && inputs.len() > 1 {
        bail!(
            "give one video, camera or stream at a time, without images (got {} inputs)",
            inputs.len()
        );
    }
    let images = if videos.is_empty() {
        collect_images(&inputs)?
    } else {
        Vec::new()
    };
    if videos.is_empty() && (a.every != 1 || a.max_frames.is_some() || a.video_out.is_some()) {
        bail!("--every, --max-frames and --video-out apply to a video, camera or stream input");
    }
    let mut det = a.detector.load(&weights)?;
    if demo_weights {
        println!(
            "using the bundled demo weights {}: res18-slim trained only on the synthetic set \
             (`cargo xtask train` with no arguments), so on real photos expect few and rough detections",
            weights.display()
        );
    }
    det.options.threshold = a.threshold;
    det.options
        .check()
        .map_err(|e| anyhow::anyhow!("--threshold: {e}"))?;
    deepmark::io::create_dir_all(&a.out)?;
    if let Some(video) = videos.first() {
        return run_video(&a, &det, &video.to_string_lossy());
    }
    // Temporaries of an earlier run that was killed mid-write; this run's own on SIGINT/SIGTERM.
    let removed = crate::cmd::remove_temporaries(&a.out, false);
    if removed > 0 {
        println!(
            "removed {removed} unfinished temporary file(s) of an interrupted run from {}",
            a.out.display()
        );
    }
    let out_dir = a.out.clone();
    crate::cmd::on_interrupt(move || {
        crate::cmd::remove_temporaries(&out_dir, true);
        eprintln!(
            "\ninterrupted: the results in {} are those of the previous complete run, if any \
             (this run's were not finished)",
            out_dir.display()
        );
    });
    if let Some(dump) = &a.dump_heads {
        dump_heads(&det, &crate::cmd::limits().open_rgb(&images[0])?, dump)?;
    }
    // Which id and drawing each input has, kept beside the results.
    let names = name_inputs(&images);
    deepmark::io::write_json(&a.out.join("images.json"), &names)?;
    let bar = (images.len() > 1).then(|| progress_bar("detecting"));
    // Results stream to disk as they come (constant memory on any folder size); the files
    // appear, complete, when the run ends.
    let bbox_path = a.out.join("results_bbox.json");
    let kp_path = a.out.join("results_keypoints.json");
    let mut bbox_out = JsonArrayWriter::create(&bbox_path)?;
    let mut kp_out = JsonArrayWriter::create(&kp_path)?;
    let mut failed = Vec::new();
    let total = images.len();
    let mut seen = 0;
    let jobs: Vec<(usize, &PathBuf)> = images.iter().enumerate().collect();
    let stats = detect_all(
        &det,
        jobs,
        |(_, path)| crate::cmd::limits().open_rgb(path),
        |(i, path), item| {
            seen += 1;
            if let Some(b) = &bar {
                b.set_length(total as u64);
                b.set_position(seen as u64);
            }
            let (mut canvas, dets) = match item {
                Ok(x) => x,
                Err(e) => {
                    let msg = format!("{e:#}");
                    say(bar.as_ref(), &format!("skipping: {msg}"));
                    failed.push(msg);
                    return Ok(());
                }
            };
            let (b, k) = results(names[i].image_id, &dets, det.grouping().taxonomy());
            for r in &b {
                bbox_out.push(r)?;
            }
            for r in &k {
                kp_out.push(r)?;
            }
            draw_detections(&mut canvas, &dets, det.grouping().taxonomy());
            let out = a.out.join(&names[i].drawing);
            save_image_atomic(&canvas, &out)?;
            let line = format!(
                "{}: {} detections → {}",
                path.display(),
                dets.len(),
                out.display()
            );
            say(bar.as_ref(), &line);
            Ok(())
        },
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let done = stats.images;
    if done == 0 {
        bail!("no image could be read:\n{}", failed.join("\n"));
    }
    bbox_out.finish()?;
    kp_out.finish()?;
    println!(
        "wrote {} and {} (challenge format; landmarks in the {} layout)",
        bbox_path.display(),
        kp_path.display(),
        det.grouping().taxonomy()
    );
    let n = done as f64;
    let s = det.options.input_size;
    let times = stats.times;
    println!(
        "Speed: {:.1} ms load, {:.1} ms preprocess, {:.1} ms forward, {:.1} ms decode, {:.1} ms post per image at {s}×{s} ({})",
        1e3 * stats.load / n,
        1e3 * times.preprocess / n,
        1e3 * times.forward / n,
        1e3 * times.decode / n,
        1e3 * times.post / n,
        a.detector.backend
    );
    println!(
        "Throughput: {done} images in {:.2} s = {:.2} images/s (batch {}; loading, decoding and drawing overlap the network)",
        stats.wall,
        stats.images_per_second(),
        det.options.batch
    );
    if !failed.is_empty() {
        bail!(
            "{} of {} images could not be read:\n{}",
            failed.len(),
            images.len(),
            failed.join("\n")
        );
    }
    Ok(())
}

fn dump_heads(det: &Detector, img: &image::RgbImage, path: &Path) -> Result<()> {
    let host = heads_to_host(&det.raw_heads(img)?)?;
    write_safetensors(path, &host)?;
    for (name, t) in &host {
        println!("{name}: {:?}", t.shape);
    }
    println!("wrote raw heads to {}", path.display());
    Ok(())
}

/// One detection of a video frame (`infer` on a video: a line of `<name>.jsonl` per frame).
#[derive(serde::Serialize)]
struct FrameDetection<'a> {
    category_id: usize,
    category: &'a str,
    score: f32,
    /// `[x1, y1, x2, y2]` in frame pixels.
    bbox: [f32; 4],
    /// The category's landmarks, `[x, y, score]`.
    landmarks: &'a [[f32; 3]],
    /// Per task, the predicted class (with `--attributes`).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    attributes: &'a [deepmark::attributes::apply::AttributeGuess],
}

/// `infer` on a video, camera or stream: detections per frame as JSON lines (each line written
/// and flushed when its frame is done, so the file can be followed while it grows) and the
/// annotated video. A decoder that fails part-way (a truncated file, a dropped stream) still
/// leaves both files complete up to the last frame done, then reports the error.
fn run_video(a: &InferArgs, det: &Detector, input: &str) -> Result<()> {
    use std::io::Write;
    use std::sync::atomic::Ordering;

    use deepmark_cli::video::{Frames, VideoWriter, is_camera, is_url};

    let mut frames = Frames::open(input)?;
    let p = frames.probe;
    let name = if is_url(input) {
        "stream".to_string()
    } else if is_camera(input) {
        "camera".to_string()
    } else {
        Path::new(input)
            .file_stem()
            .map_or("video".into(), |s| s.to_string_lossy().into_owned())
    };
    let jsonl_path = a.out.join(format!("{name}.jsonl"));
    let video_path = a
        .video_out
        .clone()
        .unwrap_or_else(|| a.out.join(format!("{name}.pred.mp4")));
    for out in [&jsonl_path, &video_path] {
        crate::cmd::refuse_input_as_output(out, &[("input", Path::new(input))])?;
    }
    let every = a.every as usize;
    let fps = p.fps / every as f64;
    let mut writer = VideoWriter::create(&video_path, p.width, p.height, fps)?;
    let file = std::fs::File::create(&jsonl_path)
        .with_context(|| format!("cannot create {}", jsonl_path.display()))?;
    let mut jsonl = std::io::BufWriter::new(file);
    let stop = crate::cmd::stop_flag();
    println!(
        "{input}: {}×{} at {:.2} frames/s; detecting every {} frame(s) → {} and {}",
        p.width,
        p.height,
        p.fps,
        every,
        jsonl_path.display(),
        video_path.display()
    );
    let start = std::time::Instant::now();
    let mut last_report = start;
    let mut processed = 0usize;
    let mut failure = None;
    let mut stopped = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            stopped = true;
            break;
        }
        if a.max_frames.is_some_and(|m| frames.count() as u64 >= m) {
            break;
        }
        let frame = match frames.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        let index = frames.count() - 1;
        if index % every != 0 {
            continue;
        }
        let dets = det.detect(&frame)?;
        let records: Vec<FrameDetection> = dets
            .iter()
            .map(|d| FrameDetection {
                category_id: d.category_id,
                category: det
                    .grouping()
                    .taxonomy()
                    .category(d.category_id)
                    .map_or("?", |c| c.name),
                score: d.score,
                bbox: d.bbox,
                landmarks: &d.landmarks,
                attributes: &d.attributes,
            })
            .collect();
        let line = serde_json::json!({
            "frame": index,
            "time": index as f64 / p.fps,
            "detections": records,
        });
        writeln!(jsonl, "{line}")
            .and_then(|_| jsonl.flush())
            .with_context(|| format!("cannot write {}", jsonl_path.display()))?;
        let mut canvas = frame;
        draw_detections(&mut canvas, &dets, det.grouping().taxonomy());
        writer.write(&canvas)?;
        processed += 1;
        if last_report.elapsed().as_secs_f64() >= 2.0 {
            last_report = std::time::Instant::now();
            eprintln!(
                "frame {index}: {processed} frames detected, {:.2} frames/s",
                processed as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    drop(frames);
    if processed == 0 {
        drop(writer);
        let _ = std::fs::remove_file(&jsonl_path);
        return Err(failure.unwrap_or_else(|| anyhow::anyhow!("{input}: no frame to detect")));
    }
    let written = writer.finish()?;
    println!(
        "{processed} frames detected in {:.1} s ({:.2} frames/s); wrote {} ({} lines) and {} ({written} frames)",
        start.elapsed().as_secs_f64(),
        processed as f64 / start.elapsed().as_secs_f64(),
        jsonl_path.display(),
        processed,
        video_path.display()
    );
    if stopped {
        println!("stopped by a signal: both files end with the last frame done");
    }
    if let Some(e) = failure {
        return Err(e.context(format!(
            "{} and {} hold the {processed} frames detected before it",
            jsonl_path.display(),
            video_path.display()
        )));
    }
    Ok(())
}
