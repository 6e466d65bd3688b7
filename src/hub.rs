//! Models by Hugging Face Hub id: `hf:owner/name[@revision]` (e.g. `hf:google/ddpm-cifar10-32`,
//! the DDPM paper's CIFAR-10 model). The ids, URLs and repo layouts here serve the page too
//! (`web::files` downloads with `fetch` and caches in Cache Storage); [`Hub`] is the native
//! client.
//!
//! Files come from `{endpoint}/{repo}/resolve/{revision}/{file}`; the endpoint is `HF_ENDPOINT`
//! (huggingface_hub's convention, so mirrors and tests can point elsewhere), else the public Hub.
//! Both diffusers layouts are understood: a model repo (`config.json` and weights at the root)
//! and a pipeline repo (`model_index.json` naming a `UNet2DModel` under `unet/`, the scheduler
//! under `scheduler/`). Weights: `diffusion_pytorch_model.safetensors`, else `.fp16.safetensors`,
//! else PyTorch's `.bin`.
//!
//! Downloads land in a cache (`$XDG_CACHE_HOME/ddpm/hub`, else `~/.cache/ddpm/hub`) laid out
//! like the repo, each file written to `*.part` and renamed once complete (a truncated transfer
//! is never cached). A repo revision marked complete is reused without touching the network, so
//! cached models work offline. The returned folder loads like any local model folder.

#[cfg(not(target_arch = "wasm32"))]
use std::io::{Read, Write};
#[cfg(not(target_arch = "wasm32"))]
use std::path::{Path, PathBuf};
#[cfg(not(target_arch = "wasm32"))]
use std::time::Duration;

use crate::error::{Error, Result};

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Environment variable overriding the endpoint.
pub const ENDPOINT_ENV: &str = "HF_ENDPOINT";
/// Prefix marking a model name as a Hub id.
pub const PREFIX: &str = "hf:";
/// Weight files, in order of preference.
pub const WEIGHT_FILES: [&str; 3] = [
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
];
/// Written into a cached revision once all its files are in place.
#[cfg(not(target_arch = "wasm32"))]
const COMPLETE_MARKER: &str = ".ddpm-complete";

/// A repository at a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubId {
    /// `owner/name`.
    pub repo: String,
    /// Branch, tag or commit (default `main`).
    pub revision: String,
}

impl HubId {
    /// Parses `hf:owner/name[@revision]`; `None` if `name` does not start with `hf:`.
    pub fn parse(name: &str) -> Option<Result<HubId>> {
        let rest = name.strip_prefix(PREFIX)?;
        Some(Self::parse_id(rest))
    }

    fn parse_id(rest: &str) -> Result<HubId> {
        let (repo, revision) = rest.split_once('@').unwrap_or((rest, "main"));
        let ok_part = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() != 2 || !parts.iter().all(|p| ok_part(p)) {
            return Err(hub_err(format!(
                "`{PREFIX}{rest}`: a Hub id is {PREFIX}owner/name[@revision], e.g. \
                 {PREFIX}google/ddpm-cifar10-32"
            )));
        }
        if !revision.split('/').all(ok_part) {
            return Err(hub_err(format!(
                "`{PREFIX}{rest}`: bad revision `{revision}` (a branch, tag or commit)"
            )));
        }
        Ok(HubId {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }
}

impl HubId {
    /// `{endpoint}/{repo}/resolve/{revision}/{file}`.
    pub fn url(&self, endpoint: &str, file: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{file}",
            endpoint.trim_end_matches('/'),
            self.repo,
            self.revision
        )
    }
}

impl std::fmt::Display for HubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}{}@{}", self.repo, self.revision)
    }
}

/// Download progress of one file: (file, bytes so far, total if the server said).
#[cfg(not(target_arch = "wasm32"))]
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, Option<u64>);

/// A Hub endpoint and the local cache of its files.
#[cfg(not(target_arch = "wasm32"))]
pub struct Hub {
    endpoint: String,
    cache: PathBuf,
    agent: ureq::Agent,
}

#[cfg(not(target_arch = "wasm32"))]
impl Hub {
    /// The endpoint from `HF_ENDPOINT` (else the public Hub) and the default cache folder.
    pub fn from_env() -> Result<Hub> {
        let endpoint = std::env::var(ENDPOINT_ENV).unwrap_or_else(|_| DEFAULT_ENDPOINT.to_string());
        let cache = default_cache_dir()
            .ok_or_else(|| hub_err("no cache folder: set XDG_CACHE_HOME or HOME".to_string()))?;
        Ok(Hub::new(&endpoint, cache))
    }

