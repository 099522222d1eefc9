//! Many images through one [`Detector`] as a three-stage pipeline, so that a folder's
//! throughput is bounded by the network alone: a loader thread reads and pre-processes images,
//! a forward thread runs the network on batches of `options.batch` images, and the calling
//! thread decodes each image's heads and hands the detections to the caller's `sink` (drawing,
//! results) — in input order, one image at a time.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use image::RgbImage;

use super::detector::{Detector, ScaleHeads, StageTimes};
use crate::codec::Detection;
use crate::error::Result;
use crate::preprocess::Prepared;

/// What a batched run measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunStats {
    /// Per-stage seconds summed over images (each stage runs on its own thread, so they overlap).
    pub times: StageTimes,
    /// Seconds spent reading and decoding image files.
    pub load: f64,
    /// Images detected (those whose loading failed are not counted).
    pub images: usize,
    /// Wall-clock seconds of the whole run.
    pub wall: f64,
}

impl RunStats {
    /// Images per second of wall-clock time.
    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.wall.max(1e-9)
    }
}

/// One job between two stages: its tag, and what the stage made of it (or why it failed).
struct Tagged<T, X> {
    tag: T,
    item: Result<X>,
}

/// Leaving the loader: the image and its network inputs.
type Loaded<T> = Tagged<T, (RgbImage, Vec<Prepared>)>;
/// Leaving the forward stage: the image and its fused heads.
type Forwarded<T> = Tagged<T, (RgbImage, Vec<ScaleHeads>)>;

/// Runs `det` over `jobs`: `load` turns a job into an image (on the loader thread), and `sink`
/// receives each job with its image and detections (above `options.threshold`, in image pixels)
/// or the error that stopped it — in the order of `jobs`. A failing `load` is handed to `sink`
/// and the run goes on; an error from the network or from `sink` stops the run and is returned.
pub fn detect_all<T, L, S>(det: &Detector, jobs: Vec<T>, load: L, mut sink: S) -> Result<RunStats>
where
    T: Send,
    L: Fn(&T) -> Result<RgbImage> + Sync,
    S: FnMut(T, Result<(RgbImage, Vec<Detection>)>) -> Result<()>,
{
    det.check_input_size()?;
    let batch = det.options.batch.max(1);
    let start = Instant::now();
    let mut stats = RunStats::default();
    std::thread::scope(|scope| -> Result<()> {
        // Bounded queues: at most about two batches of images wait between stages.
        let (to_forward, loaded) = sync_channel::<Loaded<T>>(2 * batch);
        let (to_decode, forwarded) = sync_channel::<Forwarded<T>>(2 * batch);
        let loader = scope.spawn(|| loader_stage(det, jobs, &load, to_forward));
        let forward = scope.spawn(|| forward_stage(det, batch, loaded, to_decode));
        // Decoding and the sink on this thread; when the sink fails, dropping the receiver
        // makes the other stages stop at their next send.
        let decoded = decode_stage(det, forwarded, &mut sink, &mut stats);
        let forward = join(forward);
        let loader = join(loader);
        decoded?;
        let (preprocess, load) = loader;
        stats.load = load;
        stats.times.preprocess += preprocess;
        let t = forward?;
        stats.times.forward += t.forward;
        stats.times.preprocess += t.preprocess;
        stats.times.decode += t.decode;
        Ok(())
    })?;
    stats.wall = start.elapsed().as_secs_f64();
    Ok(stats)
}

