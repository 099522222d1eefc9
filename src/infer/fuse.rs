//! Test-time fusion of heads: horizontal flip (CenterNet `--flip_test`, FACTS §1.11).
//!
//! The flipped pass's maps are mirrored left–right; `hm` and `wh` are averaged as they are;
//! `hm_hp` and `hps` also swap mirror groups, and `hps`' x offsets change sign. `reg` and
//! `hp_offset` come from the unflipped pass only.

use super::decode::HeadMaps;

fn mirror_channel(src: &[f32], size: [usize; 2]) -> Vec<f32> {
    let [h, w] = size;
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = src[y * w + (w - 1 - x)];
        }
    }
    out
}

fn average(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| (x + y) / 2.0).collect()
}

/// Fuses the heads of an image with those of its mirror image. `flip_groups[g]` is the mirror
/// group of landmark group `g` (an involution).
pub fn fuse_flip(plain: &HeadMaps, flipped: &HeadMaps, flip_groups: &[usize]) -> HeadMaps {
    let m = mirror_heads(flipped, flip_groups);
    HeadMaps {
        hm: average(&plain.hm, &m.hm),
        wh: average(&plain.wh, &m.wh),
        hps: average(&plain.hps, &m.hps),
        hm_hp: average(&plain.hm_hp, &m.hm_hp),
        ..plain.clone()
    }
}

/// Mirrors all of an image's heads as the network would predict them for the mirror image:
/// maps mirrored left–right, landmark groups swapped with their mirrors, `hps` x negated.
pub fn mirror_heads(h: &HeadMaps, flip_groups: &[usize]) -> HeadMaps {
    let size = h.size;
    let hw = size[0] * size[1];
    let mut out = h.clone();
    let mirror_all = |src: &[f32], dst: &mut [f32]| {
        for (s, d) in src.chunks(hw).zip(dst.chunks_mut(hw)) {
            d.copy_from_slice(&mirror_channel(s, size));
        }
    };
    mirror_all(&h.hm, &mut out.hm);
    mirror_all(&h.wh, &mut out.wh);
    mirror_all(&h.reg, &mut out.reg);
    mirror_all(&h.hp_offset, &mut out.hp_offset);
    for (g, &src) in flip_groups.iter().enumerate().take(h.num_groups) {
        out.hm_hp[g * hw..(g + 1) * hw]
            .copy_from_slice(&mirror_channel(&h.hm_hp[src * hw..(src + 1) * hw], size));
        let mx: Vec<f32> = mirror_channel(&h.hps[2 * src * hw..(2 * src + 1) * hw], size)
            .into_iter()
            .map(|v| -v)
            .collect();
        out.hps[2 * g * hw..(2 * g + 1) * hw].copy_from_slice(&mx);
        out.hps[(2 * g + 1) * hw..(2 * g + 2) * hw].copy_from_slice(&mirror_channel(
            &h.hps[(2 * src + 1) * hw..(2 * src + 2) * hw],
            size,
        ));
    }
    out
}
