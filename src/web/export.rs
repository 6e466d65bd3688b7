//! Downloads of the viewer's run: the x_t frame shown (PNG), the trajectory x_T → x_0 (an
//! animated GIF, [`crate::image::trajectory_gif`] as `ddpm sample --gif` writes it) and the
//! samples (NCHW float32 `.npy`, as `ddpm sample --npy` writes them).

use wasm_bindgen::JsValue;

use super::{dom, draw, run::Frames};

/// The x_t canvas as shown, scaled up to at least 512 pixels, named after the seed and frame.
pub fn png() -> Result<(), String> {
    let label = dom::el::<web_sys::Element>("view-t-label")
        .text_content()
        .unwrap_or_default();
    let at = match label.strip_prefix("t = ") {
        Some(t) => format!("t{t}"),
        None => "sample".into(),
    };
    let url = draw::png_data_url("canvas-xt", 512).map_err(dom::js_err)?;
    draw::download(&url, &format!("{}-{at}.png", stem())).map_err(dom::js_err)
}

/// Every kept frame of x_t, all images on one grid.
pub fn gif(frames: &Frames) -> Result<(), String> {
    let views: Vec<&[u8]> = (0..frames.len()).map(|i| frames.x(i)).collect();
    let cols = crate::image::grid_columns(frames.shape[0]);
    let bytes =
        crate::image::trajectory_gif(&views, frames.shape, cols).map_err(|e| e.to_string())?;
    download_bytes(&bytes, "image/gif", &format!("{}-trajectory.gif", stem()))
}

/// The final samples, `shape` = `[N, C, H, W]`.
pub fn npy(samples: &[f32], shape: [usize; 4]) -> Result<(), String> {
    let bytes = crate::npy::to_bytes(&shape, samples).map_err(|e| e.to_string())?;
    download_bytes(
        &bytes,
        "application/octet-stream",
        &format!("{}.npy", stem()),
    )
}

/// `ddpm-seed{seed}`.
fn stem() -> String {
    format!("ddpm-seed{}", dom::input_f64("seed", 0.0) as u64)
}

/// Saves `bytes` as a download through a Blob URL (revoked a minute later).
fn download_bytes(bytes: &[u8], mime: &str, name: &str) -> Result<(), String> {
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &opts)
        .map_err(dom::js_err)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(dom::js_err)?;
    draw::download(&url, name).map_err(dom::js_err)?;
    let revoke = wasm_bindgen::closure::Closure::once_into_js(move || {
        let _ = web_sys::Url::revoke_object_url(&url);
    });
    dom::window()
        .set_timeout_with_callback_and_timeout_and_arguments_0(
            wasm_bindgen::JsCast::unchecked_ref(&revoke),
            60_000,
        )
        .map(|_| ())
        .map_err(|e: JsValue| dom::js_err(e))
}
