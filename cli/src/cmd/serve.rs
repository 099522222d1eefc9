//! `deepmark serve`: an HTTP detection service (axum on tokio).
//!
//! - `POST /v1/detect`: an image as the body (`image/*`, `application/octet-stream` or no
//!   content type) or as the first file of a `multipart/form-data` body; query options
//!   `threshold`, `flip`, `scales` (comma-separated), `landmarks` (include them, default true),
//!   `max_detections`. Answers the detections as JSON.
//! - `GET /health`, `GET /v1/model` (what is loaded and how it is served).
//!
//! Requests are decoded and pre-processed on tokio's blocking pool, then queued (a bounded
//! queue: a request finding it full is answered 429) for one network thread, which takes up to
//! `--batch` queued requests that arrive within `--batch-wait-ms` of the first and runs those
//! with the same `flip` and `scales` as one forward pass. Bodies over `--max-body-bytes` (413),
//! images over `--max-image-pixels` (413), bodies that are no image (415), broken images (400),
//! other content types (415) and bad options (400) are answered with a JSON error
//! `{"error": …, "status": …}`; the service goes on. SIGINT/SIGTERM stop accepting connections
//! and finish the requests in flight.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use clap::Args;
use deepmark::infer::{Detection, Detector, StageTimes};
use deepmark::preprocess::{Prepared, prepare};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::cmd::infer::DEMO_WEIGHTS;
use crate::ui::DetectorFlags;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Weights (.bpk with its .json config) [default: the bundled demo weights].
    #[arg(long)]
    pub weights: Option<PathBuf>,
    #[command(flatten)]
    pub detector: DetectorFlags,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the address is printed on the first line).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// How long the network thread waits, after the first queued request, for more to fill
    /// a batch (of up to --batch requests) [milliseconds].
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub batch_wait_ms: u64,
    /// Requests waiting for the network at most; one more is answered 429.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub queue: u32,
    /// Request bodies larger than this are answered 413.
    #[arg(long, default_value_t = 32 << 20)]
    pub max_body_bytes: usize,
    /// Detections scoring below are left out, unless a request asks for another threshold.
    #[arg(long, default_value_t = 0.3)]
    pub threshold: f32,
}

/// A request's options (the query string of `POST /v1/detect`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectQuery {
    threshold: Option<f32>,
    flip: Option<bool>,
    scales: Option<String>,
    landmarks: Option<bool>,
    max_detections: Option<usize>,
}

/// One request for the network thread.
struct Job {
    image: RgbImage,
    prepared: Vec<Prepared>,
    flip: bool,
    scales: Vec<f32>,
    threshold: f32,
    queued: Instant,
    reply: oneshot::Sender<std::result::Result<(Vec<Detection>, Timing), String>>,
}

/// Where a request's time went, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Timing {
    /// Reading the body, decoding and pre-processing the image.
    decode_image: f64,
    /// Waiting in the queue for the network thread.
    queue: f64,
    /// The forward pass of the batch the request was in.
    forward: f64,
    /// Decoding the heads, NMS, the threshold and the landmark stages.
    post: f64,
    /// Requests in that forward pass.
    batch: usize,
}

/// What the handlers share.
struct App {
    queue: SyncSender<Job>,
    input_size: usize,
    flip: bool,
    scales: Vec<f32>,
    threshold: f32,
    max_pixels: u64,
    max_body_bytes: usize,
    model: serde_json::Value,
    /// The model's taxonomy (category names in the answers).
    taxonomy: &'static deepmark::garment::Taxonomy,
}

/// A JSON error answer.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.1, "status": self.0.as_u16()});
        (self.0, Json(body)).into_response()
    }
}

fn err(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

#[derive(Serialize)]
struct Landmark {
    /// 1-based index in the category's landmark list (DeepFashion2's numbering).
    index: usize,
    x: f32,
    y: f32,
    score: f32,
}

#[derive(Serialize)]
struct DetectionJson<'a> {
    category_id: usize,
    category: &'static str,
    score: f32,
    /// `[x1, y1, x2, y2]` in image pixels.
    bbox: [f32; 4],
    #[serde(skip_serializing_if = "Option::is_none")]
    landmarks: Option<Vec<Landmark>>,
    /// Per task, the predicted class (with `--attributes`).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    attributes: &'a [deepmark::attributes::apply::AttributeGuess],
}

