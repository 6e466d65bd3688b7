//! Small DOM helpers: element lookup by id, text, events, timers.

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{Document, Element, HtmlElement, Window};

pub fn window() -> Window {
    web_sys::window().expect("no window")
}

pub fn document() -> Document {
    window().document().expect("no document")
}

/// The element with `id`, cast to `T`. A missing id is a bug in index.html, so this panics
/// with the id (the panic hook prints it to the console).
pub fn el<T: JsCast>(id: &str) -> T {
    document()
        .get_element_by_id(id)
        .unwrap_or_else(|| panic!("index.html has no element #{id}"))
        .dyn_into::<T>()
        .unwrap_or_else(|_| panic!("#{id} has an unexpected element type"))
}

pub fn set_text(id: &str, text: &str) {
    el::<Element>(id).set_text_content(Some(text));
}

pub fn set_html(id: &str, html: &str) {
    el::<Element>(id).set_inner_html(html);
}

pub fn set_hidden(id: &str, hidden: bool) {
    el::<HtmlElement>(id).set_hidden(hidden);
}

/// Shows `msg` in the element `id` (or hides it when `msg` is `None`).
pub fn show_message(id: &str, msg: Option<&str>) {
    set_text(id, msg.unwrap_or(""));
    set_hidden(id, msg.is_none());
}

pub fn set_disabled(id: &str, disabled: bool) {
    let _ = el::<Element>(id).toggle_attribute_with_force("disabled", disabled);
}

/// Sets the class list of element `id` to exactly `classes`.
pub fn set_class(id: &str, classes: &str) {
    el::<Element>(id).set_class_name(classes);
}

/// Runs `f` on every `event` at the element `id` (for the page's lifetime).
pub fn on<E: JsCast + 'static>(id: &str, event: &str, f: impl FnMut(E) + 'static) {
    listen(el::<web_sys::EventTarget>(id).as_ref(), event, f);
}

/// Runs `f` on every `event` at `target` (for the page's lifetime).
pub fn listen<E: JsCast + 'static>(
    target: &web_sys::EventTarget,
    event: &str,
    mut f: impl FnMut(E) + 'static,
) {
    let cb = Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
        f(e.unchecked_into::<E>())
    });
    target
        .add_event_listener_with_callback(event, cb.as_ref().unchecked_ref())
        .expect("addEventListener failed");
    cb.forget();
}

/// Milliseconds since page load (`performance.now()`).
pub fn now_ms() -> f64 {
    window()
        .performance()
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now)
}

/// Yields to the browser's event loop once (a `setTimeout(0)` macrotask), so input, painting
/// and animation frames get a turn between chunks of GPU work.
pub async fn yield_now() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Calls `f` once on the next animation frame.
pub fn request_frame(f: impl FnOnce() + 'static) {
    let cb = Closure::once_into_js(f);
    let _ = window().request_animation_frame(cb.unchecked_ref());
}

/// Reads a number input, falling back to `default` when empty or not a number.
pub fn input_f64(id: &str, default: f64) -> f64 {
    let v = el::<web_sys::HtmlInputElement>(id).value_as_number();
    if v.is_finite() {
        v
    } else {
        default
    }
}

/// The page URL's query parameter `key` (`?key=value`), unless missing or empty.
pub fn query_param(key: &str) -> Option<String> {
    web_sys::Url::new(&window().location().href().unwrap_or_default())
        .ok()
        .and_then(|u| u.search_params().get(key))
        .filter(|s| !s.is_empty())
}

pub fn select_value(id: &str) -> String {
    el::<web_sys::HtmlSelectElement>(id).value()
}
