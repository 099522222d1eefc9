//! Drawing annotations and predictions on images (imageproc): boxes, landmarks, the taxonomy's
//! skeleton (or, where it has none, as for DeepFashion2, the outline through the landmarks in
//! their order), and small numeric labels (category
//! ids, group ids) in a built-in 3×5 digit font, so no font file is needed.

use image::{Rgb, RgbImage};
use imageproc::drawing::{
    draw_filled_circle_mut, draw_filled_rect_mut, draw_hollow_rect_mut, draw_line_segment_mut,
};
use imageproc::rect::Rect;

use crate::codec::grouping::Grouping;
use crate::garment::{DEEPFASHION2, Item, Taxonomy};

/// A distinct colour per index (13 categories and more).
pub fn palette(i: usize) -> Rgb<u8> {
    #[rustfmt::skip]
    const P: [[u8; 3]; 13] = [
        [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240],
        [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255], [170, 110, 40],
    ];
    Rgb(P[i % P.len()])
}

/// 3×5 bitmaps (rows top to bottom, 3 bits each) of the digits 0–9 and the letters A–Z.
#[rustfmt::skip]
const DIGITS: [[u8; 5]; 10] = [
    [7, 5, 5, 5, 7], [2, 6, 2, 2, 7], [7, 1, 7, 4, 7], [7, 1, 7, 1, 7], [5, 5, 7, 1, 1],
    [7, 4, 7, 1, 7], [7, 4, 7, 5, 7], [7, 1, 1, 1, 1], [7, 5, 7, 5, 7], [7, 5, 7, 1, 7],
];
#[rustfmt::skip]
const LETTERS: [[u8; 5]; 26] = [
    [2, 5, 7, 5, 5], [6, 5, 6, 5, 6], [3, 4, 4, 4, 3], [6, 5, 5, 5, 6], [7, 4, 6, 4, 7],
    [7, 4, 6, 4, 4], [3, 4, 5, 5, 3], [5, 5, 7, 5, 5], [7, 2, 2, 2, 7], [1, 1, 1, 5, 2],
    [5, 5, 6, 5, 5], [4, 4, 4, 4, 7], [5, 7, 7, 5, 5], [6, 5, 5, 5, 5], [2, 5, 5, 5, 2],
    [6, 5, 6, 4, 4], [2, 5, 5, 6, 3], [6, 5, 6, 5, 5], [3, 4, 2, 1, 6], [7, 2, 2, 2, 2],
    [5, 5, 5, 5, 7], [5, 5, 5, 5, 2], [5, 5, 7, 7, 5], [5, 5, 2, 5, 5], [5, 5, 2, 2, 2],
    [7, 1, 2, 4, 7],
];

fn glyph(ch: char) -> [u8; 5] {
    match ch.to_ascii_uppercase() {
        c @ '0'..='9' => DIGITS[c as usize - '0' as usize],
        c @ 'A'..='Z' => LETTERS[c as usize - 'A' as usize],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        _ => [0; 5],
    }
}

/// Draw `text` (digits, letters — shown upper-case —, `.`, `-`; anything else is a space) at
/// `(x, y)` (top-left) with pixel size `s`, on a black backing for contrast.
pub fn draw_text(img: &mut RgbImage, x: i32, y: i32, text: &str, s: u32, color: Rgb<u8>) {
    let n = text.chars().count() as u32;
    let w = (n * 4 + 1) * s;
    draw_filled_rect_mut(
        img,
        Rect::at(x - s as i32, y - s as i32).of_size(w, 7 * s),
        Rgb([0, 0, 0]),
    );
    for (i, ch) in text.chars().enumerate() {
        for (row, bits) in glyph(ch).iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    let px = x + ((i as u32 * 4 + col) * s) as i32;
                    let py = y + (row as u32 * s) as i32;
                    draw_filled_rect_mut(img, Rect::at(px, py).of_size(s, s), color);
                }
            }
        }
    }
}

/// Draw `n` at `(x, y)` (top-left) with pixel size `s`.
pub fn draw_number(img: &mut RgbImage, x: i32, y: i32, n: usize, s: u32, color: Rgb<u8>) {
    draw_text(img, x, y, &n.to_string(), s, color);
}

/// Draw one DeepFashion2 garment ([`draw_item_of`] with DeepFashion2's taxonomy, or the
/// grouping's).
pub fn draw_item(img: &mut RgbImage, item: &Item, grouping: Option<&Grouping>, label_size: u32) {
    let taxonomy = grouping.map_or(&DEEPFASHION2, |g| g.taxonomy());
    draw_item_of(img, taxonomy, item, grouping, label_size);
}

