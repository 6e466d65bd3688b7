//! Pixels: `[N, C, H, W]` images (bytes, [−1, 1] ↦ 0..=255) → an RGBA grid on a canvas
//! ([`crate::image::grid`], as the CLI's PNGs); the schedule plot; PNG export.

use wasm_bindgen::{Clamped, JsCast, JsValue};
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

use super::dom;
use crate::image::{grid, grid_columns};

/// Gap between grid cells and around the grid, in image pixels.
const GAP: usize = 1;

pub fn context_2d(canvas: &HtmlCanvasElement) -> Result<CanvasRenderingContext2d, JsValue> {
    canvas
        .get_context("2d")?
        .ok_or_else(|| JsValue::from_str("canvas has no 2d context"))?
        .dyn_into::<CanvasRenderingContext2d>()
        .map_err(|_| JsValue::from_str("not a 2d context"))
}

/// Draws quantized `[N, C, H, W]` images as a grid onto canvas `id`, resizing the canvas to the
/// grid's own pixel size (CSS scales it up with crisp pixels).
pub fn draw_grid(id: &str, q: &[u8], shape: [usize; 4]) -> Result<(), JsValue> {
    let img = grid(q, shape, grid_columns(shape[0]), GAP, |v| v);
    put_rgba(
        &dom::el::<HtmlCanvasElement>(id),
        img.width,
        img.height,
        &img.pixels,
    )
}

/// Resizes `canvas` to `w`×`h` and puts `rgba` on it.
pub fn put_rgba(
    canvas: &HtmlCanvasElement,
    w: usize,
    h: usize,
    rgba: &[u8],
) -> Result<(), JsValue> {
    if canvas.width() != w as u32 || canvas.height() != h as u32 {
        canvas.set_width(w as u32);
        canvas.set_height(h as u32);
    }
    let img =
        web_sys::ImageData::new_with_u8_clamped_array_and_sh(Clamped(rgba), w as u32, h as u32)?;
    context_2d(canvas)?.put_image_data(&img, 0.0, 0.0)
}

/// A PNG data URL of canvas `id`, scaled up by an integer factor (nearest neighbour) so that
/// the longer side is at least `min_side` pixels.
pub fn png_data_url(id: &str, min_side: u32) -> Result<String, JsValue> {
    let src = dom::el::<HtmlCanvasElement>(id);
    let (w, h) = (src.width().max(1), src.height().max(1));
    let scale = min_side.div_ceil(w.max(h)).max(1);
    let out = dom::document()
        .create_element("canvas")?
        .dyn_into::<HtmlCanvasElement>()?;
    out.set_width(w * scale);
    out.set_height(h * scale);
    let ctx = context_2d(&out)?;
    ctx.set_image_smoothing_enabled(false);
    ctx.draw_image_with_html_canvas_element_and_dw_and_dh(
        &src,
        0.0,
        0.0,
        (w * scale) as f64,
        (h * scale) as f64,
    )?;
    out.to_data_url_with_type("image/png")
}

/// Saves `url` as a download named `name` (a temporary `<a download>`).
pub fn download(url: &str, name: &str) -> Result<(), JsValue> {
    let a = dom::document()
        .create_element("a")?
        .dyn_into::<web_sys::HtmlAnchorElement>()?;
    a.set_href(url);
    a.set_download(name);
    a.click();
    Ok(())
}

/// Curves of the schedule plot, each with one value per timestep t = 0..T−1.
pub struct PlotSeries<'a> {
    pub abar: &'a [f32],
    pub beta: &'a [f32],
    pub log_snr: &'a [f32],
}

/// A plot's 2d context on canvas `id`, sized to its CSS width × `aspect` at device resolution
/// (so lines stay sharp) and cleared, with the grid's stroke and label style set; returns the
/// context and the CSS size.
fn plot_canvas(id: &str, aspect: f64) -> Result<(CanvasRenderingContext2d, f64, f64), JsValue> {
    let canvas = dom::el::<HtmlCanvasElement>(id);
    let dpr = dom::window().device_pixel_ratio().clamp(1.0, 3.0);
    let w = canvas.client_width().max(240) as f64;
    let h = w * aspect;
    let (pw, ph) = ((w * dpr).round() as u32, (h * dpr).round() as u32);
    if canvas.width() != pw || canvas.height() != ph {
        canvas.set_width(pw);
        canvas.set_height(ph);
    }
    let ctx = context_2d(&canvas)?;
    ctx.set_transform(dpr, 0.0, 0.0, dpr, 0.0, 0.0)?;
    ctx.set_fill_style_str("#0a0b0e");
    ctx.fill_rect(0.0, 0.0, w, h);
    ctx.set_stroke_style_str("#2a2f3a");
    ctx.set_line_width(1.0);
    ctx.set_font("11px ui-monospace, monospace");
    ctx.set_fill_style_str("#9aa3b2");
    Ok((ctx, w, h))
}

/// Five timestep labels along the bottom (0, T/4, T/2, 3T/4, T−1 of `n` timesteps), `x_of`
/// placing t; centred, the last kept inside the canvas of width `w` and height `h`.
fn t_axis_labels(
    ctx: &CanvasRenderingContext2d,
    n: usize,
    x_of: impl Fn(usize) -> f64,
    w: f64,
    h: f64,
) -> Result<(), JsValue> {
    for k in 0..=4 {
        let t = if k == 4 { n - 1 } else { n * k / 4 };
        let label = t.to_string();
        let half = 3.3 * label.len() as f64;
        ctx.fill_text(&label, (x_of(t) - half).min(w - 2.0 * half - 2.0), h - 6.0)?;
    }
    Ok(())
}

