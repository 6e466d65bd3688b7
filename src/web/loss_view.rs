//! The loss-per-timestep plot (`#loss-run` → `#loss-plot`, `#loss-stats`): L_simple of the
//! loaded model over t ([`crate::loss_curve`]) on the forward view's data examples of the model's
//! size — the curve `ddpm loss --timesteps 10 --draws 1 --seed 0` prints for the same examples.
//! `<body data-loss>` is idle | running | done | error.

use super::error::{PageError, PageResult};
use super::ids;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use super::state::LossState;
use super::{dom, draw, App};
use crate::loss_curve::{even_timesteps, LossCurve, LossSetup};

/// Timesteps measured, noise draws per example and timestep, and the noise seed.
const TIMESTEPS: usize = 10;
const DRAWS: usize = 1;
const SEED: u64 = 0;

thread_local! {
    /// The last curve measured (for the test hook).
    static LAST: RefCell<Option<LossCurve>> = const { RefCell::new(None) };
}

/// The last curve as `[t0, loss0, t1, loss1, …]` (empty if none).
pub fn last_curve() -> Vec<f64> {
    LAST.with_borrow(|c| {
        c.as_ref().map_or(Vec::new(), |c| {
            c.timesteps
                .iter()
                .zip(&c.loss)
                .flat_map(|(&t, &l)| [t as f64, l])
                .collect()
        })
    })
}

/// Measures and plots the curve (one run at a time, like Generate).
pub async fn measure() {
    let app = super::app();
    if app.busy() {
        return;
    }
    app.loss.set(LossState::Running);
    super::refresh_generate();
    dom::set_text(ids::LOSS_STATS, "Measuring…");
    let result = measure_inner(&app).await;
    match result {
        Ok(curve) => {
            show(&curve, app.schedule.borrow().abar.len());
            LAST.with_borrow_mut(|c| *c = Some(curve));
            app.loss.set(LossState::Done);
        }
        Err(e) => {
            dom::set_text(ids::LOSS_STATS, &e.to_string());
            app.loss.set(LossState::Error);
        }
    }
    super::refresh_generate();
}

async fn measure_inner(app: &Rc<App>) -> PageResult<LossCurve> {
    let gpu = super::ensure_gpu().await?;
    let generation = super::GPU_GENERATION.load(Ordering::SeqCst);
    let model = app.model.borrow().clone().ok_or(PageError::NoModel)?;
    let fwd = app.fwd.borrow().clone();
    let examples: Vec<_> = fwd
        .images
        .iter()
        .filter(|im| im.label.is_some() && im.shape[1..] == model.sample)
        .collect();
    let Some(first) = examples.first() else {
        let [c, h, w] = model.sample;
        return Err(PageError::Input(format!(
            "The bundled examples are 1×28×28 MNIST digits; this model draws {c}×{h}×{w}."
        )));
    };
    let shape = [
        examples.len(),
        first.shape[1],
        first.shape[2],
        first.shape[3],
    ];
    let images: Vec<f32> = examples
        .iter()
        .flat_map(|im| im.x0.iter().copied())
        .collect();
    let labels: Option<Vec<f32>> = (!model.config.classes().is_empty()).then(|| {
        examples
            .iter()
            .map(|im| im.label.unwrap_or_default() as f32)
            .collect()
    });
    let abar = app.schedule.borrow().abar.clone();
    let timesteps = even_timesteps(TIMESTEPS, abar.len());
    let setup = LossSetup {
        images: &images,
        shape,
        labels: labels.as_deref(),
        timesteps: &timesteps,
        draws: DRAWS,
        seed: SEED,
    };
    let mut engine = super::take_engine(app, &gpu, generation, &model)?;
    let curve = engine.loss_curve(&gpu, &abar, &setup).await;
    super::put_back_engine(app, engine, generation, curve.is_ok());
    curve.map_err(PageError::engine("Could not measure the loss"))
}

fn show(curve: &LossCurve, train_timesteps: usize) {
    let points: Vec<(usize, f64)> = curve
        .timesteps
        .iter()
        .copied()
        .zip(curve.loss.iter().copied())
        .collect();
    dom::set_hidden(ids::LOSS_VIEW, false);
    if let Err(e) = draw::draw_loss_plot(ids::LOSS_PLOT, &points, train_timesteps) {
        web_sys::console::error_1(&e);
    }
    let (worst, best) = points
        .iter()
        .fold(((0, f64::MIN), (0, f64::MAX)), |(w, b), &(t, l)| {
            (
                if l > w.1 { (t, l) } else { w },
                if l < b.1 { (t, l) } else { b },
            )
        });
    dom::set_text(
        ids::LOSS_STATS,
        &format!(
            "L_simple = ‖ε − ε̂‖² / D: highest {:.4} at t = {}, lowest {:.4} at t = {}, mean {:.4}",
            worst.1,
            worst.0,
            best.1,
            best.0,
            points.iter().map(|p| p.1).sum::<f64>() / points.len().max(1) as f64
        ),
    );
}
