//! Generate and its variants (denoise from the forward view, compare mode's second run): the
//! reverse process in chunks between animation frames, drawn live.

use super::ids;
use super::*;

/// Starts a reverse-process run (Generate from x_T, or `denoise`; see [`run_reverse`]) unless
/// the GPU is busy, marking it running before returning so that no one reads a stale state.
pub(super) fn start_run(denoise: Option<Denoise>) {
    let app = app();
    if app.busy() {
        return;
    }
    app.run.set(RunState::Running);
    spawn_local(run_reverse(denoise));
}

/// Noise it, then denoise it: the forward view's image noised to its t by q(x_t | x_0), then
/// the reverse process from there (one image, the page's sampler settings; a conditional model
/// is given the example's class when known). `None` when the view has no image.
pub(super) fn denoise_request() -> Option<Denoise> {
    let app = app();
    let fwd = app.fwd.borrow().clone();
    let i = forward_selection(&fwd)?;
    let t = forward_t(&app.schedule.borrow());
    let im = &fwd.images[i];
    Some(Denoise {
        image: i,
        t,
        x0: im.x0.clone(),
        shape: im.shape,
        label: im.label,
    })
}

/// A noise-then-denoise run: image `image` of the forward view (`x0`, `[1, C, H, W]`), noised to
/// timestep `t`.
pub(super) struct Denoise {
    image: usize,
    t: usize,
    x0: Vec<f32>,
    shape: [usize; 4],
    label: Option<usize>,
}

/// Runs the reverse process (started by [`start_run`]) in chunks, yielding to the browser
/// between chunks and drawing the latest x_t on animation frames, until done or stopped: from
/// x_T, or (`denoise`) from a noised data image.
async fn run_reverse(denoise: Option<Denoise>) {
    let app = app();
    refresh_generate();
    player::set_enabled(false);
    dom::show_message(ids::RUN_ERROR, None);
    let outcome = generate_inner(&app, denoise.as_ref()).await;
    let (state, status) = match outcome {
        Ok(true) => (RunState::Stopped, "Stopped."),
        Ok(false) => (RunState::Done, "Done."),
        Err(e) => {
            dom::show_message(ids::RUN_ERROR, Some(&e.to_string()));
            (RunState::Error, "Failed (see below).")
        }
    };
    // The rest of the run's end happens in this same task: no one sees the state before it.
    app.run.set(state);
    dom::set_disabled(ids::STOP, true);
    refresh_generate();
    let status = match app.frames.borrow().as_ref() {
        Some(f) if f.stride() > 1 => format!(
            "{status} The slider keeps every {}th step (memory).",
            f.stride()
        ),
        _ => status.to_string(),
    };
    dom::set_text(ids::RUN_STATUS, &status);
    enable_viewer();
    if state == RunState::Done {
        let samples = app.last_samples.borrow().clone();
        match (&denoise, samples) {
            (Some(d), Some((x, _))) => show_reconstruction(d, &x),
            (None, Some((x, shape))) => {
                Rc::make_mut(&mut app.fwd.borrow_mut()).add_generated(&x, shape);
                refresh_forward_menu();
            }
            _ => {}
        }
    }
}

/// The denoised image beside its original: |difference|, MSE, PSNR (peak-to-peak 2) and max |Δ|.
pub(super) fn show_reconstruction(d: &Denoise, x: &[f32]) {
    let diff: Vec<f32> = x.iter().zip(&d.x0).map(|(a, b)| (a - b).abs()).collect();
    let mse = diff.iter().map(|v| (v * v) as f64).sum::<f64>() / diff.len().max(1) as f64;
    let max = diff.iter().fold(0f32, |m, &v| m.max(v));
    let shown: Vec<f32> = diff.iter().map(|v| v - 1.0).collect();
    let r = draw::draw_grid(ids::FWD_RECON, &SnapshotData::quantise(x), d.shape)
        .and_then(|_| draw::draw_grid(ids::FWD_DIFF, &SnapshotData::quantise(&shown), d.shape));
    if let Err(e) = r {
        web_sys::console::error_1(&e);
    }
    dom::set_hidden(ids::FWD_RECON_VIEW, false);
    let t0 = app()
        .last_plan
        .borrow()
        .as_ref()
        .and_then(|p| p.steps().first().map(|s| s.t))
        .unwrap_or(d.t);
    dom::set_text(
        ids::FWD_RECON_STATS,
        &format!(
            "from t = {t0}: MSE = {mse:.5} · PSNR = {:.1} dB · max |Δ| = {max:.3}",
            10.0 * (4.0 / mse.max(1e-12)).log10()
        ),
    );
    let _ = dom::el::<web_sys::Element>(ids::FWD_RECON_STATS)
        .set_attribute("data-mse", &mse.to_string());
}