    /// `endpoint` (e.g. `http://127.0.0.1:8080`) with its cache under `cache_root`.
    pub fn new(endpoint: &str, cache_root: PathBuf) -> Hub {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_recv_body(Some(Duration::from_secs(120)))
            .build()
            .into();
        Hub {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            cache: cache_root,
            agent,
        }
    }

    /// The cache folder of `id` (one per endpoint, repo and revision).
    pub fn revision_dir(&self, id: &HubId) -> PathBuf {
        let host: String = self
            .endpoint
            .split("://")
            .last()
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.cache
            .join(host)
            .join(id.repo.replace('/', "--"))
            .join(id.revision.replace('/', "--"))
    }

    /// The local folder holding `id`'s UNet2DModel (`config.json` + weights; for a pipeline repo
    /// `…/unet`, with the scheduler at `…/scheduler`), downloading what the cache lacks.
    pub fn fetch_model(&self, id: &HubId, progress: Progress) -> Result<PathBuf> {
        let dir = self.revision_dir(id);
        if let Ok(sub) = std::fs::read_to_string(dir.join(COMPLETE_MARKER)) {
            let model = dir.join(sub.trim());
            if model.join("config.json").exists() {
                return Ok(model);
            }
        }
        let sub = self.download(id, &dir, progress)?;
        write_atomic(&dir.join(COMPLETE_MARKER), sub.as_bytes())?;
        Ok(dir.join(sub))
    }

    /// Downloads the model files of `id` into `dir`; returns the model's sub-folder
    /// (`""` or `"unet"`).
    fn download(&self, id: &HubId, dir: &Path, progress: Progress) -> Result<String> {
        let located = pollster::block_on(locate_model(
            id,
            |file| self.url(id, file),
            async |file: &str| self.get(id, file, dir, &mut *progress),
        ))?;
        Ok(located.folder)
    }

    /// The URL of `file` in `id` on this endpoint.
    pub fn url(&self, id: &HubId, file: &str) -> String {
        id.url(&self.endpoint, file)
    }

    /// Downloads `file` into `dir/file` (atomically) and returns its bytes for small files
    /// (JSON), an empty vector for weights; `None` if the server answers 404.
    fn get(
        &self,
        id: &HubId,
        file: &str,
        dir: &Path,
        progress: Progress,
    ) -> Result<Option<Vec<u8>>> {
        let url = self.url(id, file);
        let resp = self.agent.get(&url).call().map_err(|e| {
            hub_err(format!(
                "could not fetch {url}: {e} (offline? cached models load without the network)"
            ))
        })?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            let hint = if status == 401 || status == 403 {
                " (a gated or private repo?)"
            } else {
                ""
            };
            return Err(hub_err(format!("{url}: HTTP {status}{hint}")));
        }
        let total = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let path = dir.join(file);
        let parent = path.parent().expect("a file inside the cache");
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let part = path.with_extension(format!(
            "{}part",
            path.extension()
                .map(|e| format!("{}.", e.to_string_lossy()))
                .unwrap_or_default()
        ));
        let mut out = std::fs::File::create(&part).map_err(|e| Error::io(&part, e))?;
        let mut reader = resp.into_body().into_reader();
        let keep = file.ends_with(".json");
        let mut kept = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut done = 0u64;
        progress(file, 0, total);
        loop {
            let k = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) => {
                    drop(out);
                    let _ = std::fs::remove_file(&part);
                    let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
                    return Err(hub_err(format!(
                        "{url}: truncated download ({done}{of} bytes: {e}); not cached, run \
                         again to retry"
                    )));
                }
            };
            out.write_all(&buf[..k]).map_err(|e| Error::io(&part, e))?;
            if keep {
                kept.extend_from_slice(&buf[..k]);
            }
            done += k as u64;
            progress(file, done, total);
        }
        if let Some(t) = total.filter(|&t| t != done) {
            drop(out);
            let _ = std::fs::remove_file(&part);
            return Err(hub_err(format!(
                "{url}: truncated download ({done} of {t} bytes); not cached, run again to retry"
            )));
        }
        out.sync_all().map_err(|e| Error::io(&part, e))?;
        drop(out);
        std::fs::rename(&part, &path).map_err(|e| Error::io(&path, e))?;
        Ok(Some(kept))
    }
}

