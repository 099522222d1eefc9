//! The five CenterNet backbones and the heads as ONNX nodes, each mirroring its Burn module's
//! `forward` (`model::resnet`, `model::dla`, `model::dla_up`, `model::hourglass`,
//! `model::heads`) node for node. Value and initializer names follow the module paths of the
//! weights file (`backbone.layer1.0.conv1.weight`, `heads.0.hm.conv.bias`, …).

use super::graph::{Graph, int, ints, string};
use super::{DeformForm, OnnxOptions};
use crate::codec::heads::Heads;
use crate::error::{Error, Result};
use crate::model::centernet::{Backbone, CenterNet};
use crate::model::dcn::{Dcn, DeformConvBlock};
use crate::model::dla::{BasicBlock, Dla, Tree1, Tree2};
use crate::model::dla_up::{DlaSeg, IdaUp};
use crate::model::heads::HeadSet;
use crate::model::hourglass::{Convolution, Hourglass, KpModule, Residual};
use crate::model::layers::ConvBn;
use crate::model::resnet::{ResBlock, ResNet};

/// The graph being built and the export's options.
pub(crate) struct Ctx<'a> {
    pub g: Graph,
    pub options: &'a OnnxOptions,
}

impl Ctx<'_> {
    fn conv_bn(&mut self, x: &str, m: &ConvBn, path: &str, relu: bool) -> Result<String> {
        let y = self.g.conv(x, &m.conv, &format!("{path}.conv"))?;
        let y = self.g.bn(&y, &m.bn, &format!("{path}.bn"))?;
        Ok(if relu { self.g.relu(&y) } else { y })
    }

    /// `model` (last stack's heads) from the image batch `x`, and the feature map they read.
    pub fn centernet(&mut self, model: &CenterNet, x: &str) -> Result<(Heads<String>, String)> {
        let feature = match &model.backbone {
            Backbone::Resnet(m) => self.resnet(m, x, "backbone")?,
            Backbone::Dla(m) => self.dla_seg(m, x, "backbone")?,
            Backbone::Hourglass(m) => self.hourglass(m, x, "backbone")?,
        };
        let last = model.heads.len() - 1;
        let heads = self.heads(&model.heads[last], &feature, &format!("heads.{last}"))?;
        Ok((heads, feature))
    }

    /// One head (3×3 → ReLU → 1×1) on `x` whose output is the graph output `name`.
    pub fn head_as(
        &mut self,
        head: &crate::model::heads::Head,
        x: &str,
        path: &str,
        name: &str,
    ) -> Result<String> {
        let y = self.g.conv(x, &head.conv, &format!("{path}.conv"))?;
        let y = self.g.relu(&y);
        // The last convolution's output is the graph output of that name.
        self.g.conv_as(&y, &head.out, &format!("{path}.out"), name)
    }

    fn heads(&mut self, h: &HeadSet, x: &str, path: &str) -> Result<Heads<String>> {
        let mut run = |head: &crate::model::heads::Head, name: &str| -> Result<String> {
            self.head_as(head, x, &format!("{path}.{name}"), name)
        };
        Ok(Heads {
            hm: run(&h.hm, "hm")?,
            wh: run(&h.wh, "wh")?,
            reg: run(&h.reg, "reg")?,
            hps: run(&h.hps, "hps")?,
            hm_hp: run(&h.hm_hp, "hm_hp")?,
            hp_offset: run(&h.hp_offset, "hp_offset")?,
        })
    }

    // ---- ResNet (`msra_resnet`) ----

    fn resnet(&mut self, m: &ResNet, x: &str, path: &str) -> Result<String> {
        let y = self.g.conv(x, &m.conv1, &format!("{path}.conv1"))?;
        let y = self.g.bn(&y, &m.bn1, &format!("{path}.bn1"))?;
        let y = self.g.relu(&y);
        let mut y = self.g.max_pool(&y, 3, 2, 1, &format!("{path}.maxpool"));
        for (i, layer) in [&m.layer1, &m.layer2, &m.layer3, &m.layer4]
            .into_iter()
            .enumerate()
        {
            for (b, block) in layer.iter().enumerate() {
                y = self.res_block(&y, block, &format!("{path}.layer{}.{b}", i + 1))?;
            }
        }
        for (i, d) in m.deconv_layers.iter().enumerate() {
            let p = format!("{path}.deconv_layers.{i}");
            y = self.g.conv_transpose(&y, &d.up, &format!("{p}.up"))?;
            y = self.g.bn(&y, &d.bn, &format!("{p}.bn"))?;
            y = self.g.relu(&y);
        }
        Ok(y)
    }

    fn res_block(&mut self, x: &str, b: &ResBlock, path: &str) -> Result<String> {
        let residual = match &b.downsample {
            Some(d) => self.conv_bn(x, d, &format!("{path}.downsample"), false)?,
            None => x.to_string(),
        };
        let y = self.g.conv(x, &b.conv1, &format!("{path}.conv1"))?;
        let y = self.g.bn(&y, &b.bn1, &format!("{path}.bn1"))?;
        let y = self.g.relu(&y);
        let y = self.g.conv(&y, &b.conv2, &format!("{path}.conv2"))?;
        let mut y = self.g.bn(&y, &b.bn2, &format!("{path}.bn2"))?;
        if let (Some(conv3), Some(bn3)) = (&b.conv3, &b.bn3) {
            let r = self.g.relu(&y);
            let z = self.g.conv(&r, conv3, &format!("{path}.conv3"))?;
            y = self.g.bn(&z, bn3, &format!("{path}.bn3"))?;
        }
        let sum = self.g.add(&y, &residual, &format!("{path}.add"));
        Ok(self.g.relu(&sum))
    }

    // ---- DLA-34 (`pose_dla_dcn`) ----

    fn basic_block(
        &mut self,
        x: &str,
        residual: &str,
        b: &BasicBlock,
        path: &str,
    ) -> Result<String> {
        let y = self.g.conv(x, &b.conv1, &format!("{path}.conv1"))?;
        let y = self.g.bn(&y, &b.bn1, &format!("{path}.bn1"))?;
        let y = self.g.relu(&y);
        let y = self.g.conv(&y, &b.conv2, &format!("{path}.conv2"))?;
        let y = self.g.bn(&y, &b.bn2, &format!("{path}.bn2"))?;
        let sum = self.g.add(&y, residual, &format!("{path}.add"));
        Ok(self.g.relu(&sum))
    }

    fn downsample(&mut self, x: &str, stride: usize, path: &str) -> String {
        if stride > 1 {
            self.g
                .max_pool(x, stride, stride, 0, &format!("{path}.downsample"))
        } else {
            x.to_string()
        }
    }

    fn tree1(
        &mut self,
        x: &str,
        t: &Tree1,
        mut children: Vec<String>,
        path: &str,
    ) -> Result<String> {
        let bottom = self.downsample(x, t.stride, path);
        let residual = match &t.project {
            Some(p) => self.conv_bn(&bottom, p, &format!("{path}.project"), false)?,
            None => bottom.clone(),
        };
        if t.level_root {
            children.push(bottom);
        }
        let x1 = self.basic_block(x, &residual, &t.tree1, &format!("{path}.tree1"))?;
        let x2 = self.basic_block(&x1, &x1, &t.tree2, &format!("{path}.tree2"))?;
        let mut parts = vec![x2, x1];
        parts.extend(children);
        let cat = self.g.concat(&parts, &format!("{path}.root.cat"));
        self.conv_bn(&cat, &t.root, &format!("{path}.root"), true)
    }

    fn tree2(&mut self, x: &str, t: &Tree2, path: &str) -> Result<String> {
        let mut children = Vec::new();
        if t.level_root {
            children.push(self.downsample(x, t.stride, path));
        }
        // `t.project` is dead in the reference network (model::dla): not exported.
        let x1 = self.tree1(x, &t.tree1, Vec::new(), &format!("{path}.tree1"))?;
        children.push(x1.clone());
        self.tree1(&x1, &t.tree2, children, &format!("{path}.tree2"))
    }

    fn dla(&mut self, m: &Dla, x: &str, path: &str) -> Result<Vec<String>> {
        let y = self.conv_bn(x, &m.base_layer, &format!("{path}.base_layer"), true)?;
        let l0 = self.conv_bn(&y, &m.level0, &format!("{path}.level0"), true)?;
        let l1 = self.conv_bn(&l0, &m.level1, &format!("{path}.level1"), true)?;
        let l2 = self.tree1(&l1, &m.level2, Vec::new(), &format!("{path}.level2"))?;
        let l3 = self.tree2(&l2, &m.level3, &format!("{path}.level3"))?;
        let l4 = self.tree2(&l3, &m.level4, &format!("{path}.level4"))?;
        let l5 = self.tree1(&l4, &m.level5, Vec::new(), &format!("{path}.level5"))?;
        Ok(vec![l0, l1, l2, l3, l4, l5])
    }

    /// PyTorch's `IDAUp.forward` on `layers[startp..endp]`, whose strides are `strides`.
    fn ida_up(
        &mut self,
        m: &IdaUp,
        layers: &mut [String],
        strides: &mut [usize],
        (startp, endp): (usize, usize),
        path: &str,
    ) -> Result<()> {
        for i in startp + 1..endp {
            let s = i - startp - 1;
            let p = format!("{path}.proj.{s}");
            let p = self.deform_block(&layers[i], &m.proj[s], &p, strides[i])?;
            let up = self
                .g
                .conv_transpose(&p, &m.up[s], &format!("{path}.up.{s}"))?;
            let sum = self.g.add(&up, &layers[i - 1], &format!("{path}.sum.{s}"));
            let node = format!("{path}.node.{s}");
            layers[i] = self.deform_block(&sum, &m.node[s], &node, strides[i - 1])?;
            strides[i] = strides[i - 1];
        }
        Ok(())
    }

    fn dla_seg(&mut self, m: &DlaSeg, x: &str, path: &str) -> Result<String> {
        let levels = self.dla(&m.base, x, &format!("{path}.base"))?;
        let startp = m.dla_up.startp;
        // DLAUp (model::dla_up::DlaUp::forward); level l has stride 2^l.
        let mut layers = levels[startp..].to_vec();
        let mut strides: Vec<usize> = (startp..levels.len()).map(|l| 1 << l).collect();
        let len = layers.len();
        let mut out = vec![(layers[len - 1].clone(), strides[len - 1])];
        for (i, ida) in m.dla_up.ida.iter().enumerate() {
            let p = format!("{path}.dla_up.ida.{i}");
            self.ida_up(ida, &mut layers, &mut strides, (len - i - 2, len), &p)?;
            out.insert(0, (layers[len - 1].clone(), strides[len - 1]));
        }
        let (mut y, mut ys): (Vec<String>, Vec<usize>) = out[..3].iter().cloned().unzip();
        let n = y.len();
        self.ida_up(
            &m.ida_up,
            &mut y,
            &mut ys,
            (0, n),
            &format!("{path}.ida_up"),
        )?;
        Ok(y.pop().expect("three fused maps"))
    }

    /// `DeformConv` of `pose_dla_dcn.py` on a map of stride `stride`.
    fn deform_block(
        &mut self,
        x: &str,
        b: &DeformConvBlock,
        path: &str,
        stride: usize,
    ) -> Result<String> {
        let y = self.dcn(x, &b.conv, &format!("{path}.conv"), stride)?;
        let y = self.g.bn(&y, &b.actf, &format!("{path}.actf"))?;
        Ok(self.g.relu(&y))
    }

    /// DCNv2 (or mDLA-34's plain 3×3 convolution): offsets are channels 0..18 of
    /// `conv_offset_mask`, (Δy, Δx) per kernel tap, the modulation mask the sigmoid of channels
    /// 18..27 (CenterNet `DCNv2/dcn_v2.py`; ONNX `DeformConv` reads the same layout).
    fn dcn(&mut self, x: &str, d: &Dcn, path: &str, stride: usize) -> Result<String> {
        let w = self.g.param(&format!("{path}.weight"), d.weight.val())?;
        let b = self.g.param(&format!("{path}.bias"), d.bias.val())?;
        let attrs = || {
            vec![
                ints("kernel_shape", &[3, 3]),
                ints("strides", &[1, 1]),
                ints("pads", &[1, 1, 1, 1]),
                ints("dilations", &[1, 1]),
                int("group", 1),
            ]
        };
        let Some(om) = &d.conv_offset_mask else {
            return Ok(self.g.op("Conv", path, &[x, &w, &b], attrs()));
        };
        let out = self.g.conv(x, om, &format!("{path}.conv_offset_mask"))?;
        let offset = self.g.channels(&out, 0, 18, &format!("{path}.offset"));
        let logits = self
            .g
            .channels(&out, 18, 27, &format!("{path}.mask_logits"));
        let mask = self
            .g
            .op("Sigmoid", &format!("{path}.mask"), &[&logits], Vec::new());
        match self.options.deform {
            DeformForm::Native => {
                let mut a = attrs();
                a.push(int("offset_group", 1));
                Ok(self
                    .g
                    .op("DeformConv", path, &[x, &w, &offset, &b, &mask], a))
            }
            DeformForm::Decomposed => {
                let map = self.options.input_size.map(|v| v / stride);
                self.dcn_decomposed(x, (&w, &offset, &mask, &b), d, map, path)
            }
        }
    }

    /// DCNv2 from standard operators: the nine taps' sampling positions as one `GridSample`
    /// grid (bilinear, zeros outside, `align_corners` so that grid ±1 are the first and last
    /// pixel centres), the samples times the mask, and a 1×1 convolution with the 3×3 weights
    /// laid out as `C·9` input channels (`c·9 + k`, PyTorch's order of `weight.reshape`).
    /// The map size is fixed (the constant part of the grid depends on it).
    fn dcn_decomposed(
        &mut self,
        x: &str,
        (weight, offset, mask, bias): (&str, &str, &str, &str),
        d: &Dcn,
        [h, w]: [usize; 2],
        path: &str,
    ) -> Result<String> {
        let [o, c, kh, kw] = d.weight.val().dims();
        if h < 2 || w < 2 {
            return Err(Error::Invalid(format!(
                "ONNX export: {path}: the decomposed deformable convolution needs maps of at least \
                 2 × 2 (this one is {h} × {w})"
            )));
        }
        let (sy, sx) = (2.0 / (h - 1) as f32, 2.0 / (w - 1) as f32);
        // Tap k = 3·ky + kx samples pixel (y + ky − 1 + Δy, x + kx − 1 + Δx); as a grid
        // coordinate g = pixel · 2 / (size − 1) − 1, so g = Δ · s + base.
        let mut base_x = Vec::with_capacity(9 * h * w);
        let mut base_y = Vec::with_capacity(9 * h * w);
        for k in 0..9 {
            let (ky, kx) = ((k / 3) as f32, (k % 3) as f32);
            for y in 0..h {
                for xx in 0..w {
                    base_y.push((y as f32 + ky - 1.0) * sy - 1.0);
                    base_x.push((xx as f32 + kx - 1.0) * sx - 1.0);
                }
            }
        }
        let g = &mut self.g;
        let bx = g.init_f32(&format!("{path}.grid_base_x"), &[1, 9, h, w], &base_x);
        let by = g.init_f32(&format!("{path}.grid_base_y"), &[1, 9, h, w], &base_y);
        let scale_x = g.init_f32(&format!("{path}.grid_scale_x"), &[1], &[sx]);
        let scale_y = g.init_f32(&format!("{path}.grid_scale_y"), &[1], &[sy]);
        // (B, 18, H, W) → (B, 9, 2, H, W): [:, k, 0] is Δy, [:, k, 1] is Δx.
        let s5 = g.init_i64(
            &format!("{path}.offset_shape"),
            &[0, 9, 2, h as i64, w as i64],
        );
        let off = g.op(
            "Reshape",
            &format!("{path}.offset_taps"),
            &[offset, &s5],
            Vec::new(),
        );
        let [dy, dx] = g.op_outputs(
            "Split",
            &format!("{path}.offset_split"),
            &[&off],
            &[".dy", ".dx"],
            vec![int("axis", 2), int("num_outputs", 2)],
        );
        // (B, 9, 1, H, W) each; the grid wants (B, 9·H, W, 2) with (x, y) last.
        let gx = g.op(
            "Mul",
            &format!("{path}.gx_scaled"),
            &[&dx, &scale_x],
            Vec::new(),
        );
        let gy = g.op(
            "Mul",
            &format!("{path}.gy_scaled"),
            &[&dy, &scale_y],
            Vec::new(),
        );
        let s4 = g.init_i64(&format!("{path}.tap_shape"), &[0, 9, h as i64, w as i64]);
        let gx = g.op(
            "Reshape",
            &format!("{path}.gx_taps"),
            &[&gx, &s4],
            Vec::new(),
        );
        let gy = g.op(
            "Reshape",
            &format!("{path}.gy_taps"),
            &[&gy, &s4],
            Vec::new(),
        );
        let gx = g.op("Add", &format!("{path}.gx"), &[&gx, &bx], Vec::new());
        let gy = g.op("Add", &format!("{path}.gy"), &[&gy, &by], Vec::new());
        let last = g.init_i64(&format!("{path}.last_axis"), &[4]);
        let gx = g.op(
            "Unsqueeze",
            &format!("{path}.gx_last"),
            &[&gx, &last],
            Vec::new(),
        );
        let gy = g.op(
            "Unsqueeze",
            &format!("{path}.gy_last"),
            &[&gy, &last],
            Vec::new(),
        );
        let grid = g.op(
            "Concat",
            &format!("{path}.grid_taps"),
            &[&gx, &gy],
            vec![int("axis", 4)],
        );
        let gs = g.init_i64(
            &format!("{path}.grid_shape"),
            &[0, (9 * h) as i64, w as i64, 2],
        );
        let grid = g.op(
            "Reshape",
            &format!("{path}.grid"),
            &[&grid, &gs],
            Vec::new(),
        );
        let sampled = g.op(
            "GridSample",
            &format!("{path}.sampled"),
            &[x, &grid],
            vec![
                string("mode", "bilinear"),
                string("padding_mode", "zeros"),
                int("align_corners", 1),
            ],
        );
        // (B, C, 9·H, W) → (B, C, 9, H, W), times the mask (B, 1, 9, H, W).
        let cs = g.init_i64(
            &format!("{path}.sample_shape"),
            &[0, c as i64, 9, h as i64, w as i64],
        );
        let sampled = g.op(
            "Reshape",
            &format!("{path}.sampled_taps"),
            &[&sampled, &cs],
            Vec::new(),
        );
        let one = g.init_i64(&format!("{path}.channel_axis"), &[1]);
        let m = g.op(
            "Unsqueeze",
            &format!("{path}.mask_taps"),
            &[mask, &one],
            Vec::new(),
        );
        let weighted = g.op(
            "Mul",
            &format!("{path}.modulated"),
            &[&sampled, &m],
            Vec::new(),
        );
        let cols = g.init_i64(
            &format!("{path}.column_shape"),
            &[0, (c * 9) as i64, h as i64, w as i64],
        );
        let columns = g.op(
            "Reshape",
            &format!("{path}.columns"),
            &[&weighted, &cols],
            Vec::new(),
        );
        let ws = g.init_i64(
            &format!("{path}.weight_shape"),
            &[o as i64, (c * kh * kw) as i64, 1, 1],
        );
        let w1 = g.op(
            "Reshape",
            &format!("{path}.weight_columns"),
            &[weight, &ws],
            Vec::new(),
        );
        Ok(g.op(
            "Conv",
            path,
            &[&columns, &w1, bias],
            vec![ints("kernel_shape", &[1, 1])],
        ))
    }

    // ---- Hourglass-104 (`large_hourglass`) ----

    fn convolution(&mut self, x: &str, m: &Convolution, path: &str) -> Result<String> {
        let mut y = self.g.conv(x, &m.conv, &format!("{path}.conv"))?;
        if let Some(bn) = &m.bn {
            y = self.g.bn(&y, bn, &format!("{path}.bn"))?;
        }
        Ok(self.g.relu(&y))
    }

    fn residual(&mut self, x: &str, m: &Residual, path: &str) -> Result<String> {
        let skip = match &m.skip {
            Some(s) => self.conv_bn(x, s, &format!("{path}.skip"), false)?,
            None => x.to_string(),
        };
        let y = self.g.conv(x, &m.conv1, &format!("{path}.conv1"))?;
        let y = self.g.bn(&y, &m.bn1, &format!("{path}.bn1"))?;
        let y = self.g.relu(&y);
        let y = self.g.conv(&y, &m.conv2, &format!("{path}.conv2"))?;
        let y = self.g.bn(&y, &m.bn2, &format!("{path}.bn2"))?;
        let sum = self.g.add(&y, &skip, &format!("{path}.add"));
        Ok(self.g.relu(&sum))
    }

    fn residuals(&mut self, x: &str, blocks: &[Residual], path: &str) -> Result<String> {
        let mut y = x.to_string();
        for (i, b) in blocks.iter().enumerate() {
            y = self.residual(&y, b, &format!("{path}.{i}"))?;
        }
        Ok(y)
    }

    fn kp(&mut self, m: &KpModule, depth: usize, x: &str, path: &str) -> Result<String> {
        let Some(level) = m.levels.get(depth) else {
            return self.residuals(x, &m.inner, &format!("{path}.inner"));
        };
        let p = format!("{path}.levels.{depth}");
        let up1 = self.residuals(x, &level.up1, &format!("{p}.up1"))?;
        let low1 = self.residuals(x, &level.low1, &format!("{p}.low1"))?;
        let low2 = self.kp(m, depth + 1, &low1, path)?;
        let low3 = self.residuals(&low2, &level.low3, &format!("{p}.low3"))?;
        // Nearest ×2 (Burn's `interpolate` Nearest: source index floor(i / 2)).
        let scales = self
            .g
            .init_f32(&format!("{p}.up2.scales"), &[4], &[1.0, 1.0, 2.0, 2.0]);
        let up2 = self.g.op(
            "Resize",
            &format!("{p}.up2"),
            &[&low3, "", &scales],
            vec![
                string("mode", "nearest"),
                string("coordinate_transformation_mode", "asymmetric"),
                string("nearest_mode", "floor"),
            ],
        );
        Ok(self.g.add(&up1, &up2, &format!("{p}.merge")))
    }

    fn hourglass(&mut self, m: &Hourglass, x: &str, path: &str) -> Result<String> {
        let y = self.convolution(x, &m.pre_conv, &format!("{path}.pre_conv"))?;
        let mut inter = self.residual(&y, &m.pre_res, &format!("{path}.pre_res"))?;
        let n = m.kps.len();
        let mut last = String::new();
        for i in 0..n {
            let kp = self.kp(&m.kps[i], 0, &inter, &format!("{path}.kps.{i}"))?;
            let cnv = self.convolution(&kp, &m.cnvs[i], &format!("{path}.cnvs.{i}"))?;
            if i + 1 < n {
                let a =
                    self.conv_bn(&inter, &m.inters_[i], &format!("{path}.inters_.{i}"), false)?;
                let b = self.conv_bn(&cnv, &m.cnvs_[i], &format!("{path}.cnvs_.{i}"), false)?;
                let merged = self.g.add(&a, &b, &format!("{path}.merge.{i}"));
                let merged = self.g.relu(&merged);
                inter = self.residual(&merged, &m.inters[i], &format!("{path}.inters.{i}"))?;
            }
            last = cnv;
        }
        Ok(last)
    }
}