/// Ok(stopped?) or why it failed.
pub(super) async fn generate_inner(app: &Rc<App>, denoise: Option<&Denoise>) -> PageResult<bool> {
    let gpu = ensure_gpu().await?;
    let generation = GPU_GENERATION.load(Ordering::SeqCst);
    let model = app.model.borrow().clone().ok_or(PageError::NoModel)?;
    let mut cfg = read_config(&model.scheduler);
    if let Some(d) = denoise {
        if d.shape[1..] != model.sample {
            let [c, h, w] = model.sample;
            return Err(PageError::Input(format!(
                "This image is {}×{}×{}, the model draws {c}×{h}×{w}: denoising needs an image of                  the model's size (generate one first, it joins the menu).",
                d.shape[1], d.shape[2], d.shape[3]
            )));
        }
        cfg.n = 1;
        cfg.start = Some(d.t);
        cfg.class = d.label.or(cfg.class);
    }
    // Check the settings (DDIM steps, η, schedule) before touching the GPU.
    let plan = cfg.plan(&model.config, &model.scheduler)?;
    // A denoising run starts from the image noised to the plan's first timestep.
    let initial = match denoise {
        Some(d) => {
            let fwd = app.fwd.borrow().clone();
            let abar = app.schedule.borrow().abar.clone();
            Some(fwd.xt(Some(&gpu), d.image, plan.steps()[0].t, &abar).await)
        }
        None => None,
    };
    *app.last_plan.borrow_mut() = Some(plan.clone());
    let mut engine = take_engine(app, &gpu, generation, &model)?;
    app.compare_frames.borrow_mut().take();
    dom::set_hidden(ids::COMPARE_VIEW, true);
    let pass = Pass {
        cfg: &cfg,
        plan,
        initial,
        target: Target::Main,
    };
    let mut outcome = run_batches(app, &gpu, &mut engine, &model, pass).await;
    let compared = dom::el::<HtmlInputElement>(ids::COMPARE).checked() && denoise.is_none();
    if let (Ok(false), true) = (&outcome, compared) {
        if let Some(second) = cfg.compared(
            &dom::select_value(ids::COMPARE_WITH),
            model.scheduler.num_train_timesteps,
        ) {
            outcome = compare_run(app, &gpu, &mut engine, &model, &second).await;
        }
    }
    put_back_engine(app, engine, generation, outcome.is_ok());
    outcome.map_err(|e| match app.gpu.borrow().is_none() {
        true => PageError::DeviceLost(Box::new(e)),
        false => e,
    })
}

/// Keeps `engine` (taken by [`take_engine`] on device `generation`) for the next run, unless
/// the run failed (its state is unknown) or it is stale: the device was replaced or another
/// model loaded meanwhile.
pub(super) fn put_back_engine(app: &App, engine: Engine, generation: u32, ok: bool) {
    let current = GPU_GENERATION.load(Ordering::SeqCst) == generation
        && app
            .model
            .borrow()
            .as_ref()
            .is_some_and(|m| m.id == engine.model_id);
    if ok && current {
        *app.engine.borrow_mut() = Some(engine);
    }
}

/// The engine of `model` on the current device: the kept one, or a new one.
pub(super) fn take_engine(
    app: &App,
    gpu: &Gpu,
    generation: u32,
    model: &Model,
) -> PageResult<Engine> {
    let kept = app.engine.borrow_mut().take();
    match kept {
        Some(e) if e.generation == generation && e.model_id == model.id => Ok(e),
        other => {
            drop(other); // free its GPU memory first
            model
                .weights()
                .and_then(|w| Engine::new(gpu, generation, model, &w))
                .map_err(PageError::engine("Could not put the model on the GPU"))
        }
    }
}

