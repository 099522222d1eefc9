//! Detect clothing in one image with the library API (no CLI):
//!
//!     cargo run --release --features flex --example detect -- model-weights/demo.bpk \
//!         datasets/samples/matplotlib_grace_hopper.jpg
//!
//! Prints one line per detection: category, score, box and the number of landmarks.

use deepmark::infer::Detector;

fn main() -> deepmark::Result<()> {
    let mut args = std::env::args().skip(1);
    let weights = args
        .next()
        .unwrap_or_else(|| "model-weights/demo.bpk".into());
    let image = args
        .next()
        .unwrap_or_else(|| "datasets/samples/matplotlib_grace_hopper.jpg".into());
    // The caller picks the device: here the pure-Rust CPU backend.
    let device = burn::tensor::Device::flex();
    let mut detector = Detector::from_weights(weights.as_ref(), &device)?;
    detector.options.flip = true;
    detector.options.threshold = 0.1;
    let img = deepmark::io::open_rgb(image.as_ref())?;
    let detections = detector.detect(&img)?;
    for d in &detections {
        let name = deepmark::garment::category(d.category_id).map_or("?", |c| c.name);
        println!(
            "{name:<22} {:.2}  box [{:.0}, {:.0}, {:.0}, {:.0}]  {} landmarks",
            d.score,
            d.bbox[0],
            d.bbox[1],
            d.bbox[2],
            d.bbox[3],
            d.landmarks.len()
        );
    }
    println!(
        "{} detections with score ≥ 0.1 in {image}",
        detections.len()
    );
    Ok(())
}