/// Draw one object of `taxonomy`: box and category id, the category's skeleton (an outline
/// through the landmarks in order where it has none), landmarks (filled if visible, dark if
/// occluded) and, with a grouping, each landmark's group id.
pub fn draw_item_of(
    img: &mut RgbImage,
    taxonomy: &'static Taxonomy,
    item: &Item,
    grouping: Option<&Grouping>,
    label_size: u32,
) {
    let color = palette(taxonomy.class_of(item.category_id).unwrap_or(0));
    let [x, y, w, h] = item.bbox;
    if w >= 1.0 && h >= 1.0 {
        for t in 0..2 {
            let r = Rect::at(x as i32 - t, y as i32 - t)
                .of_size(w as u32 + 2 * t as u32, h as u32 + 2 * t as u32);
            draw_hollow_rect_mut(img, r, color);
        }
    }
    draw_number(
        img,
        x as i32 + 2,
        y as i32 + 2,
        item.category_id,
        label_size,
        color,
    );
    let Some(cat) = taxonomy.category(item.category_id) else {
        return;
    };
    if item.keypoints.len() < cat.start + cat.num_landmarks {
        return;
    }
    let pts: Vec<(usize, [f32; 3])> = cat.range().map(|g| (g, item.keypoints[g])).collect();
    // The skeleton's links (1-based), or consecutive landmarks in order.
    let links: Vec<(usize, usize)> = if cat.skeleton.is_empty() {
        (1..cat.num_landmarks).map(|l| (l, l + 1)).collect()
    } else {
        cat.skeleton.to_vec()
    };
    for (a, b) in links {
        let (a, b) = (pts[a - 1].1, pts[b - 1].1);
        if a[2] > 0.0 && b[2] > 0.0 {
            draw_line_segment_mut(img, (a[0], a[1]), (b[0], b[1]), color);
        }
    }
    let r = (label_size as i32 + 1).max(2);
    for (g, k) in pts {
        if k[2] <= 0.0 {
            continue;
        }
        let c = (k[0].round() as i32, k[1].round() as i32);
        draw_filled_circle_mut(img, c, r, Rgb([255, 255, 255]));
        draw_filled_circle_mut(
            img,
            c,
            r - 1,
            if k[2] >= 2.0 {
                color
            } else {
                Rgb([40, 40, 40])
            },
        );
        if let Some(grp) = grouping {
            draw_number(
                img,
                c.0 + r + 1,
                c.1 - 2,
                grp.group_of_landmark(g),
                label_size.max(1),
                Rgb([255, 255, 255]),
            );
        }
    }
}

/// Tile equally sized images into a grid with `cols` columns.
pub fn tile(images: &[RgbImage], cols: usize) -> RgbImage {
    let (w, h) = images.first().map_or((1, 1), |i| (i.width(), i.height()));
    let cols = cols.clamp(1, images.len().max(1));
    let rows = images.len().div_ceil(cols).max(1);
    let mut out = RgbImage::new(w * cols as u32, h * rows as u32);
    for (i, img) in images.iter().enumerate() {
        let (cx, cy) = ((i % cols) as i64 * w as i64, (i / cols) as i64 * h as i64);
        image::imageops::overlay(&mut out, img, cx, cy);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::garment::taxonomy::NUM_LANDMARKS;

    #[test]
    fn digits_are_drawn_where_asked() {
        let mut img = RgbImage::new(20, 10);
        draw_number(&mut img, 2, 2, 1, 1, Rgb([255, 0, 0]));
        // "1" = rows 010/110/010/010/111: the middle column is lit on every row.
        for row in 0..5 {
            assert_eq!(img.get_pixel(3, 2 + row).0, [255, 0, 0]);
        }
        assert_eq!(img.get_pixel(2, 2).0, [0, 0, 0]);
    }

    #[test]
    fn items_draw_boxes_and_landmarks() {
        let mut img = RgbImage::new(100, 100);
        let mut kps = vec![[0.0; 3]; NUM_LANDMARKS];
        kps[182] = [50.0, 50.0, 2.0]; // skirt, local 1
        let item = Item {
            category_id: 9,
            bbox: [10.0, 10.0, 80.0, 80.0],
            keypoints: kps,
        };
        draw_item(&mut img, &item, None, 1);
        assert_eq!(img.get_pixel(50, 50).0, palette(8).0);
        assert_eq!(img.get_pixel(60, 10).0, palette(8).0);
        let grid = tile(&[img.clone(), img], 2);
        assert_eq!(grid.dimensions(), (200, 100));
    }
}
