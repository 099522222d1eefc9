//! Host feature maps (one image, `C × H × W`, row-major) and the cheap element-wise and
//! resampling operations the networks need between convolutions.

use super::profile;

/// One image's feature map, channels first.
#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

/// A borrowed map: a whole [`Map`] or a contiguous range of its channels.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: &'a [f32],
}

impl Map {
    pub fn zeros(c: usize, h: usize, w: usize) -> Self {
        Map {
            c,
            h,
            w,
            data: vec![0.0; c * h * w],
        }
    }

    pub fn view(&self) -> View<'_> {
        self.channels(0, self.c)
    }

    /// Channels `start..start + len` (no copy).
    pub fn channels(&self, start: usize, len: usize) -> View<'_> {
        let hw = self.h * self.w;
        View {
            c: len,
            h: self.h,
            w: self.w,
            data: &self.data[start * hw..(start + len) * hw],
        }
    }

    /// `self += other` (same shape).
    pub fn add_assign(&mut self, other: &Map) {
        debug_assert_eq!((self.c, self.h, self.w), (other.c, other.h, other.w));
        profile::op(
            || ("add".into(), 0.0),
            || {
                for (a, b) in self.data.iter_mut().zip(&other.data) {
                    *a += b;
                }
            },
        )
    }

    /// Channel-wise concatenation.
    pub fn cat(parts: &[&Map]) -> Map {
        let (h, w) = (parts[0].h, parts[0].w);
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        for p in parts {
            debug_assert_eq!((p.h, p.w), (h, w));
            data.extend_from_slice(&p.data);
        }
        Map {
            c: parts.iter().map(|p| p.c).sum(),
            h,
            w,
            data,
        }
    }

    /// Max pooling with a `k×k` window, stride `s` and padding `p` (padding never wins:
    /// PyTorch's `-inf` padding).
    pub fn max_pool(&self, k: usize, s: usize, p: usize) -> Map {
        profile::op(|| ("maxpool".into(), 0.0), || self.max_pool_run(k, s, p))
    }

    fn max_pool_run(&self, k: usize, s: usize, p: usize) -> Map {
        let oh = (self.h + 2 * p - k) / s + 1;
        let ow = (self.w + 2 * p - k) / s + 1;
        let mut out = Map::zeros(self.c, oh, ow);
        let (h, w) = (self.h as isize, self.w as isize);
        if oh * ow == 0 {
            return out;
        }
        // Channels in parallel on the pool's threads.
        use rayon::prelude::*;
        let planes = out.data.par_chunks_mut(oh * ow).enumerate();
        planes.for_each_init(Vec::new, |col, (c, dst)| {
            col.resize(self.w, 0.0);
            let src = &self.data[c * self.h * self.w..(c + 1) * self.h * self.w];
            for oy in 0..oh {
                // Vertical max over the window's rows (contiguous, vectorised), then the
                // horizontal windows on that one row.
                let y0 = (oy * s) as isize - p as isize;
                col.fill(f32::NEG_INFINITY);
                for y in y0.max(0)..(y0 + k as isize).min(h) {
                    let row = &src[y as usize * self.w..(y as usize + 1) * self.w];
                    for (m, &v) in col.iter_mut().zip(row) {
                        *m = m.max(v);
                    }
                }
                for (ox, d) in dst[oy * ow..(oy + 1) * ow].iter_mut().enumerate() {
                    let x0 = (ox * s) as isize - p as isize;
                    let xs = x0.max(0) as usize..(x0 + k as isize).min(w) as usize;
                    *d = col[xs].iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                }
            }
        });
        out
    }

    /// `self + nearest_upsample_x2(low)` (Hourglass's `up1 + up2`).
    pub fn add_upsampled2(self, low: &Map) -> Map {
        profile::op(
            || ("add-upsample2".into(), 0.0),
            || self.add_upsampled2_run(low),
        )
    }

    fn add_upsampled2_run(mut self, low: &Map) -> Map {
        debug_assert_eq!((self.c, self.h, self.w), (low.c, 2 * low.h, 2 * low.w));
        let (h, w) = (self.h, self.w);
        for c in 0..self.c {
            let src = &low.data[c * low.h * low.w..(c + 1) * low.h * low.w];
            let dst = &mut self.data[c * h * w..(c + 1) * h * w];
            for y in 0..h {
                let s = &src[(y / 2) * low.w..(y / 2 + 1) * low.w];
                for (x, d) in dst[y * w..(y + 1) * w].iter_mut().enumerate() {
                    *d += s[x / 2];
                }
            }
        }
        self
    }
}

impl<'a> View<'a> {
    pub fn hw(&self) -> usize {
        self.h * self.w
    }

    pub fn plane(&self, c: usize) -> &'a [f32] {
        let hw = self.hw();
        &self.data[c * hw..(c + 1) * hw]
    }
}

pub(crate) fn relu_in_place(v: &mut [f32]) {
    for x in v {
        *x = x.max(0.0);
    }
}

pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Deterministic, sign-varying test values for the kernels' unit tests.
#[cfg(test)]
pub(crate) fn ramp(n: usize, seed: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * 0.61 + seed).sin()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_pool_equals_the_definition() {
        for (h, w, k, s, p) in [
            (7, 9, 3, 2, 1),
            (8, 8, 2, 2, 0),
            (5, 4, 3, 1, 1),
            (1, 1, 3, 2, 1),
        ] {
            let x = Map {
                c: 2,
                h,
                w,
                data: ramp(2 * h * w, 0.4),
            };
            let got = x.max_pool(k, s, p);
            let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
            assert_eq!((got.c, got.h, got.w), (2, oh, ow));
            for c in 0..2 {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut m = f32::NEG_INFINITY;
                        for dy in 0..k {
                            for dx in 0..k {
                                let (y, xx) = (
                                    (oy * s + dy) as isize - p as isize,
                                    (ox * s + dx) as isize - p as isize,
                                );
                                if y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < w {
                                    m = m.max(x.data[(c * h + y as usize) * w + xx as usize]);
                                }
                            }
                        }
                        assert_eq!(
                            got.data[(c * oh + oy) * ow + ox],
                            m,
                            "{h}×{w} k{k} s{s} p{p}"
                        );
                    }
                }
            }
        }
    }
}
