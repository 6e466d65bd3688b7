//! The timestep viewer: the stored frames (x_t, ε̂, x̂0) at the slider's position, the update
//! that step takes, and compare mode's frame beside it.

use super::ids;
use super::*;

pub(super) fn enable_viewer() {
    let app = app();
    // A live frame still waiting for its animation frame would overwrite the selected one.
    app.live.borrow_mut().take();
    let frames = app.frames.borrow();
    let slider = dom::el::<HtmlInputElement>(ids::VIEW_T);
    match frames.as_ref() {
        Some(f) if !f.is_empty() => {
            slider.set_max(&(f.len() - 1).to_string());
            slider.set_value_as_number((f.len() - 1) as f64);
            slider.set_disabled(false);
            drop(frames);
            player::set_enabled(true);
            dom::set_disabled(ids::EXPORT_GIF, false);
            dom::set_disabled(ids::EXPORT_WEBM, false);
            show_selected_frame();
        }
        _ => slider.set_disabled(true),
    }
    dom::set_disabled(ids::EXPORT_NPY, app.last_samples.borrow().is_none());
}

pub(super) fn show_selected_frame() {
    let app = app();
    if app.busy() {
        return;
    }
    let frames = app.frames.borrow();
    let Some(f) = frames.as_ref().filter(|f| !f.is_empty()) else {
        return;
    };
    let i = (dom::el::<HtmlInputElement>(ids::VIEW_T)
        .value_as_number()
        .max(0.0) as usize)
        .min(f.len() - 1);
    draw_frame(f.x(i), f.x0(i), f.eps(i), f.shape);
    show_compared_frame(f, i);
    dom::set_text(ids::VIEW_T_LABEL, &f.label(i));
    dom::set_disabled(ids::EXPORT_PNG, false);
    let step = app
        .last_plan
        .borrow()
        .as_ref()
        .and_then(|p| p.steps().get(i).copied());
    let schedule = app.schedule.borrow().clone();
    dom::set_text(
        ids::STEP_MATH,
        &step.map_or(String::new(), |s| step_math(&s, &schedule)),
    );
}

/// Compare mode: the second run's frame nearest to slot `i`'s timestep of `main`, and
/// |x_t − x_t′| (from the displayed bytes).
pub(super) fn show_compared_frame(main: &Frames, i: usize) {
    let app = app();
    let compare = app.compare_frames.borrow();
    let Some(c) = compare.as_ref().filter(|c| c.shape == main.shape) else {
        return;
    };
    let Some(j) = c.nearest(main.timestep(i)) else {
        return;
    };
    let diff: Vec<u8> = main
        .x(i)
        .iter()
        .zip(c.x(j))
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let r = draw::draw_grid(ids::CMP_XT, c.x(j), c.shape)
        .and_then(|_| draw::draw_grid(ids::CMP_X0, c.x0(j), c.shape))
        .and_then(|_| draw::draw_grid(ids::CMP_DIFF, &diff, c.shape));
    if let Err(e) = r {
        web_sys::console::error_1(&e);
    }
    dom::set_text(ids::CMP_LABEL, &format!("x_t′ at {}", c.label(j)));
}

/// The update frame `step` takes, written out with its numbers (the DDPM paper's form for DDPM,
/// Song et al.'s for DDIM) and how much of x_{t−1}'s variance the fresh noise σ_t·z is.
pub(super) fn step_math(step: &crate::sampler::PlannedStep, s: &ScheduleView) -> String {
    use crate::sampler::StepCoefs;
    let t = step.t;
    let (abar, beta) = (s.abar[t] as f64, s.betas[t] as f64);
    let prev = step
        .prev
        .map_or("0 (the sample)".to_string(), |p| p.to_string());
    let head = format!(
        "t = {t} → {prev}: ᾱ_t = {abar:.5}, SNR = ᾱ/(1−ᾱ) = {:.4}",
        abar / (1.0 - abar)
    );
    let (update, sigma) = match step.coefs {
        StepCoefs::Ddpm(c) => (
            format!(
                "x_t−1 = 1/√α_t · (x_t − β_t/√(1−ᾱ_t) · ε̂) + σ_t·z = {:.5} · (x_t − {:.5} · ε̂) + {:.5} · z \
                 (β_t = {beta:.6})",
                1.0 / (1.0 - beta).sqrt(),
                beta / (1.0 - abar).sqrt(),
                c.sigma
            ),
            c.sigma as f64,
        ),
        StepCoefs::Ddim(c) => (
            format!(
                "x_t−1 = √ᾱ_prev · x̂0 + √(1−ᾱ_prev−σ²) · ε̂ + σ·z = {:.5} · x̂0 + {:.5} · ε̂ + {:.5} · z",
                c.sqrt_ab_prev, c.c_dir, c.sigma
            ),
            c.sigma as f64,
        ),
    };
    // x_{t−1} has (about) unit variance along the forward process, so σ² is the noise's share.
    let share = format!(
        "fresh noise σ² = {:.2e}: {:.1} % of x_t−1's variance, the rest from the mean",
        sigma * sigma,
        100.0 * (sigma * sigma).min(1.0)
    );
    format!("{head}\n{update}\n{share}")
}
