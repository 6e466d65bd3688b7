//! Getting model files into the page: a URL folder (with download progress) or the user's files.

use js_sys::Uint8Array;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::dom;
use super::error::{js_message, PageError, PageResult};
use crate::hub::{self, HubId};

/// Weights file name inside a diffusers model folder.
pub const WEIGHTS: &str = "diffusion_pytorch_model.safetensors";
/// Optional scheduler settings inside a model folder (DDPM's defaults without it).
pub const SCHEDULER: &str = "scheduler_config.json";

/// The files of a diffusers model as the page received them.
pub struct ModelFiles {
    /// Where they came from (a URL or "your files").
    pub source: String,
    pub config: Vec<u8>,
    pub weights: Vec<u8>,
    pub scheduler: Option<Vec<u8>>,
}

/// Downloads `url`, calling `progress(bytes so far, total if the server said)` as it goes.
pub async fn fetch_bytes(url: &str, progress: impl FnMut(u64, Option<u64>)) -> PageResult<Vec<u8>> {
    fetch_maybe(url, progress)
        .await?
        .ok_or_else(|| PageError::file(url, "HTTP 404 Not Found"))
}

/// [`fetch_bytes`], but `None` when the server answers 404.
pub async fn fetch_maybe(
    url: &str,
    progress: impl FnMut(u64, Option<u64>),
) -> PageResult<Option<Vec<u8>>> {
    let resp = JsFuture::from(dom::window().fetch_with_str(url))
        .await
        .map_err(|e| PageError::file(url, js_message(e)))?
        .dyn_into::<web_sys::Response>()
        .map_err(|_| PageError::file(url, "not a fetch Response"))?;
    if resp.status() == 404 {
        return Ok(None);
    }
    if !resp.ok() {
        let status = format!("HTTP {} {}", resp.status(), resp.status_text());
        return Err(PageError::file(url, status));
    }
    read_body(&resp, url, progress).await.map(Some)
}

/// Reads a response body, reporting progress; a body shorter than its `content-length` is an
/// error (a truncated download).
async fn read_body(
    resp: &web_sys::Response,
    url: &str,
    mut progress: impl FnMut(u64, Option<u64>),
) -> PageResult<Vec<u8>> {
    let total = resp
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok());
    let Some(body) = resp.body() else {
        return Ok(Vec::new());
    };
    let reader = body
        .get_reader()
        .dyn_into::<web_sys::ReadableStreamDefaultReader>()
        .map_err(|_| PageError::file(url, "no stream reader"))?;
    let mut out = Vec::with_capacity(total.unwrap_or(0).min(1 << 31) as usize);
    progress(0, total);
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| PageError::file(url, format!("download failed: {}", js_message(e))))?
            .unchecked_into::<web_sys::ReadableStreamReadResult>();
        if chunk.get_done().unwrap_or(false) {
            break;
        }
        let bytes = chunk.get_value().unchecked_into::<Uint8Array>();
        let at = out.len();
        out.resize(at + bytes.length() as usize, 0);
        bytes.copy_to(&mut out[at..]);
        progress(out.len() as u64, total);
    }
    if let Some(t) = total.filter(|&t| t != out.len() as u64) {
        let why = format!(
            "truncated download ({} of {t} bytes); reload to retry",
            out.len()
        );
        return Err(PageError::file(url, why));
    }
    Ok(out)
}

/// The Cache Storage bucket of Hub downloads (`None` where the page has no Cache Storage, e.g.
/// outside a secure context: then every load downloads).
async fn hub_cache() -> Option<web_sys::Cache> {
    let caches = dom::window().caches().ok()?;
    let cache = JsFuture::from(caches.open(HUB_CACHE)).await.ok()?;
    cache.dyn_into::<web_sys::Cache>().ok()
}

/// Cache Storage bucket name of Hub files.
const HUB_CACHE: &str = "ddpm-hub-v1";

/// `url` from the Hub cache, else downloaded (and cached once complete); `None` on 404 (also
/// cached, so that a reload probes nothing). The flag says whether it came from the cache.
async fn cached_fetch(
    cache: Option<&web_sys::Cache>,
    url: &str,
    progress: impl FnMut(u64, Option<u64>),
) -> PageResult<Option<(Vec<u8>, bool)>> {
    if let Some(cache) = cache {
        if let Ok(hit) = JsFuture::from(cache.match_with_str(url)).await {
            if let Ok(resp) = hit.dyn_into::<web_sys::Response>() {
                if resp.status() == 404 {
                    return Ok(None);
                }
                return read_body(&resp, url, progress)
                    .await
                    .map(|b| Some((b, true)));
            }
        }
    }
    let got = fetch_maybe(url, progress).await?;
    if let Some(cache) = cache {
        // Best effort: a full disk only costs the next load a download.
        let resp = match got.clone() {
            Some(mut bytes) => web_sys::Response::new_with_opt_u8_array(Some(&mut bytes)),
            None => {
                let init = web_sys::ResponseInit::new();
                init.set_status(404);
                web_sys::Response::new_with_opt_str_and_init(None, &init)
            }
        };
        if let Ok(resp) = resp {
            let _ = JsFuture::from(cache.put_with_str(url, &resp)).await;
        }
    }
    Ok(got.map(|bytes| (bytes, false)))
}

