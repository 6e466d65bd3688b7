//! Models by Hub id against a test Hub served from 127.0.0.1 (the tests never reach the
//! internet): both repo layouts, the cache (hit without the network on the second load), and
//! the failures (404, no UNet, truncated download).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ddpm::hub::{Hub, HubId};

/// What the test Hub serves: `repo/file` → bytes; files in `truncated` are cut in half while
/// announcing their full length; files in `redirected` answer `302 Found` to `/cdn/repo/file`,
/// which serves them (the real Hub redirects its LFS files, the weights, to a CDN).
#[derive(Default)]
struct Files {
    files: HashMap<String, Vec<u8>>,
    truncated: Vec<String>,
    redirected: Vec<String>,
}

/// A minimal HTTP/1.1 server for `/{owner}/{name}/resolve/{revision}/{file}`.
struct TestHub {
    endpoint: String,
    files: Arc<Mutex<Files>>,
    requests: Arc<AtomicUsize>,
}

impl TestHub {
    fn start() -> TestHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let files: Arc<Mutex<Files>> = Arc::default();
        let requests: Arc<AtomicUsize> = Arc::default();
        let (f, r) = (files.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                r.fetch_add(1, Ordering::SeqCst);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                // /owner/name/resolve/rev/file… → owner/name/file…
                let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
                let (key, from_cdn) = match parts.as_slice() {
                    [o, n, "resolve", _rev, file] => (format!("{o}/{n}/{file}"), false),
                    ["cdn", rest @ ..] => (rest.join("/"), true),
                    _ => (String::new(), false),
                };
                let files = f.lock().unwrap();
                if !from_cdn && files.redirected.contains(&key) {
                    let head = format!(
                        "HTTP/1.1 302 Found\r\nLocation: /cdn/{key}\r\nContent-Length: 0\r\n\
                         Connection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(head.as_bytes());
                    continue;
                }
                let _ = match files.files.get(&key) {
                    Some(body) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let cut = if files.truncated.contains(&key) {
                            body.len() / 2
                        } else {
                            body.len()
                        };
                        stream
                            .write_all(head.as_bytes())
                            .and_then(|_| stream.write_all(&body[..cut]))
                    }
                    None => stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            }
        });
        TestHub {
            endpoint,
            files,
            requests,
        }
    }

    fn put(&self, repo: &str, file: &str, bytes: Vec<u8>) {
        let mut f = self.files.lock().unwrap();
        f.files.insert(format!("{repo}/{file}"), bytes);
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn fixture(name: &str, file: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::read(dir.join(name).join(file)).unwrap()
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-hub-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The folder Mesa keeps its shader caches in (`mesa_shader_cache*` under it).
fn mesa_cache() -> PathBuf {
    std::env::var_os("MESA_SHADER_CACHE_DIR")
        .or_else(|| std::env::var_os("XDG_CACHE_HOME"))
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
}

const SCHEDULER: &str = r#"{"_class_name": "DDPMScheduler", "num_train_timesteps": 500,
    "beta_schedule": "squaredcos_cap_v2"}"#;

/// A model repo (root layout) served to `ddpm forward` through HF_ENDPOINT: ε̂ equals
/// diffusers' for the fixture; the second run is served from the cache without a request.
#[test]
fn cli_loads_a_model_repo_by_id_and_caches_it() {
    let hub = TestHub::start();
    let repo = "test-org/ddpm-style";
    for file in ["config.json", "diffusion_pytorch_model.safetensors"] {
        hub.put(repo, file, fixture("unet_ddpm_style", file));
    }
    hub.put(repo, "scheduler_config.json", SCHEDULER.into());
    let cache = fresh_dir("cli");
    let out = cache.join("eps.npy");
    let fixture_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unet_ddpm_style");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_ddpm"))
            .args(["forward", "--model", &format!("hf:{repo}"), "--input"])
            .arg(fixture_dir.join("x.npy"))
            .args(["--timesteps", "1,500,999", "--out"])
            .arg(&out)
            .env("HF_ENDPOINT", &hub.endpoint)
            .env("XDG_CACHE_HOME", &cache)
            // Mesa's shader cache also lives under XDG_CACHE_HOME: keep the warm one (a cold
            // one recompiles every kernel, a minute on lavapipe).
            .env("MESA_SHADER_CACHE_DIR", mesa_cache())
            .output()
            .unwrap()
    };
    let first = run();
    let text = String::from_utf8_lossy(&first.stderr).to_string();
    assert!(first.status.success(), "{text}");
    let (_, eps) = ddpm::npy::read(&out).unwrap();
    let (_, want) = ddpm::npy::read(fixture_dir.join("eps.npy")).unwrap();
    ddpm::testing::assert_close(&eps, &want, 2e-5, 0.0, "hub model vs diffusers");
    let served = hub.requests();
    assert!(served >= 3, "config, weights, scheduler: {served} requests");
    std::fs::remove_file(&out).unwrap();
    let second = run();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(
        hub.requests(),
        served,
        "the second load is served from the cache"
    );
    // The cached folder holds the scheduler next to the model, as `sample` looks for it.
    let dir = cache
        .join("ddpm/hub")
        .join(hub.endpoint.trim_start_matches("http://").replace(':', "_"));
    let rev = dir.join("test-org--ddpm-style/main");
    assert!(rev.join("scheduler_config.json").exists());
    assert!(!rev
        .join("diffusion_pytorch_model.safetensors.part")
        .exists());
}

