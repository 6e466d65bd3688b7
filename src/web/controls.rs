//! The controls: event wiring, keyboard shortcuts, and reading the sampling settings.

use super::ids;
use super::*;

pub(super) fn wire_controls() {
    dom::on::<web_sys::Event>(ids::GENERATE, "click", |_| start_run(None));
    dom::on::<web_sys::Event>(ids::STOP, "click", |_| {
        let app = app();
        if app.run.get() == RunState::Running {
            app.run.set(RunState::Stopping);
            dom::set_text(ids::RUN_STATUS, "Stopping…");
        }
    });
    dom::on::<web_sys::Event>(ids::SEED_RANDOM, "click", |_| {
        let seed = (js_sys::Math::random() * 1e9).floor();
        dom::el::<HtmlInputElement>(ids::SEED).set_value_as_number(seed);
    });
    dom::on::<web_sys::Event>(ids::SAMPLER, "change", |_| show_sampler_options());
    dom::on::<web_sys::Event>(ids::GUIDANCE, "input", |_| show_guidance());
    dom::on::<web_sys::Event>(ids::N_SAMPLES, "change", |_| {
        let n = read_n();
        dom::el::<HtmlInputElement>(ids::N_SAMPLES).set_value_as_number(n as f64);
    });
    dom::on::<web_sys::Event>(ids::VIEW_T, "input", |_| show_selected_frame());
    dom::on::<web_sys::Event>(ids::EXPORT_PNG, "click", |_| report_export(export::png()));
    dom::on::<web_sys::Event>(ids::EXPORT_GIF, "click", |_| {
        let app = app();
        let frames = app.frames.borrow();
        report_export(
            frames
                .as_ref()
                .ok_or(PageError::Nothing("run"))
                .and_then(export::gif),
        );
    });
    dom::set_hidden(ids::EXPORT_WEBM, !export::can_record_video());
    dom::on::<web_sys::Event>(ids::EXPORT_WEBM, "click", |_| {
        spawn_local(async {
            // The frames are copied out so no borrow is held while the video records.
            let frames = app().frames.borrow().clone();
            dom::set_disabled(ids::EXPORT_WEBM, true);
            let result = match frames {
                Some(f) => export::webm(&f).await,
                None => Err(PageError::Nothing("run")),
            };
            dom::set_disabled(ids::EXPORT_WEBM, false);
            report_export(result);
        })
    });
    dom::on::<web_sys::Event>(ids::EXPORT_NPY, "click", |_| {
        let app = app();
        let samples = app.last_samples.borrow();
        report_export(match samples.as_ref() {
            Some((x, shape)) => export::npy(x, *shape),
            None => Err(PageError::Nothing("finished run")),
        });
    });
    dom::on::<web_sys::Event>(ids::PLAY, "click", |_| player::toggle());
    dom::on::<web_sys::Event>(ids::STEP_BACK, "click", |_| {
        player::pause();
        player::step(-1);
    });
    dom::on::<web_sys::Event>(ids::STEP_FWD, "click", |_| {
        player::pause();
        player::step(1);
    });
    dom::on::<web_sys::Event>(ids::REPLAY, "click", |_| {
        player::jump(false);
        player::play();
    });
    dom::on::<web_sys::Event>(
        ids::LOSS_RUN,
        "click",
        |_| spawn_local(loss_view::measure()),
    );
    draw_pad::wire(|x, shape| {
        let i = Rc::make_mut(&mut app().fwd.borrow_mut()).add_drawing(x, shape);
        refresh_forward_menu();
        dom::el::<HtmlSelectElement>(ids::FWD_IMAGE).set_value(&i.to_string());
        update_forward();
    });
    dom::on::<web_sys::Event>(ids::FWD_DENOISE, "click", |_| {
        if let Some(d) = denoise_request() {
            start_run(Some(d));
        }
    });
    dom::on::<web_sys::Event>(ids::FWD_T, "input", |_| update_forward());
    dom::on::<web_sys::Event>(ids::FWD_IMAGE, "change", |_| update_forward());
    dom::listen::<KeyboardEvent>(dom::document().as_ref(), "keydown", on_key);
    dom::listen::<web_sys::Event>(dom::window().as_ref(), "resize", |_| update_forward());

    // The models the page ships (assets/), by folder.
    dom::on::<web_sys::Event>(ids::MODEL_MENU, "change", |_| {
        let base = dom::el::<HtmlSelectElement>(ids::MODEL_MENU).value();
        if !base.is_empty() {
            spawn_local(async move { load_from_url(&base, None).await });
        }
    });

    // Models from the Hub: the paper's models in a menu, or any id.
    dom::on::<web_sys::Event>(ids::HUB_MENU, "change", |_| {
        let id = dom::el::<HtmlSelectElement>(ids::HUB_MENU).value();
        if !id.is_empty() {
            dom::el::<HtmlInputElement>(ids::HUB_ID).set_value(&id);
        }
    });
    dom::on::<web_sys::Event>(ids::HUB_LOAD, "click", |_| {
        let text = dom::el::<HtmlInputElement>(ids::HUB_ID).value();
        let text = text.trim();
        let name = if text.starts_with(crate::hub::PREFIX) {
            text.to_string()
        } else {
            format!("{}{text}", crate::hub::PREFIX)
        };
        let endpoint =
            dom::query_param("hub").unwrap_or_else(|| crate::hub::DEFAULT_ENDPOINT.to_string());
        spawn_local(async move {
            match crate::hub::HubId::parse(&name).expect("prefixed above") {
                Ok(id) => load_from_hub(&endpoint, &id).await,
                Err(e) => apply_model_files(Err(e.into()), None).await,
            }
        });
    });

    // Model files: picker and drag & drop.
    dom::on::<web_sys::Event>(ids::MODEL_FILES, "change", |_| {
        let input = dom::el::<HtmlInputElement>(ids::MODEL_FILES);
        if let Some(list) = input.files() {
            spawn_local(async move {
                let result = files::read_user_files(&list).await;
                dom::el::<HtmlInputElement>(ids::MODEL_FILES).set_value("");
                apply_model_files(result, None).await;
            });
        }
    });
    dom::on::<web_sys::DragEvent>(ids::MODEL_DROP, "dragover", |e| {
        e.prevent_default();
        dom::set_class(ids::MODEL_DROP, "drop over");
    });
    dom::on::<web_sys::DragEvent>(ids::MODEL_DROP, "dragleave", |_| {
        dom::set_class(ids::MODEL_DROP, "drop")
    });
    dom::on::<web_sys::DragEvent>(ids::MODEL_DROP, "drop", |e| {
        e.prevent_default();
        dom::set_class(ids::MODEL_DROP, "drop");
        if let Some(list) = e.data_transfer().and_then(|d| d.files()) {
            spawn_local(async move {
                apply_model_files(files::read_user_files(&list).await, None).await
            });
        }
    });
}

