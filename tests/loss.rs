//! The CenterNet losses against values computed by hand.

use burn::tensor::{Int, Tensor, TensorData};
use deepmark::train::loss::{focal_loss, masked_l1, reg_l1};

mod common;

fn t4(v: Vec<f32>, s: [usize; 4]) -> Tensor<4> {
    Tensor::from_data(TensorData::new(v, s), &common::flex())
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()[0]
}

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn focal_loss_matches_the_formula() {
    // gt: one positive, a Gaussian neighbour (0.5) and two background cells.
    let logits = [0.3f64, -0.2, -1.0, 2.0];
    let gt = [1.0f64, 0.5, 0.0, 0.0];
    let mut pos = 0.0;
    let mut neg = 0.0;
    for (&x, &g) in logits.iter().zip(&gt) {
        let p = sig(x);
        if g == 1.0 {
            pos += p.ln() * (1.0 - p).powi(2);
        } else {
            neg += (1.0 - p).ln() * p.powi(2) * (1.0 - g).powi(4);
        }
    }
    let want = -(pos + neg) / 1.0;
    let got = scalar(focal_loss(
        t4(logits.map(|v| v as f32).to_vec(), [1, 1, 2, 2]),
        t4(gt.map(|v| v as f32).to_vec(), [1, 1, 2, 2]),
    ));
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn focal_loss_without_positives_is_the_undivided_negative_sum() {
    let logits = [0.3f64, -0.2, 1.5, -3.0];
    let gt = [0.2f64, 0.5, 0.0, 0.9];
    let want: f64 = -logits
        .iter()
        .zip(&gt)
        .map(|(&x, &g)| {
            let p = sig(x);
            (1.0 - p).ln() * p.powi(2) * (1.0 - g).powi(4)
        })
        .sum::<f64>();
    let got = scalar(focal_loss(
        t4(logits.map(|v| v as f32).to_vec(), [1, 2, 1, 2]),
        t4(gt.map(|v| v as f32).to_vec(), [1, 2, 1, 2]),
    ));
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn focal_loss_clamps_the_sigmoid() {
    // A confident wrong prediction: p would be 1 − 4e-44; the clamp keeps the loss finite at
    // −log(1e-4)·(1 − 1e-4)² for the background cell.
    let got = scalar(focal_loss(
        t4(vec![100.0, -100.0], [1, 1, 1, 2]),
        t4(vec![0.0, 1.0], [1, 1, 1, 2]),
    ));
    let p = 1.0f64 - 1e-4;
    let want = -((1e-4f64).ln() * p * p) - ((1e-4f64).ln() * p * p);
    assert!(got.is_finite());
    assert!((got - want).abs() / want < 1e-4, "{got} vs {want}");
}

#[test]
fn reg_l1_gathers_at_indices_and_averages_over_valid_coordinates() {
    let device = common::flex();
    // output (1, 2, 2, 2): channel 0 = [0, 1, 2, 3], channel 1 = [10, 11, 12, 13].
    let out = t4(
        vec![0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0],
        [1, 2, 2, 2],
    );
    let ind = Tensor::<2, Int>::from_data(TensorData::new(vec![3i64, 1, 0], [1, 3]), &device);
    let mask = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 1.0, 0.0], [1, 3]), &device);
    let target = Tensor::<3>::from_data(
        TensorData::new(vec![2.5f32, 13.0, 0.0, 12.0, 99.0, 99.0], [1, 3, 2]),
        &device,
    );
    // |3 − 2.5| + |13 − 13| + |1 − 0| + |11 − 12| = 2.5 over 4 valid coordinates.
    let got = scalar(reg_l1(out.clone(), ind.clone(), mask, target.clone()));
    assert!((got - 2.5 / (4.0 + 1e-4)).abs() < 1e-6, "{got}");
    // Per-coordinate mask (hps): only the first object's x counts.
    let pred = deepmark::train::loss::gather_at(out, ind);
    let m = Tensor::<3>::from_data(
        TensorData::new(vec![1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0], [1, 3, 2]),
        &device,
    );
    let got = scalar(masked_l1(pred, m, target));
    assert!((got - 0.5 / (1.0 + 1e-4)).abs() < 1e-6, "{got}");
}

#[test]
fn maybe_cross_entropy_matches_the_formula() {
    use deepmark::attributes::{maybe_weights, parse_marks};
    use deepmark::train::loss::maybe_cross_entropy;
    // Rows: one `y` and one `m` (t = 1), one `y` and two `m` (t = 2), all `n`.
    let labels = ["nmyn", "mmny", "nnnn"];
    let logits = [
        [0.5f64, -1.0, 2.0, 0.0],
        [1.5, 0.2, -0.3, 0.7],
        [3.0, 0.0, 0.0, -2.0],
    ];
    let beta = 0.1;
    let mut want = 0.0;
    let mut weights = Vec::new();
    for (label, z) in labels.iter().zip(&logits) {
        let w = maybe_weights(&parse_marks(label, 4).unwrap(), beta).unwrap();
        let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
        want -= w
            .iter()
            .zip(z)
            .map(|(&w, &v)| w as f64 * (v - lse))
            .sum::<f64>();
        weights.extend(w);
    }
    want /= 3.0;
    // By hand for row 1: 0.9·(2 − lse) + 0.1·(−1 − lse); row 2: 0.8 and 0.1, 0.1; row 3: 0.
    assert_eq!(&weights[..4], &[0.0, 0.1, 0.9, 0.0]);
    assert!(
        weights[4..8]
            .iter()
            .zip([0.1, 0.1, 0.0, 0.8])
            .all(|(a, b)| (a - b).abs() < 1e-7)
    );
    assert_eq!(&weights[8..], &[0.0; 4]);
    let t2 = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [3, 4]), &common::flex());
    let flat: Vec<f32> = logits.iter().flatten().map(|&v| v as f32).collect();
    let got = scalar(maybe_cross_entropy(t2(flat.clone()), t2(weights.clone())));
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    // β = 0 is plain cross-entropy on the `y` class (the all-`n` row adds nothing).
    let plain: Vec<f32> = labels
        .iter()
        .flat_map(|l| maybe_weights(&parse_marks(l, 4).unwrap(), 0.0).unwrap())
        .collect();
    let ce = |z: &[f64; 4], k: usize| -(z[k] - z.iter().map(|v| v.exp()).sum::<f64>().ln());
    let want0 = (ce(&logits[0], 2) + ce(&logits[1], 3)) / 3.0;
    let got0 = scalar(maybe_cross_entropy(t2(flat), t2(plain)));
    assert!((got0 - want0).abs() < 1e-5, "{got0} vs {want0}");
}
