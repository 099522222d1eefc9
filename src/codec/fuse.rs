//! Test-time fusion of heads: horizontal flip (CenterNet `--flip_test`:
//! `src/lib/detectors/multi_pose.py` averages the flipped heads).
//!
//! The flipped pass's maps are mirrored left–right; `hm` and `wh` are averaged as they are;
//! `hm_hp` and `hps` also swap mirror groups, and `hps`' x offsets change sign. `reg` and
//! `hp_offset` come from the unflipped pass only.

use super::decode::HeadMaps;
use super::heads::Heads;

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
    let (p, m) = (&plain.maps, &m.maps);
    HeadMaps {
        maps: Heads {
            hm: average(&p.hm, &m.hm),
            wh: average(&p.wh, &m.wh),
            reg: p.reg.clone(),
            hps: average(&p.hps, &m.hps),
            hm_hp: average(&p.hm_hp, &m.hm_hp),
            hp_offset: p.hp_offset.clone(),
        },
        ..plain.clone()
    }
}

/// Mirrors all of an image's heads as the network would predict them for the mirror image:
/// maps mirrored left–right, landmark groups swapped with their mirrors, `hps` x negated.
pub fn mirror_heads(h: &HeadMaps, flip_groups: &[usize]) -> HeadMaps {
    let size = h.size;
    let hw = size[0] * size[1];
    // Every channel mirrored in place first; the landmark heads then also swap mirror groups.
    let mirrored = h.maps.as_ref().map(|m| {
        m.chunks(hw)
            .flat_map(|c| mirror_channel(c, size))
            .collect::<Vec<f32>>()
    });
    let mut maps = mirrored.clone();
    for (g, &src) in flip_groups.iter().enumerate().take(h.num_groups) {
        maps.hm_hp[g * hw..(g + 1) * hw].copy_from_slice(&mirrored.hm_hp[src * hw..(src + 1) * hw]);
        for (dst, v) in maps.hps[2 * g * hw..(2 * g + 1) * hw]
            .iter_mut()
            .zip(&mirrored.hps[2 * src * hw..(2 * src + 1) * hw])
        {
            *dst = -v;
        }
        maps.hps[(2 * g + 1) * hw..(2 * g + 2) * hw]
            .copy_from_slice(&mirrored.hps[(2 * src + 1) * hw..(2 * src + 2) * hw]);
    }
    HeadMaps {
        size,
        num_classes: h.num_classes,
        num_groups: h.num_groups,
        maps,
    }
}
