//! The schedule summary and the forward-process view (q(x_t | x_0) of the chosen image).

use super::ids;
use super::*;

pub(super) fn show_schedule() {
    let s = app().schedule.borrow().clone();
    dom::set_text(ids::SCHEDULE_INFO, &s.info);
    let slider = dom::el::<HtmlInputElement>(ids::FWD_T);
    slider.set_max(&(s.abar.len() - 1).to_string());
}

pub(super) fn refresh_forward_menu() {
    let app = app();
    let fwd = app.fwd.borrow();
    let select = dom::el::<HtmlSelectElement>(ids::FWD_IMAGE);
    let previous = select.value();
    let html: String = fwd
        .images
        .iter()
        .enumerate()
        .map(|(i, im)| format!("<option value=\"{i}\">{}</option>", esc(&im.name)))
        .collect();
    select.set_inner_html(&html);
    if (previous.parse::<usize>().ok()).is_some_and(|i| i < fwd.images.len()) {
        select.set_value(&previous);
    }
}

/// The forward view's redraw loop (see [`update_forward`]).
#[derive(Clone, Copy, PartialEq)]
pub(super) enum ForwardView {
    Idle,
    /// Drawing the latest request.
    Busy,
    /// Drawing, and asked again meanwhile: draws once more when done.
    BusyDirty,
}

/// Redraws the forward view for the chosen image and t (coalescing bursts of slider events).
pub(super) fn update_forward() {
    let app = app();
    if app.fwd_view.get() != ForwardView::Idle {
        app.fwd_view.set(ForwardView::BusyDirty);
        return;
    }
    app.fwd_view.set(ForwardView::Busy);
    spawn_local(async move {
        loop {
            app.fwd_view.set(ForwardView::Busy);
            forward_once(&app).await;
            if app.fwd_view.get() != ForwardView::BusyDirty {
                break;
            }
        }
        app.fwd_view.set(ForwardView::Idle);
    });
}

/// The forward view's timestep (`#fwd-t`, within the schedule).
pub(super) fn forward_t(s: &ScheduleView) -> usize {
    (dom::el::<HtmlInputElement>(ids::FWD_T)
        .value_as_number()
        .max(0.0) as usize)
        .min(s.abar.len() - 1)
}

/// The index of the forward view's chosen image (`None`: no images).
pub(super) fn forward_selection(fwd: &Forward) -> Option<usize> {
    let i = dom::select_value(ids::FWD_IMAGE)
        .parse::<usize>()
        .unwrap_or(0);
    (!fwd.images.is_empty()).then(|| i.min(fwd.images.len() - 1))
}

pub(super) async fn forward_once(app: &Rc<App>) {
    let s = app.schedule.borrow().clone();
    let t = forward_t(&s);
    let gpu = app.gpu.borrow().clone();
    // Hold an Rc of the view's data, not a RefCell borrow, across the await.
    let fwd = app.fwd.borrow().clone();
    let Some(i) = forward_selection(&fwd) else {
        return;
    };
    let im = &fwd.images[i];
    let xt = fwd.xt(gpu.as_deref(), i, t, &s.abar).await;
    let q = crate::sampler::SnapshotData::quantise;
    let r = draw::draw_grid(ids::FWD_X0, &q(&im.x0), im.shape)
        .and_then(|_| draw::draw_grid(ids::FWD_XT, &q(&xt), im.shape))
        .and_then(|_| {
            draw::draw_schedule_plot(
                ids::FWD_PLOT,
                &draw::PlotSeries {
                    abar: &s.abar,
                    beta: &s.betas,
                    log_snr: &s.log_snr,
                },
                t,
            )
        });
    if let Err(e) = r {
        web_sys::console::error_1(&e);
    }
    dom::set_text(ids::FWD_T_LABEL, &format!("t = {t}"));
    let a = s.abar[t];
    dom::set_text(
        ids::FWD_STATS,
        &format!(
            "ᾱ_t = {a:.4} · β_t = {:.5} · SNR = {:.3e} · √(1−ᾱ_t) = {:.3}",
            s.betas[t],
            a / (1.0 - a),
            (1.0 - a).sqrt()
        ),
    );
}