fn detection_json<'a>(
    d: &'a Detection,
    taxonomy: &'static deepmark::garment::Taxonomy,
    landmarks: bool,
) -> DetectionJson<'a> {
    DetectionJson {
        category_id: d.category_id,
        category: taxonomy.category(d.category_id).map_or("?", |c| c.name),
        score: d.score,
        bbox: d.bbox,
        landmarks: landmarks.then(|| {
            d.landmarks
                .iter()
                .enumerate()
                .map(|(i, l)| Landmark {
                    index: i + 1,
                    x: l[0],
                    y: l[1],
                    score: l[2],
                })
                .collect()
        }),
        attributes: &d.attributes,
    }
}

/// The tasks of the detector's attribute model, if any.
fn attribute_tasks(det: &deepmark::infer::Detector) -> Vec<deepmark::attributes::AttributeTask> {
    match (&det.recognizer, det.attribute_heads()) {
        (Some(r), _) => r.config.tasks.clone(),
        (None, Some(h)) => h.tasks.clone(),
        (None, None) => Vec::new(),
    }
}

pub fn run(a: ServeArgs) -> Result<()> {
    let weights = a
        .weights
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEMO_WEIGHTS));
    let mut det = a.detector.load(&weights)?;
    det.options.threshold = a.threshold;
    det.options
        .check()
        .map_err(|e| anyhow::anyhow!("--threshold: {e}"))?;
    let max_batch = a.detector.batch as usize;
    let model = serde_json::json!({
        "weights": weights.display().to_string(),
        "config": det.config(),
        "scheme": det.grouping().name(),
        "taxonomy": det.grouping().taxonomy().name,
        "categories": det.grouping().taxonomy().categories.iter().map(|c| serde_json::json!({"id": c.id, "name": c.name, "num_landmarks": c.num_landmarks, "landmarks": (0..c.num_landmarks).map(|l| c.landmark_name(l)).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "options": &det.options,
        "attribute_tasks": attribute_tasks(&det),
        "backend": a.detector.backend.to_string(),
        "fast_cpu": det.is_fast(),
        "max_batch": max_batch,
        "batch_wait_ms": a.batch_wait_ms,
        "queue": a.queue,
        "max_body_bytes": a.max_body_bytes,
        "max_image_pixels": crate::cmd::limits().image_pixels,
    });
    let (tx, rx) = sync_channel::<Job>(a.queue as usize);
    let app = Arc::new(App {
        queue: tx,
        input_size: det.options.input_size,
        flip: det.options.flip,
        scales: det.options.scales.clone(),
        threshold: a.threshold,
        max_pixels: crate::cmd::limits().image_pixels,
        max_body_bytes: a.max_body_bytes,
        model,
        taxonomy: det.grouping().taxonomy(),
    });
    let wait = Duration::from_millis(a.batch_wait_ms);
    let worker = std::thread::Builder::new()
        .name("network".into())
        .spawn(move || network_thread(det, rx, max_batch, wait))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let router = Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/v1/model", get(model_info))
        .route("/v1/detect", post(detect))
        .fallback(|| async {
            err(
                StatusCode::NOT_FOUND,
                "no such route: GET /health, GET /v1/model, POST /v1/detect",
            )
        })
        .layer(DefaultBodyLimit::max(a.max_body_bytes))
        .with_state(app);
    let addr = format!("{}:{}", a.host, a.port);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        println!("listening on http://{local} (POST /v1/detect, GET /v1/model, GET /health)");
        use std::io::Write;
        std::io::stdout().flush()?;
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("the server stopped")?;
        // Not `println!`: stdout may be a pipe nobody reads any more.
        let _ = writeln!(
            std::io::stdout(),
            "stopped: every request in flight was answered"
        );
        anyhow::Ok(())
    })?;
    // The router (and with it the queue's sender) is gone: the network thread ends.
    drop(runtime);
    match worker.join() {
        Ok(()) => Ok(()),
        Err(_) => bail!("the network thread panicked"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn model_info(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(app.model.clone())
}

/// The body of a detect request: its bytes, from a raw or a multipart body.
async fn image_bytes(req: Request, limit: usize) -> std::result::Result<Bytes, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let too_large = |e: String| {
        if e.contains("length limit") || e.contains("too large") {
            err(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is too large: {e}"),
            )
        } else {
            err(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        }
    };
    if content_type.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(req, &()).await.map_err(|e| {
            err(
                StatusCode::BAD_REQUEST,
                format!("not a multipart body: {e}"),
            )
        })?;
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| too_large(e.body_text()))?
        {
            if field.file_name().is_some() || field.name() == Some("image") {
                return field.bytes().await.map_err(|e| too_large(e.body_text()));
            }
        }
        return Err(err(
            StatusCode::BAD_REQUEST,
            "the multipart body has no file field (send the image as a file or a field named `image`)",
        ));
    }
    let raw = content_type.is_empty()
        || content_type.starts_with("image/")
        || content_type.starts_with("application/octet-stream");
    if !raw {
        // Read what the client sends first, so that it can read the answer (see read_limited).
        let _ = read_limited(req, limit).await;
        return Err(err(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type `{content_type}`: send the image as the body (image/*, \
                 application/octet-stream) or as a multipart/form-data file"
            ),
        ));
    }
    read_limited(req, limit).await
}

/// The body, up to `limit` bytes. A larger body is answered 413, but only after reading (and
/// dropping) up to `limit` bytes more of it: a client still sending would otherwise find the
/// connection closed under it and never read the answer.
async fn read_limited(req: Request, limit: usize) -> std::result::Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = req.into_body();
    let mut kept: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            err(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen += data.len();
        if seen <= limit {
            kept.extend_from_slice(&data);
        } else if seen > limit.saturating_mul(2) {
            break;
        }
    }
    if seen > limit {
        return Err(err(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is too large: over the limit of {limit} bytes (--max-body-bytes)"),
        ));
    }
    Ok(Bytes::from(kept))
}

/// Decodes an image body (refusing images over the pixel limit before decoding them): the
/// library's decoder (`io::Limits::decode_rgb`, as `infer` reads files), its refusals as HTTP
/// statuses.
fn decode_image(bytes: &[u8], max_pixels: u64) -> std::result::Result<RgbImage, ApiError> {
    use deepmark::io::ImageRefusal;
    let mut limits = *crate::cmd::limits();
    limits.image_pixels = max_pixels;
    limits.decode_rgb(bytes).map_err(|r| match r {
        ImageRefusal::Empty => err(StatusCode::BAD_REQUEST, "the body is empty: send an image"),
        ImageRefusal::NotAnImage => err(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body is not an image this service reads (JPEG or PNG)",
        ),
        ImageRefusal::TooLarge { width, height, .. } => err(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the image is {width}×{height}, over the limit of {max_pixels} pixels (--max-image-pixels)"
            ),
        ),
        ImageRefusal::Truncated => err(
            StatusCode::BAD_REQUEST,
            "a broken image: the JPEG ends before its end-of-image marker (truncated)",
        ),
        other => err(StatusCode::BAD_REQUEST, other.to_string()),
    })
}

async fn detect(
    State(app): State<Arc<App>>,
    query: std::result::Result<Query<DetectQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> std::result::Result<Response, ApiError> {
    let t0 = Instant::now();
    // The body first: a client still sending it could not read an early answer.
    let bytes = image_bytes(req, app.max_body_bytes).await?;
    let Query(q) = query.map_err(|e| err(StatusCode::BAD_REQUEST, e.body_text()))?;
    let threshold = q.threshold.unwrap_or(app.threshold);
    if !threshold.is_finite() {
        return Err(err(StatusCode::BAD_REQUEST, "threshold must be a number"));
    }
    let scales = match &q.scales {
        None => app.scales.clone(),
        Some(s) => s
            .split(',')
            .map(|v| {
                v.trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|x| *x > 0.0 && *x <= 16.0)
            })
            .collect::<Option<Vec<f32>>>()
            .filter(|v| !v.is_empty() && v.len() <= 16)
            .ok_or_else(|| {
                err(
                    StatusCode::BAD_REQUEST,
                    format!("scales `{s}`: 1 to 16 comma-separated numbers in (0, 16]"),
                )
            })?,
    };
    let flip = q.flip.unwrap_or(app.flip);
    let (size, max_pixels, sc) = (app.input_size, app.max_pixels, scales.clone());
    let (image, prepared) = tokio::task::spawn_blocking(move || {
        let image = decode_image(&bytes, max_pixels)?;
        let prepared: Vec<Prepared> = sc
            .iter()
            .map(|&s| prepare(&image, size, f64::from(s)))
            .collect();
        Ok::<_, ApiError>((image, prepared))
    })
    .await
    .map_err(|e| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("pre-processing failed: {e}"),
        )
    })??;
    let (width, height) = image.dimensions();
    let decode_image_ms = t0.elapsed().as_secs_f64() * 1e3;
    let (reply, answer) = oneshot::channel();
    let job = Job {
        image,
        prepared,
        flip,
        scales,
        threshold,
        queued: Instant::now(),
        reply,
    };
    match app.queue.try_send(job) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return Err(err(
                StatusCode::TOO_MANY_REQUESTS,
                "the queue is full: retry later",
            ));
        }
        Err(TrySendError::Disconnected(_)) => {
            return Err(err(
                StatusCode::SERVICE_UNAVAILABLE,
                "the service is stopping",
            ));
        }
    }
    let (mut dets, mut timing) = answer
        .await
        .map_err(|_| {
            err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the network thread stopped",
            )
        })?
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    timing.decode_image = decode_image_ms;
    if let Some(n) = q.max_detections {
        dets.truncate(n);
    }
    let landmarks = q.landmarks.unwrap_or(true);
    let body = serde_json::json!({
        "width": width,
        "height": height,
        "detections": dets.iter().map(|d| detection_json(d, app.taxonomy, landmarks)).collect::<Vec<_>>(),
        "time_ms": timing,
    });
    Ok(Json(body).into_response())
}

/// The one thread that runs the network: batches of queued requests, one forward pass per
/// group with the same `flip` and `scales`.
fn network_thread(mut det: Detector, rx: Receiver<Job>, max_batch: usize, wait: Duration) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + wait;
        while batch.len() < max_batch {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        while !batch.is_empty() {
            let (flip, scales) = (batch[0].flip, batch[0].scales.clone());
            let (group, rest): (Vec<Job>, Vec<Job>) = batch
                .into_iter()
                .partition(|j| j.flip == flip && j.scales == scales);
            batch = rest;
            det.options.flip = flip;
            det.options.scales = scales;
            run_group(&mut det, group);
        }
    }
}

fn run_group(det: &mut Detector, group: Vec<Job>) {
    let started = Instant::now();
    let inputs: Vec<&[Prepared]> = group.iter().map(|j| j.prepared.as_slice()).collect();
    let result = det.heads_of_prepared(&inputs);
    let forward = started.elapsed().as_secs_f64() * 1e3;
    let n = group.len();
    let heads = match result {
        Ok((heads, _)) => heads,
        Err(e) => {
            for job in group {
                let _ = job.reply.send(Err(format!("the forward pass failed: {e}")));
            }
            return;
        }
    };
    for (job, heads) in group.into_iter().zip(heads) {
        let t = Instant::now();
        det.options.threshold = job.threshold;
        let (mut dets, _) = det.decode_heads(&heads, &det.options.post);
        let mut times = StageTimes::default();
        let answer = det
            .refine(&job.image, &mut dets, &mut times)
            .map(|()| {
                let timing = Timing {
                    decode_image: 0.0,
                    queue: started.saturating_duration_since(job.queued).as_secs_f64() * 1e3,
                    forward,
                    post: t.elapsed().as_secs_f64() * 1e3,
                    batch: n,
                };
                (dets, timing)
            })
            .map_err(|e| format!("the landmark stage failed: {e}"));
        let _ = job.reply.send(answer);
    }
}
