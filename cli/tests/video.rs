//! `infer` on a video: a clip made here from the bundled photos (FFmpeg), detections per frame
//! as JSON lines equal to `infer` on the same frame as an image, an annotated video with the
//! detected frames, and clear errors for truncated, fake and unreachable inputs.
//!
//! Needs FFmpeg's programs (`apt-get install ffmpeg`); without them the test says so and
//! returns, unless `DEEPMARK_REQUIRE_FFMPEG=1` (set by `.ci/run`) makes that a failure.

use std::path::Path;
use std::process::Command;

#[path = "../../tests/common/mod.rs"]
mod common;

use common::{deepmark, root, tempdir};

fn ffmpeg_available() -> bool {
    let ok = ["ffmpeg", "ffprobe"].iter().all(|p| {
        Command::new(p)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        assert!(
            std::env::var_os("DEEPMARK_REQUIRE_FFMPEG").is_none(),
            "DEEPMARK_REQUIRE_FFMPEG is set but ffmpeg/ffprobe cannot run"
        );
        eprintln!("skipping the video test: ffmpeg and ffprobe are not installed");
    }
    ok
}

fn ffmpeg(args: &[&str]) {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Frames of a video as ffprobe counts them by decoding, and its size.
fn count_frames(video: &Path) -> (u64, u64, u64) {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=nb_read_frames,width,height",
            "-of",
            "json",
        ])
        .arg(video)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = &v["streams"][0];
    let n = s["nb_read_frames"].as_str().unwrap().parse().unwrap();
    (
        n,
        s["width"].as_u64().unwrap(),
        s["height"].as_u64().unwrap(),
    )
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn infer_on_a_clip_writes_json_lines_and_an_annotated_video() {
    if !ffmpeg_available() {
        return;
    }
    let dir = tempdir("video");
    let samples = root().join("datasets/samples");
    let a = samples.join("matplotlib_grace_hopper.jpg");
    let b = samples.join("16004479832_a748d55f21_k.jpg");
    // Six frames at 5 frames/s, 160×120: three of one photo, three of another.
    let clip = dir.join("clip.mp4");
    let (a, b, c) = (
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        clip.to_str().unwrap(),
    );
    ffmpeg(&[
        "-framerate",
        "5",
        "-loop",
        "1",
        "-t",
        "0.6",
        "-i",
        a,
        "-framerate",
        "5",
        "-loop",
        "1",
        "-t",
        "0.6",
        "-i",
        b,
        "-filter_complex",
        "[0]scale=160:120,setsar=1[a];[1]scale=160:120,setsar=1[b];[a][b]concat=n=2:v=1",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        c,
    ]);
    assert_eq!(count_frames(&clip), (6, 160, 120));
    let out = dir.join("out");
    let o = deepmark(&[
        "infer",
        c,
        "--weights",
        "model-weights/demo.bpk",
        "--input-size",
        "128",
        "--threshold",
        "0.05",
        "--every",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Frames 0, 2 and 4, one JSON line each.
    let text = std::fs::read_to_string(out.join("clip.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let frames: Vec<u64> = lines.iter().map(|l| l["frame"].as_u64().unwrap()).collect();
    assert_eq!(frames, [0, 2, 4]);
    assert!((lines[1]["time"].as_f64().unwrap() - 0.4).abs() < 1e-9);
    // The annotated video holds the detected frames at the clip's size.
    assert_eq!(count_frames(&out.join("clip.pred.mp4")), (3, 160, 120));

    // Frame 4 (the second photo) as an image: `infer` finds the same detections.
    let frame = dir.join("frame4.png");
    ffmpeg(&[
        "-i",
        c,
        "-vf",
        "select=eq(n\\,4)",
        "-frames:v",
        "1",
        frame.to_str().unwrap(),
    ]);
    let want = common::demo_boxes(&frame, &dir.join("frame-out"), &[]).unwrap();
    let got = common::boxes_of_json(&lines[2]["detections"]);
    assert!(!want.is_empty());
    assert_eq!(got.len(), want.len(), "{got:?}\n{want:?}");
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        common::assert_same_detection(&format!("detection {i}"), w, g, 1e-5, 1e-3);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn broken_videos_and_streams_are_clear_errors() {
    if !ffmpeg_available() {
        return;
    }
    let dir = tempdir("video-bad");
    let photo = root().join("datasets/samples/matplotlib_grace_hopper.jpg");
    let clip = dir.join("clip.mp4");
    ffmpeg(&[
        "-framerate",
        "5",
        "-loop",
        "1",
        "-t",
        "1",
        "-i",
        photo.to_str().unwrap(),
        "-vf",
        "scale=64:48",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        clip.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&clip).unwrap();
    let truncated = dir.join("truncated.mp4");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let fake = dir.join("fake.mp4");
    std::fs::write(&fake, "not a video").unwrap();
    let out = dir.join("out");
    let out_s = out.to_str().unwrap();
    let missing = dir.join("missing.mp4");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![truncated.to_str().unwrap()], "truncated.mp4"),
        (
            vec![fake.to_str().unwrap()],
            "fake.mp4: not a readable video",
        ),
        (
            vec!["http://127.0.0.1:9/live.mp4"],
            "http://127.0.0.1:9/live.mp4",
        ),
        (vec![missing.to_str().unwrap()], "missing.mp4"),
        (
            vec![clip.to_str().unwrap(), photo.to_str().unwrap()],
            "one video, camera or stream at a time",
        ),
        (
            vec![clip.to_str().unwrap(), "--video-out", "x.txt"],
            "written as .mp4",
        ),
        (
            vec![photo.to_str().unwrap(), "--every", "2"],
            "apply to a video",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec![
            "infer",
            "--weights",
            "model-weights/demo.bpk",
            "--out",
            out_s,
        ];
        all.extend(args);
        let o = deepmark(&all);
        let e = stderr(&o);
        assert!(
            !o.status.success() && e.contains(expected) && !e.contains("panicked"),
            "{all:?}: {e}"
        );
    }
    // Nothing half-written is left: no temporaries, no annotated video of a failed run.
    let left: Vec<String> = std::fs::read_dir(&out)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.iter().all(|n| !n.contains(".tmp")), "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
