//! Downloads of the viewer's run: the x_t frame shown (PNG), the trajectory x_T → x_0 (an
//! animated GIF, [`crate::image::trajectory_gif`] as `ddpm sample --gif` writes it) and the
//! samples (NCHW float32 `.npy`, as `ddpm sample --npy` writes them); where the browser has
//! `MediaRecorder`, the trajectory as WebM video too.

use super::ids;
use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::{closure::Closure, JsCast, JsValue};
use web_sys::HtmlCanvasElement;

use super::error::{PageError, PageResult};
use super::{dom, draw};
use crate::generation::Frames;

/// The x_t canvas as shown, scaled up to at least 512 pixels, named after the seed and frame.
pub fn png() -> PageResult<()> {
    let label = dom::el::<web_sys::Element>(ids::VIEW_T_LABEL)
        .text_content()
        .unwrap_or_default();
    let at = match label.strip_prefix("t = ") {
        Some(t) => format!("t{t}"),
        None => "sample".into(),
    };
    let url = draw::png_data_url(ids::CANVAS_XT, 512).map_err(browser("reading the canvas"))?;
    draw::download(&url, &format!("{}-{at}.png", stem())).map_err(browser(DOWNLOADING))
}

/// Every kept frame of x_t, all images on one grid.
pub fn gif(frames: &Frames) -> PageResult<()> {
    let bytes = frames.gif()?;
    download_bytes(&bytes, "image/gif", &format!("{}-trajectory.gif", stem()))
}

/// Frames per second of the WebM video (each stored frame once, the sample held at the end).
const WEBM_FPS: f64 = 15.0;
/// The video's pixels per image pixel (nearest neighbour).
const WEBM_SCALE: usize = 4;

/// Whether the browser can record a canvas (`MediaRecorder`).
pub fn can_record_video() -> bool {
    js_sys::Reflect::has(&dom::window(), &JsValue::from_str("MediaRecorder")).unwrap_or(false)
}

/// The trajectory as WebM: the stored x_t frames drawn at [`WEBM_FPS`] onto a canvas that a
/// `MediaRecorder` captures (so it takes as long as the video lasts).
pub async fn webm(frames: &Frames) -> PageResult<()> {
    if !can_record_video() {
        return Err(PageError::Browser {
            doing: RECORDING,
            message: "this browser has no MediaRecorder".into(),
        });
    }
    let cols = crate::image::grid_columns(frames.shape[0]);
    let images: Vec<_> = (0..frames.len())
        .map(|i| crate::image::grid(frames.x(i), frames.shape, cols, 2, |v| v))
        .collect();
    let first = images.first().ok_or(PageError::Nothing("trajectory"))?;
    let (w, h) = (first.width * WEBM_SCALE, first.height * WEBM_SCALE);
    let canvas = dom::document()
        .create_element("canvas")
        .map_err(browser(RECORDING))?
        .dyn_into::<HtmlCanvasElement>()
        .map_err(|_| PageError::Browser {
            doing: RECORDING,
            message: "not a canvas".into(),
        })?;
    let show = |img: &crate::image::Rgba| -> PageResult<()> {
        let big = upscale(img, WEBM_SCALE);
        draw::put_rgba(&canvas, w, h, &big).map_err(browser(RECORDING))
    };
    show(first)?;
    let stream = canvas
        .capture_stream_with_frame_request_rate(WEBM_FPS)
        .map_err(browser(RECORDING))?;
    let opts = web_sys::MediaRecorderOptions::new();
    opts.set_mime_type("video/webm");
    let recorder =
        web_sys::MediaRecorder::new_with_media_stream_and_media_recorder_options(&stream, &opts)
            .map_err(browser(RECORDING))?;
    let chunks = Rc::new(RefCell::new(js_sys::Array::new()));
    let on_data = {
        let chunks = chunks.clone();
        Closure::<dyn FnMut(web_sys::BlobEvent)>::new(move |e: web_sys::BlobEvent| {
            if let Some(b) = e.data() {
                chunks.borrow().push(&b);
            }
        })
    };
    recorder.set_ondataavailable(Some(on_data.as_ref().unchecked_ref()));
    let (tx, rx) = futures_channel::oneshot::channel::<()>();
    let mut tx = Some(tx);
    let on_stop = Closure::<dyn FnMut()>::new(move || {
        if let Some(tx) = tx.take() {
            let _ = tx.send(());
        }
    });
    recorder.set_onstop(Some(on_stop.as_ref().unchecked_ref()));
    recorder.start().map_err(browser(RECORDING))?;
    let frame_ms = 1e3 / WEBM_FPS;
    for img in &images[1..] {
        sleep_ms(frame_ms).await;
        show(img)?;
    }
    // Hold the sample, as the GIF does.
    sleep_ms(frame_ms * crate::image::TRAJECTORY_HOLD_FRAMES as f64).await;
    recorder.stop().map_err(browser(RECORDING))?;
    let _ = rx.await;
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type("video/webm");
    let blob = web_sys::Blob::new_with_blob_sequence_and_options(&chunks.borrow(), &opts)
        .map_err(browser(RECORDING))?;
    drop((on_data, on_stop));
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(browser(RECORDING))?;
    draw::download(&url, &format!("{}-trajectory.webm", stem())).map_err(browser(DOWNLOADING))?;
    revoke_later(url)
}

/// `img` scaled up `k`× (nearest neighbour).
fn upscale(img: &crate::image::Rgba, k: usize) -> Vec<u8> {
    let (w, h) = (img.width * k, img.height * k);
    let mut out = vec![0u8; w * h * 4];
    for y in 0..h {
        for x in 0..w {
            let src = ((y / k) * img.width + x / k) * 4;
            out[(y * w + x) * 4..(y * w + x) * 4 + 4].copy_from_slice(&img.pixels[src..src + 4]);
        }
    }
    out
}

/// Resolves after `ms` milliseconds (a `setTimeout`).
async fn sleep_ms(ms: f64) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = dom::window()
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms.round() as i32);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// The final samples, `shape` = `[N, C, H, W]`.
pub fn npy(samples: &[f32], shape: [usize; 4]) -> PageResult<()> {
    let bytes = crate::npy::to_bytes(&shape, samples)?;
    download_bytes(
        &bytes,
        "application/octet-stream",
        &format!("{}.npy", stem()),
    )
}

/// What a failed browser call was doing.
const DOWNLOADING: &str = "starting the download";
const RECORDING: &str = "recording the video";

/// Maps a JS exception to a [`PageError::Browser`] while `doing`.
fn browser(doing: &'static str) -> impl Fn(JsValue) -> PageError {
    move |e| PageError::browser(doing, e)
}

/// `ddpm-seed{seed}`.
fn stem() -> String {
    format!("ddpm-seed{}", dom::input_f64(ids::SEED, 0.0) as u64)
}

/// Saves `bytes` as a download through a Blob URL.
fn download_bytes(bytes: &[u8], mime: &str, name: &str) -> PageResult<()> {
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &opts)
        .map_err(browser(DOWNLOADING))?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(browser(DOWNLOADING))?;
    draw::download(&url, name).map_err(browser(DOWNLOADING))?;
    revoke_later(url)
}

/// Revokes a Blob URL a minute later (once its download has surely started).
fn revoke_later(url: String) -> PageResult<()> {
    let revoke = Closure::once_into_js(move || {
        let _ = web_sys::Url::revoke_object_url(&url);
    });
    dom::window()
        .set_timeout_with_callback_and_timeout_and_arguments_0(revoke.unchecked_ref(), 60_000)
        .map(|_| ())
        .map_err(browser(DOWNLOADING))
}
