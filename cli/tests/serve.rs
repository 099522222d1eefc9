//! `deepmark serve`: the real server on a loopback port, talked to with a real HTTP client
//! (ureq): answers equal to `infer`'s for the same image, raw and multipart bodies, 32
//! concurrent requests batched and all answered, bad requests answered 4xx with a JSON error
//! while the service goes on, a full queue answered 429, and SIGTERM finishing the requests in
//! flight.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

#[path = "../../tests/common/mod.rs"]
mod common;

use common::root;
use deepmark::infer::output::BboxResult;
use serde_json::Value;

/// A running `deepmark serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let exe = env!("CARGO_BIN_EXE_deepmark");
        let mut child = Command::new(exe)
            .arg("serve")
            .args(["--weights", "model-weights/demo.bpk", "--port", "0"])
            .args(args)
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        // Keep reading what it prints, so that it never writes to a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let addr = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server { child, url: addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// `(status, JSON body)` of a POST.
fn post(url: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    let mut r = agent()
        .post(url)
        .header("Content-Type", content_type)
        .send(body)
        .unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (r.status().as_u16(), json)
}

fn get(url: &str) -> (u16, Value) {
    let mut r = agent().get(url).call().unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    (r.status().as_u16(), serde_json::from_str(&text).unwrap())
}

/// The detections of an answer as `infer`'s box results.
fn boxes(answer: &Value) -> Vec<BboxResult> {
    common::boxes_of_json(&answer["detections"])
}

fn same(want: &[BboxResult], got: &[BboxResult], what: &str) {
    assert_eq!(want.len(), got.len(), "{what}: {want:?}\n{got:?}");
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        assert_eq!(w.category_id, g.category_id, "{what} {i}");
        assert!((w.score - g.score).abs() <= 1e-5, "{what} {i}: {w:?} {g:?}");
        for (a, b) in w.bbox.iter().zip(&g.bbox) {
            assert!((a - b).abs() <= 1e-3, "{what} {i}: {w:?} {g:?}");
        }
    }
}

const PHOTOS: [&str; 4] = [
    "matplotlib_grace_hopper.jpg",
    "16004479832_a748d55f21_k.jpg",
    "24274813513_0cfd2ce6d0_k.jpg",
    "33887522274_eebd074106_k.jpg",
];

fn photo(name: &str) -> Vec<u8> {
    std::fs::read(root().join("datasets/samples").join(name)).unwrap()
}

/// A multipart/form-data body holding `bytes` as the file field `image`.
fn multipart(bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "deepmark-test-boundary-7d3f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"photo.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A PNG header (signature and IHDR, correct CRC) claiming `w × h` pixels, and no image data.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
    // An empty IDAT: a decoder reading the header stops at the first one.
    png.extend_from_slice(&0u32.to_be_bytes());
    png.extend_from_slice(b"IDAT");
    png.extend_from_slice(&crc32fast::hash(b"IDAT").to_be_bytes());
    png
}