/// A pipeline repo (model_index.json → unet/, scheduler/) resolves to its unet folder, with the
/// scheduler beside it; the folder loads like a local one.
#[test]
fn pipeline_repos_resolve_to_their_unet() {
    let hub = TestHub::start();
    let repo = "test-org/pipe";
    hub.put(
        repo,
        "model_index.json",
        br#"{"_class_name": "DDPMPipeline", "scheduler": ["diffusers", "DDPMScheduler"],
            "unet": ["diffusers", "UNet2DModel"]}"#
            .to_vec(),
    );
    for file in ["config.json", "diffusion_pytorch_model.safetensors"] {
        hub.put(repo, &format!("unet/{file}"), fixture("unet_tiny", file));
    }
    hub.put(repo, "scheduler/scheduler_config.json", SCHEDULER.into());
    let h = Hub::new(&hub.endpoint, fresh_dir("pipe"));
    let id = HubId::parse(&format!("hf:{repo}@v2")).unwrap().unwrap();
    let mut files = Vec::new();
    let dir = h
        .fetch_model(&id, &mut |f: &str, _, _| files.push(f.to_string()))
        .unwrap();
    assert!(dir.ends_with("v2/unet"), "{}", dir.display());
    let (cfg, weights) = ddpm::model::load_dir(&dir).unwrap();
    let (want_cfg, want) = ddpm::model::load_dir(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unet_tiny"),
    )
    .unwrap();
    assert_eq!(cfg.block_out_channels, want_cfg.block_out_channels);
    assert_eq!(weights.num_params(), want.num_params());
    let sched = dir.join("../scheduler/scheduler_config.json");
    let s = ddpm::schedule::SchedulerConfig::from_file(&sched).unwrap();
    assert_eq!(s.num_train_timesteps, 500);
    assert!(files.contains(&"unet/diffusion_pytorch_model.safetensors".to_string()));
    // Cached: no request the second time.
    let before = hub.requests();
    assert_eq!(h.fetch_model(&id, &mut |_, _, _| {}).unwrap(), dir);
    assert_eq!(hub.requests(), before);
}