/// One pass of [`run_batches`]: the settings and their checked plan, x_T given or drawn for the
/// seed, and which run it fills.
pub(super) struct Pass<'a> {
    cfg: &'a RunConfig,
    plan: SamplerPlan,
    initial: Option<Vec<f32>>,
    target: Target,
}

/// Compare mode's second run (`cfg`: the same seed and images, another sampler), into
/// `compare_frames`. Ok(stopped?).
pub(super) async fn compare_run(
    app: &Rc<App>,
    gpu: &Gpu,
    engine: &mut Engine,
    model: &Model,
    cfg: &RunConfig,
) -> PageResult<bool> {
    let plan = cfg.plan(&model.config, &model.scheduler)?;
    dom::set_hidden(ids::COMPARE_VIEW, false);
    let label = format!("x_t of {}", cfg.describe());
    dom::set_text(ids::CMP_LABEL, &label);
    let pass = Pass {
        cfg,
        plan,
        initial: None,
        target: Target::Compare,
    };
    run_batches(app, gpu, engine, model, pass).await
}

/// Samples `cfg.n` images over [`crate::generation`] (batches as large as the device allows),
/// filling the slider's frames (of `pass.target`) and the live view as chunks complete, from
/// x_T drawn for the seed or from `pass.initial` (one image). Ok(stopped?).
pub(super) async fn run_batches(
    app: &Rc<App>,
    gpu: &Gpu,
    engine: &mut Engine,
    model: &Model,
    pass: Pass<'_>,
) -> PageResult<bool> {
    let Pass {
        cfg,
        plan,
        initial,
        target,
    } = pass;
    let n = cfg.n;
    let store = match target {
        Target::Main => &app.frames,
        Target::Compare => &app.compare_frames,
    };
    // Free the previous Generate's frames before anything new is allocated.
    store.borrow_mut().take();
    if target == Target::Main {
        app.last_samples.borrow_mut().take();
    }
    // Compare mode holds two runs' frames in the same budget.
    let budget = if dom::el::<HtmlInputElement>(ids::COMPARE).checked() {
        FRAME_BUDGET / 2
    } else {
        FRAME_BUDGET
    };
    let classes = cfg.classes(&model.config, 0, n);
    let steps = plan.steps().len();
    let request = Request {
        n,
        sampler: plan,
        classes: (!classes.is_empty()).then_some(classes),
        batch_cap: app.batch_cap.get(),
        initial,
        frames_budget: Some(budget),
    };
    let mut generation = Generation::new(&mut engine.generator, gpu, request)?;
    let (batch, shape) = (generation.batch(), generation.shape());
    let [_, c, h, w] = shape;
    let per = c * h * w;
    let runs = n.div_ceil(batch);
    let mut live = Pictures {
        x: vec![0u8; n * per],
        x0: vec![0u8; n * per],
        eps: vec![0u8; n * per],
        shape,
    };

    dom::el::<HtmlInputElement>(ids::VIEW_T).set_disabled(true);
    dom::set_disabled(ids::STOP, false);
    let batches = if runs > 1 {
        format!(" in {runs} batches of {batch} (device limits)")
    } else {
        String::new()
    };
    let memory = engine
        .generator
        .memory()
        .map(|m| format!(" · {}", m.describe()))
        .unwrap_or_default();
    let what = match target {
        Target::Main => "Running",
        Target::Compare => "Comparison: running",
    };
    dom::set_text(
        ids::RUN_STATUS,
        &format!(
            "{what} {} · {n} × {c}×{h}×{w}{batches}{memory}…",
            cfg.describe()
        ),
    );
    update_stats(0, runs * steps, 0.0);

    let t0 = dom::now_ms();
    let mut chunk = 1usize;
    let stopped = loop {
        if app.run.get() == RunState::Stopping {
            break true;
        }
        let (c0, before) = (dom::now_ms(), generation.status().steps_done());
        let status = generation
            .advance(&mut engine.generator, gpu, chunk)
            .await?;
        let dt = dom::now_ms() - c0;
        if let Some(latest) = generation.latest() {
            let range = latest.first * per..(latest.first + latest.count) * per;
            let len = latest.count * per;
            let snap = &latest.snapshot;
            live.x[range.clone()].copy_from_slice(&snap.x.to_u8(1.0)[..len]);
            live.x0[range.clone()].copy_from_slice(&snap.x0.to_u8(1.0)[..len]);
            live.eps[range].copy_from_slice(&snap.eps.to_u8(EPS_RANGE)[..len]);
            let label = match (snap.step, status.progress.next_timestep) {
                (s, _) if s == steps => "x₀ (sample)".into(),
                (_, Some(t)) => format!("t = {t}"),
                (_, None) => "x₀ (sample)".into(),
            };
            show_live(LiveFrame {
                label,
                pictures: live.clone(),
                target,
            });
        }
        update_stats(
            status.steps_done(),
            status.steps_total(),
            dom::now_ms() - t0,
        );
        if status.done() {
            break false;
        }
        // Size the next chunk so that one takes about CHUNK_TARGET_MS.
        let per_step = dt / status.steps_done().saturating_sub(before).max(1) as f64;
        chunk = ((CHUNK_TARGET_MS / per_step.max(0.01)) as usize)
            .clamp((chunk / 2).max(1), (chunk * 2).min(MAX_CHUNK));
        dom::yield_now().await;
    };
    let (samples, frames) = generation.into_parts();
    *store.borrow_mut() = frames;
    if target == Target::Main && !stopped {
        *app.last_samples.borrow_mut() = Some((samples, shape));
    }
    Ok(stopped)
}

