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
        for c in 0..self.c {
            let src = &self.data[c * self.h * self.w..(c + 1) * self.h * self.w];
            let dst = &mut out.data[c * oh * ow..(c + 1) * oh * ow];
            for oy in 0..oh {
                let y0 = (oy * s) as isize - p as isize;
                let ys = y0.max(0)..(y0 + k as isize).min(h);
                for ox in 0..ow {
                    let x0 = (ox * s) as isize - p as isize;
                    let xs = x0.max(0)..(x0 + k as isize).min(w);
                    let mut m = f32::NEG_INFINITY;
                    for y in ys.clone() {
                        let row = &src[y as usize * self.w..];
                        for x in xs.clone() {
                            m = m.max(row[x as usize]);
                        }
                    }
                    dst[oy * ow + ox] = m;
                }
            }
        }
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
