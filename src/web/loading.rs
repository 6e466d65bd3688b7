//! Model loading: the default or `?model=` folder, the shipped-models menu, the Hub, the user's
//! files; installing a model re-plans the engine and the views.

use super::ids;
use super::*;

/// Loads the default model named by `?model=URL/` (or `?model=hf:owner/name[@revision]`, from
/// the Hub at `?hub=`, else the public Hub) or `<meta name="ddpm-default-model">` (whose
/// `data-note` is shown in a banner), if any.
pub(super) async fn load_default_model() {
    let from_query = dom::query_param("model");
    if let Some(id) = from_query.as_deref().and_then(crate::hub::HubId::parse) {
        let endpoint =
            dom::query_param("hub").unwrap_or_else(|| crate::hub::DEFAULT_ENDPOINT.to_string());
        match id {
            Ok(id) => load_from_hub(&endpoint, &id).await,
            Err(e) => apply_model_files(Err(e.into()), None).await,
        }
        return;
    }
    let meta = dom::document()
        .query_selector("meta[name=ddpm-default-model]")
        .ok()
        .flatten();
    let (base, note) = match from_query {
        Some(url) => (Some(url), None),
        None => (
            meta.as_ref().and_then(|m| m.get_attribute("content")),
            meta.as_ref().and_then(|m| m.get_attribute("data-note")),
        ),
    };
    let Some(mut base) = base.filter(|s| !s.is_empty()) else {
        dom::set_text(
            ids::MODEL_STATUS,
            "No default model bundled: load your own below.",
        );
        return;
    };
    if !base.ends_with('/') {
        base.push('/');
    }
    load_from_url(&base, note).await;
}

/// Downloads the model folder at `base` (ending in `/`) and loads it.
pub(super) async fn load_from_url(base: &str, note: Option<String>) {
    start_download();
    let result = files::fetch_model(base, show_download).await;
    dom::set_hidden(ids::MODEL_PROGRESS, true);
    apply_model_files(result, note).await;
}

/// Downloads Hub model `id` from `endpoint` (through the browser's cache) and loads it.
pub(super) async fn load_from_hub(endpoint: &str, id: &crate::hub::HubId) {
    start_download();
    let result = files::fetch_hub_model(endpoint, id, show_download).await;
    dom::set_hidden(ids::MODEL_PROGRESS, true);
    apply_model_files(result, None).await;
}

/// The model section's state while files download.
pub(super) fn start_download() {
    app().model_state.set(ModelState::Loading);
    refresh_generate();
    dom::set_hidden(ids::MODEL_PROGRESS, false);
}

/// Download progress of file `name` in the model section.
pub(super) fn show_download(name: &str, done: u64, total: Option<u64>) {
    let progress = dom::el::<web_sys::HtmlProgressElement>(ids::MODEL_PROGRESS);
    match total {
        Some(t) if t > 0 => {
            progress.set_max(t as f64);
            progress.set_value(done as f64);
            dom::set_text(
                ids::MODEL_STATUS,
                &format!("Downloading {name}: {} / {}", files::mb(done), files::mb(t)),
            );
        }
        _ => {
            progress.remove_attribute("value").ok();
            dom::set_text(
                ids::MODEL_STATUS,
                &format!("Downloading {name}: {}", files::mb(done)),
            );
        }
    }
}

/// Puts the current model (if any) on a newly created device.
pub(super) fn rebuild_engine(gpu: &Gpu) {
    let app = app();
    app.engine.borrow_mut().take();
    let Some(model) = app.model.borrow().clone() else {
        return;
    };
    let generation = GPU_GENERATION.load(Ordering::SeqCst);
    match model
        .weights()
        .and_then(|w| Engine::new(gpu, generation, &model, &w))
    {
        Ok(e) => *app.engine.borrow_mut() = Some(e),
        Err(e) => dom::show_message(
            ids::MODEL_ERROR,
            Some(&format!(
                "Could not put the model on the new GPU device: {e}"
            )),
        ),
    }
}