fn join<R>(h: std::thread::ScopedJoinHandle<'_, R>) -> R {
    match h.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Reads and pre-processes every job; returns (pre-processing, loading) seconds.
fn loader_stage<T, L>(
    det: &Detector,
    jobs: Vec<T>,
    load: &L,
    out: SyncSender<Loaded<T>>,
) -> (f64, f64)
where
    L: Fn(&T) -> Result<RgbImage>,
{
    let (mut pre, mut read) = (0.0, 0.0);
    for tag in jobs {
        let t0 = Instant::now();
        let image = load(&tag);
        read += t0.elapsed().as_secs_f64();
        let item = image.and_then(|img| {
            let t1 = Instant::now();
            let p = det.prepare_scales(&img);
            pre += t1.elapsed().as_secs_f64();
            Ok((img, p?))
        });
        if out.send(Tagged { tag, item }).is_err() {
            break; // a later stage stopped
        }
    }
    (pre, read)
}

/// Gathers up to `batch` loaded images, runs them through the network together, and passes
/// them on in order (failed loads pass straight through).
fn forward_stage<T>(
    det: &Detector,
    batch: usize,
    input: Receiver<Loaded<T>>,
    out: SyncSender<Forwarded<T>>,
) -> Result<StageTimes> {
    let mut times = StageTimes::default();
    let mut pending: Vec<Loaded<T>> = Vec::with_capacity(batch);
    let mut input = input.into_iter().peekable();
    while input.peek().is_some() {
        pending.extend(input.by_ref().take(batch));
        let ok: Vec<&[Prepared]> = pending
            .iter()
            .filter_map(|l| l.item.as_ref().ok().map(|(_, p)| p.as_slice()))
            .collect();
        let (mut heads, t) = if ok.is_empty() {
            (Vec::new(), StageTimes::default())
        } else {
            det.heads_of_prepared(&ok)?
        };
        times += t;
        heads.reverse(); // popped in order below
        for l in pending.drain(..) {
            let item = match l.item {
                Ok((img, _)) => Ok((img, heads.pop().expect("one result per image"))),
                Err(e) => Err(e),
            };
            if out.send(Tagged { tag: l.tag, item }).is_err() {
                return Ok(times); // the decode stage stopped; its error is reported
            }
        }
    }
    Ok(times)
}

/// Decodes each forwarded image and hands it to the sink.
fn decode_stage<T, S>(
    det: &Detector,
    input: Receiver<Forwarded<T>>,
    sink: &mut S,
    stats: &mut RunStats,
) -> Result<()>
where
    S: FnMut(T, Result<(RgbImage, Vec<Detection>)>) -> Result<()>,
{
    for f in input {
        let item = match f.item {
            Ok((img, heads)) => {
                let (mut dets, mut t) = det.decode_heads(&heads, &det.options.post);
                det.refine(&img, &mut dets, &mut t)?;
                stats.times += t;
                stats.images += 1;
                Ok((img, dets))
            }
            Err(e) => Err(e),
        };
        sink(f.tag, item)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Scheme;
    use crate::error::Error;
    use crate::model::{Arch, CenterNetConfig};
    use burn::tensor::Device;

    fn detector(batch: usize) -> Detector {
        let device = Device::flex();
        let config = CenterNetConfig::new(Arch::Res18Slim, Scheme::Deepmark62.layout());
        let mut det = Detector::new(config.init(&device), config, device).unwrap();
        det.options.input_size = 64;
        det.options.flip = true;
        det.options.scales = vec![0.8, 1.0];
        det.options.batch = batch;
        det
    }

    /// Job `i` is a `(40 + 7i) × (48 + 3i)` gradient; every third job fails to load.
    fn load(i: &usize) -> Result<RgbImage> {
        if i % 3 == 1 {
            return Err(Error::Invalid(format!("job {i} is unreadable")));
        }
        let (w, h) = (40 + 7 * *i as u32, 48 + 3 * *i as u32);
        Ok(RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 5) as u8,
                (y * 3) as u8,
                ((x + y + *i as u32) * 2) as u8,
            ])
        }))
    }

    #[test]
    fn batches_give_each_image_its_own_detections_in_order() {
        let mut det = detector(1);
        // The fast CPU form runs a batch image by image; the generic path as one tensor.
        for fast in [true, false] {
            det.set_fast(fast).unwrap();
            let expected: Vec<Option<Vec<Detection>>> = (0..7)
                .map(|i| load(&i).ok().map(|img| det.detect(&img).unwrap()))
                .collect();
            for batch in [1, 3, 8] {
                det.options.batch = batch;
                let mut got = Vec::new();
                let stats = detect_all(&det, (0..7).collect(), load, |i, item| {
                    got.push((i, item.map(|(_, d)| d).ok()));
                    Ok(())
                })
                .unwrap();
                assert_eq!(stats.images, 5, "batch {batch}");
                assert!(stats.times.forward > 0.0 && stats.wall > 0.0);
                let order: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
                assert_eq!(order, (0..7).collect::<Vec<_>>(), "batch {batch}");
                for ((i, d), e) in got.iter().zip(&expected) {
                    match (d, e) {
                        (None, None) => {}
                        (Some(d), Some(e)) => {
                            assert!(!d.is_empty());
                            assert_eq!(d.len(), e.len(), "batch {batch}, job {i}");
                            for (a, b) in d.iter().zip(e) {
                                assert_eq!(a.category_id, b.category_id);
                                assert!((a.score - b.score).abs() < 1e-5);
                                for (p, q) in a.bbox.iter().zip(&b.bbox) {
                                    assert!((p - q).abs() < 1e-3, "batch {batch}, job {i}");
                                }
                            }
                        }
                        _ => panic!("batch {batch}, job {i}: load outcome differs"),
                    }
                }
            }
        }
    }

    #[test]
    fn a_failing_sink_stops_the_run_with_its_error() {
        let det = detector(2);
        let mut calls = 0;
        let r = detect_all(&det, (0..50).collect(), load, |i, _| {
            calls += 1;
            if i == 3 {
                return Err(Error::Invalid("disk full".into()));
            }
            Ok(())
        });
        assert!(matches!(r, Err(Error::Invalid(m)) if m == "disk full"));
        assert_eq!(calls, 4);
    }
}