pub(super) fn update_stats(done: usize, total: usize, elapsed_ms: f64) {
    let p = dom::el::<web_sys::HtmlProgressElement>(ids::RUN_PROGRESS);
    p.set_max(total.max(1) as f64);
    p.set_value(done as f64);
    dom::set_text(ids::STAT_STEPS, &format!("{done} / {total}"));
    let rate = if elapsed_ms > 0.0 {
        done as f64 / (elapsed_ms / 1e3)
    } else {
        0.0
    };
    dom::set_text(
        ids::STAT_RATE,
        &if done > 0 {
            format!("{rate:.1}")
        } else {
            "–".into()
        },
    );
    // After the first steps: the time the rest of the run should take at this rate.
    let left = if done > 0 && done < total && rate > 0.0 {
        format!(" · ~{} left", duration((total - done) as f64 / rate))
    } else {
        String::new()
    };
    dom::set_text(
        ids::STAT_ELAPSED,
        &format!("{:.1} s{left}", elapsed_ms / 1e3),
    );
}

/// `42 s`, `3 min 5 s` or `2 h 7 min`.
pub(super) fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// Draws `frame` on the next animation frame, unless a newer one replaces it first (a frame is
/// requested when one starts waiting in [`App::live`]).
pub(super) fn show_live(frame: LiveFrame) {
    if app().live.borrow_mut().replace(frame).is_some() {
        return;
    }
    dom::request_frame(|| {
        let live = app().live.borrow_mut().take();
        match live {
            Some(f) if f.target == Target::Main => {
                let p = &f.pictures;
                draw_frame(&p.x, &p.x0, &p.eps, p.shape);
                dom::set_text(ids::VIEW_T_LABEL, &f.label);
                dom::set_disabled(ids::EXPORT_PNG, false);
            }
            Some(f) => {
                let p = &f.pictures;
                let r = draw::draw_grid(ids::CMP_XT, &p.x, p.shape)
                    .and_then(|_| draw::draw_grid(ids::CMP_X0, &p.x0, p.shape));
                if let Err(e) = r {
                    web_sys::console::error_1(&e);
                }
            }
            None => {}
        }
    });
}

/// Draws x_t, ε̂ and x̂0 of one frame.
pub(super) fn draw_frame(x: &[u8], x0: &[u8], eps: &[u8], shape: [usize; 4]) {
    let r = draw::draw_grid(ids::CANVAS_XT, x, shape)
        .and_then(|_| draw::draw_grid(ids::CANVAS_X0, x0, shape))
        .and_then(|_| draw::draw_grid(ids::CANVAS_EPS, eps, shape));
    if let Err(e) = r {
        web_sys::console::error_1(&e);
    }
}
