//! Play / pause / step / replay over the timestep viewer's frames (`#view-t`) at `#play-speed`
//! frames per second, driven by animation frames (late frames are skipped to keep the speed).
//! `<body data-play>` is `playing` or `paused`.

use super::ids;
use std::cell::Cell;

use web_sys::HtmlInputElement;

use super::dom;
use super::state::{Current, PlayState};

/// The player's buttons, enabled together once a run has frames.
const BUTTONS: [&str; 4] = [ids::REPLAY, ids::STEP_BACK, ids::PLAY, ids::STEP_FWD];

thread_local! {
    /// Bumped whenever playback starts or stops, so a pending loop sees it is stale.
    static GENERATION: Cell<u32> = const { Cell::new(0) };
    static STATE: Current<PlayState> = const { Current::new(PlayState::Paused) };
}

/// Enables the buttons (`false` also pauses, e.g. while a run owns the viewer).
pub fn set_enabled(enabled: bool) {
    if !enabled {
        pause();
    }
    for id in BUTTONS {
        dom::set_disabled(id, !enabled);
    }
}

/// Moves the slider by `delta` frames (clamped to its range) and shows that frame; whether it
/// moved.
pub fn step(delta: i64) -> bool {
    let slider = dom::el::<HtmlInputElement>(ids::VIEW_T);
    if slider.disabled() {
        return false;
    }
    let before = slider.value_as_number();
    let after = (before + delta as f64).clamp(0.0, last_frame(&slider));
    slider.set_value_as_number(after);
    super::show_selected_frame();
    after != before
}

/// Shows x_T (`to_end` false) or the sample.
pub fn jump(to_end: bool) {
    step(if to_end { i64::MAX / 2 } else { i64::MIN / 2 });
}

pub fn toggle() {
    if STATE.with(Current::get) == PlayState::Playing {
        pause();
    } else {
        play();
    }
}

/// Plays from the frame shown (from x_T when at the end) to the sample.
pub fn play() {
    let slider = dom::el::<HtmlInputElement>(ids::VIEW_T);
    if slider.disabled() {
        return;
    }
    if slider.value_as_number() >= last_frame(&slider) {
        jump(false);
    }
    let generation = GENERATION.get().wrapping_add(1);
    GENERATION.set(generation);
    set_state(PlayState::Playing);
    tick(generation, dom::now_ms());
}

pub fn pause() {
    GENERATION.set(GENERATION.get().wrapping_add(1));
    set_state(PlayState::Paused);
}

/// On the next animation frame: advances by the frames due since `last_ms` at the chosen
/// speed, stopping at the sample.
fn tick(generation: u32, last_ms: f64) {
    dom::request_frame(move || {
        if GENERATION.get() != generation {
            return;
        }
        let fps = dom::select_value(ids::PLAY_SPEED)
            .parse::<f64>()
            .unwrap_or(30.0)
            .clamp(1.0, 120.0);
        let now = dom::now_ms();
        let due = ((now - last_ms) * fps / 1e3).floor();
        let mut last = last_ms;
        if due >= 1.0 {
            last += due * 1e3 / fps;
            let slider = dom::el::<HtmlInputElement>(ids::VIEW_T);
            if !step(due as i64) || slider.value_as_number() >= last_frame(&slider) {
                pause();
                return;
            }
        }
        tick(generation, last);
    });
}

fn last_frame(slider: &HtmlInputElement) -> f64 {
    slider.max().parse::<f64>().unwrap_or(0.0)
}

/// Stores and shows `state`, the play button following it.
fn set_state(state: PlayState) {
    STATE.with(|s| s.set(state));
    let playing = state == PlayState::Playing;
    let button = dom::el::<web_sys::HtmlElement>(ids::PLAY);
    button.set_text_content(Some(if playing { "❙❙" } else { "▶︎" }));
    let _ = button.set_attribute("aria-label", if playing { "Pause" } else { "Play" });
}
