//! The drawing pad (`#draw-pad`): paint an image with the mouse, a pen or a finger at the
//! model's sample size, then offer it to the forward view as x_0 (`#draw-use`), to noise and
//! denoise like a data example. Strokes are white on black, as MNIST digits.

use super::ids;
use std::cell::RefCell;

use wasm_bindgen::JsCast;
use web_sys::{HtmlCanvasElement, PointerEvent};

use super::{dom, draw};
use crate::sampler::SnapshotData;

/// Stroke radius in image pixels (at 28×28; scaled with the pad's size).
const BRUSH: f32 = 1.3;

struct Pad {
    /// `[1, C, H, W]`.
    shape: [usize; 4],
    /// One channel, values in [−1, 1].
    ink: Vec<f32>,
    drawing: bool,
}

thread_local! {
    static PAD: RefCell<Pad> = RefCell::new(Pad {
        shape: [1, 1, 28, 28],
        ink: vec![-1.0; 28 * 28],
        drawing: false,
    });
}

/// Wires the pad's pointer events and buttons; `on_use` receives the drawing
/// (`[1, C, H, W]`, channels equal).
pub fn wire(on_use: impl Fn(Vec<f32>, [usize; 4]) + 'static) {
    dom::on::<PointerEvent>(ids::DRAW_PAD, "pointerdown", |e| {
        e.prevent_default();
        if let Some(t) = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        {
            let _ = t.set_pointer_capture(e.pointer_id());
        }
        PAD.with_borrow_mut(|p| p.drawing = true);
        paint(&e);
    });
    dom::on::<PointerEvent>(ids::DRAW_PAD, "pointermove", |e| {
        if PAD.with_borrow(|p| p.drawing) {
            paint(&e);
        }
    });
    for end in ["pointerup", "pointercancel", "pointerleave"] {
        dom::on::<PointerEvent>(ids::DRAW_PAD, end, |_| {
            PAD.with_borrow_mut(|p| p.drawing = false)
        });
    }
    dom::on::<web_sys::Event>(ids::DRAW_CLEAR, "click", |_| {
        PAD.with_borrow_mut(|p| p.ink.fill(-1.0));
        show();
    });
    dom::on::<web_sys::Event>(ids::DRAW_USE, "click", move |_| {
        let (x, shape) = PAD.with_borrow(|p| (p.ink.repeat(p.shape[1]), p.shape));
        on_use(x, shape);
    });
    show();
}

/// Sizes the pad for a model drawing `[c, h, w]` (clearing it when the size changes).
pub fn resize([c, h, w]: [usize; 3]) {
    PAD.with_borrow_mut(|p| {
        if p.shape != [1, c, h, w] {
            p.shape = [1, c, h, w];
            p.ink = vec![-1.0; h * w];
        }
    });
    show();
}

/// Paints a soft disc under the pointer.
fn paint(e: &PointerEvent) {
    let canvas = dom::el::<HtmlCanvasElement>(ids::DRAW_PAD);
    let rect = canvas.get_bounding_client_rect();
    PAD.with_borrow_mut(|p| {
        let [_, _, h, w] = p.shape;
        let x = (e.client_x() as f64 - rect.left()) / rect.width().max(1.0) * w as f64;
        let y = (e.client_y() as f64 - rect.top()) / rect.height().max(1.0) * h as f64;
        let r = BRUSH * w.max(h) as f32 / 28.0;
        for py in 0..h {
            for px in 0..w {
                let d = ((px as f32 + 0.5 - x as f32).powi(2)
                    + (py as f32 + 0.5 - y as f32).powi(2))
                .sqrt();
                // Full ink inside r, fading over one pixel beyond it.
                let a = (r + 1.0 - d).clamp(0.0, 1.0);
                let v = &mut p.ink[py * w + px];
                *v = v.max(-1.0 + 2.0 * a);
            }
        }
    });
    show();
}

/// Draws the pad edge to edge (no grid gap, so pointer positions map straight to pixels).
fn show() {
    let (q, [_, _, h, w]) = PAD.with_borrow(|p| (SnapshotData::quantise(&p.ink), p.shape));
    let img = crate::image::grid(&q, [1, 1, h, w], 1, 0, |v| v);
    let canvas = dom::el::<HtmlCanvasElement>(ids::DRAW_PAD);
    if let Err(e) = draw::put_rgba(&canvas, img.width, img.height, &img.pixels) {
        web_sys::console::error_1(&e);
    }
}
