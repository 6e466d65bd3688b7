//! A dependency-free loss-curve plot: loss.csv → PNG (log-scale loss against step, raw readings
//! as dots, an exponential moving average as a line, labelled with a tiny bitmap font).

use std::path::Path;

use anyhow::Context;
use ddpm::image::Rgba;

const W: usize = 720;
const H: usize = 400;
const MARGIN_L: usize = 60;
const MARGIN_B: usize = 30;
const MARGIN_T: usize = 16;
const MARGIN_R: usize = 16;

/// 3×5 glyphs for the characters labels use.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        'k' => [4, 5, 6, 5, 5],
        'e' => [0, 7, 7, 4, 7],
        '-' => [0, 0, 7, 0, 0],
        _ => [0; 5],
    }
}

struct Canvas(Rgba);

impl Canvas {
    fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < W && y < H {
            let o = (y * W + x) * 4;
            self.0.pixels[o..o + 3].copy_from_slice(&c);
        }
    }

    fn text(&mut self, x: usize, y: usize, s: &str, c: [u8; 3]) {
        for (i, ch) in s.chars().enumerate() {
            for (row, bits) in glyph(ch).iter().enumerate() {
                for col in 0..3 {
                    if bits >> (2 - col) & 1 == 1 {
                        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            self.set(x + i * 8 + col * 2 + dx, y + row * 2 + dy, c);
                        }
                    }
                }
            }
        }
    }

    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3]) {
        let n = ((x1 - x0).abs().max((y1 - y0).abs()) as usize).max(1);
        for i in 0..=n {
            let t = i as f64 / n as f64;
            self.set(
                (x0 + t * (x1 - x0)) as usize,
                (y0 + t * (y1 - y0)) as usize,
                c,
            );
        }
    }
}

fn fmt_step(s: f64) -> String {
    if s >= 1000.0 {
        format!("{}k", (s / 1000.0 * 10.0).round() / 10.0)
    } else {
        format!("{}", s.round())
    }
}

/// Reads `step,loss,…` rows from `csv` and writes the plot to `png`.
pub fn loss_curve(csv: &Path, png: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(csv).with_context(|| format!("reading {}", csv.display()))?;
    let points: Vec<(f64, f64)> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            let step = f.next()?.parse().ok()?;
            let loss: f64 = f.next()?.parse().ok()?;
            (loss > 0.0 && loss.is_finite()).then_some((step, loss))
        })
        .collect();
    let mut c = Canvas(Rgba {
        width: W,
        height: H,
        pixels: [20u8, 22, 28, 255].repeat(W * H),
    });
    if points.len() >= 2 {
        let (s0, s1) = (
            points[0].0,
            points.last().expect("non-empty").0.max(points[0].0 + 1.0),
        );
        let lmin = points
            .iter()
            .map(|p| p.1)
            .fold(f64::MAX, f64::min)
            .log10()
            .floor();
        let lmax = points
            .iter()
            .map(|p| p.1)
            .fold(f64::MIN, f64::max)
            .log10()
            .ceil()
            .max(lmin + 1.0);
        let px = |s: f64| MARGIN_L as f64 + (s - s0) / (s1 - s0) * (W - MARGIN_L - MARGIN_R) as f64;
        let py = |l: f64| {
            MARGIN_T as f64 + (lmax - l.log10()) / (lmax - lmin) * (H - MARGIN_T - MARGIN_B) as f64
        };
        // Decade grid lines with labels.
        let mut d = lmin;
        while d <= lmax {
            let y = py(10f64.powf(d));
            c.line(
                (MARGIN_L as f64, y),
                ((W - MARGIN_R) as f64, y),
                [48, 52, 64],
            );
            c.text(
                4,
                y as usize - 5,
                &format!("1e{}", d as i32),
                [150, 155, 170],
            );
            d += 1.0;
        }
        for i in 0..=4 {
            let s = s0 + (s1 - s0) * i as f64 / 4.0;
            c.line(
                (px(s), MARGIN_T as f64),
                (px(s), (H - MARGIN_B) as f64),
                [48, 52, 64],
            );
            c.text(
                px(s) as usize - 8,
                H - MARGIN_B + 8,
                &fmt_step(s),
                [150, 155, 170],
            );
        }
        for &(s, l) in &points {
            c.set(px(s) as usize, py(l) as usize, [90, 110, 160]);
        }
        let mut ema = points[0].1;
        let mut prev = (px(points[0].0), py(ema));
        for &(s, l) in &points[1..] {
            ema = 0.95 * ema + 0.05 * l;
            let p = (px(s), py(ema));
            c.line(prev, p, [255, 180, 60]);
            prev = p;
        }
    }
    super::sample::write_png(png, &c.0)
}