/// Player keys (unless typing in a field): ← / → step one frame, Space plays or pauses, Home /
/// End jump to x_T / the sample.
pub(super) fn on_key(e: KeyboardEvent) {
    if let Some(target) = e
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
    {
        let tag = target.tag_name();
        // The focused control handles its own keys (the range inputs step by one; Space
        // presses a button).
        if matches!(tag.as_str(), "INPUT" | "SELECT" | "TEXTAREA")
            || (tag == "BUTTON" && e.key() == " ")
        {
            return;
        }
    }
    if dom::el::<HtmlInputElement>(ids::VIEW_T).disabled() {
        return;
    }
    match e.key().as_str() {
        "ArrowLeft" | "ArrowRight" => {
            player::pause();
            player::step(if e.key() == "ArrowLeft" { -1 } else { 1 });
        }
        " " => player::toggle(),
        "Home" | "End" => {
            player::pause();
            player::jump(e.key() == "End");
        }
        _ => return,
    }
    e.prevent_default();
}

/// Shows a failed download in the run's error line.
pub(super) fn report_export(result: PageResult<()>) {
    if let Err(e) = result {
        dom::show_message(ids::RUN_ERROR, Some(&format!("export failed: {e}")));
    }
}

pub(super) fn read_n() -> usize {
    dom::input_f64(ids::N_SAMPLES, 16.0)
        .round()
        .clamp(1.0, 64.0) as usize
}

/// The sampling controls; DDIM steps are clamped to 1..=T of the model's schedule.
pub(super) fn read_config(scheduler: &SchedulerConfig) -> RunConfig {
    let steps = dom::input_f64(ids::DDIM_STEPS, 50.0)
        .round()
        .clamp(1.0, scheduler.num_train_timesteps as f64) as usize;
    let eta = dom::input_f64(ids::DDIM_ETA, 0.0).clamp(0.0, 1.0) as f32;
    RunConfig {
        n: read_n(),
        seed: dom::input_f64(ids::SEED, 0.0).max(0.0) as u64,
        kind: if dom::select_value(ids::SAMPLER) == "ddim" {
            SamplerKind::Ddim { steps, eta }
        } else {
            SamplerKind::Ddpm
        },
        variance: VarianceType::parse(&dom::select_value(ids::VARIANCE))
            .unwrap_or(scheduler.variance_type),
        class: dom::select_value(ids::CLASS).parse().ok(),
        guidance: dom::input_f64(ids::GUIDANCE, 1.0) as f32,
        start: None,
    }
}

/// Shows the class picker and guidance slider for a class-conditional model (classes by name
/// where the model names them), hides them otherwise.
pub(super) fn show_class_controls(config: &crate::model::UNetConfig) {
    let classes = config.classes();
    dom::set_hidden(ids::CLASS_OPTIONS, classes.is_empty());
    let names = config.ddpm_class_names.clone().unwrap_or_default();
    let mut html = String::from("<option value=\"each\" selected>One of each</option>");
    for (i, c) in classes.iter().enumerate() {
        let name = names.get(i).cloned().unwrap_or_else(|| c.to_string());
        html.push_str(&format!(
            "<option value=\"{c}\">{}</option>",
            escape_html(&name)
        ));
    }
    dom::set_html(ids::CLASS, &html);
    let guided = config.ddpm_null_class.is_some();
    let w = config.ddpm_guidance_scale.unwrap_or(1.0);
    let slider = dom::el::<HtmlInputElement>(ids::GUIDANCE);
    slider.set_value_as_number(if guided { w } else { 1.0 });
    slider.set_disabled(!guided);
    show_guidance();
}

/// `s` with `&`, `<`, `>` and `"` escaped for HTML.
pub(super) fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The guidance value beside its slider.
pub(super) fn show_guidance() {
    let w = dom::input_f64(ids::GUIDANCE, 1.0);
    let what = match w {
        0.0 => " (unconditional)",
        1.0 => " (plain conditional)",
        _ => "",
    };
    dom::set_text(ids::GUIDANCE_VALUE, &format!("w = {w}{what}"));
}