/// Downloads the UNet2DModel of Hub repo `id` from `endpoint` (a model repo: config.json and
/// weights at the root; or a pipeline: model_index.json → unet/, scheduler/), through the
/// browser's Cache Storage so that a reload needs no download.
pub async fn fetch_hub_model(
    endpoint: &str,
    id: &HubId,
    mut progress: impl FnMut(&str, u64, Option<u64>),
) -> PageResult<ModelFiles> {
    let cache = hub_cache().await;
    let mut from_cache = true;
    let get = async |file: &str| -> crate::Result<Option<Vec<u8>>> {
        let url = id.url(endpoint, file);
        let got = cached_fetch(cache.as_ref(), &url, |d, t| progress(file, d, t))
            .await
            .map_err(|e| crate::Error::Hub(e.to_string()))?;
        Ok(got.map(|(bytes, hit)| {
            from_cache &= hit;
            bytes
        }))
    };
    let located = hub::locate_model(id, |file| id.url(endpoint, file), get).await?;
    Ok(ModelFiles {
        source: format!(
            "{id} ({})",
            if from_cache {
                "from the browser cache".to_string()
            } else {
                endpoint.to_string()
            }
        ),
        config: located.config,
        weights: located.weights.1,
        scheduler: located.scheduler,
    })
}

/// Downloads `config.json`, the weights and (if present) `scheduler_config.json` from the folder
/// `base` (ending in `/`).
pub async fn fetch_model(
    base: &str,
    mut progress: impl FnMut(&str, u64, Option<u64>),
) -> PageResult<ModelFiles> {
    let config = fetch_bytes(&format!("{base}config.json"), |d, t| {
        progress("config.json", d, t)
    })
    .await?;
    let weights = fetch_bytes(&format!("{base}{WEIGHTS}"), |d, t| progress(WEIGHTS, d, t)).await?;
    let scheduler = fetch_maybe(&format!("{base}{SCHEDULER}"), |d, t| {
        progress(SCHEDULER, d, t)
    })
    .await?;
    Ok(ModelFiles {
        source: base.to_string(),
        config,
        weights,
        scheduler,
    })
}

/// Reads the files the user picked or dropped: one `*.safetensors` (or PyTorch `*.bin`), one
/// `config.json` (any other `*.json` name works if it is the only one) and optionally
/// `scheduler_config.json`.
pub async fn read_user_files(list: &web_sys::FileList) -> PageResult<ModelFiles> {
    let files: Vec<web_sys::File> = (0..list.length()).filter_map(|i| list.get(i)).collect();
    let names: Vec<String> = files.iter().map(|f| f.name()).collect();
    let find = |pred: &dyn Fn(&str) -> bool| files.iter().find(|f| pred(&f.name()));
    let weights = find(&|n| n.ends_with(".safetensors"))
        .or_else(|| find(&|n| n.ends_with(".bin")))
        .ok_or_else(|| {
            PageError::Input(format!(
                "no .safetensors or .bin weights file among {names:?} (expected {WEIGHTS})"
            ))
        })?;
    let scheduler = find(&|n| n == SCHEDULER);
    let config = find(&|n| n == "config.json")
        .or_else(|| {
            let other: Vec<_> = files
                .iter()
                .filter(|f| f.name().ends_with(".json") && f.name() != SCHEDULER)
                .collect();
            (other.len() == 1).then(|| other[0])
        })
        .ok_or_else(|| PageError::Input(format!("no config.json among {names:?}")))?;
    let scheduler = match scheduler {
        Some(f) => Some(read_file(f).await?),
        None => None,
    };
    Ok(ModelFiles {
        source: format!("your files ({}, {})", config.name(), weights.name()),
        config: read_file(config).await?,
        weights: read_file(weights).await?,
        scheduler,
    })
}

async fn read_file(f: &web_sys::File) -> PageResult<Vec<u8>> {
    let buf = JsFuture::from(f.array_buffer())
        .await
        .map_err(|e| PageError::file(f.name(), js_message(e)))?;
    Ok(Uint8Array::new(&buf).to_vec())
}

/// Human size, e.g. `12.4 MB`.
pub fn mb(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{:.1} kB", bytes as f64 / 1e3)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}