/// The files of one Hub model, as [`locate_model`] found them.
#[derive(Debug)]
pub struct Located {
    /// The model's folder in the repo: `""` (a model repo) or the pipeline's UNet folder.
    pub folder: String,
    pub config: Vec<u8>,
    /// The first of [`WEIGHT_FILES`] the repo has, and what `get` returned for it.
    pub weights: (&'static str, Vec<u8>),
    /// `scheduler_config.json` beside the model (a pipeline's `scheduler/`), if there is one.
    pub scheduler: Option<Vec<u8>>,
}

/// Finds `id`'s UNet2DModel in either layout, asking `get` for repo files in turn:
/// `config.json`; if that is not a UNet2DModel's, `model_index.json` and its UNet folder's
/// `config.json`; the first weights file present; the scheduler. `get(path)` returns the file's
/// bytes (JSON files' are read; weights may come back empty), `None` when the repo lacks it
/// (HTTP 404); `url(path)` names a file in errors. The native client and the page share it and
/// differ only in how they fetch and cache.
pub async fn locate_model(
    id: &HubId,
    url: impl Fn(&str) -> String,
    mut get: impl AsyncFnMut(&str) -> Result<Option<Vec<u8>>>,
) -> Result<Located> {
    let root = get("config.json").await?;
    let (folder, config) = match root {
        Some(cfg) if is_unet_config(&cfg) => (String::new(), cfg),
        root => {
            let Some(index) = get("model_index.json").await? else {
                return Err(hub_err(match root {
                    Some(_) => format!(
                        "{id}: config.json at {} is not a UNet2DModel config and there is no \
                         model_index.json",
                        url("config.json")
                    ),
                    None => format!(
                        "{id}: neither {} nor {} exists (unknown repo or revision?)",
                        url("config.json"),
                        url("model_index.json")
                    ),
                }));
            };
            let folder = unet_folder(&index).map_err(|found| {
                hub_err(format!(
                    "{id}: model_index.json names no UNet2DModel (found: {found})"
                ))
            })?;
            let path = format!("{folder}/config.json");
            let cfg = get(&path)
                .await?
                .ok_or_else(|| hub_err(format!("{id}: {} is missing", url(&path))))?;
            (folder.to_string(), cfg)
        }
    };
    let prefix = if folder.is_empty() {
        String::new()
    } else {
        format!("{folder}/")
    };
    let mut weights = None;
    for name in WEIGHT_FILES {
        if let Some(w) = get(&format!("{prefix}{name}")).await? {
            weights = Some((name, w));
            break;
        }
    }
    let weights = weights.ok_or_else(|| {
        let tried: Vec<String> = WEIGHT_FILES
            .iter()
            .map(|n| url(&format!("{prefix}{n}")))
            .collect();
        hub_err(format!("{id}: no UNet weights; tried {}", tried.join(", ")))
    })?;
    // The scheduler is optional (DDPM's defaults without it).
    let scheduler = if folder.is_empty() {
        "scheduler_config.json"
    } else {
        "scheduler/scheduler_config.json"
    };
    let scheduler = get(scheduler).await?;
    Ok(Located {
        folder,
        config,
        weights,
        scheduler,
    })
}

/// `$XDG_CACHE_HOME/ddpm/hub`, else `~/.cache/ddpm/hub`.
#[cfg(not(target_arch = "wasm32"))]
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("ddpm").join("hub"))
}

/// Whether config.json bytes describe a UNet2DModel (diffusers' `_class_name`, or the keys of
/// one when the name is absent).
pub fn is_unet_config(bytes: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return false;
    };
    match v.get("_class_name").and_then(|c| c.as_str()) {
        Some(name) => name == "UNet2DModel",
        None => v.get("block_out_channels").is_some() && v.get("down_block_types").is_some(),
    }
}

/// The folder of the UNet2DModel a pipeline's model_index.json names (entries are
/// `"folder": ["library", "Class"]`); on failure, what it names instead.
pub fn unet_folder(index: &[u8]) -> std::result::Result<&'static str, String> {
    let v: serde_json::Value =
        serde_json::from_slice(index).map_err(|e| format!("model_index.json is not JSON: {e}"))?;
    let entries = v
        .as_object()
        .ok_or_else(|| "model_index.json is not an object".to_string())?;
    let class_of = |key: &str| {
        entries
            .get(key)
            .and_then(|e| e.as_array())
            .and_then(|a| a.get(1))
            .and_then(|c| c.as_str())
            .map(str::to_string)
    };
    if class_of("unet").as_deref() == Some("UNet2DModel") {
        return Ok("unet");
    }
    let found: Vec<String> = entries
        .keys()
        .filter(|k| !k.starts_with('_'))
        .map(|k| format!("{k}: {}", class_of(k).unwrap_or_else(|| "?".into())))
        .collect();
    Err(if found.is_empty() {
        "nothing".into()
    } else {
        found.join(", ")
    })
}