/// Loads model files (or shows why they could not be read) and makes the model current;
/// `note` (the default model's) is shown in a banner.
pub(super) async fn apply_model_files(files: PageResult<ModelFiles>, note: Option<String>) {
    let app = app();
    dom::show_message(ids::MODEL_ERROR, None);
    app.model_state.set(ModelState::Loading);
    refresh_generate();
    let loaded = match files {
        Ok(files) => {
            dom::set_text(
                ids::MODEL_STATUS,
                &format!("Loading model from {}…", files.source),
            );
            // Let the status paint before the (synchronous) parse and upload.
            dom::yield_now().await;
            install_model(&app, files)
        }
        Err(e) => Err(e),
    };
    match loaded {
        Ok(()) => {
            let model = app.model.borrow().clone().expect("installed");
            dom::set_html(ids::MODEL_INFO, &table(&model.facts));
            dom::set_hidden(ids::MODEL_INFO, false);
            dom::set_text(
                ids::MODEL_STATUS,
                &format!("Model loaded: {}.", model.summary()),
            );
            dom::show_message(ids::MODEL_NOTE, note.as_deref());
            app.model_state.set(ModelState::Ready);
        }
        Err(msg) => {
            dom::show_message(
                ids::MODEL_ERROR,
                Some(&format!("Could not load the model: {msg}")),
            );
            dom::set_text(
                ids::MODEL_STATUS,
                if app.model.borrow().is_some() {
                    "Keeping the previous model."
                } else {
                    "No model loaded."
                },
            );
            app.model_state.set(ModelState::Error);
        }
    }
    refresh_generate();
    show_schedule();
    update_forward();
}

/// Shows the DDIM options when DDIM is selected.
pub(super) fn show_sampler_options() {
    dom::set_hidden(ids::DDIM_OPTIONS, dom::select_value(ids::SAMPLER) != "ddim");
}

/// FLOPs per image and step above which a loaded model starts on DDIM 50.
pub(super) const BIG_MODEL_FLOPS: u128 = 1_000_000_000;

/// Parses `files` and, if a device exists and no Generate runs, puts the model on it (so
/// problems show now); then makes it the current model.
pub(super) fn install_model(app: &App, files: ModelFiles) -> PageResult<()> {
    let id = app.loads.get() + 1;
    app.loads.set(id);
    let (model, weights) = Model::load(id, files)?;
    let gpu = app.gpu.borrow().clone();
    let engine = match gpu {
        Some(gpu) if !app.busy() => {
            // Free the previous model's GPU memory first.
            app.engine.borrow_mut().take();
            let generation = GPU_GENERATION.load(Ordering::SeqCst);
            Some(Engine::new(&gpu, generation, &model, &weights)?)
        }
        _ => None,
    };
    // The controls follow the model's scheduler; costly models (the paper's CIFAR-10 net, 12
    // GFLOP per image and step, and its 256×256 ones) start on DDIM 50, DDPM one click away.
    if model.config.forward_flops(1) > BIG_MODEL_FLOPS {
        dom::el::<HtmlSelectElement>(ids::SAMPLER).set_value("ddim");
        dom::el::<HtmlInputElement>(ids::DDIM_STEPS).set_value("50");
        show_sampler_options();
    }
    dom::el::<HtmlSelectElement>(ids::VARIANCE).set_value(model.scheduler.variance_type.name());
    show_class_controls(&model.config);
    draw_pad::resize(model.sample);
    // The shipped-models menu shows the one loaded, or "your own model".
    let menu = dom::el::<HtmlSelectElement>(ids::MODEL_MENU);
    menu.set_value(&model.files.source);
    if menu.value() != model.files.source {
        menu.set_value("");
    }
    // The forward view's examples come from the model's own dataset.
    let source =
        crate::data::examples::dataset_of(&model.config).unwrap_or(crate::data::Source::Mnist);
    *app.fwd.borrow_mut() = Rc::new(Forward::with_examples(source));
    refresh_forward_menu();
    update_forward();
    dom::el::<HtmlInputElement>(ids::DDIM_STEPS)
        .set_max(&model.scheduler.num_train_timesteps.to_string());
    *app.schedule.borrow_mut() = Rc::new(ScheduleView::new(&model.scheduler));
    *app.engine.borrow_mut() = engine;
    *app.model.borrow_mut() = Some(Rc::new(model));
    Ok(())
}