#[test]
fn failures_say_what_was_tried_and_cache_nothing() {
    let hub = TestHub::start();
    let cache = fresh_dir("fail");
    let h = Hub::new(&hub.endpoint, cache.clone());
    let id = |s: &str| HubId::parse(s).unwrap().unwrap();
    let err = |s: &str| {
        h.fetch_model(&id(s), &mut |_, _, _| {})
            .unwrap_err()
            .to_string()
    };

    // Unknown repo: both layouts' URLs named.
    let e = err("hf:nobody/nothing");
    assert!(
        e.contains(&format!(
            "{}/nobody/nothing/resolve/main/config.json",
            hub.endpoint
        )) && e.contains("model_index.json"),
        "{e}"
    );

    // A pipeline without a UNet2DModel says what it has.
    hub.put(
        "o/vae",
        "model_index.json",
        br#"{"_class_name": "X", "vae": ["diffusers", "AutoencoderKL"]}"#.to_vec(),
    );
    let e = err("hf:o/vae");
    assert!(
        e.contains("no UNet2DModel") && e.contains("vae: AutoencoderKL"),
        "{e}"
    );

    // Config but no weights: every weight file name tried.
    hub.put(
        "o/noweights",
        "config.json",
        fixture("unet_tiny", "config.json"),
    );
    let e = err("hf:o/noweights");
    assert!(
        e.contains("diffusion_pytorch_model.safetensors")
            && e.contains("diffusion_pytorch_model.fp16.safetensors")
            && e.contains("diffusion_pytorch_model.bin"),
        "{e}"
    );

    // A truncated download is not cached; once the server is fixed the retry succeeds.
    let weights = "diffusion_pytorch_model.safetensors";
    hub.put("o/cut", "config.json", fixture("unet_tiny", "config.json"));
    hub.put("o/cut", weights, fixture("unet_tiny", weights));
    hub.files
        .lock()
        .unwrap()
        .truncated
        .push(format!("o/cut/{weights}"));
    let e = err("hf:o/cut");
    assert!(e.contains("truncated"), "{e}");
    let rev = h.revision_dir(&id("hf:o/cut"));
    assert!(!rev.join(weights).exists() && !rev.join(format!("{weights}.part")).exists());
    hub.files.lock().unwrap().truncated.clear();
    let dir = h.fetch_model(&id("hf:o/cut"), &mut |_, _, _| {}).unwrap();
    assert!(ddpm::model::load_dir(dir).is_ok());

    // Offline (nothing listening) and not cached: a clear message.
    let offline = Hub::new("http://127.0.0.1:9", cache);
    let e = offline
        .fetch_model(&id("hf:o/other"), &mut |_, _, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("could not fetch") && e.contains("offline"),
        "{e}"
    );
}

/// A repo with only PyTorch `.bin` weights (as the DDPM paper's repos first shipped) loads the
/// same tensors as the safetensors copy.
/// The model in `dir` holds exactly the `unet_tiny` fixture's weights.
fn assert_weights_of_unet_tiny(dir: &Path) {
    let (_, got) = ddpm::model::load_dir(dir).unwrap();
    let (_, want) = ddpm::model::load_dir(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unet_tiny"),
    )
    .unwrap();
    for (name, t) in want.iter() {
        assert_eq!(got.tensor(name).unwrap().data, t.data, "{name}");
    }
}

/// Weights behind a redirect (as the real Hub sends LFS files to its CDN) load like any other.
#[test]
fn redirected_weights_load() {
    let hub = TestHub::start();
    let repo = "o/lfs";
    for file in ["config.json", "diffusion_pytorch_model.safetensors"] {
        hub.put(repo, file, fixture("unet_tiny", file));
    }
    hub.files
        .lock()
        .unwrap()
        .redirected
        .push(format!("{repo}/diffusion_pytorch_model.safetensors"));
    let h = Hub::new(&hub.endpoint, fresh_dir("lfs"));
    let id = HubId::parse(&format!("hf:{repo}")).unwrap().unwrap();
    let before = hub.requests();
    let dir = h.fetch_model(&id, &mut |_, _, _| {}).unwrap();
    assert!(hub.requests() > before + 2, "the redirect was followed");
    assert_weights_of_unet_tiny(&dir);
}

#[test]
fn bin_only_repos_load() {
    let hub = TestHub::start();
    hub.put(
        "o/bin",
        "config.json",
        fixture("torch_bin/f32", "config.json"),
    );
    hub.put(
        "o/bin",
        "diffusion_pytorch_model.bin",
        fixture("torch_bin/f32", "diffusion_pytorch_model.bin"),
    );
    let h = Hub::new(&hub.endpoint, fresh_dir("bin"));
    let id = HubId::parse("hf:o/bin").unwrap().unwrap();
    let dir = h.fetch_model(&id, &mut |_, _, _| {}).unwrap();
    assert_weights_of_unet_tiny(&dir);
}