#[test]
fn serve_answers_as_infer_does_batches_and_survives_bad_requests() {
    let server = Server::start(&[
        "--input-size",
        "128",
        "--threshold",
        "0.05",
        "--batch",
        "8",
        "--batch-wait-ms",
        "30",
        "--max-body-bytes",
        "2000000",
    ]);
    let url = &server.url;
    assert_eq!(
        get(&format!("{url}/health")),
        (200, serde_json::json!({"status": "ok"}))
    );
    let (status, model) = get(&format!("{url}/v1/model"));
    assert_eq!(status, 200);
    assert_eq!(model["scheme"], "deepmark62");
    assert_eq!(model["max_batch"], 8);
    assert_eq!(model["options"]["input_size"], 128);

    // One image: `infer`'s detections (same weights, input size and threshold).
    let detect = format!("{url}/v1/detect");
    let dir = common::tempdir("serve");
    let mut single = Vec::new();
    for name in PHOTOS {
        let (status, answer) = post(&detect, "image/jpeg", &photo(name));
        assert_eq!(status, 200, "{answer}");
        let want =
            common::demo_boxes(&root().join("datasets/samples").join(name), &dir, &[]).unwrap();
        assert!(!want.is_empty(), "{name}");
        same(&want, &boxes(&answer), name);
        let first = &answer["detections"][0];
        let category =
            deepmark::garment::category(first["category_id"].as_u64().unwrap() as usize).unwrap();
        assert_eq!(first["category"], category.name);
        assert_eq!(
            first["landmarks"].as_array().unwrap().len(),
            category.num_landmarks
        );
        single.push(boxes(&answer));
    }
    // Multipart, and the options: no landmarks, at most 2 detections, a higher threshold.
    let (ct, body) = multipart(&photo(PHOTOS[0]));
    let (status, answer) = post(
        &format!("{detect}?landmarks=false&max_detections=2"),
        &ct,
        &body,
    );
    assert_eq!(status, 200, "{answer}");
    same(&single[0][..2], &boxes(&answer), "multipart");
    assert!(answer["detections"][0].get("landmarks").is_none());
    let (_, answer) = post(
        &format!("{detect}?threshold=0.2"),
        "image/jpeg",
        &photo(PHOTOS[0]),
    );
    let above: Vec<BboxResult> = single[0]
        .iter()
        .filter(|d| d.score >= 0.2)
        .cloned()
        .collect();
    same(&above, &boxes(&answer), "threshold 0.2");

    // 32 requests at once: every one answered with its image's detections, in batches.
    let answers: Vec<(usize, u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let detect = detect.clone();
                s.spawn(move || {
                    let (status, answer) = post(&detect, "image/jpeg", &photo(PHOTOS[i % 4]));
                    (i, status, answer)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut largest = 0;
    for (i, status, answer) in &answers {
        assert_eq!(*status, 200, "request {i}: {answer}");
        same(
            &single[i % 4],
            &boxes(answer),
            &format!("concurrent request {i}"),
        );
        largest = largest.max(answer["time_ms"]["batch"].as_u64().unwrap());
    }
    assert!(
        largest > 1,
        "no two of 32 concurrent requests shared a forward pass"
    );
    println!("32 concurrent requests: largest batch {largest}");

    // Bad requests: a JSON error with a 4xx status each, and the service goes on.
    let whole = photo(PHOTOS[0]);
    let cases: Vec<(String, &str, Vec<u8>, u16, &str)> = vec![
        (
            detect.clone(),
            "text/plain",
            b"hello".to_vec(),
            415,
            "content type",
        ),
        (
            detect.clone(),
            "image/jpeg",
            b"hello".to_vec(),
            415,
            "not an image",
        ),
        (
            detect.clone(),
            "image/jpeg",
            whole[..whole.len() / 2].to_vec(),
            400,
            "truncated",
        ),
        (detect.clone(), "image/jpeg", Vec::new(), 400, "empty"),
        (
            detect.clone(),
            "image/jpeg",
            vec![0u8; 3_000_000],
            413,
            "too large",
        ),
        (
            detect.clone(),
            "image/png",
            png_header(60_000, 60_000),
            413,
            "over the limit",
        ),
        (
            format!("{detect}?scales=0"),
            "image/jpeg",
            whole.clone(),
            400,
            "scales",
        ),
        (
            format!("{detect}?colour=red"),
            "image/jpeg",
            whole.clone(),
            400,
            "unknown field",
        ),
        (
            format!("{detect}?flip=maybe"),
            "image/jpeg",
            whole.clone(),
            400,
            "flip",
        ),
        (
            format!("{url}/v2/detect"),
            "image/jpeg",
            whole.clone(),
            404,
            "no such route",
        ),
    ];
    for (target, ct, body, want, words) in cases {
        let (status, answer) = post(&target, ct, &body);
        assert_eq!(status, want, "{target} {ct}: {answer}");
        let message = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"));
        assert!(message.contains(words), "{target} {ct}: {message}");
        assert_eq!(answer["status"], want);
    }
    assert_eq!(get(&format!("{url}/health")).0, 200);
    let (status, answer) = post(&detect, "image/jpeg", &whole);
    assert_eq!(status, 200);
    same(&single[0], &boxes(&answer), "after the bad requests");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_queue_is_answered_429_and_sigterm_finishes_requests_in_flight() {
    // A slow network (512 × 512) and a queue of one: of 16 requests at once, some find it full.
    let server = Server::start(&["--input-size", "512", "--queue", "1"]);
    let detect = format!("{}/v1/detect", server.url);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let detect = detect.clone();
                s.spawn(move || post(&detect, "image/jpeg", &photo(PHOTOS[i % 4])).0)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 429),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&429) && statuses.contains(&200),
        "{statuses:?}"
    );
    assert_eq!(post(&detect, "image/jpeg", &photo(PHOTOS[0])).0, 200);
    drop(server);

    // Requests held in a batch window of 1.5 s when SIGTERM arrives are still answered, then
    // the server exits cleanly.
    let mut server = Server::start(&[
        "--input-size",
        "128",
        "--batch",
        "8",
        "--batch-wait-ms",
        "1500",
    ]);
    let detect = format!("{}/v1/detect", server.url);
    let pid = server.child.id();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let detect = detect.clone();
                s.spawn(move || post(&detect, "image/jpeg", &photo(PHOTOS[i])).0)
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(600));
        // SAFETY: signalling our own child process.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses, [200; 4]);
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