/// Plots ᾱ_t, β_t / max β and log SNR (rescaled to its range) against t, with a marker at `t`.
pub fn draw_schedule_plot(id: &str, s: &PlotSeries, t: usize) -> Result<(), JsValue> {
    let (ctx, w, h) = plot_canvas(id, 220.0 / 480.0)?;
    let (left, right, top, bottom) = (34.0, 10.0, 10.0, 24.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let n = s.abar.len().max(1);
    let last = (n - 1).max(1) as f64;
    for k in 0..=4 {
        let y = top + ph * k as f64 / 4.0;
        ctx.begin_path();
        ctx.move_to(left, y);
        ctx.line_to(left + pw, y);
        ctx.stroke();
        ctx.fill_text(&format!("{:.2}", 1.0 - k as f64 / 4.0), 2.0, y + 4.0)?;
    }
    t_axis_labels(&ctx, n, |t| left + pw * t as f64 / last, w, h)?;

    let curve = |vals: &[f32], lo: f32, hi: f32, color: &str| {
        if vals.is_empty() {
            return;
        }
        let span = (hi - lo).max(1e-12);
        ctx.set_stroke_style_str(color);
        ctx.set_line_width(1.8);
        ctx.begin_path();
        for (i, &v) in vals.iter().enumerate() {
            let x = left + pw * i as f64 / last;
            let y = top + ph * (1.0 - ((v - lo) / span).clamp(0.0, 1.0) as f64);
            if i == 0 {
                ctx.move_to(x, y);
            } else {
                ctx.line_to(x, y);
            }
        }
        ctx.stroke();
    };
    let bmax = s.beta.iter().cloned().fold(0.0f32, f32::max);
    let (smin, smax) = s
        .log_snr
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    curve(s.beta, 0.0, bmax, "#f0b849");
    curve(s.log_snr, smin, smax, "#c38af0");
    curve(s.abar, 0.0, 1.0, "#7aa2ff");

    // Marker at t.
    let x = left + pw * t as f64 / last;
    ctx.set_stroke_style_str("#e6e8ee");
    ctx.set_line_width(1.0);
    ctx.set_line_dash(&js_sys::Array::of2(&4.0.into(), &3.0.into()))?;
    ctx.begin_path();
    ctx.move_to(x, top);
    ctx.line_to(x, top + ph);
    ctx.stroke();
    ctx.set_line_dash(&js_sys::Array::new())?;
    if let Some(&a) = s.abar.get(t) {
        let y = top + ph * (1.0 - a as f64);
        ctx.set_fill_style_str("#7aa2ff");
        ctx.begin_path();
        ctx.arc(x, y, 3.5, 0.0, std::f64::consts::TAU)?;
        ctx.fill();
    }
    Ok(())
}

/// Plots a loss curve (`points`: (t, loss)) against t = 0..`train_timesteps`−1 on a log scale,
/// one dot per measured timestep.
pub fn draw_loss_plot(
    id: &str,
    points: &[(usize, f64)],
    train_timesteps: usize,
) -> Result<(), JsValue> {
    let (ctx, w, h) = plot_canvas(id, 160.0 / 480.0)?;
    let (left, right, top, bottom) = (46.0, 10.0, 10.0, 24.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let logs: Vec<f64> = points.iter().map(|p| p.1.max(1e-9).log10()).collect();
    let lo = logs.iter().cloned().fold(f64::INFINITY, f64::min).floor();
    let hi = logs
        .iter()
        .cloned()
        .fold(f64::NEG_INFINITY, f64::max)
        .ceil();
    if !lo.is_finite() || !hi.is_finite() {
        return Ok(());
    }
    let hi = hi.max(lo + 1.0);
    let y_of = |l: f64| top + ph * (1.0 - (l - lo) / (hi - lo));
    let last = (train_timesteps.max(2) - 1) as f64;
    let x_of = |t: usize| left + pw * t as f64 / last;
    let mut decade = lo;
    while decade <= hi {
        let y = y_of(decade);
        ctx.begin_path();
        ctx.move_to(left, y);
        ctx.line_to(left + pw, y);
        ctx.stroke();
        ctx.fill_text(&format!("1e{decade}"), 2.0, y + 4.0)?;
        decade += 1.0;
    }
    t_axis_labels(&ctx, train_timesteps.max(1), x_of, w, h)?;
    ctx.set_stroke_style_str("#5fd4a0");
    ctx.set_fill_style_str("#5fd4a0");
    ctx.set_line_width(1.8);
    ctx.begin_path();
    for (i, (p, &l)) in points.iter().zip(&logs).enumerate() {
        if i == 0 {
            ctx.move_to(x_of(p.0), y_of(l));
        } else {
            ctx.line_to(x_of(p.0), y_of(l));
        }
    }
    ctx.stroke();
    for (p, &l) in points.iter().zip(&logs) {
        ctx.begin_path();
        ctx.arc(x_of(p.0), y_of(l), 3.0, 0.0, std::f64::consts::TAU)?;
        ctx.fill();
    }
    Ok(())
}