/// Writes `bytes` to `path` via a temporary file and a rename.
#[cfg(not(target_arch = "wasm32"))]
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn hub_err(msg: String) -> Error {
    Error::Hub(msg)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_bad_ones_are_clear_errors() {
        let id = HubId::parse("hf:google/ddpm-cifar10-32").unwrap().unwrap();
        assert_eq!(
            (id.repo.as_str(), id.revision.as_str()),
            ("google/ddpm-cifar10-32", "main")
        );
        let id = HubId::parse("hf:a/b@refs/pr/3").unwrap().unwrap();
        assert_eq!(id.revision, "refs/pr/3");
        assert!(HubId::parse("assets/mnist").is_none());
        for bad in [
            "hf:",
            "hf:noslash",
            "hf:a/b/c",
            "hf:../x",
            "hf:a/b@",
            "hf:a/b@..",
            "hf:a b/c",
        ] {
            let e = HubId::parse(bad).unwrap().unwrap_err().to_string();
            assert!(e.contains("Hub id") || e.contains("revision"), "{bad}: {e}");
        }
    }

    #[test]
    fn layouts_are_recognised() {
        assert!(is_unet_config(br#"{"_class_name": "UNet2DModel"}"#));
        assert!(!is_unet_config(
            br#"{"_class_name": "UNet2DConditionModel"}"#
        ));
        assert!(is_unet_config(
            br#"{"block_out_channels": [1], "down_block_types": []}"#
        ));
        assert!(!is_unet_config(b"not json"));
        let index =
            br#"{"_class_name": "DDPMPipeline", "scheduler": ["diffusers", "DDPMScheduler"],
                         "unet": ["diffusers", "UNet2DModel"]}"#;
        assert_eq!(unet_folder(index), Ok("unet"));
        let other = br#"{"_class_name": "X", "vae": ["diffusers", "AutoencoderKL"]}"#;
        assert_eq!(unet_folder(other), Err("vae: AutoencoderKL".to_string()));
    }

    /// [`locate_model`] over an in-memory repo; returns the result and the paths asked for.
    fn locate(files: &[(&str, &[u8])]) -> (Result<Located>, Vec<String>) {
        let id = HubId::parse("hf:o/r").unwrap().unwrap();
        let mut asked = Vec::new();
        let got = pollster::block_on(locate_model(
            &id,
            |f| format!("https://hub/o/r/{f}"),
            async |path: &str| {
                asked.push(path.to_string());
                Ok(files
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map(|(_, b)| b.to_vec()))
            },
        ));
        (got, asked)
    }

    #[test]
    fn both_layouts_are_located_and_missing_files_named() {
        let unet = br#"{"_class_name": "UNet2DModel"}"#;
        let (got, asked) = locate(&[
            ("config.json", unet),
            ("diffusion_pytorch_model.fp16.safetensors", b"w16"),
        ]);
        let got = got.unwrap();
        assert_eq!(
            (got.folder.as_str(), got.weights.1.as_slice()),
            ("", &b"w16"[..])
        );
        assert_eq!(got.weights.0, WEIGHT_FILES[1]);
        assert!(got.scheduler.is_none());
        assert_eq!(asked.last().unwrap(), "scheduler_config.json");

        let index = br#"{"unet": ["diffusers", "UNet2DModel"]}"#;
        let (got, _) = locate(&[
            ("model_index.json", index),
            ("unet/config.json", unet),
            ("unet/diffusion_pytorch_model.safetensors", b"w"),
            ("scheduler/scheduler_config.json", b"{}"),
        ]);
        let got = got.unwrap();
        assert_eq!(
            (got.folder.as_str(), got.config.as_slice()),
            ("unet", &unet[..])
        );
        assert_eq!(got.scheduler.as_deref(), Some(&b"{}"[..]));

        let err = |files: &[(&str, &[u8])]| locate(files).0.unwrap_err().to_string();
        let e = err(&[]);
        assert!(e.contains("neither https://hub/o/r/config.json nor"), "{e}");
        let e = err(&[("config.json", unet)]);
        assert!(
            e.contains(
                "no UNet weights; tried https://hub/o/r/diffusion_pytorch_model.safetensors"
            ),
            "{e}"
        );
        let e = err(&[("model_index.json", index)]);
        assert!(
            e.contains("https://hub/o/r/unet/config.json is missing"),
            "{e}"
        );
    }

    #[test]
    fn cache_folders_separate_endpoints_repos_and_revisions() {
        let hub = Hub::new("http://127.0.0.1:8080/", PathBuf::from("/c"));
        let id = HubId::parse("hf:a/b@v1").unwrap().unwrap();
        assert_eq!(
            hub.revision_dir(&id),
            PathBuf::from("/c/127.0.0.1_8080/a--b/v1")
        );
        assert_eq!(
            hub.url(&id, "unet/config.json"),
            "http://127.0.0.1:8080/a/b/resolve/v1/unet/config.json"
        );
    }
}
